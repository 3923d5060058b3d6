package cdc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Type OIDs pgx has no constant for.
const (
	moneyOID   = 790
	unknownOID = 99999 // an enum, domain or extension type
)

// decodeCase is one value to decode. A case with wantErr expects an error
// containing it.
type decodeCase struct {
	name    string
	oid     uint32
	text    string
	want    any
	wantErr string
}

func utc(year int, month time.Month, day, hour, minute, sec, nsec int) time.Time {
	return time.Date(year, month, day, hour, minute, sec, nsec, time.UTC)
}

var decodeCases = []decodeCase{
	// Integers.
	{name: "int2", oid: pgtype.Int2OID, text: "-32768", want: int64(-32768)},
	{name: "int2 out of range", oid: pgtype.Int2OID, text: "32768", wantErr: `decode int2 value "32768"`},
	{name: "int4", oid: pgtype.Int4OID, text: "42", want: int64(42)},
	{name: "int4 min", oid: pgtype.Int4OID, text: "-2147483648", want: int64(math.MinInt32)},
	{name: "int4 malformed", oid: pgtype.Int4OID, text: "abc", wantErr: `decode int4 value "abc": `},
	{name: "int4 empty", oid: pgtype.Int4OID, text: "", wantErr: `decode int4 value ""`},
	{name: "int4 out of range", oid: pgtype.Int4OID, text: "2147483648", wantErr: "int4"},
	{name: "int8 max", oid: pgtype.Int8OID, text: "9223372036854775807", want: int64(math.MaxInt64)},
	{name: "int8 min", oid: pgtype.Int8OID, text: "-9223372036854775808", want: int64(math.MinInt64)},
	{name: "int8 overflow", oid: pgtype.Int8OID, text: "9223372036854775808", wantErr: "int8"},
	{name: "oid", oid: pgtype.OIDOID, text: "4294967295", want: int64(math.MaxUint32)},
	{name: "oid negative", oid: pgtype.OIDOID, text: "-1", wantErr: "decode oid value"},
	{name: "xid", oid: pgtype.XIDOID, text: "7431", want: int64(7431)},

	// Floats.
	{name: "float4 keeps its decimal", oid: pgtype.Float4OID, text: "1.1", want: 1.1},
	{name: "float4 max", oid: pgtype.Float4OID, text: "3.4028235e+38", want: 3.4028235e+38},
	{name: "float8", oid: pgtype.Float8OID, text: "3.141592653589793", want: math.Pi},
	{name: "float8 exponent", oid: pgtype.Float8OID, text: "1e-300", want: 1e-300},
	{name: "float8 NaN", oid: pgtype.Float8OID, text: "NaN", want: math.NaN()},
	{name: "float8 infinity", oid: pgtype.Float8OID, text: "Infinity", want: math.Inf(1)},
	{name: "float8 negative infinity", oid: pgtype.Float8OID, text: "-Infinity", want: math.Inf(-1)},
	{name: "float8 negative zero", oid: pgtype.Float8OID, text: "-0", want: math.Copysign(0, -1)},
	{name: "float4 NaN", oid: pgtype.Float4OID, text: "NaN", want: math.NaN()},
	{name: "float8 malformed", oid: pgtype.Float8OID, text: "1.2.3", wantErr: "decode float8 value"},

	// Numerics stay exact text.
	{name: "numeric", oid: pgtype.NumericOID, text: "12.50", want: broadcaster.Numeric("12.50")},
	{name: "numeric 30 digits", oid: pgtype.NumericOID, text: "123456789012345678901234567890.000000000001",
		want: broadcaster.Numeric("123456789012345678901234567890.000000000001")},
	{name: "numeric negative", oid: pgtype.NumericOID, text: "-0.5", want: broadcaster.Numeric("-0.5")},
	{name: "numeric zero", oid: pgtype.NumericOID, text: "0", want: broadcaster.Numeric("0")},
	{name: "numeric NaN", oid: pgtype.NumericOID, text: "NaN", want: broadcaster.Numeric("NaN")},
	{name: "numeric infinity", oid: pgtype.NumericOID, text: "Infinity", want: broadcaster.Numeric("Infinity")},
	{name: "numeric negative infinity", oid: pgtype.NumericOID, text: "-Infinity", want: broadcaster.Numeric("-Infinity")},
	{name: "numeric malformed", oid: pgtype.NumericOID, text: "12,5", wantErr: `decode numeric value "12,5"`},
	{name: "numeric empty", oid: pgtype.NumericOID, text: "", wantErr: "numeric"},
	{name: "numeric bare point", oid: pgtype.NumericOID, text: "1.", wantErr: "numeric"},
	{name: "numeric lone minus", oid: pgtype.NumericOID, text: "-", wantErr: "numeric"},

	// Booleans.
	{name: "bool true", oid: pgtype.BoolOID, text: "t", want: true},
	{name: "bool false", oid: pgtype.BoolOID, text: "f", want: false},
	{name: "bool long form", oid: pgtype.BoolOID, text: "true", want: true},
	{name: "bool malformed", oid: pgtype.BoolOID, text: "maybe", wantErr: "decode bool value"},
	{name: "bool empty", oid: pgtype.BoolOID, text: "", wantErr: "decode bool value"},
	{name: "bool blank", oid: pgtype.BoolOID, text: " ", wantErr: "decode bool value"},

	// Text-like types are their text.
	{name: "text", oid: pgtype.TextOID, text: "héllo, world", want: "héllo, world"},
	{name: "text empty", oid: pgtype.TextOID, text: "", want: ""},
	{name: "text looking like NULL", oid: pgtype.TextOID, text: "NULL", want: "NULL"},
	{name: "varchar", oid: pgtype.VarcharOID, text: "abc", want: "abc"},
	{name: "bpchar keeps padding", oid: pgtype.BPCharOID, text: "ab  ", want: "ab  "},
	{name: "name", oid: pgtype.NameOID, text: "pg_catalog", want: "pg_catalog"},
	{name: "char", oid: pgtype.QCharOID, text: "r", want: "r"},
	{name: "inet", oid: pgtype.InetOID, text: "192.168.0.1/24", want: "192.168.0.1/24"},
	{name: "cidr", oid: pgtype.CIDROID, text: "10.0.0.0/8", want: "10.0.0.0/8"},
	{name: "macaddr", oid: pgtype.MacaddrOID, text: "08:00:2b:01:02:03", want: "08:00:2b:01:02:03"},
	{name: "time", oid: pgtype.TimeOID, text: "13:45:00.123", want: "13:45:00.123"},
	{name: "timetz", oid: pgtype.TimetzOID, text: "13:45:00+02", want: "13:45:00+02"},
	{name: "interval", oid: pgtype.IntervalOID, text: "1 year 2 mons 3 days 04:05:06", want: "1 year 2 mons 3 days 04:05:06"},
	{name: "money", oid: moneyOID, text: "$1,234.50", want: "$1,234.50"},
	{name: "xml", oid: pgtype.XMLOID, text: "<a>b</a>", want: "<a>b</a>"},
	{name: "bit", oid: pgtype.BitOID, text: "101", want: "101"},
	{name: "varbit", oid: pgtype.VarbitOID, text: "10", want: "10"},
	{name: "tsvector", oid: pgtype.TSVectorOID, text: "'a' 'fat':2", want: "'a' 'fat':2"},
	{name: "point", oid: pgtype.PointOID, text: "(1,2)", want: "(1,2)"},
	{name: "int4range", oid: pgtype.Int4rangeOID, text: "[1,5)", want: "[1,5)"},
	{name: "unknown oid", oid: unknownOID, text: "happy", want: "happy"},
	{name: "unknown oid composite", oid: unknownOID, text: `(1,"a b")`, want: `(1,"a b")`},

	// UUIDs come out canonical.
	{name: "uuid", oid: pgtype.UUIDOID, text: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{name: "uuid upper case", oid: pgtype.UUIDOID, text: "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{name: "uuid without hyphens", oid: pgtype.UUIDOID, text: "a0eebc999c0b4ef8bb6d6bb9bd380a11", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{name: "uuid malformed", oid: pgtype.UUIDOID, text: "not-a-uuid", wantErr: `decode uuid value "not-a-uuid"`},
	{name: "uuid misplaced hyphen", oid: pgtype.UUIDOID, text: "a0eebc99x9c0b-4ef8-bb6d-6bb9bd380a11", wantErr: "uuid"},

	// Timestamps.
	{name: "timestamptz utc", oid: pgtype.TimestamptzOID, text: "2025-11-29 12:34:56+00", want: utc(2025, 11, 29, 12, 34, 56, 0)},
	{name: "timestamptz positive offset", oid: pgtype.TimestamptzOID, text: "2025-11-29 12:34:56.789+01", want: utc(2025, 11, 29, 11, 34, 56, 789000000)},
	{name: "timestamptz half-hour offset", oid: pgtype.TimestamptzOID, text: "2025-11-29 05:00:00+05:30", want: utc(2025, 11, 28, 23, 30, 0, 0)},
	{name: "timestamptz negative offset", oid: pgtype.TimestamptzOID, text: "2025-11-29 22:00:00.000001-03", want: utc(2025, 11, 30, 1, 0, 0, 1000)},
	{name: "timestamptz seconds offset", oid: pgtype.TimestamptzOID, text: "1900-01-01 00:00:00+00:09:21", want: utc(1899, 12, 31, 23, 50, 39, 0)},
	{name: "timestamptz BC", oid: pgtype.TimestamptzOID, text: "0044-03-15 12:00:00+00 BC", want: utc(-43, 3, 15, 12, 0, 0, 0)},
	{name: "timestamptz infinity", oid: pgtype.TimestamptzOID, text: "infinity", want: "infinity"},
	{name: "timestamptz negative infinity", oid: pgtype.TimestamptzOID, text: "-infinity", want: "-infinity"},
	{name: "timestamptz without offset", oid: pgtype.TimestamptzOID, text: "2025-11-29 12:34:56", wantErr: "decode timestamptz value"},
	{name: "timestamptz bad month", oid: pgtype.TimestamptzOID, text: "2025-13-01 00:00:00+00", wantErr: "timestamptz"},
	{name: "timestamp", oid: pgtype.TimestampOID, text: "2025-11-29 12:34:56.123456", want: utc(2025, 11, 29, 12, 34, 56, 123456000)},
	{name: "timestamp infinity", oid: pgtype.TimestampOID, text: "infinity", want: "infinity"},
	{name: "timestamp negative infinity", oid: pgtype.TimestampOID, text: "-infinity", want: "-infinity"},
	{name: "timestamp with offset", oid: pgtype.TimestampOID, text: "2025-11-29 12:34:56+00", wantErr: "decode timestamp value"},

	// Dates.
	{name: "date", oid: pgtype.DateOID, text: "2025-11-29", want: broadcaster.Date("2025-11-29")},
	{name: "date leap day", oid: pgtype.DateOID, text: "2024-02-29", want: broadcaster.Date("2024-02-29")},
	{name: "date infinity", oid: pgtype.DateOID, text: "infinity", want: broadcaster.Date("infinity")},
	{name: "date negative infinity", oid: pgtype.DateOID, text: "-infinity", want: broadcaster.Date("-infinity")},
	{name: "date 1 BC is year 0", oid: pgtype.DateOID, text: "0001-12-31 BC", want: broadcaster.Date("0000-12-31")},
	{name: "date 44 BC", oid: pgtype.DateOID, text: "0044-03-15 BC", want: broadcaster.Date("-000043-03-15")},
	{name: "date after 9999", oid: pgtype.DateOID, text: "10000-01-01", want: broadcaster.Date("+010000-01-01")},
	{name: "date impossible", oid: pgtype.DateOID, text: "2025-02-30", wantErr: `decode date value "2025-02-30"`},
	{name: "date with time", oid: pgtype.DateOID, text: "2025-11-29 00:00:00", wantErr: "date"},

	// JSON is validated and compacted.
	{name: "json", oid: pgtype.JSONOID, text: "{\"a\": 1,\n \"b\": [1, 2]}", want: json.RawMessage(`{"a":1,"b":[1,2]}`)},
	{name: "json keeps duplicate keys", oid: pgtype.JSONOID, text: `{"a": 1, "a": 2}`, want: json.RawMessage(`{"a":1,"a":2}`)},
	{name: "jsonb nested object", oid: pgtype.JSONBOID, text: `{"a": {"b": {"c": [1, "x", null, true]}}, "d": "é \"q\""}`,
		want: json.RawMessage(`{"a":{"b":{"c":[1,"x",null,true]}},"d":"é \"q\""}`)},
	{name: "jsonb big number", oid: pgtype.JSONBOID, text: `123456789012345678901234567890.5`, want: json.RawMessage(`123456789012345678901234567890.5`)},
	{name: "jsonb string", oid: pgtype.JSONBOID, text: `"s p"`, want: json.RawMessage(`"s p"`)},
	{name: "jsonb null", oid: pgtype.JSONBOID, text: `null`, want: json.RawMessage(`null`)},
	{name: "jsonb malformed", oid: pgtype.JSONBOID, text: `{"a":`, wantErr: `decode jsonb value "{\"a\":"`},
	{name: "json empty", oid: pgtype.JSONOID, text: ``, wantErr: "decode json value"},

	// bytea.
	{name: "bytea", oid: pgtype.ByteaOID, text: `\x00ff`, want: []byte{0x00, 0xff}},
	{name: "bytea upper-case hex", oid: pgtype.ByteaOID, text: `\xDEADbeef`, want: []byte{0xde, 0xad, 0xbe, 0xef}},
	{name: "bytea empty", oid: pgtype.ByteaOID, text: `\x`, want: []byte{}},
	{name: "bytea odd length", oid: pgtype.ByteaOID, text: `\x0`, wantErr: "decode bytea value"},
	{name: "bytea escape format", oid: pgtype.ByteaOID, text: `abc`, wantErr: "bytea"},

	// Arrays.
	{name: "int4 array", oid: pgtype.Int4ArrayOID, text: "{1,2,3}", want: []any{int64(1), int64(2), int64(3)}},
	{name: "int4 array empty", oid: pgtype.Int4ArrayOID, text: "{}", want: []any{}},
	{name: "int4 array with NULL", oid: pgtype.Int4ArrayOID, text: "{1,NULL,3}", want: []any{int64(1), nil, int64(3)}},
	{name: "int4 array with bounds", oid: pgtype.Int4ArrayOID, text: "[0:2]={7,8,9}", want: []any{int64(7), int64(8), int64(9)}},
	{name: "int8 array extremes", oid: pgtype.Int8ArrayOID, text: "{9223372036854775807,-9223372036854775808}",
		want: []any{int64(math.MaxInt64), int64(math.MinInt64)}},
	{name: "text array quoted", oid: pgtype.TextArrayOID, text: `{"a,b",NULL,"c\"d"}`, want: []any{"a,b", nil, `c"d`}},
	{name: "text array quoted NULL", oid: pgtype.TextArrayOID, text: `{"NULL",NULL,"",x}`, want: []any{"NULL", nil, "", "x"}},
	{name: "text array backslash", oid: pgtype.TextArrayOID, text: `{"a\\b","{}"}`, want: []any{`a\b`, "{}"}},
	{name: "varchar array", oid: pgtype.VarcharArrayOID, text: `{hello,"wide world"}`, want: []any{"hello", "wide world"}},
	{name: "int4 array 2-D", oid: pgtype.Int4ArrayOID, text: "{{1,2,3},{4,5,6}}",
		want: []any{[]any{int64(1), int64(2), int64(3)}, []any{int64(4), int64(5), int64(6)}}},
	{name: "text array 3-D", oid: pgtype.TextArrayOID, text: "{{{a,b}},{{c,NULL}}}",
		want: []any{[]any{[]any{"a", "b"}}, []any{[]any{"c", nil}}}},
	{name: "uuid array", oid: pgtype.UUIDArrayOID, text: "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,NULL}",
		want: []any{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", nil}},
	{name: "jsonb array", oid: pgtype.JSONBArrayOID, text: `{"{\"a\": 1}","[1, 2]",NULL}`,
		want: []any{json.RawMessage(`{"a":1}`), json.RawMessage(`[1,2]`), nil}},
	{name: "numeric array", oid: pgtype.NumericArrayOID, text: "{1.50,NaN,-3}",
		want: []any{broadcaster.Numeric("1.50"), broadcaster.Numeric("NaN"), broadcaster.Numeric("-3")}},
	{name: "timestamptz array", oid: pgtype.TimestamptzArrayOID, text: `{"2025-11-29 12:00:00+02",infinity}`,
		want: []any{utc(2025, 11, 29, 10, 0, 0, 0), "infinity"}},
	{name: "date array", oid: pgtype.DateArrayOID, text: "{2025-11-29,-infinity}",
		want: []any{broadcaster.Date("2025-11-29"), broadcaster.Date("-infinity")}},
	{name: "bool array", oid: pgtype.BoolArrayOID, text: "{t,f,NULL}", want: []any{true, false, nil}},
	{name: "float8 array", oid: pgtype.Float8ArrayOID, text: "{NaN,-0,1.5}", want: []any{math.NaN(), math.Copysign(0, -1), 1.5}},
	{name: "bytea array", oid: pgtype.ByteaArrayOID, text: `{"\\x00ff"}`, want: []any{[]byte{0, 0xff}}},
	{name: "box array uses semicolons", oid: pgtype.BoxArrayOID, text: "{(1,1),(0,0);(2,2),(1,1)}",
		want: []any{"(1,1),(0,0)", "(2,2),(1,1)"}},
	{name: "int4 array bad element", oid: pgtype.Int4ArrayOID, text: "{1,x}", wantErr: `decode int4[] value "{1,x}": element 2: `},
	{name: "int4 array unterminated", oid: pgtype.Int4ArrayOID, text: "{1,2", wantErr: "decode int4[] value"},
	{name: "int4 array ragged", oid: pgtype.Int4ArrayOID, text: "{{1,2},{3}}", wantErr: "int4[]"},
	{name: "int4 array bounds disagree", oid: pgtype.Int4ArrayOID, text: "[1:2]={1,2,3}", wantErr: "int4[]"},
	{name: "int4 array not an array", oid: pgtype.Int4ArrayOID, text: "1", wantErr: "int4[]"},
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := NewValueDecoder().Decode(tc.oid, []byte(tc.text))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Decode(%d, %q) = %#v, want error containing %q", tc.oid, tc.text, got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode(%d, %q) error %q, want it to contain %q", tc.oid, tc.text, err, tc.wantErr)
				}
				if got != nil {
					t.Fatalf("Decode(%d, %q) = %#v with an error, want nil", tc.oid, tc.text, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%d, %q): %v", tc.oid, tc.text, err)
			}
			if !sameValue(got, tc.want) {
				t.Fatalf("Decode(%d, %q) = %#v, want %#v", tc.oid, tc.text, got, tc.want)
			}
		})
	}
}

