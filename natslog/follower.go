package natslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
)

// followBatch bounds the events a Follower appends to its cache at once.
const followBatch = 512

// Follower is a gateway's view of the stream: it reads the stream in order
// into an in-memory cache (an eventlog.Memory, which the gateway fans out
// from and resumes recent cursors from), and serves reads older than the
// cache from the stream itself. It implements broadcaster.LogReader. Make
// it with NewFollower, then Run it.
type Follower struct {
	*eventlog.Memory // the cache
	stream           jetstream.Stream
	prefix           string
	log              *slog.Logger

	// OnReset, when set before Run, is called when the stream turns out to
	// have been deleted and created again: no cursor up to floor can be
	// resumed (the new stream does not hold what came after it), and the
	// gateway tells its clients to reset.
	OnReset func(floor broadcaster.Cursor)

	mu sync.Mutex // protects below
	// seq is the stream sequence of the newest message read into the
	// cache; last the stream's last sequence when last seen.
	seq, last uint64
	err       error
	following bool
	// created is when the stream was created; resetFloor and resetAt,
	// after a re-created stream, the newest cursor and the time before
	// which nothing can be resumed.
	created    time.Time
	resetFloor broadcaster.Cursor
	resetAt    time.Time
}

var _ broadcaster.LogReader = (*Follower)(nil)

// NewFollower returns a Follower whose cache will hold the stream's newest
// cacheEvents events (and everything after).
func NewFollower(stream jetstream.Stream, cacheEvents int, o Options) *Follower {
	o = o.withDefaults()
	return &Follower{
		Memory: eventlog.NewMemory(eventlog.Options{MaxEvents: cacheEvents, MaxAge: 100 * 365 * 24 * time.Hour}),
		stream: stream,
		prefix: o.SubjectPrefix,
		log:    o.Logger,
	}
}

// FollowerStatus is where a Follower is in the stream.
type FollowerStatus struct {
	// Following is true while it reads the stream.
	Following bool
	// Seq is the stream sequence of the newest event it has; Last the
	// stream's last sequence when last seen; Lag the difference.
	Seq, Last, Lag uint64
	// Err is the last error reading the stream, while not following.
	Err string
}

// Status returns where the follower is.
func (f *Follower) Status() FollowerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FollowerStatus{Following: f.following, Seq: f.seq, Last: f.last}
	if f.last > f.seq {
		st.Lag = f.last - f.seq
	}
	if f.err != nil && !f.following {
		st.Err = f.err.Error()
	}
	return st
}

