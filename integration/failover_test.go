package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Issue 13, end to end: the replication reader fails over. Two or three
// `serve --role all` nodes on one slot and one JetStream stream (a real
// three-server NATS cluster, a real PostgreSQL) are leader candidates;
// the leader is SIGKILLed, SIGSTOPped, cut off the database, PostgreSQL
// restarts, NATS loses its quorum, every node restarts in turn. A writer
// commits numbered single-row transactions throughout, and clients on
// every node, moving to another node with their cursor whenever theirs
// goes away, must each end with every committed row exactly once, in
// commit order, with the same event ids everywhere; one node leads at the
// end. These are correctness tests: nothing here times the failover.

const (
	// failoverTimeout is the nodes' source.failover_timeout.
	failoverTimeout = 3 * time.Second
	// takeoverWait bounds the wait for a standby to lead: ten times
	// failoverTimeout, for a loaded machine.
	takeoverWait = 30 * time.Second
	// flowWait bounds the wait for a committed row to reach the clients.
	flowWait = 30 * time.Second

	mLeader    = "cdc_broadcaster_reader_leader"
	mFailovers = "cdc_broadcaster_reader_failovers_total"

	logLeading    = `"msg":"reader: leading"`
	logStandingBy = `"msg":"reader: standing by"`

	// failoverInsert commits one attendance row, on a day of its own.
	failoverInsert = `INSERT INTO attendance (student_id, class_id, date, status)
		SELECT id, class_id, DATE '2000-01-01' + nextval('failover_day')::int, 'present'
		FROM students ORDER BY id LIMIT 1`
)

// failoverRig is a test's cluster: NATS, a database, the serve nodes, the
// clients (two homed on each node) and the writer.
type failoverRig struct {
	db      *DB
	nc      *NATSCluster
	nodes   []*clusterNode
	tok     string // an admin's, for /api/realtime/stats
	base    int64  // the newest attendance row before the writer
	clients []*roamer
	writer  *rsWriter

	cancel    context.CancelFunc
	wg        sync.WaitGroup // the clients' goroutines
	stopOnce  sync.Once
	startedAt time.Time
}

// roamer is an rsClient that, whenever its connection ends or cannot be
// made, goes on at the next node in turn, resuming with its cursor, as a
// browser behind a load balancer would.
type roamer struct {
	*rsClient
	at    atomic.Int64 // index of the node of its current or last connection
	moves atomic.Int64 // connections that ended or failed
}

