package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/metrics"
	"github.com/treasure-home/cdc-broadcaster/ws"
)

// observer wires the service's metrics: the Prometheus registry and the
// sources it reads, the count of events by type in front of the event log,
// the replication slot monitor on a pool of its own, and the handlers of
// GET /metrics and GET /api/realtime/stats.
//
// Make it with newObserver before the components (their hooks are its
// methods), call start once they exist, and close it when serve ends.
type observer struct {
	metrics *metrics.Metrics
	monitor *metrics.SlotMonitor
	pool    *pgxpool.Pool
	events  *metrics.CountingLog
	stats   http.Handler
	// node is this node's id; reader its reader's state.
	node   string
	reader readerState

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newObserver makes the registry and the slot monitor. maxRetainedWAL is
// the WAL, in bytes, the slot may retain before a warning (0: 1 GiB). The
// monitor's pool connects at its first poll, not here.
func newObserver(cfg *config.Config, log *slog.Logger, maxRetainedWAL uint64) (*observer, error) {
	pc, err := pgxpool.ParseConfig(cfg.Source.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "cdc-broadcaster-monitor"
	pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pc.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("open slot monitor pool: %w", err)
	}
	monitor, err := metrics.NewSlotMonitor(metrics.SlotMonitorOptions{
		Slot:           cfg.Source.Slot,
		DB:             pool,
		MaxRetainedWAL: maxRetainedWAL,
		Logger:         log,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &observer{
		metrics: metrics.New(metrics.Options{Version: version}),
		monitor: monitor,
		pool:    pool,
		node:    nodeID(cfg.Server.Listen),
		reader:  readerState{state: metrics.ReaderOff, since: time.Now()},
	}, nil
}

// nodeID names the node in a cluster: the host's name and the port it
// serves on (server.listen), "serve-a:8080". In Kubernetes the host name
// is the pod's; on one machine, nodes differ by port.
func nodeID(listen string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	port := listen
	if _, p, err := net.SplitHostPort(listen); err == nil {
		port = p
	}
	return net.JoinHostPort(host, port)
}

// readerState is the reader's state (leader, standby, off) and since when.
// A node with the reader role is the leader while its replication stream
// is connected (with log.backend nats: while it holds the reader lock and
// streams), a standby otherwise.
type readerState struct {
	mu    sync.Mutex
	state string
	since time.Time
}

// set records the state, and the time it changed.
func (r *readerState) set(state string, now time.Time) (string, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if state != r.state {
		r.state, r.since = state, now
	}
	return r.state, r.since
}

// readerOf is the reader state a stream (nil: no reader role) is in.
func readerOf(stream *cdc.Stream) string {
	switch {
	case stream == nil:
		return metrics.ReaderOff
	case stream.Status().Connected:
		return metrics.ReaderLeader
	}
	// Waiting for the reader lock, or for the database.
	return metrics.ReaderStandby
}

// countEvents puts the count of emitted events in front of the log.
func (o *observer) countEvents(l broadcaster.Log) broadcaster.Log {
	o.events = metrics.NewCountingLog(l)
	return o.events
}

// start points the metrics at the components and starts the slot monitor.
// role is serve's --role.
func (o *observer) start(role string, stream *cdc.Stream, gateway *ws.Server, rules *acl.Rules, l *eventLog, verifier *acl.Verifier) {
	evlog := l.cache
	o.reader.set(readerOf(stream), time.Now())
	src := metrics.Sources{
		Node: func() metrics.NodeStatus {
			state, since := o.reader.set(readerOf(stream), time.Now())
			var takeovers uint64
			if l.writer != nil {
				takeovers = l.writer.Takeovers()
			}
			return metrics.NodeStatus{ID: o.node, Role: role, Reader: state, ReaderSince: since, Failovers: takeovers}
		},
		ACL: func() metrics.ACLStats {
			s := rules.Stats()
			return metrics.ACLStats{Granted: s.Granted, Denied: s.Denied, CacheHits: s.CacheHits, SQLQueries: s.SQLQueries}
		},
	}
	// A node without a gateway on the stream (serve --role reader) keeps
	// no events in memory.
	if evlog != nil {
		src.Log = func() metrics.LogStats {
			s := evlog.Stats()
			return metrics.LogStats{Events: s.Events, Oldest: s.Oldest, Held: s.Held, HeldBytes: s.HeldBytes, HeldDropped: s.OverBudget}
		}
	}
	// A node without a reader (serve --role gateway) has no stream, no
	// slot of its own to watch and no event counts; one without a gateway
	// no connections.
	if stream != nil {
		src.Stream = func() metrics.StreamStatus { return streamStatus(stream.Status()) }
		src.Slot = o.monitor
	}
	if gateway != nil {
		src.Gateway = func() metrics.GatewayStats { return gatewayStats(gateway.Stats()) }
	}
	if o.events != nil {
		src.Events = o.events.Counts
	}
	if w := l.writer; w != nil {
		src.Publisher = func() metrics.PublisherStats {
			s := w.Stats()
			return metrics.PublisherStats{Published: s.Published, Failures: s.Failures, InFlight: s.InFlight, Recovering: s.Recovering}
		}
	}
	if f := l.follower; f != nil {
		src.Follower = func() metrics.FollowerStats {
			s := f.Status()
			return metrics.FollowerStats{Following: s.Following, Sequence: s.Seq, LastSequence: s.Last, Lag: s.Lag, Error: s.Err}
		}
	}
	o.metrics.Watch(src)
	o.stats = metrics.StatsHandler(o.metrics.Snapshot, adminAuth(verifier, rules))

	if stream == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.wg.Add(2)
	go func() {
		defer o.wg.Done()
		o.monitor.Run(ctx)
	}()
	// The reader's state is followed between scrapes too, so that since
	// is when it changed.
	go func() {
		defer o.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				o.reader.set(readerOf(stream), now)
			case <-ctx.Done():
				return
			}
		}
	}()
}

// handler serves GET /metrics and GET /api/realtime/stats, and passes every
// other request to next. Call it after start.
func (o *observer) handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	mux.Handle("/api/realtime/stats", o.stats)
	mux.Handle("/", next)
	return mux
}

