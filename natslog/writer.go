package natslog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	node string
	// ctx, cancel and done belong to the running acker (one per term).
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
	// epoch names this writer's term: its messages' ids end with it, and
	// a term Begin started opened with a marker carrying it. deposed is
	// closed when another writer's message turns up after this term's.
	epoch   string
	term    bool
	deposed chan struct{}
	// takeovers counts the terms that followed another node's.
	takeovers uint64
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

var (
	_ broadcaster.Log   = (*Writer)(nil)
	_ broadcaster.Terms = (*Writer)(nil)
)

// NewWriter returns a Writer that goes on after the stream's last event.
// A reader elected among several calls Begin before each term as leader
// (and End after it); a sole writer may append at once.
func NewWriter(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, o Options) (*Writer, error) {
	o = o.withDefaults()
	w := &Writer{js: js, stream: stream, prefix: o.SubjectPrefix, log: o.Logger, observe: o.ObservePublish, node: o.Name, wake: make(chan struct{}, 1)}
	w.cond = sync.NewCond(&w.mu)
	seq, head, _, err := streamHead(ctx, stream)
	if err != nil {
		return nil, err
	}
	w.lastSeq, w.ackedSeq, w.head = seq, seq, head
	w.epoch = newEpoch()
	w.deposed = make(chan struct{})
	w.startAcker()
	return w, nil
}

// startAcker starts the acknowledgement loop of a term; w.mu is not held.
func (w *Writer) startAcker() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w.mu.Lock()
	w.ctx, w.cancel, w.done = ctx, cancel, done
	w.mu.Unlock()
	go w.acker(ctx, done)
}

// stopAcker stops the running acknowledgement loop and wakes whoever
// waits in Append.
func (w *Writer) stopAcker() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

// newEpoch returns a random name for a writer's term.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrNotLeader is what Append returns between terms (after End, or
// before Begin when the last term ended).
var ErrNotLeader = errors.New("natslog: this reader is not the leader")

// Begin starts a term as the stream's only writer: it drops what the last
// term left unacknowledged, reads where the stream ends, and publishes a
// marker that must follow the stream's last message exactly. Once the
// marker is in, every publish of an earlier writer (which expects the
// stream to end with its own message) is refused: they are fenced. Appends
// go on after the stream's last event. Begin retries until it succeeds or
// ctx ends.
func (w *Writer) Begin(ctx context.Context) error {
	w.stopAcker()
	w.mu.Lock()
	w.queue, w.fatal, w.recovering, w.confirmed = nil, nil, false, 0
	w.epoch = newEpoch()
	w.term = true
	w.deposed = make(chan struct{})
	epoch := w.epoch
	w.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, 2*time.Second)):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		seq, head, _, err := streamHead(pctx, w.stream)
		from := ""
		if err == nil {
			// Whose term this one follows (for the takeover count).
			var prev *jetstream.RawStreamMsg
			prev, err = w.stream.GetLastMsgForSubject(pctx, w.prefix+"."+leaderToken)
			switch {
			case err == nil:
				from = prev.Header.Get(HeaderNode)
			case errors.Is(err, jetstream.ErrMsgNotFound):
				err = nil
			}
		}
		if err == nil {
			var last uint64
			last, err = w.fence(pctx, seq, head, epoch)
			if err == nil {
				cancel()
				w.mu.Lock()
				w.lastSeq, w.ackedSeq, w.head = last, last, head
				if from != "" && from != w.node {
					w.takeovers++
				}
				w.mu.Unlock()
				w.startAcker()
				w.log.Info("natslog: leading the stream", "streamSeq", last, "head", head, "epoch", epoch)
				return nil
			}
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.log.Warn("natslog: cannot take the stream over yet; trying again", "err", err)
	}
}

// fenceFill is how many fence messages follow a leader marker: as many as
// a writer may have in flight. Every publish expects the stream to end at
// the sequence its predecessor got, so a deposed writer's publishes still
// in flight (a paused process's buffer, a pipeline cut by a lost quorum)
// expect sequences at most maxInFlight past the end it knew; once the
// stream is past all of them, none can land. (JetStream checks an
// expected last sequence before a clustered write is proposed, which is
// what makes this hold under pipelining; an expected last message id is
// checked only as each replica applies the write, too late.)
const fenceFill = maxInFlight

