package config

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// Emitted events (Emit): their defaults, limits and the small language of
// their declared data fields.

// DefaultEmitPrefix is emit.prefix's default, the prefix the cdc_emit
// function of migrations/ writes.
const DefaultEmitPrefix = "cdc.emit"

// MaxEmitBytes is the largest emit.max_bytes: an emitted event is a notice,
// not a document, and it travels to every subscriber of its channels.
const MaxEmitBytes = 256 << 10

// reservedPrefixes are the message prefixes the replication stream reads
// itself (cdc.ActorPrefix, cdc.HeartbeatPrefix).
var reservedPrefixes = []string{"cdc.actor", "cdc.heartbeat"}

// ValidEventType reports whether s is an event type: <domain>.<action>,
// each a letter then letters, digits or _.
func ValidEventType(s string) bool { return eventType.MatchString(s) }

// DataKind is the JSON kind of a declared data field.
type DataKind string

// The kinds a data field may be declared with.
const (
	KindString  DataKind = "string"  // a JSON string
	KindInteger DataKind = "integer" // a JSON number without fraction or exponent
	KindNumber  DataKind = "number"  // any JSON number
	KindBoolean DataKind = "boolean" // true or false
	KindObject  DataKind = "object"  // a JSON object, whatever it holds
	KindAny     DataKind = "any"     // any JSON value, null included
)

var dataKinds = []DataKind{KindString, KindInteger, KindNumber, KindBoolean, KindObject, KindAny}

// DataType is the declared type of one field of an emitted event's data
// (EmitEvent.Data). It is spelled as its kind, then "[]" for a list of
// that kind, then "?" when the field may be absent or null: "integer",
// "string?", "integer[]", "string[]?".
type DataType struct {
	Kind DataKind
	// List: the value is a JSON array whose elements are each of Kind.
	List bool
	// Optional: the field may be left out, or be null.
	Optional bool
}

// String spells t as the config does.
func (t DataType) String() string {
	s := string(t.Kind)
	if t.List {
		s += "[]"
	}
	if t.Optional {
		s += "?"
	}
	return s
}

// ParseDataType reads a declared field type ("integer", "string[]?").
func ParseDataType(s string) (DataType, error) {
	var t DataType
	rest := strings.TrimSpace(s)
	rest, t.Optional = strings.CutSuffix(rest, "?")
	rest, t.List = strings.CutSuffix(rest, "[]")
	t.Kind = DataKind(rest)
	if !slices.Contains(dataKinds, t.Kind) {
		return DataType{}, fmt.Errorf("invalid type %q: want %s, optionally followed by [] (a list) and ? (may be absent or null)", clip(s), kindList())
	}
	return t, nil
}

func kindList() string {
	names := make([]string, len(dataKinds))
	for i, k := range dataKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// emit checks the emit section. The channel patterns are checked here for
// their syntax; whether they fit a channel pattern of the access rules,
// and whether a declared type is also a mapped one, needs the compiled
// rules and mapping (`check`, `serve`).
func (v *validator) emit() {
	e := v.c.Emit
	switch {
	case !e.Enabled:
		// Prefix and size matter only to a running emit; a Config built
		// in code has them zero.
	case e.Prefix == "":
		v.fail("emit.prefix", "must not be empty (default %q)", DefaultEmitPrefix)
	case slices.Contains(reservedPrefixes, e.Prefix):
		v.fail("emit.prefix", "%q is the replication stream's own: choose another (default %q)", e.Prefix, DefaultEmitPrefix)
	case len(e.Prefix) > 128:
		v.fail("emit.prefix", "too long: at most 128 bytes")
	}
	if e.Enabled && (e.MaxBytes < 1 || e.MaxBytes > MaxEmitBytes) {
		v.fail("emit.max_bytes", "must be 1 to %d, found %d", MaxEmitBytes, e.MaxBytes)
	}
	for i, g := range e.Types {
		key := fmt.Sprintf("emit.types[%d]", i)
		if strings.TrimSpace(g) == "" {
			v.fail(key, "must not be empty")
		} else if _, err := path.Match(g, ""); err != nil {
			v.fail(key, "invalid glob %q: %v", clip(g), err)
		}
	}
	for i, p := range e.Channels {
		v.pattern(fmt.Sprintf("emit.channels[%d]", i), p)
	}
	declared := map[string]int{}
	ownChannels := true
	for i, ev := range e.Events {
		key := fmt.Sprintf("emit.events[%d]", i)
		switch first, dup := declared[ev.Type]; {
		case !ValidEventType(ev.Type):
			v.fail(key+".type", "invalid event type %q: want <domain>.<action>, e.g. exam.closing_soon", clip(ev.Type))
		case dup:
			v.fail(key+".type", "event type %q is already declared by emit.events[%d]", ev.Type, first)
		default:
			declared[ev.Type] = i
		}
		for j, p := range ev.Channels {
			v.pattern(fmt.Sprintf("%s.channels[%d]", key, j), p)
		}
		ownChannels = ownChannels && len(ev.Channels) > 0
		for _, name := range slices.Sorted(maps.Keys(ev.Data)) {
			fk := key + ".data." + name
			if !templateName.MatchString(name) {
				v.fail(fk, "invalid field name %q: want a letter or _ then letters, digits or _", clip(name))
			}
			if _, err := ParseDataType(ev.Data[name]); err != nil {
				v.fail(fk, "%v", err)
			}
		}
	}
	if !e.Enabled {
		return
	}
	switch {
	case len(e.Types) == 0 && len(e.Events) == 0:
		v.fail("emit", "enabled, but no event type may be emitted: declare emit.events or allow emit.types")
	case len(e.Channels) == 0 && (len(e.Types) > 0 || !ownChannels):
		v.fail("emit.channels", "no channel pattern: every emitted event of a type without channels of its own (in emit.events) would be dropped")
	}
}
