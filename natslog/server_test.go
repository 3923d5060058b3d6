package natslog

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testServer is one real nats-server with JetStream (the pinned binary
// that `make test-deps` installs in .tmp/bin), on a random loopback port.
type testServer struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
}

// serverBinAndPort returns the pinned nats-server binary and a free
// loopback port for it.
func serverBinAndPort(t *testing.T) (string, int) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".tmp", "bin", "nats-server")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no nats-server at %s: run `make test-deps`", bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return bin, port
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	bin, port := serverBinAndPort(t)
	s := &testServer{t: t, bin: bin, dir: t.TempDir(), port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *testServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *testServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-sd", s.dir)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := nats.Connect(s.url(), nats.Timeout(time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			_, err = js.AccountInfo(context.Background())
			nc.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server did not get ready: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *testServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// testWriter sends a logger's lines to the test's log until the test's
// cleanups are done: NATS calls its handlers (disconnected, ...) on its
// own goroutines, also after the connection was closed by a cleanup, when
// logging to the test would race with its end.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

// newTestWriter returns a testWriter for t. Call it before anything whose
// cleanup closes a connection: its own cleanup, registered first, runs
// last.
func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// open connects and makes sure the stream exists.
func (s *testServer) open(t *testing.T, stream string) (jetstream.JetStream, jetstream.Stream, Options) {
	t.Helper()
	o := Options{URLs: []string{s.url()}, Stream: stream, Create: true, Logger: slog.New(slog.NewTextHandler(newTestWriter(t), nil))}
	nc, js, err := Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st, err := EnsureStream(context.Background(), js, o)
	if err != nil {
		t.Fatal(err)
	}
	return js, st, o
}
