package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func FuzzParseFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"auth","token":"abc"}`,
		`{"id":1,"type":"auth","token":"abc"}`,
		`{"id":2,"type":"subscribe","channels":["class:42","exam:7"],"since":"0000000016B3748C-00000003"}`,
		`{"id":"x","type":"unsubscribe","channels":["exam:7"]}`,
		`{"id":4,"type":"ping"}`,
		`{"id":-1.5e3,"type":"ping","extra":{"a":[1,2]}}`,
		`{"id":{},"type":"ping"}`,
		`{"id":5,"type":"subscribe","channels":[null,1]}`,
		`{"id":6,"type":"subscribe","channels":[],"since":null}`,
		`{"id":7,"type":7}`,
		`[1,2]`, `null`, `"str"`, `{`, ``, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseFrame(b)
		if err != nil {
			var fe *frameError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *frameError", err, err)
			}
			if fe.Msg == "" {
				t.Fatal("empty error message")
			}
			checkID(t, fe.ID)
			reply := encode(errorMsg{ID: fe.ID, Type: "error", Code: codeBadRequest, Message: fe.Msg})
			if !json.Valid(reply) {
				t.Fatalf("reply %s is not JSON", reply)
			}
			return
		}
		switch req.Type {
		case typeAuth:
			if req.Token == "" {
				t.Fatal("auth without a token parsed")
			}
		case typeSubscribe, typeUnsubscribe:
			if req.Channels == nil {
				t.Fatal("channels missing")
			}
		case typePing:
		default:
			t.Fatalf("unknown type %q parsed", req.Type)
		}
		if req.ID == nil && req.Type != typeAuth {
			t.Fatal("request without id parsed")
		}
		checkID(t, req.ID)
		reply := encode(channelsMsg{ID: req.ID, Type: "subscribed", Channels: req.Channels})
		if !json.Valid(reply) {
			t.Fatalf("reply %s is not JSON", reply)
		}
	})
}

// checkID checks that an id to be echoed is a JSON number or string.
func checkID(t *testing.T, id json.RawMessage) {
	t.Helper()
	if id == nil {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("id %s: %v", id, err)
	}
	switch v.(type) {
	case json.Number, string:
	default:
		t.Fatalf("id %s is a %T", id, v)
	}
}
