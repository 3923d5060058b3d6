package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// A small WebSocket client of the gateway (docs/protocol.md) for the
// end-to-end tests: dial with the token on the upgrade request or in the
// first frame, send JSON, read the next message with a timeout, expect a
// close code. Frames are read by a goroutine of the client into an
// unbounded queue (and parsed only when the test takes them, so the client
// reads as fast as the socket allows), so that a test can wait for a
// message, or make sure none comes, without cancelling a Read (which would
// close the connection).

// Gateway test settings, shared with config edits in gateway_test.go.
const (
	gwSecret   = "integration-gateway-secret-0123456789abcdef" // ≥ 32 bytes: no short-secret warning
	gwIssuer   = "treasure-home"                               // config.example.yaml's auth.jwt.issuer
	gwAudience = "realtime"                                    // config.example.yaml's auth.jwt.audience
	gwWait     = 10 * time.Second                              // how long a test waits for one message
)

// gwAuth says where a client puts its token.
type gwAuth int

const (
	gwViaHeader gwAuth = iota // Authorization: Bearer on the upgrade request
	gwViaQuery                // ?access_token= on the upgrade request
	gwViaFrame                // {"type":"auth"} as the first frame
	gwNoToken                 // nothing: the test sends what it wants
)

// gwMsg is one server → client message. Raw keeps the frame as sent.
type gwMsg struct {
	Raw          string          `json:"-"`
	At           time.Time       `json:"-"` // when the client read it
	Type         string          `json:"type"`
	ID           json.RawMessage `json:"id"`
	Code         string          `json:"code"`
	Channel      string          `json:"channel"`
	Channels     []string        `json:"channels"`
	Cursor       string          `json:"cursor"`
	UserID       string          `json:"userId"`
	Role         string          `json:"role"`
	ExpiresAt    int64           `json:"expiresAt"`
	Reason       string          `json:"reason"`
	Message      string          `json:"message"`
	ConnectionID string          `json:"connectionId"`
	HeartbeatMS  int64           `json:"heartbeatMs"`
	Event        *Event          `json:"event"`
}

// idIs reports whether the message echoes the numeric request id.
func (m gwMsg) idIs(id int) bool { return string(m.ID) == strconv.Itoa(id) }

func (m gwMsg) String() string { return m.Raw }

// parseGwMsg decodes a server frame, numbers as json.Number.
func parseGwMsg(b []byte) (gwMsg, error) {
	var m gwMsg
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("decode server frame %q: %w", b, err)
	}
	m.Raw = string(b)
	return m, nil
}

// gwClient is one test connection to the gateway.
type gwClient struct {
	t    testing.TB
	name string
	c    *websocket.Conn

	reading atomic.Bool
	nextID  atomic.Int64

	mu      sync.Mutex    // guards the fields below
	queue   []rawFrame    // read, not yet parsed: the reader only reads
	readErr error         // why the reader stopped; nil while it runs
	changed chan struct{} // closed and replaced on every change
}

// gwDial opens a connection to wsURL with the token placed as via says;
// header adds request headers (Origin, ...). The reader goroutine starts
// at once unless noRead is set (see startReading). On a refused upgrade
// the response is returned with the error.
func gwDial(t testing.TB, name, wsURL string, via gwAuth, token string, header http.Header, noRead bool) (*gwClient, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	for k, v := range header {
		h[k] = v
	}
	u := wsURL
	switch via {
	case gwViaHeader:
		h.Set("Authorization", "Bearer "+token)
	case gwViaQuery:
		u += "?access_token=" + url.QueryEscape(token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gwWait)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{"cdc.v1"}}
	if noRead {
		// A client that stops reading, with a fixed receive buffer: left to
		// autotune, Linux loopback buffers take in megabytes of frames
		// before the server's writes block, and the stall is seen later.
		d := &net.Dialer{}
		opts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				_ = nc.(*net.TCPConn).SetReadBuffer(128 << 10)
			}
			return nc, err
		}}}
	}
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 20)
	cl := &gwClient{t: t, name: name, c: c, changed: make(chan struct{})}
	t.Cleanup(func() { _ = c.CloseNow() })
	if via == gwViaFrame {
		auth, _ := json.Marshal(map[string]any{"type": "auth", "token": token})
		if err := cl.write(websocket.MessageText, auth); err != nil {
			return nil, resp, fmt.Errorf("send the auth frame: %w", err)
		}
	}
	if !noRead {
		cl.startReading()
	}
	return cl, resp, nil
}

