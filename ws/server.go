package ws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// Subprotocol is the WebSocket subprotocol of wire contract v1. A client
// that offers none is served as if it had offered this one.
const Subprotocol = "cdc.v1"

// Defaults for Options and config.Limits fields left zero.
const (
	DefaultAuthTimeout        = 10 * time.Second
	DefaultHeartbeatInterval  = 25 * time.Second
	DefaultTokenExpiryWarning = 60 * time.Second
	DefaultStallTimeout       = 5 * time.Second

	DefaultMaxConnectionsPerIPPerMinute = 60
	DefaultMaxConnectionsPerUser        = 10
	DefaultMaxSubscriptionsPerConn      = 200
	DefaultMaxFrameBytes                = 65536
	DefaultMaxMessagesPerSecond         = 50
	DefaultSendQueue                    = 1024
	DefaultMaxSyncPollsPerUser          = 4
	DefaultMaxSyncPollsPerIP            = 100
)

// TokenVerifier checks a client's JWT. acl.Verifier implements it.
type TokenVerifier interface {
	// Verify returns the token's claims, or an error wrapping
	// acl.ErrInvalidToken that says why without quoting the token.
	Verify(token string) (*acl.Claims, error)
}

// Authorizer resolves channel names and decides who may read them.
// acl.Rules implements it.
type Authorizer interface {
	// Resolve parses a channel name; errors wrap acl.ErrUnknownChannel or
	// acl.ErrInvalidChannel.
	Resolve(name string) (*acl.Channel, error)
	// Allowed reports whether the caller may read the channel.
	Allowed(ctx context.Context, c *acl.Claims, ch *acl.Channel) (bool, error)
	// Invalidate forgets cached answers that depend on the table.
	Invalidate(table string)
	// AffectedBy reports whether a change of the table may change who may
	// read the channel.
	AffectedBy(table string, ch *acl.Channel) bool
	// IsAdmin reports whether the caller has an admin role.
	IsAdmin(c *acl.Claims) bool
}

// acl's types are what the gateway is wired with.
var (
	_ TokenVerifier = (*acl.Verifier)(nil)
	_ Authorizer    = (*acl.Rules)(nil)
)

// Options configure a Server. Log, Verifier and Access are required.
type Options struct {
	// Server is the server section of the config: AllowedOrigins (none:
	// any origin), TrustedProxies and AllowQueryToken (off: an upgrade
	// with ?access_token= is answered 401) are used here.
	Server config.Server
	// Limits is the limits section of the config; zero fields take the
	// documented defaults.
	Limits config.Limits
	// Log is the event log the hub follows and replies take cursors from.
	Log broadcaster.LogReader
	// Verifier checks tokens.
	Verifier TokenVerifier
	// Access resolves channels and checks access to them.
	Access Authorizer
	// Ready reports, for GET /readyz, whether the service is ready and if
	// not why. Nil: always ready.
	Ready func() (bool, string)
	// Audit receives the audit log, JSON lines (see the package doc). Nil:
	// discarded.
	Audit io.Writer
	// Logger receives the gateway's own logs. Nil: discarded.
	Logger *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// AuthTimeout is how long a client without a token on the upgrade
	// request has to send its auth frame. Default 10s.
	AuthTimeout time.Duration
	// HeartbeatInterval is the WebSocket ping period, also the time a ping
	// has to be answered, and welcome.heartbeatMs. Default 25s.
	HeartbeatInterval time.Duration
	// TokenExpiryWarning is how long before the token expires
	// token_expiring is sent. Default 60s.
	TokenExpiryWarning time.Duration
	// ObserveDelivery, when set, is called after each event frame is
	// written to a client, with the event's commit time (for the
	// commit-to-send latency). It runs on the connection's writer: keep it
	// cheap.
	ObserveDelivery func(commit time.Time)
	// StallTimeout is how long one write to a client may stay blocked
	// (its socket full: the client does not read) before the connection is
	// closed as a slow consumer (4009). Default 5s.
	StallTimeout time.Duration
}

