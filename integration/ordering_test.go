package integration

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/treasure-home/cdc-broadcaster/cdc"
)

// Issue 11, "Bursts must not cut clients that read promptly" and
// "Revocation in commit order", end to end: the real serve binary, a real
// PostgreSQL, real WebSocket clients and JWTs.

// TestBurstPromptReaders: one transaction of 20,000 rows, far more than the
// send queue and (with the small settings) the retention, reaches a client
// that reads as fast as it can whole and in order, and clients that
// subscribe while the burst is being fanned out get every event after their
// subscribed cursors; none is closed nor told to reset. With the defaults
// and with limits.send_queue 64 / retention.max_events 300.
func TestBurstPromptReaders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits map[string]any
	}{
		{"defaults", nil},
		{"small queue and retention", map[string]any{"limits.send_queue": 64, "retention.max_events": 300}},
	} {
		t.Run(tc.name, func(t *testing.T) { testBurstPromptReaders(t, tc.edits) })
	}
}

// burstJoin says when a late client of testBurstPromptReaders subscribes:
// once the prompt client has after events; connected ones were connected
// before the burst and only send their subscribe then.
type burstJoin struct {
	name      string
	after     int
	connected bool
}

// The gateway fans a burst out faster than a client reads it (it queues,
// or lets a client catch up from the log), so by the time the prompt client
// has read a few hundred events the gateway may be thousands ahead, and
// under load a client that has yet to dial may come too late for the whole
// burst. The ones connected beforehand subscribe within a round trip.
var burstJoins = []burstJoin{
	{"late (connected, joins at the 1st event)", 1, true},
	{"late (connected, joins at the 200th)", 200, true},
	{"late (connected, joins at the 500th)", 500, true},
	{"late (dials at the 500th)", 500, false},
}

func testBurstPromptReaders(t *testing.T, edits map[string]any) {
	const rows = 20000
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, edits)
	tok := gwUserToken(t, "2", "admin")
	base := db.QueryInt(t, "SELECT coalesce(max(id), 0) FROM attendance")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prompt := newRSClient(t, "prompt", tok, "table:attendance")
	done := make(chan error, 1+len(burstJoins))
	go func() { done <- prompt.session(ctx, s.wsURL) }()
	rsWaitAll(t, []*rsClient{prompt}, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })

	lates := make([]*rsClient, len(burstJoins))
	joins := make([]chan struct{}, len(burstJoins))
	for i, j := range burstJoins {
		lates[i] = newRSClient(t, j.name, tok, "table:attendance")
		joins[i] = make(chan struct{})
		if j.connected {
			lates[i].ready = joins[i]
			go func() { done <- lates[i].session(ctx, s.wsURL) }()
		}
	}

	inserted := make(chan error, 1)
	go func() {
		_, err := db.Pool.Exec(context.Background(), fmt.Sprintf(`INSERT INTO attendance (student_id, class_id, date, status, marked_by)
			SELECT s.id, s.class_id, DATE '2024-01-01' + d, 'present', 10
			FROM students s CROSS JOIN generate_series(1, %d) AS d ORDER BY d, s.id`, rows/40))
		inserted <- err
	}()
	// The late clients subscribe while the burst is being fanned out.
	for i, j := range burstJoins {
		rsWaitAll(t, []*rsClient{prompt}, 60*time.Second, fmt.Sprintf("the burst under way (%d events)", j.after),
			func(c *rsClient) bool { n, _ := c.progress(); return n >= j.after })
		close(joins[i])
		if !j.connected {
			go func() { done <- lates[i].session(ctx, s.wsURL) }()
		}
	}

	if err := <-inserted; err != nil {
		t.Fatal(err)
	}
	want := attendanceAfter(t, db, base)
	if len(want) != rows {
		t.Fatalf("%d rows inserted, want %d", len(want), rows)
	}
	// One more row after the burst, once every client has subscribed: all
	// are live and get it.
	rsWaitAll(t, lates, gwWait, "subscribed", func(c *rsClient) bool { return c.sessionCount() == 1 })
	want = append(want, db.QueryInt(t, `INSERT INTO attendance (student_id, class_id, date, status)
		SELECT id, class_id, DATE '2019-01-01', 'present' FROM students ORDER BY id LIMIT 1 RETURNING id`))
	rsWaitAll(t, []*rsClient{prompt}, 120*time.Second, "every event", hasAll(len(want), want[len(want)-1]))
	rsWaitAll(t, lates, 120*time.Second, "the events after their cursors", func(c *rsClient) bool { _, mx := c.progress(); return mx >= want[len(want)-1] })
	cancel()
	for range 1 + len(lates) {
		if err := <-done; err != nil {
			t.Fatalf("a client's connection ended: %v", err)
		}
	}
	st := prompt.state()
	checkClean(t, "prompt", st)
	checkSequence(t, "prompt", st.uniq, want)
	if st.dups != 0 {
		t.Errorf("prompt: %d duplicates", st.dups)
	}
	within := 0
	for _, late := range lates {
		lst := late.state()
		checkClean(t, late.name, lst)
		head := late.heads[0]
		var after []int64
		for i, e := range st.uniq {
			if e.ID > head { // fixed-width hex: text order is cursor order
				after = append(after, want[i])
			}
		}
		if len(after) == len(want) {
			t.Errorf("%s subscribed at %s, before the burst's first event reached the prompt client", late.name, head)
		}
		checkSequence(t, late.name, lst.uniq, after)
		if len(after) > 1 && len(after) < len(want) {
			within++
		}
		t.Logf("%s subscribed at %s: %d events after its cursor", late.name, head, len(after))
	}
	if within == 0 {
		t.Errorf("no late client subscribed while the burst was being fanned out: the case was not tried")
	}
	for _, l := range s.proc.Stdout() {
		if strings.Contains(l, `"event":"disconnect"`) && strings.Contains(l, `"code":4009`) {
			t.Errorf("a client was closed as a slow consumer: %s", l)
		}
	}
	t.Logf("%d rows in one transaction and one after: the prompt client got all, %d of %d late clients subscribed during the burst", rows, within, len(lates))
}

