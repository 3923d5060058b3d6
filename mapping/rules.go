package mapping

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// tableMapping is one checked config.Mapping.
type tableMapping struct {
	key    string // "mappings[2]"
	table  string // qualified name, as events show it
	domain string
	// cols are the table's column names at load; columns are referred to
	// by their slot, their index here, and found by name at run time.
	cols     []string
	payload  []int // slots, in payload order
	actor    int   // slot, -1 when none
	channels []*template
	// used are the slots of every column the mapping reads, to warn when
	// one disappears.
	used []int
	// defaults are the default event types by Op, when rules is nil.
	defaults [5]string
	// rules are the event rules; nil means the default event types.
	rules []*rule
	req   Requirement
}

// rule is one checked config.EventRule.
type rule struct {
	key      string // "mappings[2].events[0]"
	op       broadcaster.Op
	typ      string
	cont     bool
	when     *compiled // nil: always
	channels []*template
}

// template is a checked channel template: literal text and column
// references.
type template struct {
	key   string // "mappings[2].channels[1]"
	src   string
	parts []part
	refs  bool // whether any part is a column reference
}

// part is a literal, or a reference to a column of one side of the change.
type part struct {
	lit  string
	slot int // -1 for a literal
	side side
	col  string
}

// side says which row a template reference reads.
type side uint8

const (
	sideAuto side = iota // {col}: the new row, the old one on DELETE
	sideNew              // {new.col}
	sideOld              // {old.col}
)

// defaultActions end the event types of a mapping without events, by Op.
var defaultActions = [...]string{
	broadcaster.OpInsert:   ".created",
	broadcaster.OpUpdate:   ".updated",
	broadcaster.OpDelete:   ".deleted",
	broadcaster.OpTruncate: ".truncated",
}

// ops maps the `on` values of rules to operations.
var ops = map[string]broadcaster.Op{
	"insert":   broadcaster.OpInsert,
	"update":   broadcaster.OpUpdate,
	"delete":   broadcaster.OpDelete,
	"truncate": broadcaster.OpTruncate,
}

// loader checks the rules and collects every problem.
type loader struct {
	tables map[string]*broadcaster.Relation
	types  *rowTypes
	env    *cel.Env
	errs   Errors
	table  string // the table of the mapping being checked, for errors
}

func (l *loader) fail(key, format string, args ...any) {
	l.errs = append(l.errs, &Error{Key: key, Table: l.table, Msg: fmt.Sprintf(format, args...)})
}

