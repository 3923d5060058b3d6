package ws

import (
	"net/http"
	"strings"
	"testing"
	"time"
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

var _ = time.Second
