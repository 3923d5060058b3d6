// Package broadcaster holds the domain types of cdc-broadcaster and the seams
// between its stages:
//
//	Postgres ─▶ cdc (a Source) ─▶ mapping (a TxHandler) ─▶ Log (a Sink) ─▶ ws
//
// A Source decodes committed transactions from the write-ahead log and hands
// them, change by change, to a TxHandler. The mapping turns changes into
// Events and appends them to a Log in commit order. The Log tells the Source,
// through Confirmable, how far the replication slot may be confirmed.
//
// Nothing here knows which implementation of a seam runs: only cmd/ wires
// concrete types together. The types in this package are plain values and
// are safe to share between goroutines once built, unless a comment says
// otherwise.
package broadcaster
