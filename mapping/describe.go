package mapping

import (
	"slices"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// TableEvents is what the mapping of one table emits, for tools that
// describe events to clients (`cdc-broadcaster types`).
type TableEvents struct {
	// Table is the qualified table name, as events show it.
	Table string
	// Key is the mapping's key path: "mappings[2]".
	Key string
	// Payload names the columns that data and oldData may carry, in
	// payload order.
	Payload []string
	// Events lists what the mapping can emit, one entry per event rule in
	// rule order, or the four default event types of a mapping without
	// rules. A rule's `when` is not evaluated: any rule may match.
	Events []EventRule
}

// EventRule is one way a mapping emits an event type.
type EventRule struct {
	Type string
	Op   broadcaster.Op
	// Channels are the templates the event is published on, as written:
	// the rule's own, else the mapping's. A TRUNCATE has no row, so on
	// TRUNCATE only the templates without column references are listed.
	Channels []string
	// Key is the rule's key path, "mappings[2].events[0]"; the mapping's
	// for its default event types.
	Key string
}

// Describe returns what each mapped table emits, in table name order.
func (m *Mapper) Describe() []TableEvents {
	out := make([]TableEvents, 0, len(m.tables))
	for _, name := range m.tables {
		tm := m.byTable[name]
		te := TableEvents{Table: tm.table, Key: tm.key}
		for _, slot := range tm.payload {
			te.Payload = append(te.Payload, tm.cols[slot])
		}
		if tm.rules == nil {
			for op := broadcaster.OpInsert; op <= broadcaster.OpTruncate; op++ {
				te.Events = append(te.Events, EventRule{Type: tm.defaults[op], Op: op, Channels: sources(tm.channels, op), Key: tm.key})
			}
		}
		for _, r := range tm.rules {
			chans := tm.channels
			if r.channels != nil {
				chans = r.channels
			}
			te.Events = append(te.Events, EventRule{Type: r.typ, Op: r.op, Channels: sources(chans, r.op), Key: r.key})
		}
		out = append(out, te)
	}
	return out
}

// sources returns the templates of list that apply to op, as written.
func sources(list []*template, op broadcaster.Op) []string {
	out := make([]string, 0, len(list))
	for _, t := range list {
		if t.refs && op == broadcaster.OpTruncate {
			continue
		}
		if !slices.Contains(out, t.src) {
			out = append(out, t.src)
		}
	}
	return out
}
