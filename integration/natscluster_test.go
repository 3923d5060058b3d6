package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The NATS cluster helper starts real nats-server processes, built by
// scripts/test-deps.sh (`make test-deps`) into .tmp/bin at the version it
// pins, so that tests of the `log.backend: nats` side run against the same
// engine operators run.

const (
	// natsClusterName is the cluster name every server of a NATSCluster
	// shares.
	natsClusterName = "cdc-test"
	// natsReadyTimeout bounds WaitReady and so StartNATSCluster.
	natsReadyTimeout = 30 * time.Second
	// natsStopTimeout bounds how long Stop and Kill wait for an exit.
	natsStopTimeout = 30 * time.Second
	// natsLogTail is how many log lines failure messages show per server.
	natsLogTail = 40
)

// NATSCluster is a JetStream cluster of nats-server processes on loopback
// ports, started by StartNATSCluster and torn down when the test ends. A
// cluster of one is a standalone JetStream server (no cluster block).
//
// Its methods may be called from several goroutines, but the test that
// started the cluster owns it: Kill, Stop and Start of the same server from
// two goroutines at once are the test's race, not the helper's.
type NATSCluster struct {
	// Name is the cluster name ("cdc-test"); empty for a cluster of one.
	Name string

	bin      string        // the nats-server binary
	dir      string        // holds every server's config, store and log
	servers  []*natsServer // index i is server "n<i>"
	watchdog *exec.Cmd     // removes dir if this process dies
	wdPipe   *os.File      // write end of the watchdog's stdin

	mu     sync.Mutex // guards closed
	closed bool       // set by close; Start refuses once set
}

// natsServer is one member of a NATSCluster. Its ports and files stay the
// same across Kill/Stop and Start.
type natsServer struct {
	name        string // server_name: n0, n1, ...
	clientPort  int
	clusterPort int // 0 for a cluster of one
	httpPort    int // monitoring
	storeDir    string
	confPath    string
	logPath     string // the server's stdout and stderr, appended across restarts

	mu     sync.Mutex // guards proc and wantUp
	proc   *natsProc  // nil when never started
	wantUp bool       // started and not since killed or stopped by the test
}

// natsProc is one run of a nats-server process.
type natsProc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed once the process exited
}

func (p *natsProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var (
	natsLiveMu sync.Mutex // guards natsLive
	// natsLive are the clusters not yet closed; tearDown closes them when
	// the run is interrupted before the tests' cleanups ran.
	natsLive = map[*NATSCluster]bool{}
)

// closeNATSClusters kills every live cluster's servers and removes their
// files. tearDown calls it; after a normal run there is none left.
func closeNATSClusters() {
	natsLiveMu.Lock()
	live := make([]*NATSCluster, 0, len(natsLive))
	for c := range natsLive {
		live = append(live, c)
	}
	natsLiveMu.Unlock()
	for _, c := range live {
		if err := c.close(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		}
	}
}

// natsServerBin is .tmp/bin/nats-server under the repo root, or an error
// saying how to install it.
func natsServerBin() (string, error) {
	if repoRoot == "" {
		return "", fmt.Errorf("nats-server: no repo root (TestMain did not run?)")
	}
	bin := filepath.Join(repoRoot, ".tmp", "bin", "nats-server")
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("nats-server not found at %s: run `make test-deps` (scripts/test-deps.sh installs it)", bin)
	}
	return bin, nil
}

