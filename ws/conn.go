package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
)

// Close codes of the contract beyond those coder/websocket names.
const (
	statusUnauthenticated websocket.StatusCode = 4001
	statusRateLimited     websocket.StatusCode = 4008
	statusSlowConsumer    websocket.StatusCode = 4009
	statusReplaced        websocket.StatusCode = 4010
)

// outFrame is one queued frame.
type outFrame struct {
	data []byte
	// event marks an event frame, counted in Stats.EventsDelivered.
	event bool
	// commit is the event's commit time, for Options.ObserveDelivery.
	commit time.Time
}

// closeInfo says how a connection ends.
type closeInfo struct {
	code   websocket.StatusCode
	reason string
	// drain writes what is already queued before the close frame.
	drain bool
	// abrupt drops the socket without a close frame: the peer is gone.
	abrupt bool
}

// conn is one client connection.
type conn struct {
	s  *Server
	ws *websocket.Conn
	// nc is the socket under ws, closed directly when the server gives up
	// on a graceful end.
	nc net.Conn
	// fw is the socket's frameWriter: the writer corks it to send what it
	// finds queued in one system call.
	fw      *frameWriter
	id      string
	ip      string
	started time.Time
	// ctx is the server's hardCtx: reads, writes and access checks stop
	// when it ends.
	ctx context.Context

	// qmu protects the send queue, writing and catchUpDue. An idle
	// connection has no writer goroutine: queueing a frame (or a
	// catch-up) starts one, which exits once the queue is empty. That and
	// the timers below (instead of a writer and a pinger waiting on
	// channels) keep an idle connection at one goroutine, its reader.
	qmu sync.Mutex
	// queue[head:] holds the frames to write: at most queueMax for the
	// hub's events, replyMax with replies and notices (enqueue).
	queue    []outFrame
	head     int
	queueMax int
	replyMax int
	// writing says a writer goroutine runs (or ran and finished the
	// connection: then it stays true, and no other starts).
	writing bool
	// catchUpDue asks the writer to catch up from the log.
	catchUpDue bool
	// noWriter (tests of the hub only) keeps frames queued for the test
	// to take.
	noWriter bool
	// done is closed when the writer has closed the connection.
	done chan struct{}

	failOnce sync.Once
	failed   atomic.Bool
	// why is written once by fail before failed is set; the writer then
	// closes the connection as it says.
	why closeInfo
	// sent counts the frames written.
	sent atomic.Uint64

	// tmu protects the timers. authT (authentication) is dropped once the
	// connection is authenticated; tokenT fires token_expiring, then is
	// re-armed for the expiry itself; pingT pings.
	tmu                  sync.Mutex
	authT, tokenT, pingT *time.Timer
	// tokenExp is the expiry tokenT is armed for.
	tokenExp  time.Time
	timersOff bool

	authed atomic.Bool
	mu     sync.Mutex // protects claims
	claims *acl.Claims

	// Protected by hub.mu: the subscriptions, and the hub's per-event
	// scratch (mark: the last event that touched c; match: its channels).
	subs  map[string]*subscription
	mark  uint64
	match []string
	// Also protected by hub.mu: lagging says the hub does not queue c's
	// events, because c's queue was full, a `since` rewound it, or an
	// access re-check holds it (gates); the writer then reads them from
	// the log after lagPos (catchUp), which the log keeps for it (hold).
	// gates are the positions, in order, of the control records (or
	// subscribes) whose re-checks of c's subscriptions are running: nothing
	// after gates[0] may reach c before they end. servedUpTo: how far the
	// subscriptions marked rewind had been served when the rewind began.
	lagging bool
	gates   []broadcaster.Cursor
	hold    broadcaster.Hold
	// wakePending: the hub queued events on c and will start its writer
	// at the end of the batch.
	wakePending bool
	lagPos      broadcaster.Cursor
	servedUpTo  broadcaster.Cursor
	// writeStart is when the write in progress began (Unix ns), 0 when
	// none: the stall sweeper closes a connection stuck in one.
	writeStart atomic.Int64

	// Owned by the reader (the handler goroutine).
	msgLimit  *msgLimiter
	badFrames *rate.Limiter
	// refusals is the budget of refused subscriptions (newRefusalLimiter),
	// made at the first refusal.
	refusals   *rate.Limiter
	registered bool
}

