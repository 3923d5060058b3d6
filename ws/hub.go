package ws

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
)

// runBatch is how many events the hub reads from the log at a time.
const runBatch = 512

// hub is the channel index: which connection listens on which channel.
type hub struct {
	stats *counters
	// log is where lagging connections take their holds; nil in tests of
	// the hub alone.
	log broadcaster.LogReader

	mu sync.Mutex // protects everything below and every conn's subs, mark and match
	// pos is the newest position fanned out: a subscription made now
	// receives every event after it, and nothing at or before it. Nothing
	// after it is served to anyone (catch-ups and /sync stop there), so
	// every control record takes effect before what follows it is served.
	// moved is closed, and replaced, when pos moves.
	pos   broadcaster.Cursor
	moved chan struct{}
	index map[string]*channelSubs
	// seq numbers the events fanned out, to mark the connections an event
	// touches (conn.mark) without a map per event.
	seq uint64
	// touched and envelopes are per-event scratch space.
	touched   []*conn
	envelopes map[string][]byte
	// wake lists the connections publish queued events on, whose writers
	// wakeWriters starts; waking is the list it works through (the hub's
	// goroutine's own).
	wake, waking []*conn
	// scratchSpace is the direct writes' scratch space (writeDirect).
	scratchSpace *directScratch
	// between, when set, is called by writeDirect on the hub's goroutine
	// between connections of a round: Server.intake. intakeHeld: it met a
	// control record this round, which Run applies after the round (the
	// hub's goroutine's own).
	between    func()
	intakeHeld bool
}

// subscription is one channel of one connection.
type subscription struct {
	ch *acl.Channel
	// from: events at or before it are not delivered on this subscription
	// (the hub's position when it was made, or the client's `since`).
	from broadcaster.Cursor
	// rewind marks a subscription that existed when the connection was
	// rewound for another's `since`: it was already served up to
	// conn.servedUpTo.
	rewind bool
	// idx is the connection's index in its channelSubs.list.
	idx int32
}

// delivers reports whether ev, published on the subscription's channel, is
// due on it.
func (sub *subscription) delivers(ev *broadcaster.Event) bool {
	return sub.from.Before(ev.ID)
}

// channelSubs are the connections subscribed to one channel, in a stable
// order: publish queues, and the round of direct writes writes, in that
// order, so a connection written late in one round is written late in the
// next (an event taken in mid-round, which the connections already written
// get in the next round, reaches them early in it). Each connection's
// subscription knows its index in list.
type channelSubs struct {
	ch   *acl.Channel
	list []*conn
}

// add adds c, whose subscription to the channel is sub.
func (cs *channelSubs) add(c *conn, sub *subscription) {
	sub.idx = int32(len(cs.list))
	cs.list = append(cs.list, c)
}

// remove removes c, whose subscription to the channel was sub: the last
// connection takes its place.
func (cs *channelSubs) remove(sub *subscription) {
	i, n := sub.idx, int32(len(cs.list)-1)
	last := cs.list[n]
	cs.list[i] = last
	last.subs[cs.ch.Name].idx = i
	cs.list[n] = nil
	cs.list = cs.list[:n]
	if cap(cs.list) > 64 && len(cs.list) < cap(cs.list)/4 {
		cs.list = slices.Clip(slices.Clone(cs.list))
	}
}

func newHub(stats *counters, log broadcaster.LogReader, start broadcaster.Cursor) *hub {
	return &hub{
		stats:     stats,
		log:       log,
		pos:       start,
		moved:     make(chan struct{}),
		index:     make(map[string]*channelSubs),
		envelopes: make(map[string][]byte),
	}
}

