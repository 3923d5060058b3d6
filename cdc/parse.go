package cdc

import (
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

func firstByte(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return string(b[:1])
}
