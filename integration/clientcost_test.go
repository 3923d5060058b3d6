package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// What one client may cost the gateway (issue 11), end to end: refused
// subscriptions, oversized requests, long channel names, /sync long-polls,
// tokens without exp, tokens in URLs.

// clientCostEdits: a send queue smaller than one request's refusals, so
// that replies overflowing it would show; a per-address /sync limit the
// test can reach from 127.0.0.1. The rest is as shipped: frames up to
// 64 KiB, 200 subscriptions per connection, 4 /sync polls per user, no
// query-string tokens, no token without exp.
var clientCostEdits = map[string]any{
	"limits.send_queue":            32,
	"limits.max_sync_polls_per_ip": 6,
}

// TestClientCost runs the sub-tests on one serve of the example school.
func TestClientCost(t *testing.T) {
	g := startGateway(t, clientCostEdits)
	t.Run("SubscribeTooManyChannelsRefusedWhole", func(t *testing.T) { testSubscribeRefusedWhole(t, g) })
	t.Run("RefusalBudgetCloses4008", func(t *testing.T) { testRefusalBudget(t, g) })
	t.Run("RefusalsDoNotOverflowTheQueue", func(t *testing.T) { testRefusalsNoOverflow(t, g) })
	t.Run("LongChannelNameCut", func(t *testing.T) { testLongChannelName(t, g) })
	t.Run("SyncPollsBounded", func(t *testing.T) { testSyncPollsBounded(t, g) })
	t.Run("TokenWithoutExpRefused", func(t *testing.T) { testTokenWithoutExp(t, g) })
	t.Run("QueryTokenRefused", func(t *testing.T) { testQueryTokenRefused(t, g) })
}

// aclWork is what the access rules have done so far: checks and queries.
func aclWork(t *testing.T, g *gwServer) (checks, queries float64) {
	t.Helper()
	s := scrapeMetrics(t, g.addr)
	return s.value("cdc_broadcaster_acl_checks_total"), s.value("cdc_broadcaster_acl_sql_queries_total")
}

// classes names n class channels from class:from on.
func classes(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "class:" + strconv.Itoa(from+i)
	}
	return out
}

// auditCount counts the audit lines holding s.
func auditCount(g *gwServer, s string) int {
	return strings.Count(strings.Join(g.proc.Stdout(), "\n"), s)
}

// testSubscribeRefusedWhole: one 52 KB frame naming 4,000 channels used to
// cost 4,000 access checks, audit lines and error frames; it is refused
// whole, with one error and nothing checked.
func testSubscribeRefusedWhole(t *testing.T, g *gwServer) {
	c := g.connect(t, "100", "student")
	checks, queries := aclWork(t, g)
	denied := auditCount(g, `"event":"subscribe_denied"`)
	id := c.request("subscribe", map[string]any{"channels": classes(100000, 4000)})
	m := c.reply(id)
	if m.Type != "error" || m.Code != "too_many_subscriptions" || m.Channel != "" || !strings.Contains(m.Message, "at most 200") {
		t.Fatalf("reply %.300s, want one too_many_subscriptions error naming no channel", m)
	}
	c.quiet()
	after := waitScrape(t, g.addr, gwWait, "the refusal counted", func(s scrape) bool {
		return s.value("cdc_broadcaster_subscribe_refusals_total", "code", "too_many_subscriptions") >= 1
	})
	if c2, q2 := after.value("cdc_broadcaster_acl_checks_total"), after.value("cdc_broadcaster_acl_sql_queries_total"); c2 != checks || q2 != queries {
		t.Errorf("access checks %v → %v, queries %v → %v: want none", checks, c2, queries, q2)
	}
	if n := auditCount(g, `"event":"subscribe_denied"`) - denied; n != 0 {
		t.Errorf("%d subscribe_denied audit lines, want none", n)
	}
}