// gwConnect dials with the token as via says and waits for welcome.
func gwConnect(t testing.TB, name, wsURL string, via gwAuth, token string) *gwClient {
	t.Helper()
	c, resp, err := gwDial(t, name, wsURL, via, token, nil, false)
	if err != nil {
		t.Fatalf("%s: dial: %v (%s)", name, err, respStatus(resp))
	}
	if m := c.next(gwWait); m.Type != "welcome" {
		t.Fatalf("%s: first message %s, want welcome", name, m)
	}
	return c
}

func respStatus(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	return "HTTP " + resp.Status
}

// startReading starts the reader goroutine (once).
func (c *gwClient) startReading() {
	if c.reading.Swap(true) {
		return
	}
	go func() {
		for {
			typ, b, err := c.c.Read(context.Background())
			if err == nil && typ != websocket.MessageText {
				err = fmt.Errorf("server sent a %v frame", typ)
			}
			at := time.Now()
			c.mu.Lock()
			if err != nil {
				c.readErr = err
			} else {
				c.queue = append(c.queue, rawFrame{b, at})
			}
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

// send writes v as one JSON text frame.
func (c *gwClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("%s: marshal %v: %v", c.name, v, err)
	}
	c.sendRaw(websocket.MessageText, b)
}

// sendRaw writes one frame as is.
func (c *gwClient) sendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	if err := c.write(typ, b); err != nil {
		c.t.Fatalf("%s: write %.80q: %v", c.name, b, err)
	}
}

func (c *gwClient) write(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), gwWait)
	defer cancel()
	return c.c.Write(ctx, typ, b)
}

// request sends {"id":N,"type":typ,...fields} with a fresh id and returns
// the id.
func (c *gwClient) request(typ string, fields map[string]any) int {
	c.t.Helper()
	id := int(c.nextID.Add(1))
	m := map[string]any{"id": id, "type": typ}
	for k, v := range fields {
		m[k] = v
	}
	c.send(m)
	return id
}

// rawFrame is a frame as read, and when.
type rawFrame struct {
	b  []byte
	at time.Time
}

// poll returns the next queued message, or ok false with the reader's
// error (nil while it runs). A frame that is not a JSON object is an
// error too.
func (c *gwClient) poll() (m gwMsg, ok bool, changed chan struct{}, err error) {
	c.mu.Lock()
	if len(c.queue) == 0 {
		defer c.mu.Unlock()
		return gwMsg{}, false, c.changed, c.readErr
	}
	f := c.queue[0]
	c.queue[0] = rawFrame{}
	c.queue = c.queue[1:]
	c.mu.Unlock()
	m, err = parseGwMsg(f.b)
	if err != nil {
		return m, false, nil, err
	}
	m.At = f.at
	return m, true, nil, nil
}

// tryNext returns the next message within timeout; ok is false on timeout
// and err is set when the connection ended.
func (c *gwClient) tryNext(timeout time.Duration) (gwMsg, bool, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m, ok, changed, err := c.poll()
		if ok {
			return m, true, nil
		}
		if err != nil {
			return m, false, err
		}
		select {
		case <-changed:
		case <-deadline.C:
			return m, false, nil
		}
	}
}

// next returns the next message, failing the test on timeout or close.
func (c *gwClient) next(timeout time.Duration) gwMsg {
	c.t.Helper()
	m, ok, err := c.tryNext(timeout)
	switch {
	case err != nil:
		c.t.Fatalf("%s: connection ended while waiting for a message: %v (close status %d)", c.name, err, websocket.CloseStatus(err))
	case !ok:
		c.t.Fatalf("%s: no message within %v", c.name, timeout)
	}
	return m
}

