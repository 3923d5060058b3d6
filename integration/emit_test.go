package integration

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Issue 15, "Events that are not row changes, still emitted after commit",
// end to end: the real serve binary with config.example.yaml's emit
// section, a real PostgreSQL where the application emits through
// migrations/003_emit.sql's cdc_emit (and pg_logical_emit_message itself),
// real WebSocket clients and JWTs, /sync and /metrics.

// emWatch records every event a client receives, in order.
type emWatch struct {
	c      *gwClient
	events []gwMsg
}

// until waits for the first event match accepts and returns it with the
// events before it since the last call; every event is recorded.
func (w *emWatch) until(what string, match func(gwMsg) bool) (gwMsg, []gwMsg) {
	w.c.t.Helper()
	m, skipped := w.c.waitFor(gwWait, what, func(m gwMsg) bool { return m.Type == "event" && match(m) })
	var before []gwMsg
	for _, s := range skipped {
		if s.Type == "event" {
			before = append(before, s)
		}
	}
	w.events = append(append(w.events, before...), m)
	return m, before
}

// emAnnounce inserts an announcement for everyone (announcement.created on
// school) in a transaction of its own and returns its id.
func emAnnounce(t *testing.T, db *DB) int64 {
	t.Helper()
	return db.QueryInt(t, "INSERT INTO announcements (title, body) VALUES ('emit', 'emit') RETURNING id")
}

// isAnnouncement matches the announcement.created event of row id.
func isAnnouncement(id int64) func(gwMsg) bool {
	return func(m gwMsg) bool { return m.Event.EventType == "announcement.created" && idOf(m) == id }
}

// isEmitted matches the emitted event of type typ whose data.step is step.
func isEmitted(typ, step string) func(gwMsg) bool {
	return func(m gwMsg) bool { return m.Event.EventType == typ && m.Event.Data["step"] == step }
}

