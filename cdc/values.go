package cdc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// ValueDecoder turns pgoutput text-format column values into the Go values
// of the broadcaster.Change contract:
//
//   - int2, int4, int8, oid, xid, cid: int64
//   - float4, float8: float64 (NaN and ±Inf included)
//   - numeric: broadcaster.Numeric, the exact text ("12.50", "NaN", "Infinity")
//   - bool: bool
//   - timestamptz: time.Time in UTC; timestamp: time.Time read as UTC;
//     "infinity" and "-infinity" as those strings
//   - date: broadcaster.Date ("2025-11-29", "infinity", "-infinity"; years
//     outside 0000-9999, BC included, in ISO 8601 expanded form with
//     astronomical numbering: 44 BC is "-000043-03-15")
//   - json, jsonb: json.RawMessage, validated and compacted
//   - bytea: []byte
//   - uuid: string, canonical lower-case hyphenated form
//   - arrays of any type pgx knows: []any, elements decoded by these rules,
//     NULL elements nil, one nested []any per extra dimension
//   - everything else (text, varchar, inet, interval, money, enums, domains,
//     composites, extension types...): string, the text as sent
//
// Values never share memory with the text they were decoded from, so the
// caller may reuse its buffer. The text forms are those of PostgreSQL's
// default settings: DateStyle ISO and bytea_output hex.
//
// A ValueDecoder reuses its scan targets and caches scan plans, so it is not
// safe for concurrent use: give each stream its own.
type ValueDecoder struct {
	m *pgtype.Map
	// plans caches the scan plan of each OID; each OID always scans into
	// the same target below.
	plans map[uint32]pgtype.ScanPlan

	// Scan targets, reused between calls.
	i16   int16
	i32   int32
	i64   int64
	u32   uint32
	f8    pgtype.Float8
	uuid  pgtype.UUID
	tstz  pgtype.Timestamptz
	ts    pgtype.Timestamp
	date  pgtype.Date
	bytea []byte
	// json holds compacted JSON before it is copied out.
	json bytes.Buffer
	// names holds the names of types pgx does not know, from the stream's
	// Type messages (enums, domains, extension types), for messages.
	names map[uint32]string
}

// NewValueDecoder returns a decoder for the types pgx knows by default.
func NewValueDecoder() *ValueDecoder {
	return &ValueDecoder{
		m:     pgtype.NewMap(),
		plans: make(map[uint32]pgtype.ScanPlan),
	}
}

// Decode decodes one text-format value of the type oid. text is the value
// of a non-NULL column; NULL and unchanged TOAST columns are the caller's.
// Malformed text for a known type gives an error naming the type; the value
// is then nil.
func (d *ValueDecoder) Decode(oid uint32, text []byte) (any, error) {
	if text == nil {
		text = []byte{}
	}
	v, err := d.decode(oid, text)
	if err != nil {
		return nil, fmt.Errorf("decode %s value %q: %w", d.TypeName(oid), clip(text), err)
	}
	return v, nil
}

// TypeName names the type oid for messages: "int4", "int4[]", or
// "oid 12345" when pgx does not know it.
func (d *ValueDecoder) TypeName(oid uint32) string {
	t, ok := d.m.TypeForOID(oid)
	if !ok {
		if n, ok := d.names[oid]; ok {
			return n
		}
		return "oid " + strconv.FormatUint(uint64(oid), 10)
	}
	if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok && ac.ElementType != nil {
		return ac.ElementType.Name + "[]"
	}
	return t.Name
}

// RegisterType records the name of a type pgx does not know, as a pgoutput
// Type message announces it. Its values still decode as their text.
func (d *ValueDecoder) RegisterType(oid uint32, schema, name string) {
	if d.names == nil {
		d.names = make(map[uint32]string)
	}
	if schema != "" && schema != "public" && schema != "pg_catalog" {
		name = schema + "." + name
	}
	d.names[oid] = name
}

