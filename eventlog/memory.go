// Package eventlog holds the embedded implementation of broadcaster.Log: an
// in-memory ring of the newest events, bounded by count and age.
//
// A Memory log is safe for concurrent use: one writer (the mapping) appends
// while any number of readers read.
package eventlog

import (
	"context"
	"sync"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxEvents = 100_000
	DefaultMaxAge    = 15 * time.Minute
)

// ErrExpired is returned by Since for a cursor older than the retained log.
var ErrExpired = broadcaster.ErrCursorExpired

// Options bound a Memory log.
type Options struct {
	// MaxEvents is how many events are kept. Default 100000.
	MaxEvents int
	// MaxAge is how long, by commit time, an event is kept. Default 15m.
	MaxAge time.Duration
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Memory{opts: opts, grew: make(chan struct{}), pinMoved: make(chan struct{}), floor: opts.Floor, floorTime: opts.FloorTime, head: opts.Floor}
}

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
		for m.pinned && m.n == m.opts.MaxEvents && m.pin.Before(m.ring[m.first].ID) {
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
	m.evictOld()
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

// push adds ev at the end, growing the ring (doubling, up to MaxEvents)
// or, when it is as large as allowed, evicting the oldest event.
func (m *Memory) push(ev *broadcaster.Event) {
	if m.n == len(m.ring) {
		if len(m.ring) == m.opts.MaxEvents {
			m.floor, m.floorTime = m.ring[m.first].ID, m.ring[m.first].Timestamp
			m.ring[m.first] = *ev
			m.first = (m.first + 1) % len(m.ring)
			return
		}
		grown := make([]broadcaster.Event, min(max(2*len(m.ring), 1024), m.opts.MaxEvents))
		for i := 0; i < m.n; i++ {
			grown[i] = *m.at(i)
		}
		m.ring, m.first = grown, 0
	}
	m.ring[(m.first+m.n)%len(m.ring)] = *ev
	m.n++
}

// evictOld drops events whose commit time is older than MaxAge.
func (m *Memory) evictOld() {
	limit := m.opts.Now().Add(-m.opts.MaxAge)
	for m.n > 0 {
		ev := &m.ring[m.first]
		if !ev.Timestamp.Before(limit) {
			return
		}
		m.floor, m.floorTime = ev.ID, ev.Timestamp
		*ev = broadcaster.Event{}
		m.first = (m.first + 1) % len(m.ring)
		m.n--
	}
}

// Raise moves the floor up to floor, with at bounding the commit times of
// what lies before it, and drops the events before it: the source skipped
// changes (its slot was re-created), so no cursor from before can resume.
func (m *Memory) Raise(floor broadcaster.Cursor, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.floor.Before(floor) {
		m.floor = floor
	}
	if m.floorTime.Before(at) {
		m.floorTime = at
	}
	if m.head.Before(floor) {
		m.head = floor
	}
	for m.n > 0 && m.ring[m.first].ID.Before(floor) {
		m.ring[m.first] = broadcaster.Event{}
		m.first = (m.first + 1) % len(m.ring)
		m.n--
	}
}

// Confirmable implements broadcaster.Log. The memory log keeps nothing across
// a restart, so it holds the slot at the commit of its oldest event: after a
// restart the slot delivers every retained transaction again, and the log
// is rebuilt with the same event ids. An empty log holds nothing back. It
// also drops events past MaxAge, so an idle log lets the slot go.
func (m *Memory) Confirmable() broadcaster.LSN {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evictOld()
	if m.n == 0 {
		return broadcaster.MaxLSN
	}
	return m.ring[m.first].ID.LSN
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
}

// Stats returns the log's size, its oldest event's commit time and its
// head, read together.
func (m *Memory) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := Stats{Events: m.n, Head: m.head}
	if m.n > 0 {
		st.Oldest = m.ring[m.first].Timestamp
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
	// Binary search for the first event after cursor: the ring is in
	// cursor order.
	lo, hi := 0, m.n
	for lo < hi {
		mid := (lo + hi) / 2
		if m.at(mid).ID.Compare(cursor) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
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
