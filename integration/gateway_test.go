package integration

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// The gateway end to end: the real binary's `serve` over the example
// school, real JWTs, real WebSocket clients (wsclient_test.go), and the
// contract of docs/protocol.md and docs/config.md.

// gatewayEdits are the config edits of the shared serve of TestGateway: a
// small frame limit and message rate so the tests can cross them cheaply,
// and debug logs, so that "no token in the logs" covers them too.
var gatewayEdits = map[string]any{
	"limits.max_frame_bytes":         4096,
	"limits.max_messages_per_second": 20, // burst 40; 120 refusals in a row close with 4008
	"log.level":                      "debug",
	// TokenWays and TokenRefused cover the query parameter too.
	"server.allow_query_token": true,
}

// TestGateway runs the gateway's sub-tests on one serve and one database.
// Sub-tests that change the database use rows no other one reads.
func TestGateway(t *testing.T) {
	g := startGateway(t, gatewayEdits)
	tokens := &tokenBook{}

	t.Run("FlowExamSubmitted", func(t *testing.T) { testFlowExamSubmitted(t, g) })
	t.Run("FlowUserCreated", func(t *testing.T) { testFlowUserCreated(t, g) })
	t.Run("FlowAttendanceMarked", func(t *testing.T) { testFlowAttendanceMarked(t, g) })
	t.Run("Access", func(t *testing.T) { testAccess(t, g) })
	t.Run("AccessRevokedOnMembershipChange", func(t *testing.T) { testAccessRevoked(t, g) })
	t.Run("AccessBadChannelNames", func(t *testing.T) { testBadChannelNames(t, g) })
	t.Run("TokenRefused", func(t *testing.T) { testTokensRefused(t, g, tokens) })
	t.Run("TokenWays", func(t *testing.T) { testTokenWays(t, g, tokens) })
	t.Run("TokenRefresh", func(t *testing.T) { testTokenRefresh(t, g, tokens) })
	t.Run("TokenExpiry", func(t *testing.T) { testTokenExpiry(t, g, tokens) })
	t.Run("TokenExpiringAfterWelcome", func(t *testing.T) { testTokenExpiringAfterWelcome(t, g, tokens) })
	t.Run("OriginRefused", func(t *testing.T) { testOriginRefused(t, g) })
	t.Run("FrameBad", func(t *testing.T) { testBadFrames(t, g) })
	t.Run("FrameTooManyBad", func(t *testing.T) { testTooManyBadFrames(t, g) })
	t.Run("FrameTooLarge", func(t *testing.T) { testFrameTooLarge(t, g) })
	t.Run("FrameFlood", func(t *testing.T) { testFlood(t, g) })
	t.Run("FanoutOneFramePerEvent", func(t *testing.T) { testFanoutOneFrame(t, g) })
	t.Run("LeakFds", func(t *testing.T) { testNoFdLeak(t, g, tokens) })
	t.Run("TokenNeverLogged", func(t *testing.T) { testTokensNeverLogged(t, g, tokens) })
}

// tokenBook remembers every token the tests sent, to check none is logged.
type tokenBook struct {
	mu  sync.Mutex
	all []string
}

func (b *tokenBook) add(tok ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all = append(b.all, tok...)
}

func (b *tokenBook) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.all)
}

// dataInt reads an integer field of an event's data.
func dataInt(t *testing.T, m gwMsg, key string) int64 {
	t.Helper()
	v, ok := m.Event.Data[key]
	if !ok {
		t.Fatalf("event %s has no data.%s", m, key)
	}
	return num(t, v)
}

// onlyKeys fails unless the event's data has exactly the keys.
func onlyKeys(t *testing.T, m gwMsg, keys ...string) {
	t.Helper()
	var got []string
	for k := range m.Event.Data {
		got = append(got, k)
	}
	if !sameSet(got, keys) {
		t.Fatalf("event data keys %v, want %v (the mapping's allowlist): %s", got, keys, m)
	}
}

// testFlowExamSubmitted: a student starts and submits an exam; the
// teacher of the class, on class:<id>, receives exam.submitted.
func testFlowExamSubmitted(t *testing.T, g *gwServer) {
	// Teacher 10 teaches class 1; student 1 (user 100) is in class 1;
	// exam 1 is class 1's.
	teacher := g.connect(t, "10", "teacher")
	teacher.mustSubscribe("class:1")
	student := g.connect(t, "100", "student")
	student.mustSubscribe("student:1")

	sid := g.db.QueryInt(t, "INSERT INTO exam_sessions (exam_id, student_id, class_id) VALUES (1, 1, 1) RETURNING id")
	started := teacher.nextEvent("exam.started")
	if dataInt(t, started, "id") != sid {
		t.Fatalf("exam.started for session %d, want %d", dataInt(t, started, "id"), sid)
	}
	g.db.Exec(t, "UPDATE exam_sessions SET status = 'submitted', progress = 100, submitted_at = now() WHERE id = $1", sid)
	committed := time.Now()
	m := teacher.nextEvent("exam.submitted")
	t.Logf("exam.submitted reached the teacher %v after the commit", m.At.Sub(committed).Round(time.Millisecond))

	ev := m.Event
	if !slices.Equal(m.Channels, []string{"class:1"}) {
		t.Errorf("channels %v, want [class:1]", m.Channels)
	}
	if ev.Table != "exam_sessions" || ev.Operation != "UPDATE" {
		t.Errorf("table %q operation %q", ev.Table, ev.Operation)
	}
	onlyKeys(t, m, "id", "exam_id", "student_id", "class_id", "status", "progress")
	if dataInt(t, m, "id") != sid || dataInt(t, m, "exam_id") != 1 || dataInt(t, m, "student_id") != 1 ||
		dataInt(t, m, "class_id") != 1 || ev.Data["status"] != "submitted" {
		t.Errorf("data %v", ev.Data)
	}
	if ev.EventID == "" || ev.Cursor == "" || ev.Timestamp == 0 || ev.TxID == 0 {
		t.Errorf("event lacks ids or time: %s", m)
	}
	// The student's own dashboard sees it too, as the same event.
	sm := student.nextEvent("exam.submitted")
	if sm.Event.EventID != ev.EventID || !slices.Equal(sm.Channels, []string{"student:1"}) {
		t.Errorf("student got %s", sm)
	}
}

