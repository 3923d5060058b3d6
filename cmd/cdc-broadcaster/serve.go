package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/demo"
	"github.com/treasure-home/cdc-broadcaster/mapping"
	"github.com/treasure-home/cdc-broadcaster/natslog"
	"github.com/treasure-home/cdc-broadcaster/ws"
)

// ServeCommand runs the service: replication, mapping, event log, gateway.
type ServeCommand struct {
	main *Main
}

// Run parses flags and serves until ctx ends or the stream fails for good.
func (c *ServeCommand) Run(ctx context.Context, args []string) error {
	var pprofAddr, role string
	cfg, log, err := c.main.configured("serve", args, true, func(fs *flag.FlagSet) {
		fs.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off when empty")
		fs.StringVar(&role, "role", roleAll, "all, reader (replication only) or gateway (clients only); reader and gateway need log.backend: nats")
	}, func() error { return checkRole(role) })
	if err != nil {
		return err
	}
	if role != roleAll && cfg.Log.Backend != config.BackendNATS {
		return &configError{fmt.Errorf("serve --role %s needs log.backend: nats (with the memory log one process is reader and gateway)", role)}
	}
	isReader, isGateway := role != roleGateway, role != roleReader
	urlCheck := &preflight{cfg: cfg}
	if urlCheck.checkURL(); urlCheck.err() != nil {
		return urlCheck.err()
	}
	if pprofAddr != "" {
		stopPprof, err := servePprof(pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	obs, err := newObserver(cfg, log, uint64(cfg.Source.MaxRetainedWAL))
	if err != nil {
		return &configError{err}
	}
	defer obs.close()

	// Everything that can be known is checked before prepare creates
	// anything in the database: a refused config leaves no slot behind.
	readPool, poolErr := newReadPool(ctx, cfg.Source.DatabaseURL)
	var ruleDB acl.Querier
	if poolErr == nil {
		defer readPool.Close()
		ruleDB = readPool
	}
	pf := newPreflight(ctx, cfg, preflightOptions{
		db: ruleDB, jwt: true, keepVerifier: true, logger: log,
		rulesOptions: acl.RulesOptions{Logger: log, ObserveSQL: obs.metrics.ObserveSQL},
	})
	if pf.verifier != nil {
		defer pf.verifier.Close()
	}
	if poolErr != nil {
		return poolErr
	}
	verifier, rules := pf.verifier, pf.rules

	sink := &tracingLog{log: log}
	var (
		mapper   *mapping.Mapper
		resumeAt broadcaster.LSN
	)
	var evlog *eventLog
	defer func() {
		if evlog != nil {
			evlog.close()
		}
	}()
	// NATS is connected to, and the stream checked, after the config
	// checks and before prepare creates anything: credentials or TLS that
	// NATS refuses (exit 1), or a stream that cannot be used (exit 2),
	// leave no slot behind either.
	openNATS := func() (err error) {
		if cfg.Log.Backend == config.BackendNATS {
			evlog, err = openNATSLog(ctx, cfg, log, obs.node, isReader, isGateway, obs.metrics.ObservePublish)
		}
		return err
	}
	if isReader {
		streamHasEvents := func() bool { return evlog != nil && evlog.writer != nil && !evlog.writer.Head().IsZero() }
		if mapper, resumeAt, err = c.prepare(ctx, cfg, pf, sink, log, openNATS, streamHasEvents); err != nil {
			return err
		}
	} else if err := pf.err(); err != nil {
		return err
	} else if err := openNATS(); err != nil {
		return err
	}
	if cfg.Log.Backend != config.BackendNATS {
		horizon, err := currentWAL(ctx, cfg.Source.DatabaseURL)
		if err != nil {
			return err
		}
		evlog = openMemoryLog(cfg, resumeAt, horizon)
	}
	if isReader {
		sink.Log = obs.countEvents(&visibleLog{Log: evlog.sink, db: readPool, log: log})
		obs.emitDropped = mapper.EmitDropped
	}

	audit, closeAudit, err := openAudit(cfg.Audit.Log, c.main.Stdout)
	if err != nil {
		return &configError{err}
	}
	defer closeAudit()

	var gatewayRef atomic.Pointer[ws.Server]
	var stream *cdc.Stream
	if isReader {
		stream, err = cdc.NewStream(cdc.Config{
			DatabaseURL:    cfg.Source.DatabaseURL,
			Slot:           cfg.Source.Slot,
			Publication:    cfg.Source.Publication,
			Create:         cfg.Source.Create,
			Heartbeat:      cfg.Source.Heartbeat,
			StatusInterval: cfg.Source.StatusInterval,
			Bound:          evlog.bound,
			// On the stream, readers are elected: one leads, the
			// others stand by (docs/cluster.md).
			Elect:           evlog.writer != nil,
			Terms:           termsOf(evlog.writer),
			FailoverTimeout: cfg.Source.FailoverTimeout,
			OnGap: func(at broadcaster.LSN) {
				floor := broadcaster.Cursor{LSN: at - 1}
				if evlog.memory == nil {
					// The stream carries the gap to every gateway, in
					// order: each raises its floor there and tells its
					// clients to reset. An empty stream has no cursor
					// to end.
					head := evlog.sink.Head()
					if head.IsZero() {
						return
					}
					if !head.Before(floor) {
						floor = broadcaster.Cursor{LSN: head.LSN, Pos: head.Pos + 1}
					}
					gap := broadcaster.Batch{Events: []broadcaster.Event{{ID: floor, Gap: true, Timestamp: time.Now()}}}
					if err := evlog.sink.Append(context.Background(), gap); err != nil {
						log.Error("cannot publish the gap to the event stream; the gateways' clients are not told to reset", "err", err)
					}
					return
				}
				// Changes were skipped: no cursor from before can resume,
				// and connected clients must refetch.
				evlog.memory.Raise(floor, time.Now())
				if g := gatewayRef.Load(); g != nil {
					g.ResetAll(floor)
				}
			},
			Logger: log,
		})
		if err != nil {
			return err
		}
	}
	ready := func() (bool, string) {
		if f := evlog.follower; f != nil {
			if st := f.Status(); !st.Following && st.Err == "" {
				return false, "not reading the event stream yet"
			} else if !st.Following {
				return false, "not reading the event stream: " + st.Err
			} else if st.Lag > uint64(cfg.Log.CacheEvents) {
				return false, fmt.Sprintf("%d events behind the event stream, more than log.cache_events", st.Lag)
			}
			return true, ""
		}
		if st := stream.Status(); !st.Connected && !st.Standby {
			return false, "replication stream not connected"
		}
		return true, ""
	}
	var gateway *ws.Server
	var handler http.Handler
	if isGateway {
		gateway, err = ws.NewServer(ws.Options{
			Server:          cfg.Server,
			Limits:          cfg.Limits,
			Log:             evlog.reader,
			Verifier:        verifier,
			Access:          newLoggingRules(rules, log),
			Ready:           ready,
			Audit:           audit,
			Logger:          log,
			StallTimeout:    cfg.Limits.StallTimeout,
			ObserveDelivery: obs.metrics.ObserveDelivery,
		})
		if err != nil {
			return &configError{err}
		}
		gatewayRef.Store(gateway)
		handler = gateway.Handler()
		if f := evlog.follower; f != nil {
			f.OnReset = gateway.ResetAll
		}
	} else {
		handler = healthHandler(ready)
	}
	obs.start(role, stream, gateway, rules, evlog, verifier)
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	if cfg.Server.Demo {
		log.Warn("server.demo is on: /demo/ mints a token for any user of the database; never in production")
		mux := http.NewServeMux()
		mux.Handle("/", handler)
		mux.Handle(demo.Prefix, demo.Handler(demo.Options{
			JWT: cfg.Auth.JWT, Verifier: verifier, DB: readPool,
			AdminRoles: cfg.Auth.AdminRoles, Logger: log,
		}))
		handler = mux
	}
	httpServer := &http.Server{
		Handler:           obs.handler(handler),
		ConnContext:       ws.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		stop()
	}
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				fail(err)
			}
		}()
	}
	if stream != nil {
		run(func() error { return stream.Run(runCtx, mapper) })
		if cfg.Emit.Enabled {
			// Non-transactional emitted events reach the stream only
			// once their WAL is flushed.
			flusher := &cdc.WALFlusher{DatabaseURL: cfg.Source.DatabaseURL, Active: func() bool { return stream.Status().Connected }, Logger: log}
			run(func() error { flusher.Run(runCtx); return nil })
		}
	}
	if f := evlog.follower; f != nil {
		run(func() error { return f.Run(runCtx) })
	}
	if gateway != nil {
		run(func() error {
			if err := gateway.Run(runCtx); err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
			return nil
		})
	}
	run(func() error {
		if err := httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	tables := 0
	if mapper != nil {
		tables = len(mapper.Tables())
	}
	log.Info("serving", "version", version, "listen", ln.Addr().String(), "role", role, "log", cfg.Log.Backend, "tables", tables, "slot", cfg.Source.Slot)

	<-runCtx.Done()
	log.Info("shutting down", "drain_timeout", cfg.Server.DrainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainTimeout)
	defer cancel()
	// Close the WebSockets with 1001 first, so clients reconnect elsewhere,
	// then stop the listener and wait for the rest.
	if gateway != nil {
		if err := gateway.Shutdown(drainCtx); err != nil {
			log.Warn("gateway did not drain in time", "err", err)
		}
	}
	if err := httpServer.Shutdown(drainCtx); err != nil {
		log.Warn("http server did not drain in time", "err", err)
		httpServer.Close()
	}
	stop()
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	log.Info("stopped")
	return nil
}

// slotFreeWait is how long serve with the memory log waits for a slot
// another process streams to be let go before it refuses to start.
const slotFreeWait = 3 * time.Second

// termsOf is the writer as the stream's terms (nil without a writer).
func termsOf(w *natslog.Writer) broadcaster.Terms {
	if w == nil {
		return nil
	}
	return w
}

// healthHandler serves GET /healthz and GET /readyz for a node without a
// gateway (serve --role reader).
func healthHandler(ready func() (bool, string)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ok, why := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			b, _ := json.Marshal(map[string]string{"status": "not ready", "reason": why})
			w.Write(append(b, '\n'))
			return
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	return mux
}

// prepare compiles the mapping against the live schema and runs the
// preflight checks that need the database; only when all of them pass, and
// beforeSetup (which connects to NATS) succeeded, does it make sure the
// publication and slot exist (creating them when source.create allows;
// with a stream that has events already, a missing slot is left to the
// leader). It returns the position the slot resumes from.
func (c *ServeCommand) prepare(ctx context.Context, cfg *config.Config, pf *preflight, sink broadcaster.Sink, log *slog.Logger, beforeSetup func() error, streamHasEvents func() bool) (*mapping.Mapper, broadcaster.LSN, error) {
	conn, err := connect(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		if pf.err() != nil {
			return nil, 0, pf.err()
		}
		return nil, 0, err
	}
	defer conn.Close(context.Background())
	mapper, _, err := compileMapping(ctx, conn, cfg, sink, log)
	problems, err := configProblems(err)
	if err != nil {
		return nil, 0, err
	}
	if err := pf.database(ctx, conn); err != nil {
		return nil, 0, err
	}
	if problems = append(problems, pf.problems...); len(problems) > 0 {
		return nil, 0, &configError{problems}
	}
	for _, w := range pf.warnings {
		log.Warn("config: " + w)
	}
	if err := beforeSetup(); err != nil {
		return nil, 0, err
	}
	plan, err := cdc.PlanSetup(ctx, conn, cfg.Source.Publication, cfg.Source.Slot, publishedTables(cfg), nil)
	if err != nil {
		return nil, 0, err
	}
	elected := cfg.Log.Backend == config.BackendNATS
	leaveSlot := elected && cfg.Source.Create && streamHasEvents()
	if leaveSlot {
		// A stream with events and no slot: the slot was dropped (or the
		// database failed over without it). The leader creates it when
		// its term begins and tells the gateways, in order, that what
		// came before is lost.
		plan.Statements = slices.DeleteFunc(plan.Statements, func(st string) bool {
			return strings.Contains(st, "pg_create_logical_replication_slot")
		})
	}
	if len(plan.Statements) > 0 {
		if !cfg.Source.Create {
			return nil, 0, fmt.Errorf("the database is not ready (source.create is false); run `cdc-broadcaster setup`, which would run:\n  %s", strings.Join(plan.Statements, ";\n  "))
		}
		for _, st := range plan.Statements {
			log.Info("setting up replication", "sql", st)
		}
		if err := plan.Apply(ctx, conn); err != nil {
			return nil, 0, err
		}
	}
	slot, err := cdc.LookupSlot(ctx, conn, cfg.Source.Slot)
	if err != nil {
		return nil, 0, err
	}
	if slot == nil && leaveSlot {
		return mapper, 0, nil
	}
	if slot == nil {
		return nil, 0, fmt.Errorf("replication slot %q is missing", cfg.Source.Slot)
	}
	if !elected && slot.Active {
		// Another process streams the slot. One that just stopped may
		// not have let go yet: wait a little before refusing.
		for deadline := time.Now().Add(slotFreeWait); slot != nil && slot.Active && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			if slot, err = cdc.LookupSlot(ctx, conn, cfg.Source.Slot); err != nil {
				return nil, 0, err
			}
		}
		if slot != nil && slot.Active {
			return nil, 0, fmt.Errorf("replication slot %q is being read by another process (PostgreSQL backend pid %d): with log.backend: memory one serve reads a slot; stop the other one, give this one a slot of its own (source.slot), or run several nodes on a NATS stream (log.backend: nats, docs/cluster.md)", cfg.Source.Slot, slot.ActivePID)
		}
		if slot == nil {
			return nil, 0, fmt.Errorf("replication slot %q is missing", cfg.Source.Slot)
		}
	}
	if slot.WALStatus == "lost" {
		return nil, 0, fmt.Errorf("replication slot %q is invalidated (wal_status lost: the WAL it needed was removed, see max_slot_wal_keep_size); drop it with SELECT pg_drop_replication_slot('%s') and start again: clients will be told to reset", cfg.Source.Slot, cfg.Source.Slot)
	}
	return mapper, slot.ConfirmedLSN, nil
}

