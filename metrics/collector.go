package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newDesc describes a metric of the service.
func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

// The metrics the collector reads from Sources at each scrape.
var (
	descConnectionsActive = newDesc("connections_active", "Authenticated WebSocket connections now open, by token role.", "role")
	descConnectionsOpened = newDesc("connections_opened_total", "WebSocket connections authenticated, by token role (empty until the gateway counts by role).", "role")
	descConnectionsClosed = newDesc("connections_closed_total", "WebSocket connections ended, by close code (1006: broke without one).", "code")
	descSlowConsumer      = newDesc("slow_consumer_closes_total", "WebSocket connections closed as slow consumers (4009).")
	descSubscriptions     = newDesc("subscriptions_active", "Channel subscriptions of the open connections.")
	descDelivered         = newDesc("events_delivered_total", "Event frames written to WebSocket clients.")
	descSentBytes         = newDesc("websocket_sent_bytes_total", "Bytes of every frame written to WebSocket clients.")
	descCatchUps          = newDesc("catch_ups_total", "Times a connection's send queue was full and it went on reading from the event log.")
	descResumes           = newDesc("resumes_total", "Subscriptions resumed from a client's cursor (since).")
	descResets            = newDesc("resets_total", "Subscribe requests answered with reset: the cursor was older than the retained log.")
	descSyncRequests      = newDesc("sync_requests_total", "GET /api/realtime/sync answers, by outcome.", "outcome")
	descAuthFailures      = newDesc("auth_failures_total", "Refused tokens and first frames.")
	descSubRefusals       = newDesc("subscribe_refusals_total", "Channels refused to subscribe requests (one for a request refused whole), by error code.", "code")
	descRevocations       = newDesc("revocations_total", "Subscriptions revoked after a token refresh or a membership change.")

	descEmitted     = newDesc("events_emitted_total", "Events appended to the event log, by event type.", "type")
	descEmitDropped = newDesc("emit_dropped_total", "Messages of the emit prefix dropped for breaking a rule of the emit section, by reason.", "reason")

	descACLChecks    = newDesc("acl_checks_total", "Channel access checks, by result (granted, denied).", "result")
	descACLCacheHits = newDesc("acl_sql_cache_hits_total", "Answers of sql access rules served from the cache.")
	descACLQueries   = newDesc("acl_sql_queries_total", "Queries of sql access rules run.")

	descLogEvents    = newDesc("eventlog_events", "Events retained in the event log.")
	descLogOldestAge = newDesc("eventlog_oldest_event_age_seconds", "Age, by commit time, of the oldest event retained in the event log; 0 when it is empty.")
	descLogHeld      = newDesc("eventlog_held_events", "Events kept past the retention for connections still reading them (catching up after a burst).")
	descLogHeldBytes = newDesc("eventlog_held_bytes", "Estimated memory of the held events; bounded by retention.max_held_bytes.")
	descLogHeldDrop  = newDesc("eventlog_held_dropped_total", "Held events dropped over retention.max_held_bytes: the connections still behind them were closed 4009.")

	descConnected     = newDesc("replication_connected", "1 while the replication stream is connected.")
	descCaughtUp      = newDesc("replication_caught_up", "1 once the stream has replayed what the slot held back when it started.")
	descReconnects    = newDesc("replication_reconnects_total", "Times the replication connection was lost and opened again.")
	descReceivedLSN   = newDesc("replication_received_lsn_bytes", "WAL position the replication stream has read up to.")
	descConfirmedLSN  = newDesc("replication_confirmed_lsn_bytes", "WAL position the replication stream last confirmed to the server.")
	descLastCommit    = newDesc("replication_last_commit_timestamp_seconds", "Commit time of the last transaction received, in Unix seconds.")
	descLagBytes      = newDesc("replication_lag_bytes", "WAL the server had written at its last poll that the stream has not read yet.")
	descLagSeconds    = newDesc("replication_lag_seconds", "How long ago the oldest WAL the stream has not read was written; 0 when caught up.")
	descServerLSN     = newDesc("server_wal_lsn_bytes", "The database server's current WAL position, at the last poll.")
	descSlotConfirmed = newDesc("slot_confirmed_flush_lsn_bytes", "The slot's confirmed_flush_lsn, at the last poll.")
	descSlotExists    = newDesc("slot_exists", "1 when the replication slot exists, at the last poll.")
	descSlotActive    = newDesc("slot_active", "1 when a connection is reading the replication slot, at the last poll.")
	descSlotLost      = newDesc("slot_lost", "1 when the replication slot is invalidated (wal_status lost).")
	descSlotRetained  = newDesc("slot_wal_retained_bytes", "WAL the replication slot holds back on the server (current position minus restart_lsn).")
	descSlotThreshold = newDesc("slot_wal_retained_threshold_bytes", "The retained WAL above which a warning is logged (source.max_retained_wal).")
	descSlotOver      = newDesc("slot_wal_retained_over_threshold", "1 while the slot's retained WAL is above the threshold.")
	descSlotSafe      = newDesc("slot_safe_wal_size_bytes", "WAL that can still be written before the slot is in danger of invalidation (absent when max_slot_wal_keep_size is unlimited).")
	descSlotPolled    = newDesc("slot_last_poll_timestamp_seconds", "Time of the slot monitor's last successful poll, in Unix seconds.")
	descSlotErrors    = newDesc("slot_poll_errors_total", "Failed polls of the replication slot's state.")

	descReaderLeader  = newDesc("reader_leader", "1 on the node whose reader streams the slot (the leader), 0 on the others.")
	descFailovers     = newDesc("reader_failovers_total", "Times this node's reader took over as the leader from another.")
	descPublished     = newDesc("stream_published_total", "Events published to the JetStream stream (again after a failure too).")
	descPublishErrors = newDesc("stream_publish_errors_total", "Publishes to the JetStream stream that failed (no acknowledgement in time, no quorum, a NATS server gone); each is made again.")
	descFollowing     = newDesc("stream_following", "1 while the gateway reads the JetStream stream.")
	descStreamLag     = newDesc("stream_lag_events", "Events the gateway is behind the JetStream stream's last event.")
)

