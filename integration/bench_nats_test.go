package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/treasure-home/cdc-broadcaster/natslog"
)

// The benchmarks of issue 12 (BENCHMARKS.md, "Cluster (log.backend:
// nats)"): serve on a JetStream stream, each figure next to a baseline
// measured in the same run (serve on the memory backend, pg_recvlogical,
// a gateway's memory cache). Like bench_test.go they run only with
// CDC_BENCH=1, on real nats-server processes (.tmp/bin/nats-server), and
// check that a run is valid, never how fast it was.

// benchNATSEdits are the config edits that put serve on nc's stream, a
// stream of its own for name.
func benchNATSEdits(nc *NATSCluster, name string) map[string]any {
	return map[string]any{
		"log.backend":             "nats",
		"log.nats.urls":           nc.URLs(),
		"log.nats.stream":         "S_" + name,
		"log.nats.subject_prefix": "cdc_" + name,
		"log.nats.replicas":       nc.Size(),
		"retention.max_events":    10000000,
	}
}

// benchStream creates (or opens) the stream of benchNATSEdits(nc, name),
// for a test to count what it holds.
func benchStream(t *testing.T, nc *NATSCluster, name string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := natslog.Options{URLs: nc.URLs(), Stream: "S_" + name, SubjectPrefix: "cdc_" + name,
		Replicas: nc.Size(), MaxMsgs: 10000000, Create: true, Name: "bench"}
	conn, js, err := natslog.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	st, err := natslog.EnsureStream(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// streamEvents counts the events (not the control records) in st: events
// are on <prefix>.<domain>.<action>, control records on <prefix>._control.
func streamEvents(t *testing.T, st jetstream.Stream, name string) int64 {
	t.Helper()
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("cdc_"+name+".*.*"))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return int64(n)
}

// waitStreamEvents waits until st holds want events.
func waitStreamEvents(t *testing.T, st jetstream.Stream, name string, want int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := streamEvents(t, st, name)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %d events after %v, want %d", n, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBenchNode is startBenchServe with --role: a reader or all node waits
// until it streams, a gateway until /readyz answers 200.
func startBenchNode(t *testing.T, db *DB, slot, role string, edits map[string]any) *benchServe {
	t.Helper()
	if role == "all" {
		return startBenchServe(t, db, slot, edits)
	}
	all := map[string]any{
		"source.slot":     slot,
		"server.listen":   "127.0.0.1:0",
		"auth.jwt.secret": gwSecret,
		"audit.log":       os.DevNull,
		"log.level":       "info",
		"limits.max_connections_per_ip_per_minute": 10000000,
		"limits.max_connections_per_user":          100,
		"limits.max_messages_per_second":           100000,
	}
	for k, v := range edits {
		all[k] = v
	}
	cfg := WriteConfig(t, db, all)
	pp := FreePort(t)
	p := Start(t, nil, "serve", "--config", cfg, "--role", role, "--pprof", fmt.Sprintf("127.0.0.1:%d", pp))
	p.WaitStderr(t, `"msg":"serving"`, 2*time.Minute)
	m := servingListen.FindStringSubmatch(p.Stderr())
	if m == nil {
		t.Fatalf("serve logged no listen address:\n%s", p.Stderr())
	}
	s := &benchServe{proc: p, addr: m[1], wsURL: "ws://" + m[1] + "/ws", pprofAddr: fmt.Sprintf("127.0.0.1:%d", pp)}
	if role == "reader" {
		p.WaitStderr(t, readinessMsg, 2*time.Minute)
		return s
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s node not ready: %v\n%s", role, err, p.stderrTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natsCPU is the CPU time of nc's nats-server processes so far (0 for
// nil).
func natsCPU(t *testing.T, nc *NATSCluster) float64 {
	if nc == nil {
		return 0
	}
	sum := 0.0
	for _, srv := range nc.servers {
		if p := srv.current(); p != nil && !p.exited() {
			sum += cpuSeconds(t, p.cmd.Process.Pid)
		}
	}
	return sum
}

// waitEvents waits until the clients have read total event frames.
func (bc *benchClients) waitEvents(total int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for bc.events.Load() < total {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// benchInts parses a comma-separated list from env, or returns def.
func benchInts(t *testing.T, env string, def []int) []int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, v, err)
		}
		out = append(out, n)
	}
	return out
}

// ---- 1. The stream hop's latency ----

// TestBenchNATSLatency measures commit-to-client latency (the writer's
// INSERT returned → the last of N clients read the event) of serve on the
// memory backend and of serve --role all on a JetStream stream (one
// nats-server, and three with BENCH_NATS_SERVERS=1,3), one after the other
// on the same machine with the same load and clients, each with
// pg_recvlogical reading the same commits; the difference is the stream
// hop (publish, acknowledgement, the gateway's consumer).
func TestBenchNATSLatency(t *testing.T) {
	benchOnly(t)
	sizes := benchInts(t, "BENCH_NATS_SERVERS", []int{1})
	ns := benchInts(t, "BENCH_LATENCY_CLIENTS", []int{1, 1000})
	clusters := map[int]*NATSCluster{}
	for _, s := range sizes {
		clusters[s] = StartNATSCluster(t, s)
	}
	type cell struct{ p50, p99 time.Duration }
	var report strings.Builder
	fmt.Fprintf(&report, "### Commit-to-client latency, memory backend vs the stream\n\n%s\n\nTime from the writer's commit (its INSERT returned) to the last of N clients reading the event; pg_recvlogical (test_decoding, to a pipe) reads the same commits at the same time. Single-row transactions, 8 writer connections, open-loop schedule. Each backend on a database, slot and clients of its own, one after the other; one row reaches every client before the measured ones (warm-up).\n\n| clients | rows/s (achieved) | backend | serve p50 / p99 / max (ms) | pg_recvlogical p50 / p99 (ms) | serve − pg_recvlogical p50 / p99 (ms) | stream hop (− memory) p50 / p99 (ms) | CPU: serve / nats-server / clients+writer |\n|---|---|---|---|---|---|---|---|\n", machineLine(t))
	var base int64 = 20_000_000
	for _, n := range ns {
		rates := []int{100, 1000}
		if n >= 1000 {
			rates = []int{100}
		}
		for _, rate := range rates {
			d := 5 * time.Second
			if rate <= 100 {
				d = 10 * time.Second
			}
			var mem cell
			backends := []string{"memory"}
			for _, s := range sizes {
				backends = append(backends, fmt.Sprintf("nats-%d", s))
			}
			for _, backend := range backends {
				db := NewDB(t, WithExampleData())
				var edits map[string]any
				var nc *NATSCluster
				if backend != "memory" {
					size, _ := strconv.Atoi(strings.TrimPrefix(backend, "nats-"))
					nc = clusters[size]
					edits = benchNATSEdits(nc, db.Name)
				}
				srv := startBenchServe(t, db, "s_"+db.Name, edits)
				clients := dialBenchClients(t, srv.wsURL, n, benchRole, []string{benchChannel}, nil)
				// One row first, to every client: what is measured is the
				// steady state, not a stream that is still electing its
				// leader or a consumer still starting.
				w0 := time.Now()
				db.Exec(t, insertAnnouncement, 900_000_000+base)
				if !clients.waitEvents(int64(n), time.Minute) {
					t.Fatalf("N=%d %s: the warm-up row reached %d of %d clients in a minute", n, backend, clients.events.Load(), n)
				}
				t.Logf("N=%d rate=%d %s: warm-up row at every client after %v", n, rate, backend, time.Since(w0).Round(time.Millisecond))
				rows := int(float64(rate) * d.Seconds())
				rec := newRecorder(base, rows, n)
				pgRec := newRecorder(base, rows, 1)
				clients.rec = rec
				stop := startRecvLogicalTD(t, db, "bl_"+db.Name, pgRec)
				cpu0, ncpu0, self0 := cpuSeconds(t, srv.proc.Cmd.Process.Pid), natsCPU(t, nc), cpuSeconds(t, os.Getpid())
				wrote, achieved := writeAtRate(t, db, base, rate, d, rec, pgRec)
				cpu := 100 * (cpuSeconds(t, srv.proc.Cmd.Process.Pid) - cpu0) / d.Seconds()
				ncpu := 100 * (natsCPU(t, nc) - ncpu0) / d.Seconds()
				self := 100 * (cpuSeconds(t, os.Getpid()) - self0) / d.Seconds()
				waitUntil := time.Now().Add(30 * time.Second)
				for !(rec.complete(wrote) && pgRec.complete(wrote)) && time.Now().Before(waitUntil) {
					time.Sleep(10 * time.Millisecond)
				}
				stop()
				lat, incomplete := rec.latencies(wrote)
				pgLat, pgIncomplete := pgRec.latencies(wrote)
				clients.close()
				for _, line := range strings.Split(srv.proc.Stderr(), "\n") {
					if (strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`)) && !strings.Contains(line, "pprof") {
						t.Logf("N=%d rate=%d %s: serve: %s", n, rate, backend, line)
					}
				}
				srv.proc.Kill(t)
				base += int64(rows)
				if pgIncomplete > 0 {
					t.Fatalf("pg_recvlogical missed %d of %d rows", pgIncomplete, wrote)
				}
				if incomplete > 0 {
					fmt.Fprintf(&report, "| %d | %d (%.0f) | %s | saturated: %d of %d rows not at every client 30 s after the last commit | | | | %.0f / %.0f / %.0f %% |\n", n, rate, achieved, backend, incomplete, wrote, cpu, ncpu, self)
					continue
				}
				c := cell{quantile(lat, .5), quantile(lat, .99)}
				hop := ""
				if backend == "memory" {
					mem = c
				} else if mem.p50 > 0 {
					hop = fmt.Sprintf("**%s** / **%s**", ms(c.p50-mem.p50), ms(c.p99-mem.p99))
				}
				fmt.Fprintf(&report, "| %d | %d (%.0f) | %s | %s / %s / %s | %s / %s | %s / %s | %s | %.0f / %.0f / %.0f %% |\n",
					n, rate, achieved, backend, ms(c.p50), ms(c.p99), ms(lat[len(lat)-1]),
					ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)),
					ms(c.p50-quantile(pgLat, .5)), ms(c.p99-quantile(pgLat, .99)), hop, cpu, ncpu, self)
				t.Logf("N=%d rate=%d %s: p50 %s p99 %s; pg %s %s; serve CPU %.0f%%", n, rate, backend, ms(c.p50), ms(c.p99),
					ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)), cpu)
			}
		}
	}
	report.WriteString("\nnats-K: serve --role all (reader and gateway in one process) on a stream of K nats-server processes (replicas K), on the same machine. stream hop: serve on the stream minus serve on the memory backend at the same N and rate. CPU: percent of one core during the writes, of serve, of the nats-server processes, and of the test process (the N clients and the writer); PostgreSQL and pg_recvlogical not counted.\n")
	benchReport(t, "%s", report.String())
}

// ---- 2. Decode throughput with the stream ----

// TestBenchNATSDecode is TestBenchDecode with serve publishing to a
// JetStream stream (one nats-server), next to pg_recvlogical and serve on
// the memory backend, each from a slot of its own created before the
// writes, in the same run. serve on the stream counts from its stream's
// start to the stream holding every event (acknowledged by nats-server),
// not to its own "caught up".
func TestBenchNATSDecode(t *testing.T) {
	benchOnly(t)
	const reps = 3
	rows := 100000
	if v := os.Getenv("BENCH_NATS_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	for i := range reps {
		for _, p := range []string{"b", "s", "n"} {
			db.Exec(t, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s%d_%s', 'pgoutput')", p, i, db.Name))
		}
	}
	t0 := time.Now()
	db.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
		INSERT INTO announcements (title, body, target_role) VALUES ('bench', 'bench', 'student'); COMMIT;
	END LOOP; END $$`, rows))
	var end string
	if err := db.Pool.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d single-row transactions written in %v, end LSN %s", rows, time.Since(t0).Round(time.Millisecond), end)

	var base, mem, str []time.Duration
	var memPeak, strPeak int64
	var cpus []string
	for i := range reps {
		cmd := recvLogical(t, db, "--slot", fmt.Sprintf("b%d_%s", i, db.Name), "--start", "--endpos", end,
			"-o", "proto_version=2", "-o", "publication_names=cdc_broadcaster", "-o", "messages=true",
			"-f", os.DevNull, "-F", "0", "-s", "10")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		st := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("pg_recvlogical: %v: %s", err, stderr.String())
		}
		base = append(base, time.Since(st))

		d, hwm := serveDecode(t, db, fmt.Sprintf("s%d_%s", i, db.Name), rows, "")
		mem = append(mem, d)
		memPeak = max(memPeak, hwm)

		profile := ""
		if i == 0 {
			profile = fmt.Sprintf("nats-decode-cpu-%d.pprof", rows)
		}
		d2, hwm2, cpu := serveDecodeNATS(t, db, nc, fmt.Sprintf("n%d_%s", i, db.Name), fmt.Sprintf("%s_%d", db.Name, i), rows, profile)
		str = append(str, d2)
		strPeak = max(strPeak, hwm2)
		cpus = append(cpus, cpu)
		t.Logf("rep %d: pg_recvlogical %v, serve memory %v, serve nats %v", i, base[i].Round(time.Millisecond), d.Round(time.Millisecond), d2.Round(time.Millisecond))
	}
	slices.Sort(base)
	slices.Sort(mem)
	slices.Sort(str)
	rate := func(d time.Duration) float64 { return float64(rows) / d.Seconds() }
	b, m, s := base[reps/2], mem[reps/2], str[reps/2]
	benchReport(t, "### Decode throughput with the stream\n\n%s\n\n%d single-row transactions, written before any consumer ran; median of %d runs each, each consumer alone, from a slot of its own.\n\n| consumer | rows/s (time) | ratio to pg_recvlogical | peak RSS |\n|---|---|---|---|\n| pg_recvlogical (pgoutput → /dev/null) | %.0f (%v) | 1 | |\n| serve, memory backend (to the event log) | %.0f (%v) | **%.2f** | %d MiB |\n| serve --role all, log.backend nats, 1 nats-server (to the stream, acknowledged) | %.0f (%v) | **%.2f** | %d MiB |\n\nAll runs: pg_recvlogical %v; memory %v; nats %v. serve on the stream: from its stream's start (START_REPLICATION) to its \"caught up\" line plus the time from that line until the stream held every event (its gateway side, in the same process, follows the stream meanwhile); the stream's count is read with JetStream's stream info. CPU time of serve on the stream (whole process life, start-up included) and of nats-server during it, by run: %s.\n",
		machineLine(t), rows, reps, rate(b), b.Round(time.Millisecond), rate(m), m.Round(time.Millisecond), rate(m)/rate(b), memPeak>>20,
		rate(s), s.Round(time.Millisecond), rate(s)/rate(b), strPeak>>20, base, mem, str, strings.Join(cpus, "; "))
}

// serveDecodeNATS starts serve --role all on slot and a stream of its own
// (name), and returns how long it took from its stream's start to the
// stream holding rows events, and serve's peak RSS.
func serveDecodeNATS(t *testing.T, db *DB, nc *NATSCluster, slot, name string, rows int, profile string) (d time.Duration, hwm int64, cpu string) {
	t.Helper()
	st := benchStream(t, nc, name)
	edits := map[string]any{
		"source.slot": slot, "source.create": false,
		"server.listen": "127.0.0.1:0", "auth.jwt.secret": gwSecret, "audit.log": os.DevNull,
	}
	for k, v := range benchNATSEdits(nc, name) {
		edits[k] = v
	}
	cfg := WriteConfig(t, db, edits)
	pp := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	ncpu0 := natsCPU(t, nc)
	p := Start(t, nil, "serve", "--config", cfg, "--pprof", pp)
	p.WaitStderr(t, `"msg":"serving"`, 2*time.Minute)
	var prof sync.WaitGroup
	if profile != "" {
		prof.Add(1)
		go func() {
			defer prof.Done()
			(&benchServe{pprofAddr: pp}).saveProfile(t, "profile?seconds=5", profile)
		}()
	}
	p.WaitStderr(t, `"msg":"caught up"`, 10*time.Minute)
	seen := time.Now()
	waitStreamEvents(t, st, name, int64(rows), 10*time.Minute)
	tail := time.Since(seen)
	prof.Wait()
	took := caughtUpTook.FindStringSubmatch(p.Stderr())
	if took == nil {
		t.Fatalf("no took in serve's caught up line:\n%s", p.Stderr())
	}
	d, err := time.ParseDuration(took[1])
	if err != nil {
		t.Fatal(err)
	}
	if n := streamEvents(t, st, name); n != int64(rows) {
		t.Fatalf("stream holds %d events, want %d", n, rows)
	}
	t.Logf("nats: caught up after %v, stream complete %v later", d, tail.Round(time.Millisecond))
	hwm = procStatus(t, p.Cmd.Process.Pid, "VmHWM")
	cpu = fmt.Sprintf("serve %.1f s, nats-server %.1f s", cpuSeconds(t, p.Cmd.Process.Pid), natsCPU(t, nc)-ncpu0)
	p.Kill(t)
	return d + tail, hwm, cpu
}

// ---- 3. A resume served from the stream ----

// syncPage is one /sync answer, read without decoding its events.
type syncPage struct {
	Cursor string            `json:"cursor"`
	More   bool              `json:"more"`
	Events []json.RawMessage `json:"events"`
}

// syncAll pages through /sync from since with limit until more is false;
// it returns requests, events and the time taken, and fails t (after the
// run) unless it read want events.
func syncAll(t *testing.T, hc *http.Client, addr, tok, since string, limit, want int) (int, int, time.Duration) {
	t.Helper()
	start := time.Now()
	reqs, events, short := 0, 0, 0
	var pages []int
	defer func() {
		if short > 0 {
			t.Logf("/sync from %s: %d short pages with more to come; pages %v", addr, short, pages)
		}
		if events != want {
			t.Errorf("/sync from %s: %d events, want %d; pages %v", addr, events, want, pages)
		}
	}()
	for {
		q := url.Values{"channels": {benchChannel}, "since": {since}, "limit": {strconv.Itoa(limit)}}
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/realtime/sync?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/sync since %s: %v HTTP %d %.300s", since, err, resp.StatusCode, raw)
		}
		var p syncPage
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		reqs++
		events += len(p.Events)
		pages = append(pages, len(p.Events))
		if !p.More {
			return reqs, events, time.Since(start)
		}
		if len(p.Events) < limit {
			// A short page with more to come: the stream's fetch ended
			// before the page was full (its 5 s wait). Counted; the
			// client goes on from the answer's cursor as any would.
			short++
			if short > 20 {
				t.Fatalf("/sync: %d short pages, at %d events", short, events)
			}
		}
		if p.Cursor != "" {
			since = p.Cursor
		}
	}
}

// TestBenchNATSResume measures a /sync resume that pages through N events
// (limit 5,000 a page): from a gateway whose log.cache_events (1,000) holds
// only the newest, so that all but the last page are read from the stream,
// against a gateway on the same stream whose cache holds all N, in the
// same run, alternately.
func TestBenchNATSResume(t *testing.T) {
	benchOnly(t)
	const reps, limit, small = 3, 5000, 1000
	n := 100000
	if v := os.Getenv("BENCH_NATS_ROWS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	edits := benchNATSEdits(nc, db.Name)
	edits["log.cache_events"] = small
	reader := startBenchNode(t, db, "s_"+db.Name, "all", edits)
	st := benchStream(t, nc, db.Name)
	tok := gwUserToken(t, "900000001", benchRole)
	hc := &http.Client{Timeout: time.Minute}
	// One event first: the cursor before the N is then an event's (the
	// empty stream's zero cursor is expired on a gateway started later).
	db.Exec(t, insertAnnouncement, 1)
	waitStreamEvents(t, st, db.Name, 1, time.Minute)
	var head syncReply
	for deadline := time.Now().Add(time.Minute); head.Cursor == "" || strings.HasPrefix(head.Cursor, "0000000000000000"); {
		var err error
		head, err = syncGet(reader.addr, tok, url.Values{"channels": {benchChannel}})
		if err != nil || head.Status != 200 || time.Now().After(deadline) {
			t.Fatalf("head: %v %+v", err, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t0 := time.Now()
	db.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
		INSERT INTO announcements (title, body, target_role) SELECT 'bench', 'bench', 'student' FROM generate_series(1, 100); COMMIT;
	END LOOP; END $$`, n/100))
	waitStreamEvents(t, st, db.Name, int64(n+1), 10*time.Minute)
	t.Logf("%d events in the stream in %v", n, time.Since(t0).Round(time.Millisecond))

	big := map[string]any{}
	for k, v := range edits {
		big[k] = v
	}
	big["log.cache_events"] = n + small
	full := startBenchNode(t, db, "s_"+db.Name, "gateway", big)
	deadline := time.Now().Add(5 * time.Minute)
	for scrapeMetrics(t, full.addr).value("cdc_broadcaster_eventlog_events") < float64(n+1) {
		if time.Now().After(deadline) {
			t.Fatalf("the full gateway's cache holds %v events, want %d", scrapeMetrics(t, full.addr).value("cdc_broadcaster_eventlog_events"), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := scrapeMetrics(t, reader.addr).value("cdc_broadcaster_eventlog_events"); c > small {
		t.Fatalf("the small gateway's cache holds %v events, want ≤ %d", c, small)
	}

	// The node served from must have followed the whole stream: /sync
	// answers up to its hub's position, and a node still behind answers
	// short with more false.
	w0 := time.Now()
	for scrapeMetrics(t, reader.addr).value("cdc_broadcaster_stream_lag_events") > 0 {
		if time.Since(w0) > 2*time.Minute {
			t.Fatalf("the node served from is still %v events behind the stream", scrapeMetrics(t, reader.addr).value("cdc_broadcaster_stream_lag_events"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the node served from caught up with the stream %v after the full gateway's cache did", time.Since(w0).Round(time.Millisecond))
	var fromStream, fromCache []time.Duration
	var reqs int
	// CPU seconds of the node served from, nats-server and the client.
	cpuOf := func() cpuTriple {
		return cpuTriple{cpuSeconds(t, reader.proc.Cmd.Process.Pid) + cpuSeconds(t, full.proc.Cmd.Process.Pid), natsCPU(t, nc), cpuSeconds(t, os.Getpid())}
	}
	var streamCPU, cacheCPU cpuTriple
	for i := range reps {
		var prof sync.WaitGroup
		if i == 0 {
			prof.Add(1)
			go func() {
				defer prof.Done()
				reader.saveProfile(t, "profile?seconds=3", "nats-resume-cpu.pprof")
			}()
		}
		c0 := cpuOf()
		lag := scrapeMetrics(t, reader.addr).value("cdc_broadcaster_stream_lag_events")
		r, e, d := syncAll(t, hc, reader.addr, tok, head.Cursor, limit, n)
		if e != n {
			t.Logf("the node served from: stream_lag_events %v before the pass, %v now", lag, scrapeMetrics(t, reader.addr).value("cdc_broadcaster_stream_lag_events"))
			time.Sleep(10 * time.Second)
			m := scrapeMetrics(t, reader.addr)
			t.Logf("10 s later: stream_lag_events %v, stream_following %v, eventlog_events %v, eventlog_held_events %v",
				m.value("cdc_broadcaster_stream_lag_events"), m.value("cdc_broadcaster_stream_following"),
				m.value("cdc_broadcaster_eventlog_events"), m.value("cdc_broadcaster_eventlog_held_events"))
		}
		streamCPU.add(cpuOf().sub(c0))
		prof.Wait()
		if e != n {
			t.Fatalf("from the stream: %d events, want %d", e, n)
		}
		fromStream = append(fromStream, d)
		reqs = r
		c0 = cpuOf()
		r2, e2, d2 := syncAll(t, hc, full.addr, tok, head.Cursor, limit, n)
		cacheCPU.add(cpuOf().sub(c0))
		if e2 != n {
			t.Fatalf("from the cache: %d events in %d requests, want %d", e2, r2, n)
		}
		fromCache = append(fromCache, d2)
		t.Logf("rep %d: stream %v, cache %v (%d requests)", i, d.Round(time.Millisecond), d2.Round(time.Millisecond), r)
	}
	var sumS, sumC time.Duration
	for i := range reps {
		sumS += fromStream[i]
		sumC += fromCache[i]
	}
	slices.Sort(fromStream)
	slices.Sort(fromCache)
	s, c := fromStream[reps/2], fromCache[reps/2]
	benchReport(t, "### A resume served from the stream\n\n%s\n\n`GET /api/realtime/sync?channels=%s&since=<cursor before the %d events>&limit=%d`, then again from each answer's cursor until `more` is false: %d requests, %d events (100-row transactions). One nats-server; median of %d runs each, alternately.\n\n| served from | time | requests/s | events/s | ratio |\n|---|---|---|---|---|\n| a gateway's memory cache (log.cache_events %d, holds all) | %v | %.1f | %.0f | 1 |\n| the stream (serve --role all, log.cache_events %d) | %v | %.1f | %.0f | **%.2f** |\n\nAll runs: stream %v, cache %v. The client (in the test process, on the same cores) reads each answer whole and splits its events without decoding them. CPU during the passes, in percent of one core (serve nodes / nats-server / client): from the stream %s, from the cache %s.\n",
		machineLine(t), benchChannel, n, limit, reqs, n, reps,
		n+small, c.Round(time.Millisecond), float64(reqs)/c.Seconds(), float64(n)/c.Seconds(),
		small, s.Round(time.Millisecond), float64(reqs)/s.Seconds(), float64(n)/s.Seconds(), c.Seconds()/s.Seconds(),
		fromStream, fromCache, streamCPU.percent(sumS), cacheCPU.percent(sumC))
}

// cpuTriple is CPU seconds of serve, nats-server and the test process.
type cpuTriple struct{ serve, nats, self float64 }

func (a cpuTriple) sub(b cpuTriple) cpuTriple {
	return cpuTriple{a.serve - b.serve, a.nats - b.nats, a.self - b.self}
}

func (a *cpuTriple) add(b cpuTriple) { a.serve += b.serve; a.nats += b.nats; a.self += b.self }

func (a cpuTriple) percent(wall time.Duration) string {
	w := wall.Seconds() / 100
	return fmt.Sprintf("%.0f / %.0f / %.0f %%", a.serve/w, a.nats/w, a.self/w)
}

// ---- 4. A gateway's memory with its cache ----

// TestBenchNATSGatewayMemory measures a gateway's (--role gateway) RSS and
// Go heap with log.cache_events 100,000: empty, then with the cache full;
// next to serve on the memory backend (retention.max_events 100,000, the
// default) retaining the same events, in the same run.
func TestBenchNATSGatewayMemory(t *testing.T) {
	benchOnly(t)
	n := 100000
	if v := os.Getenv("BENCH_NATS_ROWS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	edits := benchNATSEdits(nc, db.Name)
	edits["log.cache_events"] = n
	reader := startBenchNode(t, db, "s_"+db.Name, "reader", edits)
	gw := startBenchNode(t, db, "s_"+db.Name, "gateway", edits)
	mem := startBenchServe(t, db, "m_"+db.Name, map[string]any{"retention.max_events": n})
	st := benchStream(t, nc, db.Name)

	type reading struct{ rss, heap float64 }
	read := func(s *benchServe) reading {
		s.forceGC(t)
		time.Sleep(time.Second)
		s.forceGC(t)
		return reading{float64(procStatus(t, s.proc.Cmd.Process.Pid, "VmRSS")), scrapeMetrics(t, s.addr).value("go_memstats_heap_inuse_bytes")}
	}
	gw0, mem0 := read(gw), read(mem)
	db.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
		INSERT INTO announcements (title, body, target_role) SELECT 'bench', 'bench', 'student' FROM generate_series(1, 100); COMMIT;
	END LOOP; END $$`, n/100))
	waitStreamEvents(t, st, db.Name, int64(n), 10*time.Minute)
	deadline := time.Now().Add(5 * time.Minute)
	for scrapeMetrics(t, gw.addr).value("cdc_broadcaster_eventlog_events") < float64(n) ||
		scrapeMetrics(t, mem.addr).value("cdc_broadcaster_eventlog_events") < float64(n) {
		if time.Now().After(deadline) {
			t.Fatal("the caches did not fill")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	gw1, mem1 := read(gw), read(mem)
	rdr := procStatus(t, reader.proc.Cmd.Process.Pid, "VmRSS")
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	per := func(a, b float64) string { return fmt.Sprintf("%.0f B", (a-b)/float64(n)) }
	benchReport(t, "### A gateway's memory with its cache\n\n%s\n\n%d events (announcements to students, 100-row transactions). Readings after a forced GC. One nats-server; the reader (--role reader) is a process of its own (RSS %s after the writes).\n\n| process | RSS empty | RSS full | per event | Go heap in use empty → full | per event |\n|---|---|---|---|---|---|\n| gateway (--role gateway), log.cache_events %d | %s | %s | %s | %s → %s | %s |\n| serve, memory backend, retention.max_events %d (reference) | %s | %s | %s | %s → %s | %s |\n",
		machineLine(t), n, mib(float64(rdr)),
		n, mib(gw0.rss), mib(gw1.rss), per(gw1.rss, gw0.rss), mib(gw0.heap), mib(gw1.heap), per(gw1.heap, gw0.heap),
		n, mib(mem0.rss), mib(mem1.rss), per(mem1.rss, mem0.rss), mib(mem0.heap), mib(mem1.heap), per(mem1.heap, mem0.heap))
}
