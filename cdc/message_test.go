package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// recHandler records what a receiver hands it, one line per call.
type recHandler struct {
	calls []string
	err   error // returned by Message
}

func (h *recHandler) Begin(_ context.Context, tx *broadcaster.Tx) error {
	h.calls = append(h.calls, fmt.Sprintf("begin %d", tx.Xid))
	return nil
}

func (h *recHandler) Change(_ context.Context, tx *broadcaster.Tx, c *broadcaster.Change) error {
	h.calls = append(h.calls, fmt.Sprintf("change %d", c.Seq))
	return nil
}

func (h *recHandler) Message(_ context.Context, tx *broadcaster.Tx, m *broadcaster.Message) error {
	in := "no tx"
	if tx != nil {
		in = fmt.Sprintf("tx %d actor %q", tx.Xid, tx.Actor)
	}
	h.calls = append(h.calls, fmt.Sprintf("message %s %s %q at %s (%s)", m.Prefix, map[bool]string{true: "transactional", false: "not transactional"}[m.Transactional], m.Content, m.LSN, in))
	return h.err
}

func (h *recHandler) Commit(_ context.Context, tx *broadcaster.Tx) error {
	h.calls = append(h.calls, fmt.Sprintf("commit %d actor %q", tx.Xid, tx.Actor))
	return nil
}

// pgMessage encodes a pgoutput logical decoding message.
func pgMessage(transactional bool, lsn uint64, prefix, content string) []byte {
	flags := byte(0)
	if transactional {
		flags = 1
	}
	b := binary.BigEndian.AppendUint64([]byte{'M', flags}, lsn)
	b = append(append(b, prefix...), 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

// TestReceiverMessages: the actor and the heartbeat stay the Stream's; a
// transactional message reaches the handler in its transaction, a
// non-transactional one between transactions, with no transaction, and
// moves what may be confirmed past it only once the handler took it.
func TestReceiverMessages(t *testing.T) {
	msgs := sampleMessages()
	h := &recHandler{}
	s := &Stream{}
	r := &receiver{s: s, h: h, sent: time.Unix(1764403200, 0)}
	ctx := context.Background()
	for i, data := range [][]byte{
		pgMessage(false, 0x100, "cdc.heartbeat", ""),
		pgMessage(false, 0x200, "cdc.emit", `{"n":1}`),
		msgs["begin"],
		pgMessage(true, 0x16B37400, "cdc.actor", "19"),
		pgMessage(true, 0x16B37410, "cdc.emit", `{"n":2}`),
		pgMessage(true, 0x16B37420, "other.app", "x"),
		msgs["commit"],
		pgMessage(false, 0x16B37500, "other.app", "y"),
	} {
		if err := r.handle(ctx, data); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 1 && s.accepted != 0x200 {
			t.Errorf("after the non-transactional message: accepted %v, want 0/200", s.accepted)
		}
	}
	want := []string{
		`message cdc.emit not transactional "{\"n\":1}" at 0/200 (no tx)`,
		"begin 7731",
		`message cdc.emit transactional "{\"n\":2}" at 0/16B37410 (tx 7731 actor "19")`,
		`message other.app transactional "x" at 0/16B37420 (tx 7731 actor "19")`,
		`commit 7731 actor "19"`,
		`message other.app not transactional "y" at 0/16B37500 (no tx)`,
	}
	if !slices.Equal(h.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", h.calls, want)
	}
	if s.accepted != 0x16B37500 {
		t.Errorf("accepted %v, want the last message's 0/16B37500", s.accepted)
	}

	// A refused non-transactional message stops the stream for good, and
	// moves nothing.
	h.err = errors.New("full")
	err := r.handle(ctx, pgMessage(false, 0x16B37600, "cdc.emit", "{}"))
	if !permanent(err) || s.accepted != 0x16B37500 {
		t.Errorf("refused: err %v (permanent %v), accepted %v", err, permanent(err), s.accepted)
	}

	// Out of place: a transactional message outside a transaction, a
	// non-transactional one inside.
	if err := r.handle(ctx, pgMessage(true, 0x1, "cdc.emit", "{}")); err == nil {
		t.Error("a transactional message outside a transaction was taken")
	}
	if err := r.handle(ctx, msgs["begin"]); err != nil {
		t.Fatal(err)
	}
	if err := r.handle(ctx, pgMessage(false, 0x1, "cdc.emit", "{}")); err == nil {
		t.Error("a non-transactional message inside a transaction was taken")
	}
}
