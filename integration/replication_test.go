package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
)

const eventWait = 20 * time.Second

// itemsSchema is a small table set with every kind of column the core has
// to get right, outside the school schema so each test states what it maps.
const itemsSchema = `
CREATE TABLE items (
	id     bigint PRIMARY KEY,
	n      int,
	status text,
	body   text,
	actor  text,
	doc    jsonb,
	big    bigint,
	amount numeric,
	tags   text[],
	at     timestamptz
);
CREATE TABLE items_full (LIKE items INCLUDING ALL);
ALTER TABLE items_full REPLICA IDENTITY FULL;
ALTER PUBLICATION cdc_broadcaster ADD TABLE items, items_full;
`

var itemColumns = []string{"id", "n", "status", "body", "actor", "doc", "big", "amount", "tags", "at"}

// itemsMapping maps both item tables with every column in the payload and
// default event types.
func itemsMapping() []any {
	m := func(table, domain string) map[string]any {
		return map[string]any{
			"table":    table,
			"domain":   domain,
			"payload":  itemColumns,
			"actor":    "actor",
			"channels": []string{"item:{id}", "status:{status}", "table:" + table},
		}
	}
	return []any{m("items", "item"), m("items_full", "itemFull")}
}

// itemsDB returns a database with the item tables and a config mapping them,
// with a slot of its own and quick status updates.
func itemsDB(t *testing.T, edits map[string]any) (*DB, string) {
	t.Helper()
	db := NewDB(t)
	db.Exec(t, itemsSchema)
	admins := []any{map[string]any{"roles": []string{"admin"}}}
	all := map[string]any{
		"mappings": itemsMapping(),
		// serve refuses a mapping channel no pattern fits.
		"channels.8":             map[string]any{"pattern": "item:{id}", "allow": admins},
		"channels.9":             map[string]any{"pattern": "status:{status}", "allow": admins},
		"source.slot":            "s_" + db.Name,
		"source.status_interval": "200ms",
		"log.level":              "debug",
		"auth.jwt.secret":        "integration-test-secret",
		"server.listen":          "127.0.0.1:0",
	}
	for k, v := range edits {
		all[k] = v
	}
	return db, WriteConfig(t, db, all)
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v: %v", v, err)
	}
	return i
}

func TestRolledBackTransactionEmitsNothing(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	db.Exec(t, "BEGIN; INSERT INTO items (id, status) VALUES (1, 'lost'); UPDATE items SET n = 1; ROLLBACK;")
	db.Exec(t, "INSERT INTO items (id, status) VALUES (2, 'kept')")
	e := tail.NextEvent(t, eventWait)
	if e.Event.EventType != "item.created" || num(t, e.Event.Data["id"]) != 2 {
		t.Fatalf("first event after a rollback: %+v, want item.created of id 2", e.Event)
	}
}

func TestInterleavedTransactionsComeOutInCommitOrder(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	ctx := context.Background()
	a, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	b, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback(ctx)
	exec := func(tx pgx.Tx, id int) {
		if _, err := tx.Exec(ctx, "INSERT INTO items (id) VALUES ($1)", id); err != nil {
			t.Fatal(err)
		}
	}
	exec(a, 10)
	exec(b, 20)
	exec(a, 11)
	exec(b, 21)
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	exec(a, 12)
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want := []int64{20, 21, 10, 11, 12}
	var got []Envelope
	for range want {
		got = append(got, tail.NextEvent(t, eventWait))
	}
	for i, e := range got {
		if id := num(t, e.Event.Data["id"]); id != want[i] {
			t.Fatalf("event %d is id %d, want %d (order %v)", i, id, want[i], want)
		}
		if i > 0 && !(got[i-1].Event.Cursor < e.Event.Cursor) {
			t.Fatalf("cursors not increasing: %s then %s", got[i-1].Event.Cursor, e.Event.Cursor)
		}
		if e.Event.EventID != e.Event.Cursor {
			t.Fatalf("eventId %s differs from cursor %s", e.Event.EventID, e.Event.Cursor)
		}
	}
	if got[0].Event.TxID != got[1].Event.TxID || got[2].Event.TxID != got[3].Event.TxID || got[3].Event.TxID != got[4].Event.TxID {
		t.Fatalf("events of one transaction have different txIds: %d %d | %d %d %d", got[0].Event.TxID, got[1].Event.TxID, got[2].Event.TxID, got[3].Event.TxID, got[4].Event.TxID)
	}
	if got[0].Event.TxID == got[2].Event.TxID {
		t.Fatalf("two transactions share txId %d", got[0].Event.TxID)
	}
}

