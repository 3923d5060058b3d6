package ws

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// Tests of what one client may cost the gateway (issue 11): tokens in
// URLs, refused subscriptions, long channel names, /sync long-polls.

// allowQueryToken is a newEnv option: server.allow_query_token on.
func allowQueryToken(o *Options) { o.Server.AllowQueryToken = true }

// syncGet sends GET /api/realtime/sync?query with the token as a Bearer
// header (none when token is "").
func (e *env) syncGet(query, token string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.hs.URL+"/api/realtime/sync?"+query, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, readJSON(e.t, resp)
}

func TestQueryTokenOffByDefault(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token("19", "teacher")
	_, resp, err := e.dial(viaQuery, tok, nil)
	if err == nil {
		t.Fatal("upgrade with ?access_token= accepted, want 401 while server.allow_query_token is off")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("response %v, want 401", resp)
	}
	body := readJSON(t, resp)
	if msg, _ := body["message"].(string); body["error"] != "unauthenticated" || !strings.Contains(msg, "allow_query_token") {
		t.Errorf("body %v, want unauthenticated naming server.allow_query_token", body)
	}
	// The header and the first frame still work.
	e.connect("19", "teacher")
	if strings.Contains(e.audit.String()+e.logs.String(), tok) {
		t.Error("the refused token was logged")
	}
}

func TestSyncRefusesQueryToken(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow bool
	}{{"query token off", false}, {"query token on for upgrades", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Server.AllowQueryToken = tc.allow })
			tok := e.token("19", "admin")
			resp, body := e.syncGet("channels=class:1&access_token="+tok, "")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("/sync with ?access_token=: %d %v, want 401", resp.StatusCode, body)
			}
			if msg, _ := body["message"].(string); body["error"] != "unauthenticated" || !strings.Contains(msg, "Authorization") {
				t.Errorf("body %v, want unauthenticated pointing at the Authorization header", body)
			}
			if resp, body := e.syncGet("channels=class:1", tok); resp.StatusCode != http.StatusOK {
				t.Errorf("/sync with the header: %d %v", resp.StatusCode, body)
			}
		})
	}
}

func TestSyncPollLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Limits.MaxSyncPollsPerUser = 2
		o.Limits.MaxSyncPollsPerIP = 3
	})
	a, b := e.token("1", "admin"), e.token("2", "admin")
	parked := make(chan int, 3)
	park := func(tok string) {
		go func() {
			resp, _ := e.syncGet("channels=class:1&wait=2s", tok)
			parked <- resp.StatusCode
		}()
	}
	inProgress := func(user string, n int) func() bool {
		return func() bool {
			e.srv.polls.mu.Lock()
			defer e.srv.polls.mu.Unlock()
			return e.srv.polls.users[user] == n
		}
	}
	park(a)
	park(a)
	waitFor(t, "two polls of user 1", inProgress("1", 2))
	refused := func(tok, limit string) {
		t.Helper()
		resp, body := e.syncGet("channels=class:1&wait=2s", tok)
		msg, _ := body["message"].(string)
		if resp.StatusCode != http.StatusTooManyRequests || body["error"] != "rate_limited" || !strings.Contains(msg, limit) {
			t.Errorf("%d %v, want 429 rate_limited naming %s", resp.StatusCode, body, limit)
		}
	}
	refused(a, "limits.max_sync_polls_per_user")
	park(b)
	waitFor(t, "a poll of user 2", inProgress("2", 1))
	refused(b, "limits.max_sync_polls_per_ip")
	for range 3 {
		if code := <-parked; code != http.StatusOK {
			t.Errorf("a parked poll ended %d, want 200", code)
		}
	}
	if resp, body := e.syncGet("channels=class:1", a); resp.StatusCode != http.StatusOK {
		t.Errorf("after the polls ended: %d %v", resp.StatusCode, body)
	}
	if got := e.srv.Stats().SyncRequests["rate_limited"]; got != 2 {
		t.Errorf("SyncRequests[rate_limited] = %d, want 2", got)
	}
	e.srv.polls.mu.Lock()
	defer e.srv.polls.mu.Unlock()
	if len(e.srv.polls.users) != 0 || len(e.srv.polls.ips) != 0 {
		t.Errorf("counts left after every poll ended: %v %v", e.srv.polls.users, e.srv.polls.ips)
	}
}

