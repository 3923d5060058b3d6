// Package scripts holds the tests of the shell scripts beside it: the
// terminal feed of `make demo` (format_events in lib.sh).
package scripts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
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
