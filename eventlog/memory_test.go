package eventlog

import (
	"context"
	"errors"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

func ev(lsn broadcaster.LSN, pos uint32, at time.Time) broadcaster.Event {
	return broadcaster.Event{ID: broadcaster.Cursor{LSN: lsn, Pos: pos}, Type: "t.x", Timestamp: at}
}

func ids(evs []broadcaster.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID.String()
	}
	return out
}

func TestMemoryAppendSkipsReplays(t *testing.T) {
	now := time.Now()
	m := NewMemory(Options{MaxEvents: 10})
	ctx := context.Background()
	m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(100, 1, now), ev(100, 2, now)}})
	// The source reconnects and replays the transaction from its start.
	m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(100, 1, now), ev(100, 2, now), ev(100, 3, now)}, TxEnd: 120})
	got, more, err := m.Since(broadcaster.Cursor{}, 0)
	if err != nil || more {
		t.Fatalf("Since: err %v more %v", err, more)
	}
	if want := []string{ev(100, 1, now).ID.String(), ev(100, 2, now).ID.String(), ev(100, 3, now).ID.String()}; len(got) != 3 || ids(got)[2] != want[2] {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	if h := m.Head(); h != (broadcaster.Cursor{LSN: 119}) {
		t.Fatalf("head %v, want end of tx before 120", h)
	}
	// The next transaction may commit right at the previous end LSN.
	m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(120, 1, now)}, TxEnd: 140})
	if m.Len() != 4 {
		t.Fatalf("len %d, want 4: event at the previous tx end was taken for a replay", m.Len())
	}
}

func TestMemoryRetention(t *testing.T) {
	now := time.Now()
	clock := now
	m := NewMemory(Options{MaxEvents: 5, MaxAge: time.Minute, Now: func() time.Time { return clock }})
	ctx := context.Background()
	for i := 1; i <= 12; i++ {
		m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(broadcaster.LSN(i*10), 1, now)}, TxEnd: broadcaster.LSN(i*10 + 5)})
	}
	if m.Len() != 5 {
		t.Fatalf("len %d, want 5", m.Len())
	}
	got, _, err := m.Since(broadcaster.Cursor{LSN: 80, Pos: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].ID.LSN != 90 {
		t.Fatalf("since 80: %v", ids(got))
	}
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 10, Pos: 1}, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("since evicted cursor: err %v, want ErrExpired", err)
	}
	// The newest evicted event is the floor: resuming from it loses nothing.
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 70, Pos: 1}, 0); err != nil {
		t.Fatalf("since floor: %v", err)
	}
	page, more, _ := m.Since(broadcaster.Cursor{LSN: 70, Pos: 1}, 2)
	if len(page) != 2 || !more {
		t.Fatalf("page: %v more %v", ids(page), more)
	}
	clock = now.Add(2 * time.Minute)
	m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(200, 1, clock)}, TxEnd: 205})
	if m.Len() != 1 {
		t.Fatalf("after max age: len %d, want 1", m.Len())
	}
}

func TestMemoryGrowsAfterAgeEviction(t *testing.T) {
	now := time.Now()
	clock := now
	m := NewMemory(Options{MaxEvents: 3000, MaxAge: time.Minute, Now: func() time.Time { return clock }})
	ctx := context.Background()
	lsn := broadcaster.LSN(1)
	add := func(n int, at time.Time) {
		for i := 0; i < n; i++ {
			lsn += 10
			m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(lsn, 1, at)}})
		}
	}
	add(1000, now)
	clock = now.Add(30 * time.Second)
	add(24, clock) // fills the first allocation
	clock = now.Add(61 * time.Second)
	add(1, clock) // evicts the first 1000 by age: the ring now starts mid-slice
	add(1500, clock)
	if _, _, err := m.Since(broadcaster.Cursor{}, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("since zero after eviction: %v", err)
	}
	got, _, err := m.Since(broadcaster.Cursor{LSN: 1 + 1000*10, Pos: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 24+1+1500 {
		t.Fatalf("got %d events, want %d", len(got), 24+1+1500)
	}
	for i := 1; i < len(got); i++ {
		if !got[i-1].ID.Before(got[i].ID) {
			t.Fatalf("out of order at %d: %s then %s", i, got[i-1].ID, got[i].ID)
		}
	}
}

// BenchmarkAppend appends single-event batches past the retention limit;
// the cost per event must stay flat as the log fills.
func BenchmarkAppend(b *testing.B) {
	m := NewMemory(Options{MaxEvents: 100_000, MaxAge: time.Hour})
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(broadcaster.LSN(i+1)*10, 1, now)}})
	}
}