func newConn(s *Server, wsc *websocket.Conn, ip string) *conn {
	return &conn{
		s:         s,
		ws:        wsc,
		id:        newConnID(),
		ip:        ip,
		started:   s.now(),
		ctx:       s.hardCtx,
		queueMax:  s.limits.SendQueue,
		replyMax:  s.limits.SendQueue + s.limits.MaxSubscriptionsPerConn + 2,
		done:      make(chan struct{}),
		subs:      make(map[string]*subscription),
		msgLimit:  newMsgLimiter(s.limits.MaxMessagesPerSecond),
		badFrames: newBadFrameLimiter(),
	}
}

// serve runs the connection until it ends: it arms the authentication
// and ping timers, authenticates (with claims from the upgrade request, or
// the first frame), reads requests, then waits for the writer to close the
// connection and unregisters. It runs on the connection's one long-lived
// goroutine.
func (c *conn) serve(claims *acl.Claims) {
	c.ws.SetReadLimit(int64(c.s.limits.MaxFrameBytes))
	c.tmu.Lock()
	c.authT = time.AfterFunc(c.s.opts.AuthTimeout, c.authTimeout)
	c.pingT = time.AfterFunc(c.s.opts.HeartbeatInterval, c.ping)
	c.tmu.Unlock()
	if claims != nil {
		onFreshStack(func() { c.start(claims, nil) })
	}
	err := c.readLoop()
	c.fail(endedBy(err))
	<-c.done
	c.stopTimers()
	_ = c.ws.CloseNow() // a no-op unless the writer could not close
	c.s.dropConn(c)
}

// endedBy says how a connection whose read failed with err ended, when the
// server did not end it.
func endedBy(err error) closeInfo {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		// coder/websocket has sent the close frame; Close completes the
		// handshake.
		return closeInfo{code: websocket.StatusMessageTooBig, reason: "frame too large"}
	}
	if code := websocket.CloseStatus(err); code != -1 {
		return closeInfo{code: code, reason: "closed by the client", abrupt: true}
	}
	return closeInfo{code: websocket.StatusAbnormalClosure, reason: "connection lost", abrupt: true}
}

// fail asks the writer to close the connection; it never blocks. Only the
// first call counts; it reports whether it was this one.
func (c *conn) fail(why closeInfo) bool {
	did := false
	c.failOnce.Do(func() {
		c.why = why
		c.failed.Store(true)
		did = true
	})
	if did {
		c.qmu.Lock()
		c.kickLocked()
		c.qmu.Unlock()
	}
	return did
}

// kickLocked starts the writer unless one runs; c.qmu must be held.
func (c *conn) kickLocked() {
	if c.writing || c.noWriter {
		return
	}
	c.writing = true
	go c.writeLoop()
}

// push queues f and, when kick, starts the writer; full reports a queue
// holding limit frames already (f is then not queued). A failed connection
// takes nothing and is never full.
func (c *conn) push(f outFrame, kick bool, limit int) (full bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.failed.Load() {
		return false
	}
	if len(c.queue)-c.head >= limit {
		return true
	}
	if c.head > 0 && len(c.queue) == cap(c.queue) {
		// Reuse the taken front rather than grow: a connection whose
		// queue never quite empties would otherwise grow it for good.
		n := copy(c.queue, c.queue[c.head:])
		clear(c.queue[n:])
		c.queue, c.head = c.queue[:n], 0
	}
	c.queue = append(c.queue, f)
	if kick {
		c.kickLocked()
	}
	return false
}

// popLocked takes the next queued frame; c.qmu must be held. An emptied
// queue gives its memory back unless it is small.
func (c *conn) popLocked() (outFrame, bool) {
	if c.head == len(c.queue) {
		return outFrame{}, false
	}
	f := c.queue[c.head]
	c.queue[c.head] = outFrame{}
	c.head++
	if c.head == len(c.queue) {
		c.head = 0
		c.queue = c.queue[:0]
		if cap(c.queue) > 16 {
			c.queue = nil
		}
	}
	return f, true
}

// queued is the number of frames waiting.
func (c *conn) queued() int {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return len(c.queue) - c.head
}

// offer queues an event frame without blocking and reports whether it
// fit. It does not write it: the hub does (writeNow), once it has queued a
// whole batch of events, so that they leave in one system call.
func (c *conn) offer(f outFrame) bool {
	return !c.push(f, false, c.queueMax)
}