// testFlowUserCreated: a user created by an admin reaches two other admin
// sessions, one on role:admin and one on table:users.
func testFlowUserCreated(t *testing.T, g *gwServer) {
	onRole := g.connect(t, "2", "admin")
	onRole.mustSubscribe("role:admin")
	onTable := g.connect(t, "1", "super_admin")
	onTable.mustSubscribe("table:users")
	teacher := g.connect(t, "11", "teacher")
	teacher.mustSubscribe("role:teacher")

	id := g.db.QueryInt(t, `INSERT INTO users (email, password_hash, first_name, last_name, role, phone)
		VALUES ('new.teacher@treasurehome.school', 'secret-hash', 'New', 'Teacher', 'teacher', '+2348039999999') RETURNING id`)
	a := onRole.nextEvent("user.created")
	b := onTable.nextEvent("user.created")
	for _, m := range []gwMsg{a, b} {
		onlyKeys(t, m, "id", "role", "is_active")
		if dataInt(t, m, "id") != id || m.Event.Data["role"] != "teacher" || m.Event.Data["is_active"] != true {
			t.Errorf("data %v", m.Event.Data)
		}
		for _, secret := range []string{"secret-hash", "new.teacher@", "+2348039999999"} {
			if strings.Contains(m.Raw, secret) {
				t.Errorf("event carries %q: %s", secret, m)
			}
		}
	}
	if a.Event.EventID != b.Event.EventID {
		t.Errorf("the two sessions got different events: %s / %s", a.Event.EventID, b.Event.EventID)
	}
	if !slices.Equal(a.Channels, []string{"role:admin"}) || !slices.Equal(b.Channels, []string{"table:users"}) {
		t.Errorf("channels %v and %v", a.Channels, b.Channels)
	}
	teacher.quiet() // user events do not go to role:teacher
}

// testFlowAttendanceMarked: a teacher marks attendance; the student's
// parent, on student:<id>, receives attendance.marked; another parent
// does not.
func testFlowAttendanceMarked(t *testing.T, g *gwServer) {
	parent := g.connect(t, "200", "parent") // parent of students 1 and 31
	parent.mustSubscribe("student:1")
	other := g.connect(t, "201", "parent") // parent of students 2 and 32
	other.mustSubscribe("student:2")

	id := g.db.QueryInt(t, `INSERT INTO attendance (student_id, class_id, date, status, note, marked_by)
		VALUES (1, 1, '2025-11-03', 'late', 'bus broke down', 10) RETURNING id`)
	committed := time.Now()
	m := parent.nextEvent("attendance.marked")
	t.Logf("attendance.marked reached the parent %v after the commit", m.At.Sub(committed).Round(time.Millisecond))
	ev := m.Event
	onlyKeys(t, m, "id", "student_id", "class_id", "date", "status")
	if dataInt(t, m, "id") != id || dataInt(t, m, "student_id") != 1 || dataInt(t, m, "class_id") != 1 ||
		ev.Data["date"] != "2025-11-03" || ev.Data["status"] != "late" {
		t.Errorf("data %v", ev.Data)
	}
	if ev.UserID != "10" {
		t.Errorf("userId %q, want the marking teacher 10", ev.UserID)
	}
	if !slices.Equal(m.Channels, []string{"student:1"}) || ev.Table != "attendance" || ev.Operation != "INSERT" {
		t.Errorf("%s", m)
	}
	other.quiet()
}

// accessCase is one subscription attempt: want is "" when it is granted,
// else the error code.
type accessCase struct {
	sub, role, channel, want string
}

func testAccess(t *testing.T, g *gwServer) {
	cases := []accessCase{
		// Student 1 is user 100, in class 1.
		{"100", "student", "user:100", ""},
		{"100", "student", "user:101", "forbidden"},
		{"100", "student", "class:1", ""},
		{"100", "student", "class:2", "forbidden"},
		{"100", "student", "table:users", "forbidden"},
		{"100", "student", "table:attendance", "forbidden"},
		{"100", "student", "student:1", ""},
		{"100", "student", "student:2", "forbidden"},
		{"100", "student", "exam:1", ""},
		{"100", "student", "exam:3", "forbidden"},
		{"100", "student", "role:student", ""},
		{"100", "student", "role:admin", "forbidden"},
		{"100", "student", "school", ""},
		// Teacher 11 teaches classes 2 and 3, not 1.
		{"11", "teacher", "class:2", ""},
		{"11", "teacher", "class:3", ""},
		{"11", "teacher", "class:1", "forbidden"},
		{"11", "teacher", "student:2", ""},
		{"11", "teacher", "student:1", "forbidden"},
		{"11", "teacher", "table:users", "forbidden"},
		// Parent 200 has students 1 and 31.
		{"200", "parent", "student:1", ""},
		{"200", "parent", "student:31", ""},
		{"200", "parent", "student:2", "forbidden"},
		{"200", "parent", "class:1", "forbidden"},
		{"200", "parent", "user:100", "forbidden"},
		// Admins read everything.
		{"2", "admin", "table:users", ""},
		{"2", "admin", "class:5", ""},
		{"2", "admin", "user:100", ""},
		{"2", "admin", "student:2", ""},
	}
	// One connection per user, for all of that user's cases.
	conns := map[string]*gwClient{}
	for _, c := range cases {
		if conns[c.sub] == nil {
			conns[c.sub] = g.connect(t, c.sub, c.role)
		}
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_%s_%s", c.role, c.sub, c.channel), func(t *testing.T) {
			cl := conns[c.sub]
			cl.t = t
			granted, refused := cl.subscribe(c.channel)
			switch {
			case c.want == "" && !slices.Equal(granted, []string{c.channel}):
				t.Errorf("%s refused (%v), want granted", c.channel, refused)
			case c.want != "" && (len(granted) != 0 || refused[c.channel] != c.want):
				t.Errorf("%s: granted %v refused %v, want error %s", c.channel, granted, refused, c.want)
			}
		})
	}
	if !strings.Contains(strings.Join(g.proc.Stdout(), "\n"), `"event":"subscribe_denied"`) {
		t.Errorf("no subscribe_denied line in the audit log")
	}
}

