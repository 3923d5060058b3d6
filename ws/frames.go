package ws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Request types a client may send.
const (
	typeAuth        = "auth"
	typeSubscribe   = "subscribe"
	typeUnsubscribe = "unsubscribe"
	typePing        = "ping"
)

// Error codes of the error message (docs/protocol.md).
const (
	codeBadRequest      = "bad_request"
	codeUnknownChannel  = "unknown_channel"
	codeInvalidChannel  = "invalid_channel"
	codeForbidden       = "forbidden"
	codeTooManySubs     = "too_many_subscriptions"
	codeRateLimited     = "rate_limited"
	codeSubjectMismatch = "subject_mismatch"
	codeUnauthenticated = "unauthenticated"
)

// request is one parsed client frame.
type request struct {
	// ID is the client's id as sent, a JSON number or string; nil when
	// absent. Replies echo it byte for byte.
	ID   json.RawMessage
	Type string
	// Token is the JWT of an auth request.
	Token string
	// Channels are the channels of a subscribe or unsubscribe request.
	Channels []string
	// Since is the resume cursor of a subscribe request, when HasSince.
	Since    broadcaster.Cursor
	HasSince bool
}

// frameError is a frame that cannot be served: the reply is error
// bad_request, with the frame's id when it could be read.
type frameError struct {
	ID  json.RawMessage
	Msg string
}

func (e *frameError) Error() string { return e.Msg }

// parseFrame parses a client frame. Every error it returns is a
// *frameError. Unknown fields are ignored, so clients may send more than
// this version knows.
func parseFrame(b []byte) (*request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		if !json.Valid(b) {
			return nil, &frameError{Msg: "frame is not valid JSON"}
		}
		return nil, &frameError{Msg: "frame is not a JSON object"}
	}
	req := &request{}
	if raw, ok := fields["id"]; ok {
		if !isIDValue(raw) {
			return nil, &frameError{Msg: "id must be a number or a string"}
		}
		req.ID = raw
	}
	bad := func(format string, args ...any) error {
		return &frameError{ID: req.ID, Msg: fmt.Sprintf(format, args...)}
	}
	typ, ok, err := stringField(fields, "type")
	switch {
	case err != nil:
		return nil, bad("type must be a string")
	case !ok || typ == "":
		return nil, bad("missing type")
	}
	req.Type = typ
	if req.ID == nil && typ != typeAuth {
		return nil, bad("missing id")
	}
	switch typ {
	case typeAuth:
		tok, ok, err := stringField(fields, "token")
		if err != nil || !ok || tok == "" {
			return nil, bad("auth needs a token string")
		}
		req.Token = tok
	case typeSubscribe, typeUnsubscribe:
		raw, ok := fields["channels"]
		if !ok || isNull(raw) {
			return nil, bad("%s needs channels", typ)
		}
		if err := json.Unmarshal(raw, &req.Channels); err != nil {
			return nil, bad("channels must be an array of strings")
		}
		if typ == typeSubscribe {
			since, ok, err := stringField(fields, "since")
			if err != nil {
				return nil, bad("since must be a cursor string")
			}
			if ok {
				c, err := broadcaster.ParseCursor(since)
				if err != nil {
					return nil, bad("since: %v", err)
				}
				req.Since, req.HasSince = c, true
			}
		}
	case typePing:
	default:
		return nil, bad("unknown type %s", strconv.Quote(truncate(typ, 40)))
	}
	return req, nil
}

// stringField returns the string value of key; ok is false when the key is
// absent or null.
func stringField(fields map[string]json.RawMessage, key string) (s string, ok bool, err error) {
	raw, present := fields[key]
	if !present || isNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, err
	}
	return s, true, nil
}

// isIDValue reports whether raw, a valid JSON value, is a number or a string.
func isIDValue(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	c := raw[0]
	return c == '"' || c == '-' || ('0' <= c && c <= '9')
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// truncate shortens s to at most n bytes (on a rune boundary) for messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}

// maxEcho is how much of a channel name that did not resolve is echoed
// in an error and the audit log: a name that resolved is as long as its
// pattern allows, any other may be as long as a frame.
const maxEcho = 200

// echoChannel is the channel name an error of code names: the name as the
// client sent it, but cut to maxEcho bytes when it did not resolve
// (unknown or invalid).
func echoChannel(name, code string) string {
	if code != codeUnknownChannel && code != codeInvalidChannel {
		return name
	}
	return truncate(name, maxEcho)
}

// Server → client messages. Each is encoded with encode.

type welcomeMsg struct {
	Type         string             `json:"type"` // welcome
	ConnectionID string             `json:"connectionId"`
	UserID       string             `json:"userId"`
	Cursor       broadcaster.Cursor `json:"cursor"`
	HeartbeatMS  int64              `json:"heartbeatMs"`
}

type authedMsg struct {
	ID        json.RawMessage `json:"id,omitempty"`
	Type      string          `json:"type"` // authed
	UserID    string          `json:"userId"`
	Role      string          `json:"role"`
	ExpiresAt int64           `json:"expiresAt,omitempty"` // Unix ms; absent when the token never expires
}

type channelsMsg struct {
	ID       json.RawMessage     `json:"id,omitempty"`
	Type     string              `json:"type"` // subscribed, unsubscribed
	Channels []string            `json:"channels"`
	Cursor   *broadcaster.Cursor `json:"cursor,omitempty"`
}

type pongMsg struct {
	ID     json.RawMessage    `json:"id,omitempty"`
	Type   string             `json:"type"` // pong
	Cursor broadcaster.Cursor `json:"cursor"`
}

type errorMsg struct {
	ID      json.RawMessage `json:"id,omitempty"`
	Type    string          `json:"type"` // error
	Code    string          `json:"code"`
	Channel string          `json:"channel,omitempty"`
	Message string          `json:"message"`
}

type revokedMsg struct {
	Type    string `json:"type"` // revoked
	Channel string `json:"channel"`
	Reason  string `json:"reason"`
}

type tokenExpiringMsg struct {
	Type      string `json:"type"` // token_expiring
	ExpiresAt int64  `json:"expiresAt"`
}

// resetMsg tells the client its channels lost events: it must refetch.
type resetMsg struct {
	Type     string   `json:"type"` // reset
	Channels []string `json:"channels"`
	Reason   string   `json:"reason"`
}

// encode marshals a server message. The message types above cannot fail to
// encode; a failure is a programming error.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ws: encode %T: %v", v, err))
	}
	return b
}

// eventEnvelope builds {"type":"event","channels":[...],"event":<body>}
// around an already encoded event body.
func eventEnvelope(channels []string, body []byte) []byte {
	const head, mid = `{"type":"event","channels":[`, `],"event":`
	n := len(head) + len(mid) + len(body) + 1
	for _, ch := range channels {
		n += len(ch) + 3
	}
	b := make([]byte, 0, n)
	b = append(b, head...)
	for i, ch := range channels {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, ch)
	}
	b = append(b, mid...)
	b = append(b, body...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	if isPlain(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// isPlain reports whether s needs no escaping in JSON (nor in HTML, as
// encoding/json escapes <, > and &).
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7F || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// encodeEvent is an event's wire JSON. An event that cannot be encoded is
// logged and not delivered (ok false): it would fail for every client.
func encodeEvent(ev *broadcaster.Event, logger *slog.Logger) (body []byte, ok bool) {
	body, err := json.Marshal(ev)
	if err != nil {
		logger.Error("ws: cannot encode an event; it is not delivered", "eventId", ev.ID, "err", err)
		return nil, false
	}
	return body, true
}
