package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
)

// ServeCommand runs the pipeline: replication, mapping, event log.
type ServeCommand struct {
	main       *Main
	configPath string
}

// Run parses flags and serves until ctx ends.
func (c *ServeCommand) Run(ctx context.Context, args []string) error {
	fs := c.main.newFlagSet("serve")
	fs.StringVar(&c.configPath, "config", "config.yaml", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := c.main.loadConfig(c.configPath)
	if err != nil {
		return err
	}
	log := c.main.newLogger(cfg.Log)

	evlog := eventlog.NewMemory(eventlog.Options{MaxEvents: cfg.Retention.MaxEvents, MaxAge: cfg.Retention.MaxAge})
	sink := &tracingLog{Log: evlog, log: log}

	conn, err := connect(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	mapper, _, err := compileMapping(ctx, conn, cfg, sink, log)
	if err != nil {
		return err
	}
	plan, err := cdc.PlanSetup(ctx, conn, cfg.Source.Publication, cfg.Source.Slot, publishedTables(cfg), nil)
	if err != nil {
		return err
	}
	if len(plan.Statements) > 0 {
		if !cfg.Source.Create {
			return fmt.Errorf("the database is not ready (source.create is false); run `cdc-broadcaster setup`, which would run:\n  %s", strings.Join(plan.Statements, ";\n  "))
		}
		for _, st := range plan.Statements {
			log.Info("setting up replication", "sql", st)
		}
		if err := plan.Apply(ctx, conn); err != nil {
			return err
		}
	}
	conn.Close(context.Background())

	stream, err := cdc.NewStream(cdc.Config{
		DatabaseURL:    cfg.Source.DatabaseURL,
		Slot:           cfg.Source.Slot,
		Publication:    cfg.Source.Publication,
		Create:         cfg.Source.Create,
		Heartbeat:      cfg.Source.Heartbeat,
		StatusInterval: cfg.Source.StatusInterval,
		Bound:          evlog.Confirmable,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	log.Info("serving", "version", version, "tables", len(mapper.Tables()), "slot", cfg.Source.Slot)
	// The gateway (next) re-checks access when these tables change.
	handler := newRecheckTee(mapper, recheckTables(cfg), nil)
	if err := stream.Run(ctx, handler); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
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
			if !head.Before(ev.ID) {
				continue
			}
			t.log.LogAttrs(ctx, slog.LevelDebug, "event",
				slog.String("eventId", ev.ID.String()), slog.String("type", ev.Type),
				slog.String("table", ev.Table), slog.Uint64("txId", uint64(ev.TxID)))
		}
	}
	return t.Log.Append(ctx, b)
}
