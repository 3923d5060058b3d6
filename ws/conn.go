package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	s       *Server
	ws      *websocket.Conn
	id      string
	ip      string
	started time.Time
	// ctx is the server's hardCtx: reads, writes and access checks stop
	// when it ends.
	ctx context.Context

	// send is the bounded send queue; the writer goroutine drains it.
	send chan outFrame
	// quit is closed by fail: the writer then closes the connection as why
	// says.
	quit     chan struct{}
	failOnce sync.Once
	failed   atomic.Bool
	// why is written once by fail before failed and quit are set.
	why closeInfo
	// wg counts the writer and the pinger.
	wg sync.WaitGroup
	// sent counts the frames written.
	sent atomic.Uint64

	authed atomic.Bool
	mu     sync.Mutex // protects claims
	claims *acl.Claims
	// expiryChanged (capacity 1) tells the writer to re-arm the token
	// timers from claims.
	expiryChanged chan struct{}

	// Protected by hub.mu: the subscriptions, and the hub's per-event
	// scratch (mark: the last event that touched c; match: its channels).
	subs  map[string]*subscription
	mark  uint64
	match []string
	// Also protected by hub.mu: lagging says the hub does not queue c's
	// events, because c's queue was full or a `since` rewound it; the
	// writer then reads them from the log after lagPos (catchUp).
	// skipUntil: events up to it were served by a catch-up that read past
	// the hub's position. servedUpTo: how far the subscriptions marked
	// rewind had been served when the rewind began.
	lagging    bool
	lagPos     broadcaster.Cursor
	skipUntil  broadcaster.Cursor
	servedUpTo broadcaster.Cursor
	// catchUpWake (capacity 1) tells the writer to catch up.
	catchUpWake chan struct{}
	// writeStart is when the write in progress began (Unix ns), 0 when
	// none: the stall sweeper closes a connection stuck in one.
	writeStart atomic.Int64

	// Owned by the reader (the handler goroutine).
	msgLimit   *msgLimiter
	badFrames  *rate.Limiter
	registered bool
}

func newConn(s *Server, wsc *websocket.Conn, ip string) *conn {
	return &conn{
		s:             s,
		ws:            wsc,
		id:            newConnID(),
		ip:            ip,
		started:       s.now(),
		ctx:           s.hardCtx,
		send:          make(chan outFrame, s.limits.SendQueue),
		quit:          make(chan struct{}),
		expiryChanged: make(chan struct{}, 1),
		subs:          make(map[string]*subscription),
		catchUpWake:   make(chan struct{}, 1),
		msgLimit:      newMsgLimiter(s.limits.MaxMessagesPerSecond),
		badFrames:     newBadFrameLimiter(),
	}
}

// serve runs the connection until it ends: it starts the writer and the
// pinger, authenticates (with claims from the upgrade request, or the first
// frame), reads requests, then waits for its goroutines and unregisters.
func (c *conn) serve(claims *acl.Claims) {
	c.ws.SetReadLimit(int64(c.s.limits.MaxFrameBytes))
	c.wg.Add(2)
	go c.writeLoop()
	go c.pingLoop()
	if claims != nil {
		c.start(claims, nil)
	}
	err := c.readLoop()
	c.fail(endedBy(err))
	c.wg.Wait()
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
		close(c.quit)
		did = true
	})
	return did
}

// offer queues an event frame without blocking and reports whether it fit.
func (c *conn) offer(f outFrame) bool {
	if c.failed.Load() {
		return true
	}
	select {
	case c.send <- f:
		return true
	default:
		return false
	}
}

// wakeCatchUp tells the writer to catch up from the log; it never blocks.
func (c *conn) wakeCatchUp() {
	select {
	case c.catchUpWake <- struct{}{}:
	default:
	}
}

// enqueue queues a reply or notice without blocking. These come only as
// answers to the client's own (rate-limited) requests or rarely from the
// server, so a full queue means the client does not read: 4009.
func (c *conn) enqueue(f outFrame) {
	if c.failed.Load() {
		return
	}
	select {
	case c.send <- f:
	default:
		c.slow("slow consumer: send queue full")
	}
}

func (c *conn) getClaims() *acl.Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims
}

// setClaims installs the connection's claims and re-arms the token timers.
func (c *conn) setClaims(claims *acl.Claims) {
	c.mu.Lock()
	c.claims = claims
	c.mu.Unlock()
	select {
	case c.expiryChanged <- struct{}{}:
	default:
	}
}

