package ws

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

func TestAuthWays(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.HeartbeatInterval = 7 * time.Second
		o.Server.AllowQueryToken = true
	})
	e.appendEvents(1, "class:1")
	waitFor(t, "hub at the head", func() bool { return e.srv.hub.position() == e.log.Head() })
	tests := []struct {
		name    string
		via     string
		frameID any // id of the auth frame; nil: none
		subprot string
	}{
		{name: "first frame with id", via: viaFrame, frameID: 1, subprot: Subprotocol},
		{name: "first frame without id", via: viaFrame, subprot: Subprotocol},
		{name: "authorization header", via: viaHeader, subprot: Subprotocol},
		{name: "query parameter, no subprotocol offered", via: viaQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expires := time.Now().Add(time.Hour).Truncate(time.Millisecond)
			tok := e.ver.add("tok-"+tt.name, "19", "teacher", expires)
			c, _, err := e.dial(tt.via, tok, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if got := c.c.Subprotocol(); got != tt.subprot {
				t.Errorf("subprotocol %q, want %q", got, tt.subprot)
			}
			if tt.via == viaFrame {
				m := map[string]any{"type": "auth", "token": tok}
				if tt.frameID != nil {
					m["id"] = tt.frameID
				}
				b, _ := json.Marshal(m)
				if err := c.sendRaw(string(b)); err != nil {
					t.Fatal(err)
				}
			}
			w := c.expect("welcome")
			if w.str("userId") != "19" || w.str("connectionId") == "" || w["heartbeatMs"] != 7000.0 {
				t.Errorf("welcome %v", w)
			}
			if w.str("cursor") != e.log.Head().String() {
				t.Errorf("welcome cursor %q, want the head %v", w.str("cursor"), e.log.Head())
			}
			if tt.frameID != nil {
				a := c.expect("authed")
				if a["id"] != 1.0 || a.str("userId") != "19" || a.str("role") != "teacher" || a["expiresAt"] != float64(expires.UnixMilli()) {
					t.Errorf("authed %v", a)
				}
			}
			if before := c.ping(); len(before) != 0 {
				t.Errorf("unexpected messages %v", before)
			}
		})
	}
	if st := e.srv.Stats(); st.ConnectionsActive != 4 || st.ConnectionsTotal != 4 || st.ByRole["teacher"] != 4 {
		t.Errorf("stats %+v", st)
	}
}

func TestUpgradeRefusedWithBadToken(t *testing.T) {
	e := newEnv(t, allowQueryToken)
	for _, via := range []string{viaHeader, viaQuery} {
		t.Run(via, func(t *testing.T) {
			_, resp, err := e.dial(via, "forged", nil)
			if err == nil {
				t.Fatal("dial succeeded")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("response %v, want 401", resp)
			}
			body := readJSON(t, resp)
			if body["error"] != "unauthenticated" || !strings.Contains(body["message"].(string), "invalid token") {
				t.Errorf("body %v", body)
			}
		})
	}
	if got := e.srv.Stats().AuthFailures; got != 2 {
		t.Errorf("AuthFailures %d, want 2", got)
	}
}

func TestFirstFrameRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AuthTimeout = 300 * time.Millisecond })
	tests := []struct {
		name  string
		frame string // "" sends nothing
	}{
		{name: "bad token", frame: `{"type":"auth","token":"forged"}`},
		{name: "not auth", frame: `{"id":1,"type":"subscribe","channels":["class:1"]}`},
		{name: "not JSON", frame: `hello`},
		{name: "auth without token", frame: `{"type":"auth"}`},
		{name: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := e.dial(viaFrame, "", nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if tt.frame != "" {
				if err := c.sendRaw(tt.frame); err != nil {
					t.Fatal(err)
				}
			}
			if before := c.expectClose(statusUnauthenticated); len(before) != 0 {
				t.Errorf("messages before the close: %v", before)
			}
		})
	}
	waitFor(t, "connections closed", func() bool { return e.srv.Stats().ClosesByCode[4001] == uint64(len(tests)) })
	if st := e.srv.Stats(); st.AuthFailures != uint64(len(tests)) || st.ConnectionsTotal != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSubscribe(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxSubscriptionsPerConn = 3 })
	e.acc.grant("19", "class:42", "exam:7", "class:1", "class:2")
	c := e.connect("19", "teacher")

	// A request names at most max_subscriptions_per_connection channels.
	for _, req := range []struct {
		channels []string
		granted  string
		refused  []struct{ channel, code string }
	}{
		{[]string{"class:42", "class:43", "nope:1"}, "class:42", []struct{ channel, code string }{
			{"class:43", "forbidden"}, {"nope:1", "unknown_channel"}}},
		{[]string{"class:bad!", "exam:7", "class:42"}, "exam:7,class:42", []struct{ channel, code string }{
			{"class:bad!", "invalid_channel"}}},
	} {
		id := c.request("subscribe", map[string]any{"channels": req.channels})
		sub := c.expect("subscribed")
		if sub["id"] != id || strings.Join(sub.strs("channels"), ",") != req.granted {
			t.Errorf("subscribed %v, want %s", sub, req.granted)
		}
		if _, err := broadcaster.ParseCursor(sub.str("cursor")); err != nil {
			t.Errorf("subscribed cursor: %v", err)
		}
		for _, want := range req.refused {
			m := c.expect("error")
			if m["id"] != id || m.str("channel") != want.channel || m.str("code") != want.code || m.str("message") == "" {
				t.Errorf("got %v, want %s for %s", m, want.code, want.channel)
			}
		}
	}

	id := c.request("subscribe", map[string]any{"channels": []string{"class:1", "class:2", "exam:7"}})
	if sub := c.expect("subscribed"); strings.Join(sub.strs("channels"), ",") != "class:1,exam:7" {
		t.Errorf("subscribed %v", sub)
	}
	if m := c.expect("error"); m["id"] != id || m.str("code") != "too_many_subscriptions" || m.str("channel") != "class:2" {
		t.Errorf("got %v, want too_many_subscriptions", m)
	}
	if got := e.srv.Stats().Subscriptions; got != 3 {
		t.Errorf("Subscriptions %d, want 3", got)
	}
	audit := e.audit.String()
	for _, want := range []string{
		`"event":"subscribe_denied"`, `"channel":"class:43","code":"forbidden"`,
		`"channel":"nope:1","code":"unknown_channel"`, `"channel":"class:2","code":"too_many_subscriptions"`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s:\n%s", want, audit)
		}
	}
}

func TestSubscribeWithSince(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	id := c.request("subscribe", map[string]any{"channels": []string{"class:1"}, "since": "garbage"})
	if m := c.expect("error"); m["id"] != id || m.str("code") != "bad_request" {
		t.Errorf("got %v, want bad_request", m)
	}
	id = c.request("subscribe", map[string]any{"channels": []string{"class:1"}, "since": broadcaster.Cursor{LSN: 1}.String()})
	if m := c.expect("subscribed"); m["id"] != id {
		t.Errorf("got %v", m)
	}
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:42", "exam:7")
	c := e.connect("19", "teacher")
	c.subscribe("class:42", "exam:7")
	id := c.request("unsubscribe", map[string]any{"channels": []string{"class:42"}})
	if m := c.expect("unsubscribed"); m["id"] != id || strings.Join(m.strs("channels"), ",") != "class:42" {
		t.Errorf("unsubscribed %v", m)
	}
	e.appendEvents(1, "class:42")
	ev := e.appendEvents(1, "exam:7", "class:42")
	m := c.expect("event")
	if strings.Join(m.strs("channels"), ",") != "exam:7" || m["event"].(map[string]any)["eventId"] != ev[0].ID.String() {
		t.Errorf("event %v", m)
	}
	if got := e.srv.Stats().Subscriptions; got != 1 {
		t.Errorf("Subscriptions %d, want 1", got)
	}
}