// wakeCatchUp tells the writer to catch up from the log; it never blocks.
func (c *conn) wakeCatchUp() {
	c.qmu.Lock()
	c.catchUpDue = true
	c.kickLocked()
	c.qmu.Unlock()
}

// enqueue queues a reply or notice without blocking. These come only as
// answers to the client's own (rate-limited) requests or rarely from the
// server, so a queue full beyond the room of one request's replies means
// the client does not read: 4009. (The room: a queue that events filled
// still takes the replies of a subscribe, at most one per channel of it.)
func (c *conn) enqueue(f outFrame) {
	if c.push(f, true, max(c.queueMax, c.replyMax)) {
		c.slow("slow consumer: send queue full")
	}
}

func (c *conn) getClaims() *acl.Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims
}

// setClaims installs the connection's claims and re-arms the token
// timers: token_expiring ahead of expiry, and the close at expiry.
func (c *conn) setClaims(claims *acl.Claims) {
	c.mu.Lock()
	c.claims = claims
	c.mu.Unlock()
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.timersOff {
		return
	}
	exp := claims.ExpiresAt
	if c.tokenT != nil && exp.Equal(c.tokenExp) {
		return // a new token with the same expiry: the timer stands
	}
	stopTimer(c.tokenT)
	c.tokenT, c.tokenExp = nil, exp
	if exp.IsZero() {
		return
	}
	left := exp.Sub(c.s.now())
	c.tokenT = time.AfterFunc(max(0, left-c.s.opts.TokenExpiryWarning), func() { c.tokenTimer(exp) })
}

// tokenTimer fires for the token expiring at exp: first token_expiring,
// then, re-armed, at the expiry itself the close. A timer of a token since
// replaced does nothing.
func (c *conn) tokenTimer(exp time.Time) {
	if !c.expiresAt().Equal(exp) {
		return
	}
	if left := exp.Sub(c.s.now()); left > 0 {
		c.enqueue(outFrame{data: encode(tokenExpiringMsg{Type: "token_expiring", ExpiresAt: exp.UnixMilli()})})
		c.tmu.Lock()
		if !c.timersOff && c.expiresAt().Equal(exp) {
			c.tokenT = time.AfterFunc(left, func() { c.tokenTimer(exp) })
		}
		c.tmu.Unlock()
		return
	}
	c.fail(closeInfo{code: statusUnauthenticated, reason: "token expired", drain: true})
}

// expiresAt is when the connection's token expires (zero: never, or no
// token yet).
func (c *conn) expiresAt() time.Time {
	if cl := c.getClaims(); cl != nil {
		return cl.ExpiresAt
	}
	return time.Time{}
}

// authTimeout closes a connection that has not authenticated in time.
func (c *conn) authTimeout() {
	if !c.authed.Load() {
		c.s.authFailed(c.id, c.ip, "no auth frame in time")
		c.fail(closeInfo{code: statusUnauthenticated, reason: "authentication timeout"})
	}
}

