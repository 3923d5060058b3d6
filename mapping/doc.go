// Package mapping turns the row changes of committed transactions into
// events, following the operator's mapping rules (docs/config.md, "Mapping:
// rows to events"), and appends them, one transaction at a time, to a
// broadcaster.Sink.
//
// New checks the rules against the database schema once, at start: tables,
// payload, actor and channel template columns, and every `when` expression,
// which is compiled and type-checked with CEL over typed `new` and `old`
// rows. Every problem is reported at once, as Errors, with the key path of
// the config file.
//
// At run time a Mapper is the broadcaster.TxHandler behind a Source. It
// looks columns up by name in each change's Relation, so a table that gains
// or loses columns while the stream runs keeps working: what a rule needs
// and no longer finds is skipped, with a rate-limited warning, never a stop.
// Event ids derive from the transaction's commit LSN and the event's position
// in it, so a replayed transaction gets the same ids again.
//
// The application's logical decoding messages with the emit prefix become
// events too (message.go; docs/config.md, "Emitted events"): checked
// against the emit section, a transactional one takes the next position in
// its transaction, a non-transactional one is appended alone at its own
// LSN. A message that breaks the section is dropped whole, logged and
// counted (EmitDropped).
//
// Concurrency: a Mapper is used by one goroutine, the Source's; its
// TxHandler methods must not be called concurrently. Tables and
// Requirements only read what New built, and EmitDropped reads counters;
// they may be called from anywhere.
package mapping