// testAccessRevoked: removing a teacher from a class revokes their live
// subscriptions to it (class:, and exam: and student: through the class)
// within a second, and keeps the others.
func testAccessRevoked(t *testing.T, g *gwServer) {
	// Teacher 12 teaches classes 3 and 4; exam 3 and student 4 are class 4's.
	teacher := g.connect(t, "12", "teacher")
	teacher.mustSubscribe("class:3", "class:4", "exam:3", "student:4")

	g.db.Exec(t, "DELETE FROM class_teachers WHERE class_id = 4 AND teacher_id = 12")
	committed := time.Now()
	want := map[string]bool{"class:4": true, "exam:3": true, "student:4": true}
	delays := map[string]time.Duration{}
	for len(delays) < len(want) {
		m, _ := teacher.waitFor(gwWait, "revoked", func(m gwMsg) bool { return m.Type == "revoked" })
		if !want[m.Channel] || m.Reason != "forbidden" {
			t.Fatalf("revoked %s, want one of %v with reason forbidden", m, want)
		}
		delays[m.Channel] = m.At.Sub(committed)
	}
	t.Logf("revocation delays after the DELETE committed: class:4 %v, exam:3 %v, student:4 %v",
		delays["class:4"].Round(time.Millisecond), delays["exam:3"].Round(time.Millisecond), delays["student:4"].Round(time.Millisecond))
	if d := delays["class:4"]; d >= time.Second {
		t.Errorf("class:4 revoked %v after the commit, want under 1s", d)
	}
	// class:3 is kept, class:4 is gone: attendance in class 4, then in 3.
	g.db.Exec(t, "INSERT INTO attendance (student_id, class_id, date, status) VALUES (4, 4, '2025-11-04', 'present')")
	g.db.Exec(t, "INSERT INTO attendance (student_id, class_id, date, status) VALUES (3, 3, '2025-11-04', 'present')")
	m, skipped := teacher.waitFor(gwWait, "attendance of class 3", func(m gwMsg) bool { return m.Type == "event" })
	if !slices.Equal(m.Channels, []string{"class:3"}) || dataInt(t, m, "class_id") != 3 || len(skipped) > 0 {
		t.Fatalf("after the revocation got %v then %s, want only class 3's attendance on class:3", skipped, m)
	}
	// Subscribing again is refused now.
	if _, refused := teacher.subscribe("class:4"); refused["class:4"] != "forbidden" {
		t.Errorf("class:4 after the revocation: %v, want forbidden", refused)
	}
	if !strings.Contains(strings.Join(g.proc.Stdout(), "\n"), `"event":"revoke"`) {
		t.Errorf("no revoke line in the audit log")
	}
}

// testBadChannelNames: names of no pattern are unknown_channel; names
// whose parameter fails its regexp, SQL injection attempts included, are
// invalid_channel, for an admin too, and the database is untouched.
func testBadChannelNames(t *testing.T, g *gwServer) {
	users := g.db.QueryInt(t, "SELECT count(*) FROM users")
	links := g.db.QueryInt(t, "SELECT count(*) FROM class_teachers")
	admin := g.connect(t, "2", "admin")
	student := g.connect(t, "100", "student")
	cases := []struct{ channel, want string }{
		{"nosuch:1", "unknown_channel"},
		{"classes:1", "unknown_channel"},
		{"school:1", "unknown_channel"},
		{"class", "unknown_channel"},
		{"Class:1", "unknown_channel"},
		{"class:abc", "invalid_channel"},
		{"class:", "invalid_channel"},
		{"class:-1", "invalid_channel"},
		{"class:1 ", "invalid_channel"},
		{"class:1234567890123456789", "invalid_channel"},
		{"class:1' OR '1'='1", "invalid_channel"},
		{"class:1;DROP TABLE users", "invalid_channel"},
		{"class:1; DELETE FROM class_teachers; --", "invalid_channel"},
		{"user:1 OR 1=1", "invalid_channel"},
		{"student:1)/**/OR/**/(1=1", "invalid_channel"},
		{"exam:1 UNION SELECT password_hash FROM users", "invalid_channel"},
		{"table:users;DROP TABLE users", "invalid_channel"},
		{"role:admin' --", "invalid_channel"},
		{"class:1\x00", "invalid_channel"},
		{"class:1\nclass:2", "invalid_channel"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.channel, "/", "_"), func(t *testing.T) {
			for _, cl := range []*gwClient{admin, student} {
				cl.t = t
				granted, refused := cl.subscribe(c.channel)
				if len(granted) != 0 || refused[c.channel] != c.want {
					t.Errorf("%s: %q granted %v refused %v, want %s", cl.name, c.channel, granted, refused, c.want)
				}
			}
		})
	}
	admin.t, student.t = t, t
	admin.ping() // still usable
	if g.db.QueryInt(t, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'users'") != 1 {
		t.Fatal("the users table is gone")
	}
	if n := g.db.QueryInt(t, "SELECT count(*) FROM users"); n != users {
		t.Errorf("users: %d rows, %d before", n, users)
	}
	if n := g.db.QueryInt(t, "SELECT count(*) FROM class_teachers"); n != links {
		t.Errorf("class_teachers: %d rows, %d before", n, links)
	}
}

// badToken is a token the gateway must refuse.
type badToken struct {
	name, token string
}

