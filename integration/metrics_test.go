package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The service's own figures, end to end (docs/metrics.md): `serve` over the
// example school, scraped before and after a scripted session of real
// WebSocket clients, /sync requests and inserts, with every counter
// expected to move by an exact amount; GET /api/realtime/stats answering
// the same figures to admins only; /readyz following the database.

// scrape is one parsed GET /metrics.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics fetches http://addr/metrics and parses the text format.
func scrapeMetrics(t testing.TB, addr string) scrape {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: HTTP %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return scrape(mfs)
}

// value sums the samples of name whose labels include every pair of
// labels ("k", "v", ...): a counter's or gauge's value, a histogram's
// sample count. A name with no such sample is 0.
func (s scrape) value(name string, labels ...string) float64 {
	mf, ok := s[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// has reports whether name has a sample with the labels.
func (s scrape) has(name string, labels ...string) bool {
	mf, ok := s[name]
	if !ok {
		return false
	}
	for _, m := range mf.GetMetric() {
		if hasLabels(m, labels) {
			return true
		}
	}
	return false
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// labelValues lists the values of label among name's samples.
func (s scrape) labelValues(name, label string) []string {
	var out []string
	for _, m := range s[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out = append(out, lp.GetValue())
			}
		}
	}
	sort.Strings(out)
	return out
}

// metric names, short.
const (
	mEmitted       = "cdc_broadcaster_events_emitted_total"
	mDelivered     = "cdc_broadcaster_events_delivered_total"
	mLatency       = "cdc_broadcaster_commit_to_send_seconds"
	mSentBytes     = "cdc_broadcaster_websocket_sent_bytes_total"
	mActive        = "cdc_broadcaster_connections_active"
	mOpened        = "cdc_broadcaster_connections_opened_total"
	mClosed        = "cdc_broadcaster_connections_closed_total"
	mSlowConsumer  = "cdc_broadcaster_slow_consumer_closes_total"
	mCatchUps      = "cdc_broadcaster_catch_ups_total"
	mSubscriptions = "cdc_broadcaster_subscriptions_active"
	mResumes       = "cdc_broadcaster_resumes_total"
	mResets        = "cdc_broadcaster_resets_total"
	mSync          = "cdc_broadcaster_sync_requests_total"
	mAuthFailures  = "cdc_broadcaster_auth_failures_total"
	mRevocations   = "cdc_broadcaster_revocations_total"
	mACLChecks     = "cdc_broadcaster_acl_checks_total"
	mACLQueries    = "cdc_broadcaster_acl_sql_queries_total"
	mLogEvents     = "cdc_broadcaster_eventlog_events"
	mConnected     = "cdc_broadcaster_replication_connected"
	mReconnects    = "cdc_broadcaster_replication_reconnects_total"
)

// waitScrape scrapes until ok holds for the scrape, and returns it.
func waitScrape(t testing.TB, addr string, timeout time.Duration, what string, ok func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := scrapeMetrics(t, addr)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: no %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricsUser is one row of the scripted inserts, with an id far above the
// example school's.
func metricsUser(id int) string {
	return fmt.Sprintf("(%d, 'metrics%d@example.test', 'x', 'Metrics', 'User%d', 'student')", id, id, id)
}

// connectCounting dials like gwConnect and adds the bytes of the welcome
// frame to *bytes.
func connectCounting(t *testing.T, g *gwServer, sub, role string, bytes *int) *gwClient {
	t.Helper()
	c, resp, err := gwDial(t, role+" "+sub, g.wsURL, gwViaHeader, gwUserToken(t, sub, role), nil, false)
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, respStatus(resp))
	}
	m := c.next(gwWait)
	if m.Type != "welcome" {
		t.Fatalf("%s: first message %s, want welcome", c.name, m)
	}
	*bytes += len(m.Raw)
	return c
}