// Run is the hub: it follows the log from the hub's position (the log's
// head when the Server was made) and fans each event out to the connections
// subscribed to its channels, until ctx ends or Shutdown is called. It
// returns nil then. A log that fails to read is tried again (with a
// warning), however long it takes. Call it once.
func (s *Server) Run(ctx context.Context) error {
	sweepCtx, stopSweep := context.WithCancel(s.ctx)
	defer stopSweep()
	// enter, not a bare wg.Add: Shutdown may be waiting on wg already.
	if s.enter() {
		go func() {
			defer s.wg.Done()
			s.sweepStalls(sweepCtx)
		}()
	}
	// The log keeps every event until the hub has fanned it out: a burst
	// larger than the retention then slows the intake to the hub's pace
	// instead of making every client reset.
	s.log.Pin(s.hub.position())
	defer s.log.Unpin()
	failures := 0
	for {
		// The hub's position, not a copy: ResetAll may move it on.
		pos := s.hub.position()
		// Every event at or before head is in the log now, so when Since
		// returns them all, the hub has fanned out everything up to head.
		head := s.log.Head()
		evs, more, err := s.log.Since(pos, runBatch)
		if errors.Is(err, broadcaster.ErrCursorExpired) {
			floor := s.log.Floor()
			s.hub.lost(floor)
			s.logger.Error("ws: the hub fell behind the retained log; every subscription was told to reset", "resume", floor)
			continue
		}
		if err != nil {
			// A log on a stream can fail for a moment (a NATS server
			// going, a leader election): try again, never end the
			// gateway for it. Connections wait meanwhile.
			failures++
			if failures == 1 || failures%20 == 0 {
				s.logger.Warn("ws: cannot read the log; trying again", "after", pos, "err", err, "attempts", failures)
			}
			select {
			case <-time.After(min(time.Duration(failures)*100*time.Millisecond, 2*time.Second)):
				continue
			case <-ctx.Done():
				return nil
			case <-s.ctx.Done():
				return nil
			}
		}
		if failures > 0 {
			s.logger.Info("ws: reading the log again", "after", pos, "attempts", failures)
			failures = 0
		}
		for i := range evs {
			if evs[i].IsControl() {
				s.control(&evs[i])
				continue
			}
			s.hub.publish(&evs[i], s.logger)
		}
		s.hub.wakeWriters()
		if len(evs) > 0 {
			pos = evs[len(evs)-1].ID
			s.log.Pin(pos)
			s.hub.signalMoved()
		}
		if more {
			if ctx.Err() != nil || s.ctx.Err() != nil {
				// What intake queued last round goes out too.
				s.hub.wakeWriters()
				return nil
			}
			continue
		}
		if pos.Before(head) {
			pos = head
			s.hub.advance(head)
		}
		select {
		case <-s.log.Wait(pos):
		case <-ctx.Done():
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
}

// intake queues, in the middle of a round of direct writes, the events the
// log gained since the hub's position, up to the first control record (the
// round's end leaves that and the rest to Run). Only the hub's goroutine
// calls it. A failing read is left to Run too.
func (s *Server) intake() {
	if s.hub.intakeHeld {
		return
	}
	pos := s.hub.position()
	if !pos.Before(s.log.Head()) {
		return
	}
	evs, _, err := s.log.Since(pos, runBatch)
	if err != nil {
		return
	}
	n := 0
	for i := range evs {
		if evs[i].IsControl() {
			// Not before the round ends (nor read again until then).
			s.hub.intakeHeld = true
			break
		}
		s.hub.publish(&evs[i], s.logger)
		n++
	}
	if n > 0 {
		s.log.Pin(evs[n-1].ID)
		s.hub.signalMoved()
	}
}

// wakeWriters writes the events publish queued since the last call
// (writeDirect), or starts the connections' writers for them. Only the
// hub's goroutine calls it (and publish): the two lists swap, and the
// writes happen outside hub.mu, which subscribes wait for.
func (h *hub) wakeWriters() {
	h.mu.Lock()
	wake := h.wake
	for _, c := range wake {
		c.wakePending = false
	}
	h.wake, h.waking = h.waking[:0], wake
	h.mu.Unlock()
	h.intakeHeld = false
	h.writeDirect(wake)
	clear(wake)
}

// position returns the hub's position.
func (h *hub) position() broadcaster.Cursor {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}

// past returns a channel that is closed once the hub's position is past c:
// at once if it already is.
func (h *hub) past(c broadcaster.Cursor) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.Before(h.pos) {
		return closedChan
	}
	return h.moved
}

// signalMoved wakes the waiters of past.
func (h *hub) signalMoved() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.signalMovedLocked()
}

func (h *hub) signalMovedLocked() {
	close(h.moved)
	h.moved = make(chan struct{})
}

// closedChan is always closed.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// advance moves the position to c, past events already fanned out.
func (h *hub) advance(c broadcaster.Cursor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pos.Before(c) {
		h.pos = c
		h.signalMovedLocked()
	}
}

