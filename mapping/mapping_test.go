package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// examsMapping is the mapping of docs/config.md.
func examsMapping() config.Mapping {
	return config.Mapping{
		Table:    "exams",
		Domain:   "exam",
		Payload:  []string{"id", "class_id", "subject_id", "status"},
		Actor:    "updated_by",
		Channels: []string{"exam:{id}", "class:{class_id}", "role:teacher", "table:exams"},
		Events: []config.EventRule{
			{On: "update", When: "old.status != 'published' && new.status == 'published'", Type: "exam.published"},
			{On: "insert", Type: "exam.created"},
			{On: "update", Type: "exam.updated"},
			{On: "delete", Type: "exam.deleted"},
		},
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	base := func(f func(*config.Mapping)) []config.Mapping {
		m := config.Mapping{Table: "exams", Domain: "exam"}
		f(&m)
		return []config.Mapping{m}
	}
	rule := func(on, when string) func(*config.Mapping) {
		return func(m *config.Mapping) {
			m.Events = []config.EventRule{{On: "insert", Type: "exam.created"}, {On: on, When: when, Type: "exam.x"}}
		}
	}
	tests := []struct {
		name  string
		rules []config.Mapping
		key   string
		want  []string // substrings of the error
	}{
		{"unknown table", base(func(m *config.Mapping) { m.Table = "nosuch" }),
			"mappings[0].table", []string{`"nosuch": no such table`}},
		{"empty table", base(func(m *config.Mapping) { m.Table = "" }),
			"mappings[0].table", []string{"required"}},
		{"duplicate table", append(base(func(*config.Mapping) {}), config.Mapping{Table: "public.exams", Domain: "x"}),
			"mappings[1].table", []string{"already mapped by mappings[0]"}},
		{"missing payload column", base(func(m *config.Mapping) { m.Payload = []string{"id", "klass"} }),
			"mappings[0].payload[1]", []string{`"klass": table exams has no column klass`}},
		{"payload column twice", base(func(m *config.Mapping) { m.Payload = []string{"id", "id"} }),
			"mappings[0].payload[1]", []string{"listed twice"}},
		{"no primary key and no payload", []config.Mapping{{Table: "nokey", Domain: "n"}},
			"mappings[0].payload", []string{"table nokey has no primary key"}},
		{"missing actor column", base(func(m *config.Mapping) { m.Actor = "who" }),
			"mappings[0].actor", []string{`"who": table exams has no column who`}},
		{"template naming a missing column", base(func(m *config.Mapping) { m.Channels = []string{"exam:{id}", "role:x", "class:{klass_id}"} }),
			"mappings[0].channels[2]", []string{`mappings[0].channels[2] "class:{klass_id}": table exams has no column klass_id`}},
		{"template naming a missing old column", base(func(m *config.Mapping) { m.Channels = []string{"class:{old.klass}"} }),
			"mappings[0].channels[0]", []string{"has no column klass"}},
		{"template unclosed", base(func(m *config.Mapping) { m.Channels = []string{"class:{class_id"} }),
			"mappings[0].channels[0]", []string{"unclosed '{'"}},
		{"template empty reference", base(func(m *config.Mapping) { m.Channels = []string{"class:{old.}"} }),
			"mappings[0].channels[0]", []string{"empty reference"}},
		{"rule template naming a missing column", base(func(m *config.Mapping) {
			m.Events = []config.EventRule{{On: "insert", Type: "exam.created", Channels: []string{"x:{nope}"}}}
		}), "mappings[0].events[0].channels[0]", []string{"has no column nope"}},
		{"cel syntax error", base(rule("update", "new.status == ")),
			"mappings[0].events[1].when", []string{`"new.status == "`, "Syntax error"}},
		{"cel int vs string", base(rule("update", "new.id == 'x'")),
			"mappings[0].events[1].when", []string{`"new.id == 'x'"`, "no matching overload", "(int, string)"}},
		{"cel unknown column", base(rule("update", "new.nosuch == 1")),
			"mappings[0].events[1].when", []string{"undefined field 'nosuch'"}},
		{"cel unknown variable", base(rule("update", "row.status == 'x'")),
			"mappings[0].events[1].when", []string{"undeclared reference"}},
		{"cel not bool", base(rule("update", "new.status")),
			"mappings[0].events[1].when", []string{`"new.status"`, "want bool"}},
		{"cel rows on truncate", base(rule("truncate", "new.id == 1")),
			"mappings[0].events[1].when", []string{"truncate has no rows"}},
		{"cel old on insert", base(rule("insert", "old.id == 1")),
			"mappings[0].events[1].when", []string{"insert has no old row"}},
		{"cel new on delete", base(rule("delete", "new.id == 1")),
			"mappings[0].events[1].when", []string{"delete has no new row"}},
		{"bad on", base(rule("upsert", "")),
			"mappings[0].events[1].on", []string{`"upsert": want insert`}},
		{"missing type", base(func(m *config.Mapping) { m.Events = []config.EventRule{{On: "insert"}} }),
			"mappings[0].events[0].type", []string{"required"}},
		{"missing domain for defaults", base(func(m *config.Mapping) { m.Domain = "" }),
			"mappings[0].domain", []string{"required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := New(tt.rules, schema(), &recSink{}, Options{})
			if err == nil {
				t.Fatalf("New succeeded (%v), want an error at %s", m.Tables(), tt.key)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			var found *Error
			for _, e := range errs {
				if e.Key == tt.key {
					found = e
				}
			}
			if found == nil {
				t.Fatalf("no error at %s in:\n%v", tt.key, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(found.Error(), w) {
					t.Errorf("error %q does not contain %q", found.Error(), w)
				}
			}
			if strings.Contains(found.Error(), "\n") {
				t.Errorf("error %q spans lines", found.Error())
			}
		})
	}
}

func TestNewCollectsEveryError(t *testing.T) {
	t.Parallel()
	rules := []config.Mapping{
		{Table: "nosuch", Domain: "a"},
		{Table: "exams", Domain: "exam", Payload: []string{"klass"}, Channels: []string{"c:{nope}"},
			Events: []config.EventRule{{On: "update", When: "new.id == 'x'", Type: "exam.x"}}},
	}
	_, err := New(rules, schema(), &recSink{}, Options{})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	var keys []string
	for _, e := range errs {
		keys = append(keys, e.Key)
	}
	want := []string{"mappings[0].table", "mappings[1].payload[0]", "mappings[1].channels[0]", "mappings[1].events[0].when"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	if errs[1].Table != "exams" {
		t.Errorf("Table = %q, want exams", errs[1].Table)
	}
	var one *Error
	if !errors.As(err, &one) || one.Key != "mappings[0].table" {
		t.Errorf("errors.As(*Error) = %v", one)
	}
}

func TestNewAcceptsWhen(t *testing.T) {
	t.Parallel()
	for _, when := range []string{
		"old.status != 'published' && new.status == 'published'",
		"new.class_id != old.class_id",
		"new.title == null",
		"new.score > 3.5",
		"new.published_at > timestamp('2025-01-01T00:00:00Z')",
		"'urgent' in new.tags",
		"new.meta.flag == true",
		"new.meta.flag",
		"has(old.status) && op == 'update'",
		"new.updated_by == 19",
	} {
		t.Run(when, func(t *testing.T) {
			t.Parallel()
			rules := []config.Mapping{{Table: "exams", Domain: "exam", Events: []config.EventRule{{On: "update", When: when, Type: "exam.x"}}}}
			if _, err := New(rules, schema(), &recSink{}, Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefaultEvents(t *testing.T) {
	t.Parallel()
	m, sink, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam", Channels: []string{"table:exams"}}}, Options{})
	rel := examsRel()
	evs := runTx(t, m, sink, testTx(0x100),
		insert(rel, map[string]any{"id": int64(1)}),
		update(rel, 0, nil, map[string]any{"id": int64(1)}),
		del(rel, broadcaster.OldKey, map[string]any{"id": int64(1)}),
		truncate(rel),
	)
	want := []string{"exam.created", "exam.updated", "exam.deleted", "exam.truncated"}
	if got := typesOf(evs); !slices.Equal(got, want) {
		t.Errorf("types = %v, want %v", got, want)
	}
	if evs[3].Data != nil || evs[3].OldData != nil {
		t.Errorf("truncate carries data: %v %v", evs[3].Data, evs[3].OldData)
	}
	if !slices.Equal(evs[3].Channels, []string{"table:exams"}) {
		t.Errorf("truncate channels = %v", evs[3].Channels)
	}
}

func TestEventRules(t *testing.T) {
	t.Parallel()
	rel := examsRel()
	draft := map[string]any{"id": int64(7), "status": "draft"}
	published := map[string]any{"id": int64(7), "status": "published"}
	tests := []struct {
		name   string
		events []config.EventRule
		change *broadcaster.Change
		want   []string
	}{
		{"published transition", examsMapping().Events,
			update(rel, broadcaster.OldFull, draft, published), []string{"exam.published"}},
		{"already published is an update", examsMapping().Events,
			update(rel, broadcaster.OldFull, published, published), []string{"exam.updated"}},
		{"draft edit is an update", examsMapping().Events,
			update(rel, broadcaster.OldFull, draft, draft), []string{"exam.updated"}},
		{"old unknown counts as false", examsMapping().Events,
			update(rel, broadcaster.OldNone, nil, published), []string{"exam.updated"}},
		{"first match wins", []config.EventRule{
			{On: "insert", Type: "exam.a"}, {On: "insert", Type: "exam.b"},
		}, insert(rel, draft), []string{"exam.a"}},
		{"continue goes on", []config.EventRule{
			{On: "insert", Type: "exam.a", Continue: true}, {On: "update", Type: "exam.u"},
			{On: "insert", When: "new.status == 'nope'", Type: "exam.b", Continue: true},
			{On: "insert", Type: "exam.c"}, {On: "insert", Type: "exam.d"},
		}, insert(rel, draft), []string{"exam.a", "exam.c"}},
		{"no match no event", []config.EventRule{{On: "insert", Type: "exam.created"}},
			del(rel, broadcaster.OldKey, draft), nil},
		{"when false no event", []config.EventRule{{On: "insert", When: "new.status == 'published'", Type: "exam.p"}},
			insert(rel, draft), nil},
		{"op variable", []config.EventRule{{On: "delete", When: "op == 'delete' && old.id == 7", Type: "exam.gone"}},
			del(rel, broadcaster.OldKey, draft), []string{"exam.gone"}},
		{"truncate rule", []config.EventRule{{On: "truncate", When: "op == 'truncate'", Type: "exam.wiped"}},
			truncate(rel), []string{"exam.wiped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mp := examsMapping()
			mp.Events = tt.events
			m, sink, _ := newMapper(t, []config.Mapping{mp}, Options{})
			evs := runTx(t, m, sink, testTx(0x200), tt.change)
			if got := typesOf(evs); !slices.Equal(got, tt.want) {
				t.Errorf("types = %v, want %v", got, tt.want)
			}
			for i, e := range evs {
				if e.ID.Pos != uint32(i+1) {
					t.Errorf("event %d has Pos %d", i, e.ID.Pos)
				}
			}
		})
	}
}

func TestUnmappedTable(t *testing.T) {
	t.Parallel()
	m, sink, _ := newMapper(t, []config.Mapping{examsMapping()}, Options{})
	other := &broadcaster.Relation{Schema: "public", Name: "other", Columns: []broadcaster.Column{{Name: "id", TypeOID: tInt4, Key: true}}}
	evs := runTx(t, m, sink, testTx(0x300), &broadcaster.Change{Op: broadcaster.OpInsert, Rel: other, New: []any{int64(1)}})
	if len(evs) != 0 {
		t.Errorf("events for an unmapped table: %v", evs)
	}
	if len(sink.batches) != 1 || sink.batches[0].TxEnd != 0x330 {
		t.Errorf("batches = %+v, want one empty batch ending the transaction", sink.batches)
	}
}

func TestEventFields(t *testing.T) {
	t.Parallel()
	m, sink, _ := newMapper(t, []config.Mapping{
		examsMapping(),
		{Table: "audit.logins", Domain: "login", Actor: "user_id"},
	}, Options{})
	rel := examsRel()
	logins := schema()["audit.logins"]
	tx := testTx(0x16B3748C)
	evs := runTx(t, m, sink, tx,
		insert(rel, map[string]any{"id": int64(7), "class_id": int64(42), "status": "draft", "updated_by": int64(19)}),
		&broadcaster.Change{Op: broadcaster.OpInsert, Rel: logins, New: []any{int64(5), int64(20)}},
	)
	want := []broadcaster.Event{{
		ID: broadcaster.Cursor{LSN: 0x16B3748C, Pos: 1}, Type: "exam.created", Table: "exams", Op: broadcaster.OpInsert,
		Data:      broadcaster.Row{{Name: "id", Value: int64(7)}, {Name: "class_id", Value: int64(42)}, {Name: "subject_id", Value: nil}, {Name: "status", Value: "draft"}},
		Timestamp: commitTime, UserID: "19", TxID: 7731,
		Channels: []string{"exam:7", "class:42", "role:teacher", "table:exams"},
	}, {
		ID: broadcaster.Cursor{LSN: 0x16B3748C, Pos: 2}, Type: "login.created", Table: "audit.logins", Op: broadcaster.OpInsert,
		Data:      broadcaster.Row{{Name: "id", Value: int64(5)}},
		Timestamp: commitTime, UserID: "20", TxID: 7731, Channels: []string{},
	}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events =\n%+v\nwant\n%+v", evs, want)
	}
	b, err := json.Marshal(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"eventId":"0000000016B3748C-00000001","cursor":"0000000016B3748C-00000001","eventType":"exam.created","table":"exams","operation":"INSERT","data":{"id":7,"class_id":42,"subject_id":null,"status":"draft"},"timestamp":1764403200123,"userId":"19","txId":7731}`
	if string(b) != wantJSON {
		t.Errorf("json = %s\nwant   %s", b, wantJSON)
	}

	// A replay of the transaction gives the same ids.
	again := runTx(t, m, sink, tx, insert(rel, map[string]any{"id": int64(7)}),
		&broadcaster.Change{Op: broadcaster.OpInsert, Rel: logins, New: []any{int64(5), int64(20)}})
	if again[0].ID != evs[0].ID || again[1].ID != evs[1].ID {
		t.Errorf("replay ids %v %v, want %v %v", again[0].ID, again[1].ID, evs[0].ID, evs[1].ID)
	}
}

func TestChannels(t *testing.T) {
	t.Parallel()
	rel := examsRel()
	tests := []struct {
		name     string
		channels []string
		change   *broadcaster.Change
		want     []string
	}{
		{"literal and values", []string{"exam:{id}", "class:{class_id}", "role:teacher"},
			insert(rel, map[string]any{"id": int64(7), "class_id": int64(42)}), []string{"exam:7", "class:42", "role:teacher"}},
		{"null skipped", []string{"exam:{id}", "class:{class_id}"},
			insert(rel, map[string]any{"id": int64(7)}), []string{"exam:7"}},
		{"class move on both classes", []string{"class:{old.class_id}", "class:{new.class_id}"},
			update(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "class_id": int64(42)}, map[string]any{"id": int64(7), "class_id": int64(43)}),
			[]string{"class:42", "class:43"}},
		{"no move, duplicates removed", []string{"class:{old.class_id}", "class:{new.class_id}", "class:{class_id}"},
			update(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "class_id": int64(42)}, map[string]any{"id": int64(7), "class_id": int64(42)}),
			[]string{"class:42"}},
		{"old unknown skipped", []string{"class:{old.class_id}", "class:{new.class_id}"},
			update(rel, broadcaster.OldNone, nil, map[string]any{"id": int64(7), "class_id": int64(43)}),
			[]string{"class:43"}},
		{"old key known without old tuple", []string{"exam:{old.id}"},
			update(rel, broadcaster.OldNone, nil, map[string]any{"id": int64(7)}), []string{"exam:7"}},
		{"old non-key unknown under OldKey", []string{"class:{old.class_id}", "exam:{old.id}"},
			update(rel, broadcaster.OldKey, map[string]any{"id": int64(6), "class_id": int64(1)}, map[string]any{"id": int64(7)}),
			[]string{"exam:6"}},
		{"delete reads the old row", []string{"exam:{id}", "class:{class_id}", "x:{new.id}"},
			del(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "class_id": int64(42)}), []string{"exam:7", "class:42"}},
		{"unchanged falls back to old", []string{"t:{title}", "n:{new.title}"},
			update(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "title": "Maths"}, map[string]any{"id": int64(7), "title": broadcaster.Unchanged}),
			[]string{"t:Maths", "n:Maths"}},
		{"unchanged without old skipped", []string{"t:{title}", "all"},
			update(rel, broadcaster.OldNone, nil, map[string]any{"id": int64(7), "title": broadcaster.Unchanged}),
			[]string{"all"}},
		{"truncate keeps only literals", []string{"exam:{id}", "table:exams", "class:{old.class_id}"},
			truncate(rel), []string{"table:exams"}},
		{"value texts", []string{"{status}|{score}|{published_at}|{tags}|{meta}|{updated_by}"},
			insert(rel, map[string]any{
				"status": "draft", "score": broadcaster.Numeric("12.50"), "updated_by": int64(-3),
				"published_at": time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)),
				"tags":         []any{"a", int64(1)}, "meta": json.RawMessage(`{"k":1}`),
			}), []string{`draft|12.50|2025-01-02T02:04:05Z|["a",1]|{"k":1}|-3`}},
		{"several references in one template", []string{"s:{subject_id}:c:{class_id}"},
			insert(rel, map[string]any{"id": int64(1), "class_id": int64(2), "subject_id": int64(3)}), []string{"s:3:c:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mp := config.Mapping{Table: "exams", Domain: "exam", Channels: tt.channels}
			m, sink, _ := newMapper(t, []config.Mapping{mp}, Options{})
			evs := runTx(t, m, sink, testTx(0x400), tt.change)
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			if !slices.Equal(evs[0].Channels, tt.want) {
				t.Errorf("channels = %q, want %q", evs[0].Channels, tt.want)
			}
		})
	}
}

func TestRuleChannelsReplaceMapping(t *testing.T) {
	t.Parallel()
	mp := examsMapping()
	mp.Events = []config.EventRule{
		{On: "insert", Type: "exam.created", Continue: true, Channels: []string{"admin:{id}"}},
		{On: "insert", Type: "exam.listed"},
	}
	m, sink, _ := newMapper(t, []config.Mapping{mp}, Options{})
	evs := runTx(t, m, sink, testTx(0x500), insert(examsRel(), map[string]any{"id": int64(7), "class_id": int64(42)}))
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if !slices.Equal(evs[0].Channels, []string{"admin:7"}) {
		t.Errorf("rule channels = %v", evs[0].Channels)
	}
	if !slices.Equal(evs[1].Channels, []string{"exam:7", "class:42", "role:teacher", "table:exams"}) {
		t.Errorf("mapping channels = %v", evs[1].Channels)
	}
}

func TestData(t *testing.T) {
	t.Parallel()
	rel := examsRel()
	row := func(kv ...any) broadcaster.Row {
		var r broadcaster.Row
		for i := 0; i < len(kv); i += 2 {
			r = append(r, broadcaster.Field{Name: kv[i].(string), Value: kv[i+1]})
		}
		return r
	}
	payload := []string{"id", "status", "body"}
	full := map[string]any{"id": int64(7), "status": "draft", "body": "long text"}
	tests := []struct {
		name          string
		change        *broadcaster.Change
		data, oldData broadcaster.Row
	}{
		{"insert", insert(rel, full), row("id", int64(7), "status", "draft", "body", "long text"), nil},
		{"null is kept", insert(rel, map[string]any{"id": int64(7)}), row("id", int64(7), "status", nil, "body", nil), nil},
		{"unchanged toast left out", update(rel, broadcaster.OldNone, nil, map[string]any{"id": int64(7), "status": "published", "body": broadcaster.Unchanged}),
			row("id", int64(7), "status", "published"), nil},
		{"update with OldKey", update(rel, broadcaster.OldKey, map[string]any{"id": int64(6)}, full),
			row("id", int64(7), "status", "draft", "body", "long text"), row("id", int64(6))},
		{"update with OldFull", update(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "status": "x", "body": "old"}, map[string]any{"id": int64(7), "status": "draft", "body": broadcaster.Unchanged}),
			row("id", int64(7), "status", "draft"), row("id", int64(7), "status", "x", "body", "old")},
		{"old toast unknown left out", update(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "status": "x", "body": broadcaster.Unchanged}, full),
			row("id", int64(7), "status", "draft", "body", "long text"), row("id", int64(7), "status", "x")},
		{"delete with OldKey", del(rel, broadcaster.OldKey, map[string]any{"id": int64(7), "status": "placeholder"}),
			row("id", int64(7)), row("id", int64(7))},
		{"delete with OldFull", del(rel, broadcaster.OldFull, full),
			row("id", int64(7), "status", "draft", "body", "long text"), row("id", int64(7), "status", "draft", "body", "long text")},
		{"delete without old", del(rel, broadcaster.OldNone, nil), nil, nil},
		{"truncate", truncate(rel), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, sink, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam", Payload: payload}}, Options{})
			evs := runTx(t, m, sink, testTx(0x600), tt.change)
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			if !reflect.DeepEqual(evs[0].Data, tt.data) {
				t.Errorf("data = %v, want %v", evs[0].Data, tt.data)
			}
			if !reflect.DeepEqual(evs[0].OldData, tt.oldData) {
				t.Errorf("oldData = %v, want %v", evs[0].OldData, tt.oldData)
			}
		})
	}
}

func TestWhenValues(t *testing.T) {
	t.Parallel()
	rel := examsRel()
	ts := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	row := map[string]any{
		"id": int64(7), "class_id": int64(42), "status": "published", "title": nil,
		"score": broadcaster.Numeric("4.25"), "published_at": ts, "tags": []any{"urgent", "maths"},
		"meta": json.RawMessage(`{"flag":true,"n":3}`), "updated_by": int64(19),
	}
	tests := []struct {
		name   string
		when   string
		change *broadcaster.Change
		want   bool
	}{
		{"int", "new.class_id == 42", update(rel, 0, nil, row), true},
		{"numeric as double", "new.score > 4.0 && new.score < 4.5", update(rel, 0, nil, row), true},
		{"timestamp", "new.published_at > timestamp('2025-01-01T00:00:00Z')", update(rel, 0, nil, row), true},
		{"null", "new.title == null", update(rel, 0, nil, row), true},
		{"array", "'urgent' in new.tags", update(rel, 0, nil, row), true},
		{"jsonb", "new.meta.flag && new.meta.n == 3.0", update(rel, 0, nil, row), true},
		{"jsonb field as bool result", "new.meta.flag", update(rel, 0, nil, row), true},
		{"op", "op == 'update'", update(rel, 0, nil, row), true},
		{"unchanged takes the old value", "new.status == 'draft'",
			update(rel, broadcaster.OldFull, map[string]any{"id": int64(7), "status": "draft"}, map[string]any{"id": int64(7), "status": broadcaster.Unchanged}), true},
		{"unchanged without old is absent", "has(new.status)",
			update(rel, 0, nil, map[string]any{"id": int64(7), "status": broadcaster.Unchanged}), false},
		{"present", "has(new.status)", update(rel, 0, nil, row), true},
		{"evaluation error is false", "new.class_id / 0 == 1", update(rel, 0, nil, row), false},
		{"error absorbed by ||", "old.status == 'x' || new.class_id == 42", update(rel, 0, nil, row), true},
		{"old key without old tuple", "old.id == new.id", update(rel, 0, nil, row), true},
		{"old non-key under OldKey is absent", "has(old.status)",
			update(rel, broadcaster.OldKey, map[string]any{"id": int64(7), "status": "placeholder"}, row), false},
		{"null bool result is false", "new.meta.missing == true || new.meta.flag == false", update(rel, 0, nil, row), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mp := config.Mapping{Table: "exams", Domain: "exam", Events: []config.EventRule{{On: "update", When: tt.when, Type: "exam.hit"}}}
			m, sink, _ := newMapper(t, []config.Mapping{mp}, Options{})
			evs := runTx(t, m, sink, testTx(0x700), tt.change)
			if got := len(evs) == 1; got != tt.want {
				t.Errorf("matched = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWhenErrorIsLoggedRateLimited(t *testing.T) {
	t.Parallel()
	mp := config.Mapping{Table: "exams", Domain: "exam", Events: []config.EventRule{{On: "update", When: "old.status == 'draft'", Type: "exam.hit"}}}
	m, sink, logs := newMapper(t, []config.Mapping{mp}, Options{})
	rel := examsRel()
	for range 5 {
		runTx(t, m, sink, testTx(0x800), update(rel, 0, nil, map[string]any{"id": int64(1), "status": "x"}))
	}
	out := logs.String()
	if n := strings.Count(out, "when could not be evaluated"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "mappings[0].events[0].when") || !strings.Contains(out, "old.status") {
		t.Errorf("warning lacks key or column:\n%s", out)
	}
	// After the interval, the next warning says how many were suppressed.
	st := m.warns["mappings[0].events[0].when"]
	st.at = st.at.Add(-2 * warnEvery)
	m.warns["mappings[0].events[0].when"] = st
	runTx(t, m, sink, testTx(0x900), update(rel, 0, nil, map[string]any{"id": int64(1)}))
	if out := logs.String(); !strings.Contains(out, "suppressed=4") {
		t.Errorf("no suppressed count:\n%s", out)
	}
}

func TestAddColumnMidStream(t *testing.T) {
	t.Parallel()
	m, sink, _ := newMapper(t, []config.Mapping{examsMapping()}, Options{})
	rel := examsRel()
	runTx(t, m, sink, testTx(0x100), insert(rel, map[string]any{"id": int64(1), "class_id": int64(2), "status": "draft"}))

	// ALTER TABLE exams ADD COLUMN room text, placed first to shift every
	// index: the stream announces a new Relation.
	rel2 := &broadcaster.Relation{ID: rel.ID, Schema: rel.Schema, Name: rel.Name, ReplicaIdentity: rel.ReplicaIdentity,
		Columns: append([]broadcaster.Column{{Name: "room", TypeOID: tText}}, rel.Columns...)}
	old := map[string]any{"id": int64(1), "class_id": int64(2), "status": "draft", "room": "A"}
	cur := map[string]any{"id": int64(1), "class_id": int64(3), "status": "published", "room": "B", "updated_by": int64(19)}
	evs := runTx(t, m, sink, testTx(0x200), update(rel2, broadcaster.OldFull, old, cur))
	if len(evs) != 1 || evs[0].Type != "exam.published" {
		t.Fatalf("events = %+v, want one exam.published", evs)
	}
	wantData := broadcaster.Row{{Name: "id", Value: int64(1)}, {Name: "class_id", Value: int64(3)}, {Name: "subject_id", Value: nil}, {Name: "status", Value: "published"}}
	if !reflect.DeepEqual(evs[0].Data, wantData) {
		t.Errorf("data = %v, want %v", evs[0].Data, wantData)
	}
	if !slices.Equal(evs[0].Channels, []string{"exam:1", "class:3", "role:teacher", "table:exams"}) || evs[0].UserID != "19" {
		t.Errorf("channels %v userId %q", evs[0].Channels, evs[0].UserID)
	}
	if len(m.plans) != 1 {
		t.Errorf("%d plans cached, want only the newest", len(m.plans))
	}
}

func TestDroppedColumn(t *testing.T) {
	t.Parallel()
	mp := examsMapping()
	mp.Events = append([]config.EventRule{{On: "insert", When: "new.class_id == 2", Type: "exam.inclass"}}, mp.Events...)
	m, sink, logs := newMapper(t, []config.Mapping{mp}, Options{})
	rel := examsRel()
	// ALTER TABLE exams DROP COLUMN class_id.
	var cols []broadcaster.Column
	for _, c := range rel.Columns {
		if c.Name != "class_id" {
			cols = append(cols, c)
		}
	}
	rel2 := &broadcaster.Relation{ID: rel.ID, Schema: "public", Name: "exams", ReplicaIdentity: rel.ReplicaIdentity, Columns: cols}
	evs := runTx(t, m, sink, testTx(0x300),
		insert(rel2, map[string]any{"id": int64(1), "status": "draft"}),
		insert(rel2, map[string]any{"id": int64(2), "status": "draft"}),
	)
	if got := typesOf(evs); !slices.Equal(got, []string{"exam.created", "exam.created"}) {
		t.Errorf("types = %v", got)
	}
	wantData := broadcaster.Row{{Name: "id", Value: int64(1)}, {Name: "subject_id", Value: nil}, {Name: "status", Value: "draft"}}
	if !reflect.DeepEqual(evs[0].Data, wantData) {
		t.Errorf("data = %v, want %v", evs[0].Data, wantData)
	}
	if !slices.Equal(evs[0].Channels, []string{"exam:1", "role:teacher", "table:exams"}) {
		t.Errorf("channels = %v", evs[0].Channels)
	}
	out := logs.String()
	if strings.Count(out, "columns used by the mapping are no longer in the table") != 1 || !strings.Contains(out, "columns=[class_id]") {
		t.Errorf("want one warning naming class_id:\n%s", out)
	}
}

func TestActor(t *testing.T) {
	t.Parallel()
	rel := examsRel()
	tests := []struct {
		name    string
		actor   string // tx.Actor
		change  *broadcaster.Change
		want    string
		noActor bool // mapping without actor column
	}{
		{"actor column", "", insert(rel, map[string]any{"id": int64(1), "updated_by": int64(19)}), "19", false},
		{"null actor column", "", insert(rel, map[string]any{"id": int64(1)}), "", false},
		{"tx actor wins", "42", insert(rel, map[string]any{"id": int64(1), "updated_by": int64(19)}), "42", false},
		{"tx actor without actor column", "42", insert(rel, map[string]any{"id": int64(1)}), "42", true},
		{"old row on delete", "", del(rel, broadcaster.OldFull, map[string]any{"id": int64(1), "updated_by": int64(5)}), "5", false},
		{"unchanged actor from old", "", update(rel, broadcaster.OldFull, map[string]any{"id": int64(1), "updated_by": int64(5)}, map[string]any{"id": int64(1), "updated_by": broadcaster.Unchanged}), "5", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mp := config.Mapping{Table: "exams", Domain: "exam", Actor: "updated_by"}
			if tt.noActor {
				mp.Actor = ""
			}
			m, sink, _ := newMapper(t, []config.Mapping{mp}, Options{})
			tx := testTx(0x100)
			ctx := context.Background()
			if err := m.Begin(ctx, tx); err != nil {
				t.Fatal(err)
			}
			if err := m.Change(ctx, tx, tt.change); err != nil {
				t.Fatal(err)
			}
			// The Source fills Actor in when the message arrives, possibly
			// after the changes it covers.
			tx.Actor = tt.actor
			if err := m.Commit(ctx, tx); err != nil {
				t.Fatal(err)
			}
			evs := sink.events()
			if len(evs) != 1 || evs[0].UserID != tt.want {
				t.Errorf("events = %+v, want userId %q", evs, tt.want)
			}
		})
	}
}

func TestFlushAtMaxBuffered(t *testing.T) {
	t.Parallel()
	rel := examsRel()
	ins := func(id int64) *broadcaster.Change { return insert(rel, map[string]any{"id": id}) }
	tests := []struct {
		name   string
		n      int
		sizes  []int
		actor  string // set after the fourth change, once the first three are flushed
		actors []string
	}{
		{"empty transaction", 0, []int{0}, "", nil},
		{"below the limit", 2, []int{2}, "", nil},
		{"exactly the limit", 3, []int{3}, "", nil},
		{"two flushes", 7, []int{3, 3, 1}, "", nil},
		{"actor after a flush applies to later events", 5, []int{3, 2}, "u1", []string{"", "", "", "u1", "u1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, sink, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam"}}, Options{MaxBuffered: 3})
			tx := testTx(0x1000)
			ctx := context.Background()
			if err := m.Begin(ctx, tx); err != nil {
				t.Fatal(err)
			}
			for i := range tt.n {
				if i == 4 {
					tx.Actor = tt.actor
				}
				if err := m.Change(ctx, tx, ins(int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Commit(ctx, tx); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			for i, b := range sink.batches {
				sizes = append(sizes, len(b.Events))
				last := i == len(sink.batches)-1
				if (b.TxEnd != 0) != last || (last && b.TxEnd != tx.EndLSN) {
					t.Errorf("batch %d TxEnd = %v", i, b.TxEnd)
				}
				if len(b.Events) > 3 {
					t.Errorf("batch %d holds %d events", i, len(b.Events))
				}
			}
			if !slices.Equal(sizes, tt.sizes) {
				t.Errorf("batch sizes = %v, want %v", sizes, tt.sizes)
			}
			for i, e := range sink.events() {
				if e.ID.Pos != uint32(i+1) || e.ID.LSN != tx.CommitLSN {
					t.Errorf("event %d id %v", i, e.ID)
				}
				if tt.actors != nil && e.UserID != tt.actors[i] {
					t.Errorf("event %d userId %q, want %q", i, e.UserID, tt.actors[i])
				}
			}
			// Batches never share backing arrays: the sink keeps them.
			for i := 1; i < len(sink.batches); i++ {
				a, b := sink.batches[i-1].Events, sink.batches[i].Events
				if cap(a) > 0 && cap(b) > 0 && &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1] {
					t.Errorf("batches %d and %d share memory", i-1, i)
				}
			}
		})
	}
}

func TestSinkError(t *testing.T) {
	t.Parallel()
	m, sink, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam"}}, Options{})
	boom := errors.New("boom")
	sink.err = boom
	tx := testTx(0x10)
	ctx := context.Background()
	_ = m.Begin(ctx, tx)
	_ = m.Change(ctx, tx, insert(examsRel(), map[string]any{"id": int64(1)}))
	if err := m.Commit(ctx, tx); !errors.Is(err, boom) {
		t.Errorf("Commit = %v, want %v", err, boom)
	}
}

func TestNoSinkAndBadChange(t *testing.T) {
	t.Parallel()
	m, err := New([]config.Mapping{{Table: "exams", Domain: "exam"}}, schema(), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Begin(context.Background(), testTx(1)); !errors.Is(err, errNoSink) {
		t.Errorf("Begin without sink = %v", err)
	}
	m2, sink, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam"}}, Options{})
	_ = sink
	if err := m2.Change(context.Background(), testTx(1), &broadcaster.Change{Op: broadcaster.OpInsert}); err == nil {
		t.Error("Change without relation succeeded")
	}
	// Values that do not line up with the relation are skipped, not a panic.
	short := &broadcaster.Change{Op: broadcaster.OpUpdate, Rel: examsRel(), New: []any{int64(1)}, Old: []any{int64(1)}, OldKind: broadcaster.OldFull}
	if err := m2.Change(context.Background(), testTx(1), short); err != nil {
		t.Errorf("short change: %v", err)
	}
}

func TestTablesAndRequirements(t *testing.T) {
	t.Parallel()
	mp := examsMapping()
	mp.Channels = append(mp.Channels, "class:{old.class_id}", "exam:{old.id}")
	mp.Events = append(mp.Events, config.EventRule{On: "update", When: "old.title != new.title", Type: "exam.renamed"})
	m, _, _ := newMapper(t, []config.Mapping{mp}, Options{})
	m2, _, _ := newMapper(t, []config.Mapping{{Table: "audit.logins", Domain: "login"}, mp}, Options{})
	if got := m.Tables(); !slices.Equal(got, []string{"exams"}) {
		t.Errorf("Tables = %v", got)
	}
	if got := m2.Tables(); !slices.Equal(got, []string{"audit.logins", "exams"}) {
		t.Errorf("Tables = %v", got)
	}
	want := []Requirement{
		{Table: "audit.logins"},
		{Table: "exams", OldColumns: []string{"class_id", "status", "title"}, Key: "mappings[1].channels[4]"},
	}
	if got := m2.Requirements(); !reflect.DeepEqual(got, want) {
		t.Errorf("Requirements = %+v, want %+v", got, want)
	}
	// The published rule comes first when there are no old. templates.
	m3, _, _ := newMapper(t, []config.Mapping{examsMapping()}, Options{})
	if got := m3.Requirements(); len(got) != 1 || got[0].Key != "mappings[0].events[0].when" || !slices.Equal(got[0].OldColumns, []string{"status"}) {
		t.Errorf("Requirements = %+v", got)
	}
}

func TestCELValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"numeric", broadcaster.Numeric("12.50"), 12.5},
		{"numeric nan", broadcaster.Numeric("NaN"), nil}, // checked below
		{"numeric too large", broadcaster.Numeric("1e400"), math.Inf(1)},
		{"date", broadcaster.Date("2025-11-29"), "2025-11-29"},
		{"json", json.RawMessage(`{"a":[1,"x"]}`), map[string]any{"a": []any{1.0, "x"}}},
		{"array", []any{broadcaster.Numeric("1.5"), nil, []any{broadcaster.Date("2025-01-01")}}, []any{1.5, nil, []any{"2025-01-01"}}},
		{"int", int64(3), int64(3)},
		{"null", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := celValue(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "numeric nan" {
				if f, ok := got.(float64); !ok || !math.IsNaN(f) {
					t.Errorf("got %v, want NaN", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	if _, err := celValue(broadcaster.Numeric("abc")); err == nil {
		t.Error("bad numeric accepted")
	}
}

// TestWatchedTablesEndWithRecheck: a transaction that changes a watched
// table, mapped or not, ends with one control record after its events,
// listing each watched table it changed once; others end without one, and
// a replay gives the record the same id.
func TestWatchedTablesEndWithRecheck(t *testing.T) {
	t.Parallel()
	exams := examsRel()
	members := &broadcaster.Relation{ID: 9, Schema: "public", Name: "class_teachers", Columns: []broadcaster.Column{
		{Name: "class_id", TypeOID: tInt4, Key: true}, {Name: "teacher_id", TypeOID: tInt4, Key: true},
	}}
	m, sink, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam"}}, Options{Watch: []string{"class_teachers", "exams"}})
	row := func(vals map[string]any) *broadcaster.Change { return insert(exams, vals) }
	member := &broadcaster.Change{Rel: members, Op: broadcaster.OpDelete, Old: []any{int64(42), int64(19)}, OldKind: broadcaster.OldKey}

	evs := runTx(t, m, sink, testTx(0x100), row(map[string]any{"id": int64(1)}), member, member, row(map[string]any{"id": int64(2)}))
	if len(evs) != 3 || evs[2].Recheck == nil || !evs[2].IsControl() {
		t.Fatalf("events %+v, want two events and a control record", evs)
	}
	if got := evs[2].Recheck; !slices.Equal(got, []string{"exams", "class_teachers"}) {
		t.Fatalf("recheck %v, want each watched table changed, once", got)
	}
	if evs[2].ID != (broadcaster.Cursor{LSN: 0x100, Pos: 3}) || evs[2].Type != "" || evs[2].Channels != nil {
		t.Fatalf("control record %+v: want position 3, after the events, with no type or channels", evs[2])
	}
	if evs[0].IsControl() || evs[1].IsControl() {
		t.Fatal("row events taken for control records")
	}
	again := runTx(t, m, sink, testTx(0x100), row(map[string]any{"id": int64(1)}), member, member, row(map[string]any{"id": int64(2)}))
	if again[2].ID != evs[2].ID {
		t.Fatalf("replayed control record id %v, want %v", again[2].ID, evs[2].ID)
	}
	// Only an unmapped, watched table: the record alone.
	if evs := runTx(t, m, sink, testTx(0x200), member); len(evs) != 1 || !slices.Equal(evs[0].Recheck, []string{"class_teachers"}) || evs[0].ID.Pos != 1 {
		t.Fatalf("membership-only transaction: %+v", evs)
	}
	// Nothing watched: no record.
	m2, sink2, _ := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam"}}, Options{})
	if evs := runTx(t, m2, sink2, testTx(0x300), row(map[string]any{"id": int64(1)}), member); len(evs) != 1 || evs[0].IsControl() {
		t.Fatalf("without Watch: %+v", evs)
	}
}
