package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The benchmarks of issue 7 (BENCHMARKS.md): `make bench` runs them with
// CDC_BENCH=1. Each measures the broadcaster next to a baseline measured in
// the same run: pg_recvlogical on the same database for decoding and
// latency, a minimal coder/websocket program (integration/ceiling) for
// fan-out. They check that the run is valid (everything arrived), never how
// fast it was.

// benchRole and benchChannel: every load client is a student subscribed to
// role:student, which every announcement for students reaches
// (config.example.yaml).
const (
	benchRole    = "student"
	benchChannel = "role:student"
)

// insertAnnouncement is one row, to students, with an id chosen by the
// writer so that clients can tell rows apart.
const insertAnnouncement = `INSERT INTO announcements (id, title, body, target_role) VALUES ($1, 'bench', 'bench', 'student')`

// writeAtRate commits single-row transactions with ids base, base+1, ... at
// rate per second (open loop: the schedule does not wait for slow commits)
// for d, recording each commit's return in recs. It returns how many rows it
// committed and the rate achieved.
func writeAtRate(t *testing.T, db *DB, base int64, rate int, d time.Duration, recs ...*recorder) (int, float64) {
	t.Helper()
	total := int(float64(rate) * d.Seconds())
	ids := make(chan int64, total)
	var wg sync.WaitGroup
	var failed atomic.Value
	workers := 8
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if _, err := db.Pool.Exec(context.Background(), insertAnnouncement, id); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				now := time.Now().UnixNano()
				for _, r := range recs {
					r.committed(id, now)
				}
			}
		}()
	}
	for i := range total {
		due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		ids <- base + int64(i)
	}
	close(ids)
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	return total, float64(total) / time.Since(start).Seconds()
}

