// Package scripts holds the tests of the shell scripts beside it: the
// terminal feed of `make demo` (format_events in lib.sh) and demo.sh run
// end to end.
package scripts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// tailLine is one line of `cdc-broadcaster tail`, as cmd/cdc-broadcaster/
// tail.go writes it: the envelope clients see.
func tailLine(t *testing.T, ev broadcaster.Event) string {
	t.Helper()
	channels := ev.Channels
	if channels == nil {
		channels = []string{}
	}
	b, err := json.Marshal(struct {
		Channels []string           `json:"channels"`
		Event    *broadcaster.Event `json:"event"`
	}{channels, &ev})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines reads r line by line onto a channel, closed at EOF.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// TestFormatEvents feeds format_events (scripts/lib.sh) one line at a time,
// with a pause after each, and wants each formatted line out before the
// next goes in: a formatter that buffers its input (Debian's awk, mawk,
// reads pipes a 4 KiB block at a time) holds the first line back until
// the block fills or the input ends, and fails here.
func TestFormatEvents(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1_762_243_200_000)
	cur := broadcaster.Cursor{LSN: 0x1A2B3C, Pos: 1}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "an event with an actor",
			in: tailLine(t, broadcaster.Event{ID: cur, Type: "attendance.marked", Table: "attendance", Op: broadcaster.OpInsert,
				Data:      broadcaster.Row{{Name: "id", Value: int64(5)}, {Name: "status", Value: "late"}},
				Timestamp: at, UserID: "15", TxID: 812, Channels: []string{"class:1", "student:31", "table:attendance"}}),
			want: fmt.Sprintf("%-28s %-15s %-58s user=15", "attendance.marked", "attendance", "class:1,student:31,table:attendance"),
		},
		{
			name: "no actor",
			in: tailLine(t, broadcaster.Event{ID: cur, Type: "notification.created", Table: "notifications", Op: broadcaster.OpInsert,
				Data: broadcaster.Row{{Name: "id", Value: int64(9)}}, Timestamp: at, TxID: 813, Channels: []string{"user:118"}}),
			want: fmt.Sprintf("%-28s %-15s %-58s user=-", "notification.created", "notifications", "user:118"),
		},
		{
			// A row whose values look like the envelope's keys: the
			// columns come from the envelope, not from the row.
			name: "a row that looks like the envelope",
			in: tailLine(t, broadcaster.Event{ID: cur, Type: "upload.started", Table: "uploads", Op: broadcaster.OpUpdate,
				Data:    broadcaster.Row{{Name: "userId", Value: `x","txId":1}}`}, {Name: "table", Value: "]"}},
				OldData: broadcaster.Row{{Name: "eventType", Value: "fake"}}, Timestamp: at, TxID: 814}),
			want: fmt.Sprintf("%-28s %-15s %-58s user=-", "upload.started", "uploads", ""),
		},
		{
			name: "not an event: as it is",
			in:   `cdc-broadcaster: warning: something to say`,
			want: `cdc-broadcaster: warning: something to say`,
		},
		{
			name: "another JSON shape: as it is",
			in:   `{"event":{"eventType":"x.y"},"channels":[]}`,
			want: `{"event":{"eventType":"x.y"},"channels":[]}`,
		},
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", `source scripts/lib.sh && format_events`)
	cmd.Dir = ".."
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := lines(stdout)
	const (
		pause   = 300 * time.Millisecond // between two lines, as events come
		timeout = 5 * time.Second        // for one line to come out
	)
	for i, tt := range tests {
		sent := time.Now()
		if _, err := io.WriteString(stdin, tt.in+"\n"); err != nil {
			t.Fatalf("%s: write: %v", tt.name, err)
		}
		select {
		case got, ok := <-out:
			if !ok {
				t.Fatalf("%s: format_events ended: %v", tt.name, cmd.Wait())
			}
			if got != tt.want {
				t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
			}
			t.Logf("line %d out %v after it went in", i+1, time.Since(sent).Round(time.Millisecond))
		case <-time.After(timeout):
			t.Fatalf("%s: no line out %v after it went in, and line %d is still to come: format_events holds its input back",
				tt.name, timeout, i+2)
		}
		time.Sleep(pause)
	}
	stdin.Close()
	select {
	case extra, ok := <-out:
		if ok {
			t.Errorf("an extra line: %q", extra)
		}
	case <-time.After(timeout):
		t.Fatalf("format_events did not end %v after its input did", timeout)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("format_events: %v", err)
	}
}