// stopTimers stops every timer for good.
func (c *conn) stopTimers() {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	c.timersOff = true
	for _, t := range []*time.Timer{c.authT, c.tokenT, c.pingT} {
		stopTimer(t)
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// start begins an authenticated session: it registers the connection and
// sends welcome (and authed, when the first frame asked with an id).
func (c *conn) start(claims *acl.Claims, req *request) {
	c.mu.Lock()
	c.claims = claims
	c.mu.Unlock()
	c.authed.Store(true)
	c.tmu.Lock()
	stopTimer(c.authT)
	c.authT = nil
	c.tmu.Unlock()
	if !c.s.register(c, claims) {
		c.fail(closeInfo{code: websocket.StatusGoingAway, reason: "going away"})
		return
	}
	c.registered = true
	c.enqueue(outFrame{data: encode(welcomeMsg{
		Type:         "welcome",
		ConnectionID: c.id,
		UserID:       claims.UserID,
		Cursor:       c.s.hub.position(),
		HeartbeatMS:  c.s.opts.HeartbeatInterval.Milliseconds(),
	})})
	if req != nil && req.ID != nil {
		c.enqueue(outFrame{data: encode(authedReply(req.ID, claims))})
	}
	// Arm the token timers only now: token_expiring goes through the
	// queue, after welcome.
	c.setClaims(claims)
}

func authedReply(id json.RawMessage, claims *acl.Claims) authedMsg {
	m := authedMsg{ID: id, Type: "authed", UserID: claims.UserID, Role: claims.Role}
	if !claims.ExpiresAt.IsZero() {
		m.ExpiresAt = claims.ExpiresAt.UnixMilli()
	}
	return m
}

// readLoop reads frames until the connection fails, and serves them.
func (c *conn) readLoop() error {
	for {
		// No context: a read with one costs a registration with the
		// context for as long as the connection idles. Shutdown closes
		// the sockets instead. The reader waits here, for a frame header;
		// the message itself is read and served on a fresh stack.
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return err
		}
		onFreshStack(func() {
			var data []byte
			if data, err = io.ReadAll(r); err != nil {
				return
			}
			switch {
			case c.failed.Load():
				// Closing: the writer finishes the close handshake.
			case !c.authed.Load():
				c.firstFrame(typ, data)
			default:
				c.handle(typ, data)
			}
		})
		if err != nil {
			return err
		}
	}
}

// onFreshStack runs f on a goroutine of its own and waits for it. The
// reader idles most of its life waiting for a frame; reading a message and
// handling it (parsing, access checks with their queries) needs a deeper
// stack, which the reader would otherwise keep for good: a goroutine's
// stack grows at once but shrinks only by halves, at garbage collections,
// and only while less than a quarter of it is used.
func onFreshStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// parse parses a frame; every error is a *frameError.
func parse(typ websocket.MessageType, data []byte) (*request, error) {
	if typ != websocket.MessageText {
		return nil, &frameError{Msg: "frames must be JSON text messages"}
	}
	return parseFrame(data)
}

// firstFrame authenticates a connection whose upgrade request had no token:
// its first frame must be a good auth, else it is closed with 4001.
func (c *conn) firstFrame(typ websocket.MessageType, data []byte) {
	req, err := parse(typ, data)
	if err == nil && req.Type != typeAuth {
		err = errors.New("the first frame must be auth")
	}
	if err != nil {
		c.s.authFailed(c.id, c.ip, "bad first frame: "+err.Error())
		c.fail(closeInfo{code: statusUnauthenticated, reason: closeReason("authentication required: " + err.Error()), drain: true})
		return
	}
	claims, err := c.s.verify(req.Token)
	if err != nil {
		reason := redact(err.Error(), req.Token)
		c.s.authFailed(c.id, c.ip, reason)
		c.fail(closeInfo{code: statusUnauthenticated, reason: closeReason(reason), drain: true})
		return
	}
	c.start(claims, req)
}

// closeReason fits a close reason into a control frame.
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	return truncate(s, max-3)
}

// handle serves one frame of an authenticated connection.
func (c *conn) handle(typ websocket.MessageType, data []byte) {
	now := c.s.now()
	if ok, flood := c.msgLimit.allow(now); !ok {
		if flood {
			c.fail(closeInfo{code: statusRateLimited, reason: "rate limited", drain: true})
			return
		}
		c.sendError(idOf(typ, data), codeRateLimited, "",
			fmt.Sprintf("more than %d messages per second", c.s.limits.MaxMessagesPerSecond))
		return
	}
	req, err := parse(typ, data)
	if err != nil {
		var fe *frameError
		errors.As(err, &fe)
		c.sendError(fe.ID, codeBadRequest, "", fe.Msg)
		if c.badFrames == nil {
			c.badFrames = newBadFrameLimiter() // only for clients that send one
		}
		if !c.badFrames.AllowN(now, 1) {
			c.fail(closeInfo{code: websocket.StatusPolicyViolation, reason: "too many bad frames", drain: true})
		}
		return
	}
	switch req.Type {
	case typeAuth:
		c.refresh(req)
	case typeSubscribe:
		c.subscribe(req)
	case typeUnsubscribe:
		c.unsubscribe(req)
	case typePing:
		c.s.hub.withPosition(func(pos broadcaster.Cursor) {
			c.enqueue(outFrame{data: encode(pongMsg{ID: req.ID, Type: "pong", Cursor: pos})})
		})
	}
}

// idOf returns the id of a frame, when it can be read.
func idOf(typ websocket.MessageType, data []byte) json.RawMessage {
	req, err := parse(typ, data)
	if err == nil {
		return req.ID
	}
	var fe *frameError
	if errors.As(err, &fe) {
		return fe.ID
	}
	return nil
}