// StartNATSCluster starts n nats-server processes (n0..n<n-1>) with
// JetStream, each with its own store under a fresh temp dir, routes between
// them and a monitoring port, all on random 127.0.0.1 ports, and waits until
// it is ready (WaitReady). The servers are killed and their files removed
// when the test ends; if the test failed, each server's state and log tail
// are logged then (failure messages of the methods below rely on that).
// It fails the test if .tmp/bin/nats-server is missing.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartNATSCluster: need at least one server, got %d", n)
	}
	bin, err := natsServerBin()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cdc-nats-")
	if err != nil {
		t.Fatalf("StartNATSCluster: make temp dir: %v", err)
	}
	c := &NATSCluster{bin: bin, dir: dir}
	if n > 1 {
		c.Name = natsClusterName
	}
	if err := c.startWatchdog(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("StartNATSCluster: %v", err)
	}
	natsLiveMu.Lock()
	natsLive[c] = true
	natsLiveMu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("NATS cluster (%s) at failure:\n%s", c.dir, c.describe())
		}
		if err := c.close(); err != nil {
			t.Error(err)
		}
	})

	used := map[int]bool{}
	port := func() int { // distinct among the cluster's ports
		for {
			if p := FreePort(t); !used[p] {
				used[p] = true
				return p
			}
		}
	}
	for i := range n {
		s := &natsServer{name: fmt.Sprintf("n%d", i), clientPort: port(), httpPort: port()}
		if n > 1 {
			s.clusterPort = port()
		}
		s.storeDir = filepath.Join(dir, s.name, "store")
		s.confPath = filepath.Join(dir, s.name, "nats-server.conf")
		s.logPath = filepath.Join(dir, s.name, "nats-server.log")
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if err := os.MkdirAll(s.storeDir, 0o700); err != nil {
			t.Fatalf("StartNATSCluster: %v", err)
		}
		if err := os.WriteFile(s.confPath, []byte(c.config(s)), 0o600); err != nil {
			t.Fatalf("StartNATSCluster: write %s: %v", s.confPath, err)
		}
	}
	for i := range c.servers {
		c.Start(t, i)
	}
	c.WaitReady(t)
	return c
}

// natsWatchdogScript waits for EOF or "done" on stdin. EOF without "done"
// means the test process died, and with it (Pdeathsig) every server: give
// them a moment to go, then remove the cluster's files.
const natsWatchdogScript = `read -r line || true
if [ "$line" != done ]; then sleep 1; fi
rm -rf "$1"`

func (c *NATSCluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("watchdog pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", natsWatchdogScript, "nats-watchdog", c.dir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	r.Close()
	c.watchdog, c.wdPipe = cmd, w
	return nil
}

// config is server s's nats-server configuration file.
func (c *NATSCluster) config(s *natsServer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# integration test server %s (test only: small limits, loopback only)\n", s.name)
	fmt.Fprintf(&b, "server_name: %s\n", s.name)
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\n", s.clientPort)
	fmt.Fprintf(&b, "http: 127.0.0.1:%d\n", s.httpPort)
	// A route to a killed server is retried every second; log every 30th
	// failure, not each, so that log tails show more than the retries.
	b.WriteString("reconnect_error_reports: 30\n")
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_mem: 64MB\n  max_file: 256MB\n}\n", s.storeDir)
	if c.Name == "" {
		return b.String()
	}
	routes := make([]string, 0, len(c.servers))
	for _, o := range c.servers {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
	}
	fmt.Fprintf(&b, "cluster {\n  name: %s\n  listen: 127.0.0.1:%d\n  routes: [\n    %s\n  ]\n}\n",
		c.Name, s.clusterPort, strings.Join(routes, "\n    "))
	return b.String()
}

// Size is the number of servers, running or not.
func (c *NATSCluster) Size() int { return len(c.servers) }

// URLs are the servers' client URLs (nats://127.0.0.1:<port>), in server
// order, stopped servers included: a client given them all finds a running
// one.
func (c *NATSCluster) URLs() []string {
	urls := make([]string, len(c.servers))
	for i := range c.servers {
		urls[i] = c.ClientURL(i)
	}
	return urls
}

// URL is URLs joined with commas, the form nats.Connect takes.
func (c *NATSCluster) URL() string { return strings.Join(c.URLs(), ",") }

// ClientURL is server i's client URL.
func (c *NATSCluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.servers[i].clientPort)
}

// MonitorURL is server i's HTTP monitoring base URL (/healthz, /jsz, ...).
func (c *NATSCluster) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.servers[i].httpPort)
}

// ServerName is server i's server_name ("n<i>"), the name JetStream's
// stream and meta cluster info report.
func (c *NATSCluster) ServerName(i int) string { return c.servers[i].name }

