package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBenchLastClient measures what one event costs to reach many clients
// when nothing else is going on (issue 16): N clients (200, or
// BENCH_LASTCLIENT_CLIENTS) subscribed to one channel, single-row commits
// one after another, each only once the previous one reached every client
// and pg_recvlogical. Per row: commit (the INSERT returned) → the last
// client read it, and commit → pg_recvlogical read it, in the same run.
//
// To compare builds in one run (the machine is shared: only ratios within
// a run mean something), BENCH_BINS=label=path,label=path runs each binary
// in turn, BENCH_LASTCLIENT_ROUNDS times (default 1), alternating.
// BENCH_LASTCLIENT_BACKENDS=memory,nats-1 adds serve --role all on a
// one-server JetStream stream (the cluster's gateway path).
func TestBenchLastClient(t *testing.T) {
	benchOnly(t)
	n := 200
	if v := benchInts(t, "BENCH_LASTCLIENT_CLIENTS", nil); len(v) > 0 {
		n = v[0]
	}
	rows := 1000
	if v := benchInts(t, "BENCH_LASTCLIENT_ROWS", nil); len(v) > 0 {
		rows = v[0]
	}
	rounds := 1
	if v := benchInts(t, "BENCH_LASTCLIENT_ROUNDS", nil); len(v) > 0 {
		rounds = v[0]
	}
	bins := benchBins(t)
	backends := []string{"memory"}
	if v := os.Getenv("BENCH_LASTCLIENT_BACKENDS"); v != "" {
		backends = strings.Split(v, ",")
	}
	clusters := map[string]*NATSCluster{}
	for _, b := range backends {
		if size, ok := strings.CutPrefix(b, "nats-"); ok {
			k, err := strconv.Atoi(size)
			if err != nil {
				t.Fatalf("backend %q", b)
			}
			clusters[b] = StartNATSCluster(t, k)
		}
	}

	var report strings.Builder
	fmt.Fprintf(&report, "### One event to the last of %d clients\n\n%s\n\n%d single-row commits one after another, each once the previous one reached every client and pg_recvlogical; commit (INSERT returned) → last client read it, and → pg_recvlogical read it (test_decoding, to a pipe), same rows.\n\n| round | build | backend | last client p50 / p99 / max (ms) | pg_recvlogical p50 / p99 (ms) | last client − pg_recvlogical p50 / p99 (ms) | first client p50; first → last p50 / p99 (ms) | CPU: serve / clients+writer (ms per row) |\n|---|---|---|---|---|---|---|---|\n",
		n, machineLine(t), rows)
	var base int64 = 30_000_000
	for round := range rounds {
		for _, backend := range backends {
			for _, bin := range bins {
				db := NewDB(t, WithExampleData())
				var edits map[string]any
				if nc := clusters[backend]; nc != nil {
					edits = benchNATSEdits(nc, db.Name)
				}
				srv := startBenchServeBin(t, bin.path, db, "s_"+db.Name, edits)
				clients := dialBenchClients(t, srv.wsURL, n, benchRole, []string{benchChannel}, nil)
				pgRec := newRecorder(base, rows, 1)
				rec := newRecorder(base, rows, n)
				clients.rec = rec
				stop := startRecvLogicalTD(t, db, "bl_"+db.Name, pgRec)
				// Warm-up rows, not measured: connections' first writes,
				// a stream's consumer starting.
				for i := range 20 {
					db.Exec(t, insertAnnouncement, base-1000+int64(i))
				}
				if !clients.waitEvents(int64(20*n), time.Minute) {
					t.Fatalf("%s %s: warm-up rows reached %d of %d", bin.label, backend, clients.events.Load(), 20*n)
				}
				var prof sync.WaitGroup
				if os.Getenv("BENCH_PROFILE") != "" {
					prof.Add(1)
					go func() {
						defer prof.Done()
						srv.saveProfile(t, "profile?seconds=3", fmt.Sprintf("lastclient-cpu-%s-%s-%d.pprof", bin.label, backend, round))
					}()
				}
				cpu0, self0 := cpuSeconds(t, srv.proc.Cmd.Process.Pid), cpuSeconds(t, os.Getpid())
				for i := range rows {
					id := base + int64(i)
					db.Exec(t, insertAnnouncement, id)
					now := time.Now().UnixNano()
					rec.committed(id, now)
					pgRec.committed(id, now)
					deadline := time.Now().Add(30 * time.Second)
					for !(rec.got[i].Load() >= int32(n) && pgRec.got[i].Load() >= 1) {
						if time.Now().After(deadline) {
							t.Fatalf("%s %s: row %d reached %d of %d clients (pg_recvlogical: %d) in 30 s", bin.label, backend, i, rec.got[i].Load(), n, pgRec.got[i].Load())
						}
						time.Sleep(50 * time.Microsecond)
					}
				}
				cpu := (cpuSeconds(t, srv.proc.Cmd.Process.Pid) - cpu0) * 1000 / float64(rows)
				self := (cpuSeconds(t, os.Getpid()) - self0) * 1000 / float64(rows)
				prof.Wait()
				stop()
				clients.close()
				srv.proc.Kill(t)
				lat, _ := rec.latencies(rows)
				pgLat, _ := pgRec.latencies(rows)
				first, spread := rec.firstAndSpread(rows)
				base += int64(rows)
				fmt.Fprintf(&report, "| %d | %s | %s | %s / %s / %s | %s / %s | **%s** / **%s** | %s; %s / %s | %.2f / %.2f |\n",
					round+1, bin.label, backend, ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]),
					ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)),
					ms(quantile(lat, .5)-quantile(pgLat, .5)), ms(quantile(lat, .99)-quantile(pgLat, .99)),
					ms(quantile(first, .5)), ms(quantile(spread, .5)), ms(quantile(spread, .99)), cpu, self)
				t.Logf("round %d %s %s: last client p50 %s p99 %s; pg_recvlogical p50 %s p99 %s", round+1, bin.label, backend,
					ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(quantile(pgLat, .5)), ms(quantile(pgLat, .99)))
			}
		}
	}
	ceilingLastClient(t, &report, n, rows, false)
	ceilingLastClient(t, &report, n, rows, true)
	report.WriteString("\nCPU: serve's, and the test process's (the clients and the writer), during the measured rows, per row. The commit time is taken after the INSERT returned, so pg_recvlogical can read a row before it.\n")
	benchReport(t, "%s", report.String())
}

