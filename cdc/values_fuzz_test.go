package cdc

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// fuzzOIDs are the types every fuzz input is also decoded as, so that
// mutated OIDs, which are almost never known types, still exercise a codec.
var fuzzOIDs = []uint32{
	pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
	pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID, pgtype.BoolOID,
	pgtype.TextOID, pgtype.UUIDOID, pgtype.TimestamptzOID, pgtype.TimestampOID,
	pgtype.DateOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.ByteaOID,
	pgtype.Int4ArrayOID, pgtype.TextArrayOID, pgtype.UUIDArrayOID,
	pgtype.JSONBArrayOID, pgtype.NumericArrayOID, pgtype.TimestamptzArrayOID,
	pgtype.DateArrayOID, pgtype.ByteaArrayOID, pgtype.BoxArrayOID,
	pgtype.Float8ArrayOID, pgtype.BoolArrayOID,
}

func FuzzDecodeValue(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add(tc.oid, []byte(tc.text))
	}
	d := NewValueDecoder()
	f.Fuzz(func(t *testing.T, oid uint32, text []byte) {
		for _, o := range []uint32{oid, fuzzOIDs[oid%uint32(len(fuzzOIDs))]} {
			v, err := d.Decode(o, text)
			if err != nil {
				if v != nil {
					t.Fatalf("Decode(%d, %q) = %#v with error %v", o, text, v, err)
				}
				if !strings.HasPrefix(err.Error(), "decode "+d.TypeName(o)+" value ") {
					t.Fatalf("Decode(%d, %q) error %q does not name the type", o, text, err)
				}
				continue
			}
			if err := checkContract(v); err != nil {
				t.Fatalf("Decode(%d, %q) = %#v: %v", o, text, v, err)
			}
			if j := wireJSON(t, v); !ShapeOf(o).Fits(j) {
				t.Fatalf("Decode(%d, %q) encodes as %#v, outside the shape ShapeOf declares: %+v", o, text, j, ShapeOf(o))
			}
		}
	})
}

// checkContract returns an error when v is not one of the types of the
// broadcaster.Change contract.
func checkContract(v any) error {
	switch x := v.(type) {
	case nil, int64, float64, bool, string, []byte:
	case broadcaster.Numeric:
		if x == "" {
			return fmt.Errorf("empty numeric")
		}
	case broadcaster.Date:
		if x == "" {
			return fmt.Errorf("empty date")
		}
	case time.Time:
		if x.Location() != time.UTC {
			return fmt.Errorf("time in %v, want UTC", x.Location())
		}
	case json.RawMessage:
		if !json.Valid(x) {
			return fmt.Errorf("invalid json %q", x)
		}
	case []any:
		if x == nil {
			return fmt.Errorf("nil array")
		}
		for _, e := range x {
			if err := checkContract(e); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("type %T outside the contract", v)
	}
	return nil
}