func TestMemorySinceTime(t *testing.T) {
	base := time.Date(2025, 11, 29, 8, 0, 0, 0, time.UTC)
	m := NewMemory(Options{MaxEvents: 4, MaxAge: time.Hour, Now: func() time.Time { return base }})
	ctx := context.Background()
	for i := 1; i <= 6; i++ {
		m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(broadcaster.LSN(i*10), 1, base.Add(time.Duration(i)*time.Second))}})
	}
	// Retained: events 3..6 at base+3s..+6s; event 2 (base+2s) is the floor.
	tests := []struct {
		name    string
		at      time.Duration
		want    broadcaster.LSN // the LSN of the first event Since returns
		expired bool
	}{
		{"before the floor", time.Second, 0, true},
		{"at the floor's time", 2 * time.Second, 0, true},
		{"between floor and first", 2500 * time.Millisecond, 30, false},
		{"at an event", 4 * time.Second, 40, false},
		{"between events", 4500 * time.Millisecond, 50, false},
		{"after all", 7 * time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := m.SinceTime(base.Add(tt.at))
			if tt.expired {
				if !errors.Is(err, ErrExpired) {
					t.Fatalf("err %v, want expired", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			evs, _, err := m.Since(c, 1)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == 0 {
				if len(evs) != 0 {
					t.Fatalf("got %v, want nothing", ids(evs))
				}
				return
			}
			if len(evs) != 1 || evs[0].ID.LSN != tt.want {
				t.Fatalf("got %v, want the event at %v", ids(evs), tt.want)
			}
		})
	}
}

// TestMemoryConfirmableBeforeNonTransactional: when the oldest retained
// event is a non-transactional message's, whose ID lies inside its WAL
// record, the slot is held at the floor (the event before it), from where
// it delivers the message again.
func TestMemoryConfirmableBeforeNonTransactional(t *testing.T) {
	now := time.Now()
	m := NewMemory(Options{MaxEvents: 2, MaxAge: time.Hour, Floor: broadcaster.Cursor{LSN: 9}})
	ctx := context.Background()
	tick := func(end broadcaster.LSN) broadcaster.Batch {
		e := broadcaster.Event{ID: broadcaster.Cursor{LSN: end - 1, Pos: 1}, Type: "job.progress", Op: broadcaster.OpEmit, Timestamp: now}
		return broadcaster.Batch{Events: []broadcaster.Event{e}, TxEnd: end}
	}
	m.Append(ctx, tick(20))
	if got := m.Confirmable(); got != 9 {
		t.Fatalf("Confirmable %v, want the initial floor's 9", got)
	}
	row := ev(30, 1, now)
	row.TxID = 7
	m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{row}, TxEnd: 35})
	m.Append(ctx, tick(50))
	if got := m.Confirmable(); got != 30 {
		t.Fatalf("Confirmable %v, want the oldest retained event's commit LSN 30", got)
	}
	m.Append(ctx, tick(60)) // evicts the event at 30
	if got := m.Confirmable(); got != 30 {
		t.Fatalf("Confirmable %v, want 30, the floor before the oldest (non-transactional) event at 49", got)
	}
}

func TestMemoryConfirmableHoldsOldest(t *testing.T) {
	now := time.Now()
	clock := now
	m := NewMemory(Options{MaxEvents: 3, MaxAge: time.Minute, Now: func() time.Time { return clock }})
	ctx := context.Background()
	if m.Confirmable() != broadcaster.MaxLSN {
		t.Fatal("an empty log must not hold the slot")
	}
	for i := 1; i <= 5; i++ {
		m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(broadcaster.LSN(i*10), 1, now)}, TxEnd: broadcaster.LSN(i*10 + 5)})
	}
	if got := m.Confirmable(); got != 30 {
		t.Fatalf("Confirmable %v, want the oldest retained event's commit LSN 30", got)
	}
	clock = now.Add(2 * time.Minute)
	if got := m.Confirmable(); got != broadcaster.MaxLSN {
		t.Fatalf("after max age: Confirmable %v, want no hold", got)
	}
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 40, Pos: 1}, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("a cursor of an aged-out event: %v, want expired", err)
	}
}

