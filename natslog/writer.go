package natslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// maxInFlight bounds the events published and not yet acknowledged: past
// it Append waits for acknowledgements.
const maxInFlight = 4096

// publishTimeout is how long an acknowledgement may take before the
// publish counts as failed (and is made again).
const publishTimeout = 5 * time.Second

// Writer is the reader side's broadcaster.Log on a JetStream stream: it
// publishes every event in commit order without waiting for each
// acknowledgement (each publish says which sequence it expects the stream
// to end at, so the stream refuses anything out of order and any writer
// but this one), and lets the source confirm a transaction only once the
// stream has acknowledged all of its events. A publish that fails (a NATS
// server gone, no quorum) is made again, from what the stream really
// holds, until it succeeds; Append waits meanwhile. Make it with NewWriter
// and end it with Close. Its methods are safe for concurrent use.
type Writer struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	prefix  string
	log     *slog.Logger
	observe func(time.Duration)

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}

	mu   sync.Mutex // protects everything below
	cond *sync.Cond // on mu: room in the queue, or the end of a recovery
	// head is the newest event appended; lastSeq the stream sequence the
	// next publish expects to follow; ackedSeq the sequence of the newest
	// event the stream acknowledged (or held when the writer started).
	head     broadcaster.Cursor
	lastSeq  uint64
	ackedSeq uint64
	// lastID is the id of the event the next publish expects the stream
	// to end with: with the sequence, it chains the publishes in flight,
	// so that none is stored after one that was not.
	lastID string
	// queue holds what was published and not yet acknowledged, in order,
	// and the ends of the transactions among it.
	queue []*entry
	// confirmed is the end of the newest transaction whose events the
	// stream has all acknowledged.
	confirmed  broadcaster.LSN
	recovering bool
	fatal      error
	published  uint64
	failures   uint64
}

// entry is one published event, or (msg nil) the end of a transaction.
type entry struct {
	id     broadcaster.Cursor
	msg    *nats.Msg
	fut    jetstream.PubAckFuture
	pubErr error
	txEnd  broadcaster.LSN
	// result is the outcome of fut once taken from it (a future answers
	// once).
	result *pubResult
	sent   time.Time
}

type pubResult struct {
	ack *jetstream.PubAck
	err error
}

var _ broadcaster.Log = (*Writer)(nil)

// NewWriter returns a Writer that goes on after the stream's last event.
func NewWriter(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, o Options) (*Writer, error) {
	o = o.withDefaults()
	w := &Writer{js: js, stream: stream, prefix: o.SubjectPrefix, log: o.Logger, observe: o.ObservePublish, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	w.cond = sync.NewCond(&w.mu)
	seq, head, err := streamHead(ctx, stream)
	if err != nil {
		return nil, err
	}
	w.lastSeq, w.ackedSeq, w.head = seq, seq, head
	if !head.IsZero() {
		w.lastID = head.String()
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.acker()
	return w, nil
}

// Close stops the writer; what is not acknowledged yet stays unconfirmed
// (the source delivers it again to the next writer).
func (w *Writer) Close() {
	w.cancel()
	<-w.done
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

// streamHead returns the stream's last sequence and the cursor of its last
// event (zero for an empty stream).
func streamHead(ctx context.Context, s jetstream.Stream) (uint64, broadcaster.Cursor, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, broadcaster.Cursor{}, fmt.Errorf("natslog: stream info: %w", err)
	}
	last := info.State.LastSeq
	if last == 0 || info.State.Msgs == 0 {
		return last, broadcaster.Cursor{}, nil
	}
	msg, err := s.GetMsg(ctx, last)
	if err != nil {
		return 0, broadcaster.Cursor{}, fmt.Errorf("natslog: read the stream's last message (%d): %w", last, err)
	}
	c, err := cursorOf(msg.Header)
	if err != nil {
		return 0, broadcaster.Cursor{}, err
	}
	return last, c, nil
}

// Head implements broadcaster.Log: the newest event appended.
func (w *Writer) Head() broadcaster.Cursor {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.head
}

// Confirmable implements broadcaster.Log: the end of the newest
// transaction the stream has whole, or no bound when nothing waits for an
// acknowledgement.
func (w *Writer) Confirmable() broadcaster.LSN {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return broadcaster.MaxLSN
	}
	return w.confirmed
}

// WriterStats are a Writer's counters.
type WriterStats struct {
	// Published counts events published (again after a failure too);
	// Failures the publishes that failed; InFlight the events not yet
	// acknowledged.
	Published, Failures uint64
	InFlight            int
	// Recovering is true while failed publishes are being made again.
	Recovering bool
}

// Stats returns the writer's counters.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.queue {
		if e.msg != nil {
			n++
		}
	}
	return WriterStats{Published: w.published, Failures: w.failures, InFlight: n, Recovering: w.recovering}
}

