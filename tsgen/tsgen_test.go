package tsgen

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.d.ts from the output")

// TestColumnType is the type mapping: each PostgreSQL type, through the
// JSON shape the server encodes it in (cdc.ShapeOf), to its TypeScript
// type.
func TestColumnType(t *testing.T) {
	t.Parallel()
	const (
		enumOID   = 16400 // a type pgx does not know: an enum, a domain
		domainOID = 16401
	)
	tests := []struct {
		name string
		oid  uint32
		col  Column // Name, Shape and SQLType are filled in
		want string
	}{
		{"smallint", pgtype.Int2OID, Column{}, "number"},
		{"integer", pgtype.Int4OID, Column{}, "number"},
		{"integer nullable", pgtype.Int4OID, Column{Nullable: true}, "number | null"},
		{"bigint: a string beyond 2^53", pgtype.Int8OID, Column{}, "number | string"},
		{"oid", pgtype.OIDOID, Column{}, "number"},
		{"real", pgtype.Float4OID, Column{}, "number | 'NaN' | '+Inf' | '-Inf'"},
		{"double precision", pgtype.Float8OID, Column{Nullable: true}, "number | 'NaN' | '+Inf' | '-Inf' | null"},
		{"numeric: a string when a double is not exact", pgtype.NumericOID, Column{}, "number | string"},
		{"boolean", pgtype.BoolOID, Column{}, "boolean"},
		{"text", pgtype.TextOID, Column{}, "string"},
		{"varchar", pgtype.VarcharOID, Column{Nullable: true}, "string | null"},
		{"uuid", pgtype.UUIDOID, Column{}, "string"},
		{"timestamptz: RFC 3339", pgtype.TimestamptzOID, Column{}, "string"},
		{"timestamp", pgtype.TimestampOID, Column{}, "string"},
		{"date", pgtype.DateOID, Column{}, "string"},
		{"interval", pgtype.IntervalOID, Column{}, "string"},
		{"inet", pgtype.InetOID, Column{}, "string"},
		{"bytea: base64", pgtype.ByteaOID, Column{}, "string"},
		{"json", pgtype.JSONOID, Column{}, "unknown"},
		{"jsonb nullable: null is a JSON value", pgtype.JSONBOID, Column{Nullable: true}, "unknown"},
		{"text[]", pgtype.TextArrayOID, Column{Dims: 1}, "(string | null)[]"},
		{"int8[] undeclared dimensions", pgtype.Int8ArrayOID, Column{}, "(number | string | null)[]"},
		{"int4[][]", pgtype.Int4ArrayOID, Column{Dims: 2, Nullable: true}, "(number | null)[][] | null"},
		{"jsonb[]", pgtype.JSONBArrayOID, Column{Dims: 1}, "unknown[]"},
		{"enum", enumOID, Column{Labels: []string{"draft", "it's"}}, "'draft' | 'it\\'s'"},
		{"enum nullable", enumOID, Column{Labels: []string{"a"}, Nullable: true}, "'a' | null"},
		{"domain: decoded as its text", domainOID, Column{}, "string"},
	}
	for _, tt := range tests {
		c := tt.col
		c.Name, c.Shape = "c", cdc.ShapeOf(tt.oid)
		if got := columnType(&c); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestPresence: which events carry which columns, by operation, replica
// identity and TOAST.
func TestPresence(t *testing.T) {
	t.Parallel()
	def := &Table{}
	full := &Table{FullIdentity: true}
	key := &Column{Identity: true}
	plain := &Column{}
	long := &Column{Toastable: true}
	tests := []struct {
		name      string
		t         *Table
		c         *Column
		op        broadcaster.Op
		data, old presence
	}{
		{"insert", def, long, broadcaster.OpInsert, always, never},
		{"update", def, plain, broadcaster.OpUpdate, always, never},
		{"update of a TOASTable column", def, long, broadcaster.OpUpdate, maybe, never},
		{"update of the key", def, key, broadcaster.OpUpdate, always, maybe},
		{"update, identity full", full, long, broadcaster.OpUpdate, maybe, maybe},
		{"delete of the key", def, key, broadcaster.OpDelete, always, maybe},
		{"delete of another column", def, plain, broadcaster.OpDelete, never, never},
		{"delete, identity full", full, long, broadcaster.OpDelete, always, maybe},
		{"truncate", full, key, broadcaster.OpTruncate, never, never},
	}
	for _, tt := range tests {
		if got := dataPresence(tt.t, tt.c, tt.op); got != tt.data {
			t.Errorf("%s: data presence %d, want %d", tt.name, got, tt.data)
		}
		if got := oldPresence(tt.t, tt.c, tt.op); got != tt.old {
			t.Errorf("%s: oldData presence %d, want %d", tt.name, got, tt.old)
		}
	}
}

func TestTemplateType(t *testing.T) {
	t.Parallel()
	tests := []struct{ src, want string }{
		{"school", "'school'"},
		{"role:teacher", "'role:teacher'"},
		{"class:{class_id}", "`class:${string}`"},
		{"class:{old.class_id}", "`class:${string}`"},
		{"{a}-{b}", "`${string}-${string}`"},
		{"x`$\\:{id}", "`x\\`$\\\\:${string}`"},
		{"it's", `'it\'s'`},
	}
	for _, tt := range tests {
		if got := templateType(tt.src); got != tt.want {
			t.Errorf("templateType(%q) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

func TestQuoting(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"id": "id", "_x$1": "_x$1", "class id": "'class id'", "1st": "'1st'", "a'b": `'a\'b'`,
		"l\nm": `'l\nm'`, "é": "'é'",
	} {
		if got := propName(name); got != want {
			t.Errorf("propName(%q) = %s, want %s", name, got, want)
		}
	}
	if got := docText("a */ b\nc"); got != `a *\/ b c` {
		t.Errorf("docText = %q", got)
	}
}

// sample is a Source with one of each case: a table with the default
// identity and one with FULL, TOASTable and nullable columns, rules with
// their own channels, an event type from two tables, TRUNCATE events alone
// and beside row events, emitted events with data fields of each kind and
// without.
func sample() Source {
	col := func(name string, oid uint32, sqlType string, mod func(*Column)) Column {
		c := Column{Name: name, SQLType: sqlType, Shape: cdc.ShapeOf(oid)}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	id := func(c *Column) { c.Identity = true }
	null := func(c *Column) { c.Nullable = true }
	toast := func(c *Column) { c.Toastable = true }
	sessionChans := []string{"exam:{exam_id}", "class:{class_id}", "table:exam_sessions"}
	return Source{
		Config: "config.yaml", Database: "school", Date: time.Date(2025, 11, 29, 23, 0, 0, 0, time.UTC),
		Tables: []Table{
			{
				Name: "exam_sessions", FullIdentity: true,
				Columns: []Column{
					col("id", pgtype.Int8OID, "bigint", id),
					col("student_id", pgtype.Int8OID, "bigint", nil),
					col("score", pgtype.NumericOID, "numeric(5,2)", null),
					col("status", pgtype.TextOID, "text", toast),
					col("answers", pgtype.JSONBOID, "jsonb", toast),
				},
				Events: []Event{
					{Type: "exam.started", Op: broadcaster.OpInsert, Channels: sessionChans},
					{Type: "exam.submitted", Op: broadcaster.OpUpdate, Channels: sessionChans},
					{Type: "exam.submitted", Op: broadcaster.OpInsert, Channels: sessionChans},
					{Type: "examSession.progress", Op: broadcaster.OpUpdate, Channels: []string{"exam:{exam_id}"}},
					{Type: "exam.changed", Op: broadcaster.OpTruncate, Channels: []string{"table:exam_sessions"}},
				},
			},
			{
				Name: "announcements",
				Columns: []Column{
					col("id", pgtype.Int4OID, "integer", id),
					col("title", pgtype.TextOID, "text", toast),
					col("target_role", 16400, "audience", func(c *Column) { c.Labels = []string{"teacher", "student"}; c.Nullable = true }),
					col("tags", pgtype.TextArrayOID, "text[]", func(c *Column) { c.Dims = 1; c.Toastable = true }),
				},
				Events: []Event{
					{Type: "announcement.published", Op: broadcaster.OpInsert, Channels: []string{"school", "role:{target_role}"}},
					{Type: "announcement.deleted", Op: broadcaster.OpDelete, Channels: []string{"school"}},
					{Type: "announcement.truncated", Op: broadcaster.OpTruncate, Channels: []string{"school"}},
					{Type: "exam.changed", Op: broadcaster.OpUpdate, Channels: []string{"role:teacher"}},
				},
			},
			{
				// Only TOASTable columns: an UPDATE may carry no data.
				Name: "audit.notes",
				Columns: []Column{
					col("body", pgtype.TextOID, "text", toast),
					col("Odd name", pgtype.VarcharOID, "character varying", toast),
				},
				Events: []Event{{Type: "note.deleted", Op: broadcaster.OpDelete}, {Type: "note.edited", Op: broadcaster.OpUpdate, Channels: []string{"notes"}}},
			},
		},
		Emitted: []Emitted{
			{
				Type: "exam.closing_soon", Description: "The exam closes soon.",
				Channels: []string{"exam:{examId}", "class:{classId}"},
				Fields: []EmittedField{
					{Name: "examId", Type: config.DataType{Kind: config.KindInteger}},
					{Name: "note", Type: config.DataType{Kind: config.KindString, Optional: true}},
					{Name: "tags", Type: config.DataType{Kind: config.KindString, List: true}},
					{Name: "extra", Type: config.DataType{Kind: config.KindAny, Optional: true}},
					{Name: "meta", Type: config.DataType{Kind: config.KindObject}},
					{Name: "done", Type: config.DataType{Kind: config.KindBoolean}},
				},
			},
			{Type: "system.ping", Channels: []string{"school"}},
		},
	}
}

// TestWrite compares the declarations of sample() with
// testdata/sample.d.ts (go test ./tsgen -update rewrites it), which the
// integration test TestTypesExampleSchool compiles with a client.
func TestWrite(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := Write(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "sample.d.ts")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != string(want) {
		t.Errorf("Write differs from %s (go test ./tsgen -update rewrites it):\n%s", golden, got)
	}
	for _, w := range []string{
		"// Generated by `cdc-broadcaster types` from config.yaml and database school on 2025-11-29. Do not edit.\n",
		"export type Channel =",
		"'exam.submitted': {\n    operation: 'INSERT' | 'UPDATE';",
		"      score: number | string | null;",
		"      status?: string;",
		"      target_role: 'teacher' | 'student' | null;",
		"    | {\n        table: 'announcements';",
		"'announcement.truncated': {\n    operation: 'TRUNCATE';\n    data?: undefined;",
		"    data?: {",
		"'Odd name'?: string;",
		"`exam:${string}`",
		"'school'",
		"  /** Emitted by the application. The exam closes soon. Channels: exam:{examId}, class:{classId}. */\n  'exam.closing_soon': {\n    operation: 'EMIT';",
		"      note?: string | null;",
		"      tags: string[];",
		"      extra?: unknown;",
		"      meta: { [key: string]: unknown };",
		"'system.ping': {\n    operation: 'EMIT';\n    data: Record<string, never>;\n    oldData?: undefined;",
		"`class:${string}`",
	} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestWriteEmpty(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := Write(&buf, Source{Config: "c.yaml", Database: "d\nx"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "export interface Events {\n}\n") || !strings.Contains(buf.String(), "export type Channel = never;") {
		t.Errorf("empty source:\n%s", buf.String())
	}
	if strings.Count(strings.SplitN(buf.String(), "\n", 2)[0], "database d x") != 1 {
		t.Errorf("the header is not one line:\n%s", buf.String())
	}
}
