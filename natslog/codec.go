package natslog

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Headers of a stream message besides JetStream's own Nats-Msg-Id (the
// event id, and a Writer's term after a dot: the stream drops a message
// it has already stored).
const (
	// HeaderCursor holds the event's cursor, so that a reader can find a
	// cursor's place in the stream from headers alone.
	HeaderCursor = "Cdc-Cursor"
	// HeaderWriter names the writer's term (its epoch) that published
	// the message; HeaderNode, on a leader marker, the node.
	HeaderWriter = "Cdc-Writer"
	HeaderNode   = "Cdc-Node"
)

// controlToken and gapToken are the last subject tokens of control
// records; gaps have a subject of their own, so that a gateway finds the
// newest with one read when it starts.
const (
	controlToken = "_control"
	gapToken     = "_gap"
	// leaderToken: a reader that takes the stream over as its leader
	// publishes a marker there first (see Writer.Begin). It is not an
	// event: gateways skip it.
	leaderToken = "_leader"
	// fenceToken: the messages a new leader publishes after its marker
	// (see Writer.fence). Not events either.
	fenceToken = "_fence"
)

// fenceMsg is one fence message of term epoch; like the marker it
// carries the cursor of the last event before it.
func fenceMsg(prefix string, head broadcaster.Cursor, epoch string) *nats.Msg {
	msg := nats.NewMsg(prefix + "." + fenceToken)
	msg.Header.Set(HeaderCursor, head.String())
	msg.Header.Set(HeaderWriter, epoch)
	return msg
}

// leaderMarker is the message that opens a writer's term: it carries the
// cursor of the event before it (so that the stream's last message always
// tells where the events end), the term's epoch and the node.
func leaderMarker(prefix string, head broadcaster.Cursor, epoch, node string) *nats.Msg {
	msg := nats.NewMsg(prefix + "." + leaderToken)
	msg.Header.Set(nats.MsgIdHdr, "leader."+epoch)
	msg.Header.Set(HeaderCursor, head.String())
	msg.Header.Set(HeaderWriter, epoch)
	msg.Header.Set(HeaderNode, node)
	msg.Data, _ = json.Marshal(map[string]any{"leader": node, "epoch": epoch, "at": time.Now().UTC()})
	return msg
}

// isMarker reports whether a stream message's subject is a leader
// marker's or a fence message's: not an event.
func isMarker(prefix, subject string) bool {
	return subject == prefix+"."+leaderToken || subject == prefix+"."+fenceToken
}

// wireEvent is an event as the stream stores it: everything a gateway
// needs to serve it exactly as the reader mapped it. Rows keep their
// column order and each value's JSON as the reader encoded it.
type wireEvent struct {
	ID       broadcaster.Cursor   `json:"id"`
	Type     string               `json:"type,omitempty"`
	Table    string               `json:"table,omitempty"`
	Op       uint8                `json:"op,omitempty"`
	Data     [][2]json.RawMessage `json:"data,omitempty"`
	OldData  [][2]json.RawMessage `json:"old,omitempty"`
	TimeNS   int64                `json:"tsn"`
	UserID   string               `json:"user,omitempty"`
	TxID     uint32               `json:"tx,omitempty"`
	Channels []string             `json:"channels,omitempty"`
	Recheck  []string             `json:"recheck,omitempty"`
	Gap      bool                 `json:"gap,omitempty"`
}

// Subject returns the subject an event is published on: prefix, then its
// type's tokens (exam.published: <prefix>.exam.published), or
// <prefix>._control for a control record (<prefix>._gap for a gap). Characters a subject token may
// not hold become '_'.
func Subject(prefix string, ev *broadcaster.Event) string {
	switch {
	case ev.Gap:
		return prefix + "." + gapToken
	case ev.IsControl():
		return prefix + "." + controlToken
	}
	typ := strings.Map(func(r rune) rune {
		switch {
		case r == '.', r == '-', r == '_', r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			return r
		}
		return '_'
	}, ev.Type)
	if typ == "" {
		typ = "_"
	}
	return prefix + "." + strings.Trim(typ, ".")
}

