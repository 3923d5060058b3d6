package mapping

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// Type OIDs used by the test schemas.
const (
	tInt4        = 23
	tInt8        = 20
	tText        = 25
	tVarchar     = 1043
	tBool        = 16
	tNumeric     = 1700
	tTimestamptz = 1184
	tJSONB       = 3802
	tTextArray   = 1009
	tDate        = 1082
	tFloat8      = 701
)

// examsRel is the exams table as the catalog describes it.
func examsRel() *broadcaster.Relation {
	return &broadcaster.Relation{
		ID: 1, Schema: "public", Name: "exams", ReplicaIdentity: broadcaster.IdentityDefault,
		Columns: []broadcaster.Column{
			{Name: "id", TypeOID: tInt4, Key: true},
			{Name: "class_id", TypeOID: tInt4},
			{Name: "subject_id", TypeOID: tInt4},
			{Name: "status", TypeOID: tText},
			{Name: "title", TypeOID: tVarchar},
			{Name: "updated_by", TypeOID: tInt8},
			{Name: "body", TypeOID: tText},
			{Name: "meta", TypeOID: tJSONB},
			{Name: "score", TypeOID: tNumeric},
			{Name: "published_at", TypeOID: tTimestamptz},
			{Name: "tags", TypeOID: tTextArray},
		},
	}
}

// examRow builds a row of examsRel from column values by name; missing
// columns are NULL.
func examRow(rel *broadcaster.Relation, vals map[string]any) []any {
	row := make([]any, len(rel.Columns))
	for name, v := range vals {
		i := rel.ColumnIndex(name)
		if i < 0 {
			panic("no column " + name)
		}
		row[i] = v
	}
	return row
}

// schema returns the catalog of the tests: exams, a table without primary
// key, and one outside public.
func schema() map[string]*broadcaster.Relation {
	return map[string]*broadcaster.Relation{
		"exams": examsRel(),
		"nokey": {Schema: "public", Name: "nokey", Columns: []broadcaster.Column{
			{Name: "a", TypeOID: tText}, {Name: "b", TypeOID: tInt4},
		}},
		"audit.logins": {Schema: "audit", Name: "logins", Columns: []broadcaster.Column{
			{Name: "id", TypeOID: tInt8, Key: true}, {Name: "user_id", TypeOID: tInt8},
		}},
	}
}

// recSink is a Sink that records every batch.
type recSink struct {
	mu      sync.Mutex
	batches []broadcaster.Batch
	err     error
}

func (s *recSink) Append(_ context.Context, b broadcaster.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.batches = append(s.batches, b)
	return nil
}

// events returns every event appended, in order.
func (s *recSink) events() []broadcaster.Event {
	var out []broadcaster.Event
	for _, b := range s.batches {
		out = append(out, b.Events...)
	}
	return out
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newMapper builds a Mapper over schema() that records into a recSink and
// logs into a logBuf.
func newMapper(t testing.TB, rules []config.Mapping, opts Options) (*Mapper, *recSink, *logBuf) {
	t.Helper()
	sink := &recSink{}
	logs := &logBuf{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	m, err := New(rules, schema(), sink, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, sink, logs
}

var commitTime = time.Date(2025, 11, 29, 8, 0, 0, 123e6, time.UTC)

// testTx returns a transaction at commit LSN lsn.
func testTx(lsn broadcaster.LSN) *broadcaster.Tx {
	return &broadcaster.Tx{Xid: 7731, CommitLSN: lsn, EndLSN: lsn + 0x30, CommitTime: commitTime}
}

// runTx delivers changes as one transaction and returns the events of that
// transaction.
func runTx(t testing.TB, m *Mapper, sink *recSink, tx *broadcaster.Tx, changes ...*broadcaster.Change) []broadcaster.Event {
	t.Helper()
	ctx := context.Background()
	before := len(sink.batches)
	if err := m.Begin(ctx, tx); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	for i, c := range changes {
		c.Seq = uint32(i + 1)
		if err := m.Change(ctx, tx, c); err != nil {
			t.Fatalf("Change: %v", err)
		}
	}
	if err := m.Commit(ctx, tx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	var out []broadcaster.Event
	for _, b := range sink.batches[before:] {
		out = append(out, b.Events...)
	}
	return out
}

func insert(rel *broadcaster.Relation, vals map[string]any) *broadcaster.Change {
	return &broadcaster.Change{Op: broadcaster.OpInsert, Rel: rel, New: examRow(rel, vals)}
}

func update(rel *broadcaster.Relation, kind byte, old, vals map[string]any) *broadcaster.Change {
	c := &broadcaster.Change{Op: broadcaster.OpUpdate, Rel: rel, New: examRow(rel, vals), OldKind: kind}
	if kind != broadcaster.OldNone {
		c.Old = examRow(rel, old)
	}
	return c
}

func del(rel *broadcaster.Relation, kind byte, old map[string]any) *broadcaster.Change {
	c := &broadcaster.Change{Op: broadcaster.OpDelete, Rel: rel, OldKind: kind}
	if kind != broadcaster.OldNone {
		c.Old = examRow(rel, old)
	}
	return c
}

func truncate(rel *broadcaster.Relation) *broadcaster.Change {
	return &broadcaster.Change{Op: broadcaster.OpTruncate, Rel: rel}
}

// types lists the event types of evs.
func typesOf(evs []broadcaster.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}