// Append implements broadcaster.Sink: it publishes the batch's new events
// and returns without waiting for their acknowledgements (only for room
// among the unacknowledged ones). Events at or before the head are replays
// and are skipped.
func (w *Writer) Append(ctx context.Context, b broadcaster.Batch) error {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	added := false
	for i := range b.Events {
		ev := &b.Events[i]
		if !w.head.Before(ev.ID) {
			continue
		}
		if err := w.waitRoom(ctx); err != nil {
			return err
		}
		msg, err := Encode(w.prefix, ev)
		if err != nil {
			return err
		}
		e := &entry{id: ev.ID, msg: msg}
		w.publish(e)
		w.queue = append(w.queue, e)
		w.head = ev.ID
		added = true
	}
	if b.TxEnd > 0 {
		if err := w.waitRoom(ctx); err != nil {
			return err
		}
		w.queue = append(w.queue, &entry{txEnd: b.TxEnd})
		added = true
	}
	if added {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// waitRoom waits, with w.mu held, until the queue has room and no recovery
// runs; it returns the writer's fatal error or ctx's.
func (w *Writer) waitRoom(ctx context.Context) error {
	for w.fatal == nil && ctx.Err() == nil && w.ctx.Err() == nil && (w.recovering || len(w.queue) >= maxInFlight) {
		w.cond.Wait()
	}
	switch {
	case w.fatal != nil:
		return w.fatal
	case ctx.Err() != nil:
		return ctx.Err()
	case w.ctx.Err() != nil:
		return errors.New("natslog: writer closed")
	}
	return nil
}

// publish sends e, expecting the stream to end at lastSeq with lastID;
// w.mu is held.
func (w *Writer) publish(e *entry) {
	e.fut, e.pubErr, e.result = nil, nil, nil
	// A message published again carries the expectations of its first
	// publish in its headers: drop them.
	e.msg.Header.Del(jetstream.ExpectedLastSeqHeader)
	e.msg.Header.Del(jetstream.ExpectedLastMsgIDHeader)
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequence(w.lastSeq)}
	if w.lastID != "" {
		opts = append(opts, jetstream.WithExpectLastMsgID(w.lastID))
	}
	fut, err := w.js.PublishMsgAsync(e.msg, opts...)
	if err != nil {
		e.pubErr = err
		return
	}
	e.fut, e.sent = fut, time.Now()
	w.lastSeq++
	w.lastID = e.id.String()
	w.published++
}

// acker takes the acknowledgements in order, confirms the transactions
// they complete, and recovers from a failed publish.
func (w *Writer) acker() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.wake:
			case <-w.ctx.Done():
				return
			}
			w.mu.Lock()
		}
		e := w.queue[0]
		w.mu.Unlock()
		ack, err := w.await(e)
		if w.ctx.Err() != nil {
			return
		}
		if err != nil {
			w.recover(err)
			continue
		}
		if ack != nil && w.observe != nil {
			w.observe(time.Since(e.sent))
		}
		w.mu.Lock()
		if len(w.queue) > 0 && w.queue[0] == e {
			w.queue = w.queue[1:]
			if e.msg == nil {
				w.confirmed = e.txEnd
			} else if ack != nil {
				w.ackedSeq = ack.Sequence
			}
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// await returns e's publish result, waiting at most publishTimeout.
func (w *Writer) await(e *entry) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(w.ctx, publishTimeout)
	defer cancel()
	ack, err := w.awaitCtx(ctx, e)
	if err != nil && w.ctx.Err() == nil && ctx.Err() != nil {
		return nil, errors.New("no acknowledgement in time")
	}
	return ack, err
}