// Encode turns an event into the stream message that carries it.
func Encode(prefix string, ev *broadcaster.Event) (*nats.Msg, error) {
	w := wireEvent{
		ID: ev.ID, Type: ev.Type, Table: ev.Table, Op: uint8(ev.Op),
		TimeNS: ev.Timestamp.UnixNano(), UserID: ev.UserID, TxID: ev.TxID,
		Channels: ev.Channels, Recheck: ev.Recheck, Gap: ev.Gap,
	}
	var err error
	if w.Data, err = encodeRow(ev.Data); err != nil {
		return nil, fmt.Errorf("natslog: encode event %s: data: %w", ev.ID, err)
	}
	if w.OldData, err = encodeRow(ev.OldData); err != nil {
		return nil, fmt.Errorf("natslog: encode event %s: oldData: %w", ev.ID, err)
	}
	body, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("natslog: encode event %s: %w", ev.ID, err)
	}
	msg := nats.NewMsg(Subject(prefix, ev))
	msg.Data = body
	id := ev.ID.String()
	msg.Header.Set(nats.MsgIdHdr, id)
	msg.Header.Set(HeaderCursor, id)
	return msg, nil
}

func encodeRow(r broadcaster.Row) ([][2]json.RawMessage, error) {
	if r == nil {
		return nil, nil
	}
	out := make([][2]json.RawMessage, len(r))
	for i, f := range r {
		name, err := json.Marshal(f.Name)
		if err != nil {
			return nil, err
		}
		val, err := json.Marshal(broadcaster.JSONValue(f.Value))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", f.Name, err)
		}
		out[i] = [2]json.RawMessage{name, val}
	}
	return out, nil
}

// Decode turns a stream message's body back into the event. Row values
// come back as their JSON (json.RawMessage), which encodes to clients
// exactly as the reader's values did.
func Decode(data []byte) (broadcaster.Event, error) {
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return broadcaster.Event{}, fmt.Errorf("natslog: decode event: %w", err)
	}
	if w.ID.IsZero() {
		return broadcaster.Event{}, fmt.Errorf("natslog: decode event: no id")
	}
	ev := broadcaster.Event{
		ID: w.ID, Type: w.Type, Table: w.Table, Op: broadcaster.Op(w.Op),
		Timestamp: time.Unix(0, w.TimeNS), UserID: w.UserID, TxID: w.TxID,
		Channels: w.Channels, Recheck: w.Recheck, Gap: w.Gap,
	}
	var err error
	if ev.Data, err = decodeRow(w.Data); err != nil {
		return broadcaster.Event{}, fmt.Errorf("natslog: decode event %s: data: %w", w.ID, err)
	}
	if ev.OldData, err = decodeRow(w.OldData); err != nil {
		return broadcaster.Event{}, fmt.Errorf("natslog: decode event %s: old: %w", w.ID, err)
	}
	return ev, nil
}

func decodeRow(in [][2]json.RawMessage) (broadcaster.Row, error) {
	if in == nil {
		return nil, nil
	}
	out := make(broadcaster.Row, len(in))
	for i, f := range in {
		if err := json.Unmarshal(f[0], &out[i].Name); err != nil {
			return nil, fmt.Errorf("column %d: name: %w", i, err)
		}
		if len(f[1]) == 0 {
			return nil, fmt.Errorf("column %s: no value", out[i].Name)
		}
		out[i].Value = f[1]
	}
	return out, nil
}

// cursorOf reads the cursor header of a stream message.
func cursorOf(h nats.Header) (broadcaster.Cursor, error) {
	s := h.Get(HeaderCursor)
	if s == "" {
		return broadcaster.Cursor{}, fmt.Errorf("natslog: message without %s header", HeaderCursor)
	}
	return broadcaster.ParseCursor(s)
}