func TestOldValuesUnderReplicaIdentity(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	for _, table := range []string{"items", "items_full"} {
		db.Exec(t, fmt.Sprintf("INSERT INTO %s (id, n, status) VALUES (1, 5, 'draft')", table))
		db.Exec(t, fmt.Sprintf("UPDATE %s SET status = 'published' WHERE id = 1", table))
		db.Exec(t, fmt.Sprintf("UPDATE %s SET id = 2 WHERE id = 1", table))
		db.Exec(t, fmt.Sprintf("DELETE FROM %s WHERE id = 2", table))
	}
	next := func() Event { return tail.NextEvent(t, eventWait).Event }

	// DEFAULT: the old row is only sent when the key changes, and then only
	// the key.
	if e := next(); e.Operation != "INSERT" || e.OldData != nil {
		t.Fatalf("insert: %+v", e)
	}
	if e := next(); e.Operation != "UPDATE" || e.OldData != nil || e.Data["status"] != "published" {
		t.Fatalf("update under DEFAULT without key change: want no oldData, got %+v", e)
	}
	if e := next(); e.Operation != "UPDATE" || len(e.OldData) != 1 || num(t, e.OldData["id"]) != 1 || num(t, e.Data["id"]) != 2 {
		t.Fatalf("key update under DEFAULT: want oldData {id: 1}, got %+v", e)
	}
	if e := next(); e.Operation != "DELETE" || len(e.OldData) != 1 || num(t, e.OldData["id"]) != 2 || num(t, e.Data["id"]) != 2 {
		t.Fatalf("delete under DEFAULT: want data and oldData {id: 2}, got %+v", e)
	}

	// FULL: the whole old row, every time.
	if e := next(); e.EventType != "itemFull.created" {
		t.Fatalf("insert: %+v", e)
	}
	e := next()
	if e.Operation != "UPDATE" || e.OldData["status"] != "draft" || num(t, e.OldData["n"]) != 5 || e.Data["status"] != "published" {
		t.Fatalf("update under FULL: want old status draft, got %+v", e)
	}
	if _, ok := e.OldData["body"]; !ok {
		t.Fatalf("update under FULL: null columns belong in oldData too: %+v", e.OldData)
	}
	if e := next(); e.Operation != "UPDATE" || num(t, e.OldData["id"]) != 1 || e.OldData["status"] != "published" {
		t.Fatalf("key update under FULL: %+v", e)
	}
	if e := next(); e.Operation != "DELETE" || e.OldData["status"] != "published" || num(t, e.OldData["n"]) != 5 {
		t.Fatalf("delete under FULL: %+v", e)
	}
}

func TestTypedValues(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	db.Exec(t, `INSERT INTO items (id, n, status, doc, big, amount, tags, at) VALUES
		(1, -3, 'ok', '{"a": [1, {"b": null}], "c": "x"}', 9007199254740993, 12.50, '{"x,y",NULL,"z"}', '2025-11-29 08:00:00.123+01')`)
	e := tail.NextEvent(t, eventWait).Event
	if num(t, e.Data["n"]) != -3 {
		t.Fatalf("int: %v", e.Data["n"])
	}
	doc, ok := e.Data["doc"].(map[string]any)
	if !ok || doc["c"] != "x" {
		t.Fatalf("jsonb not an object: %#v", e.Data["doc"])
	}
	if e.Data["big"] != "9007199254740993" {
		t.Fatalf("int8 beyond 2^53 must be an exact string: %#v", e.Data["big"])
	}
	if e.Data["amount"] != json.Number("12.5") {
		t.Fatalf("numeric 12.50: %#v", e.Data["amount"])
	}
	tags, ok := e.Data["tags"].([]any)
	if !ok || len(tags) != 3 || tags[0] != "x,y" || tags[1] != nil {
		t.Fatalf("text[]: %#v", e.Data["tags"])
	}
	if e.Data["at"] != "2025-11-29T07:00:00.123Z" {
		t.Fatalf("timestamptz: %#v", e.Data["at"])
	}
	if e.Data["body"] != nil {
		t.Fatalf("null: %#v", e.Data["body"])
	}
	if _, ok := e.Data["body"]; !ok {
		t.Fatalf("a NULL column in the payload is sent as null, not left out")
	}
}