var allDescs = []*prometheus.Desc{
	descConnectionsActive, descConnectionsOpened, descConnectionsClosed, descSlowConsumer,
	descSubscriptions, descDelivered, descSentBytes, descCatchUps, descResumes, descResets,
	descSyncRequests, descAuthFailures, descSubRefusals, descRevocations,
	descEmitted, descEmitDropped,
	descACLChecks, descACLCacheHits, descACLQueries,
	descLogEvents, descLogOldestAge, descLogHeld, descLogHeldBytes, descLogHeldDrop,
	descConnected, descCaughtUp, descReconnects, descReceivedLSN, descConfirmedLSN,
	descLastCommit, descLagBytes, descLagSeconds, descServerLSN, descSlotConfirmed,
	descSlotExists, descSlotActive, descSlotLost, descSlotRetained, descSlotThreshold,
	descSlotOver, descSlotSafe, descSlotPolled, descSlotErrors,
	descReaderLeader, descFailovers, descPublished, descPublishErrors, descFollowing, descStreamLag,
}

// collector turns a Snapshot into metrics at each scrape.
type collector struct{ m *Metrics }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Snapshot()
	e := emitter{ch}
	if g := st.Gateway; g != nil {
		for role, n := range g.ActiveByRole {
			e.gauge(descConnectionsActive, float64(n), role)
		}
		if g.OpenedByRole != nil {
			for role, n := range g.OpenedByRole {
				e.counter(descConnectionsOpened, float64(n), role)
			}
		} else {
			e.counter(descConnectionsOpened, float64(g.ConnectionsOpened), "")
		}
		for code, n := range g.ClosesByCode {
			e.counter(descConnectionsClosed, float64(n), strconv.Itoa(code))
		}
		e.counter(descSlowConsumer, float64(g.SlowConsumerCloses))
		e.gauge(descSubscriptions, float64(g.Subscriptions))
		e.counter(descDelivered, float64(g.EventsDelivered))
		e.counter(descSentBytes, float64(g.BytesSent))
		e.counter(descCatchUps, float64(g.CatchUps))
		e.counter(descResumes, float64(g.Resumes))
		e.counter(descResets, float64(g.Resets))
		for outcome, n := range g.SyncRequests {
			e.counter(descSyncRequests, float64(n), outcome)
		}
		e.counter(descAuthFailures, float64(g.AuthFailures))
		for code, n := range g.SubscribeRefusals {
			e.counter(descSubRefusals, float64(n), code)
		}
		e.counter(descRevocations, float64(g.Revocations))
	}
	if ev := st.Events; ev != nil {
		for typ, n := range ev.ByType {
			e.counter(descEmitted, float64(n), typ)
		}
		for reason, n := range ev.EmitDropped {
			e.counter(descEmitDropped, float64(n), reason)
		}
	}
	if a := st.ACL; a != nil {
		e.counter(descACLChecks, float64(a.Granted), "granted")
		e.counter(descACLChecks, float64(a.Denied), "denied")
		e.counter(descACLCacheHits, float64(a.CacheHits))
		e.counter(descACLQueries, float64(a.SQLQueries))
	}
	if l := st.EventLog; l != nil {
		e.gauge(descLogEvents, float64(l.Events))
		e.gauge(descLogOldestAge, l.OldestAge.Seconds())
		e.gauge(descLogHeld, float64(l.Held))
		e.gauge(descLogHeldBytes, float64(l.HeldBytes))
		e.counter(descLogHeldDrop, float64(l.HeldDropped))
	}
	if r := st.Replication; r != nil {
		e.gauge(descConnected, boolFloat(r.Connected))
		e.gauge(descCaughtUp, boolFloat(r.CaughtUp))
		e.counter(descReconnects, float64(r.Reconnects))
		e.gauge(descReceivedLSN, float64(r.ReceivedLSN))
		e.gauge(descConfirmedLSN, float64(r.ConfirmedLSN))
		if !r.LastCommit.IsZero() {
			e.gauge(descLastCommit, unixSeconds(r.LastCommit))
		}
		if r.Lag != nil {
			e.gauge(descLagBytes, float64(r.Lag.Bytes))
			e.gauge(descLagSeconds, r.Lag.Duration.Seconds())
		}
	}
	if r := st.Reader; r != nil {
		e.gauge(descReaderLeader, boolFloat(r.State == ReaderLeader))
		e.counter(descFailovers, float64(st.failovers))
	}
	if p := st.Publish; p != nil {
		e.counter(descPublished, float64(p.Published))
		e.counter(descPublishErrors, float64(p.Failures))
	}
	if f := st.Stream; f != nil {
		e.gauge(descFollowing, boolFloat(f.Following))
		e.gauge(descStreamLag, float64(f.Lag))
	}
	if s := st.Slot; s != nil {
		e.gauge(descSlotThreshold, float64(s.Threshold))
		e.counter(descSlotErrors, float64(s.PollErrors))
		if !s.PolledAt.IsZero() {
			e.gauge(descSlotPolled, unixSeconds(s.PolledAt))
			e.gauge(descServerLSN, float64(s.ServerLSN))
			e.gauge(descSlotExists, boolFloat(s.Exists))
			e.gauge(descSlotActive, boolFloat(s.Active))
			e.gauge(descSlotLost, boolFloat(s.Lost))
			e.gauge(descSlotRetained, float64(s.RetainedBytes))
			e.gauge(descSlotOver, boolFloat(s.OverThreshold))
			if s.Exists {
				e.gauge(descSlotConfirmed, float64(s.ConfirmedFlushLSN))
			}
			if s.SafeWALSize != nil {
				e.gauge(descSlotSafe, float64(*s.SafeWALSize))
			}
		}
	}
}

// emitter sends const metrics to a Collect channel.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