// testRefusalBudget: a client asking, frame after frame, for 200 channels
// it may not read (30 frames used to cost 6,000 queries) is answered in
// full until its refusal budget (twice max_subscriptions_per_connection)
// is spent, then closed 4008; the queries stop there.
func testRefusalBudget(t *testing.T, g *gwServer) {
	c := g.connect(t, "101", "student")
	checks, _ := aclWork(t, g)
	sent := 0
	for i := range 30 {
		frame := fmt.Sprintf(`{"id":%d,"type":"subscribe","channels":["%s"]}`, i+1, strings.Join(classes(200000+200*i, 200), `","`))
		if err := c.write(websocket.MessageText, []byte(frame)); err != nil {
			break // closed
		}
		sent++
		// Read the replies of this frame (subscribed and up to 200
		// refusals) before the next, as a client that reads does.
		id := i + 1
		got := 0
		for got < 201 {
			m, ok, err := c.tryNext(gwWait)
			if err != nil || !ok {
				break
			}
			if !m.idIs(id) || (m.Type != "subscribed" && m.Code != "forbidden") {
				t.Fatalf("frame %d: unexpected %s", id, m)
			}
			got++
		}
		if got < 201 {
			break
		}
	}
	code, _ := c.expectClose(gwWait)
	if code != 4008 {
		t.Fatalf("close %d after %d frames, want 4008", code, sent)
	}
	if sent > 3 {
		t.Errorf("%d frames sent before the close, want at most 3", sent)
	}
	after := waitScrape(t, g.addr, gwWait, "checks settled", func(s scrape) bool { return true })
	if n := after.value("cdc_broadcaster_acl_checks_total") - checks; n > 2*200+20 {
		t.Errorf("%v access checks, want at most the budget (400) and its refill", n)
	}
	if after.value("cdc_broadcaster_subscribe_refusals_total", "code", "forbidden") < 400 {
		t.Errorf("subscribe_refusals_total{code=forbidden} %v, want the 400 refusals counted",
			after.value("cdc_broadcaster_subscribe_refusals_total", "code", "forbidden"))
	}
	waitAudit(t, g, `"reason":"too many refused subscriptions"`)
}

// waitAudit waits for an audit line holding s.
func waitAudit(t *testing.T, g *gwServer, s string) {
	t.Helper()
	deadline := time.Now().Add(gwWait)
	for auditCount(g, s) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no audit line with %s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testRefusalsNoOverflow: the 150 refusals of one request, more than the
// send queue (32) holds, reach a reading client; it used to be closed 4009
// as a slow consumer.
func testRefusalsNoOverflow(t *testing.T, g *gwServer) {
	c := g.connect(t, "10", "teacher")
	granted, refused := c.subscribe(append(classes(300000, 150), "class:1")...)
	if len(granted) != 1 || len(refused) != 150 {
		t.Fatalf("granted %v, %d refused; want class:1 and 150 refused", granted, len(refused))
	}
	c.quiet()
}

// testLongChannelName: a 5,000-byte channel name used to be echoed whole in
// the error and the audit log; it is refused invalid_channel (longer than
// any pattern matches) without an access check and echoed cut to 200
// bytes.
func testLongChannelName(t *testing.T, g *gwServer) {
	c := g.connect(t, "102", "student")
	checks, _ := aclWork(t, g)
	long := "class:" + strings.Repeat("7", 5000)
	unknown := strings.Repeat("q", 5000)
	id := c.request("subscribe", map[string]any{"channels": []string{long, unknown}})
	if m := c.reply(id); m.Type != "subscribed" || len(m.Channels) != 0 {
		t.Fatalf("reply %.300s", m)
	}
	// Both are longer than any channel pattern matches: invalid, whatever
	// their shape.
	for _, want := range []struct{ name, code string }{{long, "invalid_channel"}, {unknown, "invalid_channel"}} {
		m := c.reply(id)
		if m.Code != want.code || len(m.Channel) > 203 || !strings.HasSuffix(m.Channel, "...") ||
			!strings.HasPrefix(want.name, strings.TrimSuffix(m.Channel, "...")) || len(m.Raw) > 600 {
			t.Errorf("got %d bytes: %.300s; want %s naming the channel cut to 200 bytes", len(m.Raw), m, want.code)
		}
	}
	c.quiet()
	if after, _ := aclWork(t, g); after != checks {
		t.Errorf("access checks %v → %v, want none", checks, after)
	}
	waitAudit(t, g, `"channel":"qqqq`)
	for _, line := range g.proc.Stdout() {
		if strings.Contains(line, "subscribe_denied") && len(line) > 600 {
			t.Errorf("audit line of %d bytes: %.300s", len(line), line)
		}
	}
}

// testSyncPollsBounded: a user used to have 2,000 long-polls accepted;
// the fifth at once is answered 429, as is the seventh from one address,
// and a poll is taken again once others end.
func testSyncPollsBounded(t *testing.T, g *gwServer) {
	users := []string{gwUserToken(t, "1", "admin"), gwUserToken(t, "2", "admin"), gwUserToken(t, "3", "admin")}
	poll := url.Values{"tables": {"users"}, "wait": {"3s"}}
	var wg sync.WaitGroup
	statuses := make(chan int, 6)
	park := func(tok string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := syncGet(g.addr, tok, poll)
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- r.Status
		}()
	}
	for range 4 {
		park(users[0])
	}
	time.Sleep(500 * time.Millisecond) // parked
	r, err := syncGet(g.addr, users[0], poll)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusTooManyRequests || r.Error != "rate_limited" || !strings.Contains(r.Raw, "max_sync_polls_per_user") {
		t.Errorf("fifth poll of one user: HTTP %d %s, want 429 rate_limited", r.Status, r.Raw)
	}
	park(users[1])
	park(users[1])
	time.Sleep(500 * time.Millisecond)
	if r, err = syncGet(g.addr, users[2], poll); err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Raw, "max_sync_polls_per_ip") {
		t.Errorf("seventh poll from one address: HTTP %d %s, want 429 naming max_sync_polls_per_ip", r.Status, r.Raw)
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("a parked poll ended HTTP %d, want 200", s)
		}
	}
	if r, err = syncGet(g.addr, users[0], url.Values{"tables": {"users"}}); err != nil || r.Status != http.StatusOK {
		t.Errorf("after the polls ended: %v HTTP %d %s", err, r.Status, r.Raw)
	}
	s := scrapeMetrics(t, g.addr)
	if n := s.value("cdc_broadcaster_sync_requests_total", "outcome", "rate_limited"); n != 2 {
		t.Errorf("sync_requests_total{outcome=rate_limited} %v, want 2", n)
	}
}