func TestUnchangedToastedColumnIsNotNull(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	// Random hex does not compress, so the value is stored out of line.
	for _, table := range []string{"items", "items_full"} {
		db.Exec(t, fmt.Sprintf(`INSERT INTO %s (id, n, body) SELECT 1, 1, string_agg(md5(random()::text), '') FROM generate_series(1, 4000)`, table))
		db.Exec(t, fmt.Sprintf(`UPDATE %s SET n = 2 WHERE id = 1`, table))
	}
	for _, table := range []string{"items", "items_full"} {
		ins := tail.NextEvent(t, eventWait).Event
		if body, _ := ins.Data["body"].(string); len(body) != 4000*32 {
			t.Fatalf("%s insert: body of %d chars, want %d", table, len(body), 4000*32)
		}
		up := tail.NextEvent(t, eventWait).Event
		if up.Operation != "UPDATE" || num(t, up.Data["n"]) != 2 {
			t.Fatalf("%s update: %+v", table, up)
		}
		if v, ok := up.Data["body"]; ok {
			t.Fatalf("%s: unchanged TOASTed body must be left out of data, got %.40v", table, v)
		}
	}
}

func TestSchemaChangesMidStream(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	db.Exec(t, "INSERT INTO items (id, n, status) VALUES (1, 1, 'a')")
	if e := tail.NextEvent(t, eventWait).Event; e.Data["status"] != "a" {
		t.Fatalf("before: %+v", e)
	}
	db.Exec(t, "ALTER TABLE items ADD COLUMN extra text DEFAULT 'e'")
	db.Exec(t, "INSERT INTO items (id, n, status, extra) VALUES (2, 2, 'b', 'x')")
	db.Exec(t, "UPDATE items SET extra = 'y', status = 'c' WHERE id = 1")
	if e := tail.NextEvent(t, eventWait).Event; num(t, e.Data["id"]) != 2 || e.Data["status"] != "b" || e.Data["extra"] != nil {
		t.Fatalf("after ADD COLUMN: %+v (extra is not in the payload)", e)
	}
	if e := tail.NextEvent(t, eventWait).Event; num(t, e.Data["id"]) != 1 || e.Data["status"] != "c" {
		t.Fatalf("update after ADD COLUMN: %+v", e)
	}
	// Dropping a column shifts the positions of the ones after it: values
	// must still land on the right names.
	db.Exec(t, "ALTER TABLE items DROP COLUMN n")
	db.Exec(t, "INSERT INTO items (id, status, actor) VALUES (3, 'd', '42')")
	e := tail.NextEvent(t, eventWait).Event
	if num(t, e.Data["id"]) != 3 || e.Data["status"] != "d" || e.UserID != "42" {
		t.Fatalf("after DROP COLUMN: %+v", e)
	}
	if _, ok := e.Data["n"]; ok {
		t.Fatalf("dropped column still in data: %+v", e.Data)
	}
	// The warning goes to stderr, the event to stdout: two pipes, read in
	// no set order, so wait for it rather than look once.
	tail.WaitStderr(t, "columns used by the mapping are no longer in the table", eventWait)
}

func TestTruncate(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	db.Exec(t, "INSERT INTO items (id) VALUES (1)")
	db.Exec(t, "INSERT INTO items_full (id) VALUES (1)")
	db.Exec(t, "TRUNCATE items, items_full")
	tail.NextEvent(t, eventWait)
	tail.NextEvent(t, eventWait)
	a, b := tail.NextEvent(t, eventWait), tail.NextEvent(t, eventWait)
	for _, e := range []Envelope{a, b} {
		if e.Event.Operation != "TRUNCATE" || e.Event.Data != nil || e.Event.OldData != nil {
			t.Fatalf("truncate event: %+v", e.Event)
		}
		if len(e.Channels) != 1 || e.Channels[0] != "table:"+e.Event.Table {
			t.Fatalf("truncate goes only to column-free channels: %v", e.Channels)
		}
	}
	if a.Event.EventType != "item.truncated" || b.Event.EventType != "itemFull.truncated" || a.Event.TxID != b.Event.TxID {
		t.Fatalf("one TRUNCATE of two tables: %+v / %+v", a.Event, b.Event)
	}
}