// badTokens makes every kind of refused token.
func badTokens(t *testing.T) []badToken {
	t.Helper()
	now := time.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := gwClaims("10", "teacher", time.Hour)
		edit(c)
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The classic confusion: a token that says RS256 but is an HMAC of the
	// configured secret, as a verifier that keyed by the token's own alg
	// would accept.
	b64 := base64.RawURLEncoding.EncodeToString
	head := b64([]byte(`{"alg":"RS256","typ":"JWT"}`))
	body := b64([]byte(fmt.Sprintf(`{"sub":"10","role":"teacher","iss":%q,"aud":%q,"exp":%d}`, gwIssuer, gwAudience, now.Add(time.Hour).Unix())))
	mac := hmac.New(sha256.New, []byte(gwSecret))
	mac.Write([]byte(head + "." + body))
	confused := head + "." + body + "." + b64(mac.Sum(nil))

	return []badToken{
		{"wrong key", sign(jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), claims(func(jwt.MapClaims) {}))},
		{"expired", gwToken(t, claims(func(c jwt.MapClaims) {
			c["iat"], c["exp"] = now.Add(-time.Hour).Unix(), now.Add(-10*time.Minute).Unix()
		}))},
		{"not yet valid", gwToken(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() }))},
		{"wrong issuer", gwToken(t, claims(func(c jwt.MapClaims) { c["iss"] = "someone-else" }))},
		{"no issuer", gwToken(t, claims(func(c jwt.MapClaims) { delete(c, "iss") }))},
		{"wrong audience", gwToken(t, claims(func(c jwt.MapClaims) { c["aud"] = "billing" }))},
		{"no audience", gwToken(t, claims(func(c jwt.MapClaims) { delete(c, "aud") }))},
		{"no subject", gwToken(t, claims(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(func(jwt.MapClaims) {}))},
		{"HS512 not configured", sign(jwt.SigningMethodHS512, []byte(gwSecret), claims(func(jwt.MapClaims) {}))},
		{"RS256 fresh key", sign(jwt.SigningMethodRS256, rsaKey, claims(func(jwt.MapClaims) {}))},
		{"RS256 header HMAC-signed with the secret", confused},
		{"garbage", "garbage"},
		{"three garbage parts", "a.b.c"},
		{"truncated signature", gwUserToken(t, "10", "teacher")[:100]},
	}
}

// testTokensRefused: each bad token is answered 401 before the upgrade on
// the Authorization header and the query parameter, and closes 4001 in the
// first frame.
func testTokensRefused(t *testing.T, g *gwServer, book *tokenBook) {
	for _, bt := range badTokens(t) {
		book.add(bt.token)
		t.Run(bt.name, func(t *testing.T) {
			for _, via := range []gwAuth{gwViaHeader, gwViaQuery} {
				c, resp, err := gwDial(t, bt.name, g.wsURL, via, bt.token, nil, false)
				if err == nil {
					c.close()
					t.Fatalf("via %v: upgraded, want HTTP 401", via)
				}
				if resp == nil || resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("via %v: %v (%s), want HTTP 401", via, err, respStatus(resp))
				}
			}
			c, resp, err := gwDial(t, bt.name, g.wsURL, gwViaFrame, bt.token, nil, false)
			if err != nil {
				t.Fatalf("dial for the first frame: %v (%s)", err, respStatus(resp))
			}
			if code, n := c.expectClose(gwWait); code != 4001 || n != 0 {
				t.Errorf("first frame: close %d after %d messages, want 4001 and nothing before", code, n)
			}
		})
	}
	t.Run("first frame not auth", func(t *testing.T) {
		c, _, err := gwDial(t, "no auth", g.wsURL, gwNoToken, "", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		c.send(map[string]any{"id": 1, "type": "ping"})
		if code, _ := c.expectClose(gwWait); code != 4001 {
			t.Errorf("close %d, want 4001", code)
		}
	})
	t.Run("authorization not bearer", func(t *testing.T) {
		tok := gwUserToken(t, "10", "teacher")
		book.add(tok)
		_, resp, err := gwDial(t, "basic", g.wsURL, gwNoToken, "", http.Header{"Authorization": {"Basic " + tok}}, false)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%v (%s), want HTTP 401", err, respStatus(resp))
		}
	})
	if !strings.Contains(strings.Join(g.proc.Stdout(), "\n"), `"event":"auth_failed"`) {
		t.Errorf("no auth_failed line in the audit log")
	}
}