// machineLine describes the machine for a report.
func machineLine(t *testing.T) string {
	out, _ := exec.Command(filepath.Join(PG.BinDir, "postgres"), "--version").Output()
	return fmt.Sprintf("%d CPUs, %s, %s, %s", runtime.NumCPU(), runtime.Version(), strings.TrimSpace(string(out)), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// ---- 1. Decode throughput ----

// TestBenchDecode measures rows per second from commit to mapped events in
// the log, against pg_recvlogical (pgoutput, the same options as serve)
// draining the same changes to /dev/null. The changes are written first,
// with every slot already created; then each consumer runs alone, from its
// own slot, until it has all of them: pg_recvlogical with --endpos, serve
// until events_emitted_total counts every row.
func TestBenchDecode(t *testing.T) {
	benchOnly(t)
	const reps = 3
	cases := []struct {
		name  string
		rows  int
		write string
	}{
		{"100,000 single-row transactions", 100000,
			`DO $$ BEGIN FOR i IN 1..100000 LOOP
			   INSERT INTO announcements (title, body, target_role) VALUES ('bench', 'bench', 'student'); COMMIT;
			 END LOOP; END $$`},
		{"one 1,000,000-row transaction", 1000000,
			`INSERT INTO announcements (title, body, target_role) SELECT 'bench', 'bench', 'student' FROM generate_series(1, 1000000)`},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "### Decode throughput\n\n%s\n\n| changes | pg_recvlogical (pgoutput → /dev/null) | serve (to the event log) | ratio | serve peak RSS |\n|---|---|---|---|---|\n", machineLine(t))
	for _, tc := range cases {
		db := NewDB(t, WithExampleData())
		for i := range reps {
			db.Exec(t, fmt.Sprintf("SELECT pg_create_logical_replication_slot('b%d_%s', 'pgoutput')", i, db.Name))
			db.Exec(t, fmt.Sprintf("SELECT pg_create_logical_replication_slot('s%d_%s', 'pgoutput')", i, db.Name))
		}
		t0 := time.Now()
		db.Exec(t, tc.write)
		var end string
		if err := db.Pool.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: written in %v, end LSN %s", tc.name, time.Since(t0).Round(time.Millisecond), end)

		var base, serve []time.Duration
		var peak int64
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

			profile := ""
			if i == 0 {
				profile = fmt.Sprintf("decode-cpu-%d.pprof", tc.rows)
			}
			d, hwm := serveDecode(t, db, fmt.Sprintf("s%d_%s", i, db.Name), tc.rows, profile)
			serve = append(serve, d)
			peak = max(peak, hwm)
			t.Logf("%s rep %d: pg_recvlogical %v, serve %v (peak RSS %d MiB)", tc.name, i, base[i].Round(time.Millisecond), d.Round(time.Millisecond), hwm>>20)
		}
		slices.Sort(base)
		slices.Sort(serve)
		b, s := base[reps/2], serve[reps/2]
		rb, rs := float64(tc.rows)/b.Seconds(), float64(tc.rows)/s.Seconds()
		fmt.Fprintf(&report, "| %s | %.0f rows/s (%v) | %.0f rows/s (%v) | **%.2f** | %d MiB |\n",
			tc.name, rb, b.Round(time.Millisecond), rs, s.Round(time.Millisecond), rs/rb, peak>>20)
	}
	fmt.Fprintf(&report, "\nMedian of %d runs each, each consumer alone on the machine with a slot of its own created before the writes. pg_recvlogical: process start to exit at --endpos (the end of the writes). serve: its stream's start (START_REPLICATION) to its \"caught up\" log line (every change mapped and in the event log; the count is checked against `events_emitted_total`); serve's start-up before that (config, catalogue, connections) is not counted, about 0.1–0.3 s.\n", reps)
	benchReport(t, "%s", report.String())
}

// serveDecode starts serve on slot, and returns how long its stream took
// from its start (START_REPLICATION) to having mapped every change into
// its log (its own "caught up" log line: the walsender has nothing more to
// send and everything before was handled), after checking that the log
// counts rows events; and serve's peak RSS.
func serveDecode(t *testing.T, db *DB, slot string, rows int, profile string) (time.Duration, int64) {
	t.Helper()
	cfg := WriteConfig(t, db, map[string]any{
		"source.slot": slot, "source.create": false,
		"server.listen": "127.0.0.1:0", "auth.jwt.secret": gwSecret, "audit.log": os.DevNull,
	})
	pp := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	p := Start(t, nil, "serve", "--config", cfg, "--pprof", pp)
	p.WaitStderr(t, `"msg":"serving"`, 2*time.Minute)
	m := servingListen.FindStringSubmatch(p.Stderr())
	if m == nil {
		t.Fatalf("serve logged no listen address:\n%s", p.Stderr())
	}
	var prof sync.WaitGroup
	if profile != "" {
		prof.Add(1)
		go func() {
			defer prof.Done()
			(&benchServe{pprofAddr: pp}).saveProfile(t, "profile?seconds=5", profile)
		}()
	}
	p.WaitStderr(t, `"msg":"caught up"`, 10*time.Minute)
	prof.Wait()
	took := caughtUpTook.FindStringSubmatch(p.Stderr())
	if took == nil {
		t.Fatalf("no took in serve's caught up line:\n%s", p.Stderr())
	}
	d, err := time.ParseDuration(took[1])
	if err != nil {
		t.Fatal(err)
	}
	if n := scrapeMetrics(t, m[1]).value("cdc_broadcaster_events_emitted_total"); n != float64(rows) {
		t.Fatalf("caught up with %v events in the log, want %d:\n%s", n, rows, p.Stderr())
	}
	hwm := procStatus(t, p.Cmd.Process.Pid, "VmHWM")
	p.Kill(t)
	return d, hwm
}

var caughtUpTook = regexp.MustCompile(`"msg":"caught up"[^\n]*"took":"([^"]+)"`)

// ---- 2. Commit-to-client latency ----

// TestBenchLatency measures, for N connected clients all subscribed to the
// channel every row reaches, the time from the writer's commit (the return
// of its INSERT) to the last of the N reading the event, at several commit
// rates; and the same for pg_recvlogical (test_decoding, to a pipe) reading
// the same commits in the same run.
func TestBenchLatency(t *testing.T) {
	benchOnly(t)
	var report strings.Builder
	fmt.Fprintf(&report, "### Commit-to-client latency\n\n%s\n\nTime from the writer's commit (its INSERT returned) to the last of N clients reading the event; pg_recvlogical reads the same commits at the same time. Single-row transactions, 8 writer connections, open-loop schedule.\n\n| clients | rows/s (achieved) | deliveries/s | serve p50 / p99 / max (ms) | pg_recvlogical p50 / p99 / max (ms) | added p50 / p99 (ms) |\n|---|---|---|---|---|---|\n", machineLine(t))
	var base int64 = 10_000_000
	ns := []int{1, 1000, 10000}
	if v := os.Getenv("BENCH_LATENCY_CLIENTS"); v != "" {
		ns = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("BENCH_LATENCY_CLIENTS=%q: %v", v, err)
			}
			ns = append(ns, n)
		}
	}
	for _, n := range ns {
		db := NewDB(t, WithExampleData())
		srv := startBenchServe(t, db, "s_"+db.Name, nil)
		clients := dialBenchClients(t, srv.wsURL, n, benchRole, []string{benchChannel}, nil)
		rates := []int{100, 1000, 5000}
		if n == 10000 {
			// 100 rows/s to 10,000 clients is 1,000,000 deliveries/s, past
			// what fan-out reaches here (TestBenchFanout): 10 rows/s first.
			rates = []int{10, 100, 1000, 5000}
		}
		if v := os.Getenv("BENCH_LATENCY_RATES"); v != "" {
			rates = nil
			for _, f := range strings.Split(v, ",") {
				r, err := strconv.Atoi(f)
				if err != nil || r < 1 {
					t.Fatalf("BENCH_LATENCY_RATES=%q: want rows per second, comma-separated", v)
				}
				rates = append(rates, r)
			}
		}
		for _, rate := range rates {
			d := latencyPhase(rate)
			rows := int(float64(rate) * d.Seconds())
			rec := newRecorder(base, rows, n)
			pgRec := newRecorder(base, rows, 1)
			clients.rec = rec
			stop := startRecvLogicalTD(t, db, "bl_"+db.Name, pgRec)
			cpu0, self0 := cpuSeconds(t, srv.proc.Cmd.Process.Pid), cpuSeconds(t, os.Getpid())
			var prof sync.WaitGroup
			if os.Getenv("BENCH_PROFILE") != "" {
				prof.Add(1)
				go func() {
					defer prof.Done()
					srv.saveProfile(t, "profile?seconds=4", fmt.Sprintf("latency-cpu-%d-%d.pprof", n, rate))
				}()
			}
			wrote, achieved := writeAtRate(t, db, base, rate, d, rec, pgRec)
			prof.Wait()
			t.Logf("N=%d rate=%d: CPU during the writes: serve %.0f%%, clients+writer %.0f%% (of one core)", n, rate,
				100*(cpuSeconds(t, srv.proc.Cmd.Process.Pid)-cpu0)/d.Seconds(), 100*(cpuSeconds(t, os.Getpid())-self0)/d.Seconds())
			waitUntil := time.Now().Add(30 * time.Second)
			for !(rec.complete(wrote) && pgRec.complete(wrote)) && time.Now().Before(waitUntil) {
				time.Sleep(10 * time.Millisecond)
			}
			stop()
			lat, incomplete := rec.latencies(wrote)
			pgLat, pgIncomplete := pgRec.latencies(wrote)
			if pgIncomplete > 0 {
				t.Fatalf("pg_recvlogical missed %d of %d rows", pgIncomplete, wrote)
			}
			base += int64(rows)
			if incomplete > 0 {
				fmt.Fprintf(&report, "| %d | %d (%.0f) | %d needed | saturated: %d of %d rows not at every client 30 s after the last commit | %s / %s / %s | |\n",
					n, rate, achieved, n*rate, incomplete, wrote, ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)), ms(pgLat[len(pgLat)-1]))
				t.Logf("N=%d rate=%d saturated; higher rates skipped", n, rate)
				break
			}
			fmt.Fprintf(&report, "| %d | %d (%.0f) | %d | %s / %s / %s | %s / %s / %s | **%s** / **%s** |\n",
				n, rate, achieved, n*rate,
				ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]),
				ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)), ms(pgLat[len(pgLat)-1]),
				ms(quantile(lat, .5)-quantile(pgLat, .5)), ms(quantile(lat, .99)-quantile(pgLat, .99)))
			first, spread := rec.firstAndSpread(wrote)
			t.Logf("N=%d rate=%d: p50 %s p99 %s max %s; pg %s %s; first client p50 %s, first → last p50 %s p99 %s", n, rate, ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]), ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)),
				ms(quantile(first, .5)), ms(quantile(spread, .5)), ms(quantile(spread, .99)))
		}
		clients.close()
		srv.proc.Kill(t)
		if n > 1 {
			// The same fan-out from the ceiling program, at the lowest rate
			// measured above: what one frame to N clients costs here at
			// the least.
			ceilingLatency(t, &report, n, rates[0], 5*time.Second, nil, 0)
			// And with the database work of serve's run beside it: the
			// writer committing at the same rate and pg_recvlogical reading
			// (serve shares the machine with them; at 10,000 clients the
			// fan-out alone keeps both cores ~90 % busy, so that work moves
			// the queueing).
			ceilingLatency(t, &report, n, rates[0], latencyPhase(rates[0]), db, base)
			base += int64(float64(rates[0]) * latencyPhase(rates[0]).Seconds())
		}
	}
	report.WriteString("\nceiling rows: the minimal coder/websocket program (integration/ceiling) sending one frame to the same N clients at the same rate; the time from its request to the last client reading that frame. \"with the writer and pg_recvlogical\": while the same writer commits at the same rate and pg_recvlogical reads the commits, as in serve's run.\n")
	benchReport(t, "%s", report.String())
}

