package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// clock is a settable fake time.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

var t0 = time.Date(2025, 11, 29, 10, 0, 0, 0, time.UTC)

// fakeSources returns sources with fixed figures, and a slot monitor that
// has polled once.
func fakeSources(t *testing.T, c *clock) Sources {
	t.Helper()
	mon := newTestMonitor(t, c, 100)
	mon.record(slotSample{serverLSN: 0x2000, exists: true, active: true, walStatus: "reserved", confirmed: 0x1800, retained: 150})
	return Sources{
		Stream: func() StreamStatus {
			return StreamStatus{
				Connected: true, CaughtUp: true, Slot: "cdc",
				ReceivedLSN: 0x1F00, ConfirmedLSN: 0x1800,
				LastCommit: t0.Add(-3 * time.Second), Reconnects: 2,
			}
		},
		Gateway: func() GatewayStats {
			return GatewayStats{
				ConnectionsActive: 3, ConnectionsOpened: 7,
				ActiveByRole:       map[string]int64{"teacher": 2, "student": 1},
				Subscriptions:      5,
				EventsDelivered:    40,
				BytesSent:          4096,
				SlowConsumerCloses: 1,
				CatchUps:           2,
				Resumes:            3,
				Resets:             1,
				ClosesByCode:       map[int]uint64{1000: 3, 4009: 1},
				SyncRequests:       map[string]uint64{"events": 4, "forbidden": 1},
				AuthFailures:       6,
				SubscribeRefusals:  map[string]uint64{"forbidden": 5},
				Revocations:        2,
			}
		},
		ACL: func() ACLStats { return ACLStats{Granted: 10, Denied: 4, CacheHits: 3, SQLQueries: 2} },
		Log: func() LogStats {
			return LogStats{Events: 12, Oldest: t0.Add(-90 * time.Second), Held: 3, HeldBytes: 900, HeldDropped: 2}
		},
		Events:      func() map[string]uint64 { return map[string]uint64{"exam.submitted": 9, "user.created": 3} },
		EmitDropped: func() map[string]uint64 { return map[string]uint64{"channel": 2, "type": 0} },
		Slot:        mon,
		Node: func() NodeStatus {
			return NodeStatus{ID: "node-a:8080", Role: "all", Reader: ReaderLeader, ReaderSince: t0.Add(-time.Minute)}
		},
		Publisher: func() PublisherStats { return PublisherStats{Published: 14, Failures: 1, InFlight: 2} },
		Follower: func() FollowerStats {
			return FollowerStats{Following: true, Sequence: 12, LastSequence: 14, Lag: 2}
		},
	}
}

func newTestMetrics(t *testing.T, c *clock, src Sources) *Metrics {
	t.Helper()
	return New(Options{Sources: src, Now: c.now, NoRuntimeMetrics: true})
}

