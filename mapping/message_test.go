package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// testEmit allows system.* (on role:{role} and school) and declares
// exam.closing_soon with channels and data fields of its own.
func testEmit() config.Emit {
	return config.Emit{
		Enabled: true, Prefix: "cdc.emit", MaxBytes: 512,
		Types:    []string{"system.*"},
		Channels: []string{"role:{role}", "school"},
		Events: []config.EmitEvent{{
			Type:     "exam.closing_soon",
			Channels: []string{"exam:{examId}", "class:{classId}"},
			Data:     map[string]string{"examId": "integer", "minutesLeft": "number", "note": "string?", "tags": "string[]?"},
		}},
	}
}

// newEmitMapper maps exams (exam.created...) and emits by testEmit.
func newEmitMapper(t *testing.T) (*Mapper, *recSink, *logBuf) {
	t.Helper()
	return newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam", Channels: []string{"exam:{id}"}}}, Options{Emit: testEmit()})
}

func emitMsg(lsn broadcaster.LSN, transactional bool, content string) *broadcaster.Message {
	return &broadcaster.Message{LSN: lsn, Transactional: transactional, Prefix: "cdc.emit", Content: []byte(content), Sent: commitTime.Add(time.Second)}
}

const closingSoon = `{"type":"exam.closing_soon","channels":["exam:7","class:3","exam:7"],"data":{"minutesLeft":10,"examId":7,"note":null}}`

