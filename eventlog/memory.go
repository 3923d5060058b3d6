// Package eventlog holds the embedded implementation of broadcaster.Log: an
// in-memory ring of the newest events, bounded by count and age, that keeps
// what its readers still need past that within a budget (Hold).
//
// A Memory log is safe for concurrent use: one writer (the mapping) appends
// while any number of readers read.
package eventlog

import (
	"container/heap"
	"context"
	"encoding/json"
	"sync"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxEvents    = 100_000
	DefaultMaxAge       = 15 * time.Minute
	DefaultMaxHeldBytes = 64 << 20
)

// ErrExpired is returned by Since for a cursor older than the retained log.
var ErrExpired = broadcaster.ErrCursorExpired

// Options bound a Memory log.
type Options struct {
	// MaxEvents is how many events are kept. Default 100000.
	MaxEvents int
	// MaxAge is how long, by commit time, an event is kept. Default 15m.
	MaxAge time.Duration
	// MaxHeldBytes bounds the memory, estimated, of the events kept past
	// MaxEvents and MaxAge because a reader still needs them (Hold). Past
	// it the oldest go, and the readers behind them are expired. Default
	// 64 MiB.
	MaxHeldBytes int64
	// Now defaults to time.Now.
	Now func() time.Time
	// Floor is where a log rebuilt after a restart begins: cursors before
	// it are expired (the events after them are not all here). Zero for a
	// log that has seen everything.
	Floor broadcaster.Cursor
	// FloorTime bounds the commit times of the events before Floor: a
	// /sync by time at or before it is expired. Zero: unknown (only times
	// after the first retained event are then served).
	FloorTime time.Time
	// Horizon is how far a rebuilt log will get back to: the database's
	// WAL position when it started. A cursor ahead of the head is accepted
	// (its events are being rebuilt) up to it, and refused with
	// broadcaster.ErrCursorAhead past it. Zero: every cursor ahead of the
	// head is refused.
	Horizon broadcaster.LSN
}

// Memory is an in-memory broadcaster.Log.
type Memory struct {
	opts Options

	mu sync.RWMutex // protects everything below
	// ring holds the retained events oldest first, from ring[first]
	// wrapping around, n of them.
	ring  []broadcaster.Event
	first int
	n     int
	head  broadcaster.Cursor
	// floor is the newest cursor evicted: a resume from before it has lost
	// events. floorTime is that event's commit time.
	floor     broadcaster.Cursor
	floorTime time.Time
	// grew is closed, and replaced, whenever an event is appended.
	grew chan struct{}
	// pinned: a reader (the gateway's hub) has not yet read past pin, and
	// Append waits rather than evict an event after it (Pin). pinMoved is
	// closed, and replaced, whenever the pin moves or goes.
	pinned   bool
	pin      broadcaster.Cursor
	pinMoved chan struct{}
	// holds are the readers' holds, the one furthest behind first. The
	// oldest held events, past the retention but needed by a hold, are
	// ring[first:first+held] and take heldBytes (estimated).
	holds     holdHeap
	held      int
	heldBytes int64
	// overBudget counts events dropped while a hold still needed them.
	overBudget uint64
}

var (
	_ broadcaster.Log       = (*Memory)(nil)
	_ broadcaster.LogReader = (*Memory)(nil)
)

// NewMemory returns an empty log.
func NewMemory(opts Options) *Memory {
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.MaxHeldBytes <= 0 {
		opts.MaxHeldBytes = DefaultMaxHeldBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Memory{opts: opts, grew: make(chan struct{}), pinMoved: make(chan struct{}), floor: opts.Floor, floorTime: opts.FloorTime, head: opts.Floor}
}

// SetHorizon raises the horizon (Options.Horizon) to h: a log that is
// being filled up to h (a gateway's cache loading the stream) accepts the
// cursors up to it.
func (m *Memory) SetHorizon(h broadcaster.LSN) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h > m.opts.Horizon {
		m.opts.Horizon = h
	}
}

// Options returns the log's options, defaults applied.
func (m *Memory) Options() Options { return m.opts }