// TestDecodeReuse decodes every case with one decoder, to show its reused
// scan targets and cached plans carry nothing from one value to the next,
// and that values do not share the caller's buffer.
func TestDecodeReuse(t *testing.T) {
	t.Parallel()
	d := NewValueDecoder()
	for round := range 2 {
		for _, tc := range decodeCases {
			buf := []byte(tc.text)
			got, err := d.Decode(tc.oid, buf)
			if (err != nil) != (tc.wantErr != "") {
				t.Fatalf("round %d, %s: error %v, want error %v", round, tc.name, err, tc.wantErr != "")
			}
			for i := range buf {
				buf[i] = '#'
			}
			if err == nil && !sameValue(got, tc.want) {
				t.Fatalf("round %d, %s: got %#v after the buffer was overwritten, want %#v", round, tc.name, got, tc.want)
			}
		}
	}
}

func TestDecodeNilText(t *testing.T) {
	t.Parallel()
	d := NewValueDecoder()
	if got, err := d.Decode(pgtype.TextOID, nil); err != nil || got != "" {
		t.Fatalf("Decode(text, nil) = %#v, %v; want \"\", nil", got, err)
	}
	if got, err := d.Decode(pgtype.Int4OID, nil); err == nil {
		t.Fatalf("Decode(int4, nil) = %#v, want an error", got)
	}
}