// load checks every rule and returns the mappings that passed.
func (l *loader) load(rules []config.Mapping) []*tableMapping {
	seen := map[string]int{}
	var out []*tableMapping
	for i, r := range rules {
		key := "mappings[" + strconv.Itoa(i) + "]"
		l.table = r.Table
		table := normalTable(r.Table)
		if strings.TrimSpace(r.Table) == "" {
			l.fail(key+".table", "required")
			continue
		}
		if first, dup := seen[table]; dup {
			l.fail(key+".table", "%q: table is already mapped by mappings[%d]", clip(r.Table), first)
			continue
		}
		seen[table] = i
		rel := l.tables[table]
		if rel == nil {
			l.fail(key+".table", "%q: no such table in the database", clip(r.Table))
			continue
		}
		if m := l.mapping(key, table, rel, r); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// mapping checks one mapping of table, whose schema is rel.
func (l *loader) mapping(key, table string, rel *broadcaster.Relation, r config.Mapping) *tableMapping {
	nerr := len(l.errs)
	m := &tableMapping{key: key, table: table, domain: r.Domain, actor: -1, cols: make([]string, len(rel.Columns))}
	for i, c := range rel.Columns {
		m.cols[i] = c.Name
	}
	m.req.Table = table
	tenv, err := tableEnv(l.env, l.types.add(table, rel))
	if err != nil {
		l.fail(key+".table", "%q: declare new and old: %v", clip(table), err)
		return nil
	}

	if len(r.Payload) == 0 {
		for i, c := range rel.Columns {
			if c.Key {
				m.payload = append(m.payload, i)
			}
		}
		if len(m.payload) == 0 {
			l.fail(key+".payload", "table %s has no primary key: list the payload columns", table)
		}
	}
	for j, col := range r.Payload {
		pk := key + ".payload[" + strconv.Itoa(j) + "]"
		slot := rel.ColumnIndex(col)
		switch {
		case slot < 0:
			l.fail(pk, "%q: table %s has no column %s", clip(col), table, clip(col))
		case slices.Contains(m.payload, slot):
			l.fail(pk, "%q: column listed twice", clip(col))
		default:
			m.payload = append(m.payload, slot)
		}
	}
	if r.Actor != "" {
		if m.actor = rel.ColumnIndex(r.Actor); m.actor < 0 {
			l.fail(key+".actor", "%q: table %s has no column %s", clip(r.Actor), table, clip(r.Actor))
		}
	}
	for _, slot := range m.payload {
		m.use(slot)
	}
	if m.actor >= 0 {
		m.use(m.actor)
	}
	m.channels = l.templates(key+".channels", table, rel, r.Channels, m)

	if len(r.Events) == 0 {
		if r.Domain == "" {
			l.fail(key+".domain", "required for the default event types (the mapping has no events)")
		}
		for op := broadcaster.OpInsert; op <= broadcaster.OpTruncate; op++ {
			m.defaults[op] = r.Domain + defaultActions[op]
		}
	}
	if len(r.Events) > 0 {
		m.rules = make([]*rule, 0, len(r.Events))
	}
	for j, e := range r.Events {
		if ru := l.rule(key+".events["+strconv.Itoa(j)+"]", table, rel, tenv, e, m); ru != nil {
			m.rules = append(m.rules, ru)
		}
	}
	slices.Sort(m.req.OldColumns)
	m.req.OldColumns = slices.Compact(m.req.OldColumns)
	if len(l.errs) > nerr {
		return nil
	}
	return m
}

// rule checks one event rule.
func (l *loader) rule(key, table string, rel *broadcaster.Relation, tenv *cel.Env, e config.EventRule, m *tableMapping) *rule {
	nerr := len(l.errs)
	ru := &rule{key: key, typ: e.Type, cont: e.Continue}
	op, ok := ops[e.On]
	if !ok {
		if e.On == "" {
			l.fail(key+".on", "required: insert, update, delete or truncate")
		} else {
			l.fail(key+".on", "%q: want insert, update, delete or truncate", clip(e.On))
		}
	}
	ru.op = op
	if e.Type == "" {
		l.fail(key+".type", "required")
	}
	if e.When != "" {
		ru.when = l.when(key+".when", rel, tenv, op, e.When, m)
	}
	if len(e.Channels) > 0 {
		ru.channels = l.templates(key+".channels", table, rel, e.Channels, m)
	}
	if len(l.errs) > nerr {
		return nil
	}
	return ru
}

// when compiles a rule's condition.
func (l *loader) when(key string, rel *broadcaster.Relation, tenv *cel.Env, op broadcaster.Op, expr string, m *tableMapping) *compiled {
	cp, err := compileWhen(tenv, expr)
	if err != nil {
		l.fail(key, "%q: %v", clip(expr), err)
		return nil
	}
	switch {
	case op == broadcaster.OpTruncate && (cp.usesNew || cp.usesOld):
		l.fail(key, "%q: a truncate has no rows: use only op", clip(expr))
		return nil
	case op == broadcaster.OpInsert && cp.usesOld:
		l.fail(key, "%q: an insert has no old row", clip(expr))
		return nil
	case op == broadcaster.OpDelete && cp.usesNew:
		l.fail(key, "%q: a delete has no new row: use old", clip(expr))
		return nil
	}
	for _, col := range cp.cols {
		if i := rel.ColumnIndex(col); i >= 0 {
			m.use(i)
		}
	}
	for _, col := range cp.oldCols {
		if i := rel.ColumnIndex(col); i >= 0 && !rel.Columns[i].Key {
			m.need(col, key)
		}
	}
	return cp
}

// use records that the mapping reads the column at slot.
func (m *tableMapping) use(slot int) {
	if !slices.Contains(m.used, slot) {
		m.used = append(m.used, slot)
	}
}

// need records that the mapping reads non-key column col of the old row.
func (m *tableMapping) need(col, key string) {
	if m.req.Key == "" {
		m.req.Key = key
	}
	m.req.OldColumns = append(m.req.OldColumns, col)
}

// templates checks a list of channel templates.
func (l *loader) templates(key, table string, rel *broadcaster.Relation, list []string, m *tableMapping) []*template {
	out := make([]*template, 0, len(list))
	for i, src := range list {
		tk := key + "[" + strconv.Itoa(i) + "]"
		t, err := parseTemplate(src, table, rel)
		if err != nil {
			l.fail(tk, "%q: %v", clip(src), err)
			continue
		}
		t.key = tk
		for _, p := range t.parts {
			if p.slot < 0 {
				continue
			}
			m.use(p.slot)
			if p.side == sideOld && !rel.Columns[p.slot].Key {
				m.need(p.col, tk)
			}
		}
		out = append(out, t)
	}
	return out
}

// parseTemplate parses a channel template: literal text with {col},
// {old.col} and {new.col} references to columns of rel.
func parseTemplate(src, table string, rel *broadcaster.Relation) (*template, error) {
	if src == "" {
		return nil, fmt.Errorf("empty channel template")
	}
	t := &template{src: src}
	for rest := src; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.parts = append(t.parts, part{lit: rest, slot: -1})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("unmatched '}'")
		}
		if open > 0 {
			t.parts = append(t.parts, part{lit: rest[:open], slot: -1})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, fmt.Errorf("unclosed '{'")
		}
		ref := rest[open+1 : open+1+end]
		rest = rest[open+1+end+1:]
		p := part{side: sideAuto}
		switch {
		case strings.HasPrefix(ref, "old."):
			p.side, ref = sideOld, ref[len("old."):]
		case strings.HasPrefix(ref, "new."):
			p.side, ref = sideNew, ref[len("new."):]
		}
		if ref == "" {
			return nil, fmt.Errorf("empty reference: want {column}, {old.column} or {new.column}")
		}
		p.col = ref
		if p.slot = rel.ColumnIndex(ref); p.slot < 0 {
			return nil, fmt.Errorf("table %s has no column %s", table, clip(ref))
		}
		t.parts = append(t.parts, p)
		t.refs = true
	}
	return t, nil
}

// normalTable names a configured table the way events do: "public.exams"
// is "exams".
func normalTable(s string) string {
	if rest, ok := strings.CutPrefix(s, "public."); ok {
		return rest
	}
	return s
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