func TestExposition(t *testing.T) {
	c := &clock{t: t0}
	m := newTestMetrics(t, c, fakeSources(t, c))
	const want = `
# HELP cdc_broadcaster_connections_active Authenticated WebSocket connections now open, by token role.
# TYPE cdc_broadcaster_connections_active gauge
cdc_broadcaster_connections_active{role="student"} 1
cdc_broadcaster_connections_active{role="teacher"} 2
# HELP cdc_broadcaster_connections_opened_total WebSocket connections authenticated, by token role (empty until the gateway counts by role).
# TYPE cdc_broadcaster_connections_opened_total counter
cdc_broadcaster_connections_opened_total{role=""} 7
# HELP cdc_broadcaster_connections_closed_total WebSocket connections ended, by close code (1006: broke without one).
# TYPE cdc_broadcaster_connections_closed_total counter
cdc_broadcaster_connections_closed_total{code="1000"} 3
cdc_broadcaster_connections_closed_total{code="4009"} 1
# HELP cdc_broadcaster_slow_consumer_closes_total WebSocket connections closed as slow consumers (4009).
# TYPE cdc_broadcaster_slow_consumer_closes_total counter
cdc_broadcaster_slow_consumer_closes_total 1
# HELP cdc_broadcaster_subscriptions_active Channel subscriptions of the open connections.
# TYPE cdc_broadcaster_subscriptions_active gauge
cdc_broadcaster_subscriptions_active 5
# HELP cdc_broadcaster_events_delivered_total Event frames written to WebSocket clients.
# TYPE cdc_broadcaster_events_delivered_total counter
cdc_broadcaster_events_delivered_total 40
# HELP cdc_broadcaster_websocket_sent_bytes_total Bytes of every frame written to WebSocket clients.
# TYPE cdc_broadcaster_websocket_sent_bytes_total counter
cdc_broadcaster_websocket_sent_bytes_total 4096
# HELP cdc_broadcaster_catch_ups_total Times a connection's send queue was full and it went on reading from the event log.
# TYPE cdc_broadcaster_catch_ups_total counter
cdc_broadcaster_catch_ups_total 2
# HELP cdc_broadcaster_resumes_total Subscriptions resumed from a client's cursor (since).
# TYPE cdc_broadcaster_resumes_total counter
cdc_broadcaster_resumes_total 3
# HELP cdc_broadcaster_resets_total Subscribe requests answered with reset: the cursor was older than the retained log.
# TYPE cdc_broadcaster_resets_total counter
cdc_broadcaster_resets_total 1
# HELP cdc_broadcaster_sync_requests_total GET /api/realtime/sync answers, by outcome.
# TYPE cdc_broadcaster_sync_requests_total counter
cdc_broadcaster_sync_requests_total{outcome="events"} 4
cdc_broadcaster_sync_requests_total{outcome="forbidden"} 1
# HELP cdc_broadcaster_auth_failures_total Refused tokens and first frames.
# TYPE cdc_broadcaster_auth_failures_total counter
cdc_broadcaster_auth_failures_total 6
# HELP cdc_broadcaster_subscribe_refusals_total Channels refused to subscribe requests (one for a request refused whole), by error code.
# TYPE cdc_broadcaster_subscribe_refusals_total counter
cdc_broadcaster_subscribe_refusals_total{code="forbidden"} 5
# HELP cdc_broadcaster_revocations_total Subscriptions revoked after a token refresh or a membership change.
# TYPE cdc_broadcaster_revocations_total counter
cdc_broadcaster_revocations_total 2
# HELP cdc_broadcaster_events_emitted_total Events appended to the event log, by event type.
# TYPE cdc_broadcaster_events_emitted_total counter
cdc_broadcaster_events_emitted_total{type="exam.submitted"} 9
cdc_broadcaster_events_emitted_total{type="user.created"} 3
# HELP cdc_broadcaster_emit_dropped_total Messages of the emit prefix dropped for breaking a rule of the emit section, by reason.
# TYPE cdc_broadcaster_emit_dropped_total counter
cdc_broadcaster_emit_dropped_total{reason="channel"} 2
cdc_broadcaster_emit_dropped_total{reason="type"} 0
# HELP cdc_broadcaster_acl_checks_total Channel access checks, by result (granted, denied).
# TYPE cdc_broadcaster_acl_checks_total counter
cdc_broadcaster_acl_checks_total{result="denied"} 4
cdc_broadcaster_acl_checks_total{result="granted"} 10
# HELP cdc_broadcaster_acl_sql_cache_hits_total Answers of sql access rules served from the cache.
# TYPE cdc_broadcaster_acl_sql_cache_hits_total counter
cdc_broadcaster_acl_sql_cache_hits_total 3
# HELP cdc_broadcaster_acl_sql_queries_total Queries of sql access rules run.
# TYPE cdc_broadcaster_acl_sql_queries_total counter
cdc_broadcaster_acl_sql_queries_total 2
# HELP cdc_broadcaster_eventlog_events Events retained in the event log.
# TYPE cdc_broadcaster_eventlog_events gauge
cdc_broadcaster_eventlog_events 12
# HELP cdc_broadcaster_eventlog_held_bytes Estimated memory of the held events; bounded by retention.max_held_bytes.
# TYPE cdc_broadcaster_eventlog_held_bytes gauge
cdc_broadcaster_eventlog_held_bytes 900
# HELP cdc_broadcaster_eventlog_held_dropped_total Held events dropped over retention.max_held_bytes: the connections still behind them were closed 4009.
# TYPE cdc_broadcaster_eventlog_held_dropped_total counter
cdc_broadcaster_eventlog_held_dropped_total 2
# HELP cdc_broadcaster_eventlog_held_events Events kept past the retention for connections still reading them (catching up after a burst).
# TYPE cdc_broadcaster_eventlog_held_events gauge
cdc_broadcaster_eventlog_held_events 3
# HELP cdc_broadcaster_eventlog_oldest_event_age_seconds Age, by commit time, of the oldest event retained in the event log; 0 when it is empty.
# TYPE cdc_broadcaster_eventlog_oldest_event_age_seconds gauge
cdc_broadcaster_eventlog_oldest_event_age_seconds 90
# HELP cdc_broadcaster_replication_connected 1 while the replication stream is connected.
# TYPE cdc_broadcaster_replication_connected gauge
cdc_broadcaster_replication_connected 1
# HELP cdc_broadcaster_replication_caught_up 1 once the stream has replayed what the slot held back when it started.
# TYPE cdc_broadcaster_replication_caught_up gauge
cdc_broadcaster_replication_caught_up 1
# HELP cdc_broadcaster_replication_reconnects_total Times the replication connection was lost and opened again.
# TYPE cdc_broadcaster_replication_reconnects_total counter
cdc_broadcaster_replication_reconnects_total 2
# HELP cdc_broadcaster_replication_received_lsn_bytes WAL position the replication stream has read up to.
# TYPE cdc_broadcaster_replication_received_lsn_bytes gauge
cdc_broadcaster_replication_received_lsn_bytes 7936
# HELP cdc_broadcaster_replication_confirmed_lsn_bytes WAL position the replication stream last confirmed to the server.
# TYPE cdc_broadcaster_replication_confirmed_lsn_bytes gauge
cdc_broadcaster_replication_confirmed_lsn_bytes 6144
# HELP cdc_broadcaster_replication_last_commit_timestamp_seconds Commit time of the last transaction received, in Unix seconds.
# TYPE cdc_broadcaster_replication_last_commit_timestamp_seconds gauge
cdc_broadcaster_replication_last_commit_timestamp_seconds 1.764410397e+09
# HELP cdc_broadcaster_replication_lag_bytes WAL the server had written at its last poll that the stream has not read yet.
# TYPE cdc_broadcaster_replication_lag_bytes gauge
cdc_broadcaster_replication_lag_bytes 256
# HELP cdc_broadcaster_replication_lag_seconds How long ago the oldest WAL the stream has not read was written; 0 when caught up.
# TYPE cdc_broadcaster_replication_lag_seconds gauge
cdc_broadcaster_replication_lag_seconds 3
# HELP cdc_broadcaster_server_wal_lsn_bytes The database server's current WAL position, at the last poll.
# TYPE cdc_broadcaster_server_wal_lsn_bytes gauge
cdc_broadcaster_server_wal_lsn_bytes 8192
# HELP cdc_broadcaster_slot_confirmed_flush_lsn_bytes The slot's confirmed_flush_lsn, at the last poll.
# TYPE cdc_broadcaster_slot_confirmed_flush_lsn_bytes gauge
cdc_broadcaster_slot_confirmed_flush_lsn_bytes 6144
# HELP cdc_broadcaster_slot_exists 1 when the replication slot exists, at the last poll.
# TYPE cdc_broadcaster_slot_exists gauge
cdc_broadcaster_slot_exists 1
# HELP cdc_broadcaster_slot_active 1 when a connection is reading the replication slot, at the last poll.
# TYPE cdc_broadcaster_slot_active gauge
cdc_broadcaster_slot_active 1
# HELP cdc_broadcaster_slot_lost 1 when the replication slot is invalidated (wal_status lost).
# TYPE cdc_broadcaster_slot_lost gauge
cdc_broadcaster_slot_lost 0
# HELP cdc_broadcaster_slot_wal_retained_bytes WAL the replication slot holds back on the server (current position minus restart_lsn).
# TYPE cdc_broadcaster_slot_wal_retained_bytes gauge
cdc_broadcaster_slot_wal_retained_bytes 150
# HELP cdc_broadcaster_slot_wal_retained_threshold_bytes The retained WAL above which a warning is logged (source.max_retained_wal).
# TYPE cdc_broadcaster_slot_wal_retained_threshold_bytes gauge
cdc_broadcaster_slot_wal_retained_threshold_bytes 100
# HELP cdc_broadcaster_slot_wal_retained_over_threshold 1 while the slot's retained WAL is above the threshold.
# TYPE cdc_broadcaster_slot_wal_retained_over_threshold gauge
cdc_broadcaster_slot_wal_retained_over_threshold 1
# HELP cdc_broadcaster_slot_last_poll_timestamp_seconds Time of the slot monitor's last successful poll, in Unix seconds.
# TYPE cdc_broadcaster_slot_last_poll_timestamp_seconds gauge
cdc_broadcaster_slot_last_poll_timestamp_seconds 1.7644104e+09
# HELP cdc_broadcaster_slot_poll_errors_total Failed polls of the replication slot's state.
# TYPE cdc_broadcaster_slot_poll_errors_total counter
cdc_broadcaster_slot_poll_errors_total 0
# HELP cdc_broadcaster_reader_leader 1 on the node whose reader streams the slot (the leader), 0 on the others.
# TYPE cdc_broadcaster_reader_leader gauge
cdc_broadcaster_reader_leader 1
# HELP cdc_broadcaster_reader_failovers_total Times this node's reader took over as the leader from another.
# TYPE cdc_broadcaster_reader_failovers_total counter
cdc_broadcaster_reader_failovers_total 0
# HELP cdc_broadcaster_stream_published_total Events published to the JetStream stream (again after a failure too).
# TYPE cdc_broadcaster_stream_published_total counter
cdc_broadcaster_stream_published_total 14
# HELP cdc_broadcaster_stream_publish_errors_total Publishes to the JetStream stream that failed (no acknowledgement in time, no quorum, a NATS server gone); each is made again.
# TYPE cdc_broadcaster_stream_publish_errors_total counter
cdc_broadcaster_stream_publish_errors_total 1
# HELP cdc_broadcaster_stream_following 1 while the gateway reads the JetStream stream.
# TYPE cdc_broadcaster_stream_following gauge
cdc_broadcaster_stream_following 1
# HELP cdc_broadcaster_stream_lag_events Events the gateway is behind the JetStream stream's last event.
# TYPE cdc_broadcaster_stream_lag_events gauge
cdc_broadcaster_stream_lag_events 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), metricNames(want)...); err != nil {
		t.Error(err)
	}
	// Nothing else but the three histograms.
	if n, err := testutil.GatherAndCount(m.Registry()); err != nil || n != sampleLines(want)+3 {
		t.Errorf("GatherAndCount = %d, %v; want %d series", n, err, sampleLines(want)+3)
	}
}

// metricNames lists the metric names of an exposition's TYPE lines.
// sampleLines counts the series of an exposition without histograms.
func sampleLines(expo string) int {
	n := 0
	for _, line := range strings.Split(expo, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	return n
}

func testutilCompare(m *Metrics, want string) error {
	return testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), metricNames(want)...)
}

func metricNames(expo string) []string {
	var names []string
	for _, line := range strings.Split(expo, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}

func TestNoSources(t *testing.T) {
	c := &clock{t: t0}
	m := newTestMetrics(t, c, Sources{})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	want := "cdc_broadcaster_acl_sql_query_duration_seconds cdc_broadcaster_commit_to_send_seconds cdc_broadcaster_stream_publish_seconds"
	if strings.Join(got, " ") != want {
		t.Errorf("families = %v; want %s", got, want)
	}
	st := m.Snapshot()
	if st.Gateway != nil || st.Replication != nil || st.Slot != nil || st.Events != nil || st.ACL != nil || st.EventLog != nil ||
		st.Reader != nil || st.Node != "" || st.Publish != nil || st.Stream != nil {
		t.Errorf("Snapshot without sources has sections: %+v", st)
	}
}

func TestLint(t *testing.T) {
	c := &clock{t: t0}
	src := fakeSources(t, c)
	src.Gateway = func() GatewayStats {
		return GatewayStats{OpenedByRole: map[string]uint64{"teacher": 1}, ActiveByRole: map[string]int64{"teacher": 1}}
	}
	m := New(Options{Sources: src, Now: c.now, Version: "test"})
	m.ObserveDelivery(t0.Add(-time.Second))
	m.ObserveSQL(time.Millisecond)
	m.ObservePublish(2 * time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestHistograms(t *testing.T) {
	c := &clock{t: t0}
	m := newTestMetrics(t, c, Sources{})
	m.ObserveDelivery(t0.Add(-1500 * time.Millisecond))
	m.ObserveDelivery(t0.Add(time.Second)) // the database's clock is ahead: no latency
	m.ObserveDelivery(time.Time{})         // no commit time: ignored
	m.ObserveSQL(3 * time.Millisecond)
	m.ObservePublish(20 * time.Millisecond)
	const want = `
# HELP cdc_broadcaster_commit_to_send_seconds Time from an event's commit in the database to its frame written to a client.
# TYPE cdc_broadcaster_commit_to_send_seconds histogram
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.005"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.01"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.025"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.05"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.1"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.25"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="0.5"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="1"} 1
cdc_broadcaster_commit_to_send_seconds_bucket{le="2.5"} 2
cdc_broadcaster_commit_to_send_seconds_bucket{le="5"} 2
cdc_broadcaster_commit_to_send_seconds_bucket{le="10"} 2
cdc_broadcaster_commit_to_send_seconds_bucket{le="30"} 2
cdc_broadcaster_commit_to_send_seconds_bucket{le="60"} 2
cdc_broadcaster_commit_to_send_seconds_bucket{le="300"} 2
cdc_broadcaster_commit_to_send_seconds_bucket{le="+Inf"} 2
cdc_broadcaster_commit_to_send_seconds_sum 1.5
cdc_broadcaster_commit_to_send_seconds_count 2
# HELP cdc_broadcaster_acl_sql_query_duration_seconds Duration of the queries of sql access rules.
# TYPE cdc_broadcaster_acl_sql_query_duration_seconds histogram
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.0005"} 0
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.001"} 0
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.0025"} 0
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.005"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.01"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.025"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.05"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.1"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.25"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="0.5"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="1"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="2.5"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="5"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_bucket{le="+Inf"} 1
cdc_broadcaster_acl_sql_query_duration_seconds_sum 0.003
cdc_broadcaster_acl_sql_query_duration_seconds_count 1
# HELP cdc_broadcaster_stream_publish_seconds Time from publishing an event to the JetStream stream to its acknowledgement.
# TYPE cdc_broadcaster_stream_publish_seconds histogram
cdc_broadcaster_stream_publish_seconds_bucket{le="0.0005"} 0
cdc_broadcaster_stream_publish_seconds_bucket{le="0.001"} 0
cdc_broadcaster_stream_publish_seconds_bucket{le="0.0025"} 0
cdc_broadcaster_stream_publish_seconds_bucket{le="0.005"} 0
cdc_broadcaster_stream_publish_seconds_bucket{le="0.01"} 0
cdc_broadcaster_stream_publish_seconds_bucket{le="0.025"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="0.05"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="0.1"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="0.25"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="0.5"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="1"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="2.5"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="5"} 1
cdc_broadcaster_stream_publish_seconds_bucket{le="+Inf"} 1
cdc_broadcaster_stream_publish_seconds_sum 0.02
cdc_broadcaster_stream_publish_seconds_count 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestOpenedByRole(t *testing.T) {
	c := &clock{t: t0}
	m := newTestMetrics(t, c, Sources{Gateway: func() GatewayStats {
		return GatewayStats{ConnectionsOpened: 3, OpenedByRole: map[string]uint64{"teacher": 2, "none": 1}}
	}})
	const want = `
# HELP cdc_broadcaster_connections_opened_total WebSocket connections authenticated, by token role (empty until the gateway counts by role).
# TYPE cdc_broadcaster_connections_opened_total counter
cdc_broadcaster_connections_opened_total{role="none"} 1
cdc_broadcaster_connections_opened_total{role="teacher"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "cdc_broadcaster_connections_opened_total"); err != nil {
		t.Error(err)
	}
}

// TestLagFollowsStream reads the lag gauges as the stream moves.
func TestLagFollowsStream(t *testing.T) {
	c := &clock{t: t0}
	mon := newTestMonitor(t, c, 0)
	var pos broadcaster.LSN
	commit := t0
	m := newTestMetrics(t, c, Sources{
		Stream: func() StreamStatus { return StreamStatus{ReceivedLSN: pos, LastCommit: commit} },
		Slot:   mon,
	})
	if n := testutil.CollectAndCount(&collector{m}, "cdc_broadcaster_replication_lag_seconds"); n != 0 {
		t.Errorf("lag before the first poll: %d series; want none", n)
	}
	mon.record(slotSample{serverLSN: 100, exists: true})
	c.advance(4 * time.Second)
	bytes, secs := lagGauges(t, m)
	if bytes != 100 || secs != 4 {
		t.Errorf("stream at 0, server at 100 polled 4s ago: lag %v bytes %v s; want 100, 4", bytes, secs)
	}
	pos = 100
	if bytes, secs = lagGauges(t, m); bytes != 0 || secs != 0 {
		t.Errorf("caught up: lag %v bytes %v s; want 0, 0", bytes, secs)
	}
}

func lagGauges(t *testing.T, m *Metrics) (bytes, secs float64) {
	t.Helper()
	st := m.Snapshot()
	if st.Replication == nil || st.Replication.Lag == nil {
		t.Fatal("no lag in the snapshot")
	}
	return float64(st.Replication.Lag.Bytes), st.Replication.Lag.Duration.Seconds()
}
