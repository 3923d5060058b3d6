package cdc

import (
	"encoding/binary"
	"testing"

	"github.com/jackc/pglogrepl"
)

// Sample pgoutput messages, built by hand per the protocol documentation.
func sampleMessages() map[string][]byte {
	be32 := func(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
	be64 := func(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
	be16 := func(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
	cstr := func(b []byte, s string) []byte { return append(append(b, s...), 0) }

	begin := be32(be64(be64([]byte{'B'}, 0x16B3748C), 1000), 7731)
	commit := be64(be64(be64([]byte{'C', 0}, 0x16B3748C), 0x16B374C0), 1000)

	rel := be32([]byte{'R'}, 16384)
	rel = cstr(rel, "public")
	rel = cstr(rel, "exams")
	rel = append(rel, 'd')
	rel = be16(rel, 2)
	rel = be32(cstr(append(rel, 1), "id"), 20)
	rel = be32(rel, 0xFFFFFFFF)
	rel = be32(cstr(append(rel, 0), "status"), 25)
	rel = be32(rel, 0xFFFFFFFF)

	tuple := func(b []byte) []byte {
		b = be16(b, 2)
		b = be32(append(b, 't'), 1)
		b = append(b, '7')
		return append(b, 'u')
	}
	insert := tuple(append(be32([]byte{'I'}, 16384), 'N'))
	update := tuple(append(tuple(append(be32([]byte{'U'}, 16384), 'O')), 'N'))
	del := tuple(append(be32([]byte{'D'}, 16384), 'K'))
	trunc := be32(append(be32([]byte{'T'}, 1), 0), 16384)
	msg := be32(cstr(be64([]byte{'M', 1}, 0x16B37490), "cdc.actor"), 2)
	msg = append(msg, "19"...)
	return map[string][]byte{
		"begin": begin, "commit": commit, "relation": rel, "insert": insert,
		"update": update, "delete": del, "truncate": trunc, "message": msg,
	}
}

func TestParseMessage(t *testing.T) {
	msgs := sampleMessages()
	tests := []struct {
		name  string
		check func(t *testing.T, m pglogrepl.Message)
	}{
		{"begin", func(t *testing.T, m pglogrepl.Message) {
			b := m.(*pglogrepl.BeginMessage)
			if b.Xid != 7731 || b.FinalLSN != 0x16B3748C {
				t.Fatalf("%+v", b)
			}
		}},
		{"commit", func(t *testing.T, m pglogrepl.Message) {
			if c := m.(*pglogrepl.CommitMessage); c.TransactionEndLSN != 0x16B374C0 {
				t.Fatalf("%+v", c)
			}
		}},
		{"relation", func(t *testing.T, m pglogrepl.Message) {
			r := m.(*pglogrepl.RelationMessage)
			if r.RelationName != "exams" || len(r.Columns) != 2 || r.Columns[0].Flags != 1 {
				t.Fatalf("%+v", r)
			}
		}},
		{"insert", func(t *testing.T, m pglogrepl.Message) {
			i := m.(*pglogrepl.InsertMessage)
			if string(i.Tuple.Columns[0].Data) != "7" || i.Tuple.Columns[1].DataType != 'u' {
				t.Fatalf("%+v", i.Tuple)
			}
		}},
		{"update", func(t *testing.T, m pglogrepl.Message) {
			if u := m.(*pglogrepl.UpdateMessage); u.OldTupleType != 'O' || u.NewTuple == nil {
				t.Fatalf("%+v", u)
			}
		}},
		{"delete", func(t *testing.T, m pglogrepl.Message) {
			if d := m.(*pglogrepl.DeleteMessage); d.OldTupleType != 'K' {
				t.Fatalf("%+v", d)
			}
		}},
		{"truncate", func(t *testing.T, m pglogrepl.Message) {
			if tr := m.(*pglogrepl.TruncateMessage); len(tr.RelationIDs) != 1 || tr.RelationIDs[0] != 16384 {
				t.Fatalf("%+v", tr)
			}
		}},
		{"message", func(t *testing.T, m pglogrepl.Message) {
			if l := m.(*pglogrepl.LogicalDecodingMessage); !l.Transactional || l.Prefix != "cdc.actor" || string(l.Content) != "19" {
				t.Fatalf("%+v", l)
			}
		}},
	}
	for _, tt := range tests {
		for _, v2 := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				m, err := ParseMessage(msgs[tt.name], v2)
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, m)
			})
		}
	}
}

func TestParseMessageRejectsMalformed(t *testing.T) {
	msgs := sampleMessages()
	bad := map[string][]byte{
		"empty":              {},
		"unknown type":       {'Z', 1, 2},
		"short begin":        msgs["begin"][:10],
		"truncate overflows": append([]byte{'T', 0x7F, 0xFF, 0xFF, 0xFF, 0}, 1, 2, 3, 4),
		"tuple cut short":    msgs["insert"][:len(msgs["insert"])-3],
		"message cut short":  msgs["message"][:len(msgs["message"])-1],
	}
	for name, data := range bad {
		for _, v2 := range []bool{false, true} {
			t.Run(name, func(t *testing.T) {
				if m, err := ParseMessage(data, v2); err == nil {
					t.Fatalf("accepted %q as %T", data, m)
				}
			})
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m, false)
		f.Add(m, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, v2 bool) {
		m, err := ParseMessage(data, v2)
		switch {
		case err != nil:
			if m != nil || err.Error() == "" {
				t.Fatalf("error %q with message %v", err, m)
			}
		case m == nil:
			t.Fatal("nil message without an error")
		case len(data) == 0 || m.Type() != pglogrepl.MessageType(data[0]):
			t.Fatalf("message of type %q parsed from a message of type %q", m.Type(), firstByte(data))
		}
	})
}