// Server is the WebSocket gateway. Make it with NewServer, serve Handler,
// run Run, and end with Shutdown. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	limits   config.Limits
	log      broadcaster.LogReader
	verifier TokenVerifier
	access   Authorizer
	logger   *slog.Logger
	audit    *auditLog
	stats    *counters
	hub      *hub
	ipLimit  *ipLimiter
	polls    *pollLimiter
	mux      *http.ServeMux
	accept   websocket.AcceptOptions

	// ctx ends at Shutdown: it stops the hub and the re-checks.
	ctx    context.Context
	cancel context.CancelFunc
	// hardCtx ends when Shutdown gives up waiting: it drops every socket.
	// Connections read, write and check access under it.
	hardCtx    context.Context
	hardCancel context.CancelFunc
	// wg counts the connection handlers and re-check goroutines.
	wg sync.WaitGroup
	// aclGen counts TablesChanged calls, so a subscribe whose access checks
	// overlapped one checks again.
	aclGen atomic.Uint64

	// proxies are server.trusted_proxies, parsed.
	proxies []netip.Prefix

	mu sync.Mutex // protects conns, byUser and closing
	// conns holds every upgraded connection, authenticated or not.
	conns map[*conn]struct{}
	// byUser holds each user's authenticated connections, oldest first.
	byUser  map[string][]*conn
	closing bool
}

