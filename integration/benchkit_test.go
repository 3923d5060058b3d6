package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// The benchmark kit (BENCHMARKS.md, `make bench`): what the Bench* tests of
// bench_test.go share. A benchmark here is a test that runs only when
// CDC_BENCH is set and measures; it asserts that the run was valid (every
// event arrived, the baseline ran), never how fast it was. Results are
// appended, as Markdown, to $CDC_BENCH_OUT.

// benchOnly skips t unless CDC_BENCH is set.
func benchOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("CDC_BENCH") == "" {
		t.Skip("a benchmark: run it with `make bench` (CDC_BENCH=1)")
	}
}

// benchReport appends a Markdown section to $CDC_BENCH_OUT (and logs it).
func benchReport(t *testing.T, format string, args ...any) {
	t.Helper()
	text := fmt.Sprintf(format, args...)
	t.Log("\n" + text)
	path := os.Getenv("CDC_BENCH_OUT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("bench report: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(text + "\n"); err != nil {
		t.Fatalf("bench report: %v", err)
	}
}

// benchServe is a `serve` under measurement.
type benchServe struct {
	proc      *Proc
	addr      string // HTTP listener
	pprofAddr string
	wsURL     string
}

// startBenchServe starts serve on db with the benchmark settings (limits
// out of the way of the load, audit log off) plus edits, and waits until it
// streams.
func startBenchServe(t *testing.T, db *DB, slot string, edits map[string]any) *benchServe {
	t.Helper()
	return startBenchServeBin(t, BinPath, db, slot, edits)
}

// startBenchServeBin is startBenchServe with the binary at bin (another
// build, to compare two in one run).
func startBenchServeBin(t *testing.T, bin string, db *DB, slot string, edits map[string]any) *benchServe {
	t.Helper()
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
	p := startProgram(t, bin, nil, "serve", "--config", cfg, "--pprof", fmt.Sprintf("127.0.0.1:%d", pp))
	p.WaitStderr(t, `"msg":"serving"`, 2*time.Minute)
	p.WaitStderr(t, readinessMsg, 2*time.Minute)
	m := servingListen.FindStringSubmatch(p.Stderr())
	if m == nil {
		t.Fatalf("serve logged no listen address:\n%s", p.Stderr())
	}
	return &benchServe{proc: p, addr: m[1], wsURL: "ws://" + m[1] + "/ws", pprofAddr: fmt.Sprintf("127.0.0.1:%d", pp)}
}

// procStatus reads a "VmRSS"-like field of /proc/pid/status, in bytes.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				t.Fatalf("parse %s %q: %v", field, line, err)
			}
			return n << 10 // kB
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// forceGC makes serve collect garbage: its heap profile handler with gc=1
// runs runtime.GC first.
func (s *benchServe) forceGC(t testing.TB) {
	t.Helper()
	resp, err := http.Get("http://" + s.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatalf("force GC: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// saveProfile stores serve's profile name (e.g. "heap", "profile?seconds=10")
// under .tmp/bench/ for `go tool pprof`.
func (s *benchServe) saveProfile(t testing.TB, name, file string) {
	t.Helper()
	dir := filepath.Join(repoRoot, ".tmp", "bench")
	_ = os.MkdirAll(dir, 0o755)
	resp, err := http.Get("http://" + s.pprofAddr + "/debug/pprof/" + name)
	if err != nil {
		t.Logf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(dir, file))
	if err != nil {
		t.Logf("profile %s: %v", name, err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
	t.Logf("profile saved: .tmp/bench/%s", file)
}

// ---- load clients ----

// benchClients is a set of WebSocket clients of the gateway (or of the
// ceiling program). Each reads every frame as it comes, and for event
// frames records, through the recorder, which row it carried and when.
type benchClients struct {
	conns []*websocket.Conn
	rec   *recorder
	// frames counts the frames read by all clients; events the event frames.
	frames, events atomic.Int64
	// lastAt is when the latest frame was read (Unix ns), firstAt the first
	// since reset.
	firstAt, lastAt atomic.Int64
	errs            atomic.Int64
	// ordinal: frames carry no row id (the ceiling program's); the n-th
	// frame a client reads counts as id n.
	ordinal bool
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	ctx     context.Context
}

// benchDialers spread the clients over source addresses 127.0.0.1-16, so
// that tens of thousands of connections to one port do not exhaust the
// ephemeral ports of one address.
func benchHTTPClient(i int) *http.Client {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%16))}
	d := &net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns: -1,
	}}
}