func TestPing(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("19", "teacher")
	evs := e.appendEvents(3, "class:1")
	waitFor(t, "hub at the head", func() bool { return e.srv.hub.position() == e.log.Head() })
	if err := c.sendRaw(`{"id":"abc","type":"ping"}`); err != nil {
		t.Fatal(err)
	}
	m := c.expect("pong")
	if m["id"] != "abc" {
		t.Errorf("pong id %v, want \"abc\"", m["id"])
	}
	if cur, err := broadcaster.ParseCursor(m.str("cursor")); err != nil || cur.Before(evs[2].ID) {
		t.Errorf("pong cursor %q (%v), want at least %v", m.str("cursor"), err, evs[2].ID)
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:42")
	c := e.connect("19", "teacher")
	c.subscribe("class:42", "role:teacher")

	t.Run("same subject", func(t *testing.T) {
		expires := time.Now().Add(2 * time.Hour).Truncate(time.Millisecond)
		tok := e.ver.add("refresh-1", "19", "teacher", expires)
		id := c.request("auth", map[string]any{"token": tok})
		m := c.expect("authed")
		if m["id"] != id || m["expiresAt"] != float64(expires.UnixMilli()) || m.str("userId") != "19" {
			t.Errorf("authed %v", m)
		}
	})
	t.Run("subject mismatch", func(t *testing.T) {
		id := c.request("auth", map[string]any{"token": e.token("20", "teacher")})
		if m := c.expect("error"); m["id"] != id || m.str("code") != "subject_mismatch" {
			t.Errorf("got %v, want subject_mismatch", m)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		id := c.request("auth", map[string]any{"token": "forged"})
		if m := c.expect("error"); m["id"] != id || m.str("code") != "unauthenticated" {
			t.Errorf("got %v, want unauthenticated", m)
		}
	})
	t.Run("revokes what the new claims lose", func(t *testing.T) {
		id := c.request("auth", map[string]any{"token": e.token("19", "student")})
		if m := c.expect("revoked"); m.str("channel") != "role:teacher" || m.str("reason") != "forbidden" {
			t.Errorf("got %v, want revoked role:teacher", m)
		}
		if m := c.expect("authed"); m["id"] != id || m.str("role") != "student" {
			t.Errorf("authed %v", m)
		}
	})
	ev := e.appendEvents(1, "role:teacher", "class:42")
	if m := c.expect("event"); strings.Join(m.strs("channels"), ",") != "class:42" || m["event"].(map[string]any)["eventId"] != ev[0].ID.String() {
		t.Errorf("event %v, want it on class:42 only", m)
	}
	st := e.srv.Stats()
	if st.Revocations != 1 || st.ByRole["student"] != 1 || st.ByRole["teacher"] != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(e.audit.String(), `"event":"revoke","connectionId"`) {
		t.Errorf("no revoke in the audit log:\n%s", e.audit.String())
	}
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TokenExpiryWarning = 300 * time.Millisecond })
	t.Run("warned then closed", func(t *testing.T) {
		expires := time.Now().Add(600 * time.Millisecond)
		c, _, err := e.dial(viaHeader, e.ver.add("short", "19", "teacher", expires), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.expect("welcome")
		m := c.expect("token_expiring")
		if m["expiresAt"] != float64(expires.UnixMilli()) {
			t.Errorf("token_expiring %v, want expiresAt %d", m, expires.UnixMilli())
		}
		if left := time.Until(expires); left > 400*time.Millisecond {
			t.Errorf("token_expiring came %v before the expiry", left)
		}
		c.expectClose(statusUnauthenticated)
		if time.Now().Before(expires) {
			t.Error("closed before the expiry")
		}
	})
	t.Run("refresh resets the timers", func(t *testing.T) {
		expires := time.Now().Add(600 * time.Millisecond)
		c, _, err := e.dial(viaHeader, e.ver.add("short-2", "19", "teacher", expires), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.expect("welcome")
		c.expect("token_expiring")
		c.request("auth", map[string]any{"token": e.ver.add("longer", "19", "teacher", time.Now().Add(time.Hour))})
		c.expect("authed")
		time.Sleep(time.Until(expires) + 200*time.Millisecond)
		if before := c.ping(); len(before) != 0 {
			t.Errorf("unexpected %v", before)
		}
	})
}

func TestBadFrames(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect("19", "teacher")
	tests := []struct {
		name  string
		frame string
		id    any
	}{
		{"not JSON", `{"id":1,`, nil},
		{"not an object", `[1,2]`, nil},
		{"null", `null`, nil},
		{"unknown type", `{"id":5,"type":"nope"}`, 5.0},
		{"missing type", `{"id":"x"}`, "x"},
		{"missing id", `{"type":"ping"}`, nil},
		{"object id", `{"id":{},"type":"ping"}`, nil},
		{"channels not a list", `{"id":8,"type":"subscribe","channels":"class:1"}`, 8.0},
		{"missing channels", `{"id":9,"type":"unsubscribe"}`, 9.0},
		{"bad since", `{"id":10,"type":"subscribe","channels":[],"since":17}`, 10.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.sendRaw(tt.frame); err != nil {
				t.Fatal(err)
			}
			m := c.expect("error")
			if m.str("code") != "bad_request" || m["id"] != tt.id || m.str("message") == "" {
				t.Errorf("got %v, want bad_request with id %v", m, tt.id)
			}
		})
	}
	// Ten bad frames in a row: the connection still serves...
	if before := c.ping(); len(before) != 0 {
		t.Errorf("unexpected %v", before)
	}
	// ...and the eleventh within the minute closes it.
	if err := c.sendRaw(`{}`); err != nil {
		t.Fatal(err)
	}
	before := c.expectClose(websocket.StatusPolicyViolation)
	if len(before) != 1 || before[0].str("code") != "bad_request" {
		t.Errorf("before the close: %v", before)
	}
}

func TestFrameTooLarge(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxFrameBytes = 1024 })
	c := e.connect("19", "teacher")
	big := `{"id":1,"type":"ping","pad":"` + strings.Repeat("x", 2000) + `"}`
	_ = c.sendRaw(big)
	c.expectClose(websocket.StatusMessageTooBig)
	waitFor(t, "the close counted", func() bool { return e.srv.Stats().ClosesByCode[1009] == 1 })
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxMessagesPerSecond = 5 })
	c := e.connect("19", "teacher")
	// The burst is 10: the eleventh is refused.
	for i := 1; i <= 11; i++ {
		if err := c.sendRaw(`{"id":` + strconv.Itoa(i) + `,"type":"ping"}`); err != nil {
			t.Fatal(err)
		}
	}
	pongs := 0
	for range 10 {
		if m := c.read(); m.str("type") == "pong" {
			pongs++
		}
	}
	if m := c.expect("error"); m.str("code") != "rate_limited" || m["id"] != 11.0 {
		t.Errorf("got %v, want rate_limited for id 11", m)
	}
	if pongs != 10 {
		t.Errorf("%d pongs, want 10", pongs)
	}
	// A client that keeps flooding is closed with 4008 (30 refusals in a row).
	go func() {
		for range 100 {
			if c.sendRaw(`{"id":0,"type":"ping"}`) != nil {
				return
			}
		}
	}()
	before := c.expectClose(statusRateLimited)
	for _, m := range before {
		if m.str("code") != "rate_limited" {
			t.Errorf("unexpected %v", m)
		}
	}
}