// decode is Decode without the error context.
func (d *ValueDecoder) decode(oid uint32, text []byte) (any, error) {
	switch oid {
	case pgtype.Int2OID:
		err := d.scan(oid, text, &d.i16)
		return int64(d.i16), err
	case pgtype.Int4OID:
		err := d.scan(oid, text, &d.i32)
		return int64(d.i32), err
	case pgtype.Int8OID:
		err := d.scan(oid, text, &d.i64)
		return d.i64, err
	case pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		err := d.scan(oid, text, &d.u32)
		return int64(d.u32), err
	case pgtype.Float4OID, pgtype.Float8OID:
		// float4 is read as a float64 too, so that "1.1" stays 1.1 rather
		// than becoming 1.100000023841858.
		err := d.scan(oid, text, &d.f8)
		return d.f8.Float64, err
	case pgtype.NumericOID:
		if !isNumeric(text) {
			return nil, errNotNumeric
		}
		return broadcaster.Numeric(text), nil
	case pgtype.BoolOID:
		return d.decodeBool(text)
	case pgtype.UUIDOID:
		return d.decodeUUID(text)
	case pgtype.TimestamptzOID:
		if err := d.scan(oid, text, &d.tstz); err != nil {
			return nil, err
		}
		return timeValue(d.tstz.Time, d.tstz.InfinityModifier), nil
	case pgtype.TimestampOID:
		if err := d.scan(oid, text, &d.ts); err != nil {
			return nil, err
		}
		return timeValue(d.ts.Time, d.ts.InfinityModifier), nil
	case pgtype.DateOID:
		if err := d.scan(oid, text, &d.date); err != nil {
			return nil, err
		}
		return dateValue(d.date), nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		return d.decodeJSON(text)
	case pgtype.ByteaOID:
		err := d.scan(oid, text, &d.bytea)
		b := d.bytea
		d.bytea = nil
		if err != nil {
			return nil, err
		}
		if b == nil {
			b = []byte{}
		}
		return b, nil
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		return string(text), nil
	}
	if t, ok := d.m.TypeForOID(oid); ok {
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok && ac.ElementType != nil {
			return d.decodeArray(oid, ac.ElementType.OID, text)
		}
	}
	return string(text), nil
}

// scan scans text into target with the cached plan of oid.
func (d *ValueDecoder) scan(oid uint32, text []byte, target any) error {
	plan, ok := d.plans[oid]
	if !ok {
		plan = d.m.PlanScan(oid, pgtype.TextFormatCode, target)
		d.plans[oid] = plan
	}
	return plan.Scan(text, target)
}

// decodeBool reads PostgreSQL's "t" and "f" directly and leaves any other
// spelling to pgx.
func (d *ValueDecoder) decodeBool(text []byte) (any, error) {
	if len(text) == 1 {
		switch text[0] {
		case 't':
			return true, nil
		case 'f':
			return false, nil
		}
	}
	if len(bytes.TrimSpace(text)) == 0 {
		// pgx reads blank text as true.
		return nil, errors.New("empty boolean")
	}
	var b bool
	if err := d.scan(pgtype.BoolOID, text, &b); err != nil {
		return nil, err
	}
	return b, nil
}

// decodeUUID returns the uuid in canonical form.
func (d *ValueDecoder) decodeUUID(text []byte) (any, error) {
	// pgx takes the hyphens' places on trust.
	if len(text) == 36 && (text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-') {
		return nil, errors.New("misplaced hyphen")
	}
	if err := d.scan(pgtype.UUIDOID, text, &d.uuid); err != nil {
		return nil, err
	}
	return d.uuid.String(), nil
}

// decodeJSON validates and compacts json or jsonb text.
func (d *ValueDecoder) decodeJSON(text []byte) (any, error) {
	d.json.Reset()
	if err := json.Compact(&d.json, text); err != nil {
		return nil, err
	}
	return json.RawMessage(bytes.Clone(d.json.Bytes())), nil
}

