package ws

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
)

func TestFanOutOneFramePerEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:42", "exam:7")
	e.acc.grant("20", "class:42")
	both := e.connect("19", "teacher")
	both.subscribe("class:42", "exam:7")
	one := e.connect("20", "teacher")
	one.subscribe("class:42")

	ev := e.appendEvents(1, "exam:7", "class:42", "role:admin")
	for _, tt := range []struct {
		name string
		c    *client
		want string
	}{
		{"subscribed to both channels", both, "exam:7,class:42"},
		{"subscribed to one", one, "class:42"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.c.expect("event")
			if got := strings.Join(m.strs("channels"), ","); got != tt.want {
				t.Errorf("channels %s, want %s", got, tt.want)
			}
			body := m["event"].(map[string]any)
			if body["eventId"] != ev[0].ID.String() || body["cursor"] != ev[0].ID.String() || body["eventType"] != "exam.updated" {
				t.Errorf("event %v", body)
			}
			if before := tt.c.ping(); len(before) != 0 {
				t.Errorf("more than one frame for the event: %v", before)
			}
		})
	}
	waitFor(t, "deliveries counted", func() bool { return e.srv.Stats().EventsDelivered == 2 })
}

// TestEnvelopeEncodedOnce checks that connections with the same matching
// channels are queued the very same bytes.
func TestEnvelopeEncodedOnce(t *testing.T) {
	h := newHub(newCounters(), nil, broadcaster.Cursor{})
	mk := func(channels ...string) *conn {
		c := hubTestConn(4)
		var chs []*acl.Channel
		for _, name := range channels {
			chs = append(chs, &acl.Channel{Name: name})
		}
		h.subscribe(c, chs, nil, nil, nil, func(broadcaster.Cursor, []string) {})
		return c
	}
	a, b, c, d := mk("class:1"), mk("class:1"), mk("class:1", "exam:2"), mk("exam:2", "class:1")
	ev := broadcaster.Event{ID: broadcaster.Cursor{LSN: 10, Pos: 1}, Type: "exam.updated", Channels: []string{"exam:2", "class:1", "exam:2"}}
	h.publish(&ev, slog.New(slog.DiscardHandler))
	frames := make([][]byte, 4)
	for i, x := range []*conn{a, b, c, d} {
		if n := x.queued(); n != 1 {
			t.Fatalf("conn %d has %d frames queued, want 1", i, n)
		}
		f := x.take(t)
		if !f.event {
			t.Errorf("conn %d: frame not marked as an event", i)
		}
		frames[i] = f.data
	}
	if &frames[0][0] != &frames[1][0] {
		t.Error("two connections on one channel got separately built envelopes")
	}
	if &frames[2][0] != &frames[3][0] {
		t.Error("two connections with the same channel list got separately built envelopes")
	}
	var env struct {
		Type     string          `json:"type"`
		Channels []string        `json:"channels"`
		Event    json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(frames[2], &env); err != nil {
		t.Fatalf("envelope %s: %v", frames[2], err)
	}
	if env.Type != "event" || strings.Join(env.Channels, ",") != "exam:2,class:1" {
		t.Errorf("envelope %s", frames[2])
	}
	body, _ := json.Marshal(ev)
	if string(env.Event) != string(body) {
		t.Errorf("event body %s, want %s", env.Event, body)
	}
}

func TestCommitOrder(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	c.subscribe("class:1")
	var want []broadcaster.Event
	for range 10 {
		want = append(want, e.appendEvents(100, "class:1", "exam:1")...)
		// A transaction of several events.
		tx := e.makeEvents(3, "", "class:1")
		for i := range tx {
			tx[i].ID = broadcaster.Cursor{LSN: tx[0].ID.LSN, Pos: uint32(i + 1)}
		}
		e.appendBatch(tx)
		want = append(want, tx...)
	}
	for i, ev := range want {
		m := c.expect("event")
		if got := m["event"].(map[string]any)["eventId"]; got != ev.ID.String() {
			t.Fatalf("event %d is %v, want %v", i, got, ev.ID)
		}
	}
}

// TestSlowConsumer: a client that never reads is closed with 4009 while
// another receives every one of 20,000 events in order, although its queue
// (512) is far smaller than the bursts: it catches up from the log.
func TestSlowConsumer(t *testing.T) {
	const total, batch = 20000, 2000
	e := newEnv(t, func(o *Options) {
		o.Limits.SendQueue = 512
		// Long enough that a loaded CI machine does not take the fast
		// client's scheduling delays for a stall (300 ms did, once).
		o.StallTimeout = 2 * time.Second
	})
	e.acc.grant("19", "class:1")
	e.acc.grant("20", "class:1")
	fast := e.connect("19", "teacher")
	fast.subscribe("class:1")

	// The slow client's socket buffer is fixed, so that the 20 MB of
	// events cannot all fit in the buffers.
	slow := e.connectSmallBuffer("20", "teacher", 256<<10)
	slow.expect("welcome")
	slow.subscribe("class:1")

	evs := e.makeEvents(total, strings.Repeat("x", 1024), "class:1")
	var fastGot atomic.Int64
	fastDone := make(chan error, 1)
	go func() {
		for i := range total {
			m, err := fast.tryRead(30 * time.Second)
			if err != nil {
				fastDone <- fmt.Errorf("after %d events: %w", i, err)
				return
			}
			if id := m["event"].(map[string]any)["eventId"]; id != evs[i].ID.String() {
				fastDone <- fmt.Errorf("event %d is %v, want %v", i, id, evs[i].ID)
				return
			}
			fastGot.Add(1)
		}
		fastDone <- nil
	}()

	type slowResult struct {
		n    int
		code websocket.StatusCode
		err  error
	}
	slowDone := make(chan slowResult, 1)
	readSlow := func() {
		var r slowResult
		for {
			m, err := slow.tryRead(30 * time.Second)
			if err != nil {
				r.code = websocket.CloseStatus(err)
				if r.code == -1 {
					r.err = err
				}
				slowDone <- r
				return
			}
			if id := m["event"].(map[string]any)["eventId"]; id != evs[r.n].ID.String() {
				r.err = fmt.Errorf("slow event %d is %v, want %v", r.n, id, evs[r.n].ID)
			}
			r.n++
		}
	}

	readingSlow := false
	for off := 0; off < total; off += batch {
		e.appendBatch(evs[off : off+batch])
		deadline := time.Now().Add(30 * time.Second)
		for fastGot.Load() < int64(off+batch) {
			select {
			case err := <-fastDone:
				t.Fatalf("fast client: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("fast client stuck at %d events", fastGot.Load())
			}
			time.Sleep(time.Millisecond)
		}
		if !readingSlow && e.srv.Stats().Overflows > 0 {
			// Read now, so the close frame behind the queued frames gets
			// through before the server's write timeout.
			readingSlow = true
			go readSlow()
		}
	}
	if err := <-fastDone; err != nil {
		t.Fatalf("fast client: %v", err)
	}
	if !readingSlow {
		waitFor(t, "the slow client closed", func() bool { return e.srv.Stats().Overflows > 0 })
		go readSlow()
	}
	r := <-slowDone
	if r.err != nil || r.code != statusSlowConsumer {
		t.Fatalf("slow client: %d events, close %v, err %v; want close 4009", r.n, r.code, r.err)
	}
	if r.n >= total {
		t.Errorf("the slow client got all %d events", r.n)
	}
	waitFor(t, "the close counted", func() bool { return e.srv.Stats().ClosesByCode[4009] == 1 })
	if st := e.srv.Stats(); st.Overflows != 1 {
		t.Errorf("stats %+v: want one 4009", st)
	}
	t.Logf("slow client got %d events before 4009", r.n)
}

func TestTablesChanged(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:42", "exam:7")
	e.acc.grant("20", "class:42")
	c := e.connect("19", "teacher")
	c.subscribe("class:42", "exam:7")
	other := e.connect("20", "teacher")
	other.subscribe("class:42")

	// One batch: the transaction that removed 19 from the class (its
	// control record), then a later transaction's event on the class. The
	// revocation must reach 19 before anything committed after it.
	e.acc.deny("19", "class:42", "exam:7")
	e.lsn += 0x10
	control := broadcaster.Event{ID: broadcaster.Cursor{LSN: e.lsn, Pos: 1}, Timestamp: time.Now(), Recheck: []string{"class_teachers"}}
	ev := e.makeEvents(1, "", "class:42", "exam:7")
	e.appendBatch(append([]broadcaster.Event{control}, ev...))
	if m := c.expect("revoked"); m.str("channel") != "class:42" || m.str("reason") != "forbidden" {
		t.Errorf("got %v, want class:42 revoked", m)
	}
	// exam:7 does not depend on class_teachers: it is kept.
	if m := c.expect("event"); strings.Join(m.strs("channels"), ",") != "exam:7" {
		t.Errorf("event %v, want it on exam:7 only", m)
	}
	if m := other.expect("event"); strings.Join(m.strs("channels"), ",") != "class:42" || m["event"].(map[string]any)["eventId"] != ev[0].ID.String() {
		t.Errorf("other's event %v", m)
	}
	e.acc.mu.Lock()
	invalidated := strings.Join(e.acc.invalidated, ",")
	e.acc.mu.Unlock()
	if invalidated != "class_teachers" {
		t.Errorf("invalidated %s", invalidated)
	}
	if st := e.srv.Stats(); st.Revocations != 1 || st.Subscriptions != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestFullQueueCatchesUp: an event that does not fit a connection's queue
// does not close it: the hub stops queueing for it and marks where its
// writer must go on from the log.
func TestFullQueueCatchesUp(t *testing.T) {
	h := newHub(newCounters(), nil, broadcaster.Cursor{})
	c := hubTestConn(1)
	h.subscribe(c, []*acl.Channel{{Name: "class:1"}}, nil, nil, nil, func(broadcaster.Cursor, []string) {})
	evs := []broadcaster.Event{
		{ID: broadcaster.Cursor{LSN: 10, Pos: 1}, Channels: []string{"class:1"}},
		{ID: broadcaster.Cursor{LSN: 20, Pos: 1}, Channels: []string{"class:1"}},
		{ID: broadcaster.Cursor{LSN: 30, Pos: 1}, Channels: []string{"class:1"}},
	}
	for i := range evs {
		h.publish(&evs[i], slog.New(slog.DiscardHandler))
	}
	if c.queued() != 1 || c.failed.Load() {
		t.Fatalf("queued %d, failed %v: want the first event queued and the connection open", c.queued(), c.failed.Load())
	}
	if !c.lagging || c.lagPos != evs[0].ID {
		t.Fatalf("lagging %v from %v: want catching up after the first event", c.lagging, c.lagPos)
	}
	if !c.catchUpDue || h.stats.catchUps.Load() != 1 {
		t.Fatalf("writer not woken (%v) or catch-up not counted (%d)", c.catchUpDue, h.stats.catchUps.Load())
	}
	// The writer reads the log after lagPos: the second and third events,
	// then goes live once it has reached the hub.
	frames, done, moved := h.catchUpFrames(c, c.lagPos, h.position(), evs[1:], slog.New(slog.DiscardHandler))
	if len(frames) != 2 || done || !moved {
		t.Fatalf("catch-up page: %d frames, done %v, moved %v", len(frames), done, moved)
	}
	if _, done, _ := h.catchUpFrames(c, c.lagPos, h.position(), nil, slog.New(slog.DiscardHandler)); !done || c.lagging {
		t.Fatalf("an empty page at the hub's position must end the catch-up")
	}
	ev := broadcaster.Event{ID: broadcaster.Cursor{LSN: 40, Pos: 1}, Channels: []string{"class:1"}}
	c.take(t)
	h.publish(&ev, slog.New(slog.DiscardHandler))
	if c.queued() != 1 {
		t.Fatalf("live again: the next event must be queued")
	}
}

// hubTestConn is a connection for tests of the hub alone: no socket, no
// writer; frames stay queued (at most queue) for the test to take.
func hubTestConn(queue int) *conn {
	return &conn{queueMax: queue, noWriter: true, done: make(chan struct{}), subs: make(map[string]*subscription)}
}

// take takes the next queued frame of a hubTestConn.
func (c *conn) take(t *testing.T) outFrame {
	t.Helper()
	c.qmu.Lock()
	defer c.qmu.Unlock()
	f, ok := c.popLocked()
	if !ok {
		t.Fatal("no frame queued")
	}
	return f
}

// TestCatchUpHandoverRace: a catch-up that read an empty page just before
// the hub published another event for it does not go live and skip it
// (review of the hold/gate change: the event was never delivered).
func TestCatchUpHandoverRace(t *testing.T) {
	h := newHub(newCounters(), nil, broadcaster.Cursor{})
	c := hubTestConn(1)
	h.subscribe(c, []*acl.Channel{{Name: "class:1"}}, nil, nil, nil, func(broadcaster.Cursor, []string) {})
	ev := func(lsn broadcaster.LSN) broadcaster.Event {
		return broadcaster.Event{ID: broadcaster.Cursor{LSN: lsn, Pos: 1}, Channels: []string{"class:1"}}
	}
	e1, e2, e3, e4 := ev(10), ev(20), ev(30), ev(40)
	h.publish(&e1, slog.New(slog.DiscardHandler))
	h.publish(&e2, slog.New(slog.DiscardHandler)) // queue full: lagging after e1
	c.take(t)
	// The catch-up serves e2, reaching the hub.
	if frames, _, _ := h.catchUpFrames(c, c.lagPos, h.position(), []broadcaster.Event{e2}, slog.New(slog.DiscardHandler)); len(frames) != 1 {
		t.Fatalf("catch-up of e2: %d frames", len(frames))
	}
	// It reads the log after e2 (nothing yet) with the hub at e2; then the
	// hub publishes e3, skipping c because it is still lagging.
	bound := h.position()
	h.publish(&e3, slog.New(slog.DiscardHandler))
	frames, done, moved := h.catchUpFrames(c, c.lagPos, bound, nil, slog.New(slog.DiscardHandler))
	if done || !moved || !c.lagging || len(frames) != 0 {
		t.Fatalf("empty page read before e3: done %v moved %v lagging %v; want to read again", done, moved, c.lagging)
	}
	frames, _, _ = h.catchUpFrames(c, c.lagPos, h.position(), []broadcaster.Event{e3}, slog.New(slog.DiscardHandler))
	if len(frames) != 1 {
		t.Fatalf("e3 not served by the catch-up: %d frames", len(frames))
	}
	if _, done, _ := h.catchUpFrames(c, c.lagPos, h.position(), nil, slog.New(slog.DiscardHandler)); !done || c.lagging {
		t.Fatal("caught up with the hub: want live")
	}
	h.publish(&e4, slog.New(slog.DiscardHandler))
	if c.queued() != 1 {
		t.Fatal("live: e4 must be queued")
	}
}

// TestGatedCatchUpStopsAtTheGate: a connection gated at a control record
// while its catch-up runs gets nothing after the record, and does not go
// live, until the gate is lifted; a record the hub has passed gates nobody.
func TestGatedCatchUpStopsAtTheGate(t *testing.T) {
	h := newHub(newCounters(), nil, broadcaster.Cursor{})
	c := hubTestConn(1)
	ch := &acl.Channel{Name: "class:1"}
	h.subscribe(c, []*acl.Channel{ch}, nil, nil, nil, func(broadcaster.Cursor, []string) {})
	ev := func(lsn broadcaster.LSN) broadcaster.Event {
		return broadcaster.Event{ID: broadcaster.Cursor{LSN: lsn, Pos: 1}, Channels: []string{"class:1"}}
	}
	e1, e2, e3 := ev(10), ev(20), ev(40)
	record := broadcaster.Event{ID: broadcaster.Cursor{LSN: 30, Pos: 1}, Recheck: []string{"class_teachers"}}
	h.publish(&e1, slog.New(slog.DiscardHandler))
	h.publish(&e2, slog.New(slog.DiscardHandler)) // lagging after e1
	// The catch-up reads [e2, record, e3] ... meanwhile the hub gates c
	// at the record and publishes e3.
	page := []broadcaster.Event{e2, record, e3}
	work := h.gate(record.ID, func(*acl.Channel) bool { return true })
	if len(work) != 1 || work[0].c != c {
		t.Fatalf("gate: %+v", work)
	}
	h.publish(&e3, slog.New(slog.DiscardHandler))
	frames, _, _ := h.catchUpFrames(c, c.lagPos, h.position(), page, slog.New(slog.DiscardHandler))
	if len(frames) != 1 {
		t.Fatalf("gated catch-up wrote %d frames, want e2 only", len(frames))
	}
	if _, done, _ := h.catchUpFrames(c, c.lagPos, h.position(), page[2:], slog.New(slog.DiscardHandler)); !done || !c.lagging {
		t.Fatalf("at the gate: done %v lagging %v; want stopped and still lagging", done, c.lagging)
	}
	h.ungate(c, record.ID)
	if frames, _, _ := h.catchUpFrames(c, c.lagPos, h.position(), page[2:], slog.New(slog.DiscardHandler)); len(frames) != 1 {
		t.Fatalf("after the gate: %d frames, want e3", len(frames))
	}
	if w := h.gate(record.ID, func(*acl.Channel) bool { return true }); len(w) != 0 {
		t.Fatalf("a record the hub has passed gated %d connections", len(w))
	}
}