// TestEmitInTransaction: a transactional message's event takes its place
// among the row events of its transaction, with the transaction's id,
// commit time and actor; a replay gives the same ids.
func TestEmitInTransaction(t *testing.T) {
	t.Parallel()
	m, sink, _ := newEmitMapper(t)
	rel := examsRel()
	ctx := context.Background()
	run := func() []broadcaster.Event {
		tx := testTx(0x500)
		before := len(sink.batches)
		must(t, m.Begin(ctx, tx))
		must(t, m.Change(ctx, tx, insert(rel, map[string]any{"id": int64(1)})))
		must(t, m.Message(ctx, tx, emitMsg(0x480, true, closingSoon)))
		must(t, m.Change(ctx, tx, insert(rel, map[string]any{"id": int64(2)})))
		tx.Actor = "19"
		must(t, m.Commit(ctx, tx))
		var out []broadcaster.Event
		for _, b := range sink.batches[before:] {
			out = append(out, b.Events...)
		}
		return out
	}
	evs := run()
	if got := typesOf(evs); !slices.Equal(got, []string{"exam.created", "exam.closing_soon", "exam.created"}) {
		t.Fatalf("types = %v", got)
	}
	e := evs[1]
	if e.ID != (broadcaster.Cursor{LSN: 0x500, Pos: 2}) || e.TxID != 7731 || !e.Timestamp.Equal(commitTime) || e.UserID != "19" {
		t.Errorf("emitted event = %+v", e)
	}
	if e.Op != broadcaster.OpEmit || e.Table != "" || !slices.Equal(e.Channels, []string{"class:3", "exam:7"}) {
		t.Errorf("emitted event = %+v", e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"eventId":"0000000000000500-00000002","cursor":"0000000000000500-00000002","eventType":"exam.closing_soon","operation":"EMIT","data":{"minutesLeft":10,"examId":7,"note":null},"timestamp":1764403200123,"userId":"19","txId":7731}`
	if string(b) != want {
		t.Errorf("json:\n got %s\nwant %s", b, want)
	}
	again := run()
	for i := range evs {
		if again[i].ID != evs[i].ID || again[i].Type != evs[i].Type {
			t.Errorf("replay: event %d is %v %s, was %v %s", i, again[i].ID, again[i].Type, evs[i].ID, evs[i].Type)
		}
	}
}

// TestEmitNonTransactional: a non-transactional message is appended at
// once, alone, in a batch ending at its LSN (its record's end, maybe the
// next commit's), at position 1 of the LSN before, with the time it was
// sent.
func TestEmitNonTransactional(t *testing.T) {
	t.Parallel()
	m, sink, _ := newEmitMapper(t)
	must(t, m.Message(context.Background(), nil, emitMsg(0x700, false, `{"type":"system.notice","channels":["role:admin"]}`)))
	if len(sink.batches) != 1 {
		t.Fatalf("%d batches", len(sink.batches))
	}
	b := sink.batches[0]
	if b.TxEnd != 0x700 || len(b.Events) != 1 {
		t.Fatalf("batch = %+v", b)
	}
	e := b.Events[0]
	if e.ID != (broadcaster.Cursor{LSN: 0x6FF, Pos: 1}) || e.TxID != 0 || !e.NonTransactional() || !e.Timestamp.Equal(commitTime.Add(time.Second)) || e.Type != "system.notice" {
		t.Errorf("event = %+v", e)
	}
	// Without data, the event still has data: {}.
	js, _ := json.Marshal(e)
	if !strings.Contains(string(js), `"data":{}`) || strings.Contains(string(js), `"table"`) {
		t.Errorf("json %s", js)
	}
}

// TestEmitDropped: a message that breaks a rule makes no event, in or out
// of a transaction; it is counted by reason and logged once a minute per
// reason; the transaction's other events are untouched.
func TestEmitDropped(t *testing.T) {
	t.Parallel()
	long := `{"type":"system.notice","channels":["school"],"data":{"s":"` + strings.Repeat("x", 512) + `"}}`
	tests := []struct {
		name, content, reason string
	}{
		{"over max_bytes", long, DropTooLarge},
		{"not json", `{"type":`, DropMalformed},
		{"not an object", `["system.notice"]`, DropMalformed},
		{"unknown key", `{"type":"system.notice","channels":["school"],"userId":"1"}`, DropMalformed},
		{"no channels", `{"type":"system.notice","channels":[]}`, DropMalformed},
		{"data not an object", `{"type":"system.notice","channels":["school"],"data":[1]}`, DropMalformed},
		{"trailing data", `{"type":"system.notice","channels":["school"]} {}`, DropMalformed},
		{"type not allowed", `{"type":"grading.progress","channels":["school"]}`, DropType},
		{"type not a type", `{"type":"system","channels":["school"]}`, DropType},
		{"mapped type", `{"type":"exam.created","channels":["exam:1"]}`, DropType},
		{"channel outside the patterns", `{"type":"system.notice","channels":["school","class:1"]}`, DropChannel},
		{"param outside its value", `{"type":"system.notice","channels":["role:a b"]}`, DropChannel},
		{"declared type, global channel", `{"type":"exam.closing_soon","channels":["school"],"data":{"examId":1,"minutesLeft":1}}`, DropChannel},
		{"undeclared field", `{"type":"exam.closing_soon","channels":["exam:1"],"data":{"examId":1,"minutesLeft":1,"x":1}}`, DropData},
		{"missing field", `{"type":"exam.closing_soon","channels":["exam:1"],"data":{"examId":1}}`, DropData},
		{"not an integer", `{"type":"exam.closing_soon","channels":["exam:1"],"data":{"examId":1.5,"minutesLeft":1}}`, DropData},
		{"null required", `{"type":"exam.closing_soon","channels":["exam:1"],"data":{"examId":null,"minutesLeft":1}}`, DropData},
		{"list item", `{"type":"exam.closing_soon","channels":["exam:1"],"data":{"examId":1,"minutesLeft":1,"tags":["a",2]}}`, DropData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, sink, logs := newEmitMapper(t)
			ctx := context.Background()
			must(t, m.Message(ctx, nil, emitMsg(0x100, false, tt.content)))
			tx := testTx(0x200)
			must(t, m.Begin(ctx, tx))
			must(t, m.Message(ctx, tx, emitMsg(0x180, true, tt.content)))
			must(t, m.Change(ctx, tx, insert(examsRel(), map[string]any{"id": int64(1)})))
			must(t, m.Message(ctx, tx, emitMsg(0x190, true, tt.content)))
			must(t, m.Commit(ctx, tx))
			evs := sink.events()
			if len(evs) != 1 || evs[0].Type != "exam.created" || evs[0].ID.Pos != 1 {
				t.Errorf("events = %+v, want the row event alone at position 1", evs)
			}
			for reason, n := range m.EmitDropped() {
				if want := map[bool]uint64{true: 3}[reason == tt.reason]; n != want {
					t.Errorf("dropped[%s] = %d, want %d", reason, n, want)
				}
			}
			if got := strings.Count(logs.String(), "emit: message dropped"); got != 1 || !strings.Contains(logs.String(), "reason="+tt.reason) {
				t.Errorf("%d log lines, want 1 with reason %s:\n%s", got, tt.reason, logs)
			}
		})
	}
}

// TestEmitAccepted: what the rules let through, data as sent.
func TestEmitAccepted(t *testing.T) {
	t.Parallel()
	for _, content := range []string{
		`{"type":"system.notice","channels":["school","role:teacher"],"data":{"level":"info","nested":{"a":[1,{"b":null}]}}}`,
		`{"data":null,"channels":["role:admin"],"type":"system.restart"}`,
		`{"type":"exam.closing_soon","channels":["class:1","exam:1"],"data":{"examId":-1,"minutesLeft":2.5e0,"tags":["a","b"],"note":"x"}}`,
		` {"type":"exam.closing_soon","channels":["exam:1"],"data":{"examId":1,"minutesLeft":1,"tags":null}} `,
	} {
		m, sink, logs := newEmitMapper(t)
		must(t, m.Message(context.Background(), nil, emitMsg(0x100, false, content)))
		if len(sink.events()) != 1 {
			t.Errorf("%s: no event; log:\n%s", content, logs)
		}
	}
}

func TestEmitOtherPrefixAndDisabled(t *testing.T) {
	t.Parallel()
	m, sink, logs := newEmitMapper(t)
	msg := emitMsg(0x100, false, closingSoon)
	msg.Prefix = "other.app"
	must(t, m.Message(context.Background(), nil, msg))
	if len(sink.batches) != 0 || logs.String() != "" || m.EmitDropped()[DropMalformed] != 0 {
		t.Errorf("a message of another prefix was looked at: %v %s", sink.batches, logs)
	}

	off, sink, logs := newMapper(t, []config.Mapping{{Table: "exams", Domain: "exam"}}, Options{})
	must(t, off.Message(context.Background(), nil, emitMsg(0x100, false, closingSoon)))
	if len(sink.batches) != 0 || off.EmitDropped()[DropDisabled] != 1 || !strings.Contains(logs.String(), "emit.enabled is false") {
		t.Errorf("disabled: batches %v, dropped %v, log %s", sink.batches, off.EmitDropped(), logs)
	}
}

func TestEmitLoadErrors(t *testing.T) {
	t.Parallel()
	e := testEmit()
	e.Events = append(e.Events, config.EmitEvent{Type: "exam.created"})
	e.Channels = append(e.Channels, "x:{")
	_, err := New([]config.Mapping{{Table: "exams", Domain: "exam"}}, schema(), discard{}, Options{Emit: e})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("New = %v, want two errors", err)
	}
	if errs[0].Key != "emit.channels[2]" || errs[1].Key != "emit.events[1].type" || !strings.Contains(errs[1].Msg, "produce this event type") {
		t.Errorf("errors = %v", errs)
	}
}

func TestCompilePattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{"school", []string{"school"}, []string{"schools", "schoo", ""}},
		{"exam:{examId}", []string{"exam:7", "exam:a.b-c_d"}, []string{"exam:", "exam:7:8", "exam:a b", "xexam:7", "exam:" + strings.Repeat("1", 129)}},
		{"a.{x}+{y}", []string{"a.1+2"}, []string{"aX1+2", "a.1+"}},
	} {
		re, err := compilePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		for _, s := range tc.yes {
			if !re.MatchString(s) {
				t.Errorf("%s does not match %q", tc.pattern, s)
			}
		}
		for _, s := range tc.no {
			if re.MatchString(s) {
				t.Errorf("%s matches %q", tc.pattern, s)
			}
		}
	}
	for _, bad := range []string{"", "{", "}", "a{}", "a{b{c}}"} {
		if _, err := compilePattern(bad); err == nil {
			t.Errorf("compilePattern(%q): no error", bad)
		}
	}
}

// FuzzParseEmitted: no content makes parseEmitted panic, and what it
// accepts has a type, channels, and data that encodes back to JSON.
func FuzzParseEmitted(f *testing.F) {
	for _, s := range []string{
		closingSoon,
		`{"type":"a.b","channels":["x"],"data":{}}`,
		`{"type":"a.b","channels":["x"],"data":{"a":1,"a":2}}`,
		`{"type":1}`, `{}`, `null`, `[]`, `{"data":{"x":[{"y":"\u0000"}]}}`, "\xff", `{"type":"a.b","channels":["x"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		e, err := parseEmitted(content)
		if err != nil {
			return
		}
		if e.typ == "" || len(e.channels) == 0 {
			t.Fatalf("accepted %q without type or channels: %+v", content, e)
		}
		if _, err := json.Marshal(e.data); err != nil {
			t.Fatalf("data of %q does not encode: %v", content, err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