// subscribeCounting subscribes to channels (all must be granted) and adds
// the bytes of the reply to *bytes.
func subscribeCounting(t *testing.T, c *gwClient, bytes *int, channels ...string) {
	t.Helper()
	id := c.request("subscribe", map[string]any{"channels": channels})
	m := c.reply(id)
	if m.Type != "subscribed" || len(m.Channels) != len(channels) {
		t.Fatalf("%s: subscribe %v: %s", c.name, channels, m)
	}
	*bytes += len(m.Raw)
}

// TestMetricsSession runs a scripted session against serve and checks that
// each counter of /metrics moved by exactly what the session did, that
// /api/realtime/stats answers the same figures to admins only, and that
// /readyz (and the connected gauge) follow the database going away and
// coming back.
func TestMetricsSession(t *testing.T) {
	g := startGateway(t, nil)
	before := scrapeMetrics(t, g.addr)
	for _, name := range []string{mDelivered, mSentBytes, mSlowConsumer, mCatchUps, mSubscriptions, mResumes, mResets, mAuthFailures, mRevocations, mLatency, mConnected} {
		if _, ok := before[name]; !ok {
			t.Errorf("first scrape has no %s", name)
		}
	}
	if v := before.value(mConnected); v != 1 {
		t.Errorf("%s = %v before the session; want 1 (serve logged streaming)", mConnected, v)
	}

	// Two admins on table:users.
	sent := 0 // bytes of every frame the clients received
	a1 := connectCounting(t, g, "1", "admin", &sent)
	a2 := connectCounting(t, g, "2", "admin", &sent)
	subscribeCounting(t, a1, &sent, "table:users")
	subscribeCounting(t, a2, &sent, "table:users")

	// Five users in two transactions: 3, then 2.
	beforeInsert := time.Now() // after serve started: an earlier time is before its log's floor (410)
	g.db.Exec(t, "INSERT INTO users (id, email, password_hash, first_name, last_name, role) VALUES "+
		metricsUser(900001)+", "+metricsUser(900002)+", "+metricsUser(900003))
	g.db.Exec(t, "INSERT INTO users (id, email, password_hash, first_name, last_name, role) VALUES "+
		metricsUser(900004)+", "+metricsUser(900005))
	var eventFrames int
	for _, c := range []*gwClient{a1, a2} {
		for i := 1; i <= 5; i++ {
			m := c.next(gwWait)
			if m.Type != "event" || m.Event == nil || m.Event.EventType != "user.created" {
				t.Fatalf("%s: message %d: %s; want a user.created event", c.name, i, m)
			}
			if id := fmt.Sprint(m.Event.Data["id"]); id != strconv.Itoa(900000+i) {
				t.Errorf("%s: event %d is user %s; want %d", c.name, i, id, 900000+i)
			}
			sent += len(m.Raw)
			eventFrames++
		}
	}
	a2.close()

	// /sync as a student: a forbidden channel, then the student's own.
	student := gwUserToken(t, "900004", "student")
	r, err := syncGet(g.addr, student, url.Values{"channels": {"table:users"}})
	if err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("/sync table:users as a student: %d %s %v; want 403", r.Status, r.Raw, err)
	}
	r, err = syncGet(g.addr, student, url.Values{"channels": {"user:900004"}, "since": {strconv.FormatInt(beforeInsert.UnixMilli(), 10)}})
	if err != nil || r.Status != http.StatusOK || len(r.Events) != 1 {
		t.Fatalf("/sync user:900004 as that student: %d %s %v; want 200 with the one event", r.Status, r.Raw, err)
	}

	// The server counts a frame once its write returns, which may be after
	// the client has read it, and a close once the connection has ended.
	after := waitScrape(t, g.addr, gwWait, "counts of the whole session", func(s scrape) bool {
		return s.value(mDelivered)-before.value(mDelivered) >= 10 &&
			s.value(mClosed, "code", "1000")-before.value(mClosed, "code", "1000") >= 1 &&
			s.value(mSentBytes)-before.value(mSentBytes) >= float64(sent)
	})
	time.Sleep(200 * time.Millisecond) // anything counted late would show now
	after = scrapeMetrics(t, g.addr)

	delta := func(name string, labels ...string) float64 {
		return after.value(name, labels...) - before.value(name, labels...)
	}
	for _, c := range []struct {
		what   string
		got    float64
		want   float64
		labels string
	}{
		{mEmitted, delta(mEmitted, "type", "user.created"), 5, `{type="user.created"}`},
		{mEmitted, delta(mEmitted), 5, " (all types)"},
		{mDelivered, delta(mDelivered), 10, ""},
		{mLatency, delta(mLatency), 10, " (sample count)"},
		{mSentBytes, delta(mSentBytes), float64(sent), " (the bytes of every text frame the clients read)"},
		{mOpened, delta(mOpened, "role", "admin"), 2, `{role="admin"}`},
		{mOpened, delta(mOpened), 2, " (all roles)"},
		{mClosed, delta(mClosed, "code", "1000"), 1, `{code="1000"}`},
		{mClosed, delta(mClosed), 1, " (all codes)"},
		{mActive, after.value(mActive, "role", "admin"), 1, `{role="admin"}`},
		{mSubscriptions, after.value(mSubscriptions), 1, ""},
		{mSync, delta(mSync, "outcome", "forbidden"), 1, `{outcome="forbidden"}`},
		{mSync, delta(mSync, "outcome", "events"), 1, `{outcome="events"}`},
		{mSync, delta(mSync), 2, " (all outcomes)"},
		// Two admin subscribes and the student's own channel granted by
		// role and self rules; the student's table:users denied.
		{mACLChecks, delta(mACLChecks, "result", "granted"), 3, `{result="granted"}`},
		{mACLChecks, delta(mACLChecks, "result", "denied"), 1, `{result="denied"}`},
		{mACLQueries, delta(mACLQueries), 0, " (no sql rule was needed)"},
		{mLogEvents, delta(mLogEvents), 5, ""},
		{mAuthFailures, delta(mAuthFailures), 0, ""},
		{mSlowConsumer, delta(mSlowConsumer), 0, ""},
		{mCatchUps, delta(mCatchUps), 0, ""},
		{mResumes, delta(mResumes), 0, ""},
		{mResets, delta(mResets), 0, ""},
		{mRevocations, delta(mRevocations), 0, ""},
	} {
		if c.got != c.want {
			t.Errorf("%s%s moved by %v; want %v", c.what, c.labels, c.got, c.want)
		}
	}
	t.Logf("session: %d event frames, %d bytes of frames; closes by code %v; sync outcomes %v",
		eventFrames, sent, after.labelValues(mClosed, "code"), after.labelValues(mSync, "outcome"))

	t.Run("stats", func(t *testing.T) { checkStatsEndpoint(t, g, after) })
	t.Run("readyz", func(t *testing.T) { checkReadyzOutage(t, g) })
}