func TestMemoryFloorAfterRestart(t *testing.T) {
	m := NewMemory(Options{Floor: broadcaster.Cursor{LSN: 99}, Horizon: 150})
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 50, Pos: 1}, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("cursor before the slot's resume point: %v, want expired", err)
	}
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 100, Pos: 1}, 0); err != nil {
		t.Fatalf("cursor from the resume point on: %v", err)
	}
	// Up to the horizon a cursor ahead of the head is one the log is
	// rebuilding towards; past it, the log cannot place it.
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 150, Pos: 7}, 0); err != nil {
		t.Fatalf("cursor ahead of the head, within the horizon: %v", err)
	}
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 151, Pos: 1}, 0); !errors.Is(err, broadcaster.ErrCursorAhead) || !errors.Is(err, ErrExpired) {
		t.Fatalf("cursor past the horizon: %v, want ErrCursorAhead (an expiry)", err)
	}
	// The head starts at the floor: a client starting from it is not
	// expired, and the rebuilt events come after it.
	if _, _, err := m.Since(m.Head(), 0); err != nil {
		t.Fatalf("since the head of a rebuilt log: %v", err)
	}
	if _, err := m.SinceTime(time.Now()); !errors.Is(err, ErrExpired) {
		t.Fatalf("SinceTime on an empty rebuilt log: %v, want expired (the times before the floor are unknown)", err)
	}
	first := time.Now()
	m.Append(context.Background(), broadcaster.Batch{Events: []broadcaster.Event{ev(100, 1, first)}})
	if m.Len() != 1 {
		t.Fatal("the first rebuilt event was taken for a replay")
	}
	if _, err := m.SinceTime(first); !errors.Is(err, ErrExpired) {
		t.Fatalf("SinceTime at the first rebuilt event's time: %v, want expired", err)
	}
	if c, err := m.SinceTime(first.Add(time.Millisecond)); err != nil || c != (broadcaster.Cursor{LSN: 100, Pos: 1}) {
		t.Fatalf("SinceTime after the first rebuilt event: %v, %v", c, err)
	}
}

