package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// Emitted events: the application's logical decoding messages with the
// emit prefix (config.Emit) become events, when they pass the operator's
// rules; one that does not is dropped whole, logged and counted, and the
// stream goes on.

// Why an emitted message was dropped: the reason label of the counter.
const (
	DropDisabled  = "disabled"  // emit.enabled is false
	DropTooLarge  = "too_large" // over emit.max_bytes
	DropMalformed = "malformed" // not {"type": ..., "channels": [...], "data": {...}}
	DropType      = "type"      // a type neither declared nor allowed, or one the mappings produce
	DropChannel   = "channel"   // a channel outside the type's channel patterns
	DropData      = "data"      // data that does not fit its type's declared fields
)

// DropReasons lists every reason, in a fixed order.
var DropReasons = [...]string{DropDisabled, DropTooLarge, DropMalformed, DropType, DropChannel, DropData}

// emitRules are the checked emit section.
type emitRules struct {
	enabled  bool
	prefix   string
	maxBytes int
	globs    []string
	channels []*regexp.Regexp // emit.channels
	declared map[string]*declaredEvent
	// mapped are the event types the mappings produce: never emitted, so
	// that a type always means one shape.
	mapped map[string]bool
	// dropped counts the messages dropped, by reason (DropReasons' order).
	dropped [len(DropReasons)]atomic.Uint64
}

// declaredEvent is one checked config.EmitEvent.
type declaredEvent struct {
	channels []*regexp.Regexp // nil: emit.channels
	fields   map[string]config.DataType
}

// paramValue is what a {param} of an emit channel pattern stands for: a
// value the access rules' default param regexp takes.
const paramValue = `[0-9A-Za-z_.-]{1,128}`

// compilePattern turns a channel pattern ("exam:{examId}") into an anchored
// regexp, each {param} standing for paramValue.
func compilePattern(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, errors.New("empty pattern")
	}
	var b strings.Builder
	b.WriteString("^")
	for rest := p; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		if rest[open] == '}' {
			return nil, errors.New("unmatched '}'")
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' || end == 0 {
			return nil, errors.New("unclosed or empty '{'")
		}
		b.WriteString(regexp.QuoteMeta(rest[:open]))
		b.WriteString(paramValue)
		rest = rest[open+1+end+1:]
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// loadEmit checks the emit section against the mapped types; problems go
// to l.
func (l *loader) loadEmit(e config.Emit, mapped map[string]bool) *emitRules {
	l.table = ""
	r := &emitRules{
		enabled: e.Enabled, prefix: e.Prefix, maxBytes: e.MaxBytes,
		globs: e.Types, declared: map[string]*declaredEvent{}, mapped: mapped,
	}
	if r.prefix == "" {
		r.prefix = config.DefaultEmitPrefix
	}
	r.channels = l.patterns("emit.channels", e.Channels)
	for i, ev := range e.Events {
		key := "emit.events[" + strconv.Itoa(i) + "]"
		if mapped[ev.Type] {
			l.fail(key+".type", "%q: the mappings produce this event type already; an emitted event needs a type of its own", clip(ev.Type))
		}
		d := &declaredEvent{fields: map[string]config.DataType{}}
		if len(ev.Channels) > 0 {
			d.channels = l.patterns(key+".channels", ev.Channels)
		}
		for _, name := range slices.Sorted(maps.Keys(ev.Data)) {
			t, err := config.ParseDataType(ev.Data[name])
			if err != nil {
				l.fail(key+".data."+name, "%v", err)
				continue
			}
			d.fields[name] = t
		}
		r.declared[ev.Type] = d
	}
	return r
}

// patterns compiles a list of channel patterns.
func (l *loader) patterns(key string, list []string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, 0, len(list))
	for i, p := range list {
		re, err := compilePattern(p)
		if err != nil {
			l.fail(key+"["+strconv.Itoa(i)+"]", "%q: %v", clip(p), err)
			continue
		}
		out = append(out, re)
	}
	return out
}

// mappedTypes returns every event type the loaded mappings can produce.
func mappedTypes(loaded []*tableMapping) map[string]bool {
	out := map[string]bool{}
	for _, tm := range loaded {
		for _, t := range tm.defaults {
			if t != "" {
				out[t] = true
			}
		}
		for _, r := range tm.rules {
			out[r.typ] = true
		}
	}
	return out
}

// emitted is the content of an emit message, parsed.
type emitted struct {
	typ      string
	channels []string
	data     broadcaster.Row
}

// parseEmitted reads a message's content: one JSON object with "type" (a
// string), "channels" (a non-empty list of non-empty strings) and
// optionally "data" (an object, or null), and nothing else. The data's
// fields keep their order, and each its JSON. It never panics.
func parseEmitted(content []byte) (emitted, error) {
	var out emitted
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return out, err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out, err
		}
		key, _ := tok.(string)
		if seen[key] {
			return out, fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		switch key {
		case "type":
			err = dec.Decode(&out.typ)
		case "channels":
			err = dec.Decode(&out.channels)
		case "data":
			out.data, err = parseObject(dec)
		default:
			return out, fmt.Errorf("unknown key %q: want type, channels and data", clip(key))
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", key, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return out, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return out, errors.New("trailing data after the object")
	}
	switch {
	case out.typ == "":
		return out, errors.New("no type")
	case len(out.channels) == 0:
		return out, errors.New("no channels")
	case slices.Contains(out.channels, ""):
		return out, errors.New("an empty channel")
	}
	slices.Sort(out.channels)
	out.channels = slices.Compact(out.channels)
	return out, nil
}