// NewServer checks opts, applies the defaults and returns a Server whose
// hub starts at the log's head.
func NewServer(opts Options) (*Server, error) {
	switch {
	case opts.Log == nil:
		return nil, errors.New("ws: new server: Options.Log is nil")
	case opts.Verifier == nil:
		return nil, errors.New("ws: new server: Options.Verifier is nil")
	case opts.Access == nil:
		return nil, errors.New("ws: new server: Options.Access is nil")
	}
	for _, p := range opts.Server.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("ws: new server: server.allowed_origins: bad pattern %q: %w", p, err)
		}
	}
	proxies, err := parseProxies(opts.Server.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("ws: new server: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	defaultDuration(&opts.AuthTimeout, DefaultAuthTimeout)
	defaultDuration(&opts.HeartbeatInterval, DefaultHeartbeatInterval)
	defaultDuration(&opts.TokenExpiryWarning, DefaultTokenExpiryWarning)
	defaultDuration(&opts.StallTimeout, DefaultStallTimeout)
	l := &opts.Limits
	defaultInt(&l.MaxConnectionsPerIPPerMinute, DefaultMaxConnectionsPerIPPerMinute)
	defaultInt(&l.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser)
	defaultInt(&l.MaxSubscriptionsPerConn, DefaultMaxSubscriptionsPerConn)
	defaultInt(&l.MaxFrameBytes, DefaultMaxFrameBytes)
	defaultInt(&l.MaxMessagesPerSecond, DefaultMaxMessagesPerSecond)
	defaultInt(&l.SendQueue, DefaultSendQueue)
	defaultInt(&l.MaxSyncPollsPerUser, DefaultMaxSyncPollsPerUser)
	defaultInt(&l.MaxSyncPollsPerIP, DefaultMaxSyncPollsPerIP)

	s := &Server{
		opts:     opts,
		limits:   opts.Limits,
		log:      opts.Log,
		verifier: opts.Verifier,
		access:   opts.Access,
		logger:   opts.Logger,
		stats:    newCounters(),
		ipLimit:  newIPLimiter(opts.Limits.MaxConnectionsPerIPPerMinute),
		polls:    newPollLimiter(opts.Limits.MaxSyncPollsPerUser, opts.Limits.MaxSyncPollsPerIP),
		conns:    make(map[*conn]struct{}),
		byUser:   make(map[string][]*conn),
		proxies:  proxies,
		accept: websocket.AcceptOptions{
			Subprotocols:       []string{Subprotocol},
			OriginPatterns:     opts.Server.AllowedOrigins,
			InsecureSkipVerify: len(opts.Server.AllowedOrigins) == 0,
		},
	}
	s.audit = newAuditLog(opts.Audit, opts.Now, func(err error) {
		s.logger.Error("ws: cannot write the audit log", "err", err)
	})
	s.hub = newHub(s.stats, opts.Log, opts.Log.Head())
	s.hub.between = s.intake
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /ws", s.serveWS)
	s.mux.HandleFunc("GET /healthz", s.serveHealthz)
	s.mux.HandleFunc("GET /readyz", s.serveReadyz)
	s.mux.HandleFunc("GET /api/realtime/sync", s.serveSync)
	return s, nil
}

func defaultDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func defaultInt(n *int, def int) {
	if *n <= 0 {
		*n = def
	}
}

// Handler returns the gateway's HTTP handler: GET /ws, GET /healthz and
// GET /readyz.
func (s *Server) Handler() http.Handler { return s.mux }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

func (s *Server) now() time.Time { return s.opts.Now() }

// enter counts one more goroutine of the server, unless it is shutting
// down. Every enter that returns true is paired with s.wg.Done.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// serveWS checks an upgrade request, upgrades it and serves the connection
// until it ends.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeJSON(w, http.StatusServiceUnavailable, httpError{"unavailable", "the server is shutting down; retry shortly"})
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			s.wg.Done()
		}
	}()
	ip := s.clientIP(r)
	if !originAllowed(r, s.opts.Server.AllowedOrigins) {
		writeJSON(w, http.StatusForbidden, httpError{"forbidden", "origin not allowed"})
		return
	}
	if !s.ipLimit.allow(ip, s.now()) {
		writeJSON(w, http.StatusTooManyRequests, httpError{"rate_limited",
			fmt.Sprintf("more than %d connections per minute from this address", s.limits.MaxConnectionsPerIPPerMinute)})
		return
	}
	if offered := offeredSubprotocols(r); len(offered) > 0 && !slices.ContainsFunc(offered, isSubprotocol) {
		writeJSON(w, http.StatusBadRequest, httpError{"bad_request", "unsupported subprotocol: offer " + Subprotocol})
		return
	}
	if hasQueryToken(r) && !s.opts.Server.AllowQueryToken {
		s.authFailed("", ip, "token in the query string refused: server.allow_query_token is off")
		writeJSON(w, http.StatusUnauthorized, httpError{"unauthenticated", "the access_token query parameter is off on this server " +
			"(server.allow_query_token): send the token in the first frame, or in an Authorization: Bearer header"})
		return
	}
	var claims *acl.Claims
	if token, ok, err := requestToken(r); err != nil || ok {
		if err == nil {
			claims, err = s.verify(token)
		}
		if err != nil {
			reason := redact(err.Error(), token)
			s.authFailed("", ip, reason)
			writeJSON(w, http.StatusUnauthorized, httpError{"unauthenticated", reason})
			return
		}
	}
	sb := &smallBuffers{ResponseWriter: w}
	wsc, err := websocket.Accept(sb, r, &s.accept)
	if err != nil {
		// Accept has answered; its error names no token or query.
		s.logger.Debug("ws: upgrade refused", "ip", ip, "err", err)
		return
	}
	c := newConn(s, wsc, ip)
	c.nc, c.fw = sb.nc, sb.fw
	if !s.addConn(c) {
		s.stats.closed(int(websocket.StatusGoingAway))
		wsc.Close(websocket.StatusGoingAway, "going away")
		return
	}
	// The connection gets a goroutine of its own, and this handler
	// returns: net/http then lets go of the request and of its buffers
	// (~10 KiB), which a hijacked connection no longer needs.
	handedOver = true
	go func() {
		defer s.wg.Done()
		c.serve(claims)
	}()
}

// verify checks a token; a nil error means usable claims.
func (s *Server) verify(token string) (*acl.Claims, error) {
	claims, err := s.verifier.Verify(token)
	switch {
	case err != nil:
		return nil, err
	case claims == nil || claims.UserID == "":
		return nil, fmt.Errorf("%w: token names no user", acl.ErrInvalidToken)
	}
	return claims, nil
}

// authFailed counts and audits a refused authentication.
func (s *Server) authFailed(connID, ip, reason string) {
	s.stats.authFailures.Add(1)
	s.audit.authFailed(connID, ip, reason)
}