// Append implements broadcaster.Sink. Events at or before the head are
// replays and are skipped. When the log is full and its oldest event is
// past the pin, Append waits for the pinning reader to move on (or for ctx
// to end: it returns ctx's error then, with the events before kept).
func (m *Memory) Append(ctx context.Context, b broadcaster.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	added := false
	for i := range b.Events {
		ev := &b.Events[i]
		if !m.head.Before(ev.ID) {
			continue
		}
		// Waits while MaxEvents events or more lie after the pin: while
		// the MaxEvents-th newest does (the ring is in cursor order).
		for m.pinned && m.n >= m.opts.MaxEvents && m.pin.Before(m.at(m.n-m.opts.MaxEvents).ID) {
			// The reader has not read the oldest event yet: tell it
			// about what was added, and wait for it.
			if added {
				close(m.grew)
				m.grew = make(chan struct{})
				added = false
			}
			moved := m.pinMoved
			m.mu.Unlock()
			select {
			case <-moved:
				m.mu.Lock()
			case <-ctx.Done():
				m.mu.Lock()
				return ctx.Err()
			}
		}
		m.push(ev)
		m.head = ev.ID
		added = true
	}
	if added {
		close(m.grew)
		m.grew = make(chan struct{})
	}
	if b.TxEnd > 0 {
		// Past every event committed before TxEnd, and before any event of a
		// transaction committed at or after it.
		if end := (broadcaster.Cursor{LSN: b.TxEnd - 1}); m.head.Before(end) {
			m.head = end
		}
	}
	m.trim()
	return nil
}

// Pin says that a reader has read every event up to c and needs the ones
// after it: until it pins further (or Unpins), Append waits rather than
// evict them. The gateway's hub pins its position, so that a burst larger
// than the retention (one transaction of a million rows) cannot evict
// events before they were fanned out; the intake then waits for the hub,
// which never waits for a client. A pin never moves back.
func (m *Memory) Pin(c broadcaster.Cursor) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pinned && !m.pin.Before(c) {
		return
	}
	m.pinned, m.pin = true, c
	close(m.pinMoved)
	m.pinMoved = make(chan struct{})
}

// Unpin removes the pin: Append no longer waits.
func (m *Memory) Unpin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pinned = false
	close(m.pinMoved)
	m.pinMoved = make(chan struct{})
}

// push adds ev at the end, growing the ring (doubling) when it is full and
// its oldest event cannot go: it is within the retention, or held.
func (m *Memory) push(ev *broadcaster.Event) {
	if m.n == len(m.ring) && m.n >= m.opts.MaxEvents {
		// Full: what no hold needs, or what is over the budget, goes
		// before the ring grows. Without holds (the common case, on every
		// append of a full log) only the oldest event goes.
		if len(m.holds) > 0 {
			m.trim()
		}
		if m.n == len(m.ring) && !m.needed(m.at(0)) {
			m.evictFirst()
		}
	}
	if m.n == len(m.ring) {
		size := max(2*len(m.ring), 1024)
		if m.n < m.opts.MaxEvents {
			size = min(size, m.opts.MaxEvents)
		}
		m.resize(size)
	}
	m.ring[(m.first+m.n)%len(m.ring)] = *ev
	m.n++
}

// resize moves the retained events to a ring of size slots.
func (m *Memory) resize(size int) {
	ring := make([]broadcaster.Event, size)
	for i := 0; i < m.n; i++ {
		ring[i] = *m.at(i)
	}
	m.ring, m.first = ring, 0
}

// trim drops the events past the retention (MaxEvents, MaxAge) that no
// hold needs; the ones a hold needs stay while they fit MaxHeldBytes, and
// past it the oldest go anyway (their holders are then expired).
func (m *Memory) trim() {
	limit := m.opts.Now().Add(-m.opts.MaxAge)
	over := func(i int) bool {
		return i < m.n-m.opts.MaxEvents || m.at(i).Timestamp.Before(limit)
	}
	for m.n > 0 && over(0) && !m.needed(m.at(0)) {
		m.evictFirst()
	}
	for m.held < m.n && over(m.held) {
		m.heldBytes += eventSize(m.at(m.held))
		m.held++
	}
	for m.held > 0 && m.heldBytes > m.opts.MaxHeldBytes {
		m.evictFirst()
		m.overBudget++
	}
	// Holds behind the floor have lost their events: they need nothing
	// more (their readers find their cursors expired).
	for len(m.holds) > 0 && m.holds[0].pos.Before(m.floor) {
		heap.Pop(&m.holds)
	}
	// A ring grown for held events shrinks back once they are gone.
	if len(m.ring) > m.opts.MaxEvents && m.n <= len(m.ring)/4 {
		m.resize(max(m.opts.MaxEvents, 2*m.n))
	}
}

