package broadcaster

import (
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"time"
)

// Event is one mapped row change, or one event the application emitted
// (Op OpEmit, no Table), as clients receive it.
type Event struct {
	// ID is both the eventId and the cursor clients see.
	ID        Cursor
	Type      string
	Table     string
	Op        Op
	Data      Row
	OldData   Row
	Timestamp time.Time
	UserID    string
	TxID      uint32
	// Channels lists the channels the event is published on. It travels in
	// the envelope around the event, not in the event itself.
	Channels []string
	// Recheck, when set, makes this a control record rather than an event
	// for clients: the transaction changed these tables, which access rules
	// depend on (recheck_on). It comes after the transaction's events, and
	// the gateway re-checks the affected subscriptions before it delivers
	// anything after it, so an event committed after a change that removed
	// someone's access never reaches them. It has no Type and no Channels.
	Recheck []string
	// Gap, when set, makes this a control record saying that the source
	// skipped changes up to here (its slot was re-created): no cursor
	// before ID can resume. Logs shared by several nodes carry it to every
	// gateway.
	Gap bool
}

// IsControl reports whether e is a control record (Recheck, Gap), which
// is never sent to clients.
func (e *Event) IsControl() bool { return len(e.Recheck) > 0 || e.Gap }

// NonTransactional reports whether e is the event of a non-transactional
// message, which belongs to no transaction (TxID 0). Its ID is the end of
// the message's WAL record less one, at position 1: inside the record, so
// that it sorts after every transaction committed before the message and
// before every one committed after it. A replication slot delivers the
// message again only when confirmed before the record's start, which lies
// before the event's ID.LSN.
func (e *Event) NonTransactional() bool { return e.Op == OpEmit && e.TxID == 0 }

type eventJSON struct {
	EventID   Cursor `json:"eventId"`
	Cursor    Cursor `json:"cursor"`
	EventType string `json:"eventType"`
	Table     string `json:"table,omitempty"`
	Operation Op     `json:"operation"`
	Data      *Row   `json:"data,omitempty"`
	OldData   Row    `json:"oldData,omitempty"`
	Timestamp int64  `json:"timestamp"`
	UserID    string `json:"userId,omitempty"`
	TxID      uint32 `json:"txId"`
}

// MarshalJSON encodes the event in the form of the wire contract. An
// emitted event always has data, {} when it carries none.
func (e Event) MarshalJSON() ([]byte, error) {
	var data *Row
	switch {
	case len(e.Data) > 0:
		data = &e.Data
	case e.Op == OpEmit:
		data = &Row{}
	}
	return json.Marshal(eventJSON{
		EventID:   e.ID,
		Cursor:    e.ID,
		EventType: e.Type,
		Table:     e.Table,
		Operation: e.Op,
		Data:      data,
		OldData:   e.OldData,
		Timestamp: e.Timestamp.UnixMilli(),
		UserID:    e.UserID,
		TxID:      e.TxID,
	})
}

// Field is one column of a Row.
type Field struct {
	Name  string
	Value any
}

// Row is an ordered set of columns; it encodes as a JSON object in column
// order, with values converted by JSONValue.
type Row []Field

// MarshalJSON encodes the row as a JSON object.
func (r Row) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 16*len(r)+2)
	b = append(b, '{')
	for i, f := range r {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f.Name)
		b = append(b, ':')
		v, err := json.Marshal(JSONValue(f.Value))
		if err != nil {
			return nil, err
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// Get returns the value of the named field and whether the row has it.
func (r Row) Get(name string) (any, bool) {
	for _, f := range r {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// Numeric is the exact text of a PostgreSQL numeric value ("12.50", "NaN").
type Numeric string

// Date is a PostgreSQL date in RFC 3339 full-date form ("2025-11-29"), or
// "infinity" / "-infinity".
type Date string

// maxExactInt is the largest integer a float64 holds exactly.
const maxExactInt = 1 << 53

// JSONValue converts a decoded column value to the value its JSON encoding
// should have under the wire contract: int8 and numeric that do not fit a
// double exactly become strings, timestamps RFC 3339 strings, json and jsonb
// stay raw JSON. Arrays are converted element by element.
func JSONValue(v any) any {
	switch x := v.(type) {
	case int64:
		if x > maxExactInt || x < -maxExactInt {
			return strconv.FormatInt(x, 10)
		}
		return x
	case uint64:
		if x > maxExactInt {
			return strconv.FormatUint(x, 10)
		}
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return x
	case float32:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 32)
		}
		return x
	case Numeric:
		return numericJSON(string(x))
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = JSONValue(x[i])
		}
		return out
	}
	return v
}

// numericJSON returns the numeric as a JSON number when a double holds it
// exactly, else as its exact string.
func numericJSON(s string) any {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return s
	}
	exact, ok := new(big.Rat).SetString(s)
	if !ok {
		return s
	}
	var back big.Rat
	if back.SetFloat64(f) == nil || back.Cmp(exact) != 0 {
		return s
	}
	return json.Number(strconv.FormatFloat(f, 'f', -1, 64))
}
