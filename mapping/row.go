package mapping

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// payloadRows returns the event's data and oldData: the payload columns of
// the new row (of the old one on DELETE) and, when the stream sent an old
// row, its known payload columns. Unchanged TOAST values and columns the
// stream did not send are left out, never null.
func payloadRows(c *broadcaster.Change, p *relPlan) (data, oldData broadcaster.Row) {
	switch c.Op {
	case broadcaster.OpInsert, broadcaster.OpUpdate:
		data = payloadRow(c, p, false)
		if c.Op == broadcaster.OpUpdate && c.OldKind != broadcaster.OldNone {
			oldData = payloadRow(c, p, true)
		}
	case broadcaster.OpDelete:
		data = payloadRow(c, p, true)
		if c.OldKind != broadcaster.OldNone {
			oldData = data
		}
	}
	return data, oldData
}

// payloadRow returns the known payload columns of one side of c, nil when
// none is known.
func payloadRow(c *broadcaster.Change, p *relPlan, old bool) broadcaster.Row {
	var row broadcaster.Row
	for _, slot := range p.m.payload {
		i := p.slots[slot]
		if i < 0 {
			continue
		}
		var v any
		if old {
			var why reason
			if v, why = oldValue(c, i); why != known {
				continue
			}
		} else {
			if i >= len(c.New) {
				continue
			}
			if v = c.New[i]; v == broadcaster.Unchanged {
				continue
			}
		}
		if row == nil {
			row = make(broadcaster.Row, 0, len(p.m.payload))
		}
		row = append(row, broadcaster.Field{Name: p.m.cols[slot], Value: v})
	}
	return row
}

// actorText returns the actor column's value as text: the new row's, else
// the old row's; "" when there is no actor column or its value is unknown or
// null.
func actorText(c *broadcaster.Change, p *relPlan) string {
	if p.m.actor < 0 {
		return ""
	}
	i := p.slots[p.m.actor]
	if i < 0 {
		return ""
	}
	v, why := newValue(c, i)
	if why != known {
		v, why = oldValue(c, i)
	}
	if why != known || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	var buf [32]byte
	b, ok := appendText(buf[:0], v)
	if !ok {
		return ""
	}
	return string(b)
}

// renderChannels expands channel templates for change c: a template whose
// value is null or unknown is skipped, duplicates are removed, order kept.
// A TRUNCATE has no row: only templates without references apply.
func renderChannels(list []*template, c *broadcaster.Change, p *relPlan) []string {
	out := make([]string, 0, len(list))
	for _, t := range list {
		if t.refs && c.Op == broadcaster.OpTruncate {
			continue
		}
		s, ok := render(t, c, p)
		if ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// render expands one template; ok is false when a value it needs is null
// or unknown.
func render(t *template, c *broadcaster.Change, p *relPlan) (string, bool) {
	if !t.refs {
		return t.src, true
	}
	var buf [96]byte
	b := buf[:0]
	for _, pt := range t.parts {
		if pt.slot < 0 {
			b = append(b, pt.lit...)
			continue
		}
		i := p.slots[pt.slot]
		if i < 0 {
			return "", false
		}
		var (
			v   any
			why reason
		)
		switch {
		case pt.side == sideOld, pt.side == sideAuto && c.Op == broadcaster.OpDelete:
			v, why = oldValue(c, i)
		default:
			v, why = newValue(c, i)
		}
		if why != known || v == nil {
			return "", false
		}
		var ok bool
		if b, ok = appendText(b, v); !ok {
			return "", false
		}
	}
	return string(b), true
}

// appendText appends a column value as channels and userId show it: int64
// in decimal, strings, numeric and date as they are, bool, timestamps in
// RFC 3339, anything else as JSON.
func appendText(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(b, x, 10), true
	case string:
		return append(b, x...), true
	case broadcaster.Numeric:
		return append(b, x...), true
	case broadcaster.Date:
		return append(b, x...), true
	case bool:
		return strconv.AppendBool(b, x), true
	case time.Time:
		return x.UTC().AppendFormat(b, time.RFC3339Nano), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.AppendFloat(b, x, 'g', -1, 64), true
		}
	case json.RawMessage:
		return append(b, x...), true
	}
	j, err := json.Marshal(broadcaster.JSONValue(v))
	if err != nil {
		return b, false
	}
	return append(b, j...), true
}