func (c *conn) sendError(id json.RawMessage, code, channel, msg string) {
	c.enqueue(outFrame{data: encode(errorMsg{ID: id, Type: "error", Code: code, Channel: channel, Message: msg})})
}

// refresh replaces the token of a live connection: same user required;
// channels the new claims no longer allow are revoked.
func (c *conn) refresh(req *request) {
	claims, err := c.s.verify(req.Token)
	if err != nil {
		reason := redact(err.Error(), req.Token)
		c.s.authFailed(c.id, c.ip, reason)
		c.sendError(req.ID, codeUnauthenticated, "", "token refused, the connection keeps its token: "+reason)
		return
	}
	old := c.getClaims()
	if claims.UserID != old.UserID {
		c.sendError(req.ID, codeSubjectMismatch, "", "the token is for another user; the connection keeps its token")
		return
	}
	c.setClaims(claims)
	c.s.stats.role(roleLabel(old), roleLabel(claims))
	for _, ch := range c.s.hub.channelsOf(c) {
		c.s.recheck(c.ctx, c, claims, ch)
	}
	c.enqueue(outFrame{data: encode(authedReply(req.ID, claims))})
}

// subscribe grants what it can of the requested channels: each is
// resolved, counted against max_subscriptions_per_connection, and checked;
// the granted ones are answered with subscribed, each refused one with an
// error naming it. What one request costs is bounded: one naming more
// channels than a connection may hold is refused whole, before any check;
// and every refusal draws on the connection's refusal budget, past which
// the rest of the request is not looked at and the connection is closed
// with 4008.
func (c *conn) subscribe(req *request) {
	s := c.s
	if n := len(req.Channels); n > s.limits.MaxSubscriptionsPerConn {
		s.stats.refused(codeTooManySubs)
		c.sendError(req.ID, codeTooManySubs, "", fmt.Sprintf("a subscribe names at most %d channels (max_subscriptions_per_connection), this one %d; nothing was subscribed",
			s.limits.MaxSubscriptionsPerConn, n))
		return
	}
	gen := s.aclGen.Load()
	claims := c.getClaims()
	have := s.hub.count(c)
	names := []string{}
	var added []*acl.Channel
	var refused []errorMsg
	overBudget := false
	seen := make(map[string]bool, len(req.Channels))
	for _, name := range req.Channels {
		if seen[name] {
			continue
		}
		seen[name] = true
		if s.hub.subscription(c, name) != nil {
			names = append(names, name)
			continue
		}
		ch, code, msg, ours := c.admit(claims, name, have+len(added))
		if ch == nil {
			echo := echoChannel(name, code)
			refused = append(refused, errorMsg{ID: req.ID, Type: "error", Code: code, Channel: echo, Message: msg})
			s.stats.refused(code)
			s.audit.subscribeDenied(c, claims.UserID, echo, code)
			if !ours && !c.chargeRefusal() {
				overBudget = true
				break
			}
			continue
		}
		names, added = append(names, name), append(added, ch)
	}
	var since *broadcaster.Cursor
	if req.HasSince {
		since = &req.Since
	}
	// Membership changed while the checks ran (a control record took
	// effect): they may have read the old answers, and its re-check may
	// have missed these channels. Then they start gated, and are checked
	// again before anything after the subscribe reaches them.
	stale := func() bool { return s.aclGen.Load() != gen }
	gatedAt, isGated := s.hub.subscribe(c, added, since, s.expired, stale, func(pos broadcaster.Cursor, reset []string) {
		c.enqueue(outFrame{data: encode(channelsMsg{ID: req.ID, Type: "subscribed", Channels: names, Cursor: &pos})})
		if len(reset) > 0 {
			c.enqueue(outFrame{data: encode(resetMsg{Type: "reset", Channels: reset, Reason: "cursor_expired"})})
		}
	})
	if isGated {
		defer s.recheckConn(gated{c: c, at: gatedAt, chans: added})
	}
	for _, m := range refused {
		c.enqueue(outFrame{data: encode(m)})
	}
	if overBudget {
		c.fail(closeInfo{code: statusRateLimited, reason: "too many refused subscriptions", drain: true})
		return
	}
}

// chargeRefusal draws one refusal from the connection's budget and reports
// whether there was one.
func (c *conn) chargeRefusal() bool {
	if c.refusals == nil {
		c.refusals = newRefusalLimiter(c.s.limits.MaxSubscriptionsPerConn)
	}
	return c.refusals.AllowN(c.s.now(), 1)
}

