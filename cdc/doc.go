// Package cdc reads a PostgreSQL database's committed row changes through
// logical replication (the pgoutput plugin) and hands them, decoded into
// broadcaster.Change values, to a broadcaster.TxHandler, with the
// application's logical decoding messages (broadcaster.Message) among them.
//
// It owns the replication connection, the relation cache, the decoding of
// column values, standby status updates, reconnecting, the heartbeat that keeps
// an idle slot moving, and the catalog work around them: slot, publication,
// replica identity and table schemas. WALFlusher gets WAL that no commit
// flushes (a non-transactional message) to the stream.
//
// Parsing is apart from I/O (ParseMessage, ValueDecoder) so it can be fuzzed.
// A Stream runs in the goroutine that calls Run and calls its handler from
// there; its Status may be read from any goroutine.
package cdc