// start begins an authenticated session: it registers the connection and
// sends welcome (and authed, when the first frame asked with an id).
func (c *conn) start(claims *acl.Claims, req *request) {
	c.mu.Lock()
	c.claims = claims
	c.mu.Unlock()
	c.authed.Store(true)
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
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return err
		}
		switch {
		case c.failed.Load():
			// Closing: the writer finishes the close handshake.
		case !c.authed.Load():
			c.firstFrame(typ, data)
		default:
			c.handle(typ, data)
		}
	}
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
// error naming it.
func (c *conn) subscribe(req *request) {
	s := c.s
	gen := s.aclGen.Load()
	claims := c.getClaims()
	have := s.hub.count(c)
	names := []string{}
	var added []*acl.Channel
	var refused []errorMsg
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
		ch, code, msg := c.admit(claims, name, have+len(added))
		if ch == nil {
			refused = append(refused, errorMsg{ID: req.ID, Type: "error", Code: code, Channel: name, Message: msg})
			s.audit.subscribeDenied(c, claims.UserID, name, code)
			continue
		}
		names, added = append(names, name), append(added, ch)
	}
	var since *broadcaster.Cursor
	if req.HasSince {
		since = &req.Since
	}
	s.hub.subscribe(c, added, since, s.expired, func(pos broadcaster.Cursor, reset []string) {
		c.enqueue(outFrame{data: encode(channelsMsg{ID: req.ID, Type: "subscribed", Channels: names, Cursor: &pos})})
		if len(reset) > 0 {
			c.enqueue(outFrame{data: encode(resetMsg{Type: "reset", Channels: reset, Reason: "cursor_expired"})})
		}
	})
	for _, m := range refused {
		c.enqueue(outFrame{data: encode(m)})
	}
	if s.aclGen.Load() != gen {
		// Membership changed while the checks ran: they may have read the
		// old answers, and the re-check may have missed these channels.
		for _, ch := range added {
			s.recheck(c.ctx, c, claims, ch)
		}
	}
}

// admit resolves and checks one new channel for a connection that has
// count subscriptions; it returns the channel, or nil and the error.
func (c *conn) admit(claims *acl.Claims, name string, count int) (ch *acl.Channel, code, msg string) {
	s := c.s
	ch, err := s.access.Resolve(name)
	switch {
	case errors.Is(err, acl.ErrUnknownChannel):
		return nil, codeUnknownChannel, "no channel pattern matches " + truncate(name, 100)
	case err != nil:
		return nil, codeInvalidChannel, truncate(err.Error(), 200)
	}
	// The limit comes before the access check: a client at its limit
	// costs no queries.
	if count >= s.limits.MaxSubscriptionsPerConn {
		return nil, codeTooManySubs, fmt.Sprintf("at most %d subscriptions per connection", s.limits.MaxSubscriptionsPerConn)
	}
	ok, err := s.access.Allowed(c.ctx, claims, ch)
	if err != nil {
		s.logger.Warn("ws: access check failed", "connectionId", c.id, "channel", name, "err", err)
		return nil, codeForbidden, "access could not be checked; try again later"
	}
	if !ok {
		return nil, codeForbidden, "not allowed to read " + truncate(name, 100)
	}
	return ch, "", ""
}

func (c *conn) unsubscribe(req *request) {
	names := req.Channels
	if names == nil {
		names = []string{}
	}
	c.s.hub.unsubscribe(c, names, func(broadcaster.Cursor) {
		c.enqueue(outFrame{data: encode(channelsMsg{ID: req.ID, Type: "unsubscribed", Channels: names})})
	})
}

// writeLoop is the connection's writer: it writes queued frames in order,
// runs the token and authentication timers, and closes the connection
// when fail asks.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	authT := time.NewTimer(c.s.opts.AuthTimeout)
	warnT := stoppedTimer()
	expT := stoppedTimer()
	defer func() {
		authT.Stop()
		warnT.Stop()
		expT.Stop()
	}()
	var expiresAt time.Time
	for {
		select {
		case <-c.quit:
			c.finish(nil)
			return
		case f := <-c.send:
			if c.failed.Load() {
				c.finish(&f)
				return
			}
			if !c.writeOrDrop(f) {
				return
			}
		case <-authT.C:
			if !c.authed.Load() {
				c.s.authFailed(c.id, c.ip, "no auth frame in time")
				c.fail(closeInfo{code: statusUnauthenticated, reason: "authentication timeout"})
			}
		case <-c.expiryChanged:
			expiresAt = time.Time{}
			if cl := c.getClaims(); cl != nil {
				expiresAt = cl.ExpiresAt
			}
			warnT.Stop()
			expT.Stop()
			if !expiresAt.IsZero() {
				left := expiresAt.Sub(c.s.now())
				warnT.Reset(max(0, left-c.s.opts.TokenExpiryWarning))
				expT.Reset(max(0, left))
			}
		case <-warnT.C:
			c.enqueue(outFrame{data: encode(tokenExpiringMsg{Type: "token_expiring", ExpiresAt: expiresAt.UnixMilli()})})
		case <-c.catchUpWake:
			if !c.catchUp() {
				return
			}
		case <-expT.C:
			c.fail(closeInfo{code: statusUnauthenticated, reason: "token expired", drain: true})
		}
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// writeOrDrop writes f; when that fails the socket is gone (coder/websocket
// has closed it), and it reports false.
func (c *conn) writeOrDrop(f outFrame) bool {
	if err := c.write(f); err != nil {
		c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "write failed", abrupt: true})
		_ = c.ws.CloseNow()
		return false
	}
	return true
}