// ServerIndex is the index of the server named name (as JetStream's
// stream or meta cluster info reports it); it fails the test if there is
// none, for example when a stream has no leader yet.
func (c *NATSCluster) ServerIndex(t testing.TB, name string) int {
	t.Helper()
	for i, s := range c.servers {
		if s.name == name {
			return i
		}
	}
	t.Fatalf("no NATS server named %q in the cluster", name)
	return -1
}

// Running reports whether server i's process is running.
func (c *NATSCluster) Running(i int) bool {
	p := c.servers[i].current()
	return p != nil && !p.exited()
}

// LogTail is the last n lines of server i's log (all its runs).
func (c *NATSCluster) LogTail(i, n int) string { return tailFile(c.servers[i].logPath, n) }

// Connect connects to the cluster (every URL) with opts after the
// helper's own (fast reconnects, never giving up), and closes the
// connection when the test ends.
func (c *NATSCluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.Name(t.Name()),
		nats.Timeout(5 * time.Second),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.MaxReconnects(-1),
	}, opts...)
	nc, err := nats.Connect(c.URL(), all...)
	if err != nil {
		t.Fatalf("connect to NATS %s: %v", c.URL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (s *natsServer) current() *natsProc {
	p, _ := s.state()
	return p
}

func (s *natsServer) state() (p *natsProc, wantUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc, s.wantUp
}

func (s *natsServer) setWantUp(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wantUp = up
}

// Start starts server i (again) with its config, store and ports. It does
// not wait: call WaitReady. It fails the test if the server is running.
func (c *NATSCluster) Start(t testing.TB, i int) {
	t.Helper()
	if err := c.start(i); err != nil {
		t.Fatal(err)
	}
}

func (c *NATSCluster) start(i int) error {
	s := c.servers[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("start NATS server %s: the cluster is closed", s.name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("start NATS server %s: already running (pid %d)", s.name, s.proc.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start NATS server %s: open log: %w", s.name, err)
	}
	fmt.Fprintf(logf, "--- harness: starting %s at %s\n", s.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, "-c", s.confPath)
	cmd.Dir = filepath.Dir(s.confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Dies with the test process, even on a -timeout panic.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start NATS server %s (%s): %w", s.name, c.bin, err)
	}
	p := &natsProc{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(logf, "--- harness: %s exited: %v\n", s.name, cmd.ProcessState)
		logf.Close()
		close(p.done)
	}()
	s.proc, s.wantUp = p, true
	return nil
}

// Kill sends server i SIGKILL (a crash: no goodbye to its peers) and waits
// for it to exit. Killing a server that is not running does nothing.
func (c *NATSCluster) Kill(t testing.TB, i int) {
	t.Helper()
	if err := c.signal(i, syscall.SIGKILL); err != nil {
		t.Fatalf("%v\nlog tail of %s:\n%s", err, c.servers[i].name, c.LogTail(i, natsLogTail))
	}
}

// Stop shuts server i down gracefully (SIGTERM) and waits for it to exit.
// Stopping a server that is not running does nothing.
func (c *NATSCluster) Stop(t testing.TB, i int) {
	t.Helper()
	if err := c.signal(i, syscall.SIGTERM); err != nil {
		t.Fatalf("%v\nlog tail of %s:\n%s", err, c.servers[i].name, c.LogTail(i, natsLogTail))
	}
}

// signal sends sig to server i and waits for its exit; on a timeout it
// kills the server and says so.
func (c *NATSCluster) signal(i int, sig syscall.Signal) error {
	s := c.servers[i]
	s.setWantUp(false)
	p := s.current()
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(natsStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("NATS server %s did not exit within %v of %v; killed", s.name, natsStopTimeout, sig)
	}
}

// WaitReady waits until every running server answers /healthz with 200
// (JetStream enabled, in contact with the meta leader and current on its
// streams) and, in a cluster, all agree on one meta leader that sees every
// other running server as a current peer. Servers the test killed or
// stopped are left out. It fails the test after 30 s, or as soon as a
// server exits that the test did not kill or stop, with every server's
// state and log tail.
func (c *NATSCluster) WaitReady(t testing.TB) {
	t.Helper()
	if err := c.waitReady(natsReadyTimeout); err != nil {
		t.Fatalf("NATS cluster not ready: %v (each server's state and log tail are logged when the test ends)", err)
	}
}

func (c *NATSCluster) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		for _, s := range c.servers {
			if p, up := s.state(); up && p.exited() {
				return fmt.Errorf("server %s exited by itself: %v", s.name, p.cmd.ProcessState)
			}
		}
		if last = c.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %v: %w", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ready checks once what WaitReady waits for.
func (c *NATSCluster) ready(ctx context.Context) error {
	type peer struct {
		Name    string `json:"name"`
		Current bool   `json:"current"`
		Offline bool   `json:"offline"`
	}
	var jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Replicas []peer `json:"replicas"`
		} `json:"meta_cluster"`
	}
	leader := ""
	var leaderPeers []peer
	running := map[string]bool{}
	for i, s := range c.servers {
		if !c.Running(i) {
			continue
		}
		running[s.name] = true
		if err := getJSON(ctx, c.MonitorURL(i)+"/healthz", nil); err != nil {
			return fmt.Errorf("server %s: %w", s.name, err)
		}
		if c.Name == "" {
			continue
		}
		jsz.Meta = nil
		if err := getJSON(ctx, c.MonitorURL(i)+"/jsz", &jsz); err != nil {
			return fmt.Errorf("server %s: %w", s.name, err)
		}
		switch {
		case jsz.Meta == nil || jsz.Meta.Leader == "":
			return fmt.Errorf("server %s: no JetStream meta leader", s.name)
		case leader != "" && jsz.Meta.Leader != leader:
			return fmt.Errorf("servers disagree on the meta leader: %s and %s", leader, jsz.Meta.Leader)
		}
		leader = jsz.Meta.Leader
		if leader == s.name {
			leaderPeers = jsz.Meta.Replicas
		}
	}
	if c.Name == "" {
		return nil
	}
	if !running[leader] {
		return fmt.Errorf("meta leader %s is not a running server", leader)
	}
	seen := map[string]bool{leader: true}
	for _, p := range leaderPeers {
		if running[p.Name] && p.Current && !p.Offline {
			seen[p.Name] = true
		}
	}
	for name := range running {
		if !seen[name] {
			return fmt.Errorf("meta leader %s does not see %s as a current peer", leader, name)
		}
	}
	return nil
}

// getJSON GETs url, wants 200 and decodes the body into v unless v is nil.
func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}

// describe is every server's state, ports and log tail, for failure
// messages.
func (c *NATSCluster) describe() string {
	var b strings.Builder
	for i, s := range c.servers {
		state := "never started"
		if p := s.current(); p != nil && p.exited() {
			state = fmt.Sprintf("exited (%v)", p.cmd.ProcessState)
		} else if p != nil {
			state = fmt.Sprintf("running (pid %d)", p.cmd.Process.Pid)
		}
		fmt.Fprintf(&b, "--- NATS server %s: %s; client %s, monitor %s; last lines of %s:\n%s\n",
			s.name, state, c.ClientURL(i), c.MonitorURL(i), s.logPath, c.LogTail(i, natsLogTail))
	}
	return b.String()
}

// close kills every server, waits for them and removes the cluster's
// files; safe to call twice.
func (c *NATSCluster) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	natsLiveMu.Lock()
	delete(natsLive, c)
	natsLiveMu.Unlock()
	var errs []string
	for i := range c.servers {
		if err := c.signal(i, syscall.SIGKILL); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Sprintf("remove %s: %v", c.dir, err))
	}
	_, _ = c.wdPipe.WriteString("done\n")
	_ = c.wdPipe.Close()
	waitTimeout(c.watchdog, 15*time.Second)
	if len(errs) > 0 {
		return fmt.Errorf("close NATS cluster: %s", strings.Join(errs, "; "))
	}
	return nil
}