// statsDoc is the part of /api/realtime/stats compared with /metrics.
type statsDoc struct {
	Gateway struct {
		ConnectionsActive int64             `json:"connectionsActive"`
		ConnectionsOpened uint64            `json:"connectionsOpened"`
		OpenedByRole      map[string]uint64 `json:"openedByRole"`
		ActiveByRole      map[string]int64  `json:"activeByRole"`
		Subscriptions     int64             `json:"subscriptions"`
		EventsDelivered   uint64            `json:"eventsDelivered"`
		BytesSent         uint64            `json:"bytesSent"`
		ClosesByCode      map[string]uint64 `json:"closesByCode"`
		SyncRequests      map[string]uint64 `json:"syncRequests"`
		AuthFailures      uint64            `json:"authFailures"`
	} `json:"gateway"`
	Events struct {
		Emitted uint64            `json:"emitted"`
		ByType  map[string]uint64 `json:"byType"`
	} `json:"events"`
	ACL struct {
		Granted uint64 `json:"granted"`
		Denied  uint64 `json:"denied"`
	} `json:"acl"`
	EventLog struct {
		Events int `json:"events"`
	} `json:"eventLog"`
	Replication struct {
		Connected bool   `json:"connected"`
		Slot      string `json:"slot"`
	} `json:"replication"`
}

