package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
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
	}, nil
}

// countEvents puts the count of emitted events in front of the log.
func (o *observer) countEvents(l broadcaster.Log) broadcaster.Log {
	o.events = metrics.NewCountingLog(l)
	return o.events
}

// start points the metrics at the components and starts the slot monitor.
func (o *observer) start(stream *cdc.Stream, gateway *ws.Server, rules *acl.Rules, evlog *eventlog.Memory, verifier *acl.Verifier) {
	src := metrics.Sources{
		ACL: func() metrics.ACLStats {
			s := rules.Stats()
			return metrics.ACLStats{Granted: s.Granted, Denied: s.Denied, CacheHits: s.CacheHits, SQLQueries: s.SQLQueries}
		},
		Log: func() metrics.LogStats {
			s := evlog.Stats()
			return metrics.LogStats{Events: s.Events, Oldest: s.Oldest, Held: s.Held, HeldBytes: s.HeldBytes, HeldDropped: s.OverBudget}
		},
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
	o.metrics.Watch(src)
	o.stats = metrics.StatsHandler(o.metrics.Snapshot, adminAuth(verifier, rules))

	if stream == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.monitor.Run(ctx)
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
