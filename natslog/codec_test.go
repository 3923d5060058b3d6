package natslog

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// TestCodecRoundTrip: an event read back from its stream message encodes
// to clients byte for byte as the reader's own, whatever its values.
func TestCodecRoundTrip(t *testing.T) {
	at := time.Date(2025, 11, 29, 8, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		ev   broadcaster.Event
	}{
		{"row event", broadcaster.Event{
			ID: broadcaster.Cursor{LSN: 0x16B3748C, Pos: 3}, Type: "exam.published", Table: "exams", Op: broadcaster.OpUpdate,
			Data: broadcaster.Row{
				{Name: "id", Value: int64(7)}, {Name: "big", Value: int64(math.MaxInt64)}, {Name: "score", Value: broadcaster.Numeric("12.50")},
				{Name: "meta", Value: json.RawMessage(`{"z":1,"a":[true,null]}`)}, {Name: "at", Value: at}, {Name: "nan", Value: math.NaN()},
				{Name: "tags", Value: []any{"a", int64(2)}}, {Name: "none", Value: nil}, {Name: "ünï", Value: "ç\"\n"},
			},
			OldData:   broadcaster.Row{{Name: "id", Value: int64(7)}, {Name: "status", Value: "draft"}},
			Timestamp: at, UserID: "19", TxID: 7731, Channels: []string{"class:42", "exam:7"},
		}},
		{"truncate", broadcaster.Event{ID: broadcaster.Cursor{LSN: 1, Pos: 1}, Type: "exam.truncated", Table: "exams", Op: broadcaster.OpTruncate, Timestamp: at, Channels: []string{"table:exams"}}},
		{"emitted", broadcaster.Event{
			ID: broadcaster.Cursor{LSN: 0x16B37000, Pos: 1}, Type: "exam.closing_soon", Op: broadcaster.OpEmit,
			Data:      broadcaster.Row{{Name: "examId", Value: json.RawMessage(`7`)}, {Name: "at", Value: json.RawMessage(`"2025-11-29T10:30:00Z"`)}, {Name: "tags", Value: json.RawMessage(`["a",{"b":null}]`)}},
			Timestamp: at, Channels: []string{"exam:7"},
		}},
		{"emitted without data", broadcaster.Event{ID: broadcaster.Cursor{LSN: 5, Pos: 2}, Type: "system.notice", Op: broadcaster.OpEmit, Timestamp: at, TxID: 3, Channels: []string{"school"}}},
		{"control record", broadcaster.Event{ID: broadcaster.Cursor{LSN: 2, Pos: 4}, Timestamp: at, TxID: 9, Recheck: []string{"class_teachers", "audit.logins"}}},
		{"gap", broadcaster.Event{ID: broadcaster.Cursor{LSN: 3}, Timestamp: at, Gap: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := Encode("cdc", &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Header.Get("Nats-Msg-Id") != tt.ev.ID.String() || msg.Header.Get(HeaderCursor) != tt.ev.ID.String() {
				t.Fatalf("headers %v", msg.Header)
			}
			got, err := Decode(msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(tt.ev)
			back, _ := json.Marshal(got)
			if string(want) != string(back) {
				t.Fatalf("client JSON differs:\n got %s\nwant %s", back, want)
			}
			if !got.Timestamp.Equal(tt.ev.Timestamp) || !slices.Equal(got.Channels, tt.ev.Channels) || !slices.Equal(got.Recheck, tt.ev.Recheck) || got.IsControl() != tt.ev.IsControl() || got.Gap != tt.ev.Gap {
				t.Fatalf("decoded %+v, want %+v", got, tt.ev)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	for _, tt := range []struct {
		ev   broadcaster.Event
		want string
	}{
		{broadcaster.Event{Type: "exam.published"}, "cdc.exam.published"},
		{broadcaster.Event{Type: "exam session.started*"}, "cdc.exam_session.started_"},
		{broadcaster.Event{Recheck: []string{"t"}}, "cdc._control"},
		{broadcaster.Event{Gap: true}, "cdc._gap"},
		{broadcaster.Event{}, "cdc._"},
	} {
		if got := Subject("cdc", &tt.ev); got != tt.want {
			t.Errorf("Subject(%q) = %q, want %q", tt.ev.Type, got, tt.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	msg, _ := Encode("cdc", &broadcaster.Event{ID: broadcaster.Cursor{LSN: 1, Pos: 1}, Type: "a.b", Data: broadcaster.Row{{Name: "id", Value: int64(1)}}})
	f.Add(msg.Data)
	f.Add([]byte(`{"id":"0000000000000001-00000001","data":[["a"]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Decode(data)
		if err != nil {
			return
		}
		if ev.ID.IsZero() {
			t.Fatal("decoded an event without id")
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
	})
}