// waitFor returns the first message for which match is true, skipping the
// others (they are returned too, in order).
func (c *gwClient) waitFor(timeout time.Duration, what string, match func(gwMsg) bool) (gwMsg, []gwMsg) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var skipped []gwMsg
	for {
		left := time.Until(deadline)
		m, ok, err := c.tryNext(max(left, 0))
		switch {
		case err != nil:
			c.t.Fatalf("%s: connection ended (close status %d: %v) while waiting for %s; skipped %v", c.name, websocket.CloseStatus(err), err, what, skipped)
		case !ok:
			c.t.Fatalf("%s: no %s within %v; got %v", c.name, what, timeout, skipped)
		case match(m):
			return m, skipped
		}
		skipped = append(skipped, m)
	}
}

// reply waits for the reply (any type) to request id.
func (c *gwClient) reply(id int) gwMsg {
	c.t.Helper()
	m, _ := c.waitFor(gwWait, fmt.Sprintf("reply to request %d", id), func(m gwMsg) bool { return m.idIs(id) })
	return m
}

// subscribe subscribes to channels and returns the channels granted and,
// per refused channel, its error code. It reads the subscribed reply, then
// one error per channel not granted (the gateway sends them right after),
// skipping events; anything else fails the test.
func (c *gwClient) subscribe(channels ...string) (granted []string, refused map[string]string) {
	c.t.Helper()
	id := c.request("subscribe", map[string]any{"channels": channels})
	isReply := func(m gwMsg) bool { return m.idIs(id) }
	m, skipped := c.waitFor(gwWait, "subscribed", isReply)
	if m.Type != "subscribed" {
		c.t.Fatalf("%s: reply to subscribe %q: %s", c.name, channels, m)
	}
	granted = m.Channels
	distinct := map[string]bool{}
	for _, ch := range channels {
		distinct[ch] = true
	}
	refused = map[string]string{}
	for len(refused) < len(distinct)-len(granted) {
		var more []gwMsg
		m, more = c.waitFor(gwWait, "refusal", isReply)
		skipped = append(skipped, more...)
		if m.Type != "error" || m.Channel == "" {
			c.t.Fatalf("%s: after subscribed to %q: %s, want an error naming a channel", c.name, channels, m)
		}
		refused[m.Channel] = m.Code
	}
	for _, s := range skipped {
		if s.Type != "event" {
			c.t.Fatalf("%s: unexpected message while subscribing: %s", c.name, s)
		}
	}
	return granted, refused
}

// mustSubscribe subscribes and fails unless every channel is granted.
func (c *gwClient) mustSubscribe(channels ...string) {
	c.t.Helper()
	granted, refused := c.subscribe(channels...)
	if len(refused) > 0 || len(granted) != len(channels) {
		c.t.Fatalf("%s: subscribe %v: granted %v, refused %v", c.name, channels, granted, refused)
	}
}

// ping sends a ping and waits for its pong, failing on anything else
// but events.
func (c *gwClient) ping() gwMsg {
	c.t.Helper()
	id := c.request("ping", nil)
	m, skipped := c.waitFor(gwWait, "pong", func(m gwMsg) bool { return m.idIs(id) })
	if m.Type != "pong" {
		c.t.Fatalf("%s: reply to ping: %s", c.name, m)
	}
	for _, s := range skipped {
		if s.Type != "event" {
			c.t.Fatalf("%s: unexpected message before pong: %s", c.name, s)
		}
	}
	return m
}

// quiet pings and fails if any message but the pong comes first: nothing
// was queued for the connection before the ping was answered.
func (c *gwClient) quiet() {
	c.t.Helper()
	id := c.request("ping", nil)
	m, skipped := c.waitFor(gwWait, "pong", func(m gwMsg) bool { return m.idIs(id) })
	if m.Type != "pong" || len(skipped) > 0 {
		c.t.Fatalf("%s: want only the pong, got %v then %s", c.name, skipped, m)
	}
}