// testTokenWithoutExp: a token without exp used to be accepted and never
// expire; it is refused on the upgrade, in the first frame and on /sync.
func testTokenWithoutExp(t *testing.T, g *gwServer) {
	claims := gwClaims("10", "teacher", time.Hour)
	delete(claims, "exp")
	tok := gwToken(t, claims)
	if c, resp, err := gwDial(t, "no exp", g.wsURL, gwViaHeader, tok, nil, false); err == nil {
		c.close()
		t.Errorf("upgrade with a token without exp accepted")
	} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade: %v (%s), want HTTP 401", err, respStatus(resp))
	}
	c, _, err := gwDial(t, "no exp frame", g.wsURL, gwViaFrame, tok, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if code, n := c.expectClose(gwWait); code != 4001 || n != 0 {
		t.Errorf("first frame: close %d after %d messages, want 4001", code, n)
	}
	r, err := syncGet(g.addr, tok, url.Values{"tables": {"users"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Raw, "no expiry") {
		t.Errorf("/sync: HTTP %d %s, want 401 saying the token has no expiry", r.Status, r.Raw)
	}
}

// testQueryTokenRefused: ?access_token= used to be accepted on the upgrade
// and on /sync; with server.allow_query_token off (the default) both are
// 401, and say where the token goes instead. The token is not logged.
func testQueryTokenRefused(t *testing.T, g *gwServer) {
	tok := gwUserToken(t, "10", "teacher")
	c, resp, err := gwDial(t, "query", g.wsURL, gwViaQuery, tok, nil, false)
	if err == nil {
		c.close()
		t.Fatal("upgrade with ?access_token= accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade: %v (%s), want HTTP 401", err, respStatus(resp))
	}
	r, err := syncGet(g.addr, "", url.Values{"tables": {"users"}, "access_token": {gwUserToken(t, "1", "admin")}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Raw, "Authorization") {
		t.Errorf("/sync with ?access_token=: HTTP %d %s, want 401 pointing at the Authorization header", r.Status, r.Raw)
	}
	gwConnect(t, "header", g.wsURL, gwViaHeader, tok).ping()
	if out := strings.Join(g.proc.Stdout(), "\n") + g.proc.Stderr(); strings.Contains(out, tok) {
		t.Error("the query token was logged")
	}
}