// withPosition calls f with the position while no event can be queued, so
// what f queues lands after every event at or before that position.
func (h *hub) withPosition(f func(pos broadcaster.Cursor)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h.pos)
}

// publish queues ev on every connection subscribed to one of its channels:
// once per connection, listing every matching channel it subscribed to. A
// connection whose queue is full is not closed: it falls back to catching
// up from the log (see conn.catchUp), so a burst delays only itself.
func (h *hub) publish(ev *broadcaster.Event, logger *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.pos.Before(ev.ID) {
		// ResetAll moved the hub past it (the clients were told to reset).
		return
	}
	prev := h.pos
	h.pos = ev.ID
	h.seq++
	touched := h.touched[:0]
	for _, name := range ev.Channels {
		cs := h.index[name]
		if cs == nil {
			continue
		}
		for _, c := range cs.list {
			if c.lagging || !c.subs[name].delivers(ev) {
				continue
			}
			if c.mark != h.seq {
				c.mark, c.match = h.seq, c.match[:0]
				touched = append(touched, c)
			}
			if !slices.Contains(c.match, name) {
				c.match = append(c.match, name)
			}
		}
	}
	defer func() {
		clear(touched) // keep no closed connection alive
		h.touched = touched[:0]
	}()
	if len(touched) == 0 {
		return
	}
	body, ok := encodeEvent(ev, logger)
	if !ok {
		return
	}
	clear(h.envelopes)
	for _, c := range touched {
		key := c.match[0]
		if len(c.match) > 1 {
			key = strings.Join(c.match, "\x00")
		}
		env, ok := h.envelopes[key]
		if !ok {
			env = eventEnvelope(c.match, body)
			h.envelopes[key] = env
		}
		if !c.offer(outFrame{data: env, event: true, commit: ev.Timestamp}) {
			// Everything up to prev is queued (or was never due): the
			// connection goes on from there by itself.
			h.lag(c, prev)
		} else if !c.wakePending {
			c.wakePending = true
			h.wake = append(h.wake, c)
		}
	}
}

// lag switches c to catching up from the log after from; h.mu must be held.
func (h *hub) lag(c *conn, from broadcaster.Cursor) {
	if c.lagging {
		return
	}
	c.lagging, c.lagPos = true, from
	h.holdFrom(c, from)
	h.stats.catchUps.Add(1)
	c.wakeCatchUp()
}

// holdFrom makes the log keep the events after from for c's catch-up, in
// place of any hold c had; h.mu must be held. Without a hold (from is no
// longer retained) the catch-up finds its cursor expired.
func (h *hub) holdFrom(c *conn, from broadcaster.Cursor) {
	if h.log == nil {
		return
	}
	if c.hold != nil {
		c.hold.Release()
		c.hold = nil
	}
	if hold, err := h.log.Hold(from); err == nil {
		c.hold = hold
	}
}

// release ends c's hold, if it has one; h.mu must be held.
func (c *conn) release() {
	if c.hold != nil {
		c.hold.Release()
		c.hold = nil
	}
}

// gated is a connection held at a control record (or a subscribe that
// raced one), at, and its subscriptions to re-check.
type gated struct {
	c     *conn
	at    broadcaster.Cursor
	chans []*acl.Channel
}

// gate moves the position to the control record at, and holds every
// connection with a subscription that affected says depends on the
// record's tables: from then on nothing after at reaches them (the hub
// does not queue for them; their catch-up stops at at) until ungate. It
// returns them with those subscriptions. A record the hub has already
// passed (the clients were told to reset) holds nobody.
func (h *hub) gate(at broadcaster.Cursor, affected func(*acl.Channel) bool) []gated {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.pos.Before(at) {
		return nil
	}
	h.pos = at
	var out []gated
	idx := map[*conn]int{}
	for _, cs := range h.index {
		if !affected(cs.ch) {
			continue
		}
		for _, c := range cs.list {
			i, ok := idx[c]
			if !ok {
				i = len(out)
				idx[c] = i
				out = append(out, gated{c: c, at: at})
				h.gateLocked(c, at)
			}
			out[i].chans = append(out[i].chans, cs.ch)
		}
	}
	return out
}

// gateLocked holds c at at; h.mu must be held. Positions come in order.
func (h *hub) gateLocked(c *conn, at broadcaster.Cursor) {
	c.gates = append(c.gates, at)
	if !c.lagging {
		c.lagging, c.lagPos = true, at
		h.holdFrom(c, at)
	}
}