// newReadPool opens the pool the access rules' `sql` checks run on, read-only
// by default so a rule can never write.
func newReadPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, &configError{fmt.Errorf("source.database_url: %w", err)}
	}
	pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pc.ConnConfig.RuntimeParams["application_name"] = "cdc-broadcaster-acl"
	pc.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open read pool: %w", err)
	}
	return pool, nil
}

// openAudit opens the audit log destination: stdout, stderr or a file,
// appended to.
func openAudit(dest string, stdout io.Writer) (io.Writer, func(), error) {
	switch dest {
	case "", "stdout":
		return stdout, func() {}, nil
	case "stderr":
		return os.Stderr, func() {}, nil
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("audit.log: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// tracingLog logs every event the log takes in at debug level (not the
// replays it skips): its id and type, never its payload.
type tracingLog struct {
	broadcaster.Log
	log *slog.Logger
}

func (t *tracingLog) Append(ctx context.Context, b broadcaster.Batch) error {
	if t.log.Enabled(ctx, slog.LevelDebug) {
		head := t.Log.Head()
		for i := range b.Events {
			ev := &b.Events[i]
			if !head.Before(ev.ID) || ev.IsControl() {
				continue
			}
			t.log.LogAttrs(ctx, slog.LevelDebug, "event",
				slog.String("eventId", ev.ID.String()), slog.String("type", ev.Type),
				slog.String("table", ev.Table), slog.Uint64("txId", uint64(ev.TxID)))
		}
	}
	return t.Log.Append(ctx, b)
}