func TestConnectionsPerIP(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxConnectionsPerIPPerMinute = 2 })
	e.connect("19", "teacher")
	e.connect("20", "teacher")
	_, resp, err := e.dial(viaHeader, e.token("21", "teacher"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v %v, want 429", resp, err)
	}
	if body := readJSON(t, resp); body["error"] != "rate_limited" {
		t.Errorf("body %v", body)
	}
}

func TestConnectionsPerUser(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxConnectionsPerUser = 2 })
	first := e.connect("19", "teacher")
	second := e.connect("19", "teacher")
	other := e.connect("20", "teacher")
	third := e.connect("19", "teacher")
	first.expectClose(statusReplaced)
	for _, c := range []*client{second, third, other} {
		if before := c.ping(); len(before) != 0 {
			t.Errorf("unexpected %v", before)
		}
	}
	waitFor(t, "the replaced connection gone", func() bool { return e.srv.Stats().ConnectionsActive == 3 })
}

func TestOrigin(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		origin  string
		ok      bool
	}{
		{name: "any origin when none is configured", origin: "http://evil.example", ok: true},
		{name: "allowed origin", allowed: []string{"http://good.example"}, origin: "http://good.example", ok: true},
		{name: "pattern", allowed: []string{"*.good.example"}, origin: "https://app.good.example", ok: true},
		{name: "no origin header", allowed: []string{"http://good.example"}, ok: true},
		{name: "other origin", allowed: []string{"http://good.example"}, origin: "http://evil.example"},
		{name: "other scheme", allowed: []string{"https://good.example"}, origin: "http://good.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Server = config.Server{AllowedOrigins: tt.allowed} })
			hdr := http.Header{}
			if tt.origin != "" {
				hdr.Set("Origin", tt.origin)
			}
			c, resp, err := e.dial(viaHeader, e.token("19", "teacher"), hdr)
			if tt.ok {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				c.expect("welcome")
				return
			}
			if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("dial: %v %v, want 403", resp, err)
			}
			if body := readJSON(t, resp); body["error"] != "forbidden" {
				t.Errorf("body %v", body)
			}
		})
	}
}

func TestUnsupportedSubprotocol(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, e.wsURL, &websocket.DialOptions{
		Subprotocols: []string{"mqtt"},
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + e.token("19", "teacher")}},
	})
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("dial: %v %v, want 400", resp, err)
	}
}

