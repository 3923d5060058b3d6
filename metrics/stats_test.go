package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// bearerAdmin is the authenticator the command wires: an acl Verifier for
// the token and Rules.IsAdmin for the role.
func bearerAdmin(t *testing.T, jwt config.JWT) Authenticator {
	t.Helper()
	v, err := acl.NewVerifier(context.Background(), jwt, acl.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	rules, err := acl.NewRules(nil, config.Auth{JWT: jwt, AdminRoles: []string{"admin", "super_admin"}}, nil, acl.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return func(r *http.Request) (admin, ok bool) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return false, false
		}
		c, err := v.Verify(tok)
		if err != nil {
			return false, false
		}
		return rules.IsAdmin(c), true
	}
}

func TestStatsHandler(t *testing.T) {
	jwt := config.JWT{Algorithms: []string{"HS256"}, Secret: "test-secret-of-some-length-0123456789", Issuer: "school"}
	mint := func(role string, ttl time.Duration) string {
		tok, err := acl.Mint(jwt, acl.MintOptions{Subject: "19", Role: role, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	other := jwt
	other.Secret = "another-secret-of-some-length-0123456789"
	forged, err := acl.Mint(other, acl.MintOptions{Subject: "19", Role: "admin", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	c := &clock{t: t0}
	m := newTestMetrics(t, c, fakeSources(t, c))
	h := StatsHandler(m.Snapshot, bearerAdmin(t, jwt))

	tests := []struct {
		name   string
		method string
		auth   string
		status int
		error  string
	}{
		{name: "no token", auth: "", status: 401, error: "unauthenticated"},
		{name: "not bearer", auth: "Basic YWRtaW46YWRtaW4=", status: 401, error: "unauthenticated"},
		{name: "forged", auth: "Bearer " + forged, status: 401, error: "unauthenticated"},
		{name: "expired", auth: mint("admin", -time.Hour), status: 401, error: "unauthenticated"},
		{name: "teacher", auth: mint("teacher", time.Hour), status: 403, error: "forbidden"},
		{name: "no role", auth: mint("", time.Hour), status: 403, error: "forbidden"},
		{name: "post", method: http.MethodPost, auth: mint("admin", time.Hour), status: 405, error: "method_not_allowed"},
		{name: "admin", auth: mint("admin", time.Hour), status: 200},
		{name: "super admin", auth: mint("super_admin", time.Hour), status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, "/api/realtime/stats", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d; want %d (body %s)", rec.Code, tc.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if tc.error != "" {
				if body["error"] != tc.error {
					t.Errorf("error %v; want %q", body["error"], tc.error)
				}
				return
			}
			for _, k := range []string{"time", "node", "role", "reader", "gateway", "events", "acl", "eventLog", "replication", "slot", "publish", "stream"} {
				if _, ok := body[k]; !ok {
					t.Errorf("no %q in %s", k, rec.Body)
				}
			}
		})
	}
}

// TestStatsJSON pins the shape of the stats document.
func TestStatsJSON(t *testing.T) {
	c := &clock{t: t0}
	m := newTestMetrics(t, c, fakeSources(t, c))
	got, err := json.MarshalIndent(m.Snapshot(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	const want = `{
  "time": "2025-11-29T10:00:00Z",
  "node": "node-a:8080",
  "role": "all",
  "reader": {
    "state": "leader",
    "since": 1764410340000
  },
  "gateway": {
    "connectionsActive": 3,
    "connectionsOpened": 7,
    "activeByRole": {
      "student": 1,
      "teacher": 2
    },
    "subscriptions": 5,
    "eventsDelivered": 40,
    "bytesSent": 4096,
    "slowConsumerCloses": 1,
    "catchUps": 2,
    "resumes": 3,
    "resets": 1,
    "closesByCode": {
      "1000": 3,
      "4009": 1
    },
    "syncRequests": {
      "events": 4,
      "forbidden": 1
    },
    "authFailures": 6,
    "subscribeRefusals": {
      "forbidden": 5
    },
    "revocations": 2
  },
  "events": {
    "emitted": 12,
    "byType": {
      "exam.submitted": 9,
      "user.created": 3
    },
    "emitDropped": {
      "channel": 2,
      "type": 0
    }
  },
  "acl": {
    "granted": 10,
    "denied": 4,
    "cacheHits": 3,
    "sqlQueries": 2
  },
  "eventLog": {
    "events": 12,
    "oldestEventTime": "2025-11-29T09:58:30Z",
    "oldestEventAgeSeconds": 90,
    "heldEvents": 3,
    "heldBytes": 900,
    "heldDropped": 2
  },
  "replication": {
    "slot": "cdc",
    "connected": true,
    "caughtUp": true,
    "receivedLsn": "0/1F00",
    "confirmedLsn": "0/1800",
    "lastCommitTime": "2025-11-29T09:59:57Z",
    "reconnects": 2,
    "lagBytes": 256,
    "lagSeconds": 3
  },
  "slot": {
    "slot": "cdc",
    "polledAt": "2025-11-29T10:00:00Z",
    "exists": true,
    "active": true,
    "walStatus": "reserved",
    "serverLsn": "0/2000",
    "confirmedFlushLsn": "0/1800",
    "walRetainedBytes": 150,
    "safeWalSizeBytes": null,
    "maxRetainedWalBytes": 100,
    "overThreshold": true,
    "lost": false,
    "pollErrors": 0
  },
  "publish": {
    "published": 14,
    "failures": 1,
    "inFlight": 2,
    "recovering": false
  },
  "stream": {
    "following": true,
    "sequence": 12,
    "lastSequence": 14,
    "lag": 2
  }
}`
	if string(got) != want {
		t.Errorf("stats JSON\n got %s\nwant %s", got, want)
	}
}