// testTokenWays: a good token works in the header, the query parameter
// and the first frame (with authed echoing the frame's id).
func testTokenWays(t *testing.T, g *gwServer, book *tokenBook) {
	for _, via := range []struct {
		name string
		via  gwAuth
	}{{"header", gwViaHeader}, {"query", gwViaQuery}, {"frame", gwViaFrame}} {
		t.Run(via.name, func(t *testing.T) {
			tok := gwUserToken(t, "13", "teacher")
			book.add(tok)
			c, resp, err := gwDial(t, via.name, g.wsURL, via.via, tok, nil, false)
			if err != nil {
				t.Fatalf("dial: %v (%s)", err, respStatus(resp))
			}
			if got := c.c.Subprotocol(); got != "cdc.v1" {
				t.Errorf("subprotocol %q, want cdc.v1", got)
			}
			w := c.next(gwWait)
			if w.Type != "welcome" || w.UserID != "13" || w.ConnectionID == "" || w.Cursor == "" || w.HeartbeatMS <= 0 {
				t.Fatalf("welcome %s", w)
			}
			c.mustSubscribe("class:4")
			c.ping()
		})
	}
	t.Run("frame with id", func(t *testing.T) {
		tok := gwToken(t, gwClaims("13", "teacher", time.Hour))
		book.add(tok)
		c, _, err := gwDial(t, "frame id", g.wsURL, gwNoToken, "", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		c.send(map[string]any{"id": 7, "type": "auth", "token": tok})
		if w := c.next(gwWait); w.Type != "welcome" {
			t.Fatalf("first message %s, want welcome", w)
		}
		if a := c.next(gwWait); a.Type != "authed" || !a.idIs(7) || a.UserID != "13" || a.Role != "teacher" || a.ExpiresAt == 0 {
			t.Fatalf("second message %s, want authed with id 7", a)
		}
	})
}

// testTokenRefresh: auth on a live connection with the same subject is
// authed; another subject or a bad token is refused and the connection
// keeps its token and subscriptions.
func testTokenRefresh(t *testing.T, g *gwServer, book *tokenBook) {
	// Teacher 13 teaches classes 4 and 5; student 5 is in class 5.
	c := g.connect(t, "13", "teacher")
	c.mustSubscribe("class:5")

	exp := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	same := gwToken(t, jwt.MapClaims{"sub": "13", "role": "teacher", "iss": gwIssuer, "aud": gwAudience, "exp": exp.Unix()})
	other := gwUserToken(t, "14", "teacher")
	expired := gwToken(t, gwClaims("13", "teacher", -time.Hour))
	book.add(same, other, expired)

	id := c.request("auth", map[string]any{"token": same})
	if m := c.reply(id); m.Type != "authed" || m.UserID != "13" || m.Role != "teacher" || m.ExpiresAt != exp.UnixMilli() {
		t.Fatalf("refresh with the same subject: %s, want authed expiring at %d", m, exp.UnixMilli())
	}
	id = c.request("auth", map[string]any{"token": other})
	if m := c.reply(id); m.Type != "error" || m.Code != "subject_mismatch" {
		t.Fatalf("refresh with another subject: %s, want error subject_mismatch", m)
	}
	c.ping()
	id = c.request("auth", map[string]any{"token": expired})
	if m := c.reply(id); m.Type != "error" || m.Code != "unauthenticated" {
		t.Fatalf("refresh with an expired token: %s, want error unauthenticated", m)
	}
	c.ping()
	// The connection is still teacher 13's, subscriptions kept.
	g.db.Exec(t, "INSERT INTO attendance (student_id, class_id, date, status, marked_by) VALUES (5, 5, '2025-11-05', 'absent', 13)")
	if m := c.nextEvent("attendance.marked"); !slices.Equal(m.Channels, []string{"class:5"}) {
		t.Errorf("event after the refusals: %s", m)
	}
	if _, refused := c.subscribe("class:6"); refused["class:6"] != "forbidden" {
		t.Errorf("class:6 (teacher 14's, not 13's): %v, want forbidden: the connection took the other subject's token?", refused)
	}
}

// testTokenExpiry: a token expiring in ~3 s gets token_expiring at once
// (the warning is due 60 s before expiry) and closes 4001 when it passes,
// whichever way it came.
func testTokenExpiry(t *testing.T, g *gwServer, book *tokenBook) {
	for _, via := range []struct {
		name string
		via  gwAuth
	}{{"header", gwViaHeader}, {"frame", gwViaFrame}} {
		t.Run(via.name, func(t *testing.T) {
			exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
			tok := gwToken(t, jwt.MapClaims{"sub": "14", "role": "teacher", "iss": gwIssuer, "aud": gwAudience, "exp": exp.Unix()})
			book.add(tok)
			dialed := time.Now()
			c, resp, err := gwDial(t, "expiring", g.wsURL, via.via, tok, nil, false)
			if err != nil {
				t.Fatalf("dial: %v (%s)", err, respStatus(resp))
			}
			// welcome and token_expiring, in either order here (the order
			// is TokenExpiringAfterWelcome's business).
			var warn gwMsg
			for got := map[string]bool{}; len(got) < 2; {
				m := c.next(gwWait)
				if m.Type != "welcome" && m.Type != "token_expiring" || got[m.Type] {
					t.Fatalf("unexpected %s", m)
				}
				got[m.Type] = true
				if m.Type == "token_expiring" {
					warn = m
				}
			}
			if warn.ExpiresAt != exp.UnixMilli() {
				t.Errorf("token_expiring.expiresAt %d, want %d", warn.ExpiresAt, exp.UnixMilli())
			}
			c.mustSubscribe("class:6")
			code, _ := c.expectClose(10 * time.Second)
			closed := time.Now()
			t.Logf("token_expiring %v after the dial; close %d %v after exp (token lived %v)", warn.At.Sub(dialed).Round(time.Millisecond),
				code, closed.Sub(exp).Round(time.Millisecond), exp.Sub(dialed).Round(time.Millisecond))
			if warn.At.Sub(dialed) > time.Second {
				t.Errorf("token_expiring came %v after the dial, want at once", warn.At.Sub(dialed))
			}
			if code != 4001 {
				t.Errorf("close %d, want 4001", code)
			}
			if closed.Before(exp.Add(-100*time.Millisecond)) || closed.After(exp.Add(3*time.Second)) {
				t.Errorf("closed at %v, exp %v", closed.Format(time.StampMilli), exp.Format(time.StampMilli))
			}
		})
	}
}

// testTokenExpiringAfterWelcome: welcome is the first message of a
// session, also when the token is already within its warning time; then
// token_expiring. Twenty connections, since the order is a race when
// wrong.
func testTokenExpiringAfterWelcome(t *testing.T, g *gwServer, book *tokenBook) {
	bad := 0
	for i := range 20 {
		tok := gwToken(t, gwClaims("15", "teacher", 30*time.Second))
		book.add(tok)
		via := []gwAuth{gwViaHeader, gwViaFrame}[i%2]
		c, resp, err := gwDial(t, "warned", g.wsURL, via, tok, nil, false)
		if err != nil {
			t.Fatalf("dial: %v (%s)", err, respStatus(resp))
		}
		first, second := c.next(gwWait), c.next(gwWait)
		if first.Type != "welcome" || second.Type != "token_expiring" {
			bad++
			t.Logf("connection %d (via %v): %s then %s", i, via, first.Type, second.Type)
		}
		c.close()
	}
	if bad > 0 {
		t.Errorf("%d of 20 connections got token_expiring before welcome", bad)
	}
}

// testTokensNeverLogged: no token the tests sent, and no access_token
// query, appears in serve's stderr (logs) or stdout (audit).
func testTokensNeverLogged(t *testing.T, g *gwServer, book *tokenBook) {
	toks := book.list()
	if len(toks) < 20 {
		t.Fatalf("only %d tokens recorded: run with the Token sub-tests", len(toks))
	}
	var distinct []string
	for _, tok := range toks {
		// Keep what identifies a token: its signature, or the whole of a
		// short garbage one.
		if i := strings.LastIndexByte(tok, '.'); i >= 0 && len(tok)-i > 16 {
			distinct = append(distinct, tok[i+1:])
		} else if len(tok) >= 5 {
			distinct = append(distinct, tok)
		}
		// The payload part of the real ones.
		if parts := strings.Split(tok, "."); len(parts) == 3 && len(parts[1]) > 20 {
			distinct = append(distinct, parts[1])
		}
	}
	for name, out := range map[string]string{"stderr": g.proc.Stderr(), "stdout (audit)": strings.Join(g.proc.Stdout(), "\n")} {
		if s, ok := containsAny(out, distinct); ok {
			t.Errorf("%s holds a token part %q", name, s)
		}
		if strings.Contains(out, "access_token") {
			t.Errorf("%s mentions access_token", name)
		}
	}
}

// testOriginRefused: an Origin not in server.allowed_origins is 403.
func testOriginRefused(t *testing.T, g *gwServer) {
	tok := gwUserToken(t, "10", "teacher")
	_, resp, err := gwDial(t, "evil origin", g.wsURL, gwViaHeader, tok, http.Header{"Origin": {"http://evil.example"}}, false)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("evil origin: %v (%s), want HTTP 403", err, respStatus(resp))
	}
	c, resp, err := gwDial(t, "good origin", g.wsURL, gwViaHeader, tok, http.Header{"Origin": {"http://localhost:8080"}}, false)
	if err != nil {
		t.Fatalf("allowed origin: %v (%s)", err, respStatus(resp))
	}
	c.close()
}

