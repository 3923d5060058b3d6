package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Issue 12, first slice: serve on a NATS JetStream stream (log.backend
// nats), a reader node (role all) and a gateway-only node, on a real
// three-server JetStream cluster and a real PostgreSQL.

// clusterNode is one serve process of a cluster test.
type clusterNode struct {
	name  string
	addr  string
	wsURL string
	cfg   string
	role  string
	proc  *Proc
}

// start runs the node's serve (again) and waits until it is ready.
func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	n.proc = Start(t, nil, "serve", "--config", n.cfg, "--role", n.role)
	n.proc.WaitStderr(t, `"msg":"serving"`, readyTimeout)
	waitReadyz(t, n)
}

// startClusterNodes writes one config for db on the cluster's stream and
// starts a serve per role, each on a port of its own, and waits until each
// is ready.
func startClusterNodes(t *testing.T, db *DB, nc *NATSCluster, roles ...string) []*clusterNode {
	t.Helper()
	var nodes []*clusterNode
	for i, role := range roles {
		n := &clusterNode{name: fmt.Sprintf("node%d-%s", i, role), addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
		n.wsURL = "ws://" + n.addr + "/ws"
		cfg := WriteConfig(t, db, map[string]any{
			"source.slot":            "s_" + db.Name,
			"source.status_interval": "200ms",
			"server.listen":          n.addr,
			"auth.jwt.secret":        gwSecret,
			"limits.max_connections_per_ip_per_minute": 100000,
			"limits.max_connections_per_user":          1000,
			"log.backend":                              "nats",
			"log.nats.urls":                            nc.URLs(),
			"log.nats.stream":                          "S_" + db.Name,
			"log.nats.subject_prefix":                  "cdc_" + db.Name,
			"log.nats.replicas":                        nc.Size(),
			"log.cache_events":                         50,
		})
		n.cfg, n.role = cfg, role
		n.start(t)
		nodes = append(nodes, n)
	}
	return nodes
}

// writeAttendance commits one attendance row every 5 ms, each on its own
// day from first on, until stop is called; done then gives the first error.
func writeAttendance(db *DB, first string) (stop func(), done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	written := make(chan error, 1)
	go func() {
		var err error
		for i := 0; ctx.Err() == nil && err == nil; i++ {
			_, err = db.Pool.Exec(context.Background(), `INSERT INTO attendance (student_id, class_id, date, status)
				SELECT id, class_id, $1::date + $2::int, 'present' FROM students ORDER BY id LIMIT 1`, first, i)
			time.Sleep(5 * time.Millisecond)
		}
		written <- err
	}()
	return cancel, written
}

// waitReadyz polls GET /readyz until 200.
func waitReadyz(t *testing.T, n *clusterNode) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := http.Get("http://" + n.addr + "/readyz")
		var why []byte
		if err == nil {
			why, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready within %v (%v; /readyz said %s)\n%s", n.name, readyTimeout, err, bytes.TrimSpace(why), n.proc.stderrTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterNATS: on a three-server JetStream cluster, a reader node and a
// gateway-only node serve the same events with the same ids and cursors;
// a client resumes on the other node with nothing missed or repeated while
// a writer commits; a cursor older than a gateway's cache is served from
// the stream, exactly; a revocation reaches a subscriber on the node that
// is not the reader.
func TestClusterNATS(t *testing.T) {
	nc := StartNATSCluster(t, 3)
	db := NewDB(t, WithExampleData())
	nodes := startClusterNodes(t, db, nc, "all", "gateway")
	reader, gateway := nodes[0], nodes[1]
	tok := gwUserToken(t, "2", "admin")

	t.Run("SameEventEverywhere", func(t *testing.T) {
		a := gwConnect(t, "admin@reader", reader.wsURL, gwViaHeader, tok)
		b := gwConnect(t, "admin@gateway", gateway.wsURL, gwViaHeader, tok)
		a.mustSubscribe("table:attendance")
		b.mustSubscribe("table:attendance")
		id := markAttendance(t, db, 2)
		ma := a.nextEvent("attendance.marked")
		mb := b.nextEvent("attendance.marked")
		if idOf(ma) != id || idOf(mb) != id {
			t.Fatalf("events of rows %d and %d, want %d", idOf(ma), idOf(mb), id)
		}
		if ma.Event.EventID != mb.Event.EventID || ma.Event.Cursor != mb.Event.Cursor || ma.Raw != mb.Raw {
			t.Fatalf("the nodes sent different frames:\n%s\n%s", ma.Raw, mb.Raw)
		}
	})

	t.Run("ResumeOnTheOtherNode", func(t *testing.T) {
		base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")
		cl := newRSClient(t, "mover", tok, "table:attendance")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cl.session(ctx, reader.wsURL) }()
		rsWaitAll(t, []*rsClient{cl}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })
		// A writer commits throughout.
		stopWriter, written := writeAttendance(db, "2018-01-01")
		rsWaitAll(t, []*rsClient{cl}, 30*time.Second, "some events on the reader", func(c *rsClient) bool { n, _ := c.progress(); return n >= 20 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// The same client goes on at the gateway node, from its cursor.
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		go func() { done <- cl.session(ctx, gateway.wsURL) }()
		rsWaitAll(t, []*rsClient{cl}, 30*time.Second, "more events on the gateway", func(c *rsClient) bool { n, _ := c.progress(); return n >= 60 })
		stopWriter()
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		want := attendanceAfter(t, db, base)
		rsWaitAll(t, []*rsClient{cl}, 30*time.Second, "every row", hasAll(len(want), want[len(want)-1]))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st := cl.state()
		checkClean(t, "mover", st)
		checkSequence(t, "mover", st.uniq, want)
		if st.dups != 0 {
			t.Errorf("%d duplicates across the move", st.dups)
		}
	})

	t.Run("OlderThanTheCache", func(t *testing.T) {
		head, err := syncGet(gateway.addr, tok, url.Values{"channels": {"table:attendance"}})
		if err != nil || head.Status != 200 {
			t.Fatalf("head: %v %+v", err, head)
		}
		base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")
		// 200 rows in one transaction: four times the gateways' cache.
		db.Exec(t, `INSERT INTO attendance (student_id, class_id, date, status)
			SELECT s.id, s.class_id, DATE '2017-01-01' + d, 'present'
			FROM students s CROSS JOIN generate_series(1, 5) AS d ORDER BY d, s.id`)
		want := db.QueryInt(t, "SELECT count(*) FROM attendance WHERE id > $1", base)
		cl := gwConnect(t, "admin@gateway", gateway.wsURL, gwViaHeader, tok)
		cl.mustSubscribe("table:attendance")
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := syncGet(gateway.addr, tok, url.Values{"channels": {"table:attendance"}, "since": {head.Cursor}, "limit": {"5000"}})
			if err != nil || r.Status != 200 {
				t.Fatalf("/sync from before the cache: %v %d %s", err, r.Status, r.Raw)
			}
			if int64(len(r.Events)) == want {
				prev := ""
				for _, e := range r.Events {
					if e.Event.Cursor <= prev {
						t.Fatalf("/sync from the stream out of order: %s after %s", e.Event.Cursor, prev)
					}
					prev = e.Event.Cursor
				}
				break
			}
			if int64(len(r.Events)) > want || time.Now().After(deadline) {
				t.Fatalf("/sync from before the cache: %d events, want %d", len(r.Events), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// And over the WebSocket: a resume from the same cursor replays
		// exactly those events, in order, then nothing more.
		ws := gwConnect(t, "resumer@gateway", gateway.wsURL, gwViaHeader, tok)
		id := ws.request("subscribe", map[string]any{"channels": []string{"table:attendance"}, "since": head.Cursor})
		if m := ws.reply(id); m.Type != "subscribed" {
			t.Fatalf("resume from before the cache: %s", m)
		}
		prev := ""
		var firstTS int64
		for i := int64(0); i < want; i++ {
			m := ws.nextEvent("attendance.marked")
			if m.Event.Cursor <= prev {
				t.Fatalf("replay from the stream out of order: %s after %s", m.Event.Cursor, prev)
			}
			if idOf(m) <= base {
				t.Fatalf("replay from the stream: row %d, from before the cursor", idOf(m))
			}
			if i == 0 {
				firstTS = m.Event.Timestamp
			}
			prev = m.Event.Cursor
		}
		for _, m := range ws.upToPong() {
			if m.Type == "event" {
				t.Fatalf("the replay went on past the %d events: %s", want, m)
			}
		}
		// By time: from the burst's commit time, older than the cache too.
		r, err := syncGet(gateway.addr, tok, url.Values{"channels": {"table:attendance"}, "since": {fmt.Sprint(firstTS)}, "limit": {"5000"}})
		if err != nil || r.Status != 200 || int64(len(r.Events)) < want {
			t.Fatalf("/sync since %d ms: %v %d, %d events; want at least the burst's %d", firstTS, err, r.Status, len(r.Events), want)
		}
	})

	t.Run("RevocationOnTheGateway", func(t *testing.T) {
		const teacher, class = 12, 1
		cl := gwConnect(t, "teacher@gateway", gateway.wsURL, gwViaHeader, gwUserToken(t, "12", "teacher"))
		joinClass(t, db, cl, teacher, class)
		db.Exec(t, "DELETE FROM class_teachers WHERE class_id = $1 AND teacher_id = $2", class, teacher)
		later := markAttendance(t, db, class)
		m, before := cl.waitFor(gwWait, "revoked", func(m gwMsg) bool { return m.Type == "revoked" })
		if m.Channel != "class:1" {
			t.Fatalf("%s, want class:1 revoked", m)
		}
		for _, m := range append(before, cl.upToPong()...) {
			if m.Type == "event" && idOf(m) == later {
				t.Fatalf("attendance %d, committed after the teacher left, reached them on the gateway node", later)
			}
		}
	})

	// Everything went through the stream.
	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "S_"+db.Name)
	if err != nil {
		t.Fatalf("the nodes' stream: %v", err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows := db.QueryInt(t, "SELECT count(*) FROM attendance WHERE date < '2020-01-01' OR date > '2025-06-01'")
	if info.State.Msgs < uint64(rows) || info.Config.Replicas != 3 {
		t.Errorf("stream: %d messages, %d replicas; want at least the %d attendance rows, 3 replicas", info.State.Msgs, info.Config.Replicas, rows)
	}
	t.Logf("stream %s: %d messages on %d replicas", info.Config.Name, info.State.Msgs, info.Config.Replicas)
	for _, n := range nodes {
		if !strings.Contains(n.proc.Stderr(), `"log":"nats"`) {
			t.Errorf("%s did not run on the nats backend", n.name)
		}
		if strings.Contains(n.proc.Stderr(), `"level":"ERROR"`) {
			t.Errorf("%s logged errors:\n%s", n.name, n.proc.stderrTail())
		}
	}
}

// TestClusterStreamRecreated: a stream deleted and created again ends the
// cursors from before: connected clients get reset, /sync from an old
// cursor 410; new events flow again, on the reader and the gateway node.
func TestClusterStreamRecreated(t *testing.T) {
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	nodes := startClusterNodes(t, db, nc, "all", "gateway")
	tok := gwUserToken(t, "2", "admin")
	var clients []*gwClient
	for _, n := range nodes {
		cl := gwConnect(t, "admin@"+n.name, n.wsURL, gwViaHeader, tok)
		cl.mustSubscribe("table:attendance")
		clients = append(clients, cl)
	}
	// Two rows: a client that had the first only cannot resume after the
	// stream is created again (one that had both has nothing to miss).
	first, second := markAttendance(t, db, 2), markAttendance(t, db, 2)
	var old string
	for _, cl := range clients {
		m := cl.nextEvent("attendance.marked")
		if idOf(m) != first {
			t.Fatalf("%s: row %d, want %d", cl.name, idOf(m), first)
		}
		old = m.Event.Cursor
		if m := cl.nextEvent("attendance.marked"); idOf(m) != second {
			t.Fatalf("%s: row %d, want %d", cl.name, idOf(m), second)
		}
	}

	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.Stream(ctx, "S_"+db.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, info.Config.Name); err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	expectHistoryEnded(t, db, nodes, clients, tok, old)
}

// expectHistoryEnded checks that the stream's history before old was cut:
// every client is told to reset (before any event), /sync from old gets 410
// on every node, and the next change reaches every client.
func expectHistoryEnded(t *testing.T, db *DB, nodes []*clusterNode, clients []*gwClient, tok, old string) {
	t.Helper()
	for _, cl := range clients {
		m, _ := cl.waitFor(gwWait, "reset", func(m gwMsg) bool { return m.Type == "reset" || m.Type == "event" })
		if m.Type != "reset" || m.Reason != "cursor_expired" || strings.Join(m.Channels, ",") != "table:attendance" {
			t.Fatalf("%s: %s, want reset of table:attendance", cl.name, m)
		}
	}
	for _, n := range nodes {
		r, err := syncGet(n.addr, tok, url.Values{"channels": {"table:attendance"}, "since": {old}})
		if err != nil || r.Status != http.StatusGone {
			t.Fatalf("%s: /sync from before: %v %d %s, want 410", n.name, err, r.Status, r.Raw)
		}
	}
	next := markAttendance(t, db, 2)
	for _, cl := range clients {
		if m := cl.nextEvent("attendance.marked"); idOf(m) != next {
			t.Fatalf("%s: row %d after, want %d", cl.name, idOf(m), next)
		}
	}
}

// TestClusterNATSServerKilled: one NATS server of three killed while a
// writer commits: nothing lost, nothing stops; it comes back.
func TestClusterNATSServerKilled(t *testing.T) {
	nc := StartNATSCluster(t, 3)
	db := NewDB(t, WithExampleData())
	nodes := startClusterNodes(t, db, nc, "all", "gateway")
	tok := gwUserToken(t, "2", "admin")
	base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")
	var clients []*rsClient
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, len(nodes))
	for _, n := range nodes {
		cl := newRSClient(t, "admin@"+n.name, tok, "table:attendance")
		clients = append(clients, cl)
		go func() { done <- cl.session(ctx, n.wsURL) }()
	}
	rsWaitAll(t, clients, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })
	insert := func(from, to int) {
		for i := from; i < to; i++ {
			db.Exec(t, `INSERT INTO attendance (student_id, class_id, date, status)
				SELECT id, class_id, DATE '2016-01-01' + $1::int, 'present' FROM students ORDER BY id LIMIT 1`, i)
			time.Sleep(5 * time.Millisecond)
		}
	}
	insert(0, 50)
	// The stream's leader is the one that hurts most.
	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "S_"+db.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	victim := 0
	if info.Cluster != nil && info.Cluster.Leader != "" {
		victim = nc.ServerIndex(t, info.Cluster.Leader)
	}
	nc.Kill(t, victim)
	insert(50, 150)
	nc.Start(t, victim)
	nc.WaitReady(t)
	insert(150, 200)
	want := attendanceAfter(t, db, base)
	rsWaitAll(t, clients, 60*time.Second, "every row", hasAll(len(want), want[len(want)-1]))
	cancel()
	for range nodes {
		if err := <-done; err != nil {
			t.Fatalf("a client's connection ended: %v", err)
		}
	}
	for _, cl := range clients {
		st := cl.state()
		checkClean(t, cl.name, st)
		checkSequence(t, cl.name, st.uniq, want)
		if st.dups != 0 {
			t.Errorf("%s: %d duplicates", cl.name, st.dups)
		}
	}
}

// TestClusterSlotRecreated: the slot dropped from under the reader and
// re-created: the changes in between are gone, so clients on every node
// are told to reset, a cursor from before gets 410 on every node, and the
// next changes flow; no gap is silent.
func TestClusterSlotRecreated(t *testing.T) {
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	nodes := startClusterNodes(t, db, nc, "all", "gateway")
	tok := gwUserToken(t, "2", "admin")
	var clients []*gwClient
	for _, n := range nodes {
		cl := gwConnect(t, "admin@"+n.name, n.wsURL, gwViaHeader, tok)
		cl.mustSubscribe("table:attendance")
		clients = append(clients, cl)
	}
	first := markAttendance(t, db, 2)
	var old string
	for _, cl := range clients {
		m := cl.nextEvent("attendance.marked")
		if idOf(m) != first {
			t.Fatalf("%s: row %d, want %d", cl.name, idOf(m), first)
		}
		old = m.Event.Cursor
	}
	slot := "s_" + db.Name
	deadline := time.Now().Add(gwWait)
	for {
		_, err := db.Pool.Exec(context.Background(), "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", slot)
		if err == nil {
			if _, err = db.Pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not drop the slot: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	markAttendance(t, db, 2) // while no slot exists: lost
	expectHistoryEnded(t, db, nodes, clients, tok, old)
	// A gateway that starts now knows the gap too.
	late := startClusterNodes(t, db, nc, "gateway")[0]
	r, err := syncGet(late.addr, tok, url.Values{"channels": {"table:attendance"}, "since": {old}})
	if err != nil || r.Status != http.StatusGone {
		t.Fatalf("a gateway started after the gap: /sync from before it: %v %d %s, want 410", err, r.Status, r.Raw)
	}
}

// TestClusterGatewayRestart: a gateway node SIGKILLed and started again
// while a writer commits serves again from the stream, without the reader
// noticing; its clients reconnect (to it, or to another node) and resume
// with nothing missed or repeated.
func TestClusterGatewayRestart(t *testing.T) {
	nc := StartNATSCluster(t, 3)
	db := NewDB(t, WithExampleData())
	nodes := startClusterNodes(t, db, nc, "all", "gateway")
	reader, gateway := nodes[0], nodes[1]
	tok := gwUserToken(t, "2", "admin")
	base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")
	back, other := newRSClient(t, "back to the gateway", tok, "table:attendance"), newRSClient(t, "over to the reader", tok, "table:attendance")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each keeps reconnecting to its node until ctx ends.
	go back.run(ctx, gateway.wsURL)
	var otherURL atomic.Value
	otherURL.Store(gateway.wsURL)
	go func() {
		for ctx.Err() == nil {
			_ = other.session(ctx, otherURL.Load().(string))
			otherURL.Store(reader.wsURL)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	rsWaitAll(t, []*rsClient{back, other}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() >= 1 })
	stopWriter, written := writeAttendance(db, "2015-01-01")
	rsWaitAll(t, []*rsClient{back, other}, 30*time.Second, "events before the kill", func(c *rsClient) bool { n, _ := c.progress(); return n >= 20 })
	gateway.proc.Kill(t)
	gateway.start(t)
	rsWaitAll(t, []*rsClient{back, other}, 30*time.Second, "events after the restart", func(c *rsClient) bool { return c.sessionCount() >= 2 })
	time.Sleep(500 * time.Millisecond)
	stopWriter()
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	want := attendanceAfter(t, db, base)
	rsWaitAll(t, []*rsClient{back, other}, 30*time.Second, "every row", hasAll(len(want), want[len(want)-1]))
	cancel()
	for _, cl := range []*rsClient{back, other} {
		st := cl.state()
		checkClean(t, cl.name, st)
		checkSequence(t, cl.name, st.uniq, want)
	}
	if strings.Contains(reader.proc.Stderr(), `"level":"ERROR"`) {
		t.Errorf("the reader noticed:\n%s", reader.proc.stderrTail())
	}
	t.Logf("%d rows committed across the restart; both clients have each once, in order (%d and %d duplicates before dedup)", len(want), back.state().dups, other.state().dups)
}

// TestClusterReaderRole: `--role reader` streams the slot and publishes,
// serving only health, readiness and metrics; `--role gateway` nodes serve
// the clients. With the memory log, any role but all is refused.
func TestClusterReaderRole(t *testing.T) {
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	nodes := startClusterNodes(t, db, nc, "reader", "gateway")
	reader, gateway := nodes[0], nodes[1]
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/ws": 404, "/api/realtime/sync": 404} {
		resp, err := http.Get("http://" + reader.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("reader %s: %d, want %d: %.300s", path, resp.StatusCode, want, body)
		}
	}
	tok := gwUserToken(t, "2", "admin")
	cl := gwConnect(t, "admin@gateway", gateway.wsURL, gwViaHeader, tok)
	cl.mustSubscribe("table:attendance")
	id := markAttendance(t, db, 3)
	if m := cl.nextEvent("attendance.marked"); idOf(m) != id {
		t.Fatalf("row %d, want %d", idOf(m), id)
	}

	// The memory log: one process is both.
	cfg := WriteConfig(t, db, map[string]any{"auth.jwt.secret": gwSecret, "source.slot": "other_" + db.Name})
	p := Start(t, nil, "serve", "--config", cfg, "--role", "gateway")
	if code := p.Wait(t, readyTimeout); code != 2 || !strings.Contains(p.Stderr(), "needs log.backend: nats") {
		t.Fatalf("serve --role gateway with the memory log: exit %d, %s", code, p.stderrTail())
	}
	if n := db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", "other_"+db.Name); n != 0 {
		t.Fatalf("a refused serve left a slot")
	}
}

// TestClusterServeRefusesBadBus: a stream serve cannot use (here another
// stream takes its subjects) is refused before anything is created in the
// database: exit 2, no slot left behind. A NATS that cannot be reached
// exits 1 (it may come back; systemd restarts it).
func TestClusterServeRefusesBadBus(t *testing.T) {
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"cdc_" + db.Name + ".exam.*"}}); err != nil {
		t.Fatal(err)
	}
	edits := map[string]any{
		"auth.jwt.secret":         gwSecret,
		"source.slot":             "s_" + db.Name,
		"log.backend":             "nats",
		"log.nats.urls":           nc.URLs(),
		"log.nats.stream":         "S_" + db.Name,
		"log.nats.subject_prefix": "cdc_" + db.Name,
		"log.nats.replicas":       1,
	}
	p := Start(t, nil, "serve", "--config", WriteConfig(t, db, edits))
	if code := p.Wait(t, readyTimeout); code != 2 || !strings.Contains(p.Stderr(), "OTHER") {
		t.Fatalf("serve with an overlapping stream: exit %d, %s", code, p.stderrTail())
	}
	edits["log.nats.urls"] = []string{fmt.Sprintf("nats://127.0.0.1:%d", FreePort(t))}
	p = Start(t, nil, "serve", "--config", WriteConfig(t, db, edits))
	if code := p.Wait(t, readyTimeout); code != 1 {
		t.Fatalf("serve with NATS unreachable: exit %d, want 1: %s", code, p.stderrTail())
	}
	if n := db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", "s_"+db.Name); n != 0 {
		t.Fatalf("a refused serve left its slot")
	}
}