// roam keeps the client subscribed until ctx ends.
func (r *roamer) roam(ctx context.Context, urls []string) {
	for i := int(r.at.Load()); ctx.Err() == nil; i = (i + 1) % len(urls) {
		r.at.Store(int64(i))
		if err := r.session(ctx, urls[i]); err == nil || ctx.Err() != nil {
			return
		}
		r.moves.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startFailoverRig starts a three-server NATS cluster, a database with the
// example school, and n serve --role all nodes on one slot and stream:
// node0 first, then, once it leads, the others, each until it stands by.
// edits, when set, gives node i's own config edits. Two clients per node
// subscribe to table:attendance; the writer is not started yet.
func startFailoverRig(t *testing.T, n int, edits func(db *DB, i int) map[string]any) *failoverRig {
	t.Helper()
	r := &failoverRig{nc: StartNATSCluster(t, 3), db: NewDB(t, WithExampleData()), startedAt: time.Now()}
	waitPlacement(t, r.nc, "PROBE_"+r.db.Name)
	r.db.Exec(t, "CREATE SEQUENCE failover_day")
	r.tok = gwUserToken(t, "2", "admin")
	for i := range n {
		node := &clusterNode{name: fmt.Sprintf("node%d", i), addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), role: "all"}
		node.wsURL = "ws://" + node.addr + "/ws"
		all := map[string]any{
			"source.slot":                              "s_" + r.db.Name,
			"source.status_interval":                   "200ms",
			"source.failover_timeout":                  failoverTimeout,
			"server.listen":                            node.addr,
			"auth.jwt.secret":                          gwSecret,
			"limits.max_connections_per_ip_per_minute": 100000,
			"limits.max_connections_per_user":          1000,
			"log.backend":                              "nats",
			"log.nats.urls":                            r.nc.URLs(),
			"log.nats.stream":                          "S_" + r.db.Name,
			"log.nats.subject_prefix":                  "cdc_" + r.db.Name,
			"log.nats.replicas":                        r.nc.Size(),
			// Small: a client resuming on another node after a failover
			// is served from the stream, not the node's memory.
			"log.cache_events": 100,
		}
		if edits != nil {
			for k, v := range edits(r.db, i) {
				all[k] = v
			}
		}
		node.cfg = WriteConfig(t, r.db, all)
		r.nodes = append(r.nodes, node)
		want := logStandingBy
		if i == 0 {
			want = logLeading
		}
		r.start(t, i, want)
	}
	r.base = r.db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")

	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(r.stopClients)
	urls := make([]string, n)
	for i, node := range r.nodes {
		urls[i] = node.wsURL
	}
	for i := range n {
		for j, who := range [][2]string{{"1", "super_admin"}, {"2", "admin"}} {
			c := &roamer{rsClient: newRSClient(t, fmt.Sprintf("client%d@node%d", j, i), gwUserToken(t, who[0], who[1]), "table:attendance")}
			c.at.Store(int64(i))
			r.clients = append(r.clients, c)
			r.wg.Add(1)
			go func() { defer r.wg.Done(); c.roam(ctx, urls) }()
		}
	}
	r.waitClients(t, r.clients, gwWait, "subscribed", func(c *roamer) bool { return c.sessionCount() >= 1 })
	return r
}

// waitPlacement waits until the cluster can place a stream on all of its
// servers: NATSCluster.WaitReady can return while the JetStream meta
// leader still counts a peer offline (just after a meta leader change),
// and the first node, creating the stream, would then exit 1 with "no
// suitable peers for placement". It creates a stream named name and
// deletes it again.
func waitPlacement(t *testing.T, nc *NATSCluster, name string) {
	t.Helper()
	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(natsReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Replicas: nc.Size()})
		if err == nil {
			err = js.DeleteStream(ctx, name)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS cannot place a stream of %d replicas within %v: %v", nc.Size(), natsReadyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs node i's serve (again), waits until it serves and is ready,
// and until its stderr shows want (a reader log line).
func (r *failoverRig) start(t *testing.T, i int, want string) {
	t.Helper()
	n := r.nodes[i]
	n.proc = Start(t, nil, "serve", "--config", n.cfg, "--role", n.role)
	n.proc.WaitStderr(t, `"msg":"serving"`, readyTimeout)
	r.waitReady(t, n)
	n.proc.WaitStderr(t, want, readyTimeout)
}

// waitReady polls node n's /readyz until 200, failing the test at once if
// its process exits meanwhile.
func (r *failoverRig) waitReady(t *testing.T, n *clusterNode) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-n.proc.done:
			t.Fatalf("%s exited (code %d) before it was ready; stderr:\n%s", n.name, n.proc.exitCodeNow(), n.proc.stderrTail())
		default:
		}
		resp, err := client.Get("http://" + n.addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready within %v (%s)%s", n.name, readyTimeout, last, r.tails())
		}
	}
}

// startWriting starts the writer (a row every 5 ms, retrying through
// errors) and waits until every client has some of its rows.
func (r *failoverRig) startWriting(t *testing.T) {
	t.Helper()
	r.writer = startWriter(t, r.db, failoverInsert, 5*time.Millisecond)
	r.waitClients(t, r.clients, flowWait, "the first rows", func(c *roamer) bool { n, _ := c.progress(); return n >= 20 })
}

// stopClients ends the clients' sessions and waits for their goroutines.
func (r *failoverRig) stopClients() {
	r.stopOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
	})
}

// tails is the end of every node's stderr, for failure messages.
func (r *failoverRig) tails() string {
	var b strings.Builder
	for _, n := range r.nodes {
		s := n.proc.Stderr()
		if len(s) > 1500 {
			s = "..." + s[len(s)-1500:]
		}
		fmt.Fprintf(&b, "\n--- %s (pid %d) stderr tail:\n%s", n.name, n.proc.Cmd.Process.Pid, s)
	}
	return b.String()
}

