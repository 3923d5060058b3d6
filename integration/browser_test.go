package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// browserTimeout bounds the whole node run (it takes well under two
// minutes; the rest is slack for a slow machine).
const browserTimeout = 6 * time.Minute

// defaultChromium is Debian's Chromium, which scripts/test-deps.sh installs.
const defaultChromium = "/usr/bin/chromium"

// TestBrowser runs the browser end-to-end tests of e2e/ (Node's test
// runner, playwright-core driving Debian's Chromium) against the /demo/
// dashboards of a real `serve` and this package's PostgreSQL. It makes a
// database with the example school and a config with server.demo on, then
// runs `node --test --test-reporter=spec` on e2e/*.test.mjs (one file at a
// time), which start, kill and restart `serve` themselves, write to the
// database and check what the pages show. Screenshots go to e2e/screenshots/.
//
// It fails, not skips, when Chromium, node or e2e/node_modules is missing:
// `make test` (scripts/test-deps.sh) installs them. CHROMIUM overrides the
// browser's path; E2E_TEST_NAME_PATTERN runs only the node tests whose
// name matches it (node --test-name-pattern).
func TestBrowser(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = defaultChromium
	}
	if fi, err := os.Stat(chromium); err != nil || fi.IsDir() {
		t.Fatalf("Chromium not found at %s (%v): run `make test` or scripts/test-deps.sh to install it (Debian package chromium)", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (%v): run `make test` or scripts/test-deps.sh to install Node.js", err)
	}
	e2e := filepath.Join(repoRoot, "e2e")
	for _, pkg := range []string{"playwright-core", "pg"} {
		if _, err := os.Stat(filepath.Join(e2e, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("e2e/node_modules/%s is missing: run `make test` or scripts/test-deps.sh (npm ci in e2e/)", pkg)
		}
	}
	files, err := filepath.Glob(filepath.Join(e2e, "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no e2e/*.test.mjs (%v)", err)
	}
	sort.Strings(files)
	shots := filepath.Join(e2e, "screenshots")
	if err := os.RemoveAll(shots); err != nil {
		t.Fatalf("clear %s: %v", shots, err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatalf("make %s: %v", shots, err)
	}

	db := NewDB(t, WithExampleData())
	port := FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	cfg := WriteConfig(t, db, map[string]any{
		"source.slot":            "s_" + db.Name,
		"source.status_interval": "200ms",
		"server.listen":          fmt.Sprintf("127.0.0.1:%d", port),
		"server.allowed_origins": []string{url},
		"server.demo":            true,
		"server.drain_timeout":   "2s",
		"auth.jwt.secret":        hex.EncodeToString(secret),
		// Every page of the tests connects from 127.0.0.1, and reconnects
		// fast (?fast=1) while the WebSocket is blocked or serve is down.
		"limits.max_connections_per_ip_per_minute": 100000,
		"limits.max_connections_per_user":          100,
	})

	// --experimental-websocket: e2e/adapter.test.mjs runs the adapter on
	// Node's own WebSocket (a flag on Node 20, the default from Node 22,
	// which still accepts it). One test file at a time: each starts and
	// kills its own serve on the config's port.
	args := []string{"--experimental-websocket", "--test", "--test-concurrency=1", "--test-reporter=spec"}
	if p := os.Getenv("E2E_TEST_NAME_PATTERN"); p != "" {
		args = append(args, "--test-name-pattern="+p)
	}
	for _, f := range files {
		args = append(args, filepath.Base(f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = e2e
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, cdcEnvPrefix) && !strings.HasPrefix(kv, "CHROMIUM=") && !strings.HasPrefix(kv, "SCREENSHOTS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"CDC_BIN="+BinPath,
		"CDC_CONFIG="+cfg,
		"CDC_DB="+db.URL,
		"CDC_URL="+url,
		"CHROMIUM="+chromium,
		"SCREENSHOTS="+shots,
		"NO_COLOR=1", "FORCE_COLOR=0", // plain text in the test log
	)
	// node, the serve it starts and Chromium are one process group, killed
	// whole when the run ends or times out; node dies with this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	logged := make(chan []string)
	go func() {
		var lines []string
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			t.Log(sc.Text())
			lines = append(lines, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
		logged <- lines
	}()

	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-logged
		t.Fatalf("start node: %v", err)
	}
	runErr := cmd.Wait()
	took := time.Since(start)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers, if any
	pw.Close()
	lines := <-logged
	if runErr != nil {
		why := runErr.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("timed out after %v", browserTimeout)
		}
		t.Fatalf("node --test e2e/ failed (%s) after %v; screenshots in %s; its output is above, ending:\n%s",
			why, took.Round(time.Millisecond), shots, failureSummary(lines))
	}
	t.Logf("browser tests passed in %v; screenshots in %s", took.Round(time.Millisecond), shots)
}

// failureSummary is the part of node's spec output that names the failed
// tests (from "failing tests:" on), else its last 80 lines.
func failureSummary(lines []string) string {
	for i, l := range lines {
		if strings.Contains(l, "failing tests:") {
			return strings.Join(lines[i:], "\n")
		}
	}
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	return strings.Join(lines, "\n")
}