// dialBenchClients opens n connections to wsURL, each with its own user
// (role role) authenticated on the upgrade request, subscribes each to
// channels (when not empty), and starts their readers. It dials with a few
// workers in parallel.
func dialBenchClients(t *testing.T, wsURL string, n int, role string, channels []string, rec *recorder) *benchClients {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bc := &benchClients{conns: make([]*websocket.Conn, n), rec: rec, ctx: ctx, cancel: cancel}
	t.Cleanup(bc.close)
	clients := make([]*http.Client, 16)
	for i := range clients {
		clients[i] = benchHTTPClient(i)
	}
	key := []byte(gwSecret)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				if err := bc.dialOne(i, wsURL, clients[i%16], key, role, channels); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("client %d: %w", i, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatalf("dial %d clients: %v", n, err)
	}
	t.Logf("%d clients connected and subscribed in %v", n, time.Since(start).Round(time.Millisecond))
	return bc
}

func (bc *benchClients) dialOne(i int, wsURL string, hc *http.Client, key []byte, role string, channels []string) error {
	ctx, cancel := context.WithTimeout(bc.ctx, 60*time.Second)
	defer cancel()
	h := http.Header{}
	if key != nil {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": fmt.Sprintf("%d", 900000000+i), "role": role,
			"iss": gwIssuer, "aud": gwAudience,
			"exp": time.Now().Add(24 * time.Hour).Unix(),
		}).SignedString(key)
		if err != nil {
			return err
		}
		h.Set("Authorization", "Bearer "+tok)
	}
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h, Subprotocols: []string{"cdc.v1"}})
	if err != nil {
		return err
	}
	c.SetReadLimit(1 << 20)
	bc.conns[i] = c
	if len(channels) > 0 {
		if _, _, err := c.Read(ctx); err != nil { // welcome
			return fmt.Errorf("read welcome: %w", err)
		}
		req, _ := json.Marshal(map[string]any{"type": "subscribe", "id": 1, "channels": channels})
		if err := c.Write(ctx, websocket.MessageText, req); err != nil {
			return err
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			return fmt.Errorf("read subscribed: %w", err)
		}
		if !bytes.Contains(b, []byte(`"type":"subscribed"`)) || bytes.Contains(b, []byte(`"error"`)) {
			return fmt.Errorf("subscribe refused: %s", b)
		}
	}
	bc.wg.Add(1)
	go bc.read(c)
	return nil
}

var dataID = []byte(`"data":{"id":`)

// read reads frames from c until it closes, recording event frames.
func (bc *benchClients) read(c *websocket.Conn) {
	defer bc.wg.Done()
	buf := make([]byte, 0, 4096)
	var nth int64
	for {
		_, r, err := c.Reader(bc.ctx)
		if err != nil {
			if bc.ctx.Err() == nil {
				bc.errs.Add(1)
			}
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, len(buf))
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				bc.errs.Add(1)
				return
			}
		}
		now := time.Now().UnixNano()
		bc.frames.Add(1)
		bc.firstAt.CompareAndSwap(0, now)
		bc.lastAt.Store(now)
		if bc.ordinal {
			if bc.rec != nil {
				bc.rec.received(nth, now)
			}
			nth++
			continue
		}
		if i := bytes.Index(buf, dataID); i >= 0 {
			bc.events.Add(1)
			if bc.rec != nil {
				if id, ok := leadingInt(buf[i+len(dataID):]); ok {
					bc.rec.received(id, now)
				}
			}
		}
	}
}

// leadingInt parses the decimal number at the start of b.
func leadingInt(b []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, i > 0
}

// resetTimes forgets the first and last frame times.
func (bc *benchClients) resetTimes() {
	bc.firstAt.Store(0)
	bc.lastAt.Store(0)
}