// addConn registers an upgraded connection, unless the server is shutting
// down.
func (s *Server) addConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// register records an authenticated connection: at most
// max_connections_per_user per user, the oldest closed with 4010.
func (s *Server) register(c *conn, claims *acl.Claims) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	list := s.byUser[claims.UserID]
	for len(list) >= s.limits.MaxConnectionsPerUser {
		list[0].fail(closeInfo{code: statusReplaced, reason: "replaced: too many connections for this user", drain: true})
		list = slices.Delete(list, 0, 1)
	}
	s.byUser[claims.UserID] = append(list, c)
	s.mu.Unlock()

	s.stats.active.Add(1)
	s.stats.total.Add(1)
	s.stats.open(roleLabel(claims))
	s.stats.role("", roleLabel(claims))
	s.audit.connect(c, claims.UserID, claims.Role)
	return true
}

// dropConn forgets a connection that has ended.
func (s *Server) dropConn(c *conn) {
	s.hub.removeAll(c)
	claims := c.getClaims()
	s.mu.Lock()
	delete(s.conns, c)
	if claims != nil {
		list := s.byUser[claims.UserID]
		if i := slices.Index(list, c); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(s.byUser, claims.UserID)
		} else {
			s.byUser[claims.UserID] = list
		}
	}
	s.mu.Unlock()

	why := c.why
	s.stats.closed(int(why.code))
	if c.registered {
		s.stats.active.Add(-1)
		s.stats.role(roleLabel(claims), "")
		s.audit.disconnect(c, claims.UserID, int(why.code), why.reason, s.now().Sub(c.started), c.sent.Load())
	}
}

// revoke drops c's subscription to the channel, telling the client.
func (s *Server) revoke(c *conn, channel, reason string) {
	if !s.hub.revoke(c, channel, reason) {
		return
	}
	userID := ""
	if cl := c.getClaims(); cl != nil {
		userID = cl.UserID
	}
	s.audit.revoke(c, userID, channel, reason)
}

// control applies a control record on the hub's goroutine, at its place in
// commit order: the tables it names changed, so the cached access answers
// that depend on them go, and every subscription whose access depends on
// one of them is checked again, in the background, before anything after
// the record reaches its connection; the ones no longer allowed are revoked
// with reason "forbidden". Other connections are not delayed.
func (s *Server) control(ev *broadcaster.Event) {
	for _, t := range ev.Recheck {
		s.access.Invalidate(t)
	}
	s.aclGen.Add(1)
	work := s.hub.gate(ev.ID, func(ch *acl.Channel) bool {
		return slices.ContainsFunc(ev.Recheck, func(t string) bool { return s.access.AffectedBy(t, ch) })
	})
	if len(work) == 0 {
		return
	}
	if !s.enter() {
		// Shutting down: rather than serve them unchecked, close them.
		for _, g := range work {
			g.c.fail(closeInfo{code: websocket.StatusGoingAway, reason: "going away", drain: true})
			s.hub.ungate(g.c, g.at)
		}
		return
	}
	go func() {
		defer s.wg.Done()
		s.recheckGated(work)
	}()
}

// recheckWorkers bounds the access re-checks run at once for one control
// record (the read pool has 8 connections).
const recheckWorkers = 4

// recheckGated re-checks the gated connections' subscriptions, a few
// connections at a time, and lets each go on once its own are done.
func (s *Server) recheckGated(work []gated) {
	jobs := make(chan gated)
	var wg sync.WaitGroup
	for range min(recheckWorkers, len(work)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range jobs {
				s.recheckConn(g)
			}
		}()
	}
	for _, g := range work {
		jobs <- g
	}
	close(jobs)
	wg.Wait()
}

// recheckConn checks a held connection's subscriptions again, revokes
// what was lost, and lets it go on; a connection whose checks cannot be
// made is closed instead.
func (s *Server) recheckConn(g gated) {
	defer s.hub.ungate(g.c, g.at)
	claims := g.c.getClaims()
	for _, ch := range g.chans {
		if g.c.failed.Load() || !s.recheckHeld(g.c, claims, ch) {
			return
		}
	}
}