// forbiddenClasses names n class channels nobody was granted.
func forbiddenClasses(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "class:" + strconv.Itoa(from+i)
	}
	return out
}

func (f *fakeAccess) checkCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checks
}

// TestSubscribeTooManyChannelsRefusedWhole: one frame naming thousands of
// channels cost one access check each and was answered with an error
// frame each; now it is refused whole, unchecked, with one error.
func TestSubscribeTooManyChannelsRefusedWhole(t *testing.T) {
	e := newEnv(t, nil) // max_subscriptions_per_connection 200, frames up to 64 KiB
	c := e.connect("19", "teacher")
	id := c.request("subscribe", map[string]any{"channels": forbiddenClasses(1000, 4000)})
	m := c.expect("error")
	if m["id"] != id || m.str("code") != "too_many_subscriptions" || m.str("channel") != "" || !strings.Contains(m.str("message"), "at most 200") {
		t.Errorf("got %v, want one too_many_subscriptions error without a channel", m)
	}
	if before := c.ping(); len(before) != 0 {
		t.Errorf("%d more messages before the pong, first %v", len(before), before[0])
	}
	if n := e.acc.checkCount(); n != 0 {
		t.Errorf("%d access checks, want none", n)
	}
	if got := e.srv.Stats().SubscribeRefusals; got["too_many_subscriptions"] != 1 || len(got) != 1 {
		t.Errorf("SubscribeRefusals %v, want too_many_subscriptions 1", got)
	}
	if strings.Contains(e.audit.String(), "subscribe_denied") {
		t.Errorf("a refusal per channel audited:\n%.500s", e.audit.String())
	}
}

// TestRefusedSubscriptionsBudget: a client that keeps asking for channels
// it may not read is closed 4008 once twice max_subscriptions_per_connection
// of them were refused within a minute; until then each refusal is
// answered, and the access checks stop with the close.
func TestRefusedSubscriptionsBudget(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxSubscriptionsPerConn = 10 }) // budget 20
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	for i := range 2 {
		id := c.request("subscribe", map[string]any{"channels": append(forbiddenClasses(100+10*i, 9), "class:1")})
		if m := c.expect("subscribed"); m["id"] != id || len(m.strs("channels")) != 1 {
			t.Fatalf("request %d: %v", i, m)
		}
		for range 9 {
			if m := c.expect("error"); m["id"] != id || m.str("code") != "forbidden" {
				t.Fatalf("request %d: %v, want forbidden", i, m)
			}
		}
	}
	if st := e.srv.Stats(); st.SubscribeRefusals["forbidden"] != 18 {
		t.Errorf("SubscribeRefusals %v, want forbidden 18", st.SubscribeRefusals)
	}
	c.request("subscribe", map[string]any{"channels": forbiddenClasses(200, 10)})
	before := c.expectClose(statusRateLimited)
	// Refusals 19 and 20 are answered; the 21st closes.
	if len(before) != 1+3 {
		t.Errorf("%d messages before the close, want subscribed and 3 errors: %v", len(before), before)
	}
	// class:1 once (then it is subscribed), 18 refusals, then 3.
	if n := e.acc.checkCount(); n != 1+18+3 {
		t.Errorf("%d access checks, want 22 (none after the budget ran out)", n)
	}
	waitFor(t, "disconnect audited", func() bool { return strings.Contains(e.audit.String(), `"reason":"too many refused subscriptions"`) })
}