// admit resolves and checks one new channel for a connection that has
// count subscriptions; it returns the channel, or nil and the error. ours
// says the refusal is the server's fault (the access check failed): it is
// not held against the client.
func (c *conn) admit(claims *acl.Claims, name string, count int) (ch *acl.Channel, code, msg string, ours bool) {
	s := c.s
	ch, err := s.access.Resolve(name)
	switch {
	case errors.Is(err, acl.ErrUnknownChannel):
		return nil, codeUnknownChannel, "no channel pattern matches " + truncate(name, 100), false
	case err != nil:
		return nil, codeInvalidChannel, truncate(err.Error(), 200), false
	}
	// The limit comes before the access check: a client at its limit
	// costs no queries.
	if count >= s.limits.MaxSubscriptionsPerConn {
		return nil, codeTooManySubs, fmt.Sprintf("at most %d subscriptions per connection", s.limits.MaxSubscriptionsPerConn), false
	}
	ok, err := s.access.Allowed(c.ctx, claims, ch)
	if err != nil {
		s.logger.Warn("ws: access check failed", "connectionId", c.id, "channel", name, "err", err)
		return nil, codeForbidden, "access could not be checked; try again later", true
	}
	if !ok {
		return nil, codeForbidden, "not allowed to read " + truncate(name, 100), false
	}
	return ch, "", "", false
}

// unsubscribe drops the named channels; a request naming more than a
// connection may hold is refused whole (it would only echo them back).
func (c *conn) unsubscribe(req *request) {
	if n := len(req.Channels); n > c.s.limits.MaxSubscriptionsPerConn {
		c.sendError(req.ID, codeBadRequest, "", fmt.Sprintf("an unsubscribe names at most %d channels (max_subscriptions_per_connection), this one %d; nothing was unsubscribed",
			c.s.limits.MaxSubscriptionsPerConn, n))
		return
	}
	names := req.Channels
	if names == nil {
		names = []string{}
	}
	c.s.hub.unsubscribe(c, names, func(broadcaster.Cursor) {
		c.enqueue(outFrame{data: encode(channelsMsg{ID: req.ID, Type: "unsubscribed", Channels: names})})
	})
}

// writeLoop is the connection's writer, started when there is something
// to write: it writes the queued frames in order and catches up from the
// log when asked, and returns when there is nothing left; when fail asks,
// it closes the connection as c.why says, and closes done.
func (c *conn) writeLoop() {
	for {
		c.qmu.Lock()
		if c.failed.Load() {
			pending := c.queue[c.head:]
			c.queue, c.head = nil, 0
			c.qmu.Unlock()
			c.finish(pending)
			close(c.done)
			return
		}
		if c.catchUpDue {
			c.catchUpDue = false
			c.qmu.Unlock()
			c.catchUp()
			continue
		}
		f, ok := c.popLocked()
		if !ok {
			c.writing = false
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
		c.writeBatch(f)
	}
}

// maxBatch bounds the frames the writer sends in one system call.
const maxBatch = 64

// writeBatch writes f and what else is queued now (up to maxBatch frames)
// with the socket corked, so that they leave in one system call; it
// reports false when the connection failed.
func (c *conn) writeBatch(f outFrame) bool {
	var w written
	c.writeStart.Store(time.Now().UnixNano())
	c.fw.cork()
	var err error
	for {
		if err = c.ws.Write(context.Background(), websocket.MessageText, f.data); err != nil {
			break
		}
		w.add(f)
		if w.frames == maxBatch {
			break
		}
		var ok bool
		c.qmu.Lock()
		if !c.failed.Load() && !c.catchUpDue {
			f, ok = c.popLocked()
		}
		c.qmu.Unlock()
		if !ok {
			break
		}
	}
	if uerr := c.fw.uncork(); err == nil {
		err = uerr
	}
	c.writeStart.Store(0)
	if err != nil {
		c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "write failed", abrupt: true})
		return false
	}
	c.count(&w)
	return true
}

// written tallies frames written, for count. Commit times are kept as
// Unix ns (0: none) to keep a writer's stack small.
type written struct {
	frames, bytes, events int
	commits               [maxBatch]int64
}

func (w *written) add(f outFrame) {
	w.frames++
	w.bytes += len(f.data)
	if f.event {
		if !f.commit.IsZero() {
			w.commits[w.events] = f.commit.UnixNano()
		}
		w.events++
	}
}

