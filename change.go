package broadcaster

import (
	"time"
)

// Op is the kind of row change.
type Op uint8

// The row operations, as they appear in events, and OpEmit, the
// operation of an event the application emitted from SQL rather than a row
// change (a logical decoding message; docs/config.md, "Emitted events").
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	OpEmit
)

// String returns the operation as events spell it: INSERT, UPDATE, DELETE,
// TRUNCATE or EMIT.
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "INSERT"
	case OpUpdate:
		return "UPDATE"
	case OpDelete:
		return "DELETE"
	case OpTruncate:
		return "TRUNCATE"
	case OpEmit:
		return "EMIT"
	}
	return "UNKNOWN"
}

// Lower returns the operation in lower case, as mappings spell it in `on:`.
func (o Op) Lower() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpEmit:
		return "emit"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (o Op) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Column is one column of a Relation.
type Column struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	// Key is set for columns of the replica identity (usually the primary key).
	Key bool
}

// Replica identities, as PostgreSQL names them in pg_class.relreplident.
const (
	IdentityDefault = 'd'
	IdentityNothing = 'n'
	IdentityFull    = 'f'
	IdentityIndex   = 'i'
)

// Relation describes a table as the replication stream last announced it.
// A Relation is immutable: a schema change produces a new one.
type Relation struct {
	ID              uint32
	Schema          string
	Name            string
	ReplicaIdentity byte
	Columns         []Column
}

// Table returns the table's name as events show it: schema-qualified only
// outside "public".
func (r *Relation) Table() string {
	return QualifiedName(r.Schema, r.Name)
}

// QualifiedName joins schema and table the way events and mappings name
// tables: "exams" in public, "audit.logins" elsewhere.
func QualifiedName(schema, table string) string {
	if schema == "" || schema == "public" {
		return table
	}
	return schema + "." + table
}

// ColumnIndex returns the index of the named column, or -1.
func (r *Relation) ColumnIndex(name string) int {
	for i := range r.Columns {
		if r.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// unchanged is the type of Unchanged.
type unchanged struct{}

// Unchanged stands, in a Change's New values, for a TOASTed column that the
// UPDATE did not change and whose value the stream therefore did not send.
// It is never the same as NULL: such a column is left out of events.
var Unchanged any = unchanged{}

// Old tuple kinds of a Change, as pgoutput names them.
const (
	OldNone = 0   // the stream sent no old values
	OldKey  = 'K' // only the replica identity's key columns are known
	OldFull = 'O' // the whole old row is known (REPLICA IDENTITY FULL)
)

// Change is one decoded row change. Values line up with Rel.Columns and hold
// decoded Go values (see package cdc for the types): nil is SQL NULL and
// Unchanged an unsent TOASTed value.
type Change struct {
	// Seq is the change's position in its transaction, from 1.
	Seq uint32
	Op  Op
	Rel *Relation
	// New holds the row after an INSERT or UPDATE; nil otherwise.
	New []any
	// Old holds the row before an UPDATE or DELETE when the replica identity
	// provides it; see OldKind for how much of it is known.
	Old     []any
	OldKind byte
}

// Message is a logical decoding message the application wrote with
// pg_logical_emit_message, other than those the Source reads itself (the
// actor of a transaction, the heartbeat).
type Message struct {
	// LSN is the end of the message's WAL record, as pgoutput sends it
	// (and pg_logical_emit_message returns it): the start of the next
	// record, which may be a commit. A non-transactional message belongs
	// to no transaction: its record places it in commit order (every
	// transaction delivered before it committed before the record, every
	// one after it, at or after LSN).
	LSN LSN
	// Transactional is true for a message written as part of its
	// transaction: it is delivered only if, and when, that transaction
	// commits, in its place among the transaction's changes.
	Transactional bool
	Prefix        string
	Content       []byte
	// Sent is when the database sent the message to the Source, by the
	// database's clock: a non-transactional message has no commit time.
	Sent time.Time
}

// Tx describes the committed transaction whose changes are being delivered.
// The Source owns it; a TxHandler may read it during the calls it is given in.
type Tx struct {
	Xid uint32
	// CommitLSN is the LSN of the transaction's commit record, known from its
	// first message on.
	CommitLSN LSN
	// EndLSN is the end of the commit record; set before Commit is called.
	EndLSN     LSN
	CommitTime time.Time
	// Actor is the content of the transaction's last `cdc.actor` logical
	// decoding message seen so far, or "".
	Actor string
}
