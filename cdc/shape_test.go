package cdc

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// wireJSON is v as an event encodes it, decoded back the way a client
// reads it (numbers as json.Number).
func wireJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(broadcaster.JSONValue(v))
	if err != nil {
		t.Fatalf("encode %#v: %v", v, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

// shapeCases are values at the edges of each shape, beyond decodeCases:
// where an int8 or a numeric turns into a string.
var shapeCases = []struct {
	name string
	oid  uint32
	text string
	kind string // "number", "string", "bool", "array", "object", "null"
}{
	{"int8 at 2^53", pgtype.Int8OID, "9007199254740992", "number"},
	{"int8 past 2^53", pgtype.Int8OID, "9007199254740993", "string"},
	{"int8 below -2^53", pgtype.Int8OID, "-9007199254740993", "string"},
	{"int4", pgtype.Int4OID, "2147483647", "number"},
	{"numeric a double holds", pgtype.NumericOID, "12.50", "number"},
	{"numeric a double does not hold", pgtype.NumericOID, "12.10", "string"},
	{"numeric NaN", pgtype.NumericOID, "NaN", "string"},
	{"float8 infinity", pgtype.Float8OID, "Infinity", "string"},
	{"float4", pgtype.Float4OID, "1.1", "number"},
	{"timestamptz", pgtype.TimestamptzOID, "2025-11-29 12:34:56+00", "string"},
	{"date", pgtype.DateOID, "2025-11-29", "string"},
	{"bytea", pgtype.ByteaOID, `\x00ff`, "string"},
	{"jsonb object", pgtype.JSONBOID, `{"a": 1}`, "object"},
	{"jsonb null", pgtype.JSONBOID, `null`, "null"},
	{"int8 array", pgtype.Int8ArrayOID, "{1,9007199254740993,NULL}", "array"},
	{"text array 2-D", pgtype.TextArrayOID, "{{a,b},{c,NULL}}", "array"},
	{"enum or domain", unknownOID, "published", "string"},
	{"array of an unknown type", 99998, "{a,b}", "string"},
}

// TestShapeOfFitsDecodedValues: every value the decoder makes, encoded as
// events encode it, fits the shape ShapeOf declares for its type; and the
// edge cases are of the kind the shape's note says.
func TestShapeOfFitsDecodedValues(t *testing.T) {
	t.Parallel()
	d := NewValueDecoder()
	for _, tc := range decodeCases {
		if tc.wantErr != "" {
			continue
		}
		v, err := d.Decode(tc.oid, []byte(tc.text))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if j := wireJSON(t, v); !ShapeOf(tc.oid).Fits(j) {
			t.Errorf("%s: %s encodes as %#v, outside its shape %+v", tc.name, d.TypeName(tc.oid), j, ShapeOf(tc.oid))
		}
	}
	for _, tc := range shapeCases {
		v, err := d.Decode(tc.oid, []byte(tc.text))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		j := wireJSON(t, v)
		if !ShapeOf(tc.oid).Fits(j) {
			t.Errorf("%s: %#v is outside the shape %+v", tc.name, j, ShapeOf(tc.oid))
		}
		if got := jsonKind(j); got != tc.kind {
			t.Errorf("%s: %q encodes as a JSON %s (%#v), want %s", tc.name, tc.text, got, j, tc.kind)
		}
	}
}

// TestShapeOf pins the shape of each kind of type.
func TestShapeOf(t *testing.T) {
	t.Parallel()
	str := broadcaster.JSONShape{String: true}
	tests := []struct {
		name string
		oid  uint32
		fits []any
		not  []any
	}{
		{"int4", pgtype.Int4OID, []any{json.Number("7")}, []any{"7", true, nil}},
		{"int8", pgtype.Int8OID, []any{json.Number("7"), "9007199254740993"}, []any{true, nil}},
		{"float8", pgtype.Float8OID, []any{json.Number("1.5"), "NaN", "+Inf", "-Inf"}, []any{"1.5", "Infinity"}},
		{"numeric", pgtype.NumericOID, []any{json.Number("1.5"), "0.10"}, []any{false}},
		{"bool", pgtype.BoolOID, []any{true}, []any{"t", json.Number("1")}},
		{"text", pgtype.TextOID, []any{"x"}, []any{json.Number("1")}},
		{"jsonb", pgtype.JSONBOID, []any{nil, map[string]any{}, []any{json.Number("1")}}, nil},
		{"int4[]", pgtype.Int4ArrayOID, []any{[]any{}, []any{json.Number("1"), nil}, []any{[]any{json.Number("1")}}}, []any{[]any{"1"}, json.Number("1")}},
		{"unknown", unknownOID, []any{"x"}, []any{json.Number("1")}},
	}
	for _, tt := range tests {
		s := ShapeOf(tt.oid)
		for _, v := range tt.fits {
			if !s.Fits(v) {
				t.Errorf("%s: %#v does not fit %+v", tt.name, v, s)
			}
		}
		for _, v := range tt.not {
			if s.Fits(v) {
				t.Errorf("%s: %#v fits %+v", tt.name, v, s)
			}
		}
	}
	if s := ShapeOf(pgtype.VarcharOID); s.Number || !s.String || s.Elem != nil {
		t.Errorf("varchar: %+v, want %+v", s, str)
	}
}

// jsonKind names the JSON kind of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return "?"
}