// needed reports whether a hold has not read ev yet.
func (m *Memory) needed(ev *broadcaster.Event) bool {
	return len(m.holds) > 0 && m.holds[0].pos.Before(ev.ID)
}

// evictFirst drops the oldest event; the floor moves to it.
func (m *Memory) evictFirst() {
	ev := m.at(0)
	if m.held > 0 {
		m.held--
		m.heldBytes -= eventSize(ev)
	}
	m.floor, m.floorTime = ev.ID, ev.Timestamp
	*ev = broadcaster.Event{}
	m.first = (m.first + 1) % len(m.ring)
	m.n--
}

// after returns the index of the first retained event after c.
func (m *Memory) after(c broadcaster.Cursor) int {
	lo, hi := 0, m.n
	for lo < hi {
		mid := (lo + hi) / 2
		if m.at(mid).ID.Compare(c) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// eventSize estimates the memory an event takes: its struct, its strings
// and its rows' fields. It must give the same answer every time it is
// asked about the same event.
func eventSize(ev *broadcaster.Event) int64 {
	const word = 16 // a string or interface header
	n := int64(200 + len(ev.Type) + len(ev.Table) + len(ev.UserID))
	for _, c := range ev.Channels {
		n += word + int64(len(c))
	}
	for _, t := range ev.Recheck {
		n += word + int64(len(t))
	}
	for _, row := range []broadcaster.Row{ev.Data, ev.OldData} {
		for _, f := range row {
			n += 2*word + int64(len(f.Name))
			switch v := f.Value.(type) {
			case string:
				n += int64(len(v))
			case []byte:
				n += int64(len(v))
			case json.RawMessage: // emitted events' data, and events read from a stream
				n += int64(len(v))
			default:
				n += word
			}
		}
	}
	return n
}

// Hold implements broadcaster.LogReader: the events after c stay readable
// until the hold moves past them or is released, beyond MaxEvents and
// MaxAge and within MaxHeldBytes.
func (m *Memory) Hold(c broadcaster.Cursor) (broadcaster.Hold, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.Before(m.floor) {
		return nil, ErrExpired
	}
	h := &hold{m: m, pos: c}
	heap.Push(&m.holds, h)
	return h, nil
}

// hold is a Memory log's broadcaster.Hold.
type hold struct {
	m *Memory
	// pos and i (the index in m.holds, -1 once released) are protected by
	// m.mu.
	pos broadcaster.Cursor
	i   int
}

func (h *hold) Move(c broadcaster.Cursor) {
	m := h.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.i < 0 || !h.pos.Before(c) {
		return
	}
	h.pos = c
	heap.Fix(&m.holds, h.i)
	m.trim()
}

func (h *hold) Release() {
	m := h.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if h.i < 0 {
		return
	}
	heap.Remove(&m.holds, h.i)
	m.trim()
}

// holdHeap orders holds by position, the furthest behind first
// (container/heap).
type holdHeap []*hold

func (q holdHeap) Len() int           { return len(q) }
func (q holdHeap) Less(i, j int) bool { return q[i].pos.Before(q[j].pos) }
func (q holdHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].i, q[j].i = i, j
}
func (q *holdHeap) Push(x any) {
	h := x.(*hold)
	h.i = len(*q)
	*q = append(*q, h)
}
func (q *holdHeap) Pop() any {
	old := *q
	h := old[len(old)-1]
	old[len(old)-1] = nil
	h.i = -1
	*q = old[:len(old)-1]
	return h
}

// Raise moves the floor up to floor, with at bounding the commit times of
// what lies before it, and drops the events before it: the source skipped
// changes (its slot was re-created), so no cursor from before can resume.
func (m *Memory) Raise(floor broadcaster.Cursor, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.floor.Before(floor) {
		for m.n > 0 && m.at(0).ID.Before(floor) {
			m.evictFirst()
		}
		m.floor = floor
	}
	if m.floorTime.Before(at) {
		m.floorTime = at
	}
	if m.head.Before(floor) {
		m.head = floor
	}
}

// Confirmable implements broadcaster.Log. The memory log keeps nothing across
// a restart, so it holds the slot at the commit of its oldest event: after a
// restart the slot delivers every retained transaction again, and the log
// is rebuilt with the same event ids. When the oldest event is a
// non-transactional message's, whose ID lies past the start of its WAL
// record, it holds the slot at the floor, before that record. An empty log
// holds nothing back. It also drops events past MaxAge, so an idle log lets
// the slot go.
func (m *Memory) Confirmable() broadcaster.LSN {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trim()
	if m.n == 0 {
		return broadcaster.MaxLSN
	}
	if oldest := m.at(0); oldest.NonTransactional() {
		return min(m.floor.LSN, oldest.ID.LSN)
	}
	return m.at(0).ID.LSN
}

// SinceTime returns the cursor after which the retained events committed at
// or after t begin: the cursor to hand Since to resume from a wall-clock
// time. A t at or before the commit time of an evicted event gives
// ErrCursorExpired: some event committed then is gone.
func (m *Memory) SinceTime(t time.Time) (broadcaster.Cursor, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.floor.IsZero() {
		floorTime := m.floorTime
		if floorTime.IsZero() {
			// A rebuilt log (Options.Floor) does not know when the events
			// before its floor were committed: only times after its first
			// event are known to be whole.
			if m.n == 0 {
				return broadcaster.Cursor{}, broadcaster.ErrCursorExpired
			}
			floorTime = m.at(0).Timestamp
		}
		if !floorTime.Before(t) {
			return broadcaster.Cursor{}, broadcaster.ErrCursorExpired
		}
	}
	if m.n == 0 {
		return m.head, nil
	}
	// Commit times follow commit order closely but not exactly: find the
	// first event at or after t by binary search, then step back over any
	// neighbours also at or after t, so nothing committed then is skipped.
	lo, hi := 0, m.n
	for lo < hi {
		mid := (lo + hi) / 2
		if !m.at(mid).Timestamp.Before(t) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	for lo > 0 && !m.at(lo-1).Timestamp.Before(t) {
		lo--
	}
	if lo == 0 {
		return m.floor, nil
	}
	return m.at(lo - 1).ID, nil
}

// Head implements broadcaster.Log.
func (m *Memory) Head() broadcaster.Cursor {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.head
}

// Floor implements broadcaster.LogReader.
func (m *Memory) Floor() broadcaster.Cursor {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.floor
}

// Len returns the number of retained events.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n
}

// Stats is a snapshot of a Memory log's size.
type Stats struct {
	// Events is the number of retained events.
	Events int
	// Oldest is the commit time of the oldest retained event; zero when
	// the log is empty.
	Oldest time.Time
	// Head is the log's head, as Head returns it.
	Head broadcaster.Cursor
	// Held is how many events are kept past the retention because a
	// reader still needs them, and HeldBytes their estimated size.
	Held      int
	HeldBytes int64
	// Holds is the number of readers holding events.
	Holds int
	// OverBudget counts events dropped while a reader still needed them
	// (MaxHeldBytes was reached).
	OverBudget uint64
}

// Stats returns the log's size, its oldest event's commit time and its
// head, read together.
func (m *Memory) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := Stats{Events: m.n, Head: m.head, Held: m.held, HeldBytes: m.heldBytes, Holds: len(m.holds), OverBudget: m.overBudget}
	if m.n > 0 {
		st.Oldest = m.at(0).Timestamp
	}
	return st
}