// fence publishes the marker of term epoch after the stream's sequence
// seq (whose last event is head), then fenceFill fence messages, each
// expecting the one before: when all are in, nothing came between them,
// and no earlier writer's publish can land after them. It returns the
// sequence of the last.
func (w *Writer) fence(ctx context.Context, seq uint64, head broadcaster.Cursor, epoch string) (uint64, error) {
	ack, err := w.js.PublishMsg(ctx, leaderMarker(w.prefix, head, epoch, w.node), jetstream.WithExpectLastSequence(seq))
	if err != nil {
		return 0, fmt.Errorf("publish the leader marker: %w", err)
	}
	futs := make([]jetstream.PubAckFuture, 0, fenceFill)
	for i := range uint64(fenceFill) {
		f, err := w.js.PublishMsgAsync(fenceMsg(w.prefix, head, epoch), jetstream.WithExpectLastSequence(ack.Sequence+i))
		if err != nil {
			return 0, fmt.Errorf("publish the fence: %w", err)
		}
		futs = append(futs, f)
	}
	last := ack.Sequence
	for _, f := range futs {
		select {
		case a := <-f.Ok():
			last = a.Sequence
		case err := <-f.Err():
			return 0, fmt.Errorf("publish the fence: %w", err)
		case <-ctx.Done():
			return 0, fmt.Errorf("publish the fence: %w", ctx.Err())
		}
	}
	return last, nil
}

// End ends the term: what is not acknowledged stays unconfirmed (the next
// leader delivers it again), and Append returns ErrNotLeader until the
// next Begin.
func (w *Writer) End() {
	w.stopAcker()
	w.mu.Lock()
	w.queue = nil
	if w.fatal == nil {
		w.fatal = ErrNotLeader
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// Deposed is closed once this term's writer finds another writer's
// message in the stream after its own: it was fenced and must step down.
func (w *Writer) Deposed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deposed
}

// Takeovers counts the terms Begin started after another node's term.
func (w *Writer) Takeovers() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.takeovers
}

