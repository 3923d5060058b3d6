package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
)

// TestMain fails the package when a goroutine of ws outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := waitNoPackageGoroutines(5 * time.Second); left != "" {
			fmt.Fprintf(os.Stderr, "goroutines of package ws left after the tests:\n%s\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoPackageGoroutines waits until no goroutine runs code of this
// package (besides the test's own), and returns the stacks of those left.
func waitNoPackageGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		left := packageGoroutines()
		if left == "" || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func packageGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cdc-broadcaster/ws.(*") && !strings.Contains(g, "ws.packageGoroutines") &&
			!strings.Contains(g, "ws.Test") && !strings.Contains(g, "ws.waitNoPackageGoroutines") {
			left = append(left, g)
		}
	}
	return strings.Join(left, "\n\n")
}

// fakeVerifier knows a fixed set of tokens.
type fakeVerifier struct {
	mu     sync.Mutex
	tokens map[string]acl.Claims
}

func (f *fakeVerifier) add(token, user, role string, expires time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = acl.Claims{UserID: user, Role: role, ExpiresAt: expires, All: map[string]any{"sub": user, "role": role}}
	return token
}

// Verify refuses unknown tokens with a message that quotes the token, as a
// careless verifier might: the gateway must keep it out of every log.
func (f *fakeVerifier) Verify(token string) (*acl.Claims, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.tokens[token]
	if !ok {
		return nil, fmt.Errorf("%w: unknown token %s", acl.ErrInvalidToken, token)
	}
	if !c.ExpiresAt.IsZero() && !time.Now().Before(c.ExpiresAt) {
		return nil, fmt.Errorf("%w: token expired", acl.ErrInvalidToken)
	}
	return &c, nil
}

// fakeAccess knows the channel kinds class, exam, user, role and table,
// each with one parameter; it grants admins everything, role:{r} to role
// r, and otherwise what grant says.
type fakeAccess struct {
	mu          sync.Mutex
	grants      map[string]bool // user + "|" + channel
	invalidated []string
	checks      int
}

var fakeParam = regexp.MustCompile(`^[0-9A-Za-z_-]{1,64}$`)

func (f *fakeAccess) grant(user string, channels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range channels {
		f.grants[user+"|"+ch] = true
	}
}

func (f *fakeAccess) deny(user string, channels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range channels {
		delete(f.grants, user+"|"+ch)
	}
}

func (f *fakeAccess) Resolve(name string) (*acl.Channel, error) {
	kind, param, ok := strings.Cut(name, ":")
	switch kind {
	case "class", "exam", "user", "role", "table":
	default:
		ok = false
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q fits no pattern", acl.ErrUnknownChannel, name)
	}
	if !fakeParam.MatchString(param) {
		return nil, fmt.Errorf("%w: %q: id does not match %s", acl.ErrInvalidChannel, name, fakeParam)
	}
	return &acl.Channel{Name: name, Pattern: kind + ":{id}", Params: map[string]string{"id": param}}, nil
}

func (f *fakeAccess) Allowed(ctx context.Context, c *acl.Claims, ch *acl.Channel) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	switch {
	case c.Role == "admin":
		return true, nil
	case strings.HasPrefix(ch.Pattern, "role:"):
		return ch.Params["id"] == c.Role, nil
	}
	return f.grants[c.UserID+"|"+ch.Name], nil
}

func (f *fakeAccess) Invalidate(table string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidated = append(f.invalidated, table)
}

func (f *fakeAccess) AffectedBy(table string, ch *acl.Channel) bool {
	return table == "class_teachers" && ch.Pattern == "class:{id}"
}

func (f *fakeAccess) IsAdmin(c *acl.Claims) bool { return c.Role == "admin" }

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a running gateway on a test HTTP server.
type env struct {
	t      *testing.T
	srv    *Server
	hs     *httptest.Server
	log    *eventlog.Memory
	ver    *fakeVerifier
	acc    *fakeAccess
	audit  *syncBuffer
	logs   *syncBuffer
	wsURL  string
	runErr chan error
	lsn    broadcaster.LSN

	shutdownOnce sync.Once
}