// Run reads the stream into the cache until ctx ends, starting with its
// newest cache-full of events; it reconnects by itself and returns only
// ctx's error.
func (f *Follower) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := f.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.mu.Lock()
		f.following, f.err = false, err
		f.mu.Unlock()
		f.log.Warn("natslog: reading the stream failed; trying again", "err", err)
		select {
		case <-time.After(min(time.Duration(attempt+1)*250*time.Millisecond, 5*time.Second)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// follow reads from where the cache ends (or, the first time, a cache-full
// before the stream's end) until it fails.
func (f *Follower) follow(ctx context.Context) error {
	info, err := f.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	f.mu.Lock()
	recreated := !f.created.IsZero() && !info.Created.Equal(f.created)
	f.created = info.Created
	if recreated {
		f.seq = 0
	}
	start := f.seq + 1
	f.last = info.State.LastSeq
	f.mu.Unlock()
	if recreated {
		f.reset()
	}
	if start == 1 || recreated {
		// The newest gap in the stream: no cursor before it can resume,
		// even one the stream still holds events after.
		msg, err := f.stream.GetLastMsgForSubject(ctx, f.prefix+"."+gapToken)
		switch {
		case err == nil:
			if ev, err := Decode(msg.Data); err == nil {
				f.mu.Lock()
				if f.resetFloor.Before(ev.ID) {
					f.resetFloor, f.resetAt = ev.ID, ev.Timestamp
				}
				f.mu.Unlock()
			}
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return fmt.Errorf("look for gaps: %w", err)
		}
	}
	if start == 1 {
		if err := f.Prime(ctx); err != nil {
			return err
		}
	}
	if start == 1 {
		start = f.cacheStart(ctx, info)
	}
	cons, err := f.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		// nats.go retries creating an ordered consumer for ever by
		// default, inside Messages and blind to ctx: a gateway then
		// waited, not following and not saying why. A few attempts, then
		// the error, logged, and Run's own retry.
		MaxResetAttempts: consumerAttempts,
	})
	if err != nil {
		return fmt.Errorf("consumer from %d: %w", start, err)
	}
	// A missed idle heartbeat makes the iterator ask the server again: with
	// 1 s heartbeats a pull the server dropped costs 2 s, not the default's
	// 10 s.
	it, err := cons.Messages(jetstream.PullMaxMessages(followBatch), jetstream.PullHeartbeat(followHeartbeat))
	if err != nil {
		return fmt.Errorf("consume from %d: %w", start, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	// A stream deleted (and maybe created again) does not always end the
	// consumer: watch for it.
	watchCtx, endWatch := context.WithCancel(ctx)
	defer endWatch()
	gone := make(chan error, 1)
	go func() {
		t := time.NewTicker(watchInterval)
		defer t.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-t.C:
			}
			info, err := f.stream.Info(watchCtx)
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound):
				gone <- errors.New("the stream was deleted")
			case err == nil && !info.Created.Equal(f.createdAt()):
				gone <- errors.New("the stream was created again")
			default:
				continue
			}
			it.Stop()
			return
		}
	}()
	// The iterator is read on a goroutine of its own, ahead of decoding
	// and of the cache (whose Append waits for the hub when the cache is
	// full): the iterator's buffer, which drops what overflows it, is
	// emptied as fast as messages arrive.
	msgs := make(chan jetstream.Msg, 4*followBatch)
	readErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			msg, err := it.Next()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- msg:
			case <-watchCtx.Done():
				return
			}
		}
	}()
	f.mu.Lock()
	f.following, f.err = true, nil
	f.mu.Unlock()
	batch := make([]broadcaster.Event, 0, followBatch)
	for {
		msg, ok := <-msgs
		if !ok {
			select {
			case why := <-gone:
				return why
			default:
			}
			select {
			case err := <-readErr:
				return fmt.Errorf("read the stream: %w", err)
			default:
				return ctx.Err()
			}
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		if isMarker(f.prefix, msg.Subject()) {
			// A reader took the stream over: not an event.
			f.mu.Lock()
			f.seq = meta.Sequence.Stream
			f.last = max(f.last, meta.Sequence.Stream+meta.NumPending)
			f.mu.Unlock()
			if len(msgs) == 0 && len(batch) > 0 {
				if err := f.Memory.Append(ctx, broadcaster.Batch{Events: batch}); err != nil {
					return err
				}
				batch = batch[:0]
			}
			continue
		}
		ev, err := Decode(msg.Data())
		switch {
		case err != nil:
			// Not ours, or damaged: skipped, never delivered partly.
			f.log.Error("natslog: a stream message is not an event; skipped", "seq", meta.Sequence.Stream, "err", err)
		case ev.Gap:
			// The reader skipped changes: what came before is
			// behind a hole.
			if err := f.Memory.Append(ctx, broadcaster.Batch{Events: batch}); err != nil {
				return err
			}
			batch = batch[:0]
			f.gap(ev.ID)
		default:
			batch = append(batch, ev)
		}
		f.mu.Lock()
		f.seq = meta.Sequence.Stream
		f.last = max(f.last, meta.Sequence.Stream+meta.NumPending)
		f.mu.Unlock()
		if len(msgs) == 0 || len(batch) == followBatch {
			if err := f.Memory.Append(ctx, broadcaster.Batch{Events: batch}); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
}

// consumerAttempts bounds nats.go's attempts to create (or re-create) an
// ordered consumer.
const consumerAttempts = 3

// followHeartbeat is the idle heartbeat a Follower's consumer asks for.
const followHeartbeat = time.Second

// Prime tells the cache how far the stream goes now: until it has loaded
// that far, a client's cursor ahead of it is one it is getting to, not one
// from elsewhere. It also starts the cache where it will load from (a
// cache-full before the stream's end): a gateway made after Prime starts
// there, not at the stream's beginning. Call it before serving clients;
// Run calls it too.
func (f *Follower) Prime(ctx context.Context) error {
	_, last, _, err := streamHead(ctx, f.stream)
	if err != nil {
		return err
	}
	f.Memory.SetHorizon(last.LSN)
	if f.Memory.Head().IsZero() {
		info, err := f.stream.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream info: %w", err)
		}
		f.cacheStart(ctx, info)
	}
	return nil
}

// cacheStart returns the sequence the cache loads from, a cache-full
// before the stream's end, and raises the cache's floor to the message
// before it: cursors up to there are served from the stream.
func (f *Follower) cacheStart(ctx context.Context, info *jetstream.StreamInfo) uint64 {
	start := info.State.FirstSeq
	if start == 0 {
		start = 1
	}
	if n := uint64(f.opts().MaxEvents); info.State.LastSeq >= start+n {
		start = info.State.LastSeq - n + 1
	}
	if start > 1 {
		msg, err := f.stream.GetMsg(ctx, start-1)
		if err == nil {
			if c, err := cursorOf(msg.Header); err == nil {
				f.Memory.Raise(c, msg.Time)
			}
		}
	}
	return start
}

// watchInterval is how often a following Follower checks that its stream
// is still the one it follows.
const watchInterval = time.Second

func (f *Follower) createdAt() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created
}

