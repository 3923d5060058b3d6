package mapping

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// FuzzCompile feeds arbitrary `when` expressions and channel templates to
// New, and maps a change with whatever it accepts: neither may panic.
func FuzzCompile(f *testing.F) {
	for _, s := range []struct{ when, tmpl string }{
		{"old.status != 'published' && new.status == 'published'", "class:{old.class_id}"},
		{"new.id == 'x'", "exam:{id}"},
		{"new.meta.flag", "{new.tags}"},
		{"'a' in new.tags", "x:{}"},
		{"new.score > 1.5 || has(old.title)", "{"},
		{"new.published_at > timestamp('2025-01-01T00:00:00Z')", "}"},
		{"[1,2].exists(x, x == new.class_id)", "{old.}"},
		{"new.class_id / 0 == 1", "a{id}b{class_id}c"},
		{"op == 'update' ? true : false", "role:teacher"},
		{"size(new.title) > 3", "{new.body}"},
		{"new.meta.a.b.c == null", "{new.nosuch}"},
		{"new == old", "{old.old.id}"},
		{"row.exams{}", ""},
		{"", "{{id}}"},
	} {
		f.Add(s.when, s.tmpl)
	}
	tables := schema()
	rel := tables["exams"]
	old := examRow(rel, map[string]any{"id": int64(7), "class_id": int64(1), "status": "draft", "title": "t",
		"meta": json.RawMessage(`{"flag":false}`), "score": broadcaster.Numeric("NaN")})
	cur := examRow(rel, map[string]any{"id": int64(7), "class_id": int64(2), "status": "published", "title": broadcaster.Unchanged,
		"meta": json.RawMessage(`{"flag":true,"a":{"b":[1,"x",null]}}`), "score": broadcaster.Numeric("1e400"),
		"published_at": time.Unix(1e9, 0), "tags": []any{"a", nil, []any{int64(1)}}, "body": []byte{0xff}})
	f.Fuzz(func(t *testing.T, when, tmpl string) {
		rules := []config.Mapping{{
			Table: "exams", Domain: "exam", Channels: []string{tmpl},
			Events: []config.EventRule{{On: "update", When: when, Type: "exam.x", Continue: true}, {On: "update", Type: "exam.y"}},
		}}
		m, err := New(rules, tables, discard{}, Options{})
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			return
		}
		ctx := context.Background()
		tx := testTx(0x10)
		for _, kind := range []byte{broadcaster.OldNone, broadcaster.OldKey, broadcaster.OldFull} {
			c := &broadcaster.Change{Op: broadcaster.OpUpdate, Rel: rel, New: cur, Old: old, OldKind: kind}
			if err := m.Begin(ctx, tx); err != nil {
				t.Fatal(err)
			}
			if err := m.Change(ctx, tx, c); err != nil {
				t.Fatal(err)
			}
			if err := m.Commit(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// discard is a Sink that drops every batch.
type discard struct{}

func (discard) Append(context.Context, broadcaster.Batch) error { return nil }