// ungate ends c's hold at at: once none is left before what c still has
// to read, c goes on from the log.
func (h *hub) ungate(c *conn, at broadcaster.Cursor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i := slices.Index(c.gates, at); i >= 0 {
		c.gates = slices.Delete(c.gates, i, i+1)
	}
	if c.lagging {
		c.wakeCatchUp()
	}
}

// resetAll queues reset for every channel of every connection and moves
// the position on to from, past changes the source skipped.
func (h *hub) resetAll(from broadcaster.Cursor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queueResets()
	if h.pos.Before(from) {
		h.pos = from
		h.signalMovedLocked()
	}
	h.stats.resets.Add(1)
}

// queueResets queues reset on every connection for all of its channels;
// h.mu must be held.
func (h *hub) queueResets() {
	chans := make(map[*conn][]string)
	for name, cs := range h.index {
		for _, c := range cs.list {
			chans[c] = append(chans[c], name)
		}
	}
	for c, names := range chans {
		slices.Sort(names)
		c.enqueue(outFrame{data: encode(resetMsg{Type: "reset", Channels: names, Reason: "cursor_expired"})})
	}
}

// lost handles a hub that fell behind the retained log: events were lost for
// every subscription, so each connection is sent reset for all of its
// channels, and the hub resumes at floor, the oldest event it can read.
func (h *hub) lost(floor broadcaster.Cursor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pos.Before(floor) {
		h.pos = floor
		h.signalMovedLocked()
	}
	h.queueResets()
}

// subscribe adds c to chans (channels it already has stay as they are),
// then calls then with the position, under the lock: what then queues
// precedes every event of the new subscriptions.
//
// With since, the new subscriptions resume: every retained event after since
// on them reaches c, then the live ones, with no gap and no duplicate. When
// since is older than the retained log, c is sent reset for them instead and
// they start live. expired tells which is the case; it is called under the
// lock, so it must not call back into the hub, as is stale: when it says
// the access checks of chans may predate a control record, c is gated at
// the position (subscribe reports it) until the caller has checked them
// again and called ungate.
func (h *hub) subscribe(c *conn, chans []*acl.Channel, since *broadcaster.Cursor, expired func(broadcaster.Cursor) bool, stale func() bool, then func(pos broadcaster.Cursor, reset []string)) (gatedAt broadcaster.Cursor, gated bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	from := h.pos
	var reset []string
	resume := false
	if since != nil {
		if expired(*since) {
			for _, ch := range chans {
				if _, ok := c.subs[ch.Name]; !ok {
					reset = append(reset, ch.Name)
				}
			}
		} else {
			from, resume = *since, true
		}
	}
	// served is how far c has been served: live connections are at the
	// hub's position, lagging ones at their own.
	served := h.pos
	if c.lagging {
		served = c.lagPos
	}
	rewind := resume && from.Before(served)
	if rewind {
		// The existing subscriptions were served up to served: the replay
		// must not send their events again.
		for _, sub := range c.subs {
			sub.rewind = true
		}
		if c.servedUpTo.Before(served) {
			c.servedUpTo = served
		}
	}
	for _, ch := range chans {
		if _, ok := c.subs[ch.Name]; ok {
			continue
		}
		cs := h.index[ch.Name]
		if cs != nil {
			// One resolved channel per name, shared: a channel with
			// thousands of subscribers is kept once.
			ch = cs.ch
		}
		sub := &subscription{ch: ch, from: from}
		c.subs[ch.Name] = sub
		if cs == nil {
			cs = &channelSubs{ch: ch}
			h.index[ch.Name] = cs
		}
		cs.add(c, sub)
		h.stats.subs.Add(1)
	}
	if rewind {
		if c.lagging {
			if from.Before(c.lagPos) {
				c.lagPos = from
				h.holdFrom(c, from)
			}
		} else {
			c.lagging, c.lagPos = true, from
			h.holdFrom(c, from)
			c.wakeCatchUp()
		}
		h.stats.resumes.Add(1)
	} else if resume {
		h.stats.resumes.Add(1)
	}
	if len(reset) > 0 {
		h.stats.resets.Add(1)
	}
	then(h.pos, reset)
	if stale != nil && len(chans) > 0 && stale() {
		h.gateLocked(c, h.pos)
		return h.pos, true
	}
	return broadcaster.Cursor{}, false
}