func (c *conn) write(f outFrame) error {
	ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
	defer cancel()
	c.writeStart.Store(time.Now().UnixNano())
	err := c.ws.Write(ctx, websocket.MessageText, f.data)
	c.writeStart.Store(0)
	if err != nil {
		return err
	}
	c.sent.Add(1)
	c.s.stats.bytes.Add(uint64(len(f.data)))
	if f.event {
		c.s.stats.delivered.Add(1)
		if obs := c.s.opts.ObserveDelivery; obs != nil {
			obs(f.commit)
		}
	}
	return nil
}

// catchUp serves c from the log while the hub does not queue its events:
// after its queue overflowed, or a `since` rewound it. Each round reads a
// page of the log after c's catch-up position, turns it into the frames due
// on c, writes what was queued before them (replies such as subscribed
// precede the events they announce), then the frames; an empty page means c
// has reached the hub, and it is live again. A connection that falls out of
// the retained log meanwhile is closed 4009: it reconnects and resumes with
// its cursor. It reports false when the connection is finished.
func (c *conn) catchUp() bool {
	h := c.s.hub
	for {
		h.mu.Lock()
		lagging, from := c.lagging, c.lagPos
		h.mu.Unlock()
		if !lagging {
			return true
		}
		evs, _, err := c.s.log.Since(from, catchUpPage)
		if err != nil {
			if errors.Is(err, broadcaster.ErrCursorExpired) {
				c.slow("slow consumer: fell behind the retained log")
			} else {
				c.s.logger.Error("ws: catch-up cannot read the log", "connectionId", c.id, "err", err)
				c.fail(closeInfo{code: websocket.StatusInternalError, reason: "internal error", drain: true})
			}
			c.finish(nil)
			return false
		}
		frames, done, moved := h.catchUpFrames(c, from, evs, c.s.logger)
		if done {
			return true
		}
		if !moved {
			continue
		}
		if !c.drainQueue() {
			return false
		}
		for _, f := range frames {
			if c.failed.Load() {
				c.finish(nil)
				return false
			}
			if !c.writeOrDrop(f) {
				return false
			}
		}
	}
}

// drainQueue writes every frame queued now; it reports false when the
// connection is finished.
func (c *conn) drainQueue() bool {
	for {
		select {
		case <-c.quit:
			c.finish(nil)
			return false
		case f := <-c.send:
			if !c.writeOrDrop(f) {
				return false
			}
		default:
			return true
		}
	}
}

// slow closes c as a slow consumer (4009).
func (c *conn) slow(reason string) {
	if c.fail(closeInfo{code: statusSlowConsumer, reason: reason}) {
		c.s.stats.overflows.Add(1)
	}
}

// finish closes the connection as c.why says; pending is a frame taken
// from the queue before the writer saw the failure.
func (c *conn) finish(pending *outFrame) {
	why := c.why
	if why.abrupt {
		_ = c.ws.CloseNow()
		return
	}
	if why.drain {
		if pending != nil && c.write(*pending) != nil {
			_ = c.ws.CloseNow()
			return
		}
	drain:
		for {
			select {
			case f := <-c.send:
				if c.write(f) != nil {
					_ = c.ws.CloseNow()
					return
				}
			default:
				break drain
			}
		}
	}
	_ = c.ws.Close(why.code, why.reason)
}

// pingLoop pings the peer every heartbeat; a peer that does not answer
// within a heartbeat is dropped.
func (c *conn) pingLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.HeartbeatInterval)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil {
				c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "no answer to ping", abrupt: true})
				return
			}
		}
	}
}