// Close stops the writer; what is not acknowledged yet stays unconfirmed
// (the source delivers it again to the next writer).
func (w *Writer) Close() {
	w.stopAcker()
	w.mu.Lock()
	if w.fatal == nil {
		w.fatal = errors.New("natslog: writer closed")
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// fenced records, with w.mu held, that another writer took the stream.
func (w *Writer) fenced(err error) {
	w.fatal = err
	w.recovering = false
	select {
	case <-w.deposed:
	default:
		close(w.deposed)
	}
	w.cond.Broadcast()
}

// streamHead returns the stream's last sequence, the cursor of its last
// message (a marker carries the cursor of the event before it) and that
// message's id; zeros for an empty stream.
func streamHead(ctx context.Context, s jetstream.Stream) (uint64, broadcaster.Cursor, string, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, broadcaster.Cursor{}, "", fmt.Errorf("natslog: stream info: %w", err)
	}
	last := info.State.LastSeq
	if last == 0 || info.State.Msgs == 0 {
		return last, broadcaster.Cursor{}, "", nil
	}
	msg, err := s.GetMsg(ctx, last)
	if err != nil {
		return 0, broadcaster.Cursor{}, "", fmt.Errorf("natslog: read the stream's last message (%d): %w", last, err)
	}
	c, err := cursorOf(msg.Header)
	if err != nil {
		return 0, broadcaster.Cursor{}, "", err
	}
	return last, c, msg.Header.Get(nats.MsgIdHdr), nil
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
		// The id names the term too: a message another term published
		// for the same event is not taken for this one's.
		msg.Header.Set(nats.MsgIdHdr, ev.ID.String()+"."+w.epoch)
		msg.Header.Set(HeaderWriter, w.epoch)
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

// publish sends e, expecting the stream to end at lastSeq (the sequence
// its predecessor got); w.mu is held.
func (w *Writer) publish(e *entry) {
	e.fut, e.pubErr, e.result = nil, nil, nil
	// A message published again carries the expectation of its first
	// publish in its headers: drop it.
	e.msg.Header.Del(jetstream.ExpectedLastSeqHeader)
	fut, err := w.js.PublishMsgAsync(e.msg, jetstream.WithExpectLastSequence(w.lastSeq))
	if err != nil {
		e.pubErr = err
		return
	}
	e.fut, e.sent = fut, time.Now()
	w.lastSeq++
	w.published++
}

// acker takes the acknowledgements in order, confirms the transactions
// they complete, and recovers from a failed publish. While idle in a term
// Begin started, it looks every second for another writer's marker.
func (w *Writer) acker(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		w.mu.Lock()
		for len(w.queue) == 0 {
			term := w.term && w.fatal == nil
			w.mu.Unlock()
			select {
			case <-w.wake:
			case <-tick.C:
				if term {
					w.checkMarker(ctx)
				}
			case <-ctx.Done():
				return
			}
			w.mu.Lock()
		}
		e := w.queue[0]
		w.mu.Unlock()
		ack, err := w.await(ctx, e)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.recover(ctx, err)
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

// checkMarker fences the writer when the newest leader marker in the
// stream is not its own term's: another reader took over.
func (w *Writer) checkMarker(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	msg, err := w.stream.GetLastMsgForSubject(cctx, w.prefix+"."+leaderToken)
	if err != nil {
		return // none, or unreachable: the next publish finds out
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if other := msg.Header.Get(HeaderWriter); other != w.epoch && w.fatal == nil {
		w.log.Warn("natslog: another reader took the stream over", "leader", msg.Header.Get(HeaderNode), "epoch", other)
		w.fenced(fmt.Errorf("natslog: another reader (%s) took the stream over: %w", msg.Header.Get(HeaderNode), broadcaster.ErrFenced))
	}
}

// await returns e's publish result, waiting at most publishTimeout.
func (w *Writer) await(term context.Context, e *entry) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(term, publishTimeout)
	defer cancel()
	ack, err := w.awaitCtx(ctx, e)
	if err != nil && term.Err() == nil && ctx.Err() != nil {
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
func (w *Writer) ours(term context.Context, seq uint64, last broadcaster.Cursor) (int, error) {
	w.mu.Lock()
	acked, epoch := w.ackedSeq, w.epoch
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
		ctx, cancel := context.WithTimeout(term, publishTimeout)
		msg, err := w.stream.GetMsg(ctx, acked+uint64(i)+1)
		cancel()
		if err != nil {
			return 0, err
		}
		c, err := cursorOf(msg.Header)
		if err != nil || c != next[i] || msg.Header.Get(HeaderWriter) != epoch {
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
func (w *Writer) recover(term context.Context, cause error) {
	w.mu.Lock()
	w.recovering = true
	w.failures++
	pending := append([]*entry(nil), w.queue...)
	w.mu.Unlock()
	w.log.Warn("natslog: publishing to the stream failed; publishing again from what it holds", "err", cause)
	// Let what is in flight resolve, for a while: a straggler that lands
	// after the stream was read again is refused anyway (it expects the
	// stream to end where it no longer does).
	settle, cancel := context.WithTimeout(term, publishTimeout)
	for _, e := range pending {
		if e.fut != nil && settle.Err() == nil {
			_, _ = w.awaitCtx(settle, e)
		}
	}
	cancel()
	for attempt := 0; term.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 5*time.Second)):
			case <-term.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(term, publishTimeout)
		seq, last, _, err := streamHead(ctx, w.stream)
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
		stored, err := w.ours(term, seq, last)
		if err != nil {
			w.log.Warn("natslog: cannot read the stream's end; trying again", "err", err)
			continue
		}
		w.mu.Lock()
		if stored < 0 {
			w.fenced(fmt.Errorf("natslog: the stream (now at sequence %d, %s) was appended to by another writer: %w", seq, last, broadcaster.ErrFenced))
			w.mu.Unlock()
			w.log.Warn("natslog: another writer appended to the stream; this one is fenced", "streamSeq", seq, "streamLast", last)
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