// emExec runs sql in tx, failing the test on error.
func emExec(t *testing.T, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// emBegin opens a transaction on db, rolled back at the end of the test if
// still open.
func emBegin(t *testing.T, db *DB) pgx.Tx {
	t.Helper()
	tx, err := db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// emMaintenance is SQL emitting system.maintenance (allowed by emit.types,
// on the global channel patterns) on school, with data {"step": $1}.
const emMaintenance = "SELECT cdc_emit('system.maintenance', ARRAY['school'], jsonb_build_object('step', $1::text))"

func emIDs(ms []gwMsg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Event.EventID
	}
	return out
}

// TestEmit: emitted events arrive after commit and never after a rollback,
// in commit order among their transaction's row events; the
// non-transactional ones at once; they replay from a cursor, after a
// restart too, with the same ids, and /sync serves them; messages that
// break the emit section are dropped and counted while the stream goes
// on; access rules hold for their channels.
func TestEmit(t *testing.T) {
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, nil)
	ctx := context.Background()
	adminTok := gwUserToken(t, "2", "admin")
	channels := []string{"school", "role:admin", "exam:1"}
	admin := &emWatch{c: gwConnect(t, "admin", s.wsURL, gwViaHeader, adminTok)}
	admin.c.mustSubscribe(channels...)

	// The cursor the replays start from: an event before all the others.
	first := emAnnounce(t, db)
	start, _ := admin.until("the first announcement", isAnnouncement(first))
	since := start.Event.Cursor
	admin.events = nil

	t.Run("after commit, never after a rollback", func(t *testing.T) {
		tx := emBegin(t, db)
		emExec(t, tx, emMaintenance, "commit")
		// A transaction committed after the emit but before its own
		// transaction: its event comes first, and the emitted one not
		// before it.
		barrier := emAnnounce(t, db)
		if _, before := admin.until("the barrier", isAnnouncement(barrier)); len(before) > 0 {
			t.Fatalf("events before the barrier, while the emitting transaction was open: %v", before)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		m, _ := admin.until("the emitted event", isEmitted("system.maintenance", "commit"))
		if m.Event.Operation != "EMIT" || m.Event.Table != "" || m.Event.TxID == 0 || !slices.Equal(m.Channels, []string{"school"}) {
			t.Errorf("emitted event %s", m)
		}

		tx = emBegin(t, db)
		emExec(t, tx, emMaintenance, "rollback")
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		// Everything written before the barrier has been through the
		// stream by the time the barrier's event arrives.
		barrier = emAnnounce(t, db)
		if _, before := admin.until("the barrier after the rollback", isAnnouncement(barrier)); len(before) > 0 {
			t.Fatalf("a rolled-back emit reached the client: %v", before)
		}
	})

	t.Run("in commit order among its transaction's row events", func(t *testing.T) {
		tx := emBegin(t, db)
		var a1, a2 int64
		if err := tx.QueryRow(ctx, "INSERT INTO announcements (title, body) VALUES ('a1', 'a1') RETURNING id").Scan(&a1); err != nil {
			t.Fatal(err)
		}
		emExec(t, tx, emMaintenance, "between")
		if err := tx.QueryRow(ctx, "INSERT INTO announcements (title, body) VALUES ('a2', 'a2') RETURNING id").Scan(&a2); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		last, before := admin.until("the transaction's last event", isAnnouncement(a2))
		got := append(before, last)
		if len(got) != 3 || !isAnnouncement(a1)(got[0]) || !isEmitted("system.maintenance", "between")(got[1]) {
			t.Fatalf("events %v, want announcement %d, the emitted event, announcement %d", got, a1, a2)
		}
		for i, m := range got {
			c, err := broadcaster.ParseCursor(m.Event.Cursor)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := broadcaster.ParseCursor(got[0].Event.Cursor)
			if c.LSN != first.LSN || c.Pos != uint32(i+1) || m.Event.TxID != got[0].Event.TxID || m.Event.Timestamp != got[0].Event.Timestamp {
				t.Errorf("event %d: cursor %s, txId %d, timestamp %d; want position %d of the transaction of %s (txId %d, timestamp %d)",
					i, m.Event.Cursor, m.Event.TxID, m.Event.Timestamp, i+1, got[0].Event.Cursor, got[0].Event.TxID, got[0].Event.Timestamp)
			}
		}
	})

	t.Run("non-transactional: at once, and after a rollback too", func(t *testing.T) {
		tx := emBegin(t, db)
		var a int64
		if err := tx.QueryRow(ctx, "INSERT INTO announcements (title, body) VALUES ('long', 'long') RETURNING id").Scan(&a); err != nil {
			t.Fatal(err)
		}
		var lsn string
		if err := tx.QueryRow(ctx, `SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1'],
			jsonb_build_object('examId', 1, 'done', 1, 'total', 10), transactional => false)::text`).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		// It arrives while its transaction is still open.
		m, before := admin.until("the progress tick", func(m gwMsg) bool { return m.Event.EventType == "gradingJob.progress" })
		if len(before) > 0 {
			t.Errorf("events before the tick: %v", before)
		}
		at, err := broadcaster.ParseLSN(lsn)
		if err != nil {
			t.Fatal(err)
		}
		// cdc_emit returns the end of the message's WAL record.
		if want := (broadcaster.Cursor{LSN: at - 1, Pos: 1}).String(); m.Event.EventID != want || m.Event.TxID != 0 {
			t.Errorf("tick %s: want eventId %s (its record's end less one, position 1) and txId 0", m, want)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		// The transaction around it commits later: its events come after.
		row, _ := admin.until("the transaction's row event", isAnnouncement(a))
		if row.Event.Cursor <= m.Event.Cursor {
			t.Errorf("the row event's cursor %s is not after the tick's %s", row.Event.Cursor, m.Event.Cursor)
		}

		tx = emBegin(t, db)
		emExec(t, tx, `SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1', 'role:teacher'],
			jsonb_build_object('examId', 1, 'done', 2, 'total', 10), transactional => false)`)
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		tick, _ := admin.until("the tick of the rolled-back transaction", func(m gwMsg) bool {
			return m.Event.EventType == "gradingJob.progress" && fmt.Sprint(m.Event.Data["done"]) == "2"
		})
		if !slices.Equal(tick.Channels, []string{"exam:1"}) {
			t.Errorf("tick on %v, want [exam:1] (the only one of its channels the client subscribed)", tick.Channels)
		}
	})

	t.Run("non-transactional, just before its transaction's commit", func(t *testing.T) {
		// The message's record ends where the commit's begins: the two
		// events still get ids of their own, the tick's first.
		id := db.QueryInt(t, `WITH a AS (INSERT INTO announcements (title, body) VALUES ('last', 'last') RETURNING id)
			SELECT a.id FROM a, LATERAL (SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1'],
				jsonb_build_object('examId', 1, 'done', 3, 'total', 10), transactional => false)) AS e`)
		row, before := admin.until("the row event", isAnnouncement(id))
		if len(before) != 1 || before[0].Event.EventType != "gradingJob.progress" || before[0].Event.Cursor >= row.Event.Cursor {
			t.Fatalf("events %v then %s; want the tick first, with a cursor before the row's", before, row)
		}
	})

	t.Run("dropped and counted, the stream goes on", func(t *testing.T) {
		before := scrapeMetrics(t, s.addr)
		bad := []struct{ sql, reason string }{
			{`SELECT pg_logical_emit_message(true, 'cdc.emit', '{"type":"grading.secret","channels":["school"]}')`, "type"},
			{`SELECT pg_logical_emit_message(true, 'cdc.emit', '{"type":"announcement.created","channels":["school"]}')`, "type"},
			{`SELECT cdc_emit('system.maintenance', ARRAY['class:1'], '{"step":"bad"}')`, "channel"},
			{`SELECT pg_logical_emit_message(true, 'cdc.emit', '{"type": "system.maintenance", ')`, "malformed"},
			{`SELECT pg_logical_emit_message(false, 'cdc.emit', 'not json')`, "malformed"},
			{`SELECT cdc_emit('system.maintenance', ARRAY['school'], jsonb_build_object('step', 'bad', 'blob', repeat('x', 9000)))`, "too_large"},
			{`SELECT cdc_emit('system.notice', ARRAY['role:admin'], '{"level":"info"}')`, "data"},
		}
		want := map[string]float64{}
		for _, b := range bad {
			db.Exec(t, b.sql)
			want[b.reason]++
		}
		// One transaction holding a bad message between good events: the
		// good ones all arrive.
		tx := emBegin(t, db)
		emExec(t, tx, `SELECT cdc_emit('grading.secret', ARRAY['school'])`)
		want["type"]++
		var a int64
		if err := tx.QueryRow(ctx, "INSERT INTO announcements (title, body) VALUES ('after', 'after') RETURNING id").Scan(&a); err != nil {
			t.Fatal(err)
		}
		emExec(t, tx, `SELECT cdc_emit('system.notice', ARRAY['role:admin'], '{"level":"warning","message":"backup failed"}')`)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		notice, got := admin.until("the good notice", func(m gwMsg) bool { return m.Event.EventType == "system.notice" })
		got = append(got, notice)
		if len(got) != 2 || !isAnnouncement(a)(got[0]) {
			t.Fatalf("events %v, want announcement %d then the notice, and nothing dropped", got, a)
		}
		if fmt.Sprint(notice.Event.Data) != "map[level:warning message:backup failed]" || !slices.Equal(notice.Channels, []string{"role:admin"}) {
			t.Errorf("notice %s", notice)
		}
		after := scrapeMetrics(t, s.addr)
		for _, reason := range []string{"disabled", "too_large", "malformed", "type", "channel", "data"} {
			d := after.value("cdc_broadcaster_emit_dropped_total", "reason", reason) - before.value("cdc_broadcaster_emit_dropped_total", "reason", reason)
			if d != want[reason] {
				t.Errorf("emit_dropped_total{reason=%q} grew by %v, want %v", reason, d, want[reason])
			}
			if want[reason] > 0 && !strings.Contains(s.proc.Stderr(), `"msg":"emit: message dropped","reason":"`+reason+`"`) {
				t.Errorf("no log line for a message dropped for %s", reason)
			}
		}
		if _, ok := after["cdc_broadcaster_emit_dropped_total"]; !ok {
			t.Errorf("no cdc_broadcaster_emit_dropped_total in /metrics")
		}
	})

	t.Run("access rules hold for emitted events", func(t *testing.T) {
		parentTok := gwUserToken(t, "300", "parent")
		parent := &emWatch{c: gwConnect(t, "parent", s.wsURL, gwViaHeader, parentTok)}
		granted, refused := parent.c.subscribe(channels...)
		if !slices.Equal(granted, []string{"school"}) || refused["exam:1"] != "forbidden" || refused["role:admin"] != "forbidden" {
			t.Fatalf("parent: granted %v, refused %v; want school only", granted, refused)
		}
		tx := emBegin(t, db)
		emExec(t, tx, `SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1'], jsonb_build_object('examId', 1, 'done', 9, 'total', 10))`)
		emExec(t, tx, `SELECT cdc_emit('system.notice', ARRAY['role:admin'], '{"level":"info","message":"for admins"}')`)
		emExec(t, tx, `SELECT cdc_emit('system.maintenance', ARRAY['role:admin', 'school'], '{"step":"everyone"}')`)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		barrier := emAnnounce(t, db)
		m, before := parent.until("the barrier", isAnnouncement(barrier))
		got := append(before, m)
		if len(got) != 2 || !isEmitted("system.maintenance", "everyone")(got[0]) || !slices.Equal(got[0].Channels, []string{"school"}) {
			t.Fatalf("parent got %v; want the maintenance event on school only, then the barrier", got)
		}
		m, before = admin.until("the barrier", isAnnouncement(barrier))
		if got := append(before, m); len(got) != 4 || !sameSet(got[2].Channels, []string{"role:admin", "school"}) {
			t.Fatalf("admin got %v; want the three emitted events, then the barrier", got)
		}
		if r, err := syncGet(s.addr, parentTok, url.Values{"since": {since}, "channels": {"exam:1"}}); err != nil || r.Status != 403 {
			t.Errorf("/sync of exam:1 for the parent: %v %+v, want 403", err, r)
		}
	})

	// Everything the admin got after the cursor, in order.
	want := emIDs(admin.events)
	replay := func(t *testing.T, what string) {
		t.Helper()
		c := &emWatch{c: gwConnect(t, "replay", s.wsURL, gwViaHeader, adminTok)}
		id := c.c.request("subscribe", map[string]any{"channels": channels, "since": since})
		if m := c.c.reply(id); m.Type != "subscribed" {
			t.Fatalf("%s: subscribe with since: %s", what, m)
		}
		last := want[len(want)-1]
		c.until("the last event", func(m gwMsg) bool { return m.Event.EventID == last })
		if got := emIDs(c.events); !slices.Equal(got, want) {
			t.Errorf("%s: replayed\n%v\nwant\n%v", what, got, want)
		}
		var emitted int
		for i, m := range c.events {
			if m.Event.Operation == "EMIT" {
				emitted++
				if g, w := fmt.Sprint(m.Event.Data), fmt.Sprint(admin.events[i].Event.Data); g != w {
					t.Errorf("%s: %s data %s, was %s", what, m.Event.EventID, g, w)
				}
			}
		}
		if emitted < 9 {
			t.Errorf("%s: %d emitted events among the replayed, want at least 9", what, emitted)
		}
	}

	t.Run("replays with since and appears in /sync", func(t *testing.T) {
		replay(t, "since")
		r, err := syncGet(s.addr, adminTok, url.Values{"since": {since}, "channels": {strings.Join(channels, ",")}})
		if err != nil || r.Status != 200 {
			t.Fatalf("/sync: %v %+v", err, r)
		}
		var got []string
		for _, e := range r.Events {
			got = append(got, e.Event.EventID)
		}
		if !slices.Equal(got, want) || r.More {
			t.Errorf("/sync served\n%v (more %v)\nwant\n%v", got, r.More, want)
		}
	})

	t.Run("replays after a restart with the same ids", func(t *testing.T) {
		if code := s.proc.Stop(t); code != 0 {
			t.Fatalf("serve exited %d", code)
		}
		s.start()
		// The log is rebuilt from the slot: transactional and
		// non-transactional events alike, with the same ids.
		replay(t, "after the restart")
	})
}

// TestEmitRestartOldestNonTransactional: a broadcaster restarted while
// the oldest event its log retains is a non-transactional one rebuilds the
// log from the slot with that event in it, same id: the slot was held
// before the message's record, not at the event's id, which lies inside
// it.
func TestEmitRestartOldestNonTransactional(t *testing.T) {
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, map[string]any{"retention.max_events": 2})
	tok := gwUserToken(t, "2", "admin")
	channels := []string{"school", "exam:1"}
	admin := &emWatch{c: gwConnect(t, "admin", s.wsURL, gwViaHeader, tok)}
	admin.c.mustSubscribe(channels...)

	first := emAnnounce(t, db)
	a, _ := admin.until("the first announcement", isAnnouncement(first))
	db.Exec(t, `SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1'], jsonb_build_object('examId', 1, 'done', 1, 'total', 2), transactional => false)`)
	tick, _ := admin.until("the tick", func(m gwMsg) bool { return m.Event.EventType == "gradingJob.progress" })
	last := emAnnounce(t, db)
	b, _ := admin.until("the last announcement", isAnnouncement(last))
	// The log holds the tick and the last announcement; the slot's
	// confirmed position has moved past the first announcement's commit.
	from, err := broadcaster.ParseCursor(a.Event.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(gwWait)
	for db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::text::pg_lsn", s.slot, from.LSN.String()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the slot was not confirmed up to %s within %v", from.LSN, gwWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := s.proc.Stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	s.start()

	c := &emWatch{c: gwConnect(t, "replay", s.wsURL, gwViaHeader, tok)}
	id := c.c.request("subscribe", map[string]any{"channels": channels, "since": a.Event.Cursor})
	if m := c.c.reply(id); m.Type != "subscribed" {
		t.Fatalf("subscribe with since: %s", m)
	}
	m, before := c.c.waitFor(gwWait, "the last announcement", func(m gwMsg) bool { return m.Type == "reset" || (m.Type == "event" && isAnnouncement(last)(m)) })
	if m.Type == "reset" {
		t.Fatalf("told to reset after the restart: the tick's message was not kept in the slot (%s)", m)
	}
	if got := emIDs(append(before, m)); !slices.Equal(got, []string{tick.Event.EventID, b.Event.EventID}) {
		t.Errorf("replayed %v, want the tick %s and the announcement %s", got, tick.Event.EventID, b.Event.EventID)
	}
}

// TestEmitCheck: check reports an emit section that cannot work, naming
// the key and its line: a syntax error refuses the config (exit 2), a
// channel pattern no access rule can fit or a declared type the mappings
// produce is a problem (exit 1).
func TestEmitCheck(t *testing.T) {
	db := NewDB(t, WithExampleData())
	for _, tc := range []struct {
		name  string
		edits map[string]any
		code  int
		want  []string
	}{
		{"bad glob and field type", map[string]any{"emit.types": []string{"system.["}, "emit.events.0.data.examId": "int"}, 2,
			[]string{"emit.types[0]", "invalid glob", "emit.events[0].data.examId", `invalid type "int"`}},
		{"a pattern no channel fits", map[string]any{"emit.channels": []string{"room:{roomId}", "school"}}, 1,
			[]string{"emit.channels[0]", "fits no channel pattern"}},
		{"a declared type the mappings produce", map[string]any{"emit.events.2.type": "exam.published"}, 1,
			[]string{"emit.events[2].type", "exam.published", "the mappings produce this event type"}},
		{"declared but off", map[string]any{"emit.enabled": false}, 0,
			[]string{"warning:", "emit.enabled", "dropped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			edits := map[string]any{"auth.jwt.secret": "s", "source.slot": "s_" + db.Name}
			for k, v := range tc.edits {
				edits[k] = v
			}
			cfg := WriteConfig(t, db, edits)
			code, out, stderr := run(t, nil, "check", "--config", cfg)
			if code != tc.code {
				t.Fatalf("check: exit %d, want %d\n%s\n%s", code, tc.code, out, stderr)
			}
			for _, w := range append(tc.want, "config.yaml:") {
				if !strings.Contains(out+stderr, w) {
					t.Errorf("check output lacks %q:\n%s\n%s", w, out, stderr)
				}
			}
		})
	}
}