// testBadFrames: each malformed frame gets error bad_request (echoing its
// id when readable) and the connection stays usable.
func testBadFrames(t *testing.T, g *gwServer) {
	cases := []struct {
		name   string
		typ    websocket.MessageType
		frame  string
		withID bool // the reply echoes id 1
	}{
		{"not JSON", websocket.MessageText, `{"id":1,"type":`, false},
		{"empty", websocket.MessageText, ``, false},
		{"JSON array", websocket.MessageText, `[{"id":1,"type":"ping"}]`, false},
		{"JSON string", websocket.MessageText, `"ping"`, false},
		{"JSON null", websocket.MessageText, `null`, false},
		{"unknown type", websocket.MessageText, `{"id":1,"type":"dance"}`, true},
		{"missing type", websocket.MessageText, `{"id":1}`, true},
		{"type a number", websocket.MessageText, `{"id":1,"type":7}`, true},
		{"missing id", websocket.MessageText, `{"type":"ping"}`, false},
		{"id an object", websocket.MessageText, `{"id":{"n":1},"type":"ping"}`, false},
		{"id an array", websocket.MessageText, `{"id":[1],"type":"ping"}`, false},
		{"subscribe without channels", websocket.MessageText, `{"id":1,"type":"subscribe"}`, true},
		{"channels a string", websocket.MessageText, `{"id":1,"type":"subscribe","channels":"class:1"}`, true},
		{"channels numbers", websocket.MessageText, `{"id":1,"type":"subscribe","channels":[1,2]}`, true},
		{"unsubscribe channels an object", websocket.MessageText, `{"id":1,"type":"unsubscribe","channels":{"class:1":true}}`, true},
		{"since not a cursor", websocket.MessageText, `{"id":1,"type":"subscribe","channels":["role:teacher"],"since":"yesterday"}`, true},
		{"auth without token", websocket.MessageText, `{"id":1,"type":"auth"}`, true},
		{"auth token a number", websocket.MessageText, `{"id":1,"type":"auth","token":42}`, true},
		{"binary frame", websocket.MessageBinary, `{"id":1,"type":"ping"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := g.connect(t, "10", "teacher")
			c.sendRaw(tc.typ, []byte(tc.frame))
			m := c.next(gwWait)
			if m.Type != "error" || m.Code != "bad_request" || m.Message == "" {
				t.Fatalf("reply %s, want error bad_request", m)
			}
			if tc.withID && !m.idIs(1) {
				t.Errorf("reply %s does not echo id 1", m)
			}
			c.ping()
			c.mustSubscribe("class:1")
		})
	}
}

// testTooManyBadFrames: more than 10 bad frames within a minute close the
// connection with 1008.
func testTooManyBadFrames(t *testing.T, g *gwServer) {
	c := g.connect(t, "10", "teacher")
	for i := range 12 {
		if err := c.write(websocket.MessageText, []byte(fmt.Sprintf(`{"id":%d,"type":"nonsense"}`, i))); err != nil {
			break
		}
	}
	errs := 0
	for {
		m, ok, err := c.tryNext(gwWait)
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Fatalf("close %d after %d errors, want 1008", code, errs)
			}
			break
		}
		if !ok {
			t.Fatalf("still open after %d errors", errs)
		}
		if m.Type != "error" || m.Code != "bad_request" {
			t.Fatalf("unexpected %s", m)
		}
		errs++
	}
	t.Logf("%d bad_request errors before the 1008 close", errs)
	if errs < 10 {
		t.Errorf("only %d bad_request errors before the close, want the first 10 tolerated", errs)
	}
}

// testFrameTooLarge: a frame just under max_frame_bytes (4096) is served,
// one over it closes the connection with 1009.
func testFrameTooLarge(t *testing.T, g *gwServer) {
	c := g.connect(t, "10", "teacher")
	pad := func(n int) []byte {
		head := `{"id":1,"type":"ping","pad":"`
		return []byte(head + strings.Repeat("x", n-len(head)-2) + `"}`)
	}
	c.sendRaw(websocket.MessageText, pad(4000))
	if m := c.next(gwWait); m.Type != "pong" {
		t.Fatalf("4000-byte ping: %s, want pong", m)
	}
	c.sendRaw(websocket.MessageText, pad(5000))
	if code, n := c.expectClose(gwWait); code != websocket.StatusMessageTooBig {
		t.Errorf("5000-byte frame: close %d after %d messages, want 1009", code, n)
	}
}

// testFlood: 500 pings as fast as possible with max_messages_per_second 20
// get pongs, then rate_limited errors, then close 4008.
func testFlood(t *testing.T, g *gwServer) {
	c := g.connect(t, "10", "teacher")
	sent := 0
	for i := range 500 {
		if err := c.write(websocket.MessageText, []byte(fmt.Sprintf(`{"id":%d,"type":"ping"}`, i+1))); err != nil {
			break // closed under us: the rest is moot
		}
		sent++
	}
	pongs, limited := 0, 0
	var code websocket.StatusCode
	for {
		m, ok, err := c.tryNext(gwWait)
		if err != nil {
			code = websocket.CloseStatus(err)
			break
		}
		if !ok {
			t.Fatalf("still open after %d pongs and %d rate_limited", pongs, limited)
		}
		switch {
		case m.Type == "pong":
			pongs++
		case m.Type == "error" && m.Code == "rate_limited":
			limited++
		default:
			t.Fatalf("unexpected %s", m)
		}
	}
	t.Logf("flood: %d pings sent, %d pongs, %d rate_limited, then close %d", sent, pongs, limited, code)
	if code != 4008 || pongs == 0 || limited == 0 {
		t.Errorf("close %d after %d pongs and %d rate_limited, want pongs, rate_limited errors and 4008", code, pongs, limited)
	}
}

// testFanoutOneFrame: an event matching several channels of a connection
// is one frame listing each of them.
func testFanoutOneFrame(t *testing.T, g *gwServer) {
	admin := g.connect(t, "2", "admin")
	admin.mustSubscribe("table:exams", "exam:2", "class:1", "class:2")
	narrow := g.connect(t, "1", "super_admin")
	narrow.mustSubscribe("exam:2")

	g.db.Exec(t, "UPDATE exams SET title = title || ' (revised)', updated_by = 2 WHERE id = 2")
	m := admin.nextEvent("exam.updated")
	if !sameSet(m.Channels, []string{"exam:2", "class:1", "table:exams"}) {
		t.Errorf("channels %v, want exam:2, class:1 and table:exams (not class:2)", m.Channels)
	}
	if dataInt(t, m, "id") != 2 || m.Event.UserID != "2" {
		t.Errorf("%s", m)
	}
	admin.quiet() // no second frame of the same event
	n := narrow.nextEvent("exam.updated")
	if !slices.Equal(n.Channels, []string{"exam:2"}) || n.Event.EventID != m.Event.EventID {
		t.Errorf("narrow subscriber got %s", n)
	}
	narrow.quiet()
}

// fdCount counts the open file descriptors of a process.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("read the fds of %d: %v", pid, err)
	}
	return len(ents)
}