// upToPong pings and returns every message that came before the pong.
func (c *gwClient) upToPong() []gwMsg {
	c.t.Helper()
	id := c.request("ping", nil)
	_, before := c.waitFor(gwWait, "pong", func(m gwMsg) bool { return m.idIs(id) })
	return before
}

// orderingServe starts serve on the example school for the revocation tests.
func orderingServe(t *testing.T) (*DB, *rsServe) {
	db := NewDB(t, WithExampleData())
	return db, rsStartServe(t, db, nil)
}

// joinClass makes teacher a teacher of class and subscribes cl to the
// class's channel, retrying while the gateway still holds the answer from
// before the change (the change reaches it through replication).
func joinClass(t *testing.T, db *DB, cl *gwClient, teacher, class int) {
	t.Helper()
	db.Exec(t, "INSERT INTO class_teachers (class_id, teacher_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", class, teacher)
	ch := "class:" + strconv.Itoa(class)
	for deadline := time.Now().Add(gwWait); ; time.Sleep(20 * time.Millisecond) {
		if granted, _ := cl.subscribe(ch); len(granted) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("teacher %d could not subscribe to %s after joining the class", teacher, ch)
		}
	}
}

// attendanceDay makes each markAttendance's date its own (a student has
// one attendance row a day).
var attendanceDay atomic.Int64

// markAttendance inserts an attendance row in class and returns its id.
func markAttendance(t *testing.T, db *DB, class int) int64 {
	t.Helper()
	return db.QueryInt(t, `INSERT INTO attendance (student_id, class_id, date, status)
		SELECT id, class_id, DATE '2020-01-01' + $2::int, 'present' FROM students WHERE class_id = $1 LIMIT 1
		RETURNING id`, class, attendanceDay.Add(1))
}

// TestRevocationInCommitOrder: an event committed right after the
// transaction that removed a teacher from a class never reaches that
// teacher: revoked comes first, every time (was: 2 of 3 trials got the
// event first).
func TestRevocationInCommitOrder(t *testing.T) {
	db, s := orderingServe(t)
	const teacher, class = 12, 1
	cl := gwConnect(t, "teacher", s.wsURL, gwViaHeader, gwUserToken(t, strconv.Itoa(teacher), "teacher"))
	admin := gwConnect(t, "admin", s.wsURL, gwViaHeader, gwUserToken(t, "2", "admin"))
	admin.mustSubscribe("class:1")
	for trial := range 5 {
		joinClass(t, db, cl, teacher, class)
		db.Exec(t, "DELETE FROM class_teachers WHERE class_id = $1 AND teacher_id = $2", class, teacher)
		later := markAttendance(t, db, class)
		// The admin, still allowed, sees the later event: by then the
		// teacher's connection has had everything up to it.
		admin.waitFor(gwWait, "the later attendance", func(m gwMsg) bool {
			return m.Type == "event" && m.Event.EventType == "attendance.marked" && idOf(m) == later
		})
		// revoked comes once the re-check is done; nothing committed after
		// the DELETE may come before it, nor after it.
		m, before := cl.waitFor(gwWait, "revoked", func(m gwMsg) bool { return m.Type == "revoked" })
		if m.Channel != "class:1" {
			t.Fatalf("trial %d: %s, want class:1 revoked", trial, m)
		}
		for _, m := range append(before, cl.upToPong()...) {
			if m.Type == "event" && idOf(m) == later {
				t.Fatalf("trial %d: attendance %d, committed after the teacher left the class, reached them", trial, later)
			}
		}
	}
}