func getStats(t *testing.T, addr, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/api/realtime/stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /api/realtime/stats: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// checkStatsEndpoint: 401 without a token, 403 for a teacher, and for an
// admin the figures of the last scrape (nothing happened since).
func checkStatsEndpoint(t *testing.T, g *gwServer, s scrape) {
	for _, c := range []struct {
		name, token string
		status      int
		errCode     string
	}{
		{"no token", "", http.StatusUnauthorized, "unauthenticated"},
		{"bad token", "not-a-jwt", http.StatusUnauthorized, "unauthenticated"},
		{"teacher", gwUserToken(t, "7", "teacher"), http.StatusForbidden, "forbidden"},
	} {
		status, body := getStats(t, g.addr, c.token)
		if status != c.status || !strings.Contains(body, `"error":"`+c.errCode+`"`) {
			t.Errorf("%s: HTTP %d %s; want %d %s", c.name, status, body, c.status, c.errCode)
		}
	}
	status, body := getStats(t, g.addr, gwUserToken(t, "1", "admin"))
	if status != http.StatusOK {
		t.Fatalf("admin: HTTP %d %s", status, body)
	}
	var st statsDoc
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decode stats %s: %v", body, err)
	}
	// The refused stats requests count nowhere: compare with a new scrape
	// that must equal s on every counter the stats carry.
	now := scrapeMetrics(t, g.addr)
	gw := st.Gateway
	for _, c := range []struct {
		what      string
		stats     float64
		name      string
		labels    []string
		unchanged bool
	}{
		{"connectionsActive", float64(gw.ConnectionsActive), mActive, nil, true},
		{"activeByRole.admin", float64(gw.ActiveByRole["admin"]), mActive, []string{"role", "admin"}, true},
		{"connectionsOpened", float64(gw.ConnectionsOpened), mOpened, nil, true},
		{"openedByRole.admin", float64(gw.OpenedByRole["admin"]), mOpened, []string{"role", "admin"}, true},
		{"subscriptions", float64(gw.Subscriptions), mSubscriptions, nil, true},
		{"eventsDelivered", float64(gw.EventsDelivered), mDelivered, nil, true},
		{"bytesSent", float64(gw.BytesSent), mSentBytes, nil, true},
		{"closesByCode.1000", float64(gw.ClosesByCode["1000"]), mClosed, []string{"code", "1000"}, true},
		{"syncRequests.forbidden", float64(gw.SyncRequests["forbidden"]), mSync, []string{"outcome", "forbidden"}, true},
		{"syncRequests.events", float64(gw.SyncRequests["events"]), mSync, []string{"outcome", "events"}, true},
		{"authFailures", float64(gw.AuthFailures), mAuthFailures, nil, true},
		{"events.emitted", float64(st.Events.Emitted), mEmitted, nil, true},
		{"events.byType.user.created", float64(st.Events.ByType["user.created"]), mEmitted, []string{"type", "user.created"}, true},
		{"acl.granted", float64(st.ACL.Granted), mACLChecks, []string{"result", "granted"}, true},
		{"acl.denied", float64(st.ACL.Denied), mACLChecks, []string{"result", "denied"}, true},
		{"eventLog.events", float64(st.EventLog.Events), mLogEvents, nil, true},
	} {
		m := now.value(c.name, c.labels...)
		if c.stats != m {
			t.Errorf("stats %s = %v; /metrics %s%v = %v", c.what, c.stats, c.name, c.labels, m)
		}
		if c.unchanged && m != s.value(c.name, c.labels...) {
			t.Errorf("%s%v moved from %v to %v while only stats were asked for", c.name, c.labels, s.value(c.name, c.labels...), m)
		}
	}
	if !st.Replication.Connected || st.Replication.Slot != "s_"+g.db.Name {
		t.Errorf("stats replication %+v; want connected on slot s_%s", st.Replication, g.db.Name)
	}
}

