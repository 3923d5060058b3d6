// Package metrics exposes what the service is doing: Prometheus metrics on
// GET /metrics, the same picture as JSON on GET /api/realtime/stats (for
// admin roles), and a watch over the replication slot that warns before it
// fills the database's disk.
//
// Nothing here keeps a second set of counters on the hot path: the
// components (stream, gateway, access rules, event log) keep their own, and
// a Metrics reads their snapshots through Sources when it is scraped. The
// only figures counted here are the ones no component has: events emitted
// by type (CountingLog, in front of the event log) and two latency
// histograms, fed by hooks (ObserveDelivery, ObserveSQL).
//
// The package imports none of the components: Sources are functions that
// return this package's snapshot types, and the command wires them.
//
// Metrics, CountingLog and SlotMonitor are safe for concurrent use.
package metrics