// latencyPhase is how long TestBenchLatency writes at rate.
func latencyPhase(rate int) time.Duration {
	switch {
	case rate <= 10:
		return 30 * time.Second
	case rate <= 100:
		return 10 * time.Second
	}
	return 5 * time.Second
}

// ceilingLatency measures the ceiling program getting one frame to n
// clients, rate times a second for d: p50, p99 and max of the time from
// the request to the last client reading that frame. With db, the writer
// commits rows from base on at the same rate meanwhile, and pg_recvlogical
// reads them, as in serve's run.
func ceilingLatency(t *testing.T, report *strings.Builder, n, rate int, d time.Duration, db *DB, base int64) {
	t.Helper()
	label := "ceiling"
	if db != nil {
		label = "ceiling with the writer and pg_recvlogical"
	}
	framePath := filepath.Join(t.TempDir(), "frame.json")
	frame := `{"type":"event","channels":["role:student"],"event":{"cursor":"0000000016B3748C-00000003","eventType":"announcement.created","table":"announcements","op":"insert","commitTime":"2026-11-27T12:00:00.000000Z","data":{"id":7,"target_role":"student","is_pinned":false}}}`
	if err := os.WriteFile(framePath, []byte(frame), 0o644); err != nil {
		t.Fatal(err)
	}
	ceil, pid := startCeilingPid(t, framePath)
	fires := int(float64(rate) * d.Seconds())
	rec := newRecorder(0, fires, n)
	cc := dialBenchClients(t, "ws://"+ceil+"/ws", n, benchRole, nil, nil)
	defer cc.close()
	waitCeilingConns(t, ceil, n)
	cc.ordinal = true
	cc.rec = rec
	hc := &http.Client{Timeout: time.Minute}
	if db != nil {
		pgRec := newRecorder(base, fires, 1)
		stop := startRecvLogicalTD(t, db, "bc_"+db.Name, pgRec)
		defer stop()
		wrote := make(chan struct{})
		defer func() { <-wrote }()
		go func() {
			defer close(wrote)
			writeAtRate(t, db, base, rate, d, pgRec)
		}()
	}
	cpu0, self0 := cpuSeconds(t, pid), cpuSeconds(t, os.Getpid())
	start := time.Now()
	for k := range fires {
		if w := time.Until(start.Add(time.Duration(float64(k) / float64(rate) * float64(time.Second)))); w > 0 {
			time.Sleep(w)
		}
		rec.committed(int64(k), time.Now().UnixNano())
		resp, err := hc.Post(fmt.Sprintf("http://%s/fire?count=1", ceil), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	span := time.Since(start)
	t.Logf("N=%d ceiling %d frames/s: CPU during the frames: ceiling %.0f%%, clients %.0f%% (of one core)", n, rate,
		100*(cpuSeconds(t, pid)-cpu0)/span.Seconds(), 100*(cpuSeconds(t, os.Getpid())-self0)/span.Seconds())
	deadline := time.Now().Add(30 * time.Second)
	for !rec.complete(fires) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lat, incomplete := rec.latencies(fires)
	first, spread := rec.firstAndSpread(fires)
	t.Logf("N=%d %s %d frames/s: first client p50 %s, first → last p50 %s p99 %s", n, label, rate, ms(quantile(first, .5)), ms(quantile(spread, .5)), ms(quantile(spread, .99)))
	if incomplete > 0 {
		fmt.Fprintf(report, "| %d | %s: %d frames/s | %d | saturated: %d of %d frames not at every client 30 s after the last | | |\n", n, label, rate, n*rate, incomplete, fires)
		return
	}
	fmt.Fprintf(report, "| %d | %s: %d frames/s | %d | %s / %s / %s | | |\n", n, label, rate, n*rate, ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]))
}

