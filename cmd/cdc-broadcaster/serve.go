package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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
	"github.com/treasure-home/cdc-broadcaster/eventlog"
	"github.com/treasure-home/cdc-broadcaster/mapping"
	"github.com/treasure-home/cdc-broadcaster/ws"
)

// ServeCommand runs the service: replication, mapping, event log, gateway.
type ServeCommand struct {
	main *Main
}

// Run parses flags and serves until ctx ends or the stream fails for good.
func (c *ServeCommand) Run(ctx context.Context, args []string) error {
	var pprofAddr string
	cfg, log, err := c.main.configured("serve", args, true, func(fs *flag.FlagSet) {
		fs.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off when empty")
	}, nil)
	if err != nil {
		return err
	}
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
	mapper, resumeAt, err := c.prepare(ctx, cfg, pf, sink, log)
	if err != nil {
		return err
	}
	horizon, err := currentWAL(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		return err
	}
	// The log is rebuilt from the slot: it starts where the slot resumes,
	// and a client cursor from before that is expired. Whatever lies before
	// was committed before now; whatever a client holds a cursor of, before
	// the WAL's end now.
	evlog := eventlog.NewMemory(eventlog.Options{
		MaxEvents:    cfg.Retention.MaxEvents,
		MaxAge:       cfg.Retention.MaxAge,
		MaxHeldBytes: cfg.Retention.MaxHeldBytes,
		Floor:        broadcaster.Cursor{LSN: resumeAt - 1},
		FloorTime:    time.Now(),
		Horizon:      horizon,
	})
	sink.Log = obs.countEvents(evlog)

	audit, closeAudit, err := openAudit(cfg.Audit.Log, c.main.Stdout)
	if err != nil {
		return &configError{err}
	}
	defer closeAudit()

	var gatewayRef atomic.Pointer[ws.Server]
	stream, err := cdc.NewStream(cdc.Config{
		DatabaseURL:    cfg.Source.DatabaseURL,
		Slot:           cfg.Source.Slot,
		Publication:    cfg.Source.Publication,
		Create:         cfg.Source.Create,
		Heartbeat:      cfg.Source.Heartbeat,
		StatusInterval: cfg.Source.StatusInterval,
		Bound:          evlog.Confirmable,
		OnGap: func(at broadcaster.LSN) {
			// Changes were skipped: no cursor from before can resume,
			// and connected clients must refetch.
			floor := broadcaster.Cursor{LSN: at - 1}
			evlog.Raise(floor, time.Now())
			if g := gatewayRef.Load(); g != nil {
				g.ResetAll(floor)
			}
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	gateway, err := ws.NewServer(ws.Options{
		Server:   cfg.Server,
		Limits:   cfg.Limits,
		Log:      evlog,
		Verifier: verifier,
		Access:   newLoggingRules(rules, log),
		Ready: func() (bool, string) {
			if !stream.Status().Connected {
				return false, "replication stream not connected"
			}
			return true, ""
		},
		Audit:           audit,
		Logger:          log,
		StallTimeout:    cfg.Limits.StallTimeout,
		ObserveDelivery: obs.metrics.ObserveDelivery,
	})
	if err != nil {
		return &configError{err}
	}
	gatewayRef.Store(gateway)
	obs.start(stream, gateway, rules, evlog, verifier)
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	var handler http.Handler = gateway.Handler()
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
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := stream.Run(runCtx, mapper); err != nil {
			fail(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := gateway.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			fail(fmt.Errorf("gateway: %w", err))
		}
	}()
	go func() {
		defer wg.Done()
		if err := httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fail(fmt.Errorf("http server: %w", err))
		}
	}()
	log.Info("serving", "version", version, "listen", ln.Addr().String(), "tables", len(mapper.Tables()), "slot", cfg.Source.Slot)

	<-runCtx.Done()
	log.Info("shutting down", "drain_timeout", cfg.Server.DrainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainTimeout)
	defer cancel()
	// Close the WebSockets with 1001 first, so clients reconnect elsewhere,
	// then stop the listener and wait for the rest.
	if err := gateway.Shutdown(drainCtx); err != nil {
		log.Warn("gateway did not drain in time", "err", err)
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

// prepare compiles the mapping against the live schema and runs the
// preflight checks that need the database; only when all of them pass does
// it make sure the publication and slot exist (creating them when
// source.create allows). It returns the position the slot resumes from.
func (c *ServeCommand) prepare(ctx context.Context, cfg *config.Config, pf *preflight, sink broadcaster.Sink, log *slog.Logger) (*mapping.Mapper, broadcaster.LSN, error) {
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
	plan, err := cdc.PlanSetup(ctx, conn, cfg.Source.Publication, cfg.Source.Slot, publishedTables(cfg), nil)
	if err != nil {
		return nil, 0, err
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
	if slot == nil {
		return nil, 0, fmt.Errorf("replication slot %q is missing", cfg.Source.Slot)
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