// count counts what was written: frames, bytes, events delivered, and
// each event's commit-to-send latency.
func (c *conn) count(w *written) {
	c.sent.Add(uint64(w.frames))
	c.s.stats.bytes.Add(uint64(w.bytes))
	c.s.stats.delivered.Add(uint64(w.events))
	if obs := c.s.opts.ObserveDelivery; obs != nil {
		for _, ns := range w.commits[:w.events] {
			var at time.Time
			if ns != 0 {
				at = time.Unix(0, ns)
			}
			obs(at)
		}
	}
}

// writeOrDrop writes f; when that fails the socket is gone (coder/websocket
// has closed it): the connection fails, and it reports false.
func (c *conn) writeOrDrop(f outFrame) bool {
	if err := c.write(f); err != nil {
		c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "write failed", abrupt: true})
		return false
	}
	return true
}

func (c *conn) write(f outFrame) error {
	c.writeStart.Store(time.Now().UnixNano())
	err := c.ws.Write(context.Background(), websocket.MessageText, f.data)
	c.writeStart.Store(0)
	if err != nil {
		return err
	}
	var w written
	w.add(f)
	c.count(&w)
	return nil
}

// catchUp serves c from the log while the hub does not queue its events:
// after its queue overflowed, or a `since` rewound it. Each round reads a
// page of the log after c's catch-up position, turns it into the frames due
// on c, writes what was queued before them (replies such as subscribed
// precede the events they announce), then the frames; an empty page means c
// has reached the hub, and it is live again. A connection that falls out of
// the retained log meanwhile is closed 4009: it reconnects and resumes with
// its cursor. It returns early when the connection fails; the writer then
// finishes it.
func (c *conn) catchUp() {
	h := c.s.hub
	for !c.failed.Load() {
		h.mu.Lock()
		lagging, from, bound := c.lagging, c.lagPos, h.pos
		gated := len(c.gates) > 0 && !from.Before(c.gates[0])
		h.mu.Unlock()
		if !lagging || gated {
			// Gated: the end of the re-checks wakes the catch-up again.
			return
		}
		evs, _, err := c.s.log.Since(from, catchUpPage)
		if err != nil {
			if errors.Is(err, broadcaster.ErrCursorExpired) {
				c.slow("slow consumer: fell behind the retained log")
			} else {
				c.s.logger.Error("ws: catch-up cannot read the log", "connectionId", c.id, "err", err)
				c.fail(closeInfo{code: websocket.StatusInternalError, reason: "internal error", drain: true})
			}
			return
		}
		frames, done, moved := h.catchUpFrames(c, from, bound, evs, c.s.logger)
		if done {
			return
		}
		if !moved {
			continue
		}
		if !c.drainQueue() {
			return
		}
		for _, f := range frames {
			if c.failed.Load() || !c.writeOrDrop(f) {
				return
			}
		}
	}
}

// drainQueue writes every frame queued now, in batches; it reports false
// when the connection failed.
func (c *conn) drainQueue() bool {
	for {
		c.qmu.Lock()
		if c.failed.Load() {
			c.qmu.Unlock()
			return false
		}
		f, ok := c.popLocked()
		c.qmu.Unlock()
		if !ok {
			return true
		}
		if !c.writeBatch(f) {
			return false
		}
	}
}

// slow closes c as a slow consumer (4009).
func (c *conn) slow(reason string) {
	if c.fail(closeInfo{code: statusSlowConsumer, reason: reason}) {
		c.s.stats.overflows.Add(1)
	}
}

// finish closes the connection as c.why says; pending are the frames
// queued when the writer saw the failure.
func (c *conn) finish(pending []outFrame) {
	why := c.why
	if why.abrupt {
		_ = c.ws.CloseNow()
		return
	}
	if why.drain {
		for _, f := range pending {
			if c.write(f) != nil {
				_ = c.ws.CloseNow()
				return
			}
		}
	}
	_ = c.ws.Close(why.code, why.reason)
}

// ping pings the peer, from its timer, every heartbeat; a peer that does
// not answer within a heartbeat is dropped.
func (c *conn) ping() {
	if c.failed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.HeartbeatInterval)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "no answer to ping", abrupt: true})
		return
	}
	c.tmu.Lock()
	if !c.timersOff {
		c.pingT.Reset(c.s.opts.HeartbeatInterval)
	}
	c.tmu.Unlock()
}