// stableFdCount waits until the count holds still for half a second.
func stableFdCount(t *testing.T, pid int) int {
	t.Helper()
	n := fdCount(t, pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		m := fdCount(t, pid)
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// testNoFdLeak: 200 clients connect (every way, a quarter never
// authenticating) and subscribe, all at once, then leave (half cleanly,
// half by dropping the socket); afterwards serve holds no more file
// descriptors than before, and every audited connect has its disconnect.
// (The ws unit tests check goroutine leaks with runtime.NumGoroutine; the
// binary exposes no goroutine count, so this is the process-level check.)
func testNoFdLeak(t *testing.T, g *gwServer, book *tokenBook) {
	pid := g.proc.Cmd.Process.Pid
	base := stableFdCount(t, pid)
	const clients, batch = 200, 20
	start := time.Now()
	all := make([]*gwClient, clients)
	for i := 0; i < clients; i += batch {
		var wg sync.WaitGroup
		for j := i; j < i+batch; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				all[j] = leakClient(t, g, j, book)
			}()
		}
		wg.Wait()
	}
	if t.Failed() {
		return
	}
	peak := fdCount(t, pid)
	for i, c := range all {
		if i%2 == 0 {
			go c.close()
		} else {
			_ = c.c.CloseNow()
		}
	}
	after := base
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = fdCount(t, pid)
		if after <= base || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	status := ""
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Threads:") || strings.HasPrefix(l, "VmRSS:") {
				status += "; " + strings.Join(strings.Fields(l), " ")
			}
		}
	}
	t.Logf("fds: %d before, %d with %d clients connected, %d after they left (%v in all)%s",
		base, peak, clients, after, took.Round(time.Millisecond), status)
	if peak < base+clients {
		t.Errorf("only %d fds with %d clients connected (%d before): the count does not see them", peak, clients, base)
	}
	if after > base {
		t.Errorf("serve holds %d fds, %d before the clients", after, base)
	}
	// Every authenticated connection of the whole test has ended by now.
	var connects, disconnects int
	for deadline := time.Now().Add(10 * time.Second); ; {
		out := strings.Join(g.proc.Stdout(), "\n")
		connects, disconnects = strings.Count(out, `"event":"connect"`), strings.Count(out, `"event":"disconnect"`)
		if connects == disconnects || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("audit: %d connects, %d disconnects", connects, disconnects)
	if connects != disconnects {
		t.Errorf("audit log: %d connects but %d disconnects", connects, disconnects)
	}
}

// leakClient connects and subscribes client i of testNoFdLeak, the way i
// says, and returns it connected (nil on failure, reported).
func leakClient(t *testing.T, g *gwServer, i int, book *tokenBook) *gwClient {
	sub := fmt.Sprint(300 + i)
	tok := gwUserToken(t, sub, "student")
	book.add(tok)
	via := []gwAuth{gwViaHeader, gwViaQuery, gwViaFrame, gwNoToken}[i%4]
	c, resp, err := gwDial(t, "leak "+sub, g.wsURL, via, tok, nil, false)
	if err != nil {
		t.Errorf("client %d: dial: %v (%s)", i, err, respStatus(resp))
		return nil
	}
	if via == gwNoToken { // upgraded, never authenticated
		return c
	}
	m, ok, err := c.tryNext(gwWait)
	if err != nil || !ok || m.Type != "welcome" {
		t.Errorf("client %d: first message %s (%v)", i, m, err)
		return nil
	}
	// Channels granted without a query (self and claim rules), so the
	// access pool's connections do not count.
	req := fmt.Sprintf(`{"id":1,"type":"subscribe","channels":["user:%s","role:student","school"]}`, sub)
	if err := c.write(websocket.MessageText, []byte(req)); err != nil {
		t.Errorf("client %d: subscribe: %v", i, err)
		return nil
	}
	for {
		m, ok, err := c.tryNext(gwWait)
		if err != nil || !ok {
			t.Errorf("client %d: no subscribed (%v)", i, err)
			return nil
		}
		if m.idIs(1) && m.Type == "subscribed" && len(m.Channels) == 3 {
			return c
		}
	}
}