// close stops the slot monitor and closes its pool.
func (o *observer) close() {
	if o.cancel != nil {
		o.cancel()
	}
	o.wg.Wait()
	o.pool.Close()
}

func streamStatus(s cdc.Status) metrics.StreamStatus {
	return metrics.StreamStatus{
		Standby:      s.Standby,
		Connected:    s.Connected,
		CaughtUp:     s.CaughtUp,
		Slot:         s.Slot,
		ReceivedLSN:  max(s.ReceivedLSN, s.ServerWALEnd),
		ConfirmedLSN: s.ConfirmedLSN,
		LastCommit:   s.LastCommit,
		Reconnects:   s.Reconnects,
	}
}

func gatewayStats(s ws.Stats) metrics.GatewayStats {
	return metrics.GatewayStats{
		ConnectionsActive:  s.ConnectionsActive,
		ConnectionsOpened:  s.ConnectionsTotal,
		ActiveByRole:       s.ByRole,
		OpenedByRole:       s.OpenedByRole,
		Subscriptions:      s.Subscriptions,
		EventsDelivered:    s.EventsDelivered,
		BytesSent:          s.BytesSent,
		SlowConsumerCloses: s.Overflows,
		CatchUps:           s.CatchUps,
		Resumes:            s.Resumes,
		Resets:             s.Resets,
		ClosesByCode:       s.ClosesByCode,
		SyncRequests:       s.SyncRequests,
		AuthFailures:       s.AuthFailures,
		SubscribeRefusals:  s.SubscribeRefusals,
		Revocations:        s.Revocations,
	}
}

// adminAuth checks the Bearer token of a stats request and whether its
// holder has one of auth.admin_roles.
func adminAuth(v *acl.Verifier, rules *acl.Rules) metrics.Authenticator {
	return func(r *http.Request) (admin, ok bool) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return false, false
		}
		claims, err := v.Verify(token)
		if err != nil {
			return false, false
		}
		return rules.IsAdmin(claims), true
	}
}
