package ws

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// TestDirectWriteRest: events the socket cannot take at once (a client
// that does not read yet, frames larger than both socket buffers) reach
// the client whole and in order once it reads: the writer sends what the
// hub's direct write left. Sizes cover the three header forms.
func TestDirectWriteRest(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("20", "class:1")
	c := e.connectSmallBuffer("20", "teacher", 64<<10)
	c.c.SetReadLimit(8 << 20)
	c.expect("welcome")
	c.subscribe("class:1")

	var evs []string
	for _, pad := range []int{4 << 20, 10, 300, 70000, 4 << 20, 4 << 20, 5} {
		ev := e.makeEvents(1, strings.Repeat("x", pad), "class:1")
		evs = append(evs, ev[0].ID.String())
		e.appendBatch(ev)
	}
	// Not reading yet: the hub's write cannot finish.
	time.Sleep(100 * time.Millisecond)
	for i, want := range evs {
		m := c.read()
		if m.str("type") != "event" {
			t.Fatalf("frame %d: %v", i, m)
		}
		if id := m["event"].(map[string]any)["eventId"]; id != want {
			t.Fatalf("event %d is %v, want %v", i, id, want)
		}
	}
	// And the connection goes on as usual.
	c.ping()
}

// TestDirectWriteManyConns: with more connections than a round of direct
// writes goes through between intakes (intakeEvery), and events appended
// one by one while rounds run (so that some are taken in mid-round, queued
// behind what the connections ahead have and after what the ones behind
// were sent), every client gets every event once, in order.
func TestDirectWriteManyConns(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxConnectionsPerIPPerMinute = 1000 })
	const conns, events = 2*intakeEvery + 50, 40
	var cs []*client
	for i := range conns {
		user := fmt.Sprint(100 + i)
		e.acc.grant(user, "class:1")
		c := e.connect(user, "teacher")
		c.subscribe("class:1")
		cs = append(cs, c)
	}
	var ids []string
	pending := make(chan broadcaster.Event, events)
	for range events {
		ev := e.makeEvents(1, "", "class:1")
		ids = append(ids, ev[0].ID.String())
		pending <- ev[0]
	}
	// Each time a round pauses for an intake, the next event is committed:
	// it is taken in mid-round.
	intake := e.srv.hub.between
	var midRound atomic.Int32
	e.srv.hub.between = func() {
		select {
		case ev := <-pending:
			if err := e.log.Append(context.Background(), broadcaster.Batch{Events: []broadcaster.Event{ev}, TxEnd: ev.ID.LSN + 1}); err != nil {
				t.Errorf("Append: %v", err)
			}
		default:
		}
		before := e.srv.hub.position()
		intake()
		if e.srv.hub.position() != before {
			midRound.Add(1)
		}
	}
	first := <-pending
	e.appendBatch([]broadcaster.Event{first})
	for i, c := range cs {
		for k, want := range ids {
			m := c.read()
			if id := m["event"].(map[string]any)["eventId"]; id != want {
				t.Fatalf("client %d, event %d is %v, want %v", i, k, id, want)
			}
		}
	}
	for _, c := range []*client{cs[0], cs[len(cs)/2], cs[len(cs)-1]} {
		if m, err := c.tryRead(200 * time.Millisecond); err == nil {
			t.Fatalf("after every event, %v", m)
		}
	}
	if midRound.Load() == 0 {
		t.Fatal("no event was taken in mid-round")
	}
	t.Logf("%d of %d events taken in mid-round", midRound.Load(), events)
}

// TestIntakeStopsAtAControlRecord: a control record taken in mid-round is
// applied only after the round, by Run, and nothing after it is queued
// before then: connections still ahead in the round, whose access the
// record revokes, get revoked, never the event committed after it.
func TestIntakeStopsAtAControlRecord(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxConnectionsPerIPPerMinute = 1000 })
	const conns = intakeEvery + 50
	var cs []*client
	var users []string
	for i := range conns {
		user := fmt.Sprint(100 + i)
		e.acc.grant(user, "class:1")
		c := e.connect(user, "teacher")
		c.subscribe("class:1")
		cs, users = append(cs, c), append(users, user)
	}
	first := e.makeEvents(1, "", "class:1")
	e.lsn += 0x10
	record := broadcaster.Event{ID: broadcaster.Cursor{LSN: e.lsn, Pos: 1}, Timestamp: time.Now(), Recheck: []string{"class_teachers"}}
	after := e.makeEvents(1, "", "class:1")
	// At the first pause of the round that writes the first event, the
	// teachers leave the class (the record) and an event follows.
	intake := e.srv.hub.between
	var once sync.Once
	e.srv.hub.between = func() {
		once.Do(func() {
			for _, u := range users {
				e.acc.deny(u, "class:1")
			}
			if err := e.log.Append(context.Background(), broadcaster.Batch{Events: []broadcaster.Event{record, after[0]}, TxEnd: after[0].ID.LSN + 1}); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
		intake()
	}
	e.appendBatch(first)
	for i, c := range cs {
		if m := c.expect("event"); m["event"].(map[string]any)["eventId"] != first[0].ID.String() {
			t.Fatalf("client %d: %v, want the first event", i, m)
		}
		if m := c.read(); m.str("type") != "revoked" {
			t.Fatalf("client %d: %v after the record, want revoked", i, m)
		}
	}
}