// TestGatewaySlowConsumer: a client that never reads is closed 4009
// while another, subscribed to the same channel and reading everything,
// receives all 20,000 events of a bulk insert, in order, with no gap.
//
// queue64_one_transaction is the case: limits.send_queue 64 and
// one INSERT of 20,000 rows. queue4096_transactions_of_100 is the same
// with a queue larger than the hub's bursts, so that a failure of the
// first can be told from a failure of delivery itself.
func TestGatewaySlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name         string
		queue, perTx int
	}{
		{"queue64_one_transaction", 64, 20000},
		{"queue4096_transactions_of_100", 4096, 100},
	} {
		t.Run(tc.name, func(t *testing.T) { testSlowConsumer(t, tc.queue, tc.perTx) })
	}
}

func testSlowConsumer(t *testing.T, queue, perTx int) {
	const rows = 20000
	g := startGateway(t, map[string]any{"limits.send_queue": queue, "limits.stall_timeout": "1s"})

	// The slow one: its welcome and subscribed are read before the flow;
	// after that nothing reads its socket until the flow is over.
	slow, resp, err := gwDial(t, "slow", g.wsURL, gwViaHeader, gwUserToken(t, "2", "admin"), nil, true)
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, respStatus(resp))
	}
	if m := slow.readSync(gwWait); m.Type != "welcome" {
		t.Fatalf("slow: %s", m)
	}
	slow.send(map[string]any{"id": 1, "type": "subscribe", "channels": []string{"table:attendance"}})
	if m := slow.readSync(gwWait); m.Type != "subscribed" {
		t.Fatalf("slow: %s", m)
	}
	reader := g.connect(t, "1", "super_admin")
	reader.mustSubscribe("table:attendance")

	// 40 students × 500 school days: distinct (student_id, date) pairs,
	// perTx rows per transaction.
	start := time.Now()
	days := perTx / 40
	for d := 0; d < rows/40; d += days {
		g.db.Exec(t, fmt.Sprintf(`INSERT INTO attendance (student_id, class_id, date, status, marked_by)
			SELECT s.id, s.class_id, DATE '2024-01-01' + d, 'present', 10
			FROM students s CROSS JOIN generate_series(%d, %d) AS d`, d, d+days-1))
	}
	committed := time.Now()
	if n := g.db.QueryInt(t, "SELECT count(*) FROM attendance WHERE date >= '2024-01-01' AND date < '2025-06-01'"); n != rows {
		t.Fatalf("%d rows inserted, want %d", n, rows)
	}

	ids := map[int64]bool{}
	prev := ""
	for len(ids) < rows {
		m, ok, err := reader.tryNext(30 * time.Second)
		if err != nil {
			t.Errorf("reader: closed %d (%v) after %d of %d events", websocket.CloseStatus(err), err, len(ids), rows)
			break
		}
		if !ok {
			t.Fatalf("reader: %d of %d events, then nothing for 30s", len(ids), rows)
		}
		if m.Type != "event" || m.Event.EventType != "attendance.marked" {
			t.Fatalf("reader: unexpected %s", m)
		}
		if c := m.Event.Cursor; c <= prev {
			t.Fatalf("reader: cursor %s after %s", c, prev)
		} else {
			prev = c
		}
		id := dataInt(t, m, "id")
		if ids[id] {
			t.Fatalf("reader: attendance %d twice", id)
		}
		ids[id] = true
	}
	if len(ids) == rows {
		reader.quiet()
		t.Logf("reader: %d events in order, the last %v after the commit (inserts took %v)", rows,
			time.Since(committed).Round(time.Millisecond), committed.Sub(start).Round(time.Millisecond))
	}

	// The slow client still does not read: its writes stay blocked past
	// the stall timeout, and the server closes it.
	closed := false
	for deadline := time.Now().Add(30 * time.Second); !closed && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, l := range g.proc.Stdout() {
			if strings.Contains(l, `"event":"disconnect"`) && strings.Contains(l, `"code":4009`) && strings.Contains(l, `"userId":"2"`) {
				closed = true
			}
		}
	}
	if !closed {
		t.Errorf("the client that does not read was not closed 4009 within 30s")
	}
	// Its close frame waits behind the frames its socket would not take,
	// and a client that reads nothing never gets to it: from its side the
	// connection drops (no status), or, had it started reading in time, it
	// reads 4009. Either way it reconnects and resumes with its cursor.
	code, n := slow.expectClose(30 * time.Second)
	t.Logf("slow: %d events were buffered before its close %d", n, code)
	if code != 4009 && code != -1 {
		t.Errorf("slow consumer: close %d, want 4009 or a dropped connection", code)
	}
	if n >= rows {
		t.Errorf("slow consumer got all %d events before its close", n)
	}
	audited := false
	for deadline := time.Now().Add(5 * time.Second); !audited && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, l := range g.proc.Stdout() {
			if strings.Contains(l, `"event":"disconnect"`) && strings.Contains(l, `"code":4009`) && strings.Contains(l, `"userId":"2"`) {
				audited = true
			}
		}
	}
	if !audited {
		t.Errorf("no disconnect of user 2 with code 4009 in the audit log")
	}
}

// TestGatewayGracefulShutdown: SIGTERM closes every WebSocket with 1001 (so
// clients reconnect elsewhere and resume), refuses new ones, and the process
// exits 0 within server.drain_timeout.
func TestGatewayGracefulShutdown(t *testing.T) {
	g := startGateway(t, map[string]any{"server.drain_timeout": "5s"})
	var clients []*gwClient
	for i := 0; i < 5; i++ {
		c := g.connect(t, "1", "super_admin")
		c.mustSubscribe("table:users")
		clients = append(clients, c)
	}
	start := time.Now()
	if err := g.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		if code, _ := c.expectClose(10 * time.Second); code != websocket.StatusGoingAway {
			t.Errorf("client %d: close %d, want 1001", i, code)
		}
	}
	if code := g.proc.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM, want 0", code)
	}
	t.Logf("drained and exited in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(g.proc.Stderr(), `"msg":"stopped"`) {
		t.Errorf("no clean stop logged")
	}
}