// envHorizon is the Horizon of an env's log; the events' LSNs start at
// 0x1000.
const envHorizon = 0x1000_0000

func newEnv(t *testing.T, configure func(*Options)) *env {
	t.Helper()
	e := &env{
		t: t,
		// The horizon stands for a log being rebuilt up to there after a
		// restart: cursors ahead of its head up to it are accepted.
		log:    eventlog.NewMemory(eventlog.Options{Horizon: envHorizon}),
		ver:    &fakeVerifier{tokens: make(map[string]acl.Claims)},
		acc:    &fakeAccess{grants: make(map[string]bool)},
		audit:  &syncBuffer{},
		logs:   &syncBuffer{},
		runErr: make(chan error, 1),
		lsn:    0x1000,
	}
	opts := Options{
		Log:      e.log,
		Verifier: e.ver,
		Access:   e.acc,
		Audit:    e.audit,
		Logger:   slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	e.srv = srv
	e.hs = httptest.NewServer(srv.Handler())
	e.wsURL = "ws" + strings.TrimPrefix(e.hs.URL, "http") + "/ws"
	go func() { e.runErr <- srv.Run(context.Background()) }()
	t.Cleanup(e.close)
	return e
}

// close shuts the gateway down and waits for the hub.
func (e *env) close() {
	e.shutdownOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			e.t.Errorf("Shutdown: %v", err)
		}
		if err := <-e.runErr; err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.hs.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	})
}

// token registers a token for user and role, expiring in an hour.
func (e *env) token(user, role string) string {
	return e.ver.add(fmt.Sprintf("tok-%s-%s-%d", user, role, time.Now().UnixNano()), user, role, time.Now().Add(time.Hour))
}

// appendEvents appends one transaction per event, each on the channels,
// and waits until the hub has passed them: a subscription made after it
// returns starts after them (without the wait the hub could reach them
// after the subscription and rightly deliver them live).
func (e *env) appendEvents(n int, channels ...string) []broadcaster.Event {
	evs := e.makeEvents(n, "", channels...)
	e.appendBatch(evs)
	last := evs[len(evs)-1].ID
	waitFor(e.t, "the hub past the appended events", func() bool { return !e.srv.hub.position().Before(last) })
	return evs
}

// makeEvents makes n events, one transaction each, with a payload column
// holding pad.
func (e *env) makeEvents(n int, pad string, channels ...string) []broadcaster.Event {
	evs := make([]broadcaster.Event, n)
	for i := range evs {
		e.lsn += 0x10
		data := broadcaster.Row{{Name: "id", Value: int64(i)}}
		if pad != "" {
			data = append(data, broadcaster.Field{Name: "pad", Value: pad})
		}
		evs[i] = broadcaster.Event{
			ID:        broadcaster.Cursor{LSN: e.lsn, Pos: 1},
			Type:      "exam.updated",
			Table:     "exams",
			Op:        broadcaster.OpUpdate,
			Data:      data,
			Timestamp: time.Now(),
			TxID:      uint32(e.lsn),
			Channels:  channels,
		}
	}
	return evs
}

