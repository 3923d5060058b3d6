package cdc

import (
	"sync"

	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// ShapeOf returns the JSON shape of the values of type oid in events: what
// a ValueDecoder makes of them, encoded by broadcaster.JSONValue. It follows
// ValueDecoder.Decode case by case, so the two change together (the tests
// hold every decoded sample to its shape). oid is the column's type as the
// catalog and the stream name it: a domain or an enum is its own type,
// decoded as text.
func ShapeOf(oid uint32) broadcaster.JSONShape {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		return broadcaster.JSONShape{Number: true}
	case pgtype.Int8OID:
		return broadcaster.JSONShape{Number: true, String: true,
			Note: "a number, or its decimal string beyond ±2^53 (9007199254740992)"}
	case pgtype.Float4OID, pgtype.Float8OID:
		return broadcaster.JSONShape{Number: true, Strings: []string{"NaN", "+Inf", "-Inf"},
			Note: "a number; NaN and infinities as the strings NaN, +Inf, -Inf"}
	case pgtype.NumericOID:
		return broadcaster.JSONShape{Number: true, String: true,
			Note: "a number when a double holds it exactly (12.5), else its exact text (\"12.10\", \"NaN\", \"Infinity\")"}
	case pgtype.BoolOID:
		return broadcaster.JSONShape{Boolean: true}
	case pgtype.UUIDOID:
		return broadcaster.JSONShape{String: true, Note: "canonical lower-case form"}
	case pgtype.TimestamptzOID, pgtype.TimestampOID:
		return broadcaster.JSONShape{String: true,
			Note: "RFC 3339 in UTC (2025-11-29T12:34:56.789Z), or infinity / -infinity"}
	case pgtype.DateOID:
		return broadcaster.JSONShape{String: true, Note: "YYYY-MM-DD, or infinity / -infinity"}
	case pgtype.JSONOID, pgtype.JSONBOID:
		return broadcaster.JSONShape{Any: true, Note: "any JSON value"}
	case pgtype.ByteaOID:
		return broadcaster.JSONShape{String: true, Note: "base64"}
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		return broadcaster.JSONShape{String: true}
	}
	if elem, ok := arrayElem(oid); ok {
		e := ShapeOf(elem)
		return broadcaster.JSONShape{Elem: &e}
	}
	return broadcaster.JSONShape{String: true, Note: "PostgreSQL's text form"}
}

// shapeTypes is the type map ShapeOf reads arrays from: the types a
// ValueDecoder knows.
var shapeTypes = sync.OnceValue(func() *lockedMap { return &lockedMap{m: pgtype.NewMap()} })

// lockedMap guards a pgtype.Map, which is not documented as safe for
// concurrent reads.
type lockedMap struct {
	mu sync.Mutex // protects m
	m  *pgtype.Map
}

// arrayElem returns the element type of oid when it is an array type that
// pgx knows (a ValueDecoder decodes those as arrays, others as text).
func arrayElem(oid uint32) (uint32, bool) {
	tm := shapeTypes()
	tm.mu.Lock()
	defer tm.mu.Unlock()
	t, ok := tm.m.TypeForOID(oid)
	if !ok {
		return 0, false
	}
	ac, ok := t.Codec.(*pgtype.ArrayCodec)
	if !ok || ac.ElementType == nil {
		return 0, false
	}
	return ac.ElementType.OID, true
}
