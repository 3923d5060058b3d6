package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// ParseMessage parses one pgoutput message (the WAL data of an XLogData
// frame). It never panics: a malformed message is an error.
func ParseMessage(data []byte, v2 bool) (msg pglogrepl.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed pgoutput message (type %q, %d bytes): %v", firstByte(data), len(data), r)
		}
	}()
	// Without spare capacity, a length field that points past the end makes
	// the parser's slicing fail (and recover above) instead of reading
	// whatever lies beyond the frame.
	data = data[:len(data):len(data)]
	if err := checkTupleLengths(data); err != nil {
		return nil, err
	}
	if v2 {
		msg, err = pglogrepl.ParseV2(data, false)
	} else {
		msg, err = pglogrepl.Parse(data)
	}
	if err != nil {
		return nil, fmt.Errorf("parse pgoutput message (type %q, %d bytes): %w", firstByte(data), len(data), err)
	}
	msg = v1(msg)
	if err := checkTuples(msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// v1 returns the protocol-1 message inside a protocol-2 one. Without
// streaming, the two protocols carry the same fields (the xid of a
// protocol-2 message is only sent inside a stream).
func v1(msg pglogrepl.Message) pglogrepl.Message {
	switch m := msg.(type) {
	case *pglogrepl.InsertMessageV2:
		return &m.InsertMessage
	case *pglogrepl.UpdateMessageV2:
		return &m.UpdateMessage
	case *pglogrepl.DeleteMessageV2:
		return &m.DeleteMessage
	case *pglogrepl.TruncateMessageV2:
		return &m.TruncateMessage
	case *pglogrepl.RelationMessageV2:
		return &m.RelationMessage
	case *pglogrepl.TypeMessageV2:
		return &m.TypeMessage
	case *pglogrepl.LogicalDecodingMessageV2:
		return &m.LogicalDecodingMessage
	}
	return msg
}

// checkTuples refuses tuples whose column count disagrees with the data the
// parser read, which pglogrepl does not check on its own.
func checkTuples(msg pglogrepl.Message) error {
	var tuples []*pglogrepl.TupleData
	switch m := msg.(type) {
	case *pglogrepl.InsertMessage:
		tuples = append(tuples, m.Tuple)
	case *pglogrepl.UpdateMessage:
		tuples = append(tuples, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		tuples = append(tuples, m.OldTuple)
	}
	for _, t := range tuples {
		if t != nil && int(t.ColumnNum) != len(t.Columns) {
			return fmt.Errorf("malformed pgoutput tuple: %d columns announced, %d read", t.ColumnNum, len(t.Columns))
		}
	}
	return nil
}

// checkTupleLengths walks the tuples of an Insert, Update or Delete message,
// and the relation list of a Truncate, and refuses one whose lengths run past
// the message: pglogrepl allocates the announced length before copying.
func checkTupleLengths(data []byte) error {
	if len(data) == 0 {
		return errors.New("empty pgoutput message")
	}
	kind := data[0]
	if kind == 'T' {
		// Relation count, options, then one relation id per relation.
		if len(data) < 6 || uint64(binary.BigEndian.Uint32(data[1:]))*4 != uint64(len(data)-6) {
			return fmt.Errorf("malformed pgoutput truncate message: %d bytes", len(data))
		}
		return nil
	}
	if kind != 'I' && kind != 'U' && kind != 'D' {
		return nil
	}
	if len(data) < 6 {
		return fmt.Errorf("malformed pgoutput %q message: %d bytes", kind, len(data))
	}
	b := data[5:] // type, relation id; then tuples each behind a kind byte
	for len(b) > 0 {
		switch b[0] {
		case 'N', 'K', 'O':
		default:
			return fmt.Errorf("malformed pgoutput %q message: tuple kind %q", kind, b[0])
		}
		var err error
		if b, err = skipTuple(b[1:]); err != nil {
			return fmt.Errorf("malformed pgoutput %q message: %w", kind, err)
		}
	}
	return nil
}

// skipTuple returns what follows one TupleData.
func skipTuple(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, errors.New("tuple cut short")
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for i := 0; i < n; i++ {
		if len(b) < 1 {
			return nil, fmt.Errorf("tuple cut short at column %d of %d", i+1, n)
		}
		k := b[0]
		b = b[1:]
		switch k {
		case 'n', 'u':
		case 't', 'b':
			if len(b) < 4 {
				return nil, fmt.Errorf("tuple cut short at column %d of %d", i+1, n)
			}
			l := uint64(binary.BigEndian.Uint32(b))
			b = b[4:]
			if l > uint64(len(b)) {
				return nil, fmt.Errorf("column %d announces %d bytes, %d remain", i+1, l, len(b))
			}
			b = b[l:]
		default:
			return nil, fmt.Errorf("column %d has data kind %q", i+1, k)
		}
	}
	return b, nil
}

func firstByte(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return string(b[:1])
}
