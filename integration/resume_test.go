package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// "Nothing lost", end to end: the real binary's `serve` over the example
// school, real WebSocket clients (wsclient_test.go) and real JWTs, while a
// writer commits rows. Clients disconnect, the broadcaster is SIGKILLed,
// PostgreSQL restarts, the database connection is cut (tcpproxy_test.go),
// a client stops reading: every client that resumes with its last cursor
// ends up with every committed event once (after deduplicating on eventId)
// and in commit order. And /api/realtime/sync: paging, Unix-ms `since`,
// long-polling, access, expired and malformed cursors.

// The resume tests follow announcements: one single-row transaction per
// commit, one event per row (announcement.created on `school` and
// `table:announcements`), and the row's id in the payload.
const (
	rsChannel = "table:announcements"
	rsInsert  = "INSERT INTO announcements (title, body) VALUES ('resume', 'resume')"
)

// rsServe is a `serve` on a fixed port, so that clients find it again
// after a restart.
type rsServe struct {
	t     *testing.T
	db    *DB
	cfg   string
	slot  string
	addr  string // host:port of the HTTP listener
	wsURL string
	proc  *Proc
}

// rsStartServe writes a config for db (example config, the gateway tests'
// JWT secret, a slot of its own, status updates every 200ms, connection
// limits out of the way, then edits) and starts serve.
func rsStartServe(t *testing.T, db *DB, edits map[string]any) *rsServe {
	t.Helper()
	s := &rsServe{t: t, db: db, slot: "s_" + db.Name, addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
	s.wsURL = "ws://" + s.addr + "/ws"
	all := map[string]any{
		"source.slot":            s.slot,
		"source.status_interval": "200ms",
		"server.listen":          s.addr,
		"auth.jwt.secret":        gwSecret,
		"limits.max_connections_per_ip_per_minute": 100000,
		"limits.max_connections_per_user":          1000,
	}
	for k, v := range edits {
		all[k] = v
	}
	s.cfg = WriteConfig(t, db, all)
	s.start()
	return s
}

// start runs serve (again) and waits until it listens and streams; it
// returns how long that took.
func (s *rsServe) start() time.Duration {
	s.t.Helper()
	begin := time.Now()
	s.proc = Start(s.t, nil, "serve", "--config", s.cfg)
	s.proc.WaitStderr(s.t, `"msg":"serving"`, readyTimeout)
	s.proc.WaitStderr(s.t, readinessMsg, readyTimeout)
	return time.Since(begin)
}

// syncReply is one /api/realtime/sync answer, success or error.
type syncReply struct {
	Status    int
	Raw       string
	Events    []Envelope
	EventsRaw string // the events array as sent ([] when empty, never null)
	Cursor    string
	More      bool
	Error     string
	Channel   string
}

// syncGet asks /api/realtime/sync; it does not touch t, so goroutines may
// call it.
func syncGet(addr, token string, q url.Values) (syncReply, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/api/realtime/sync?"+q.Encode(), nil)
	if err != nil {
		return syncReply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 45 * time.Second}).Do(req)
	if err != nil {
		return syncReply{}, fmt.Errorf("GET /sync?%s: %w", q.Encode(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return syncReply{}, fmt.Errorf("read /sync answer: %w", err)
	}
	r := syncReply{Status: resp.StatusCode, Raw: string(raw)}
	var body struct {
		Events  json.RawMessage `json:"events"`
		Cursor  string          `json:"cursor"`
		More    bool            `json:"more"`
		Error   string          `json:"error"`
		Channel string          `json:"channel"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return r, fmt.Errorf("decode /sync answer (HTTP %d) %q: %w", resp.StatusCode, raw, err)
	}
	r.Cursor, r.More, r.Error, r.Channel, r.EventsRaw = body.Cursor, body.More, body.Error, body.Channel, string(body.Events)
	if len(body.Events) > 0 && string(body.Events) != "null" {
		dec := json.NewDecoder(bytes.NewReader(body.Events))
		dec.UseNumber()
		if err := dec.Decode(&r.Events); err != nil {
			return r, fmt.Errorf("decode /sync events: %w", err)
		}
	}
	return r, nil
}

// rsSync is syncGet failing the test on a transport or decoding error.
func rsSync(t testing.TB, addr, token string, kv ...string) syncReply {
	t.Helper()
	r, err := syncGet(addr, token, rsQuery(kv...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rsQuery makes a query from key, value pairs.
func rsQuery(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// rsSyncAll pages through /sync (limit 5000) from since until more is
// false and returns every event.
func rsSyncAll(t testing.TB, addr, token, since string, kv ...string) []Envelope {
	t.Helper()
	var all []Envelope
	for page := 0; ; page++ {
		r := rsSync(t, addr, token, append([]string{"since", since, "limit", "5000"}, kv...)...)
		if r.Status != http.StatusOK {
			t.Fatalf("/sync since %s (page %d): HTTP %d %s", since, page, r.Status, r.Raw)
		}
		all = append(all, r.Events...)
		if !r.More {
			return all
		}
		since = r.Cursor
	}
}

// envRow is the row id in an event's data.
func envRow(t testing.TB, e Envelope) int64 {
	t.Helper()
	n, ok := e.Event.Data["id"].(json.Number)
	if !ok {
		t.Fatalf("event %s has no numeric data.id", e.Event.EventID)
	}
	id, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// rsEvent is what a resuming client keeps of an event.
type rsEvent struct {
	ID  string // eventId (= cursor)
	Row int64  // data.id
	TS  int64  // timestamp, Unix ms
}

// rsClient is a client that keeps one subscription across connections:
// it processes every event in order (recording it, counting duplicates by
// eventId) and, on every new connection, subscribes again with the cursor
// of the last event it processed. Its methods do not touch t, so it can
// run in a goroutine.
type rsClient struct {
	t       testing.TB
	name    string
	token   string
	channel string

	mu       sync.Mutex  // guards the fields below
	raw      []rsEvent   // every event in the order received, duplicates too
	uniq     []rsEvent   // the first receipt of each eventId, in order
	uniqAt   []time.Time // when each of uniq was received
	seen     map[string]bool
	dups     int
	last     string // cursor of the last event processed
	maxRow   int64
	sessions int      // connections that got their subscribed reply
	starts   []int    // len(raw) when each session subscribed
	heads    []string // the cursor of each subscribed reply
	ahead    int      // resumes whose since was past the server's head (a log still being rebuilt)
	resets   []string // reset frames
	odd      []string // frames a resuming client does not expect
	drops    []string // why connections ended

	// ready, when set, holds the first subscribe back: the first session
	// connects, takes its welcome and waits for ready to be closed.
	ready <-chan struct{}
}

func newRSClient(t testing.TB, name, token, channel string) *rsClient {
	return &rsClient{t: t, name: name, token: token, channel: channel, seen: map[string]bool{}}
}

// take processes one server message.
func (c *rsClient) take(m gwMsg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Type {
	case "event":
		if m.Event == nil {
			c.odd = append(c.odd, m.Raw)
			return
		}
		ev := rsEvent{ID: m.Event.EventID, TS: m.Event.Timestamp}
		if n, ok := m.Event.Data["id"].(json.Number); ok {
			ev.Row, _ = n.Int64()
		}
		c.raw = append(c.raw, ev)
		if c.seen[ev.ID] {
			c.dups++
			return
		}
		c.seen[ev.ID] = true
		c.uniq = append(c.uniq, ev)
		c.uniqAt = append(c.uniqAt, time.Now())
		c.last = m.Event.Cursor
		c.maxRow = max(c.maxRow, ev.Row)
	case "reset":
		c.resets = append(c.resets, m.Raw)
	case "pong", "token_expiring":
	default:
		c.odd = append(c.odd, m.Raw)
	}
}

// session opens one connection, subscribes (with since = the last cursor
// processed, if any) and processes messages until ctx ends (nil) or the
// connection does (its error).
func (c *rsClient) session(ctx context.Context, wsURL string) error {
	conn, resp, err := gwDial(c.t, c.name, wsURL, gwViaHeader, c.token, nil, false)
	if err != nil {
		return fmt.Errorf("dial: %w (%s)", err, respStatus(resp))
	}
	defer conn.close()
	m, ok, err := conn.tryNext(gwWait)
	if !ok || m.Type != "welcome" {
		return fmt.Errorf("no welcome (%v): %s", err, m.Raw)
	}
	c.mu.Lock()
	since, ready := c.last, c.ready
	c.ready = nil
	c.mu.Unlock()
	if ready != nil {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
	}
	sub := map[string]any{"id": 1, "type": "subscribe", "channels": []string{c.channel}}
	if since != "" {
		sub["since"] = since
	}
	b, _ := json.Marshal(sub)
	if err := conn.write(websocket.MessageText, b); err != nil {
		return fmt.Errorf("send subscribe: %w", err)
	}
	for {
		m, ok, err := conn.tryNext(gwWait)
		if !ok {
			return fmt.Errorf("no subscribed reply (%v)", err)
		}
		if m.idIs(1) {
			if m.Type != "subscribed" {
				return fmt.Errorf("subscribe since %q: %s", since, m.Raw)
			}
			c.mu.Lock()
			if since != "" && m.Cursor != "" && m.Cursor < since { // fixed-width hex: text order is cursor order
				c.ahead++
			}
			c.sessions++
			c.starts = append(c.starts, len(c.raw))
			c.heads = append(c.heads, m.Cursor)
			c.mu.Unlock()
			break
		}
		c.take(m)
	}
	for ctx.Err() == nil {
		m, ok, err := conn.tryNext(50 * time.Millisecond)
		if err != nil {
			c.mu.Lock()
			c.drops = append(c.drops, err.Error())
			c.mu.Unlock()
			return err
		}
		if ok {
			c.take(m)
		}
	}
	return nil
}

// run keeps a session open until ctx ends, reconnecting (every 20ms while
// the server is away) and resuming whenever the connection ends.
func (c *rsClient) run(ctx context.Context, wsURL string) {
	for ctx.Err() == nil {
		if err := c.session(ctx, wsURL); err == nil || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rsState is a snapshot of a client.
type rsState struct {
	raw, uniq []rsEvent
	dups      int
	last      string
	maxRow    int64
	sessions  int
	ahead     int
	starts    []int
	heads     []string
	resets    []string
	odd       []string
	drops     []string
}

func (c *rsClient) state() rsState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return rsState{
		raw: slices.Clone(c.raw), uniq: slices.Clone(c.uniq), dups: c.dups, last: c.last, maxRow: c.maxRow,
		sessions: c.sessions, ahead: c.ahead, starts: slices.Clone(c.starts), heads: slices.Clone(c.heads),
		resets: slices.Clone(c.resets), odd: slices.Clone(c.odd), drops: slices.Clone(c.drops),
	}
}

// firstAfter returns when the client first received an event whose id
// sorts after id (ids are cursors, in commit order), if it has.
func (c *rsClient) firstAfter(id string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ev := range c.uniq {
		if ev.ID > id {
			return c.uniqAt[i], true
		}
	}
	return time.Time{}, false
}

func (c *rsClient) sessionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions
}

func (c *rsClient) progress() (uniq int, maxRow int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.uniq), c.maxRow
}

// rsWaitAll polls until cond holds for every client, failing the test
// after timeout with what each one has.
func rsWaitAll(t testing.TB, clients []*rsClient, timeout time.Duration, what string, cond func(*rsClient) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var behind []string
		for _, c := range clients {
			if !cond(c) {
				n, mx := c.progress()
				st := c.state()
				behind = append(behind, fmt.Sprintf("%s (%d events, last row %d, %d sessions, ended: %q, resets %d, odd frames %q)", c.name, n, mx, c.sessionCount(), st.drops, len(st.resets), st.odd))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v for %d of %d clients: %s", what, timeout, len(behind), len(clients), strings.Join(behind, "; "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rsWriter commits one row at a time, with a pause between commits,
// retrying through errors (a database that restarts).
type rsWriter struct {
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	commits  atomic.Int64
	failures atomic.Int64
	lastErr  atomic.Value // string
}

// startWriter runs sql in a loop on db's pool, pausing every between
// commits, until Stop (or the end of the test).
func startWriter(t testing.TB, db *DB, sql string, every time.Duration) *rsWriter {
	w := &rsWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := db.Pool.Exec(ctx, sql)
			cancel()
			pause := every
			if err != nil {
				w.failures.Add(1)
				w.lastErr.Store(err.Error())
				pause = 50 * time.Millisecond
			} else {
				w.commits.Add(1)
			}
			select {
			case <-w.stop:
				return
			case <-time.After(pause):
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

// Stop stops the writer and waits for its last statement.
func (w *rsWriter) Stop() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// maxAnnouncement is the newest committed announcement id.
func maxAnnouncement(t testing.TB, db *DB) int64 {
	t.Helper()
	return db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM announcements")
}

// waitRows waits until the newest committed announcement id reaches id.
func waitRows(t testing.TB, db *DB, id int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for maxAnnouncement(t, db) < id {
		if time.Now().After(deadline) {
			t.Fatalf("the writer did not reach announcement %d within %v (at %d)", id, timeout, maxAnnouncement(t, db))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// committedRows are the ids of every announcement after base, in commit
// order (one writer, so id order is commit order).
func committedRows(t testing.TB, db *DB, base int64) []int64 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), "SELECT id FROM announcements WHERE id > $1 ORDER BY id", base)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// hasAll reports whether a client has processed at least n distinct events,
// the newest of them row last.
func hasAll(n int, last int64) func(*rsClient) bool {
	return func(c *rsClient) bool {
		got, mx := c.progress()
		return got >= n && mx >= last
	}
}

// checkSequence fails unless evs (a client's events, deduplicated) are
// exactly the rows of want, in order, with strictly increasing cursors.
func checkSequence(t testing.TB, name string, evs []rsEvent, want []int64) {
	t.Helper()
	var prev broadcaster.Cursor
	for i, e := range evs {
		c, err := broadcaster.ParseCursor(e.ID)
		if err != nil {
			t.Errorf("%s: event %d: %v", name, i, err)
			return
		}
		if i > 0 && !prev.Before(c) {
			t.Errorf("%s: event %d: cursor %s does not follow %s", name, i, e.ID, prev)
			return
		}
		prev = c
	}
	got := make([]int64, len(evs))
	for i, e := range evs {
		got[i] = e.Row
	}
	if slices.Equal(got, want) {
		return
	}
	have := map[int64]bool{}
	for _, r := range got {
		have[r] = true
	}
	wanted := map[int64]bool{}
	var missing, extra []int64
	for _, r := range want {
		wanted[r] = true
		if !have[r] {
			missing = append(missing, r)
		}
	}
	for _, r := range got {
		if !wanted[r] {
			extra = append(extra, r)
		}
	}
	first := 0
	for first < min(len(got), len(want)) && got[first] == want[first] {
		first++
	}
	t.Errorf("%s: %d events, want %d committed rows in commit order; first difference at %d; missing %s; unexpected %s",
		name, len(got), len(want), first, short(missing), short(extra))
}

// clip shortens a /sync body for a failure message.
func clip(s string) string {
	if len(s) > 400 {
		return fmt.Sprintf("%s... (%d bytes)", s[:400], len(s))
	}
	return s
}

// short prints at most 20 ids.
func short(ids []int64) string {
	if len(ids) > 20 {
		return fmt.Sprintf("%v... (%d)", ids[:20], len(ids))
	}
	return fmt.Sprint(ids)
}

// checkClean fails if a client saw a reset or a frame it did not expect.
func checkClean(t testing.TB, name string, st rsState) {
	t.Helper()
	if len(st.resets) > 0 {
		t.Errorf("%s: %d reset(s), first %s", name, len(st.resets), st.resets[0])
	}
	if len(st.odd) > 0 {
		t.Errorf("%s: %d unexpected frame(s), first %s", name, len(st.odd), st.odd[0])
	}
}

// TestResumeAfterClientDisconnect: while a writer commits every few
// milliseconds, a client disconnects, stays away for 200 commits and
// resubscribes with its last cursor. It receives the missed events exactly
// once and in order, then the live ones: its whole sequence equals that of
// a client that never left, /sync's from the start, and the table's.
func TestResumeAfterClientDisconnect(t *testing.T) {
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, nil)
	base := maxAnnouncement(t, db)
	steady := newRSClient(t, "steady", gwUserToken(t, "1", "super_admin"), rsChannel)
	mover := newRSClient(t, "mover", gwUserToken(t, "2", "admin"), rsChannel)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	open := func(c *rsClient, ctx context.Context) chan struct{} {
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			if err := c.session(ctx, s.wsURL); err != nil {
				errs <- fmt.Errorf("%s: %w", c.name, err)
			}
		}()
		return done
	}
	open(steady, ctx)
	moverCtx, moverLeaves := context.WithCancel(ctx)
	moverDone := open(mover, moverCtx)
	rsWaitAll(t, []*rsClient{steady, mover}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })

	w := startWriter(t, db, rsInsert, 3*time.Millisecond)
	rsWaitAll(t, []*rsClient{mover}, 20*time.Second, "50 events", func(c *rsClient) bool { n, _ := c.progress(); return n >= 50 })
	moverLeaves()
	left := time.Now()
	select {
	case <-moverDone:
	case <-time.After(gwWait):
		t.Fatal("mover did not leave")
	}
	away := mover.state()
	atLeave := maxAnnouncement(t, db)
	waitRows(t, db, atLeave+200, 30*time.Second)
	atReturn := maxAnnouncement(t, db)
	awayFor := time.Since(left)
	open(mover, ctx)
	rsWaitAll(t, []*rsClient{mover}, gwWait, "resubscribed", func(c *rsClient) bool { return c.sessionCount() == 2 })
	waitRows(t, db, atReturn+100, 30*time.Second)
	w.Stop()

	want := committedRows(t, db, base)
	both := []*rsClient{steady, mover}
	rsWaitAll(t, both, 30*time.Second, "every committed row", hasAll(len(want), want[len(want)-1]))
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("session: %v", err)
	}

	st, mv := steady.state(), mover.state()
	checkClean(t, "steady", st)
	checkClean(t, "mover", mv)
	// Exactly once: the raw sequences, no deduplication.
	checkSequence(t, "steady (as received)", st.raw, want)
	checkSequence(t, "mover (as received)", mv.raw, want)
	if !slices.Equal(st.raw, mv.raw) {
		t.Errorf("the resumed client's sequence differs from the steady client's")
	}
	// What the second session brought: the missed events first.
	resumed := mv.raw[mv.starts[1]:]
	missed := 0
	for _, e := range resumed {
		if e.Row <= atReturn {
			missed++
		}
	}
	if missed < 200 {
		t.Errorf("the resumed session replayed %d missed events, want at least 200", missed)
	}
	// /sync from before the first event gives the same sequence.
	var fromSync []rsEvent
	for _, e := range rsSyncAll(t, s.addr, steady.token, st.heads[0], "tables", "announcements") {
		fromSync = append(fromSync, rsEvent{ID: e.Event.EventID, Row: envRow(t, e), TS: e.Event.Timestamp})
	}
	if !slices.Equal(fromSync, st.raw) {
		t.Errorf("/sync from the first subscription's cursor: %d events, differing from the %d the clients received", len(fromSync), len(st.raw))
	}
	t.Logf("%d commits (%d writer failures); mover processed %d, left for %v while %d commits happened, came back with since=%s and received %d missed then %d live events; 0 duplicates; /sync agrees",
		len(want), w.failures.Load(), len(away.uniq), awayFor.Round(time.Millisecond), atReturn-atLeave, away.last, missed, len(resumed)-missed)
}

// TestResumeAcrossSIGKILL kills serve with SIGKILL 10 times while a writer
// commits a row every ~5ms and 20 clients, reconnecting after each kill,
// resume with their last cursor. Retention is 1000 events, so the slot
// moves on during the test and every restart rebuilds the log from where
// the slot was held, with the same event ids. Every client ends up with
// every committed row once, in commit order, after deduplication.
func TestResumeAcrossSIGKILL(t *testing.T) {
	const (
		nClients  = 20
		kills     = 10
		retention = 300
	)
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, map[string]any{"retention.max_events": retention})
	base := maxAnnouncement(t, db)
	clients := make([]*rsClient, nClients)
	for i := range clients {
		sub := []string{"1", "2"}[i%2]
		role := map[string]string{"1": "super_admin", "2": "admin"}[sub]
		clients[i] = newRSClient(t, fmt.Sprintf("client%02d", i), gwUserToken(t, sub, role), rsChannel)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx, s.wsURL) }()
	}
	rsWaitAll(t, clients, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() >= 1 })

	w := startWriter(t, db, rsInsert, 5*time.Millisecond)
	waitRows(t, db, base+50, 20*time.Second)
	var firstID string
	rsWaitAll(t, clients, 20*time.Second, "first events", func(c *rsClient) bool { n, _ := c.progress(); return n > 0 })
	firstID = clients[0].state().uniq[0].ID

	type restart struct{ serving, resubscribed, live time.Duration }
	var restarts []restart
	for i := 0; i < kills; i++ {
		// Kill at a random point of the flow.
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		killed := time.Now()
		s.proc.Kill(t)
		s.start()
		serving := time.Since(killed)
		rsWaitAll(t, clients, 30*time.Second, fmt.Sprintf("resubscribed after kill %d", i+1),
			func(c *rsClient) bool { return c.sessionCount() >= i+2 })
		resub := time.Since(killed)
		// Live again: every client has what was committed when the last
		// one resubscribed.
		target := maxAnnouncement(t, db)
		rsWaitAll(t, clients, 30*time.Second, fmt.Sprintf("caught up after kill %d", i+1),
			func(c *rsClient) bool { _, mx := c.progress(); return mx >= target })
		restarts = append(restarts, restart{serving, resub, time.Since(killed)})
	}
	time.Sleep(300 * time.Millisecond)
	w.Stop()
	want := committedRows(t, db, base)
	rsWaitAll(t, clients, 30*time.Second, "every committed row", hasAll(len(want), want[len(want)-1]))
	cancel()
	wg.Wait()

	if f := w.failures.Load(); f > 0 {
		t.Errorf("the writer failed %d times (%v): the database was not meant to be touched", f, w.lastErr.Load())
	}
	totalDups, minDups, maxDups, ahead := 0, -1, 0, 0
	for _, c := range clients {
		st := c.state()
		ahead += st.ahead
		checkClean(t, c.name, st)
		checkSequence(t, c.name+" (deduplicated)", st.uniq, want)
		if st.sessions != kills+1 {
			t.Errorf("%s: %d sessions, want %d", c.name, st.sessions, kills+1)
		}
		totalDups += st.dups
		maxDups = max(maxDups, st.dups)
		if minDups < 0 || st.dups < minDups {
			minDups = st.dups
		}
	}
	// The slot moved on (retention bounds what it holds) yet every restart
	// could rebuild what the clients needed.
	confirmed := slotConfirmed(t, db, s.slot)
	if len(want) > 2*retention && confirmed <= cursorLSN(t, firstID) {
		t.Errorf("slot confirmed %s, not past the first event %s: retention did not release it", confirmed, firstID)
	}
	var lines []string
	var sumServing, sumResub, sumLive time.Duration
	for i, r := range restarts {
		lines = append(lines, fmt.Sprintf("#%d serving %v, all resubscribed %v, all live %v", i+1,
			r.serving.Round(time.Millisecond), r.resubscribed.Round(time.Millisecond), r.live.Round(time.Millisecond)))
		sumServing += r.serving
		sumResub += r.resubscribed
		sumLive += r.live
	}
	n := time.Duration(len(restarts))
	t.Logf("%d SIGKILLs, %d commits (writer every 5ms), %d clients × %d events each after dedup; duplicates seen before dedup: %d in all (per client %d..%d); %d of %d resumes had a since past the restarted server's head; retention %d events: slot confirmed %s at the end, first event %s",
		kills, len(want), nClients, len(want), totalDups, minDups, maxDups, ahead, kills*nClients, retention, confirmed, firstID)
	t.Logf("time from SIGKILL (mean): serving again %v, all %d clients resubscribed %v, all live (have every row committed by then) %v",
		(sumServing / n).Round(time.Millisecond), nClients, (sumResub / n).Round(time.Millisecond), (sumLive / n).Round(time.Millisecond))
	t.Logf("per restart: %s", strings.Join(lines, "; "))
}

// readyProbe polls /readyz and keeps its transitions.
type readyProbe struct {
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	trans []readyState
}

// readyState is a /readyz answer from At on.
type readyState struct {
	At     time.Time // when the answer came
	Status int       // 0: no answer
	Body   string
}

// startReadyProbe polls http://addr/readyz every 10ms until the test ends.
func startReadyProbe(t testing.TB, addr string) *readyProbe {
	p := &readyProbe{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(p.done)
		last := -1
		for {
			var st readyState
			if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				st.Status, st.Body = resp.StatusCode, strings.TrimSpace(string(b))
			}
			// When the answer was seen: a request sent just before an
			// outage can be answered after it, and stamped with its start
			// it would look older than the outage it reports.
			st.At = time.Now()
			if st.Status != last {
				p.mu.Lock()
				p.trans = append(p.trans, st)
				p.mu.Unlock()
				last = st.Status
			}
			select {
			case <-p.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(p.stop); <-p.done })
	return p
}

// waitStatus waits for a transition to status at or after from and returns
// it.
func (p *readyProbe) waitStatus(t testing.TB, status int, from time.Time, timeout time.Duration) readyState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, s := range p.trans {
			if s.Status == status && !s.At.Before(from) {
				p.mu.Unlock()
				return s
			}
		}
		trans := slices.Clone(p.trans)
		p.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: no %d within %v of %v; transitions %v", status, timeout, from.Format("15:04:05.000"), trans)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// transitions returns the transitions from `from` on.
func (p *readyProbe) transitions(from time.Time) []readyState {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []readyState
	for _, s := range p.trans {
		if !s.At.Before(from) {
			out = append(out, s)
		}
	}
	return out
}

func (s readyState) String() string {
	return fmt.Sprintf("%s %d %s", s.At.Format("15:04:05.000"), s.Status, s.Body)
}

// TestResumePostgresRestart restarts PostgreSQL (immediate stop: a crash as
// far as the server can tell) while a writer commits: /readyz turns 503
// while the stream is down and 200 after, a client that stays connected
// and one that resumes after the restart both get every committed event
// once (after deduplication), in order.
func TestResumePostgresRestart(t *testing.T) {
	testDatabaseOutage(t, false)
}

// TestResumeConnectionCut cuts serve's database connections at a TCP proxy
// and refuses new ones for 3s while a writer commits: the same guarantees
// as a PostgreSQL restart, and /readyz answers 503 for as long as the
// proxy refuses.
func TestResumeConnectionCut(t *testing.T) {
	testDatabaseOutage(t, true)
}

func testDatabaseOutage(t *testing.T, viaProxy bool) {
	const refuseFor = 3 * time.Second
	db := NewDB(t, WithExampleData())
	edits := map[string]any{}
	var proxy *tcpProxy
	if viaProxy {
		proxy = startTCPProxy(t, fmt.Sprintf("%s:%d", PG.Host, PG.Port))
		edits["source.database_url"] = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", proxy.Port(), db.Name)
	}
	s := rsStartServe(t, db, edits)
	probe := startReadyProbe(t, s.addr)
	probe.waitStatus(t, http.StatusOK, time.Time{}, gwWait)
	base := maxAnnouncement(t, db)

	stay := newRSClient(t, "stays", gwUserToken(t, "1", "super_admin"), rsChannel)
	back := newRSClient(t, "resumes", gwUserToken(t, "2", "admin"), rsChannel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	open := func(c *rsClient, ctx context.Context) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.session(ctx, s.wsURL); err != nil {
				errs <- fmt.Errorf("%s: %w", c.name, err)
			}
		}()
	}
	open(stay, ctx)
	backCtx, backLeaves := context.WithCancel(ctx)
	open(back, backCtx)
	rsWaitAll(t, []*rsClient{stay, back}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })

	w := startWriter(t, db, rsInsert, 5*time.Millisecond)
	rsWaitAll(t, []*rsClient{stay, back}, 20*time.Second, "100 events", func(c *rsClient) bool { n, _ := c.progress(); return n >= 100 })
	backLeaves()

	outage := time.Now()
	var down readyState
	if viaProxy {
		n := proxy.CutAndRefuse(refuseFor)
		down = probe.waitStatus(t, http.StatusServiceUnavailable, outage, refuseFor)
		t.Logf("cut %d connections through the proxy and refused new ones for %v; /readyz %v after %v",
			n, refuseFor, down.Status, down.At.Sub(outage).Round(time.Millisecond))
	} else {
		PG.Restart(t)
		down = probe.waitStatus(t, http.StatusServiceUnavailable, outage, 5*time.Second)
		t.Logf("PostgreSQL restarted in %v; /readyz %v after %v", time.Since(outage).Round(time.Millisecond),
			down.Status, down.At.Sub(outage).Round(time.Millisecond))
	}
	up := probe.waitStatus(t, http.StatusOK, down.At, 40*time.Second)
	if viaProxy && up.At.Before(outage.Add(refuseFor)) {
		t.Errorf("/readyz answered 200 at %v, while the proxy still refused every connection (until %v)",
			up.At.Sub(outage).Round(time.Millisecond), refuseFor)
	}
	if !strings.Contains(down.Body, `"ready":false`) || !strings.Contains(up.Body, `"ready":true`) {
		t.Errorf("/readyz bodies: down %s, up %s", down.Body, up.Body)
	}
	// Live again: the client that stayed receives what is committed now.
	atUp := maxAnnouncement(t, db)
	rsWaitAll(t, []*rsClient{stay}, 30*time.Second, "events after the outage", func(c *rsClient) bool { _, mx := c.progress(); return mx > atUp })
	live := time.Since(outage)
	open(back, ctx)
	rsWaitAll(t, []*rsClient{back}, gwWait, "resubscribed", func(c *rsClient) bool { return c.sessionCount() == 2 })
	waitRows(t, db, maxAnnouncement(t, db)+100, 30*time.Second)
	w.Stop()

	want := committedRows(t, db, base)
	both := []*rsClient{stay, back}
	rsWaitAll(t, both, 30*time.Second, "every committed row", hasAll(len(want), want[len(want)-1]))
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("session: %v", err)
	}
	dups := 0
	for _, c := range both {
		st := c.state()
		checkClean(t, c.name, st)
		checkSequence(t, c.name+" (deduplicated)", st.uniq, want)
		dups += st.dups
	}
	if st := probe.transitions(outage); len(st) == 0 || st[len(st)-1].Status != http.StatusOK {
		t.Errorf("/readyz ended at %v", st[len(st)-1])
	}
	how := "PostgreSQL restart"
	if viaProxy {
		how = fmt.Sprintf("connection cut (proxy: %d forwarded, %d refused, %d cut)", proxy.accepted.Load(), proxy.refused.Load(), proxy.cut.Load())
	}
	t.Logf("%s: /readyz 503 from %v to %v after the outage began (transitions %v); the staying client received new events %v after it; %d commits (%d writer errors, last %v); both clients have all %d, %d duplicates before dedup",
		how, down.At.Sub(outage).Round(time.Millisecond), up.At.Sub(outage).Round(time.Millisecond), probe.transitions(outage),
		live.Round(time.Millisecond), len(want), w.failures.Load(), w.lastErr.Load(), len(want), dups)
}

// TestResumeExpiredCursor: with retention.max_events 50 and 200 events, a
// subscribe with a cursor older than the log gets reset (and no replay), a
// /sync with it 410; so does a Unix-ms since older than the log. The
// cursor of the newest evicted event still resumes (every event after it
// is retained). After a restart the log is rebuilt from the slot with the
// same event ids, and what is older than it is refused the same way.
func TestResumeExpiredCursor(t *testing.T) {
	const retention, rows = 50, 200
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, map[string]any{"retention.max_events": retention})
	tok := gwUserToken(t, "1", "super_admin")
	watcher := newRSClient(t, "watcher", tok, rsChannel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- watcher.session(ctx, s.wsURL) }()
	rsWaitAll(t, []*rsClient{watcher}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })
	for i := 0; i < rows; i++ {
		db.Exec(t, rsInsert)
		time.Sleep(2 * time.Millisecond) // the hub keeps up with a log of 50
	}
	rsWaitAll(t, []*rsClient{watcher}, 20*time.Second, "every event", func(c *rsClient) bool { n, _ := c.progress(); return n >= rows })
	evs := watcher.state().uniq
	ev := func(n int) rsEvent { return evs[n-1] } // the n-th event, from 1
	ids := func(es []Envelope) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Event.EventID)
		}
		return out
	}
	idsOf := func(es []rsEvent) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	expired := func(what, since string) {
		t.Helper()
		r := rsSync(t, s.addr, tok, "tables", "announcements", "since", since)
		if r.Status != http.StatusGone || r.Error != "cursor_expired" {
			t.Errorf("/sync since %s (%s): HTTP %d %s, want 410 cursor_expired", what, since, r.Status, clip(r.Raw))
		}
	}
	ms := func(e rsEvent) string { return strconv.FormatInt(e.TS, 10) }

	// The log holds events 151..200: event 150 is the newest evicted.
	expired("the first event's cursor", ev(1).ID)
	expired("event 149's cursor", ev(149).ID)
	if r := rsSync(t, s.addr, tok, "tables", "announcements", "since", ev(150).ID); r.Status != http.StatusOK || !slices.Equal(ids(r.Events), idsOf(evs[150:])) {
		t.Errorf("/sync since the newest evicted event: HTTP %d, %d events, want 200 and events 151..200", r.Status, len(r.Events))
	}
	expired("the first event's Unix ms", ms(ev(1)))
	expired("Unix ms 12345", "12345")
	var fromLast []string
	for _, e := range evs {
		if e.TS >= ev(rows).TS {
			fromLast = append(fromLast, e.ID)
		}
	}
	if r := rsSync(t, s.addr, tok, "tables", "announcements", "since", ms(ev(rows))); r.Status != http.StatusOK || !slices.Equal(ids(r.Events), fromLast) {
		t.Errorf("/sync since the last event's Unix ms: HTTP %d %v, want 200 %v", r.Status, ids(r.Events), fromLast)
	}

	// WebSocket: a resume inside the window replays exactly the rest...
	in := gwConnect(t, "inside", s.wsURL, gwViaHeader, tok)
	id := in.request("subscribe", map[string]any{"channels": []string{rsChannel}, "since": ev(180).ID})
	if m := in.reply(id); m.Type != "subscribed" {
		t.Fatalf("subscribe since event 180: %s", m)
	}
	for n := 181; n <= rows; n++ {
		m := in.next(gwWait)
		if m.Type != "event" || m.Event.EventID != ev(n).ID {
			t.Fatalf("resume since event 180: got %s, want event %d (%s)", m, n, ev(n).ID)
		}
	}
	in.quiet()
	// ...one from before it is told to reset, and replays nothing.
	late := gwConnect(t, "late", s.wsURL, gwViaHeader, tok)
	id = late.request("subscribe", map[string]any{"channels": []string{rsChannel}, "since": ev(1).ID})
	if m := late.reply(id); m.Type != "subscribed" {
		t.Fatalf("subscribe since event 1: %s", m)
	}
	if m := late.next(gwWait); m.Type != "reset" || m.Reason != "cursor_expired" || !slices.Equal(m.Channels, []string{rsChannel}) {
		t.Fatalf("subscribe since event 1: got %s, want reset of %s for cursor_expired", m, rsChannel)
	}
	late.quiet()
	// Both go on live.
	row := db.QueryInt(t, rsInsert+" RETURNING id")
	for _, c := range []*gwClient{in, late} {
		if m := c.nextEvent("announcement.created"); dataInt(t, m, "id") != row {
			t.Fatalf("%s: live event %s, want row %d", c.name, m, row)
		}
	}
	rsWaitAll(t, []*rsClient{watcher}, 20*time.Second, "the live event", func(c *rsClient) bool { n, _ := c.progress(); return n >= rows+1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Restart: the slot was held at the oldest retained event (202-50).
	evs = watcher.state().uniq
	oldest := evs[len(evs)-retention]
	deadline := time.Now().Add(20 * time.Second)
	for slotConfirmed(t, db, s.slot) != cursorLSN(t, oldest.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s, want the oldest retained event's commit %s", slotConfirmed(t, db, s.slot), oldest.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := s.proc.Stop(t); code != 0 {
		t.Fatalf("serve exited %d on SIGTERM", code)
	}
	s.start()
	s.proc.WaitStderr(t, `"msg":"caught up"`, readyTimeout)

	expired("the first event's cursor, after a restart", ev(1).ID)
	expired("the first event's Unix ms, after a restart", ms(ev(1)))
	evicted := evs[len(evs)-retention-1]
	if r := rsSync(t, s.addr, tok, "tables", "announcements", "since", evicted.ID); r.Status != http.StatusOK {
		t.Logf("after a restart, /sync since the newest evicted event answers HTTP %d %s (the rebuilt log cannot tell nothing was between it and the slot's position)", r.Status, r.Raw)
	}
	if r := rsSync(t, s.addr, tok, "tables", "announcements", "since", ev(170).ID); r.Status != http.StatusOK || !slices.Equal(ids(r.Events), idsOf(evs[170:])) {
		t.Errorf("/sync since event 170 after a restart: HTTP %d, %d events %v; want 200 and the %d events after it with the same ids",
			r.Status, len(r.Events), ids(r.Events), len(evs)-170)
	}
	again := gwConnect(t, "after restart", s.wsURL, gwViaHeader, tok)
	id = again.request("subscribe", map[string]any{"channels": []string{rsChannel}, "since": ev(1).ID})
	if m := again.reply(id); m.Type != "subscribed" {
		t.Fatalf("subscribe since event 1 after a restart: %s", m)
	}
	if m := again.next(gwWait); m.Type != "reset" {
		t.Fatalf("subscribe since event 1 after a restart: got %s, want reset", m)
	}
	resume := gwConnect(t, "resume after restart", s.wsURL, gwViaHeader, tok)
	id = resume.request("subscribe", map[string]any{"channels": []string{rsChannel}, "since": ev(170).ID})
	if m := resume.reply(id); m.Type != "subscribed" {
		t.Fatalf("subscribe since event 170 after a restart: %s", m)
	}
	for _, want := range evs[170:] {
		if m := resume.next(gwWait); m.Type != "event" || m.Event.EventID != want.ID {
			t.Fatalf("resume since event 170 after a restart: got %s, want %s", m, want.ID)
		}
	}
	resume.quiet()
}

// TestResumeSync runs the /api/realtime/sync tests on one serve; each
// sub-test follows tables no other one writes to, or starts from the
// head.
func TestResumeSync(t *testing.T) {
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, nil)
	t.Run("Paging", func(t *testing.T) { testSyncPaging(t, s) })
	t.Run("LongPoll", func(t *testing.T) { testSyncLongPoll(t, s) })
	t.Run("Access", func(t *testing.T) { testSyncAccess(t, s) })
	t.Run("MalformedCursors", func(t *testing.T) { testMalformedCursors(t, s) })
}

// testSyncPaging: 35 vacancies (20 single-row transactions interleaved with
// announcements, then one of 15 rows), read 10 at a time: pages of
// 10, 10, 10, 5 with more true, true, true, false, each page's cursor the
// next one's since, no event twice. tables=vacancies answers exactly as
// channels=table:vacancies. A Unix-ms since gives the events committed at
// or after that millisecond.
func testSyncPaging(t *testing.T, s *rsServe) {
	db := s.db
	tok := gwUserToken(t, "2", "admin")
	head := rsSync(t, s.addr, tok, "tables", "vacancies")
	if head.Status != http.StatusOK || head.EventsRaw != "[]" || head.Cursor == "" {
		t.Fatalf("/sync without since: HTTP %d %s, want no events and the head cursor", head.Status, head.Raw)
	}
	base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM vacancies")
	for i := 0; i < 20; i++ {
		db.Exec(t, "INSERT INTO vacancies (title) VALUES ('paging')")
		db.Exec(t, rsInsert)
	}
	db.Exec(t, "INSERT INTO vacancies (title) SELECT 'paging' FROM generate_series(1, 15)")
	db.Exec(t, rsInsert)
	var want []int64
	rows, err := db.Pool.Query(context.Background(), "SELECT id FROM vacancies WHERE id > $1 ORDER BY id", base)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	rows.Close()
	if len(want) != 35 {
		t.Fatalf("%d vacancies, want 35", len(want))
	}
	// Wait until serve has the last one.
	all := rsSync(t, s.addr, tok, "tables", "vacancies", "since", head.Cursor, "wait", "10s")
	for deadline := time.Now().Add(eventWait); len(all.Events) < 35; {
		if time.Now().After(deadline) {
			t.Fatalf("/sync has %d of 35 vacancies", len(all.Events))
		}
		time.Sleep(20 * time.Millisecond)
		all = rsSync(t, s.addr, tok, "tables", "vacancies", "since", head.Cursor)
	}

	var sizes []int
	var mores []bool
	var got []int64
	seen := map[string]bool{}
	since := head.Cursor
	for page := 0; page < 10; page++ {
		r := rsSync(t, s.addr, tok, "tables", "vacancies", "since", since, "limit", "10")
		if r.Status != http.StatusOK {
			t.Fatalf("page %d: HTTP %d %s", page, r.Status, r.Raw)
		}
		sizes, mores = append(sizes, len(r.Events)), append(mores, r.More)
		for _, e := range r.Events {
			if seen[e.Event.EventID] {
				t.Errorf("page %d: event %s again", page, e.Event.EventID)
			}
			seen[e.Event.EventID] = true
			if !slices.Equal(e.Channels, []string{"table:vacancies"}) || e.Event.EventType != "vacancy.created" {
				t.Errorf("page %d: %v %s, want vacancy.created on table:vacancies", page, e.Channels, e.Event.EventType)
			}
			got = append(got, envRow(t, e))
		}
		if n := len(r.Events); n > 0 {
			last, _ := broadcaster.ParseCursor(r.Events[n-1].Event.Cursor)
			c, err := broadcaster.ParseCursor(r.Cursor)
			switch {
			case err != nil:
				t.Errorf("page %d: cursor %q: %v", page, r.Cursor, err)
			case r.More && c != last:
				t.Errorf("page %d: cursor %s, want its last event's %s", page, r.Cursor, r.Events[n-1].Event.Cursor)
			case c.Before(last):
				t.Errorf("page %d: cursor %s before its last event %s", page, r.Cursor, last)
			}
		}
		since = r.Cursor
		if !r.More {
			break
		}
	}
	if !slices.Equal(sizes, []int{10, 10, 10, 5}) || !slices.Equal(mores, []bool{true, true, true, false}) {
		t.Errorf("pages of %v with more %v, want [10 10 10 5] and [true true true false]", sizes, mores)
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged rows %v, want %v", got, want)
	}
	if r := rsSync(t, s.addr, tok, "tables", "vacancies", "since", since, "limit", "10"); r.Status != http.StatusOK || r.EventsRaw != "[]" || r.More {
		t.Errorf("after the last page: HTTP %d %s, want no events", r.Status, r.Raw)
	}

	byTable := rsSync(t, s.addr, tok, "tables", "vacancies", "since", head.Cursor, "limit", "5000")
	byChannel := rsSync(t, s.addr, tok, "channels", "table:vacancies", "since", head.Cursor, "limit", "5000")
	if byTable.Status != http.StatusOK || byTable.Raw != byChannel.Raw || len(byTable.Events) != 35 {
		t.Errorf("tables=vacancies (HTTP %d, %d events) and channels=table:vacancies (HTTP %d, %d events) differ",
			byTable.Status, len(byTable.Events), byChannel.Status, len(byChannel.Events))
	}

	for _, k := range []int{0, 9, 25, 34} {
		ts := byTable.Events[k].Event.Timestamp
		var wantIDs []string
		for _, e := range byTable.Events {
			if e.Event.Timestamp >= ts {
				wantIDs = append(wantIDs, e.Event.EventID)
			}
		}
		r := rsSync(t, s.addr, tok, "tables", "vacancies", "since", strconv.FormatInt(ts, 10))
		var gotIDs []string
		for _, e := range r.Events {
			gotIDs = append(gotIDs, e.Event.EventID)
		}
		if r.Status != http.StatusOK || !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("since=%d (the commit ms of vacancy %d): HTTP %d, %d events, want the %d committed at or after it",
				ts, k+1, r.Status, len(gotIDs), len(wantIDs))
		}
	}
	t.Logf("35 vacancies: pages %v more %v; tables= and channels= answers identical; Unix-ms since checked at 4 points", sizes, mores)
}

// testSyncLongPoll: a /sync with wait=10s from the head returns within
// 100ms (median of 5) of a commit; one that nothing answers returns after
// its wait with no events.
func testSyncLongPoll(t *testing.T, s *rsServe) {
	db := s.db
	tok := gwUserToken(t, "2", "admin")
	head := rsSync(t, s.addr, tok, "tables", "announcements").Cursor
	var lat []time.Duration
	for trial := 0; trial < 5; trial++ {
		type answer struct {
			r   syncReply
			at  time.Time
			err error
		}
		ch := make(chan answer, 1)
		asked := time.Now()
		go func() {
			r, err := syncGet(s.addr, tok, rsQuery("tables", "announcements", "since", head, "wait", "10s"))
			ch <- answer{r, time.Now(), err}
		}()
		time.Sleep(300 * time.Millisecond) // the request is parked
		select {
		case a := <-ch:
			t.Fatalf("trial %d: the long-poll returned before any commit: %v %s", trial, a.err, a.r.Raw)
		default:
		}
		row := db.QueryInt(t, rsInsert+" RETURNING id")
		committed := time.Now()
		var a answer
		select {
		case a = <-ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("trial %d: the long-poll did not return", trial)
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.r.Status != http.StatusOK || len(a.r.Events) != 1 || envRow(t, a.r.Events[0]) != row {
			t.Fatalf("trial %d: HTTP %d %s, want the one new announcement %d", trial, a.r.Status, a.r.Raw, row)
		}
		lat = append(lat, a.at.Sub(committed))
		t.Logf("trial %d: answered %v after the commit returned (%v after the request)", trial,
			a.at.Sub(committed).Round(10*time.Microsecond), a.at.Sub(asked).Round(time.Millisecond))
		head = a.r.Cursor
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	t.Logf("long-poll latency after the commit: %v, median %v", lat, median)
	if median >= 100*time.Millisecond {
		t.Errorf("median long-poll latency %v, want under 100ms", median)
	}

	start := time.Now()
	r := rsSync(t, s.addr, tok, "tables", "announcements", "since", head, "wait", "2s")
	took := time.Since(start)
	if r.Status != http.StatusOK || r.EventsRaw != "[]" || r.More {
		t.Errorf("empty long-poll: HTTP %d %s, want 200 with events []", r.Status, r.Raw)
	}
	if took < 2*time.Second || took > 3500*time.Millisecond {
		t.Errorf("empty long-poll with wait=2s returned after %v", took)
	}
	t.Logf("empty long-poll (wait=2s) returned after %v: %s", took.Round(time.Millisecond), r.Raw)
}

// testSyncAccess: /sync serves no channel the caller may not read. A
// student asking for table:users gets 403 naming it; asking for their own
// class too changes nothing (the whole request fails); a teacher on their
// own class gets that class's events only, while every class had some.
func testSyncAccess(t *testing.T, s *rsServe) {
	db := s.db
	admin := gwUserToken(t, "1", "super_admin")
	student := gwUserToken(t, "100", "student") // student 1, class 1
	teacher := gwUserToken(t, "10", "teacher")  // classes 1 and 2
	head := rsSync(t, s.addr, admin, "tables", "attendance").Cursor
	db.Exec(t, `INSERT INTO attendance (student_id, class_id, date, status, marked_by)
		SELECT id, class_id, DATE '2025-10-01', 'present', 10 FROM students`)
	total := int(db.QueryInt(t, "SELECT count(*) FROM students"))
	var all syncReply
	for deadline := time.Now().Add(eventWait); ; time.Sleep(20 * time.Millisecond) {
		all = rsSync(t, s.addr, admin, "tables", "attendance", "since", head)
		if len(all.Events) >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/sync has %d of %d attendance events", len(all.Events), total)
		}
	}
	classes := map[int64]int{}
	for _, e := range all.Events {
		classes[num(t, e.Event.Data["class_id"])]++
	}
	if len(classes) < 2 {
		t.Fatalf("attendance events of classes %v: the test needs several", classes)
	}

	// forbidden asks /sync as who and wants 403 naming channel, no events.
	forbidden := func(who, token, channel string, kv ...string) {
		t.Helper()
		r := rsSync(t, s.addr, token, append([]string{"since", head}, kv...)...)
		if r.Status != http.StatusForbidden || r.Error != "forbidden" || r.Channel != channel || len(r.Events) > 0 || r.EventsRaw != "" {
			t.Errorf("%s %v: HTTP %d %s, want 403 forbidden naming %s and no events", who, kv, r.Status, r.Raw, channel)
		}
	}
	forbidden("student", student, "table:users", "tables", "users")
	forbidden("student", student, "table:users", "channels", "class:1,table:users")
	forbidden("student", student, "table:users", "channels", "table:users,class:1")
	forbidden("student", student, "table:users", "channels", "class:1", "tables", "users")
	forbidden("student", student, "class:2", "channels", "class:1,class:2")
	forbidden("teacher 10", teacher, "class:3", "channels", "class:3")
	forbidden("teacher 10", teacher, "table:attendance", "channels", "class:1", "tables", "attendance")

	// The student's own class alone is fine.
	inClass1 := int(db.QueryInt(t, "SELECT count(*) FROM students WHERE class_id = 1"))
	if r := rsSync(t, s.addr, student, "since", head, "channels", "class:1"); r.Status != http.StatusOK || len(r.Events) != inClass1 {
		t.Errorf("student class:1: HTTP %d, %d events, want 200 and %d", r.Status, len(r.Events), inClass1)
	}
	r := rsSync(t, s.addr, teacher, "since", head, "channels", "class:1")
	if r.Status != http.StatusOK {
		t.Fatalf("teacher 10 class:1: HTTP %d %s", r.Status, r.Raw)
	}
	for _, e := range r.Events {
		if !slices.Equal(e.Channels, []string{"class:1"}) || num(t, e.Event.Data["class_id"]) != 1 {
			t.Errorf("teacher 10 on class:1 got %v %v", e.Channels, e.Event.Data)
		}
	}
	if len(r.Events) != inClass1 {
		t.Errorf("teacher 10 on class:1: %d events, want %d", len(r.Events), inClass1)
	}
	t.Logf("%d attendance events over classes %v; teacher 10 on class:1 got its %d; student refused 403 for table:users alone and with class:1", len(all.Events), classes, len(r.Events))
}

// testMalformedCursors: a subscribe whose since is not a cursor is refused
// with bad_request, nothing is replayed, and the connection goes on
// working; a /sync with one answers 400. serve does not fall over.
func testMalformedCursors(t *testing.T, s *rsServe) {
	tok := gwUserToken(t, "1", "super_admin")
	if n := rsSync(t, s.addr, tok, "tables", "announcements", "since", "12345").Status; n != http.StatusOK && n != http.StatusGone {
		t.Fatalf("/sync since=12345 (Unix ms): HTTP %d", n)
	}
	c := gwConnect(t, "malformed", s.wsURL, gwViaHeader, tok)
	for _, since := range []any{"garbage", "0000000016B3748C-0000000G", "12345", "", "0000000016B3748C_00000001", "-1", 12345, true, []string{"x"}} {
		id := c.request("subscribe", map[string]any{"channels": []string{rsChannel}, "since": since})
		m := c.reply(id)
		if m.Type != "error" || m.Code != "bad_request" {
			t.Errorf("subscribe since %#v: %s, want error bad_request", since, m)
		}
	}
	// Nothing was subscribed, nothing replayed (the log has announcements).
	c.quiet()
	c.mustSubscribe(rsChannel)
	row := s.db.QueryInt(t, rsInsert+" RETURNING id")
	if m := c.nextEvent("announcement.created"); dataInt(t, m, "id") != row {
		t.Errorf("after the bad subscribes: %s, want announcement %d", m, row)
	}
	c.quiet()

	for _, since := range []string{"garbage", "0000000016B3748C-0000000G", "0000000016B3748C_00000001", "-1", "1e3", "0000000016B3748C-000000001"} {
		r := rsSync(t, s.addr, tok, "tables", "announcements", "since", since)
		if r.Status != http.StatusBadRequest || r.Error != "bad_request" || len(r.Events) > 0 {
			t.Errorf("/sync since %q: HTTP %d %s, want 400 bad_request", since, r.Status, r.Raw)
		}
	}
	if strings.Contains(s.proc.Stderr(), "panic") {
		t.Errorf("serve logged a panic:\n%s", s.proc.stderrTail())
	}
	c.quiet()
}

// TestResumeSlowConsumer: a client that stops reading (small fixed receive
// buffer) while 20,000 events flow is closed 4009 (stall_timeout 1s); it
// processes what had reached it, reconnects with its last cursor and ends
// up with every event once, in order.
func TestResumeSlowConsumer(t *testing.T) {
	const rows = 20000
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, map[string]any{"limits.stall_timeout": "1s"})
	base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")
	tok := gwUserToken(t, "2", "admin")
	slow := newRSClient(t, "slow", tok, "table:attendance")

	conn, resp, err := gwDial(t, "slow", s.wsURL, gwViaHeader, tok, nil, true)
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, respStatus(resp))
	}
	if m := conn.readSync(gwWait); m.Type != "welcome" {
		t.Fatalf("slow: %s", m)
	}
	conn.send(map[string]any{"id": 1, "type": "subscribe", "channels": []string{"table:attendance"}})
	if m := conn.readSync(gwWait); m.Type != "subscribed" {
		t.Fatalf("slow: %s", m)
	}
	// A few events read and processed normally.
	db.Exec(t, `INSERT INTO attendance (student_id, class_id, date, status, marked_by)
		SELECT id, class_id, DATE '2023-01-02', 'present', 10 FROM students WHERE id <= 5`)
	for i := 0; i < 5; i++ {
		slow.take(conn.readSync(gwWait))
	}
	// Then it stops reading while 20,000 events flow, 1000 per transaction.
	start := time.Now()
	for d := 0; d < rows/40; d += 25 {
		db.Exec(t, fmt.Sprintf(`INSERT INTO attendance (student_id, class_id, date, status, marked_by)
			SELECT s.id, s.class_id, DATE '2024-01-01' + d, 'present', 10
			FROM students s CROSS JOIN generate_series(%d, %d) AS d ORDER BY d, s.id`, d, d+24))
	}
	inserted := time.Since(start)
	closed := false
	for deadline := time.Now().Add(30 * time.Second); !closed && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, l := range s.proc.Stdout() {
			if strings.Contains(l, `"event":"disconnect"`) && strings.Contains(l, `"code":4009`) && strings.Contains(l, `"userId":"2"`) {
				closed = true
			}
		}
	}
	if !closed {
		t.Fatalf("the client that stopped reading was not closed 4009 within 30s")
	}
	// It reads again: it processes what reached it, up to the close.
	conn.startReading()
	code := websocket.StatusCode(-1)
	buffered := 0
	for {
		m, ok, err := conn.tryNext(30 * time.Second)
		if err != nil {
			code = websocket.CloseStatus(err)
			break
		}
		if !ok {
			t.Fatal("slow: still open 30s after the server closed it")
		}
		slow.take(m)
		buffered++
	}
	if code != 4009 && code != -1 {
		t.Errorf("slow: close %d, want 4009 or a dropped connection", code)
	}
	before := slow.state()
	if len(before.uniq) >= rows {
		t.Fatalf("slow: got all %d events before its close: nothing was tested", len(before.uniq))
	}
	// Reconnect and resume.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	resumed := time.Now()
	go func() { done <- slow.session(ctx, s.wsURL) }()
	want := attendanceAfter(t, db, base)
	if len(want) != rows+5 {
		t.Fatalf("%d attendance rows, want %d", len(want), rows+5)
	}
	rsWaitAll(t, []*rsClient{slow}, 60*time.Second, "every event", hasAll(len(want), want[len(want)-1]))
	caughtUp := time.Since(resumed)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := slow.state()
	checkClean(t, "slow", st)
	checkSequence(t, "slow (deduplicated)", st.uniq, want)
	t.Logf("20,000 events inserted in %v; the slow client was closed (client sees %d) with %d events processed (%d of them buffered at the close), resumed with since=%s and caught up on %d more in %v; %d duplicates before dedup",
		inserted.Round(time.Millisecond), code, len(before.uniq), buffered, before.last, len(st.uniq)-len(before.uniq), caughtUp.Round(time.Millisecond), st.dups)
}

// TestMeasureRetentionCost measures, for the closing note, the WAL the slot
// holds back for 100,000 retained events (single-row transactions) and how
// long serve takes after a restart to rebuild them. Set CDC_MEASURE=1.
func TestMeasureRetentionCost(t *testing.T) {
	if os.Getenv("CDC_MEASURE") != "1" {
		t.Skip("set CDC_MEASURE=1 to measure")
	}
	const events = 100000
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, map[string]any{"retention.max_events": events, "retention.max_age": "1h"})
	tok := gwUserToken(t, "1", "super_admin")
	head := rsSync(t, s.addr, tok, "tables", "announcements").Cursor
	var walBefore string
	if err := db.Pool.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&walBefore); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	db.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
		INSERT INTO announcements (title, body) VALUES ('measure', 'measure'); COMMIT;
	END LOOP; END $$`, events))
	inserted := time.Since(start)
	var first string
	got := 0
	since := head
	for deadline := time.Now().Add(5 * time.Minute); got < events; {
		r := rsSync(t, s.addr, tok, "tables", "announcements", "since", since, "limit", "5000", "wait", "10s")
		if r.Status != http.StatusOK {
			t.Fatalf("/sync: HTTP %d %s", r.Status, r.Raw)
		}
		if first == "" && len(r.Events) > 0 {
			first = r.Events[0].Event.EventID
		}
		got += len(r.Events)
		since = r.Cursor
		if time.Now().After(deadline) {
			t.Fatalf("serve has %d of %d events", got, events)
		}
	}
	takenIn := time.Since(start)
	// The slot is held at the oldest retained event: the first.
	for deadline := time.Now().Add(20 * time.Second); slotConfirmed(t, db, s.slot) != cursorLSN(t, first); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s, want the first event's commit %s", slotConfirmed(t, db, s.slot), first)
		}
	}
	var confirmedLag, restartLag, generated int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
		pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, pg_wal_lsn_diff(pg_current_wal_lsn(), $2::pg_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, s.slot, walBefore).Scan(&confirmedLag, &restartLag, &generated); err != nil {
		t.Fatal(err)
	}
	rssBefore := peakRSS(t, s.proc.Cmd.Process.Pid)
	if code := s.proc.Stop(t); code != 0 {
		t.Fatalf("serve exited %d on SIGTERM", code)
	}
	restarted := time.Now()
	s.proc = Start(t, nil, "serve", "--config", s.cfg)
	s.proc.WaitStderr(t, `"msg":"serving"`, readyTimeout)
	serving := time.Since(restarted)
	s.proc.WaitStderr(t, `"msg":"caught up"`, 5*time.Minute)
	caughtUp := time.Since(restarted)
	c, _ := broadcaster.ParseCursor(first)
	floor := broadcaster.Cursor{LSN: c.LSN - 1}.String()
	all := rsSyncAll(t, s.addr, tok, floor, "tables", "announcements")
	synced := time.Since(restarted)
	if len(all) != events || all[0].Event.EventID != first {
		t.Errorf("after the restart /sync from the oldest position returned %d events, want %d from %s", len(all), events, first)
	}
	rssAfter := peakRSS(t, s.proc.Cmd.Process.Pid)
	t.Logf("%d single-row transactions inserted in %v, all in serve's log after %v; WAL written by them %.1f MiB",
		events, inserted.Round(time.Millisecond), takenIn.Round(time.Millisecond), float64(generated)/(1<<20))
	t.Logf("slot with the log full: current WAL - confirmed_flush_lsn = %.1f MiB, current WAL - restart_lsn (WAL kept on disk for the slot) = %.1f MiB, i.e. %.0f bytes per retained event",
		float64(confirmedLag)/(1<<20), float64(restartLag)/(1<<20), float64(restartLag)/events)
	t.Logf("restart: serving after %v, caught up (log rebuilt) after %v, /sync from the oldest cursor returned all %d after %v; peak RSS %.1f MiB before, %.1f MiB after the rebuild",
		serving.Round(time.Millisecond), caughtUp.Round(time.Millisecond), len(all), synced.Round(time.Millisecond), float64(rssBefore)/(1<<20), float64(rssAfter)/(1<<20))
}
