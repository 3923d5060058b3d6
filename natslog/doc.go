// Package natslog holds the event log on a NATS JetStream stream
// (log.backend: nats, docs/cluster.md): the durable log that several serve
// nodes share.
//
// The reader side appends through a Writer (a broadcaster.Log): every
// mapped event becomes one message, in commit order, on
// <prefix>.<domain>.<action> (control records on <prefix>._control), with
// its event id as the message id and in a Cdc-Cursor header. Publishes are
// pipelined and chained: each says which sequence and which message id it
// expects the stream to end with, so none is stored after one that was not,
// and none at all once another writer has appended (the writer is then
// fenced: broadcaster.ErrFenced). The source confirms a transaction only
// once the stream has acknowledged all of its events (Confirmable). A
// failed publish is made again from what the stream really holds.
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