// reset handles a stream created again: nothing up to the cache's head can
// be resumed any more.
func (f *Follower) reset() {
	f.log.Error("natslog: the event stream was deleted and created again; clients are told to reset", "floor", f.Memory.Head())
	f.gap(f.Memory.Head())
}

// gap makes every cursor before floor unresumable, here and in the
// stream, and tells the gateway.
func (f *Follower) gap(floor broadcaster.Cursor) {
	now := time.Now()
	f.Memory.Raise(floor, now)
	f.mu.Lock()
	if f.resetFloor.Before(floor) {
		f.resetFloor, f.resetAt = floor, now
	}
	f.mu.Unlock()
	if f.OnReset != nil {
		f.OnReset(floor)
	}
}

// lostBefore reports whether c, or t, lies before a re-creation of the
// stream: nothing after it can be resumed.
func (f *Follower) lostBefore(c broadcaster.Cursor, t time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resetAt.IsZero() {
		return false
	}
	if t.IsZero() {
		return c.Before(f.resetFloor)
	}
	return !f.resetAt.Before(t)
}

// opts returns the cache's options.
func (f *Follower) opts() eventlog.Options { return f.Memory.Options() }

// Since implements broadcaster.LogReader: from the cache, or from the
// stream for a cursor older than the cache.
func (f *Follower) Since(c broadcaster.Cursor, limit int) ([]broadcaster.Event, bool, error) {
	evs, more, err := f.Memory.Since(c, limit)
	if !errors.Is(err, broadcaster.ErrCursorExpired) || errors.Is(err, broadcaster.ErrCursorAhead) || f.lostBefore(c, time.Time{}) {
		return evs, more, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.streamSince(ctx, c, limit)
}

// SinceTime implements broadcaster.LogReader, from the stream when t is
// older than the cache.
func (f *Follower) SinceTime(t time.Time) (broadcaster.Cursor, error) {
	c, err := f.Memory.SinceTime(t)
	if !errors.Is(err, broadcaster.ErrCursorExpired) || f.lostBefore(broadcaster.Cursor{}, t) {
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.streamSinceTime(ctx, t)
}

// Hold implements broadcaster.LogReader: a cursor older than the cache
// needs no hold (the stream keeps its events).
func (f *Follower) Hold(c broadcaster.Cursor) (broadcaster.Hold, error) {
	h, err := f.Memory.Hold(c)
	if errors.Is(err, broadcaster.ErrCursorExpired) {
		return noHold{}, nil
	}
	return h, err
}

type noHold struct{}

func (noHold) Move(broadcaster.Cursor) {}
func (noHold) Release()                {}

// bounds returns the stream's first and last sequences.
func (f *Follower) bounds(ctx context.Context) (first, last uint64, err error) {
	info, err := f.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("natslog: stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// search returns the first sequence in [lo, hi] whose message is not
// before, by less(msg), and hi+1 when there is none: a binary search, one
// read of a message per step.
func (f *Follower) search(ctx context.Context, lo, hi uint64, before func(c broadcaster.Cursor, at time.Time) bool) (uint64, error) {
	end := hi + 1
	hi = end
	for lo < hi {
		mid := lo + (hi-lo)/2
		msg, err := f.stream.GetMsg(ctx, mid)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Deleted meanwhile (limits): treat as before everything.
			lo = mid + 1
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("natslog: read message %d: %w", mid, err)
		}
		c, err := cursorOf(msg.Header)
		if err != nil {
			return 0, err
		}
		if before(c, msg.Time) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// firstCursor returns the cursor of the stream's first message.
func (f *Follower) firstCursor(ctx context.Context, first uint64) (broadcaster.Cursor, error) {
	msg, err := f.stream.GetMsg(ctx, first)
	if err != nil {
		return broadcaster.Cursor{}, fmt.Errorf("natslog: read the stream's first message: %w", err)
	}
	return cursorOf(msg.Header)
}

// streamSince reads up to limit events after c from the stream. A cursor
// before the stream's first event is expired: the stream may not hold
// everything after it (it was trimmed, or re-created).
func (f *Follower) streamSince(ctx context.Context, c broadcaster.Cursor, limit int) ([]broadcaster.Event, bool, error) {
	first, last, err := f.bounds(ctx)
	if err != nil {
		return nil, false, err
	}
	if last == 0 || first > last {
		return nil, false, broadcaster.ErrCursorExpired
	}
	fc, err := f.firstCursor(ctx, first)
	if err != nil {
		return nil, false, err
	}
	if c.Before(fc) {
		return nil, false, broadcaster.ErrCursorExpired
	}
	seq, err := f.search(ctx, first, last, func(m broadcaster.Cursor, _ time.Time) bool { return !c.Before(m) })
	if err != nil {
		return nil, false, err
	}
	return f.read(ctx, seq, last, limit)
}

// streamSinceTime returns the cursor to resume from to get the events
// committed at or after t, from the stream.
func (f *Follower) streamSinceTime(ctx context.Context, t time.Time) (broadcaster.Cursor, error) {
	first, last, err := f.bounds(ctx)
	if err != nil {
		return broadcaster.Cursor{}, err
	}
	if last == 0 || first > last || first == 0 {
		return broadcaster.Cursor{}, broadcaster.ErrCursorExpired
	}
	// The events' commit times decide, not the stream's (when a message
	// was stored): a binary search over them.
	at, ok, err := f.eventTime(ctx, first, last)
	if err != nil || !ok || !at.Before(t) {
		// Events committed at t may have been before the stream's first.
		return broadcaster.Cursor{}, broadcaster.ErrCursorExpired
	}
	lo, hi := first, last+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		at, ok, err := f.eventTime(ctx, mid, last)
		if err != nil {
			return broadcaster.Cursor{}, err
		}
		if ok && at.Before(t) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// The message before: an event committed before t, or a marker,
	// which carries the cursor of the event before it.
	msg, err := f.stream.GetMsg(ctx, lo-1)
	if err != nil {
		return broadcaster.Cursor{}, broadcaster.ErrCursorExpired
	}
	return cursorOf(msg.Header)
}

// eventTime returns the commit time of the first event stored at or after
// seq (up to last), skipping leader markers; ok is false when there is
// none.
func (f *Follower) eventTime(ctx context.Context, seq, last uint64) (time.Time, bool, error) {
	for ; seq <= last; seq++ {
		msg, err := f.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return time.Time{}, false, fmt.Errorf("natslog: read message %d: %w", seq, err)
		}
		if isMarker(f.prefix, msg.Subject) {
			continue
		}
		ev, err := Decode(msg.Data)
		if err != nil {
			continue
		}
		return ev.Timestamp, true, nil
	}
	return time.Time{}, false, nil
}

// read returns up to limit events stored from sequence from to last, and
// whether more follow.
func (f *Follower) read(ctx context.Context, from, last uint64, limit int) ([]broadcaster.Event, bool, error) {
	if from > last {
		return nil, false, nil
	}
	n := last - from + 1
	if limit > 0 && n > uint64(limit) {
		n = uint64(limit)
	}
	var out []broadcaster.Event
	if n <= 4 {
		for seq := from; seq < from+n; seq++ {
			msg, err := f.stream.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return nil, false, fmt.Errorf("natslog: read message %d: %w", seq, err)
			}
			if ev, err := Decode(msg.Data); err == nil {
				out = append(out, ev)
			}
		}
		return out, from+n <= last, nil
	}
	cons, err := f.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:    jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:      from,
		MaxResetAttempts: consumerAttempts,
	})
	if err != nil {
		return nil, false, fmt.Errorf("natslog: consumer from %d: %w", from, err)
	}
	batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return nil, false, fmt.Errorf("natslog: fetch from %d: %w", from, err)
	}
	upTo := from - 1
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		upTo = meta.Sequence.Stream
		if ev, err := Decode(msg.Data()); err == nil {
			out = append(out, ev)
		}
		if upTo >= last {
			break
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, false, fmt.Errorf("natslog: fetch from %d: %w", from, err)
	}
	return out, upTo < last, nil
}