// TestDemo runs `make demo`'s script for a few seconds (DEMO_DURATION) on
// a free port and checks what it prints: events as columns, not JSON, and,
// after it has stopped, the logs it names still there. It starts its own
// PostgreSQL (scripts/pg.sh), as `make demo` does.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, serve, tail and the simulator: not with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	logs := filepath.Join(t.TempDir(), "logs")
	bin := t.TempDir()
	port := freePort(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DEMO_DURATION=8", "DEMO_RATE=5", fmt.Sprintf("DEMO_PORT=%d", port),
		"DEMO_LOG_DIR="+logs, "BIN_DIR="+bin, "DEMO_KEEP=")
	// demo.sh and what it starts are one process group, killed whole on a
	// timeout; it dies with this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var feed, said []string
	wg.Add(2)
	go func() {
		defer wg.Done()
		for l := range lines(stdout) {
			feed = append(feed, l)
		}
	}()
	go func() {
		defer wg.Done()
		for l := range lines(stderr) {
			said = append(said, l)
		}
	}()
	wg.Wait()
	runErr := cmd.Wait()
	took := time.Since(start)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers, if any
	report := func() string {
		return fmt.Sprintf("stderr:\n%s\nstdout (%d lines), first ones:\n%s", strings.Join(said, "\n"), len(feed),
			strings.Join(feed[:min(len(feed), 10)], "\n"))
	}
	if runErr != nil {
		t.Fatalf("demo.sh: %v after %v\n%s", runErr, took.Round(time.Millisecond), report())
	}
	t.Logf("demo.sh ran %v, printed %d events", took.Round(time.Millisecond), len(feed))

	column := regexp.MustCompile(`^[a-z][A-Za-z]*\.[A-Za-z_]+ +[a-z_]+ +[a-z_:0-9,{}]* +user=(-|[0-9]+)$`)
	events := 0
	for _, l := range feed {
		if column.MatchString(l) {
			events++
		} else {
			t.Errorf("not an event line: %q", l)
		}
	}
	if events < 5 {
		t.Errorf("%d event lines in 8 s of the simulator at 5 changes/s\n%s", events, report())
	}

	// The paths it names are there after it stopped: the banner's logs and
	// the last line's log directory.
	all := strings.Join(said, "\n")
	named := regexp.MustCompile(`(?:, |its )log (/\S+\.log)`).FindAllStringSubmatch(all, -1)
	if len(named) < 3 {
		t.Fatalf("the banner names %d logs, want serve's, tail's and school-sim's\n%s", len(named), report())
	}
	for _, m := range named {
		path := m[1]
		if strings.Contains(path, "/pg/") {
			continue // the cluster's own log, in the temp dir, copied on exit
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
			t.Errorf("the banner names %s, and after the exit it is missing or empty (%v)", path, err)
		}
	}
	last := regexp.MustCompile(`logs in (\S+): (.*)`).FindStringSubmatch(all)
	if last == nil || last[1] != logs {
		t.Fatalf("no \"logs in %s\" on exit\n%s", logs, report())
	}
	for _, f := range []string{"serve.log", "tail.log", "sim.log", "postgres.log"} {
		if !strings.Contains(last[2], f) {
			t.Errorf("the exit line names %q, not %s", last[2], f)
		}
		if _, err := os.Stat(filepath.Join(logs, f)); err != nil {
			t.Errorf("after the exit: %v", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(logs, "tail.log")); err != nil || !strings.Contains(string(b), "msg=streaming") {
		t.Errorf("tail.log lacks tail's start (%v): %s", err, b)
	}
	if tmp := regexp.MustCompile(`data in (\S+)/pg`).FindStringSubmatch(all); tmp == nil {
		t.Errorf("the banner does not say where the database is\n%s", report())
	} else if _, err := os.Stat(tmp[1]); !os.IsNotExist(err) {
		t.Errorf("the temp dir %s is still there after the exit (%v)", tmp[1], err)
	}
}

// freePort returns a TCP port nothing listens on at 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
