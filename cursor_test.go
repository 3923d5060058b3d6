package broadcaster

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestCursorText(t *testing.T) {
	tests := []struct {
		name string
		c    Cursor
		want string
	}{
		{"zero", Cursor{}, "0000000000000000-00000000"},
		{"typical", Cursor{LSN: 0x16B3748C, Pos: 3}, "0000000016B3748C-00000003"},
		{"max", Cursor{LSN: math.MaxUint64, Pos: math.MaxUint32}, "FFFFFFFFFFFFFFFF-FFFFFFFF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			back, err := ParseCursor(tt.want)
			if err != nil || back != tt.c {
				t.Fatalf("ParseCursor(%q) = %v, %v", tt.want, back, err)
			}
			if back, err := ParseCursor(strings.ToLower(tt.want)); err != nil || back != tt.c {
				t.Fatalf("lower case: %v, %v", back, err)
			}
		})
	}
}

func TestParseCursorRejects(t *testing.T) {
	for _, s := range []string{"", "1764403200123", "0000000016B3748C_00000003", "0000000016B3748C-0000003", "+000000016B3748C-00000003", "0000000016B3748C-+0000003", "0000000016B3748G-00000003", "0000000016B3748C-00000003 "} {
		if _, err := ParseCursor(s); err == nil {
			t.Errorf("ParseCursor(%q) accepted", s)
		}
	}
}

func TestCursorOrder(t *testing.T) {
	ordered := []Cursor{{LSN: 1, Pos: 1}, {LSN: 1, Pos: 2}, {LSN: 1, Pos: 0}, {LSN: 2, Pos: 1}, {LSN: 2, Pos: 0}}
	for i := range ordered {
		for j := range ordered {
			got := ordered[i].Compare(ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", ordered[i], ordered[j], got, want)
			}
			// Text order agrees, except that Pos 0 (end of transaction) is
			// never shown to clients as an event id.
			if ordered[i].Pos != 0 && ordered[j].Pos != 0 {
				if (ordered[i].String() < ordered[j].String()) != (want < 0) {
					t.Errorf("text order of %v and %v disagrees", ordered[i], ordered[j])
				}
			}
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0000000016B3748C-00000003", "", "1764403200123", "ffffffffffffffff-ffffffff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseCursor(%q): an error without a message", s)
			}
			return
		}
		if !strings.EqualFold(c.String(), s) {
			t.Fatalf("ParseCursor(%q) = %v, which prints as %q", s, c, c.String())
		}
	})
}

func TestJSONValue(t *testing.T) {
	ts := time.Date(2025, 11, 29, 8, 0, 0, 123000000, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"small int8", int64(42), `42`},
		{"int8 at 2^53", int64(1 << 53), `9007199254740992`},
		{"int8 past 2^53", int64(1<<53 + 1), `"9007199254740993"`},
		{"negative int8 past 2^53", int64(-(1<<53 + 1)), `"-9007199254740993"`},
		{"numeric exact", Numeric("12.5"), `12.5`},
		{"numeric trailing zero", Numeric("12.50"), `12.5`},
		{"numeric inexact", Numeric("0.1"), `"0.1"`},
		{"numeric long", Numeric("123456789012345678901234567890"), `"123456789012345678901234567890"`},
		{"numeric nan", Numeric("NaN"), `"NaN"`},
		{"float nan", math.NaN(), `"NaN"`},
		{"float inf", math.Inf(1), `"+Inf"`},
		{"timestamp", ts, `"2025-11-29T07:00:00.123Z"`},
		{"date", Date("2025-11-29"), `"2025-11-29"`},
		{"raw json", json.RawMessage(`{"a":[1,2]}`), `{"a":[1,2]}`},
		{"array", []any{int64(1), nil, Numeric("0.5")}, `[1,null,0.5]`},
		{"null", nil, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(JSONValue(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got %s, want %s", b, tt.want)
			}
		})
	}
}

func TestEventJSON(t *testing.T) {
	ev := Event{
		ID: Cursor{LSN: 0x16B3748C, Pos: 3}, Type: "exam.published", Table: "exams", Op: OpUpdate,
		Data:      Row{{"id", int64(7)}, {"status", "published"}},
		OldData:   Row{{"id", int64(7)}, {"status", "draft"}},
		Timestamp: time.UnixMilli(1764403200123), UserID: "19", TxID: 7731,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"eventId":"0000000016B3748C-00000003","cursor":"0000000016B3748C-00000003","eventType":"exam.published","table":"exams","operation":"UPDATE","data":{"id":7,"status":"published"},"oldData":{"id":7,"status":"draft"},"timestamp":1764403200123,"userId":"19","txId":7731}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}
