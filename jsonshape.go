package broadcaster

import (
	"encoding/json"
	"slices"
)

// JSONShape describes the JSON values that the values of one column type
// take in an event's data and oldData, as JSONValue encodes them. Package
// cdc says which shape each PostgreSQL type has (cdc.ShapeOf); tools that
// describe events to clients (`cdc-broadcaster types`) read it. SQL NULL
// (JSON null) is the column's business, not the type's: it is never part
// of a shape, except as an array element.
type JSONShape struct {
	// Number: a JSON number.
	Number bool
	// String: any JSON string.
	String bool
	// Strings lists the only strings the value may be, when String is
	// false: "NaN", "+Inf" and "-Inf" for a float.
	Strings []string
	// Boolean: true or false.
	Boolean bool
	// Any: any JSON value at all (json and jsonb columns), null included.
	Any bool
	// Elem, when set, makes the value a JSON array whose elements have
	// Elem's shape or are null; an array of several dimensions nests one
	// array per extra dimension. The other fields are then unset.
	Elem *JSONShape
	// Note says, for a client author, what the strings are and when a
	// value is a string rather than a number: "RFC 3339 in UTC", "a
	// string beyond ±2^53".
	Note string
}

// Fits reports whether v, a value as encoding/json decodes it into an any
// (float64 or json.Number, string, bool, nil, []any, map[string]any), has
// the shape s. Nested arrays of any depth fit an array shape. null fits
// only Any shapes.
func (s JSONShape) Fits(v any) bool {
	if s.Any {
		return true
	}
	if s.Elem != nil {
		return s.Elem.fitsElems(v)
	}
	switch x := v.(type) {
	case float64, json.Number:
		return s.Number
	case string:
		return s.String || slices.Contains(s.Strings, x)
	case bool:
		return s.Boolean
	}
	return false
}

// fitsElems reports whether v is an array whose elements, at any depth of
// nesting, are null or have the shape s.
func (s JSONShape) fitsElems(v any) bool {
	arr, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range arr {
		if e == nil {
			continue
		}
		if _, nested := e.([]any); nested && !s.Any && s.Elem == nil {
			if !s.fitsElems(e) {
				return false
			}
			continue
		}
		if !s.Fits(e) {
			return false
		}
	}
	return true
}
