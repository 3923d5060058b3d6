package ws

import (
	"net/http"
	"strings"
	"testing"
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