func TestDecodeErrorClipsLongText(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("x", 1000)
	_, err := NewValueDecoder().Decode(pgtype.Int8OID, []byte(text))
	if err == nil {
		t.Fatal("Decode of a malformed int8 succeeded")
	}
	want := fmt.Sprintf("decode int8 value %q:", strings.Repeat("x", 64)+"...")
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q, want it to start with %q", err, want)
	}
}

// TestDecodeHugeDimensions checks that dimensions whose product overflows
// are refused rather than allocated.
func TestDecodeHugeDimensions(t *testing.T) {
	t.Parallel()
	text := "[1:65536][1:65536][1:65536][1:65536]={}"
	got, err := NewValueDecoder().Decode(pgtype.Int4ArrayOID, []byte(text))
	if err == nil && !sameValue(got, []any{}) {
		t.Fatalf("Decode(%q) = %#v, want an error or an empty array", text, got)
	}
}

func TestTypeName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		oid  uint32
		want string
	}{
		{name: "int4", oid: pgtype.Int4OID, want: "int4"},
		{name: "jsonb", oid: pgtype.JSONBOID, want: "jsonb"},
		{name: "timestamptz", oid: pgtype.TimestamptzOID, want: "timestamptz"},
		{name: "array", oid: pgtype.Int4ArrayOID, want: "int4[]"},
		{name: "text array", oid: pgtype.TextArrayOID, want: "text[]"},
		{name: "unknown", oid: 12345, want: "oid 12345"},
	}
	d := NewValueDecoder()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := d.TypeName(tc.oid); got != tc.want {
				t.Fatalf("TypeName(%d) = %q, want %q", tc.oid, got, tc.want)
			}
		})
	}
}