// ---- 3. Fan-out ----

// TestBenchFanout measures deliveries per second to 10,000 subscribed
// clients: serve fanning out one 100-row transaction, against the ceiling
// program writing the same bytes (one of serve's own event frames) as many
// times to as many connections. Rate = deliveries / (last frame read − first
// frame read), over all clients.
func TestBenchFanout(t *testing.T) {
	benchOnly(t)
	const n, k, reps = 10000, 100, 3
	db := NewDB(t, WithExampleData())
	srv := startBenchServe(t, db, "s_"+db.Name, nil)
	clients := dialBenchClients(t, srv.wsURL, n, benchRole, []string{benchChannel}, nil)

	// One event to warm up, and to capture a frame of serve's for the
	// ceiling.
	probe := gwConnect(t, "probe", srv.wsURL, gwViaHeader, gwUserToken(t, "1", benchRole))
	probe.mustSubscribe(benchChannel)
	db.Exec(t, insertAnnouncement, 1)
	frame := probe.nextEvent("announcement.created").Raw
	probe.close()
	if !clients.waitFrames(int64(n), time.Minute) {
		t.Fatalf("warm-up: %d of %d frames", clients.frames.Load(), n)
	}

	var serveRates []float64
	id := int64(100)
	for rep := range reps {
		clients.resetTimes()
		before := clients.frames.Load()
		var b strings.Builder
		b.WriteString("INSERT INTO announcements (id, title, body, target_role) VALUES ")
		for i := range k {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "(%d, 'bench', 'bench', 'student')", id)
			id++
		}
		var prof sync.WaitGroup
		if rep == 1 {
			prof.Add(1)
			go func() {
				defer prof.Done()
				srv.saveProfile(t, "profile?seconds=3", "fanout-cpu.pprof")
			}()
			time.Sleep(100 * time.Millisecond)
		}
		db.Exec(t, b.String())
		if !clients.waitFrames(before+n*k, 5*time.Minute) {
			t.Fatalf("serve rep %d: %d of %d frames", rep, clients.frames.Load()-before, n*k)
		}
		span := time.Duration(clients.lastAt.Load() - clients.firstAt.Load())
		serveRates = append(serveRates, float64(n*k)/span.Seconds())
		t.Logf("serve rep %d: %d deliveries in %v", rep, n*k, span)
		prof.Wait()
	}
	if e := clients.errs.Load(); e != 0 {
		t.Fatalf("%d client read errors", e)
	}
	clients.close()
	srv.proc.Kill(t)

	// The ceiling, with serve's frame.
	dir := t.TempDir()
	framePath := filepath.Join(dir, "frame.json")
	if err := os.WriteFile(framePath, []byte(frame), 0o644); err != nil {
		t.Fatal(err)
	}
	ceil := startCeiling(t, framePath)
	cc := dialBenchClients(t, "ws://"+ceil+"/ws", n, benchRole, nil, nil)
	waitCeilingConns(t, ceil, n)
	var ceilRates []float64
	for rep := range reps {
		cc.resetTimes()
		before := cc.frames.Load()
		resp, err := http.Post(fmt.Sprintf("http://%s/fire?count=%d", ceil, k), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !cc.waitFrames(before+n*k, 5*time.Minute) {
			t.Fatalf("ceiling rep %d: %d of %d frames", rep, cc.frames.Load()-before, n*k)
		}
		span := time.Duration(cc.lastAt.Load() - cc.firstAt.Load())
		ceilRates = append(ceilRates, float64(n*k)/span.Seconds())
		t.Logf("ceiling rep %d: %d deliveries in %v", rep, n*k, span)
	}
	slices.Sort(serveRates)
	slices.Sort(ceilRates)
	s, c := serveRates[reps/2], ceilRates[reps/2]
	benchReport(t, "### Fan-out\n\n%s\n\n%d clients subscribed to one channel; serve fans out one %d-row transaction (%d deliveries of a %d-byte frame); the ceiling program writes that same frame %d times to as many coder/websocket connections. Median of %d runs, first to last frame read by any client.\n\n| | deliveries/s | ratio |\n|---|---|---|\n| ceiling (integration/ceiling) | %.0f | 1 |\n| serve | %.0f | **%.2f** |\n",
		machineLine(t), n, k, n*k, len(frame), k, reps, c, s, s/c)
}