func TestActor(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	tail := StartTail(t, cfg)
	db.Exec(t, "INSERT INTO items (id, actor) VALUES (1, '19')")
	db.Exec(t, "INSERT INTO items (id) VALUES (2)")
	// The message wins over the column for every change of its transaction,
	// also those before it.
	db.Exec(t, "BEGIN; INSERT INTO items (id, actor) VALUES (3, '19'); SELECT pg_logical_emit_message(true, 'cdc.actor', '77'); UPDATE items SET n = 1 WHERE id = 2; COMMIT;")
	db.Exec(t, "INSERT INTO items (id, actor) VALUES (4, '19')")
	want := []string{"19", "", "77", "77", "19"}
	for i, w := range want {
		if e := tail.NextEvent(t, eventWait).Event; e.UserID != w {
			t.Fatalf("event %d (%s id %v): userId %q, want %q", i, e.EventType, e.Data["id"], e.UserID, w)
		}
	}
}

// TestMillionRowTransaction streams one transaction of 1,000,000 rows
// through `tail` and checks every event arrives, in order, while the
// process's peak memory stays far from growing with the transaction.
func TestMillionRowTransaction(t *testing.T) {
	const rows = 1_000_000
	db := NewDB(t)
	db.Exec(t, "CREATE TABLE bulk (id bigint PRIMARY KEY, v int); ALTER PUBLICATION cdc_broadcaster ADD TABLE bulk")
	cfg := WriteConfig(t, db, map[string]any{
		"mappings": []any{map[string]any{"table": "bulk", "domain": "bulk", "channels": []string{"table:bulk"}}},
	})
	cmd := exec.Command(BinPath, "tail", "--config", cfg)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitSlotActive(t, db)

	db.Exec(t, fmt.Sprintf("INSERT INTO bulk SELECT g, g %% 7 FROM generate_series(1, %d) g", rows))
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var (
		n      int
		txID   uint32
		prev   string
		lastID int64
	)
	for n < rows && sc.Scan() {
		e, err := ParseEnvelope(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 1 {
			txID = e.Event.TxID
		} else if e.Event.TxID != txID || !(prev < e.Event.Cursor) {
			t.Fatalf("event %d: txId %d cursor %s after %s", n, e.Event.TxID, e.Event.Cursor, prev)
		}
		prev = e.Event.Cursor
		lastID = num(t, e.Event.Data["id"])
	}
	if n != rows || lastID != rows {
		t.Fatalf("got %d events (last id %d), want %d", n, lastID, rows)
	}
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("1,000,000-row transaction: peak resident memory of tail %.1f MiB", float64(peak)/(1<<20))
	if peak > 256<<20 {
		t.Fatalf("peak resident memory %d MiB, want at most 256 MiB", peak>>20)
	}
}

// waitSlotActive waits until a replication slot of db's database is in use.
func waitSlotActive(t *testing.T, db *DB) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		if db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active") > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no active replication slot")
}

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// servedEvent is one `"msg":"event"` debug line of serve.
type servedEvent struct {
	Msg     string `json:"msg"`
	EventID string `json:"eventId"`
	Type    string `json:"type"`
}