// Since returns up to limit retained events after cursor, oldest first, and
// whether more follow. A cursor from before the retained log returns
// ErrExpired.
func (m *Memory) Since(cursor broadcaster.Cursor, limit int) ([]broadcaster.Event, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if cursor.Before(m.floor) {
		return nil, false, ErrExpired
	}
	if m.head.Before(cursor) && cursor.LSN > m.opts.Horizon {
		return nil, false, broadcaster.ErrCursorAhead
	}
	lo := m.after(cursor)
	count := m.n - lo
	more := false
	if limit > 0 && count > limit {
		count, more = limit, true
	}
	out := make([]broadcaster.Event, count)
	for i := range out {
		out[i] = *m.at(lo + i)
	}
	return out, more, nil
}

// Wait implements broadcaster.LogReader.
func (m *Memory) Wait(c broadcaster.Cursor) <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.n > 0 && c.Before(m.at(m.n-1).ID) {
		return closed
	}
	return m.grew
}

// closed is a channel that is always closed.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (m *Memory) at(i int) *broadcaster.Event {
	return &m.ring[(m.first+i)%len(m.ring)]
}

// EventSize is the estimate of an event's memory that MaxHeldBytes is
// counted in.
func EventSize(ev *broadcaster.Event) int64 { return eventSize(ev) }