// TestPinHoldsEvents: a full log whose oldest event is past the pin makes
// Append wait until the pinning reader moves on, and never evicts an event
// the reader has not read; Unpin and a cancelled context release it.
func TestPinHoldsEvents(t *testing.T) {
	m := NewMemory(Options{MaxEvents: 4})
	ev := func(i int) broadcaster.Event {
		return broadcaster.Event{ID: broadcaster.Cursor{LSN: broadcaster.LSN(100 * i), Pos: 1}, Timestamp: time.Now()}
	}
	m.Pin(broadcaster.Cursor{})
	done := make(chan error, 1)
	go func() {
		done <- m.Append(context.Background(), broadcaster.Batch{Events: []broadcaster.Event{ev(1), ev(2), ev(3), ev(4), ev(5), ev(6)}})
	}()
	// The first four fit; the fifth waits for the reader.
	deadline := time.Now().Add(5 * time.Second)
	for m.Head() != ev(4).ID {
		if time.Now().After(deadline) {
			t.Fatalf("head %v, want %v", m.Head(), ev(4).ID)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Append returned (%v) with the reader behind", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got, _, err := m.Since(broadcaster.Cursor{}, 10); err != nil || len(got) != 4 {
		t.Fatalf("Since from the start: %d events, %v; want all 4, nothing evicted", len(got), err)
	}
	m.Pin(ev(2).ID) // the reader read 1 and 2: they may go
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m.Head() != ev(6).ID || m.Floor() != ev(2).ID {
		t.Fatalf("head %v floor %v, want %v and %v", m.Head(), m.Floor(), ev(6).ID, ev(2).ID)
	}

	// A cancelled context ends the wait; Unpin lets Append go on.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(7)}}) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	m.Unpin()
	if err := m.Append(context.Background(), broadcaster.Batch{Events: []broadcaster.Event{ev(7)}}); err != nil || m.Head() != ev(7).ID {
		t.Fatalf("after Unpin: %v, head %v", err, m.Head())
	}
}

// TestCursorAheadOfLog: a cursor past the head of a log that rebuilds
// nothing is refused, not served as an empty page that mutes the client.
func TestCursorAheadOfLog(t *testing.T) {
	now := time.Now()
	m := NewMemory(Options{})
	m.Append(context.Background(), broadcaster.Batch{Events: []broadcaster.Event{ev(100, 1, now)}, TxEnd: 110})
	if _, _, err := m.Since(m.Head(), 0); err != nil {
		t.Fatalf("since the head: %v", err)
	}
	if _, _, err := m.Since(broadcaster.Cursor{LSN: 0xFFFFFFFF, Pos: 1}, 0); !errors.Is(err, broadcaster.ErrCursorAhead) {
		t.Fatalf("since a cursor far ahead: %v, want ErrCursorAhead", err)
	}
}

// TestHoldKeepsEventsPastRetention: a hold keeps the events after it
// readable past MaxEvents and MaxAge while its reader moves on; moving it
// and releasing it lets them go; past MaxHeldBytes the oldest go anyway and
// the reader behind them is expired.
func TestHoldKeepsEventsPastRetention(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	m := NewMemory(Options{MaxEvents: 4, MaxAge: time.Minute, Now: func() time.Time { return clock }})
	appendN := func(from, to int) {
		for i := from; i <= to; i++ {
			m.Append(ctx, broadcaster.Batch{Events: []broadcaster.Event{ev(broadcaster.LSN(i*10), 1, clock)}, TxEnd: broadcaster.LSN(i*10 + 5)})
		}
	}
	appendN(1, 2)
	h, err := m.Hold(ev(10, 1, clock).ID) // read event 1, needs 2 on
	if err != nil {
		t.Fatal(err)
	}
	appendN(3, 20)
	if got, _, err := m.Since(ev(10, 1, clock).ID, 0); err != nil || len(got) != 19 {
		t.Fatalf("since the hold: %d events, %v; want 19", len(got), err)
	}
	if st := m.Stats(); st.Held != 15 || st.HeldBytes <= 0 || st.Holds != 1 {
		t.Fatalf("stats %+v, want 15 held", st)
	}
	h.Move(ev(100, 1, clock).ID)
	if m.Len() != 10 || m.Floor() != ev(100, 1, clock).ID {
		t.Fatalf("after the hold moved: len %d floor %v, want 10 and the hold's position", m.Len(), m.Floor())
	}
	// Age: held events outlive MaxAge too, until released.
	clock = clock.Add(2 * time.Minute)
	if m.Confirmable() == broadcaster.MaxLSN || m.Len() != 10 {
		t.Fatalf("aged but held: len %d", m.Len())
	}
	h.Release()
	if m.Len() != 0 || m.Stats().Held != 0 || m.Stats().HeldBytes != 0 {
		t.Fatalf("after release: %+v", m.Stats())
	}
	if _, err := m.Hold(ev(10, 1, clock).ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("hold on an evicted cursor: %v, want expired", err)
	}

	// The budget: about three events' worth.
	size := eventSize(&broadcaster.Event{Type: "t.x"})
	m = NewMemory(Options{MaxEvents: 2, MaxHeldBytes: 3 * size, Now: func() time.Time { return clock }})
	appendN(1, 1)
	h, _ = m.Hold(broadcaster.Cursor{})
	appendN(2, 10)
	// The fourth held event is over the budget: the oldest goes, the
	// reader behind it has lost it, and its hold keeps nothing more.
	if st := m.Stats(); st.Held != 0 || st.Holds != 0 || st.OverBudget != 1 || st.Events != 2 {
		t.Fatalf("over budget: %+v, want 1 dropped, the hold gone, back to the 2 retained", st)
	}
	if _, _, err := m.Since(broadcaster.Cursor{}, 0); !errors.Is(err, ErrExpired) {
		t.Fatalf("the reader behind the budget: %v, want expired", err)
	}
	h.Release() // a no-op now
	if m.Len() != 2 {
		t.Fatalf("after release: len %d, want the retention of 2", m.Len())
	}

	// One large append with a stuck hold stays within the budget while it
	// runs, and the ring grown for held events shrinks back.
	m = NewMemory(Options{MaxEvents: 100, MaxHeldBytes: 10 * size, Now: func() time.Time { return clock }})
	h, _ = m.Hold(broadcaster.Cursor{})
	big := make([]broadcaster.Event, 20000)
	for i := range big {
		big[i] = ev(broadcaster.LSN(1000+i), 1, clock)
	}
	m.Append(ctx, broadcaster.Batch{Events: big})
	if st := m.Stats(); st.Events != 100 || st.Held != 0 || len(m.ring) > 1024 {
		t.Fatalf("after a large append with a stuck hold: %+v, ring of %d", st, len(m.ring))
	}
	h.Release()
	h, _ = m.Hold(m.Head())
	appendN(3000, 3400) // 100 retained, 300 held
	h.Release()
	if len(m.ring) > 256 {
		t.Fatalf("ring of %d slots for %d events after the hold went", len(m.ring), m.Len())
	}
}