func TestHeartbeatDropsDeadPeer(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HeartbeatInterval = 100 * time.Millisecond })
	alive := e.connect("19", "teacher")
	// The dead one reads nothing, so its library never answers pings.
	if _, _, err := e.dial(viaHeader, e.token("20", "teacher"), nil); err != nil {
		t.Fatal(err)
	}
	// The live one answers pings while it reads.
	go func() { _, _, _ = alive.c.Read(context.Background()) }()
	waitFor(t, "the dead peer dropped", func() bool { return e.srv.Stats().ClosesByCode[1006] == 1 })
	time.Sleep(500 * time.Millisecond)
	if st := e.srv.Stats(); st.ConnectionsActive != 1 || st.ClosesByCode[1006] != 1 {
		t.Errorf("stats %+v, want the live connection kept", st)
	}
}

func TestHealth(t *testing.T) {
	ready, reason := false, "replication not connected"
	e := newEnv(t, func(o *Options) { o.Ready = func() (bool, string) { return ready, reason } })
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(e.hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readJSON(t, resp)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || body["ready"] != false || body["reason"] != reason {
		t.Errorf("/readyz %d %v", code, body)
	}
	ready = true
	if code, body := get("/readyz"); code != http.StatusOK || body["ready"] != true {
		t.Errorf("/readyz %d %v", code, body)
	}
}

func TestTokensNeverLogged(t *testing.T) {
	e := newEnv(t, allowQueryToken)
	good := e.ver.add("GOOD-QUERY-TOKEN-1234", "19", "teacher", time.Now().Add(time.Hour))
	c, _, err := e.dial(viaQuery, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	if _, resp, err := e.dial(viaQuery, "BAD-QUERY-TOKEN-5678", nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad query token: %v", err)
	} else if body := readJSON(t, resp); strings.Contains(body["message"].(string), "BAD-QUERY") {
		t.Errorf("the 401 body quotes the token: %v", body)
	}
	if _, _, err := e.dial(viaHeader, "BAD-HEADER-TOKEN-9012", nil); err == nil {
		t.Fatal("bad header token accepted")
	}
	f, _, err := e.dial(viaFrame, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.sendRaw(`{"type":"auth","token":"BAD-FRAME-TOKEN-3456"}`)
	f.expectClose(statusUnauthenticated)
	c.request("auth", map[string]any{"token": "BAD-REFRESH-TOKEN-7890"})
	if m := c.expect("error"); strings.Contains(m.str("message"), "BAD-REFRESH") {
		t.Errorf("the error quotes the token: %v", m)
	}
	c.c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "disconnect audited", func() bool { return strings.Contains(e.audit.String(), `"disconnect"`) })
	out := e.audit.String() + e.logs.String()
	for _, secret := range []string{"QUERY-TOKEN", "HEADER-TOKEN", "FRAME-TOKEN", "REFRESH-TOKEN", "access_token"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s found in the logs:\n%s", secret, out)
		}
	}
	for _, want := range []string{`"event":"connect"`, `"event":"auth_failed"`, `"event":"disconnect"`, `"code":1000`, `"messages_sent":`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %s:\n%s", want, out)
		}
	}
}

func TestShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	a := e.connect("19", "teacher")
	a.subscribe("class:1")
	b := e.connect("20", "student")
	pending, _, err := e.dial(viaFrame, "", nil) // not yet authenticated
	if err != nil {
		t.Fatal(err)
	}
	e.appendEvents(5, "class:1")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	if got := a.expectClose(websocket.StatusGoingAway); len(got) > 5 {
		t.Errorf("a got %d messages before the close", len(got))
	}
	b.expectClose(websocket.StatusGoingAway)
	pending.expectClose(websocket.StatusGoingAway)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, resp, err := e.dial(viaHeader, e.token("19", "teacher"), nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after shutdown: %v, want 503", err)
	}
	if st := e.srv.Stats(); st.ConnectionsActive != 0 || st.ClosesByCode[1001] != 3 || st.Subscriptions != 0 {
		t.Errorf("stats %+v", st)
	}
	e.close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines, %d before the server:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	c.subscribe("class:1")
	// The client reads nothing from now on, so it never answers the close
	// frame: the close handshake would wait 5 s for it.
	e.appendEvents(10, "class:1")
	waitFor(t, "events written", func() bool { return e.srv.Stats().EventsDelivered == 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown returned nil, want the deadline's error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v, past its deadline", d)
	}
	if st := e.srv.Stats(); st.ConnectionsActive != 0 {
		t.Errorf("stats %+v", st)
	}
}