// catchUpFrames turns a page of the log, read after from, into the frames
// due on c, and moves c's catch-up position past it. bound is the hub's
// position when the page was read: every event up to it was in the log
// then. Only events up to bound, and up to c's first gate, are served (the
// hub applies control records first). When none of the page is, nothing
// lies between from and that limit: c's position moves there and, unless
// c is gated or the hub has moved on since, c goes back to live delivery
// (done). moved is false when c was rewound (or went live) since from was
// read: read again. h.mu is taken.
func (h *hub) catchUpFrames(c *conn, from, bound broadcaster.Cursor, evs []broadcaster.Event, logger *slog.Logger) (frames []outFrame, done, moved bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !c.lagging || c.lagPos != from {
		return nil, !c.lagging, false
	}
	limit := bound
	if len(c.gates) > 0 && c.gates[0].Before(limit) {
		limit = c.gates[0]
	}
	for len(evs) > 0 && limit.Before(evs[len(evs)-1].ID) {
		evs = evs[:len(evs)-1]
	}
	if len(evs) == 0 {
		if from.Before(limit) {
			c.lagPos = limit
			if c.hold != nil {
				c.hold.Move(limit)
			}
		}
		switch {
		case len(c.gates) > 0:
			// Held at a gate: ungate wakes the catch-up again.
			return nil, true, true
		case c.lagPos.Before(h.pos):
			// The hub moved on since the page was read.
			return nil, false, true
		}
		// Live again: the hub queues what comes after its position.
		c.lagging = false
		c.servedUpTo = broadcaster.Cursor{}
		for _, sub := range c.subs {
			sub.rewind = false
		}
		c.release()
		return nil, true, true
	}
	var match []string
	for i := range evs {
		ev := &evs[i]
		match = match[:0]
		seen := false
		for _, name := range ev.Channels {
			sub := c.subs[name]
			if sub == nil || !sub.delivers(ev) || slices.Contains(match, name) {
				continue
			}
			if sub.rewind && !c.servedUpTo.Before(ev.ID) {
				// Delivered before the rewind: the whole event was.
				seen = true
				break
			}
			match = append(match, name)
		}
		if seen || len(match) == 0 {
			continue
		}
		body, ok := encodeEvent(ev, logger)
		if !ok {
			continue
		}
		frames = append(frames, outFrame{data: eventEnvelope(match, body), event: true, commit: ev.Timestamp})
	}
	c.lagPos = evs[len(evs)-1].ID
	if c.hold != nil {
		c.hold.Move(c.lagPos)
	}
	return frames, false, true
}

// unsubscribe removes c from the named channels, then calls then under the
// lock: no event of those channels follows what then queues.
func (h *hub) unsubscribe(c *conn, names []string, then func(pos broadcaster.Cursor)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, name := range names {
		h.drop(c, name)
	}
	then(h.pos)
}

// revoke removes c from the channel and queues revoked, unless c no longer
// has it. It reports whether it did.
func (h *hub) revoke(c *conn, name, reason string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.drop(c, name) {
		return false
	}
	h.stats.revocations.Add(1)
	c.enqueue(outFrame{data: encode(revokedMsg{Type: "revoked", Channel: name, Reason: reason})})
	return true
}

// removeAll drops every subscription of a closed connection.
func (h *hub) removeAll(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range c.subs {
		h.drop(c, name)
	}
	c.release()
}

// drop removes one subscription; h.mu must be held.
func (h *hub) drop(c *conn, name string) bool {
	sub, ok := c.subs[name]
	if !ok {
		return false
	}
	if cs := h.index[name]; cs != nil {
		cs.remove(sub)
		if len(cs.list) == 0 {
			delete(h.index, name)
		}
	}
	delete(c.subs, name)
	h.stats.subs.Add(-1)
	return true
}

// subscription returns c's subscription to name, or nil.
func (h *hub) subscription(c *conn, name string) *acl.Channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sub := c.subs[name]; sub != nil {
		return sub.ch
	}
	return nil
}

// count returns how many channels c is subscribed to.
func (h *hub) count(c *conn) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(c.subs)
}

// channelsOf returns c's subscriptions.
func (h *hub) channelsOf(c *conn) []*acl.Channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*acl.Channel, 0, len(c.subs))
	for _, sub := range c.subs {
		out = append(out, sub.ch)
	}
	return out
}