// waitClients polls until cond holds for every client in who, failing the
// test after timeout with what each lagging one has and the nodes' tails.
func (r *failoverRig) waitClients(t *testing.T, who []*roamer, timeout time.Duration, what string, cond func(*roamer) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var behind []string
		for _, c := range who {
			if !cond(c) {
				st := c.state()
				behind = append(behind, fmt.Sprintf("%s at node%d (%d events, last row %d, %d sessions, %d moves, ended: %q, resets %d, odd %q)",
					c.name, c.at.Load(), len(st.uniq), st.maxRow, st.sessions, c.moves.Load(), lastN(st.drops, 3), len(st.resets), lastN(st.odd, 3)))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v for %d of %d clients: %s%s", what, timeout, len(behind), len(who), strings.Join(behind, "; "), r.tails())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastN is the last n of s.
func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// maxRow is the newest committed attendance row; it retries while the
// database is away (PostgreSQL restarting), up to flowWait.
func (r *failoverRig) maxRow(t *testing.T) int64 {
	t.Helper()
	deadline := time.Now().Add(flowWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var id int64
		err := r.db.Pool.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM attendance").Scan(&id)
		cancel()
		if err == nil {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("newest attendance row: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFlowing waits until the writer has committed rows after now and each
// client in who has received them: events flow from the database to those
// clients, whichever node leads.
func (r *failoverRig) waitFlowing(t *testing.T, who []*roamer, what string) {
	t.Helper()
	target := r.maxRow(t) + 5
	for deadline := time.Now().Add(flowWait); r.maxRow(t) < target; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the writer did not commit row %d within %v (%d failures, last %v)", what, target, flowWait, r.writer.failures.Load(), r.writer.lastErr.Load())
		}
	}
	r.waitClients(t, who, flowWait, what, func(c *roamer) bool { _, mx := c.progress(); return mx >= target })
}

// clientsOff are the clients whose current connection is not to node i.
func (r *failoverRig) clientsOff(i int) []*roamer {
	var out []*roamer
	for _, c := range r.clients {
		if int(c.at.Load()) != i {
			out = append(out, c)
		}
	}
	return out
}

// readerView is what a node says of its reader: the leader metric, its
// failovers, and the reader state of /api/realtime/stats.
type readerView struct {
	leader, failovers float64
	state             string
	err               error // the node did not answer
}

func (v readerView) String() string {
	if v.err != nil {
		return "no answer: " + v.err.Error()
	}
	return fmt.Sprintf("%s %v, %s %v, stats reader %q", mLeader, v.leader, mFailovers, v.failovers, v.state)
}

// view asks node i, within 2 s; it does not touch t, as the node may be
// dead or frozen.
func (r *failoverRig) view(i int) readerView {
	client := &http.Client{Timeout: 2 * time.Second}
	addr := r.nodes[i].addr
	var v readerView
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return readerView{err: err}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		return readerView{err: fmt.Errorf("parse /metrics: %w", err)}
	}
	s := scrape(mfs)
	if !s.has(mLeader) {
		return readerView{err: fmt.Errorf("no %s in /metrics", mLeader)}
	}
	v.leader, v.failovers = s.value(mLeader), s.value(mFailovers)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/realtime/stats", nil)
	req.Header.Set("Authorization", "Bearer "+r.tok)
	resp, err = client.Do(req)
	if err != nil {
		return readerView{err: err}
	}
	defer resp.Body.Close()
	var st clusterStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		return readerView{err: fmt.Errorf("stats: HTTP %d, %v", resp.StatusCode, err)}
	}
	v.state = st.Reader.State
	return v
}

// views asks every node but those in skip.
func (r *failoverRig) views(skip ...int) map[int]readerView {
	out := map[int]readerView{}
	for i := range r.nodes {
		if !slices.Contains(skip, i) {
			out[i] = r.view(i)
		}
	}
	return out
}

func describeViews(vs map[int]readerView) string {
	var parts []string
	for _, i := range slices.Sorted(maps.Keys(vs)) {
		parts = append(parts, fmt.Sprintf("node%d: %v", i, vs[i]))
	}
	return strings.Join(parts, "; ")
}

// waitOneLeader waits until every node answers, exactly one reports
// itself the leader (metric 1, stats "leader") and every other a standby
// (metric 0, stats "standby"), and returns the leader.
func (r *failoverRig) waitOneLeader(t *testing.T, what string) int {
	t.Helper()
	deadline := time.Now().Add(takeoverWait)
	for {
		vs := r.views()
		leader, ok := -1, true
		for i, v := range vs {
			switch {
			case v.err != nil:
				ok = false
			case v.leader == 1 && v.state == "leader" && leader < 0:
				leader = i
			case v.leader == 0 && v.state == "standby":
			default:
				ok = false
			}
		}
		if ok && leader >= 0 {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not exactly one leader and the rest standbys within %v: %s%s", what, takeoverWait, describeViews(vs), r.tails())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitTakeover waits until a node other than old reports itself the
// leader (old is not asked: it may be dead, frozen or cut off) and
// returns it.
func (r *failoverRig) waitTakeover(t *testing.T, old int, what string) int {
	t.Helper()
	deadline := time.Now().Add(takeoverWait)
	for {
		vs := r.views(old)
		for i, v := range vs {
			if v.err == nil && v.leader == 1 {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no node but node%d leads within %v: %s%s", what, old, takeoverWait, describeViews(vs), r.tails())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finish stops the writer, waits until every client has every committed
// row and checks: each received them exactly once (no duplicate at all),
// in commit order, without a reset; all received the same event ids; one
// node leads and the others stand by; no node panicked.
func (r *failoverRig) finish(t *testing.T) {
	t.Helper()
	r.writer.Stop()
	want := attendanceAfter(t, r.db, r.base)
	if len(want) == 0 {
		t.Fatal("the writer committed nothing")
	}
	r.waitClients(t, r.clients, 60*time.Second, "every committed row", func(c *roamer) bool {
		n, mx := c.progress()
		return n >= len(want) && mx >= want[len(want)-1]
	})
	r.stopClients()
	first := r.clients[0].state()
	moves := 0
	for _, c := range r.clients {
		st := c.state()
		checkClean(t, c.name, st)
		checkSequence(t, c.name+" (as received)", st.raw, want)
		if st.dups != 0 {
			t.Errorf("%s: %d duplicates", c.name, st.dups)
		}
		if !slices.Equal(st.uniq, first.uniq) {
			t.Errorf("%s and %s received different event ids (or timestamps) for the same rows", c.name, r.clients[0].name)
		}
		moves += int(c.moves.Load())
	}
	leader := r.waitOneLeader(t, "at the end")
	for _, n := range r.nodes {
		if s := n.proc.Stderr(); strings.Contains(s, "panic:") || strings.Contains(s, "fatal error:") {
			t.Errorf("%s panicked:\n%s", n.name, n.proc.stderrTail())
		}
	}
	t.Logf("%d rows committed (%d writer errors, last %v); %d clients on %d nodes each have all, once, in order, the same ids; they moved %d times in all; node%d leads at the end (%v)",
		len(want), r.writer.failures.Load(), r.writer.lastErr.Load(), len(r.clients), len(r.nodes), moves, leader, time.Since(r.startedAt).Round(time.Millisecond))
}

// noWriterFailures fails the test if the writer met an error: the test
// did not touch the database.
func (r *failoverRig) noWriterFailures(t *testing.T) {
	t.Helper()
	if f := r.writer.failures.Load(); f > 0 {
		t.Errorf("the writer failed %d times (%v): the database was not meant to be touched", f, r.writer.lastErr.Load())
	}
}

// TestFailoverSIGKILL: the leader of three candidates is SIGKILLed ten
// times in a row; each time another node takes over (its failover count
// goes up), events flow again to every client, and the killed node is
// started again as a standby. Nothing is lost or repeated.
func TestFailoverSIGKILL(t *testing.T) {
	const kills = 10
	r := startFailoverRig(t, 3, nil)
	r.startWriting(t)
	for k := range kills {
		what := fmt.Sprintf("kill %d", k+1)
		old := r.waitOneLeader(t, "before "+what)
		before := r.views(old)
		// At a random point of the flow: mid-transaction, mid-publish, idle.
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		r.nodes[old].proc.Kill(t)
		now := r.waitTakeover(t, old, what)
		if v := r.view(now); v.err != nil || v.failovers <= before[now].failovers {
			t.Errorf("%s: node%d took over from node%d; its %s was %v before, now %v", what, now, old, mFailovers, before[now].failovers, v)
		}
		r.waitFlowing(t, r.clients, "events after "+what)
		r.start(t, old, logStandingBy)
	}
	r.noWriterFailures(t)
	r.finish(t)
}

// TestFailoverSIGSTOP: the leader is frozen (SIGSTOP) past its
// walsender's timeout; the standby takes over and events flow to the
// clients not on the frozen node. Thawed (SIGCONT), the old leader finds
// itself deposed: it publishes nothing twice or out of order, stands by,
// and its clients get everything.
func TestFailoverSIGSTOP(t *testing.T) {
	r := startFailoverRig(t, 2, nil)
	r.startWriting(t)
	old := r.waitOneLeader(t, "before the freeze")
	pid := r.nodes[old].proc.Cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	now := r.waitTakeover(t, old, "the freeze")
	r.waitFlowing(t, r.clientsOff(old), "events while node"+fmt.Sprint(old)+" is frozen")
	thaw()
	r.waitFlowing(t, r.clients, "events after the thaw")
	if got := r.waitOneLeader(t, "after the thaw"); got != now {
		t.Errorf("node%d leads after the thaw, want node%d, which took over", got, now)
	}
	r.noWriterFailures(t)
	r.finish(t)
}

// TestFailoverNetworkCut: the leader reaches PostgreSQL through a proxy,
// the standby directly. The proxy goes silent (a partition: connections
// stay open, nothing passes either way); the standby takes over. Healed,
// the old leader's held traffic goes on, and it stands by: nothing twice,
// nothing out of order.
func TestFailoverNetworkCut(t *testing.T) {
	proxy := startTCPProxy(t, fmt.Sprintf("%s:%d", PG.Host, PG.Port))
	r := startFailoverRig(t, 2, func(db *DB, i int) map[string]any {
		if i != 0 {
			return nil
		}
		return map[string]any{"source.database_url": fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", proxy.Port(), db.Name)}
	})
	r.startWriting(t)
	if got := r.waitOneLeader(t, "before the cut"); got != 0 {
		t.Fatalf("node%d leads, want node0 (the one behind the proxy)", got)
	}
	if proxy.Open() == 0 {
		t.Fatal("the leader has no connection through the proxy")
	}
	proxy.BlackHole()
	cut := time.Now()
	r.waitTakeover(t, 0, "the cut")
	took := time.Since(cut)
	r.waitFlowing(t, r.clientsOff(0), "events during the cut")
	proxy.Heal()
	r.waitFlowing(t, r.clients, "events after the heal")
	if got := r.waitOneLeader(t, "after the heal"); got != 1 {
		t.Errorf("node%d leads after the heal, want node1, which took over", got)
	}
	r.noWriterFailures(t)
	r.finish(t)
	t.Logf("proxy: %d connections forwarded, %d open at the end; the standby led %v after the cut began", proxy.accepted.Load(), proxy.Open(), took.Round(time.Millisecond))
}

// TestFailoverPostgresRestart: PostgreSQL restarts (immediate stop: a
// crash to the server) under two candidates while the writer commits;
// afterwards one leads, the other stands by, and every row committed
// reaches every client once, in order.
func TestFailoverPostgresRestart(t *testing.T) {
	r := startFailoverRig(t, 2, nil)
	r.startWriting(t)
	r.waitOneLeader(t, "before the restart")
	PG.Restart(t)
	r.waitFlowing(t, r.clients, "events after the restart")
	r.finish(t)
}

// TestFailoverNATSQuorum: two of the three NATS servers stop (the stream
// loses its quorum: new events cannot be stored, the nodes wait) while the
// writer commits. The leader, waiting for NATS, may lose its walsender and
// its lock meanwhile; the quorum comes back the moment the standby takes
// the lock (or after three failover timeouts if it does not), when the
// deposed leader still holds what it could not publish and the new one
// begins its term: the hardest moment for the fencing. Everything
// committed reaches every client once, in order.
func TestFailoverNATSQuorum(t *testing.T) {
	r := startFailoverRig(t, 2, nil)
	r.startWriting(t)
	before := r.waitOneLeader(t, "before the quorum loss")
	standby := r.nodes[1-before].proc
	from := len(standby.Stderr())
	r.nc.Stop(t, 1)
	r.nc.Stop(t, 2)
	lost, outage := r.maxRow(t), time.Now()
	tookOver := false
	for deadline := time.Now().Add(3 * failoverTimeout); !tookOver && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tookOver = strings.Contains(standby.Stderr()[from:], logLeading)
	}
	lasted := time.Since(outage)
	if r.maxRow(t) == lost {
		t.Fatalf("the writer committed nothing during the quorum loss (%d failures, last %v)", r.writer.failures.Load(), r.writer.lastErr.Load())
	}
	delivered := 0
	for _, c := range r.clients {
		if _, mx := c.progress(); mx > lost {
			delivered++
		}
	}
	r.nc.Start(t, 1)
	r.nc.Start(t, 2)
	r.nc.WaitReady(t)
	r.waitFlowing(t, r.clients, "events after the quorum came back")
	r.noWriterFailures(t)
	r.finish(t)
	t.Logf("quorum lost for %v (the standby took the lock meanwhile: %v); node%d led before, node%d after; %d of %d clients had a row committed after the loss before it ended",
		lasted.Round(time.Millisecond), tookOver, before, r.waitOneLeader(t, "at the end"), delivered, len(r.clients))
}

// TestFailoverRollingRestart: each of three nodes in turn is stopped
// (SIGTERM, exit 0) and started again while the writer commits; after
// each, one node leads and events flow to every client.
func TestFailoverRollingRestart(t *testing.T) {
	r := startFailoverRig(t, 3, nil)
	r.startWriting(t)
	for i, n := range r.nodes {
		what := "the restart of " + n.name
		r.waitOneLeader(t, "before "+what)
		if code := n.proc.Stop(t); code != 0 {
			t.Fatalf("%s exited %d on SIGTERM, want 0:\n%s", n.name, code, n.proc.stderrTail())
		}
		r.waitTakeover(t, i, "while "+n.name+" is down")
		r.waitFlowing(t, r.clients, "events while "+n.name+" is down")
		r.start(t, i, logStandingBy)
		r.waitFlowing(t, r.clients, "events after "+what)
	}
	r.noWriterFailures(t)
	r.finish(t)
}

// TestMemorySlotRefusesSecondServe: with the in-memory log (the default),
// a second serve on the slot another serve reads refuses to start with a
// clear error, and the first goes on undisturbed: its stream does not
// reconnect, and a client on it gets every row committed meanwhile once,
// in order.
func TestMemorySlotRefusesSecondServe(t *testing.T) {
	db := NewDB(t, WithExampleData())
	db.Exec(t, "CREATE SEQUENCE failover_day")
	first := rsStartServe(t, db, nil)
	base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")
	cl := newRSClient(t, "admin@first", gwUserToken(t, "2", "admin"), "table:attendance")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cl.session(ctx, first.wsURL) }()
	rsWaitAll(t, []*rsClient{cl}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })
	w := startWriter(t, db, failoverInsert, 5*time.Millisecond)
	rsWaitAll(t, []*rsClient{cl}, flowWait, "the first rows", func(c *rsClient) bool { n, _ := c.progress(); return n >= 20 })
	before := scrapeMetrics(t, first.addr)

	second := Start(t, nil, "serve", "--config", WriteConfig(t, db, map[string]any{
		"source.slot":     first.slot,
		"server.listen":   fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		"auth.jwt.secret": gwSecret,
	}))
	code := second.Wait(t, readyTimeout)
	if code == 0 || !strings.Contains(second.Stderr(), "is being read by another process") {
		t.Errorf("a second serve on slot %s: exit %d, want non-zero with \"is being read by another process\":\n%s", first.slot, code, second.stderrTail())
	}
	w.Stop()
	if f := w.failures.Load(); f > 0 {
		t.Errorf("the writer failed %d times (%v)", f, w.lastErr.Load())
	}
	want := attendanceAfter(t, db, base)
	rsWaitAll(t, []*rsClient{cl}, flowWait, "every committed row", hasAll(len(want), want[len(want)-1]))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the client's connection to the first serve ended: %v\n%s", err, first.proc.stderrTail())
	}
	st := cl.state()
	checkClean(t, cl.name, st)
	checkSequence(t, cl.name+" (as received)", st.raw, want)
	after := scrapeMetrics(t, first.addr)
	if b, a := before.value(mReconnects), after.value(mReconnects); a != b {
		t.Errorf("the first serve's replication reconnected during the second's attempt (%s %v -> %v):\n%s", mReconnects, b, a, first.proc.stderrTail())
	}
	if v := after.value(mLeader); v != 1 {
		t.Errorf("the first serve: %s %v, want 1 (it reads the slot)", mLeader, v)
	}
	t.Logf("the second serve exited %d: %s; the first went on: %d rows committed meanwhile reached its client once, in order",
		code, lastLine(second.Stderr()), len(want))
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