// maxArrayElements bounds the cardinality the dimensions of an array may
// claim, well above PostgreSQL's own limit of 2^27 elements.
const maxArrayElements = 1 << 30

// decodeArray decodes an array of elem values into []any, one level of
// nesting per dimension.
func (d *ValueDecoder) decodeArray(oid, elem uint32, text []byte) (any, error) {
	var arr pgtype.Array[pgtype.Text]
	if err := d.scan(oid, text, &arr); err != nil {
		return nil, err
	}
	vals := make([]any, len(arr.Elements))
	for i, e := range arr.Elements {
		if !e.Valid {
			continue
		}
		v, err := d.decode(elem, []byte(e.String))
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i+1, err)
		}
		vals[i] = v
	}
	if len(vals) == 0 || len(arr.Dims) <= 1 {
		return vals, nil
	}
	n := 1
	for _, dim := range arr.Dims {
		if dim.Length < 0 || int(dim.Length) > maxArrayElements/n {
			return nil, errors.New("array dimensions out of range")
		}
		n *= int(dim.Length)
	}
	if n != len(vals) {
		return nil, fmt.Errorf("array dimensions describe %d elements but %d were parsed", n, len(vals))
	}
	return nest(vals, arr.Dims), nil
}

// nest splits the flat elements of an array into one []any per element of
// its first dimension, recursively. len(vals) must be the product of the
// dimensions' lengths.
func nest(vals []any, dims []pgtype.ArrayDimension) []any {
	if len(dims) <= 1 {
		return vals
	}
	out := make([]any, dims[0].Length)
	size := len(vals) / len(out)
	for i := range out {
		out[i] = nest(vals[i*size:(i+1)*size:(i+1)*size], dims[1:])
	}
	return out
}

// timeValue returns t in UTC, or "infinity" / "-infinity".
func timeValue(t time.Time, inf pgtype.InfinityModifier) any {
	switch inf {
	case pgtype.Infinity:
		return "infinity"
	case pgtype.NegativeInfinity:
		return "-infinity"
	}
	return t.UTC()
}

// dateValue returns the date as a broadcaster.Date.
func dateValue(d pgtype.Date) broadcaster.Date {
	switch d.InfinityModifier {
	case pgtype.Infinity:
		return "infinity"
	case pgtype.NegativeInfinity:
		return "-infinity"
	}
	y, m, day := d.Time.Date()
	var buf [20]byte
	b := buf[:0]
	switch {
	case y < 0:
		b = append(b, '-')
		b = appendPadded(b, -y, 6)
	case y > 9999:
		b = append(b, '+')
		b = appendPadded(b, y, 6)
	default:
		b = appendPadded(b, y, 4)
	}
	b = append(b, '-')
	b = appendPadded(b, int(m), 2)
	b = append(b, '-')
	b = appendPadded(b, day, 2)
	return broadcaster.Date(b)
}

// appendPadded appends the non-negative n in at least width digits.
func appendPadded(b []byte, n, width int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], int64(n), 10)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

var errNotNumeric = errors.New("not a numeric")

// isNumeric reports whether text has the form PostgreSQL writes numerics
// in: NaN, ±Infinity, or an optional minus, digits and optional fraction.
// The value is kept as text, so checking its form is all there is to do.
func isNumeric(text []byte) bool {
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	i := 0
	if i < len(text) && text[i] == '-' {
		i++
	}
	n := digits(text[i:])
	if n == 0 {
		return false
	}
	i += n
	if i < len(text) && text[i] == '.' {
		i++
		n = digits(text[i:])
		if n == 0 {
			return false
		}
		i += n
	}
	return i == len(text)
}

// digits returns the number of leading ASCII digits of b.
func digits(b []byte) int {
	for i, c := range b {
		if c < '0' || c > '9' {
			return i
		}
	}
	return len(b)
}

// clip shortens text for error messages.
func clip(text []byte) []byte {
	const limit = 64
	if len(text) <= limit {
		return text
	}
	return append(text[:limit:limit], "..."...)
}
