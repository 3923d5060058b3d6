// Package natslog holds the event log on a NATS JetStream stream
// (log.backend: nats, docs/cluster.md): the durable log that several serve
// nodes share.
//
// The reader side appends through a Writer (a broadcaster.Log): every
// mapped event becomes one message, in commit order, on
// <prefix>.<domain>.<action> (control records on <prefix>._control), with
// its event id and the writer's term as the message id and the event id in
// a Cdc-Cursor header. Publishes are pipelined and chained: each says which
// sequence it expects the stream to end at, so none is stored after one
// that was not. A reader elected leader begins a term (Writer.Begin): a
// marker on <prefix>._leader and enough fence messages after it that no
// publish of an earlier writer can land any more; a writer that finds
// another term's marker is fenced (broadcaster.ErrFenced, Deposed). The
// source confirms a transaction only once the stream has acknowledged all
// of its events (Confirmable). A failed publish is made again from what
// the stream really holds.
//
// The gateway side reads through a Follower (a broadcaster.LogReader): an
// eventlog.Memory cache of the newest log.cache_events events, filled from
// the stream in order by an ordered consumer, which the gateway fans out
// from; a cursor or a time older than the cache is found in the stream by
// binary search (one message read per step) and read from there. A stream
// deleted and created again ends every cursor from before (OnReset).
//
// Writer and Follower are safe for concurrent use; each runs one goroutine
// of its own (the writer's acknowledgements; Follower.Run).
package natslog
