package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns the messages logged since the last take, as "LEVEL msg".
func (b *logBuffer) take(t *testing.T) []string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec.Level+" "+rec.Msg)
	}
	b.buf.Reset()
	return out
}

func newTestMonitorLog(t *testing.T, c *clock, threshold uint64, db SlotQuerier) (*SlotMonitor, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if db == nil {
		db = rowFunc(func(...any) error { return errors.New("no database in this test") })
	}
	m, err := NewSlotMonitor(SlotMonitorOptions{
		Slot:           "cdc",
		DB:             db,
		MaxRetainedWAL: threshold,
		Logger:         slog.New(slog.NewJSONHandler(logs, nil)),
		Now:            c.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, logs
}

func newTestMonitor(t *testing.T, c *clock, threshold uint64) *SlotMonitor {
	t.Helper()
	m, _ := newTestMonitorLog(t, c, threshold, nil)
	return m
}

func TestSlotMonitorWarnings(t *testing.T) {
	c := &clock{t: t0}
	m, logs := newTestMonitorLog(t, c, 1000, nil)
	ok := slotSample{serverLSN: 1, exists: true, active: true, walStatus: "reserved", retained: 10}
	over := ok
	over.retained, over.walStatus = 2000, "extended"
	unreserved := over
	unreserved.walStatus = "unreserved"
	lost := slotSample{serverLSN: 1, exists: true, walStatus: "lost"}
	steps := []struct {
		name      string
		after     time.Duration
		sample    slotSample
		want      []string
		over, bad bool
	}{
		{name: "under", sample: ok},
		{name: "crosses", after: time.Minute, sample: over, want: []string{"WARN replication slot retains more WAL than the threshold"}, over: true},
		{name: "stays over", after: 9 * time.Minute, sample: over, over: true},
		{name: "ten minutes on", after: time.Minute, sample: over, want: []string{"WARN replication slot retains more WAL than the threshold"}, over: true},
		{name: "back under", after: time.Minute, sample: ok, want: []string{"INFO replication slot's retained WAL is back under the threshold"}},
		{name: "crosses again", after: time.Minute, sample: over, want: []string{"WARN replication slot retains more WAL than the threshold"}, over: true},
		{name: "unreserved", after: time.Minute, sample: unreserved, want: []string{"WARN replication slot is about to be invalidated (wal_status unreserved)"}, over: true},
		{name: "lost", after: time.Minute, sample: lost, want: []string{"ERROR replication slot is invalidated (wal_status lost)", "INFO replication slot's retained WAL is back under the threshold"}, bad: true},
		{name: "still lost", after: time.Minute, sample: lost, bad: true},
		{name: "lost ten minutes on", after: 10 * time.Minute, sample: lost, want: []string{"ERROR replication slot is invalidated (wal_status lost)"}, bad: true},
		{name: "dropped", after: time.Minute, sample: slotSample{serverLSN: 1}, want: []string{"ERROR replication slot does not exist"}},
	}
	for _, s := range steps {
		c.advance(s.after)
		m.record(s.sample)
		if got := logs.take(t); strings.Join(got, "|") != strings.Join(s.want, "|") {
			t.Errorf("%s: logged %q; want %q", s.name, got, s.want)
		}
		st := m.State()
		if st.OverThreshold != s.over || st.Lost != s.bad {
			t.Errorf("%s: over %v lost %v; want %v %v", s.name, st.OverThreshold, st.Lost, s.over, s.bad)
		}
	}
}

func TestSlotMonitorGauges(t *testing.T) {
	c := &clock{t: t0}
	m := newTestMonitor(t, c, 100)
	safe := int64(-5)
	m.record(slotSample{serverLSN: 0x10, exists: true, walStatus: "lost", retained: 0, safeWALSize: &safe})
	met := newTestMetrics(t, c, Sources{Slot: m})
	const want = `
# HELP cdc_broadcaster_slot_lost 1 when the replication slot is invalidated (wal_status lost).
# TYPE cdc_broadcaster_slot_lost gauge
cdc_broadcaster_slot_lost 1
# HELP cdc_broadcaster_slot_safe_wal_size_bytes WAL that can still be written before the slot is in danger of invalidation (absent when max_slot_wal_keep_size is unlimited).
# TYPE cdc_broadcaster_slot_safe_wal_size_bytes gauge
cdc_broadcaster_slot_safe_wal_size_bytes -5
# HELP cdc_broadcaster_slot_wal_retained_over_threshold 1 while the slot's retained WAL is above the threshold.
# TYPE cdc_broadcaster_slot_wal_retained_over_threshold gauge
cdc_broadcaster_slot_wal_retained_over_threshold 0
`
	if err := testutilCompare(met, want); err != nil {
		t.Error(err)
	}
}

// rowFunc is a SlotQuerier whose one row scans with the function.
type rowFunc func(dest ...any) error

func (f rowFunc) QueryRow(context.Context, string, ...any) pgx.Row { return f }
func (f rowFunc) Scan(dest ...any) error                           { return f(dest...) }

// scanInto fills Scan's destinations the way pgx does for the slot query.
func scanInto(server, confirmed *string, exists, active bool, status string, retained, safe *int64) rowFunc {
	return func(dest ...any) error {
		*dest[0].(**string) = server
		*dest[1].(*bool) = exists
		*dest[2].(*bool) = active
		*dest[3].(*string) = status
		*dest[4].(**string) = confirmed
		*dest[5].(**int64) = retained
		*dest[6].(**int64) = safe
		return nil
	}
}

func ptr[T any](v T) *T { return &v }

func TestSlotMonitorPoll(t *testing.T) {
	tests := []struct {
		name    string
		row     rowFunc
		want    SlotState
		wantErr string
	}{
		{
			name: "slot",
			row:  scanInto(ptr("1/10"), ptr("1/8"), true, true, "reserved", ptr(int64(4096)), ptr(int64(1<<20))),
			want: SlotState{Exists: true, Active: true, WALStatus: "reserved", ServerLSN: 1<<32 | 0x10, ConfirmedFlushLSN: 1<<32 | 8, RetainedBytes: 4096, SafeWALSize: ptr(int64(1 << 20))},
		},
		{
			name: "missing slot",
			row:  scanInto(ptr("0/10"), nil, false, false, "", nil, nil),
			want: SlotState{ServerLSN: 0x10},
		},
		{
			name: "lost slot",
			row:  scanInto(ptr("0/10"), ptr("0/8"), true, false, "lost", nil, nil),
			want: SlotState{Exists: true, WALStatus: "lost", Lost: true, ServerLSN: 0x10, ConfirmedFlushLSN: 8},
		},
		{
			name:    "bad lsn",
			row:     scanInto(ptr("nope"), nil, false, false, "", nil, nil),
			wantErr: `poll replication slot cdc: parse lsn "nope"`,
		},
		{
			name:    "query fails",
			row:     func(...any) error { return errors.New("connection refused") },
			wantErr: "poll replication slot cdc: connection refused",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: t0}
			m, logs := newTestMonitorLog(t, c, 1<<30, tc.row)
			err := m.Poll(context.Background())
			st := m.State()
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Poll = %v; want %q", err, tc.wantErr)
				}
				if st.PollErrors != 1 || !st.PolledAt.IsZero() || st.LastError == "" {
					t.Errorf("state after a failed poll: %+v", st)
				}
				if got := logs.take(t); len(got) != 1 || !strings.HasPrefix(got[0], "WARN cannot read the replication slot's state") {
					t.Errorf("logged %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Slot, tc.want.PolledAt, tc.want.Threshold = "cdc", t0, 1<<30
			gotJSON, _ := json.Marshal(st)
			wantJSON, _ := json.Marshal(tc.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("state\n got %s\nwant %s", gotJSON, wantJSON)
			}
		})
	}
}

func TestLagOf(t *testing.T) {
	s := func(lsn broadcaster.LSN, secondsAgo float64) walSample {
		return walSample{lsn: lsn, at: t0.Add(-time.Duration(secondsAgo * float64(time.Second)))}
	}
	tests := []struct {
		name      string
		samples   []walSample
		pos       broadcaster.LSN
		commitAgo time.Duration // 0: no commit seen
		want      Lag
		ok        bool
	}{
		{name: "no sample", pos: 5, ok: false},
		{name: "caught up", samples: []walSample{s(100, 30), s(200, 20)}, pos: 200, commitAgo: time.Hour, want: Lag{}, ok: true},
		{name: "past the newest sample", samples: []walSample{s(100, 5)}, pos: 150, want: Lag{}, ok: true},
		{
			name:    "idle for an hour then behind: bounded by the last sample reached",
			samples: []walSample{s(100, 20), s(200, 10)}, pos: 150, commitAgo: time.Hour,
			want: Lag{Bytes: 50, Duration: 20 * time.Second}, ok: true,
		},
		{
			name:    "commit time between the bounds",
			samples: []walSample{s(100, 20), s(200, 10)}, pos: 150, commitAgo: 15 * time.Second,
			want: Lag{Bytes: 50, Duration: 15 * time.Second}, ok: true,
		},
		{
			name:    "database clock ahead: at least since the sample not reached",
			samples: []walSample{s(100, 20), s(200, 10)}, pos: 150, commitAgo: -time.Minute,
			want: Lag{Bytes: 50, Duration: 10 * time.Second}, ok: true,
		},
		{
			name:    "no sample reached yet: commit time, no upper bound",
			samples: []walSample{s(100, 20), s(200, 10)}, pos: 50, commitAgo: time.Hour,
			want: Lag{Bytes: 150, Duration: time.Hour}, ok: true,
		},
		{
			name:    "no sample reached and no commit: since the oldest sample",
			samples: []walSample{s(100, 20), s(200, 10)}, pos: 0,
			want: Lag{Bytes: 200, Duration: 20 * time.Second}, ok: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var commit time.Time
			if tc.commitAgo != 0 {
				commit = t0.Add(-tc.commitAgo)
			}
			got, ok := lagOf(tc.samples, tc.pos, commit, t0)
			if ok != tc.ok || got != tc.want {
				t.Errorf("lagOf = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSamples(t *testing.T) {
	var ss []walSample
	for i := range maxWALSamples + 10 {
		ss = addSample(ss, walSample{lsn: broadcaster.LSN(i + 1), at: t0.Add(time.Duration(i) * time.Second)})
	}
	if len(ss) != maxWALSamples || ss[0].lsn != 1 || ss[len(ss)-1].lsn != maxWALSamples+10 {
		t.Errorf("after overflow: %d samples, first %d, last %d; want %d, 1, %d", len(ss), ss[0].lsn, ss[len(ss)-1].lsn, maxWALSamples, maxWALSamples+10)
	}
	ss = pruneSamples(ss, maxWALSamples)
	if ss[0].lsn != maxWALSamples || len(ss) != 11 {
		t.Errorf("after pruning to %d: first %d, %d samples; want the newest reached first and 11", maxWALSamples, ss[0].lsn, len(ss))
	}
	if got := pruneSamples(ss, 0); len(got) != 11 {
		t.Errorf("pruning behind every sample dropped some: %d left", len(got))
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {1 << 30, "1.0 GiB"}, {5 << 40, "5.0 TiB"},
	}
	for _, tc := range tests {
		if got := formatBytes(tc.n); got != tc.want {
			t.Errorf("formatBytes(%d) = %q; want %q", tc.n, got, tc.want)
		}
	}
}

func TestNewSlotMonitorErrors(t *testing.T) {
	if _, err := NewSlotMonitor(SlotMonitorOptions{DB: rowFunc(nil)}); err == nil {
		t.Error("no slot name: no error")
	}
	if _, err := NewSlotMonitor(SlotMonitorOptions{Slot: "cdc"}); err == nil {
		t.Error("no database: no error")
	}
}

func TestSlotMonitorRun(t *testing.T) {
	polls := make(chan struct{}, 10)
	row := rowFunc(func(dest ...any) error {
		polls <- struct{}{}
		return scanInto(ptr("0/10"), ptr("0/8"), true, true, "reserved", ptr(int64(1)), nil)(dest...)
	})
	m, err := NewSlotMonitor(SlotMonitorOptions{Slot: "cdc", DB: row, Interval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	for range 2 {
		select {
		case <-polls:
		case <-time.After(5 * time.Second):
			t.Fatal("Run does not poll")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run does not return when ctx ends")
	}
	if st := m.State(); st.PolledAt.IsZero() || st.ServerLSN != 0x10 {
		t.Errorf("state after Run: %+v", st)
	}
}