// awaitCtx returns e's publish result, or ctx's error.
func (w *Writer) awaitCtx(ctx context.Context, e *entry) (*jetstream.PubAck, error) {
	if e.msg == nil {
		return nil, nil
	}
	if e.fut == nil {
		return nil, e.pubErr
	}
	w.mu.Lock()
	r := e.result
	w.mu.Unlock()
	if r != nil {
		return r.ack, r.err
	}
	r = &pubResult{}
	select {
	case r.ack = <-e.fut.Ok():
	case r.err = <-e.fut.Err():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w.mu.Lock()
	e.result = r
	w.mu.Unlock()
	return r.ack, r.err
}

// ours checks that the messages the stream holds after the newest one
// acknowledged to this writer, up to seq, are this writer's next events in
// order, and returns how many there are; -1 when one is not (another
// writer appended: this one is fenced), or when the stream holds less than
// it acknowledged (it was purged or re-created).
func (w *Writer) ours(seq uint64, last broadcaster.Cursor) (int, error) {
	w.mu.Lock()
	acked := w.ackedSeq
	var next []broadcaster.Cursor
	for _, e := range w.queue {
		if e.msg != nil {
			next = append(next, e.id)
		}
	}
	w.mu.Unlock()
	if seq < acked || seq-acked > uint64(len(next)) {
		return -1, nil
	}
	n := int(seq - acked)
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(w.ctx, publishTimeout)
		msg, err := w.stream.GetMsg(ctx, acked+uint64(i)+1)
		cancel()
		if err != nil {
			return 0, err
		}
		c, err := cursorOf(msg.Header)
		if err != nil || c != next[i] {
			return -1, nil
		}
	}
	if n > 0 && last != next[n-1] {
		return -1, nil
	}
	return n, nil
}

// recover handles a failed publish: it lets the others in flight resolve,
// reads what the stream really ends at, drops what it holds already and
// publishes the rest again, until that works. When the stream ends at an
// event this writer never appended, another writer took over: the writer
// is fenced, and Append returns broadcaster.ErrFenced from then on.
func (w *Writer) recover(cause error) {
	w.mu.Lock()
	w.recovering = true
	w.failures++
	pending := append([]*entry(nil), w.queue...)
	w.mu.Unlock()
	w.log.Warn("natslog: publishing to the stream failed; publishing again from what it holds", "err", cause)
	// Let what is in flight resolve, for a while: a straggler that lands
	// after the stream was read again is refused anyway (it expects the
	// stream to end where it no longer does).
	settle, cancel := context.WithTimeout(w.ctx, publishTimeout)
	for _, e := range pending {
		if e.fut != nil && settle.Err() == nil {
			_, _ = w.awaitCtx(settle, e)
		}
	}
	cancel()
	for attempt := 0; w.ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 5*time.Second)):
			case <-w.ctx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(w.ctx, publishTimeout)
		seq, last, err := streamHead(ctx, w.stream)
		cancel()
		if err != nil {
			w.log.Warn("natslog: cannot read the stream's end; trying again", "err", err)
			continue
		}
		w.mu.Lock()
		if seq < w.ackedSeq {
			// The stream holds less than it acknowledged: it was
			// deleted and created again (or purged). What it had is gone
			// (the gateways tell their clients to reset); what is not
			// acknowledged yet goes into the new one.
			w.log.Error("natslog: the event stream lost events it had acknowledged (deleted and created again?); going on in it", "streamSeq", seq, "acknowledged", w.ackedSeq)
			w.ackedSeq = seq
		}
		w.mu.Unlock()
		stored, err := w.ours(seq, last)
		if err != nil {
			w.log.Warn("natslog: cannot read the stream's end; trying again", "err", err)
			continue
		}
		w.mu.Lock()
		if stored < 0 {
			w.fatal = fmt.Errorf("natslog: the stream (now at sequence %d, %s) was appended to by another writer: %w", seq, last, broadcaster.ErrFenced)
			w.recovering = false
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		// What the stream holds is done; the rest is published again.
		for len(w.queue) > 0 && (w.queue[0].msg == nil || stored > 0) {
			if e := w.queue[0]; e.msg == nil {
				w.confirmed = e.txEnd
			} else {
				stored--
			}
			w.queue = w.queue[1:]
		}
		w.ackedSeq = seq
		w.lastID = ""
		if !last.IsZero() {
			w.lastID = last.String()
		}
		w.lastSeq = seq
		for _, e := range w.queue {
			if e.msg != nil {
				w.publish(e)
			}
		}
		w.recovering = false
		w.cond.Broadcast()
		w.mu.Unlock()
		w.log.Info("natslog: publishing again", "streamSeq", seq, "streamLast", last)
		return
	}
}