// idOf reads an event's data.id.
func idOf(m gwMsg) int64 {
	if m.Event == nil {
		return -1
	}
	n, ok := m.Event.Data["id"].(interface{ Int64() (int64, error) })
	if !ok {
		return -1
	}
	v, _ := n.Int64()
	return v
}

// TestRevocationLongPoll: a /sync long-poll that began while the teacher
// could read the class does not return an attendance event committed after
// the teacher was removed from it: it answers 403 (was: the event).
func TestRevocationLongPoll(t *testing.T) {
	db, s := orderingServe(t)
	const teacher, class = 12, 1
	tok := gwUserToken(t, strconv.Itoa(teacher), "teacher")
	cl := gwConnect(t, "teacher", s.wsURL, gwViaHeader, tok)
	joinClass(t, db, cl, teacher, class)
	head, err := syncGet(s.addr, tok, url.Values{"channels": {"class:1"}})
	if err != nil || head.Status != 200 {
		t.Fatalf("/sync for the head: %v %+v", err, head)
	}
	answer := make(chan syncReply, 1)
	go func() {
		r, err := syncGet(s.addr, tok, url.Values{"channels": {"class:1"}, "since": {head.Cursor}, "wait": {"20"}})
		if err != nil {
			r = syncReply{Status: -1, Raw: err.Error()}
		}
		answer <- r
	}()
	time.Sleep(300 * time.Millisecond) // the poll is waiting
	db.Exec(t, "DELETE FROM class_teachers WHERE class_id = $1 AND teacher_id = $2", class, teacher)
	time.Sleep(time.Second)
	later := markAttendance(t, db, class)
	var r syncReply
	select {
	case r = <-answer:
	case <-time.After(30 * time.Second):
		t.Fatal("the long-poll did not answer")
	}
	for _, e := range r.Events {
		if e.Event.EventType == "attendance.marked" {
			t.Fatalf("the long-poll returned attendance %s (the later one is %d), committed after the teacher left the class: %s", e.Event.EventID, later, r.Raw)
		}
	}
	if r.Status != 403 || r.Error != "forbidden" || r.Channel != "class:1" {
		t.Fatalf("long-poll answer %d %s, want 403 forbidden naming class:1", r.Status, r.Raw)
	}
	// And the next poll from the same cursor is refused at once.
	if r, _ := syncGet(s.addr, tok, url.Values{"channels": {"class:1"}, "since": {head.Cursor}}); r.Status != 403 {
		t.Fatalf("next poll: %d %s, want 403", r.Status, r.Raw)
	}
}

// TestRevocationFreshSubscribe: once a membership change has reached the
// gateway, a new subscription is checked against it, not granted from the
// cached answer of before; and one made right after the change committed,
// before the gateway heard of it, is revoked before anything committed
// after the change reaches it.
func TestRevocationFreshSubscribe(t *testing.T) {
	db, s := orderingServe(t)
	const teacher, class = 12, 1
	tok := gwUserToken(t, strconv.Itoa(teacher), "teacher")
	first := gwConnect(t, "first", s.wsURL, gwViaHeader, tok)
	joinClass(t, db, first, teacher, class) // the grant is cached
	db.Exec(t, "DELETE FROM class_teachers WHERE class_id = $1 AND teacher_id = $2", class, teacher)
	// At once, before replication has brought the change.
	quick := gwConnect(t, "quick", s.wsURL, gwViaHeader, tok)
	granted, _ := quick.subscribe("class:1")
	later := markAttendance(t, db, class)
	if m, _ := first.waitFor(gwWait, "revoked", func(m gwMsg) bool { return m.Type == "revoked" }); m.Channel != "class:1" {
		t.Fatalf("first: %s, want class:1 revoked", m)
	}
	if len(granted) == 1 {
		// Granted before the gateway heard of the change: revoked once it
		// does, with nothing committed after the change before or after.
		m, before := quick.waitFor(gwWait, "revoked", func(m gwMsg) bool { return m.Type == "revoked" })
		if m.Channel != "class:1" {
			t.Fatalf("quick: %s, want class:1 revoked", m)
		}
		for _, m := range append(before, quick.upToPong()...) {
			if m.Type == "event" && idOf(m) == later {
				t.Fatalf("quick: attendance %d committed after the change reached it", later)
			}
		}
	}
	fresh := gwConnect(t, "fresh", s.wsURL, gwViaHeader, tok)
	if granted, refused := fresh.subscribe("class:1"); len(granted) != 0 || refused["class:1"] != "forbidden" {
		t.Fatalf("fresh subscribe after the change: granted %v refused %v, want forbidden", granted, refused)
	}
}