// expectDelim reads the next token, which must be delim.
func expectDelim(dec *json.Decoder, delim json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != delim {
		return fmt.Errorf("want %q, found %v", delim, tok)
	}
	return nil
}

// parseObject reads a JSON object (or null: no row) into a Row of its
// fields in order, each value kept as its JSON. A key twice is an error.
func parseObject(dec *json.Decoder) (broadcaster.Row, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("want an object, found %v", tok)
	}
	row := broadcaster.Row{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		if _, dup := row.Get(name); dup {
			return nil, fmt.Errorf("field %q twice", clip(name))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		row = append(row, broadcaster.Field{Name: name, Value: v})
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return row, nil
}

// check returns the event an emit message makes, or why it is dropped
// (a Drop reason and what was wrong).
func (r *emitRules) check(content []byte) (ev broadcaster.Event, reason, detail string) {
	if !r.enabled {
		return ev, DropDisabled, "emit.enabled is false"
	}
	if len(content) > r.maxBytes {
		return ev, DropTooLarge, fmt.Sprintf("%d bytes, more than emit.max_bytes (%d)", len(content), r.maxBytes)
	}
	e, err := parseEmitted(content)
	if err != nil {
		return ev, DropMalformed, err.Error()
	}
	ev = broadcaster.Event{Type: e.typ, Op: broadcaster.OpEmit, Data: e.data, Channels: e.channels}
	if reason, detail := r.checkType(e.typ); reason != "" {
		return ev, reason, detail
	}
	d := r.declared[e.typ]
	chans := r.channels
	if d != nil && d.channels != nil {
		chans = d.channels
	}
	for _, c := range e.channels {
		if !slices.ContainsFunc(chans, func(re *regexp.Regexp) bool { return re.MatchString(c) }) {
			return ev, DropChannel, fmt.Sprintf("channel %q fits none of the channel patterns of %s", clip(c), e.typ)
		}
	}
	if d != nil {
		if err := d.checkData(e.data); err != nil {
			return ev, DropData, err.Error()
		}
	}
	return ev, "", ""
}

// checkType says why typ may not be emitted, if it may not.
func (r *emitRules) checkType(typ string) (reason, detail string) {
	switch {
	case !config.ValidEventType(typ):
		return DropType, fmt.Sprintf("type %q is not <domain>.<action>", clip(typ))
	case r.mapped[typ]:
		return DropType, fmt.Sprintf("type %q is a mapped event type", typ)
	case r.declared[typ] != nil:
		return "", ""
	case slices.ContainsFunc(r.globs, func(g string) bool { ok, _ := path.Match(g, typ); return ok }):
		return "", ""
	}
	return DropType, fmt.Sprintf("type %q is neither declared in emit.events nor allowed by emit.types", typ)
}

// checkData checks data against the declared fields: each required one
// there, none undeclared, each of its type.
func (d *declaredEvent) checkData(data broadcaster.Row) error {
	for _, f := range data {
		t, ok := d.fields[f.Name]
		if !ok {
			return fmt.Errorf("field %q is not declared", clip(f.Name))
		}
		if err := checkValue(t, f.Value.(json.RawMessage)); err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(d.fields)) {
		if _, ok := data.Get(name); !ok && !d.fields[name].Optional {
			return fmt.Errorf("field %s is missing", name)
		}
	}
	return nil
}

// checkValue checks one field's JSON against its declared type.
func checkValue(t config.DataType, v json.RawMessage) error {
	if string(v) == "null" {
		if t.Optional || (t.Kind == config.KindAny && !t.List) {
			return nil
		}
		return fmt.Errorf("null, want %s", t)
	}
	if !t.List {
		if !isKind(t.Kind, v) {
			return fmt.Errorf("want %s", t)
		}
		return nil
	}
	var items []json.RawMessage
	if v[0] != '[' || json.Unmarshal(v, &items) != nil {
		return fmt.Errorf("want %s", t)
	}
	for i, it := range items {
		if !isKind(t.Kind, it) {
			return fmt.Errorf("item %d: want %s", i, t.Kind)
		}
	}
	return nil
}

// isKind reports whether the JSON value v (valid JSON, no surrounding
// space) is of kind k.
func isKind(k config.DataKind, v json.RawMessage) bool {
	switch c := v[0]; k {
	case config.KindString:
		return c == '"'
	case config.KindBoolean:
		return c == 't' || c == 'f'
	case config.KindObject:
		return c == '{'
	case config.KindNumber:
		return c == '-' || '0' <= c && c <= '9'
	case config.KindInteger:
		return (c == '-' || '0' <= c && c <= '9') && !bytes.ContainsAny(v, ".eE")
	case config.KindAny:
		return true
	}
	return false
}