// servedEvents parses the events serve logged taking into its log.
func servedEvents(t *testing.T, p *Proc) []servedEvent {
	t.Helper()
	var out []servedEvent
	for _, line := range strings.Split(p.Stderr(), "\n") {
		if !strings.Contains(line, `"msg":"event"`) {
			continue
		}
		var e servedEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// waitServed waits until serve has logged n events.
func waitServed(t *testing.T, p *Proc, n int) []servedEvent {
	t.Helper()
	deadline := time.Now().Add(eventWait)
	for {
		evs := servedEvents(t, p)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve logged %d events, want %d; stderr:\n%s", len(evs), n, p.stderrTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func slotConfirmed(t *testing.T, db *DB, slot string) broadcaster.LSN {
	t.Helper()
	var s *string
	if err := db.Pool.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&s); err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return 0
	}
	lsn, err := broadcaster.ParseLSN(*s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func cursorLSN(t *testing.T, id string) broadcaster.LSN {
	t.Helper()
	c, err := broadcaster.ParseCursor(id)
	if err != nil {
		t.Fatal(err)
	}
	return c.LSN
}

// TestSIGKILLRedeliversAfterConfirmed kills serve with SIGKILL while rows
// are committed and checks that the restarted process re-delivers every
// event from the slot's confirmed position on, with the same ids, and none
// before it. The log retains 20 events, so the slot is confirmed up to the
// oldest of them and no further: what a restart must rebuild.
func TestSIGKILLRedeliversAfterConfirmed(t *testing.T) {
	db, cfg := itemsDB(t, map[string]any{"retention.max_events": 20})
	slot := "s_" + db.Name
	first := Start(t, nil, "serve", "--config", cfg)
	first.WaitStderr(t, readinessMsg, readyTimeout)
	for i := 1; i <= 30; i++ {
		db.Exec(t, "INSERT INTO items (id) VALUES ($1)", i)
	}
	early := waitServed(t, first, 30)
	// The log keeps the newest 20: the slot is confirmed up to the oldest
	// of them, so a restart has something to skip and something to
	// re-deliver.
	oldestKept := cursorLSN(t, early[10].EventID)
	deadline := time.Now().Add(eventWait)
	for slotConfirmed(t, db, slot) < oldestKept {
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s, never reached the oldest retained event's commit %s", slotConfirmed(t, db, slot), oldestKept)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := slotConfirmed(t, db, slot); c > oldestKept {
		t.Fatalf("slot confirmed %s, past the oldest retained event's commit %s: a restart could not rebuild the log", c, oldestKept)
	}
	// Commit more while the process dies part way through them.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 31; i <= 90; i++ {
			if _, err := db.Pool.Exec(context.Background(), "INSERT INTO items (id) VALUES ($1)", i); err != nil {
				t.Errorf("insert %d: %v", i, err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitServed(t, first, 45)
	first.Kill(t)
	<-done
	before := servedEvents(t, first)
	confirmed := slotConfirmed(t, db, slot)

	second := Start(t, nil, "serve", "--config", cfg)
	second.WaitStderr(t, readinessMsg, readyTimeout)
	want := 0
	for _, e := range before {
		if cursorLSN(t, e.EventID) < confirmed {
			continue
		}
		want++
	}
	after := waitServed(t, second, 90-(len(before)-want))
	t.Logf("first run logged %d events; slot confirmed %s; %d of them re-delivered; second run logged %d", len(before), confirmed, want, len(after))
	seen := make(map[string]bool)
	for _, e := range after {
		if cursorLSN(t, e.EventID) < confirmed {
			t.Fatalf("event %s before the confirmed position %s was delivered again", e.EventID, confirmed)
		}
		if seen[e.EventID] {
			t.Fatalf("event %s delivered twice by one run", e.EventID)
		}
		seen[e.EventID] = true
	}
	for _, e := range before {
		if cursorLSN(t, e.EventID) >= confirmed && !seen[e.EventID] {
			t.Fatalf("event %s (%s) from the confirmed position on was not re-delivered with the same id", e.EventID, e.Type)
		}
	}
	if want == len(before) {
		t.Fatalf("the slot confirmed none of the first run's events: nothing tested the skip")
	}
	all := make(map[string]bool)
	for _, e := range append(before, after...) {
		all[e.EventID] = true
	}
	if len(all) != 90 {
		t.Fatalf("%d distinct events over both runs, want 90 (one per committed insert)", len(all))
	}
	if code := second.Stop(t); code != 0 {
		t.Fatalf("serve exited %d on SIGTERM, want 0", code)
	}
}

// TestDatabaseRestartMidStream restarts PostgreSQL under a running serve:
// the stream reconnects to its slot and nothing is lost or repeated.
func TestDatabaseRestartMidStream(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	p := Start(t, nil, "serve", "--config", cfg)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	for i := 1; i <= 20; i++ {
		db.Exec(t, "INSERT INTO items (id) VALUES ($1)", i)
	}
	waitServed(t, p, 20)
	PG.Restart(t)
	db.Pool.Reset()
	for i := 21; i <= 40; i++ {
		insertRetrying(t, db, i)
	}
	evs := waitServed(t, p, 40)
	seen := make(map[string]bool)
	for _, e := range evs {
		if seen[e.EventID] {
			t.Fatalf("event %s delivered twice", e.EventID)
		}
		seen[e.EventID] = true
	}
	if len(seen) != 40 {
		t.Fatalf("%d events, want 40", len(seen))
	}
	if !strings.Contains(p.Stderr(), "reconnecting") {
		t.Fatalf("expected the stream to report its reconnect")
	}
}

// insertRetrying inserts an item, retrying while the server comes back.
func insertRetrying(t *testing.T, db *DB, id int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := db.Pool.Exec(context.Background(), "INSERT INTO items (id) VALUES ($1)", id)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("insert %d: %v", id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHeartbeatAdvancesIdleSlot: with no change on the published tables,
// the slot's confirmed position still follows the server's WAL.
func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	db, cfg := itemsDB(t, map[string]any{"source.heartbeat": "300ms"})
	slot := "s_" + db.Name
	p := Start(t, nil, "serve", "--config", cfg)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	// WAL that is none of the stream's business.
	db.Exec(t, "CREATE TABLE unpublished (x int); INSERT INTO unpublished SELECT generate_series(1, 1000)")
	var target string
	if err := db.Pool.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	want, _ := broadcaster.ParseLSN(target)
	deadline := time.Now().Add(eventWait)
	for slotConfirmed(t, db, slot) < want {
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s, never reached %s on an idle stream", slotConfirmed(t, db, slot), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMillionRowTransactionServe runs the same transaction through serve,
// whose event log retains the newest retention.max_events of it, and then a
// sentinel transaction; /sync long-polls for the sentinel, so the test knows
// serve has taken in all of the big one. Peak memory must stay bounded by
// the retention, not the transaction.
func TestMillionRowTransactionServe(t *testing.T) {
	const rows = 1_000_000
	db := NewDB(t)
	db.Exec(t, `CREATE TABLE bulk (id bigint PRIMARY KEY, v int); CREATE TABLE done (id int PRIMARY KEY);
		ALTER PUBLICATION cdc_broadcaster ADD TABLE bulk, done`)
	slot := "s_" + db.Name
	port := FreePort(t)
	cfg := WriteConfig(t, db, map[string]any{
		"mappings": []any{
			map[string]any{"table": "bulk", "domain": "bulk", "payload": []string{"id", "v"}, "channels": []string{"table:bulk"}},
			map[string]any{"table": "done", "domain": "done", "channels": []string{"table:done"}},
		},
		"source.slot":            slot,
		"source.status_interval": "200ms",
		"server.listen":          fmt.Sprintf("127.0.0.1:%d", port),
		"auth.jwt.secret":        "integration-test-secret",
	})
	p := Start(t, nil, "serve", "--config", cfg)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	start := time.Now()
	db.Exec(t, fmt.Sprintf("INSERT INTO bulk SELECT g, g %% 7 FROM generate_series(1, %d) g", rows))
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)
	db.Exec(t, "INSERT INTO done VALUES (1)")

	tok, err := acl.Mint(config.JWT{Secret: "integration-test-secret", Algorithms: []string{"HS256"}, Issuer: "treasure-home", Audience: "realtime"},
		acl.MintOptions{Subject: "1", Role: "super_admin", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/api/realtime/sync?channels=table:done&since=%d&wait=30s", port, mark.UnixMilli()+1)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Events []json.RawMessage `json:"events"`
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != 200 {
			var ct time.Time
			_ = db.Pool.QueryRow(context.Background(), "SELECT now()").Scan(&ct)
			t.Fatalf("/sync: status %d, %s (mark %v, since %d, db now %v, slot %s)", resp.StatusCode, raw, mark, mark.UnixMilli()+1, ct, slotConfirmed(t, db, slot))
		}
		if len(body.Events) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sentinel after the 1,000,000-row transaction never arrived")
		}
	}
	peak := peakRSS(t, p.Cmd.Process.Pid)
	t.Logf("1,000,000-row transaction through serve (retaining 100,000 events): taken in %v after the insert began; peak resident memory %.1f MiB",
		time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20))
	if peak > 256<<20 {
		t.Fatalf("peak resident memory %d MiB, want at most 256 MiB", peak>>20)
	}
}

// TestServerFastShutdownWithStreamConnected: the slot is held at the oldest
// retained event, behind what the walsender sent; a fast shutdown of
// PostgreSQL must still complete while serve is connected (the walsender
// waits for its client to report the sent position), and serve must resume
// after the server is back.
func TestServerFastShutdownWithStreamConnected(t *testing.T) {
	db, cfg := itemsDB(t, nil)
	p := Start(t, nil, "serve", "--config", cfg)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	for i := 1; i <= 5; i++ {
		db.Exec(t, "INSERT INTO items (id) VALUES ($1)", i)
	}
	waitServed(t, p, 5)
	start := time.Now()
	PG.Stop(t)
	stopped := time.Since(start)
	PG.Start(t)
	db.Pool.Reset()
	t.Logf("fast shutdown with the stream connected took %v", stopped.Round(time.Millisecond))
	if stopped > 20*time.Second {
		t.Errorf("fast shutdown took %v: the walsender waited for the stream", stopped)
	}
	insertRetrying(t, db, 6)
	waitServed(t, p, 6)
}

// TestSlotRecreatedMidStream: the slot disappears while serve runs (an
// invalidation, a failover) and serve re-creates it. The changes committed
// meanwhile are gone: connected clients are told to reset, a cursor from
// before gets 410, and nothing is skipped silently.
func TestSlotRecreatedMidStream(t *testing.T) {
	port := FreePort(t)
	db, cfg := itemsDB(t, map[string]any{
		"server.listen":   fmt.Sprintf("127.0.0.1:%d", port),
		"auth.jwt.secret": gwSecret,
	})
	slot := "s_" + db.Name
	p := Start(t, nil, "serve", "--config", cfg)
	p.WaitStderr(t, readinessMsg, readyTimeout)
	wsURL := fmt.Sprintf("ws://127.0.0.1:%d/ws", port)
	tok := gwUserToken(t, "1", "admin")
	c := gwConnect(t, "admin", wsURL, gwViaHeader, tok)
	c.mustSubscribe("table:items")

	db.Exec(t, "INSERT INTO items (id) VALUES (1)")
	first, _ := c.waitFor(eventWait, "event of item 1", func(m gwMsg) bool { return m.Type == "event" })

	// Drop the slot from under serve: end its walsender, drop before the
	// reconnect takes it again.
	deadline := time.Now().Add(eventWait)
	for {
		_, err := db.Pool.Exec(context.Background(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL;
			`, slot)
		if err == nil {
			if _, err = db.Pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not drop the slot: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	db.Exec(t, "INSERT INTO items (id) VALUES (2)") // while no slot exists: lost
	m, _ := c.waitFor(eventWait, "reset", func(m gwMsg) bool { return m.Type == "reset" || m.Type == "event" })
	if m.Type != "reset" || strings.Join(m.Channels, ",") != "table:items" || m.Reason != "cursor_expired" {
		t.Fatalf("after the slot was re-created: %s, want reset of table:items", m)
	}
	db.Exec(t, "INSERT INTO items (id) VALUES (3)")
	ev, _ := c.waitFor(eventWait, "event of item 3", func(m gwMsg) bool { return m.Type == "event" })
	if id := ev.Event.Data["id"]; fmt.Sprint(id) != "3" {
		t.Fatalf("next event is of item %v, want 3 (item 2 was committed without a slot)", id)
	}
	if !strings.Contains(p.Stderr(), "changes in between were skipped") {
		t.Errorf("serve did not log the gap")
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/api/realtime/sync?channels=table:items&since=%s", port, first.Event.Cursor), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("/sync from a cursor before the gap: %d, want 410", resp.StatusCode)
	}
}