func (e *env) appendBatch(evs []broadcaster.Event) {
	e.t.Helper()
	if len(evs) == 0 {
		return
	}
	if err := e.log.Append(context.Background(), broadcaster.Batch{Events: evs, TxEnd: evs[len(evs)-1].ID.LSN + 1}); err != nil {
		e.t.Fatalf("Append: %v", err)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// How a client hands its token over.
const (
	viaFrame  = "frame"
	viaHeader = "header"
	viaQuery  = "query"
	viaNone   = "none"
)

// dial opens a WebSocket with the token handed over as via says (for
// viaFrame, the caller sends the auth frame).
func (e *env) dial(via, token string, hdr http.Header) (*client, *http.Response, error) {
	u := e.wsURL
	if hdr == nil {
		hdr = http.Header{}
	}
	switch via {
	case viaHeader:
		hdr.Set("Authorization", "Bearer "+token)
	case viaQuery:
		u += "?access_token=" + url.QueryEscape(token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: hdr}
	if via != viaQuery {
		opts.Subprotocols = []string{Subprotocol}
	}
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		return nil, resp, err
	}
	cl := &client{t: e.t, c: c}
	e.t.Cleanup(func() { c.CloseNow() })
	return cl, resp, nil
}

// connect dials with a header token for user and role and reads welcome.
func (e *env) connect(user, role string) *client {
	e.t.Helper()
	c, _, err := e.dial(viaHeader, e.token(user, role), nil)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c.expect("welcome")
	return c
}

// connectSmallBuffer dials as user with the client socket's receive buffer
// fixed at readBuffer bytes (no autotuning to megabytes), so that what the
// server writes while the client does not read backs up, and returns the
// client before its welcome.
func (e *env) connectSmallBuffer(user, role string, readBuffer int) *client {
	e.t.Helper()
	dialer := &net.Dialer{}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(readBuffer)
		}
		return c, err
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sc, _, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{
		HTTPClient: hc,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + e.token(user, role)}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sc.CloseNow() })
	return &client{t: e.t, c: sc}
}

// client is a test WebSocket client.
type client struct {
	t  *testing.T
	c  *websocket.Conn
	id int
}

type msg map[string]any

func (m msg) str(k string) string {
	s, _ := m[k].(string)
	return s
}

func (m msg) strs(k string) []string {
	var out []string
	if l, ok := m[k].([]any); ok {
		for _, v := range l {
			s, _ := v.(string)
			out = append(out, s)
		}
	}
	return out
}

func (c *client) sendRaw(s string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.c.Write(ctx, websocket.MessageText, []byte(s))
}

// request sends a request with the next numeric id and returns that id.
func (c *client) request(typ string, fields map[string]any) float64 {
	c.t.Helper()
	c.id++
	m := map[string]any{"id": c.id, "type": typ}
	for k, v := range fields {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	if err := c.sendRaw(string(b)); err != nil {
		c.t.Fatalf("send %s: %v", typ, err)
	}
	return float64(c.id)
}

// read reads the next message, failing the test on error.
func (c *client) read() msg {
	c.t.Helper()
	m, err := c.tryRead(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) tryRead(d time.Duration) (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("frame %q: %w", b, err)
	}
	return m, nil
}

// expect reads the next message and checks its type.
func (c *client) expect(typ string) msg {
	c.t.Helper()
	m := c.read()
	if m.str("type") != typ {
		c.t.Fatalf("got %v, want a %s message", m, typ)
	}
	return m
}

// subscribe subscribes and returns the subscribed reply.
func (c *client) subscribe(channels ...string) msg {
	c.t.Helper()
	id := c.request("subscribe", map[string]any{"channels": channels})
	m := c.expect("subscribed")
	if m["id"] != id {
		c.t.Fatalf("subscribed id %v, want %v", m["id"], id)
	}
	return m
}

// ping sends ping and reads up to its pong, returning what came before.
func (c *client) ping() []msg {
	c.t.Helper()
	id := c.request("ping", nil)
	var before []msg
	for {
		m := c.read()
		if m.str("type") == "pong" && m["id"] == id {
			return before
		}
		before = append(before, m)
	}
}

// expectClose reads until the connection ends and checks the close code;
// it returns the messages read before.
func (c *client) expectClose(code websocket.StatusCode) []msg {
	c.t.Helper()
	var before []msg
	for {
		m, err := c.tryRead(10 * time.Second)
		if err != nil {
			if got := websocket.CloseStatus(err); got != code {
				c.t.Fatalf("connection ended with %v (%v), want close code %d", got, err, code)
			}
			return before
		}
		before = append(before, m)
	}
}

// readJSON reads an HTTP error answer's JSON body.
func readJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", b, err)
	}
	return m
}