// TestRevocationReportCardMoved: a report card moved to another class stops
// reaching the old class's teacher (the example config re-checks
// reportcard: channels on report_cards).
func TestRevocationReportCardMoved(t *testing.T) {
	db, s := orderingServe(t)
	// Teacher 10 teaches classes 1 and 2; class 3 is 11's and 12's.
	card := db.QueryInt(t, `INSERT INTO report_cards (student_id, term_id, class_id)
		SELECT id, 1, class_id FROM students WHERE class_id = 1 LIMIT 1 RETURNING id`)
	ch := "reportcard:" + strconv.FormatInt(card, 10)
	cl := gwConnect(t, "teacher", s.wsURL, gwViaHeader, gwUserToken(t, "10", "teacher"))
	cl.mustSubscribe(ch)
	db.Exec(t, "UPDATE report_cards SET class_id = 3 WHERE id = $1", card)
	m, _ := cl.waitFor(gwWait, "revoked", func(m gwMsg) bool { return m.Type == "revoked" })
	if m.Channel != ch || m.Reason != "forbidden" {
		t.Fatalf("got %s, want %s revoked", m, ch)
	}
	db.Exec(t, "UPDATE report_cards SET status = 'published' WHERE id = $1", card)
	for _, m := range cl.upToPong() {
		if m.Type == "event" {
			t.Fatalf("an event of the moved report card reached the old class's teacher: %s", m)
		}
	}
}

// TestCursorAheadOfTheLog: a `since` past anything the database has
// written (another database's, or made up) gets reset / 410, instead of
// muting the channel until the log reaches it.
func TestCursorAheadOfTheLog(t *testing.T) {
	_, s := orderingServe(t)
	const ahead = "FFFFFFFF00000000-00000001"
	tok := gwUserToken(t, "2", "admin")
	cl := gwConnect(t, "admin", s.wsURL, gwViaHeader, tok)
	id := cl.request("subscribe", map[string]any{"channels": []string{"table:attendance"}, "since": ahead})
	if m := cl.reply(id); m.Type != "subscribed" {
		t.Fatalf("subscribe: %s", m)
	}
	if m, _ := cl.waitFor(gwWait, "reset", func(m gwMsg) bool { return m.Type == "reset" }); m.Reason != "cursor_expired" {
		t.Fatalf("got %s, want reset cursor_expired", m)
	}
	r, err := syncGet(s.addr, tok, url.Values{"channels": {"table:attendance"}, "since": {ahead}})
	if err != nil || r.Status != 410 || r.Error != "cursor_expired" {
		t.Fatalf("/sync since a cursor ahead: %v %d %s, want 410 cursor_expired", err, r.Status, r.Raw)
	}
}

// attendanceAfter returns the ids of the attendance rows after base, in
// order: what a table:attendance subscriber must end with.
func attendanceAfter(t testing.TB, db *DB, base int64) []int64 {
	t.Helper()
	rs, err := db.Pool.Query(context.Background(), "SELECT id FROM attendance WHERE id > $1 ORDER BY id", base)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestAwaitVisible: cdc.AwaitVisible says when a transaction's changes are
// visible to new snapshots: not while it runs, at once after its commit.
func TestAwaitVisible(t *testing.T) {
	db := NewDB(t, WithExampleData())
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current() & 4294967295").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if ok, err := cdc.AwaitVisible(ctx, db.Pool, uint32(xid), 50*time.Millisecond); err != nil || ok {
		t.Fatalf("a running transaction: visible %v, %v; want not visible", ok, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := cdc.AwaitVisible(ctx, db.Pool, uint32(xid), time.Second); err != nil || !ok {
		t.Fatalf("a committed transaction: visible %v, %v", ok, err)
	}
}