// TestRefusalRepliesAreNotSlowConsumer: the replies of one subscribe fit
// however small the send queue: a reading client refused every channel
// of a request gets every refusal, not 4009.
func TestRefusalRepliesAreNotSlowConsumer(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Limits.SendQueue = 4
		o.Limits.MaxSubscriptionsPerConn = 100
	})
	c := e.connect("19", "teacher")
	id := c.request("subscribe", map[string]any{"channels": forbiddenClasses(1, 100)})
	c.expect("subscribed")
	for i := range 100 {
		m, err := c.tryRead(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d refusals: %v (close %d)", i, err, websocket.CloseStatus(err))
		}
		if m.str("type") != "error" || m["id"] != id {
			t.Fatalf("refusal %d: %v", i, m)
		}
	}
	if before := c.ping(); len(before) != 0 {
		t.Errorf("more before the pong: %v", before)
	}
	if n := e.srv.Stats().Overflows; n != 0 {
		t.Errorf("Overflows %d, want 0", n)
	}
}

// TestLongChannelNameCut: a channel name of thousands of bytes is refused
// without an access check, and echoed cut to 200 bytes (on a rune
// boundary, marked "...") in the error and the audit log.
func TestLongChannelNameCut(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("19", "teacher")
	long := "class:" + strings.Repeat("é", 2500)
	unknown := strings.Repeat("z", 5000)
	id := c.request("subscribe", map[string]any{"channels": []string{long, unknown}})
	c.expect("subscribed")
	for _, want := range []struct{ name, code string }{{long, "invalid_channel"}, {unknown, "unknown_channel"}} {
		m := c.expect("error")
		got := m.str("channel")
		if m["id"] != id || m.str("code") != want.code || len(got) > maxEcho+3 || !strings.HasSuffix(got, "...") ||
			!strings.HasPrefix(want.name, strings.TrimSuffix(got, "...")) || !utf8.ValidString(got) {
			t.Errorf("got %.300v, want %s naming the channel cut to %d bytes", m, want.code, maxEcho)
		}
		if len(m.str("message")) > 300 {
			t.Errorf("message of %d bytes", len(m.str("message")))
		}
	}
	if n := e.acc.checkCount(); n != 0 {
		t.Errorf("%d access checks, want none", n)
	}
	waitFor(t, "denials audited", func() bool { return strings.Count(e.audit.String(), "subscribe_denied") == 2 })
	for _, line := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		if len(line) > 600 {
			t.Errorf("audit line of %d bytes: %.300s", len(line), line)
		}
	}
}

// TestSyncBounds: a /sync naming more channels than a connection may hold
// is refused before any access check; a long name is echoed cut.
func TestSyncBounds(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxSubscriptionsPerConn = 10 })
	tok := e.token("19", "teacher")
	resp, body := e.syncGet("channels="+strings.Join(forbiddenClasses(1, 11), ","), tok)
	if resp.StatusCode != http.StatusBadRequest || body["error"] != "too_many_subscriptions" || body["channel"] != nil {
		t.Errorf("11 channels: %d %v, want 400 too_many_subscriptions naming no channel", resp.StatusCode, body)
	}
	if n := e.acc.checkCount(); n != 0 {
		t.Errorf("%d access checks, want none", n)
	}
	for _, name := range []string{strings.Repeat("z", 5000), "class:" + strings.Repeat("x", 5000)} {
		resp, body = e.syncGet("channels="+name, tok)
		ch, _ := body["channel"].(string)
		msg, _ := body["message"].(string)
		if resp.StatusCode != http.StatusBadRequest || len(ch) > maxEcho+3 || !strings.HasSuffix(ch, "...") || len(msg) > 300 {
			t.Errorf("%.20s...: %d, channel of %d bytes, message of %d, want 400 with both cut", name, resp.StatusCode, len(ch), len(msg))
		}
	}
}

// TestUnsubscribeTooManyChannelsRefusedWhole: an unsubscribe naming more
// channels than a connection may hold used to be echoed whole.
func TestUnsubscribeTooManyChannelsRefusedWhole(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxSubscriptionsPerConn = 10 })
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	c.subscribe("class:1")
	id := c.request("unsubscribe", map[string]any{"channels": append(forbiddenClasses(2, 10), "class:1")})
	if m := c.expect("error"); m["id"] != id || m.str("code") != "bad_request" || m.str("channel") != "" {
		t.Errorf("got %v, want one bad_request", m)
	}
	if got := e.srv.Stats().Subscriptions; got != 1 {
		t.Errorf("Subscriptions %d, want class:1 kept", got)
	}
}