// recheckBackoff is how long a held re-check waits between attempts while
// the access check fails (the database is unreachable): the connection
// stays held meanwhile, and is closed once every attempt has failed.
var recheckBackoff = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}

// recheckHeld checks the held connection c's access to ch again and
// revokes it if lost. Nothing after the change reaches c meanwhile, so a
// check that fails is tried again, and when it keeps failing (or the
// server shuts down) c is closed rather than served what it may no longer
// read: it reports false then.
func (s *Server) recheckHeld(c *conn, claims *acl.Claims, ch *acl.Channel) bool {
	for attempt := 0; ; attempt++ {
		ok, err := s.access.Allowed(s.ctx, claims, ch)
		if err == nil {
			if !ok {
				s.revoke(c, ch.Name, "forbidden")
			}
			return true
		}
		if s.ctx.Err() != nil {
			c.fail(closeInfo{code: websocket.StatusGoingAway, reason: "going away", drain: true})
			return false
		}
		if attempt == len(recheckBackoff) {
			s.logger.Error("ws: access re-check after a membership change failed; the connection is closed rather than served unchecked",
				"connectionId", c.id, "channel", ch.Name, "attempts", attempt+1, "err", err)
			c.fail(closeInfo{code: websocket.StatusInternalError, reason: "access could not be checked", drain: true})
			return false
		}
		s.logger.Warn("ws: access re-check failed; trying again", "connectionId", c.id, "channel", ch.Name, "err", err)
		t := time.NewTimer(recheckBackoff[attempt])
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
	}
}

// recheck checks c's access to ch again and revokes it if lost. An access
// check that fails keeps the subscription: a database hiccup must not drop
// every client.
func (s *Server) recheck(ctx context.Context, c *conn, claims *acl.Claims, ch *acl.Channel) {
	ok, err := s.access.Allowed(ctx, claims, ch)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("ws: access re-check failed; the subscription is kept", "connectionId", c.id, "channel", ch.Name, "err", err)
		}
		return
	}
	if !ok {
		s.revoke(c, ch.Name, "forbidden")
	}
}

// Shutdown stops accepting connections (GET /ws answers 503), stops the
// hub, closes every connection with 1001 "going away" after writing what is
// already queued for it, and waits for the connections to end. When ctx
// ends first, the remaining connections are dropped at once and Shutdown
// returns ctx's error once their goroutines have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.fail(closeInfo{code: websocket.StatusGoingAway, reason: "going away", drain: true})
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.hardCancel()
		return nil
	case <-ctx.Done():
		s.hardCancel()
		// Readers wait on their sockets without a context (an idle
		// connection's read costs no timer), and a close handshake in
		// progress waits for them: close the sockets under both.
		s.mu.Lock()
		for c := range s.conns {
			if c.nc != nil {
				_ = c.nc.Close()
			}
		}
		s.mu.Unlock()
		<-done
		return fmt.Errorf("ws: shutdown: connections still draining were dropped: %w", ctx.Err())
	}
}

// ResetAll tells every connection to refetch: each is sent reset (reason
// cursor_expired) for all of its channels, which stay subscribed and go on
// live from from. Call it when the source skipped changes (its slot was
// re-created) and the log's floor was raised to from.
func (s *Server) ResetAll(from broadcaster.Cursor) {
	s.hub.resetAll(from)
}

// expired reports whether the retained log no longer holds every event
// after c.
func (s *Server) expired(c broadcaster.Cursor) bool {
	_, _, err := s.log.Since(c, 1)
	return errors.Is(err, broadcaster.ErrCursorExpired)
}

// sweepStalls closes, every stallSweep, the connections whose write has been
// blocked for longer than StallTimeout: their client stopped reading. The
// close frame waits behind the blocked write, so the client sees 4009 if it
// reads again within the close handshake's time, and an abnormal closure
// otherwise.
func (s *Server) sweepStalls(ctx context.Context) {
	t := time.NewTicker(stallSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		limit := time.Now().Add(-s.opts.StallTimeout).UnixNano()
		s.mu.Lock()
		var stalled []*conn
		for c := range s.conns {
			if ws := c.writeStart.Load(); ws != 0 && ws < limit && !c.failed.Load() {
				stalled = append(stalled, c)
			}
		}
		s.mu.Unlock()
		for _, c := range stalled {
			c.slow("slow consumer: not reading")
			// The writer is blocked in the write: close from here.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_ = c.ws.Close(statusSlowConsumer, "slow consumer: not reading")
			}()
		}
	}
}