// readSync reads one message directly, for a client whose reader has not
// started (it must never be used once it has).
func (c *gwClient) readSync(timeout time.Duration) gwMsg {
	c.t.Helper()
	if c.reading.Load() {
		c.t.Fatalf("%s: readSync on a client with a reader", c.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	m, err := parseGwMsg(b)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// nextEvent waits for the next event of the given type, skipping others.
func (c *gwClient) nextEvent(eventType string) gwMsg {
	c.t.Helper()
	m, _ := c.waitFor(gwWait, "event "+eventType, func(m gwMsg) bool {
		return m.Type == "event" && m.Event != nil && m.Event.EventType == eventType
	})
	return m
}

// expectClose reads (and drops) messages until the connection ends and
// returns the close status (-1 when it ended without a close frame) and
// how many messages were dropped.
func (c *gwClient) expectClose(timeout time.Duration) (websocket.StatusCode, int) {
	c.t.Helper()
	c.startReading()
	deadline := time.Now().Add(timeout)
	dropped := 0
	for {
		_, ok, err := c.tryNext(max(time.Until(deadline), 0))
		switch {
		case err != nil:
			return websocket.CloseStatus(err), dropped
		case !ok:
			c.t.Fatalf("%s: still open after %v (%d messages read)", c.name, timeout, dropped)
		}
		dropped++
	}
}

// close ends the connection normally.
func (c *gwClient) close() { _ = c.c.Close(websocket.StatusNormalClosure, "") }

// gwToken signs claims with HS256 and the test secret.
func gwToken(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(gwSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gwClaims are valid claims for sub and role, expiring after ttl.
func gwClaims(sub, role string, ttl time.Duration) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": sub, "role": role, "iss": gwIssuer, "aud": gwAudience,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
}

// gwUserToken is a valid one-hour token for sub with role.
func gwUserToken(t testing.TB, sub, role string) string {
	t.Helper()
	return gwToken(t, gwClaims(sub, role, time.Hour))
}

// gwServer is a running `serve` with the example school.
type gwServer struct {
	db   *DB
	proc *Proc
	// addr is host:port of the HTTP listener; wsURL its ws:// /ws URL.
	addr, wsURL string
}

var servingListen = regexp.MustCompile(`"msg":"serving"[^\n]*"listen":"([^"]+)"`)

// startGateway makes a database with the example school, writes a config
// from config.example.yaml with the test's JWT settings, its own slot, a
// free listen port and edits, starts `serve` and waits until it listens and
// streams.
func startGateway(t *testing.T, edits map[string]any) *gwServer {
	t.Helper()
	db := NewDB(t, WithExampleData())
	all := map[string]any{
		"source.slot":     "s_" + db.Name,
		"server.listen":   "127.0.0.1:0",
		"auth.jwt.secret": gwSecret,
		// One address opens every connection of the tests.
		"limits.max_connections_per_ip_per_minute": 100000,
		"limits.max_connections_per_user":          1000,
	}
	for k, v := range edits {
		all[k] = v
	}
	cfg := WriteConfig(t, db, all)
	p := Start(t, nil, "serve", "--config", cfg)
	p.WaitStderr(t, `"msg":"serving"`, readyTimeout)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	m := servingListen.FindStringSubmatch(p.Stderr())
	if m == nil {
		t.Fatalf("serve logged no listen address:\n%s", p.Stderr())
	}
	return &gwServer{db: db, proc: p, addr: m[1], wsURL: "ws://" + m[1] + "/ws"}
}

// connect opens a header-authenticated connection for sub with role.
func (g *gwServer) connect(t testing.TB, sub, role string) *gwClient {
	t.Helper()
	return gwConnect(t, role+" "+sub, g.wsURL, gwViaHeader, gwUserToken(t, sub, role))
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
		if seen[s] < 0 {
			return false
		}
	}
	return true
}

// containsAny reports whether s contains one of subs, and which.
func containsAny(s string, subs []string) (string, bool) {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return sub, true
		}
	}
	return "", false
}
