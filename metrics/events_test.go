package metrics

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
)

func event(lsn broadcaster.LSN, seq uint32, typ string) broadcaster.Event {
	return broadcaster.Event{ID: broadcaster.Cursor{LSN: lsn, Pos: seq}, Type: typ, Timestamp: time.Now()}
}

// refusingLog refuses every batch.
type refusingLog struct{ broadcaster.Log }

func (refusingLog) Append(context.Context, broadcaster.Batch) error { return errors.New("full") }

func TestCountingLog(t *testing.T) {
	ctx := context.Background()
	mem := eventlog.NewMemory(eventlog.Options{})
	c := NewCountingLog(mem)
	batches := []broadcaster.Batch{
		{Events: []broadcaster.Event{event(10, 1, "exam.submitted"), event(10, 2, "user.created")}},
		{Events: []broadcaster.Event{event(10, 3, "exam.submitted")}, TxEnd: 11},
		// A replay after a reconnect: the first two are in the log already.
		{Events: []broadcaster.Event{event(10, 2, "user.created"), event(10, 3, "exam.submitted"), event(20, 1, "exam.submitted")}},
		{TxEnd: 30},
	}
	for _, b := range batches {
		if err := c.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]uint64{"exam.submitted": 3, "user.created": 1}
	if got := c.Counts(); !maps.Equal(got, want) {
		t.Errorf("Counts = %v; want %v", got, want)
	}
	if st := mem.Stats(); st.Events != 4 || !st.Oldest.Equal(batches[0].Events[0].Timestamp) || st.Head != mem.Head() {
		t.Errorf("log Stats = %+v; want 4 events, the first one's commit time and the head", st)
	}
	if c.Head() != mem.Head() || c.Confirmable() != mem.Confirmable() {
		t.Error("CountingLog does not pass Head and Confirmable through")
	}

	refused := NewCountingLog(refusingLog{mem})
	if err := refused.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{event(40, 1, "exam.submitted")}}); err == nil {
		t.Fatal("Append of a refused batch: no error")
	}
	if got := refused.Counts(); len(got) != 0 {
		t.Errorf("a refused batch was counted: %v", got)
	}
}

func BenchmarkCountingLog(b *testing.B) {
	ctx := context.Background()
	c := NewCountingLog(eventlog.NewMemory(eventlog.Options{MaxEvents: 1024}))
	evs := make([]broadcaster.Event, 10)
	lsn := broadcaster.LSN(1)
	for b.Loop() {
		for i := range evs {
			evs[i] = broadcaster.Event{ID: broadcaster.Cursor{LSN: lsn, Pos: uint32(i + 1)}, Type: "exam.submitted"}
		}
		if err := c.Append(ctx, broadcaster.Batch{Events: evs, TxEnd: lsn + 1}); err != nil {
			b.Fatal(err)
		}
		lsn += 2
	}
}
