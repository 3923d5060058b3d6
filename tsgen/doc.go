// Package tsgen writes the TypeScript declarations of the events a mapping
// emits (`cdc-broadcaster types`): for each event type, its operations and
// the fields of its data and oldData, typed as the server encodes each
// column (docs/protocol.md), and the channel names the mapping's templates
// make.
//
// It knows the wire contract, not the database: cmd/cdc-broadcaster reads
// the mapping (mapping.Mapper.Describe), the catalog (cdc.LoadColumns) and
// each type's JSON shape (cdc.ShapeOf) and hands them to Write as a Source.
// Which columns an event carries follows docs/protocol.md ("Event") and
// package mapping (payloadRows): an INSERT carries every payload column; an
// UPDATE leaves out a TOASTed value it did not change; a DELETE carries what
// the replica identity gives of the old row; oldData is never certain; a
// TRUNCATE carries no row. An event type the application emits
// (Source.Emitted, the config's emit.events) carries its declared data
// fields, operation EMIT and no table.
//
// Write is a pure function of its Source: safe for concurrent use.
package tsgen