// waitFrames waits until the clients have read total frames, or timeout.
func (bc *benchClients) waitFrames(total int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for bc.frames.Load() < total {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

func (bc *benchClients) close() {
	bc.cancel()
	for _, c := range bc.conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
	bc.wg.Wait()
}

// ---- latency recording ----

// recorder keeps, per row id in [base, base+n), when it was committed and
// when the last of the expected receivers read it.
type recorder struct {
	base     int64
	want     int32 // receivers per row
	commitAt []atomic.Int64
	firstAt  []atomic.Int64
	lastAt   []atomic.Int64
	got      []atomic.Int32
}

func newRecorder(base int64, n int, want int) *recorder {
	return &recorder{base: base, want: int32(want), commitAt: make([]atomic.Int64, n),
		firstAt: make([]atomic.Int64, n), lastAt: make([]atomic.Int64, n), got: make([]atomic.Int32, n)}
}

func (r *recorder) committed(id int64, at int64) {
	if i := id - r.base; i >= 0 && i < int64(len(r.commitAt)) {
		r.commitAt[i].Store(at)
	}
}

func (r *recorder) received(id int64, at int64) {
	i := id - r.base
	if i < 0 || i >= int64(len(r.got)) {
		return
	}
	r.got[i].Add(1)
	r.firstAt[i].CompareAndSwap(0, at)
	for {
		old := r.lastAt[i].Load()
		if at <= old || r.lastAt[i].CompareAndSwap(old, at) {
			return
		}
	}
}

// complete reports whether every committed row reached every receiver.
func (r *recorder) complete(rows int) bool {
	for i := 0; i < rows; i++ {
		if r.got[i].Load() < r.want {
			return false
		}
	}
	return true
}

// latencies returns commit → last receiver, for rows [0, rows) that every
// receiver read, and how many rows were incomplete.
func (r *recorder) latencies(rows int) (lat []time.Duration, incomplete int) {
	for i := 0; i < rows; i++ {
		if r.got[i].Load() < r.want || r.commitAt[i].Load() == 0 {
			incomplete++
			continue
		}
		lat = append(lat, time.Duration(r.lastAt[i].Load()-r.commitAt[i].Load()))
	}
	slices.Sort(lat)
	return lat, incomplete
}

// firstAndSpread are, sorted, per complete row: the time from the commit
// to the first receiver reading it, and from the first to the last.
func (r *recorder) firstAndSpread(rows int) (first, spread []time.Duration) {
	for i := 0; i < rows; i++ {
		if r.got[i].Load() < r.want || r.commitAt[i].Load() == 0 {
			continue
		}
		first = append(first, time.Duration(r.firstAt[i].Load()-r.commitAt[i].Load()))
		spread = append(spread, time.Duration(r.lastAt[i].Load()-r.firstAt[i].Load()))
	}
	slices.Sort(first)
	slices.Sort(spread)
	return first, spread
}

// quantile is the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// ---- pg_recvlogical ----

// recvLogical runs pg_recvlogical on db with args after the connection
// options.
func recvLogical(t testing.TB, db *DB, args ...string) *exec.Cmd {
	t.Helper()
	all := append([]string{"-h", PG.Host, "-p", strconv.Itoa(PG.Port), "-U", "postgres", "-d", db.Name}, args...)
	return exec.Command(filepath.Join(PG.BinDir, "pg_recvlogical"), all...)
}

// startRecvLogicalTD streams slot (test_decoding, created here) to a pipe
// and records, for each INSERT into announcements, when its line arrived.
func startRecvLogicalTD(t *testing.T, db *DB, slot string, rec *recorder) (stop func()) {
	t.Helper()
	cmd := recvLogical(t, db, "--slot", slot, "--create-slot", "--if-not-exists", "-P", "test_decoding",
		"--start", "-f", "-", "-F", "0", "-s", "10", "-o", "skip-empty-xacts=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pg_recvlogical: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		prefix := []byte("table public.announcements: INSERT: id[bigint]:")
		for sc.Scan() {
			line := sc.Bytes()
			if rest, ok := bytes.CutPrefix(line, prefix); ok {
				if id, ok := leadingInt(rest); ok {
					rec.received(id, time.Now().UnixNano())
				}
			}
		}
	}()
	// Wait for the slot to exist (pg_recvlogical creates it).
	deadline := time.Now().Add(30 * time.Second)
	for db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pg_recvlogical did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-done
		_ = cmd.Wait()
	}
}