// checkReadyzOutage stops PostgreSQL (immediate mode): /readyz turns 503 and the connected
// gauge 0 while /healthz stays 200; after the restart /readyz is 200
// again, the gauge 1, and the reconnect counted.
func checkReadyzOutage(t *testing.T, g *gwServer) {
	get := func(path string) (int, string) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + g.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	waitStatus := func(path string, want int, timeout time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			status, body := get(path)
			if status == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: still HTTP %d %s after %v; want %d", path, status, body, timeout, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus("/readyz", http.StatusOK, gwWait)
	reconnects := scrapeMetrics(t, g.addr).value(mReconnects)

	// Not PG.Stop: a fast (or smart) shutdown waits for every logical
	// walsender's client to confirm all WAL, and serve confirms only up to
	// its oldest retained event, so the shutdown would wait until that
	// event ages out of the log (retention.max_age). An immediate stop
	// is a crash as far as the server can tell.
	if err := PG.stop("immediate"); err != nil {
		t.Fatal(err)
	}
	PG.restartAtCleanup(t)
	stopped := time.Now()
	body := waitStatus("/readyz", http.StatusServiceUnavailable, 30*time.Second)
	down := time.Since(stopped)
	if !strings.Contains(body, `"ready":false`) {
		t.Errorf("/readyz while the database is down: %s", body)
	}
	if status, body := get("/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while the database is down: %d %s; want 200", status, body)
	}
	waitScrape(t, g.addr, gwWait, mConnected+" 0", func(s scrape) bool { return s.has(mConnected) && s.value(mConnected) == 0 })

	PG.Start(t)
	started := time.Now()
	body = waitStatus("/readyz", http.StatusOK, 60*time.Second)
	if !strings.Contains(body, `"ready":true`) {
		t.Errorf("/readyz after the restart: %s", body)
	}
	s := waitScrape(t, g.addr, gwWait, mConnected+" 1", func(s scrape) bool { return s.value(mConnected) == 1 })
	if got := s.value(mReconnects); got <= reconnects {
		t.Errorf("%s = %v after the outage; want more than %v", mReconnects, got, reconnects)
	}
	t.Logf("/readyz 503 %v after PostgreSQL stopped, 200 %v after it started; reconnects %v → %v",
		down.Round(time.Millisecond), time.Since(started).Round(time.Millisecond), reconnects, s.value(mReconnects))
}