// benchBin is a build of the binary under a label.
type benchBin struct{ label, path string }

// benchBins is BENCH_BINS (label=path,...), or the binary under test.
func benchBins(t *testing.T) []benchBin {
	v := os.Getenv("BENCH_BINS")
	if v == "" {
		return []benchBin{{"serve", BinPath}}
	}
	var out []benchBin
	for _, f := range strings.Split(v, ",") {
		label, path, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("BENCH_BINS=%q: want label=path,...", v)
		}
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		out = append(out, benchBin{label, path})
	}
	return out
}

// ceilingLastClient is the same sequence with the ceiling program: one
// frame to the n clients, the next once every client read it; the time
// from the request to the last client reading the frame.
func ceilingLastClient(t *testing.T, report *strings.Builder, n, frames int, serial bool) {
	t.Helper()
	framePath := filepath.Join(t.TempDir(), "frame.json")
	frame := `{"type":"event","channels":["role:student"],"event":{"cursor":"0000000016B3748C-00000003","eventType":"announcement.created","table":"announcements","op":"insert","commitTime":"2026-11-27T12:00:00.000000Z","data":{"id":7,"target_role":"student","is_pinned":false}}}`
	if err := os.WriteFile(framePath, []byte(frame), 0o644); err != nil {
		t.Fatal(err)
	}
	ceil, pid := startCeilingPid(t, framePath)
	cc := dialBenchClients(t, "ws://"+ceil+"/ws", n, benchRole, nil, nil)
	defer cc.close()
	waitCeilingConns(t, ceil, n)
	const warm = 20
	rec := newRecorder(warm, frames, n)
	cc.ordinal = true
	cc.rec = rec
	hc := &http.Client{Timeout: time.Minute}
	query, label := "", "ceiling program"
	if serial {
		query, label = "&serial=1", "ceiling program, in turn"
	}
	cpu0, self0 := cpuSeconds(t, pid), cpuSeconds(t, os.Getpid())
	for k := range warm + frames {
		rec.committed(int64(k), time.Now().UnixNano())
		resp, err := hc.Post(fmt.Sprintf("http://%s/fire?count=1%s", ceil, query), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if k < warm {
			if !cc.waitFrames(int64((k+1)*n), time.Minute) {
				t.Fatalf("ceiling: warm-up frame %d reached %d", k, cc.frames.Load())
			}
			if k == warm-1 {
				cpu0, self0 = cpuSeconds(t, pid), cpuSeconds(t, os.Getpid())
			}
			continue
		}
		deadline := time.Now().Add(30 * time.Second)
		for rec.got[k-warm].Load() < int32(n) {
			if time.Now().After(deadline) {
				t.Fatalf("ceiling: frame %d reached %d of %d clients in 30 s", k, rec.got[k-warm].Load(), n)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	cpu := (cpuSeconds(t, pid) - cpu0) * 1000 / float64(frames)
	self := (cpuSeconds(t, os.Getpid()) - self0) * 1000 / float64(frames)
	lat, _ := rec.latencies(frames)
	first, spread := rec.firstAndSpread(frames)
	fmt.Fprintf(report, "| | %s | | %s / %s / %s | | | %s; %s / %s | %.2f / %.2f |\n", label, ms(quantile(lat, .5)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]),
		ms(quantile(first, .5)), ms(quantile(spread, .5)), ms(quantile(spread, .99)), cpu, self)
}