func (s *Server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

type readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	ready, reason := true, ""
	switch {
	case closing:
		ready, reason = false, "shutting down"
	case s.opts.Ready != nil:
		ready, reason = s.opts.Ready()
	}
	if !ready {
		if reason == "" {
			reason = "not ready"
		}
		writeJSON(w, http.StatusServiceUnavailable, readiness{Ready: false, Reason: reason})
		return
	}
	writeJSON(w, http.StatusOK, readiness{Ready: true})
}

// httpError is the body of an HTTP error answer.
type httpError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// requestToken returns the token of a request: the Authorization Bearer
// header, else the access_token query parameter (which the callers accept
// only on an upgrade, and only with server.allow_query_token). ok is false when
// there is none; err is set for an Authorization header that is not a
// Bearer token.
func requestToken(r *http.Request) (token string, ok bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", false, errors.New("authorization header must be a Bearer token")
		}
		return tok, true, nil
	}
	if q := r.URL.Query(); q.Has("access_token") {
		return q.Get("access_token"), true, nil
	}
	return "", false, nil
}

// hasQueryToken reports whether the request carries an access_token query
// parameter: a token in the URL, which proxies and access logs record.
func hasQueryToken(r *http.Request) bool {
	return r.URL.Query().Has("access_token")
}

// redact keeps a verifier's message from ever carrying the token itself,
// and short.
func redact(msg, token string) string {
	if len(token) >= 4 {
		msg = strings.ReplaceAll(msg, token, "[token]")
	}
	return truncate(msg, 200)
}

// originAllowed applies server.allowed_origins the way coder/websocket's
// OriginPatterns does (Accept checks again), so that a refusal is answered
// with JSON before any other check: no Origin header (not a browser) and the
// request's own host are always allowed, and any origin when no pattern is
// set.
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if len(patterns) == 0 || origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return true
		}
	}
	return false
}

// offeredSubprotocols lists the subprotocols the client offers.
func offeredSubprotocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// clientIP is the address of the client: the socket's, or, when that is a
// trusted proxy, the nearest address in X-Forwarded-For that is not one.
func (s *Server) clientIP(r *http.Request) string {
	ip := remoteIP(r)
	if len(s.proxies) == 0 || !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !s.trusted(hop) {
			return hop
		}
		ip = hop
	}
	return ip
}

// trusted reports whether ip is one of server.trusted_proxies.
func (s *Server) trusted(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	// A prefix never contains a zoned address, so a link-local proxy
	// ("fe80::1%eth0", and "::%0" found by FuzzClientIP) was never trusted,
	// even when listed: the zone only names the interface, drop it.
	addr = addr.WithZone("").Unmap()
	for _, p := range s.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseProxies reads server.trusted_proxies: addresses or CIDRs.
func parseProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, p := range list {
		if pfx, err := netip.ParsePrefix(p); err == nil {
			pfx = pfx.Masked()
			// trusted unmaps the address it checks, so an IPv4-mapped prefix
			// ("::ffff:10.0.0.0/104", a FuzzClientIP seed) matched nothing:
			// keep it as the IPv4 prefix it stands for.
			if pfx.Addr().Is4In6() {
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
			}
			out = append(out, pfx)
			continue
		}
		addr, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("server.trusted_proxies: %q is neither an address nor a CIDR", p)
		}
		out = append(out, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
	}
	return out, nil
}

// newConnID returns a random connection id.
func newConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// roleLabel is the role a connection is counted under in Stats.ByRole.
func roleLabel(c *acl.Claims) string {
	if c == nil || c.Role == "" {
		return "none"
	}
	return c.Role
}

func isSubprotocol(p string) bool { return strings.EqualFold(p, Subprotocol) }