// waitCeilingConns waits until the ceiling program has registered n
// connections (a client's dial returns before the server's handler has).
func waitCeilingConns(t *testing.T, addr string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/conns")
		if err != nil {
			t.Fatal(err)
		}
		var have int
		_, err = fmt.Fscan(resp.Body, &have)
		resp.Body.Close()
		if err == nil && have >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ceiling program has %d of %d connections", have, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCeiling builds and starts the ceiling program; it returns its
// address.
func startCeiling(t *testing.T, framePath string) string {
	t.Helper()
	addr, _ := startCeilingPid(t, framePath)
	return addr
}

// startCeilingPid is startCeiling, also returning the process id.
func startCeilingPid(t *testing.T, framePath string) (string, int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ceiling")
	cmd := exec.Command("go", "build", "-o", bin, "./integration/ceiling")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ceiling: %v\n%s", err, out)
	}
	p := startProgram(t, bin, nil, "-frame", framePath)
	line := p.Line(t, time.Minute)
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		t.Fatalf("ceiling printed %q", line)
	}
	return addr, p.Cmd.Process.Pid
}

// ---- 4. Memory per idle connection ----

// TestBenchMemory measures serve's memory per idle authenticated connection
// subscribed to one channel, at 10,000 connections and at as many as the
// file-descriptor limit allows, and the ceiling program's as a reference.
// Serve's heap is collected (pprof heap?gc=1) before each reading.
func TestBenchMemory(t *testing.T) {
	benchOnly(t)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	nofile := lim.Max
	maxConns := int(nofile) - 2000 // what else both processes hold
	db := NewDB(t, WithExampleData())
	srv := startBenchServe(t, db, "s_"+db.Name, nil)
	pid := srv.proc.Cmd.Process.Pid

	type reading struct{ rss, heap, stack, goroutines float64 }
	read := func() reading {
		srv.forceGC(t)
		time.Sleep(time.Second)
		srv.forceGC(t)
		m := scrapeMetrics(t, srv.addr)
		return reading{float64(procStatus(t, pid, "VmRSS")), m.value("go_memstats_heap_inuse_bytes"), m.value("go_memstats_stack_inuse_bytes"), m.value("go_goroutines")}
	}
	before := read()
	var report strings.Builder
	fmt.Fprintf(&report, "### Memory per idle connection\n\n%s\n\nAuthenticated (JWT on the upgrade request), subscribed to %s, idle. Readings after a forced GC; per connection = (reading − reading with none) / connections. RLIMIT_NOFILE here: %d (hard), which bounds one process's connections.\n\n| connections | RSS / conn | Go heap in use / conn | goroutine stacks / conn | goroutines / conn |\n|---|---|---|---|---|\n", machineLine(t), benchChannel, nofile)
	var all []*benchClients
	have := 0
	for _, target := range []int{10000, maxConns} {
		if target <= have {
			continue
		}
		all = append(all, dialBenchClients(t, srv.wsURL, target-have, benchRole, []string{benchChannel}, nil))
		// Distinct users across batches.
		have = target
		time.Sleep(3 * time.Second)
		r := read()
		per := func(a, b float64) string { return fmt.Sprintf("%.1f KiB", (a-b)/float64(target)/1024) }
		fmt.Fprintf(&report, "| %d | %s | %s | %s | %.2f |\n", target, per(r.rss, before.rss), per(r.heap, before.heap), per(r.stack, before.stack), (r.goroutines-before.goroutines)/float64(target))
		srv.saveProfile(t, "heap", fmt.Sprintf("idle-heap-%d.pprof", target))
		m := scrapeMetrics(t, srv.addr)
		t.Logf("%d conns: heap sys %d MiB, idle %d MiB, released %d MiB, stack sys %d MiB, mspan %d MiB, gc sys %d MiB, other %d MiB",
			target, int64(m.value("go_memstats_heap_sys_bytes"))>>20, int64(m.value("go_memstats_heap_idle_bytes"))>>20,
			int64(m.value("go_memstats_heap_released_bytes"))>>20, int64(m.value("go_memstats_stack_sys_bytes"))>>20,
			int64(m.value("go_memstats_mspan_sys_bytes"))>>20, int64(m.value("go_memstats_gc_sys_bytes"))>>20,
			int64(m.value("go_memstats_other_sys_bytes"))>>20)
	}
	for _, c := range all {
		c.close()
	}
	srv.proc.Kill(t)

	// The reference: the ceiling program, coder/websocket used the plain
	// way (net/http's handler goroutine reads, its 4 KiB buffers).
	framePath := filepath.Join(t.TempDir(), "frame.json")
	if err := os.WriteFile(framePath, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ceil, ceilPid := startCeilingPid(t, framePath)
	time.Sleep(time.Second)
	rss0 := procStatus(t, ceilPid, "VmRSS")
	cc := dialBenchClients(t, "ws://"+ceil+"/ws", 10000, benchRole, nil, nil)
	time.Sleep(3 * time.Second)
	rss1 := procStatus(t, ceilPid, "VmRSS")
	cc.close()
	fmt.Fprintf(&report, "| 10000, the ceiling program (reference) | %.1f KiB | | | |\n", float64(rss1-rss0)/10000/1024)
	benchReport(t, "%s", report.String())
}

// ---- 5. ACL cost ----

// TestBenchACL measures the subscribe rate of a teacher to class:{id}
// channels, whose access is a `sql` rule (class_teachers): cold (every
// channel new, one query each) and cached (the same channels again within
// acl_cache_ttl), with 8 connections subscribing one channel per request,
// each waiting for its answer. A `roles` rule (an admin, no query) is the
// reference.
func TestBenchACL(t *testing.T) {
	benchOnly(t)
	const classes, conns = 4000, 8
	db := NewDB(t, WithExampleData())
	db.Exec(t, `INSERT INTO users (id, email, password_hash, first_name, last_name, role)
	             VALUES (990001, 'bench-teacher@example.org', 'x', 'Bench', 'Teacher', 'teacher')`)
	db.Exec(t, fmt.Sprintf(`INSERT INTO classes (id, name, level) SELECT 500000 + i, 'bench ' || i, 'B' FROM generate_series(1, %d) i`, classes))
	db.Exec(t, fmt.Sprintf(`INSERT INTO class_teachers (class_id, teacher_id) SELECT 500000 + i, 990001 FROM generate_series(1, %d) i`, classes))
	srv := startBenchServe(t, db, "s_"+db.Name, map[string]any{"limits.max_subscriptions_per_connection": 100000})

	pass := func(sub, role string) (float64, float64) {
		cs := make([]*gwClient, conns)
		for i := range cs {
			cs[i] = gwConnect(t, fmt.Sprintf("acl %d", i), srv.wsURL, gwViaHeader, gwUserToken(t, sub, role))
		}
		q0 := scrapeMetrics(t, srv.addr).value("cdc_broadcaster_acl_sql_queries_total")
		var wg sync.WaitGroup
		st := time.Now()
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ch := 1 + i; ch <= classes; ch += conns {
					granted, refused := c.subscribe(fmt.Sprintf("class:%d", 500000+ch))
					if len(granted) != 1 {
						t.Errorf("class:%d refused: %v", 500000+ch, refused)
						return
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(st)
		for _, c := range cs {
			c.close()
		}
		return float64(classes) / took.Seconds(), scrapeMetrics(t, srv.addr).value("cdc_broadcaster_acl_sql_queries_total") - q0
	}
	cold, coldQ := pass("990001", "teacher")
	cached, cachedQ := pass("990001", "teacher")
	admin, adminQ := pass("990002", "admin")
	if coldQ < classes || cachedQ != 0 || adminQ != 0 {
		t.Fatalf("queries: cold %v (want ≥ %d), cached %v, admin %v (want 0): the passes did not measure what they say", coldQ, classes, cachedQ, adminQ)
	}
	benchReport(t, "### ACL cost\n\n%s\n\nSubscribes per second over %d connections, one channel per request, each waiting for its answer (%d channels per pass).\n\n| rule | SQL queries | subscribes/s |\n|---|---|---|\n| `sql` (class_teachers), cold | %.0f | %.0f |\n| `sql`, cached (same channels again) | %.0f | %.0f |\n| `roles` (admin; no query) | %.0f | %.0f |\n",
		machineLine(t), conns, classes, coldQ, cold, cachedQ, cached, adminQ, admin)
}

// cpuSeconds is the user+system CPU time of process pid so far.
func cpuSeconds(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/stat: %v", pid, err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks: USER_HZ is 100 on Linux
}