// TestMeasureServeCost measures, for docs/operations.md ("Sizing"), from
// serve's own /metrics: the Go heap its event log takes per retained event
// and what one WebSocket connection costs (serve run with GOGC=10, so that
// the heap in use is close to what is live), then, in a second serve with
// the default GOGC, the CPU time per event taken in and per event frame
// sent. Set CDC_MEASURE=1.
func TestMeasureServeCost(t *testing.T) {
	if os.Getenv("CDC_MEASURE") != "1" {
		t.Skip("set CDC_MEASURE=1 to measure")
	}
	const events, conns, fanout = 100000, 500, 200
	insert := func(db *DB, n int, role string) {
		db.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
			INSERT INTO announcements (title, body, target_role) VALUES ('measure', 'measure', '%s'); COMMIT;
		END LOOP; END $$`, n, role))
	}
	connect := func(addr string) []*gwClient {
		clients := make([]*gwClient, 0, conns)
		for i := range conns {
			c := gwConnect(t, "m", "ws://"+addr+"/ws", gwViaHeader, gwUserToken(t, strconv.Itoa(i+1), "admin"))
			c.mustSubscribe("role:admin", "school", "table:announcements")
			clients = append(clients, c)
		}
		return clients
	}

	t.Run("memory", func(t *testing.T) {
		db := NewDB(t, WithExampleData())
		addr := startMeasureServe(t, db, []string{"GOGC=10"}, events)
		type mem struct{ heap, rss, stacks, goroutines float64 }
		measure := func() mem {
			// Two scrapes a second apart: the second sees the heap after
			// the collections the first one's garbage caused.
			scrapeMetrics(t, addr)
			time.Sleep(time.Second)
			s := scrapeMetrics(t, addr)
			return mem{s.value("go_memstats_heap_inuse_bytes"), s.value("process_resident_memory_bytes"),
				s.value("go_memstats_stack_inuse_bytes"), s.value("go_goroutines")}
		}
		m0 := measure()
		insert(db, events, "teacher")
		waitScrape(t, addr, 5*time.Minute, fmt.Sprintf("%d events in the log", events), func(s scrape) bool {
			return s.value(mLogEvents) >= events
		})
		m1 := measure()
		clients := connect(addr)
		m2 := measure()
		for _, c := range clients {
			c.close()
		}
		t.Logf("idle: RSS %.1f MiB, heap in use %.1f MiB", m0.rss/(1<<20), m0.heap/(1<<20))
		t.Logf("event log: %d events (announcement.created, 2 channels, 3 payload fields): heap in use +%.1f MiB = %.0f bytes per event; RSS +%.1f MiB",
			events, (m1.heap-m0.heap)/(1<<20), (m1.heap-m0.heap)/events, (m1.rss-m0.rss)/(1<<20))
		t.Logf("connections: %d with 3 subscriptions each: heap in use +%.1f KiB, goroutine stacks +%.1f KiB, RSS +%.1f KiB per connection; %.1f goroutines per connection",
			conns, (m2.heap-m1.heap)/conns/1024, (m2.stacks-m1.stacks)/conns/1024, (m2.rss-m1.rss)/conns/1024, (m2.goroutines-m1.goroutines)/conns)
	})

	t.Run("cpu", func(t *testing.T) {
		db := NewDB(t, WithExampleData())
		addr := startMeasureServe(t, db, nil, events)
		cpu := func() float64 { return scrapeMetrics(t, addr).value("process_cpu_seconds_total") }
		c0 := cpu()
		start := time.Now()
		insert(db, events, "teacher") // no client is subscribed to these
		waitScrape(t, addr, 5*time.Minute, fmt.Sprintf("%d events in the log", events), func(s scrape) bool {
			return s.value(mLogEvents) >= events
		})
		took := time.Since(start)
		c1 := cpu()
		clients := connect(addr)
		c2 := cpu()
		before := scrapeMetrics(t, addr).value(mDelivered)
		start = time.Now()
		insert(db, fanout, "admin")
		waitScrape(t, addr, 2*time.Minute, "every frame sent", func(s scrape) bool {
			return s.value(mDelivered)-before >= fanout*conns
		})
		sent := time.Since(start)
		c3 := cpu()
		for _, c := range clients {
			c.close()
		}
		t.Logf("intake: %d events (single-row transactions) in %v: serve used %.2f CPU s = %.1f µs per event",
			events, took.Round(time.Millisecond), c1-c0, (c1-c0)/events*1e6)
		t.Logf("fan-out: %d events to %d connections = %d frames in %v: serve used %.2f CPU s = %.1f µs per frame (connecting them: %.2f CPU s)",
			fanout, conns, fanout*conns, sent.Round(time.Millisecond), c3-c2, (c3-c2)/(fanout*conns)*1e6, c2-c1)
	})
}

// startMeasureServe starts serve on db with env, retaining up to
// maxEvents events for an hour, and returns its address.
func startMeasureServe(t *testing.T, db *DB, env []string, maxEvents int) string {
	t.Helper()
	cfg := WriteConfig(t, db, map[string]any{
		"source.slot":                              "s_" + db.Name,
		"server.listen":                            "127.0.0.1:0",
		"auth.jwt.secret":                          gwSecret,
		"retention.max_events":                     maxEvents,
		"retention.max_age":                        "1h",
		"limits.max_connections_per_ip_per_minute": 100000,
	})
	p := Start(t, env, "serve", "--config", cfg)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	m := servingListen.FindStringSubmatch(p.Stderr())
	if m == nil {
		t.Fatalf("serve logged no listen address:\n%s", p.Stderr())
	}
	return m[1]
}