// TestDecodeToWireJSON checks decoded values against the event encoder that
// consumes them.
func TestDecodeToWireJSON(t *testing.T) {
	t.Parallel()
	cols := []struct {
		name string
		oid  uint32
		text string
	}{
		{"id", pgtype.Int8OID, "9007199254740993"},
		{"n", pgtype.Int4OID, "7"},
		{"price", pgtype.NumericOID, "12.50"},
		{"big", pgtype.NumericOID, "123456789012345678901234567890"},
		{"ratio", pgtype.Float8OID, "NaN"},
		{"ok", pgtype.BoolOID, "t"},
		{"at", pgtype.TimestamptzOID, "2025-11-29 12:34:56.5+01"},
		{"day", pgtype.DateOID, "2025-11-29"},
		{"doc", pgtype.JSONBOID, `{"a": [1, 2]}`},
		{"raw", pgtype.ByteaOID, `\x00ff`},
		{"tags", pgtype.TextArrayOID, `{a,NULL}`},
		{"uid", pgtype.UUIDOID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"},
	}
	d := NewValueDecoder()
	var row broadcaster.Row
	for _, c := range cols {
		v, err := d.Decode(c.oid, []byte(c.text))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		row = append(row, broadcaster.Field{Name: c.name, Value: v})
	}
	got, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"9007199254740993","n":7,"price":12.5,"big":"123456789012345678901234567890",` +
		`"ratio":"NaN","ok":true,"at":"2025-11-29T11:34:56.5Z","day":"2025-11-29","doc":{"a":[1,2]},` +
		`"raw":"AP8=","tags":["a",null],"uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}`
	if string(got) != want {
		t.Fatalf("row JSON\n got %s\nwant %s", got, want)
	}
}

// sameValue reports whether two decoded values are equal and of the same
// type, with NaN equal to NaN, -0 apart from +0, and times equal only as
// the same instant in UTC.
func sameValue(got, want any) bool {
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		return false
	}
	switch w := want.(type) {
	case float64:
		g := got.(float64)
		if math.IsNaN(w) {
			return math.IsNaN(g)
		}
		return g == w && math.Signbit(g) == math.Signbit(w)
	case time.Time:
		g := got.(time.Time)
		return g.Equal(w) && g.Location() == time.UTC
	case []byte:
		g := got.([]byte)
		return g != nil && bytes.Equal(g, w)
	case json.RawMessage:
		return bytes.Equal(got.(json.RawMessage), w)
	case []any:
		g := got.([]any)
		if g == nil || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return got == want
}

func BenchmarkDecode(b *testing.B) {
	benches := []struct {
		name string
		oid  uint32
		text string
	}{
		{"int4", pgtype.Int4OID, "123456"},
		{"text", pgtype.TextOID, "a short line of text"},
		{"timestamptz", pgtype.TimestamptzOID, "2025-11-29 12:34:56.789012+01"},
		{"jsonb", pgtype.JSONBOID, `{"id": 42, "tags": ["a", "b"], "owner": {"name": "x"}}`},
		{"numeric", pgtype.NumericOID, "1234567.89"},
		{"uuid", pgtype.UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"int4 array", pgtype.Int4ArrayOID, "{1,2,3,4,5}"},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			d := NewValueDecoder()
			text := []byte(bc.text)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Decode(bc.oid, text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
