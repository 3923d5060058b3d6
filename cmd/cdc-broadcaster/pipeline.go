package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/mapping"
)

// connect opens an ordinary (non-replication) connection for catalog work.
// A URL that does not parse is a config error.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, &configError{fmt.Errorf("source.database_url: %w", err)}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return conn, nil
}

// currentWAL returns the database's WAL insert position: every commit a
// client may hold a cursor of lies before it.
func currentWAL(ctx context.Context, url string) (broadcaster.LSN, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("read the WAL position: %w", err)
	}
	return broadcaster.ParseLSN(lsn)
}

// mappedTables returns the table names the mappings name.
func mappedTables(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Mappings))
	for _, mp := range cfg.Mappings {
		names = append(names, mp.Table)
	}
	return names
}

// compileMapping reads the mapped tables from the catalog and compiles the
// mapping against them. Mapping problems come back as a configError naming
// the file line of each key where it can.
func compileMapping(ctx context.Context, conn *pgx.Conn, cfg *config.Config, sink broadcaster.Sink, log *slog.Logger) (*mapping.Mapper, map[string]*cdc.TableInfo, error) {
	tables, err := cdc.LoadTables(ctx, conn, mappedTables(cfg))
	if err != nil {
		return nil, nil, err
	}
	// Changes of the recheck_on tables end their transaction with a control
	// record, which the gateway applies in commit order.
	m, err := mapping.New(cfg.Mappings, cdc.Relations(tables), sink, mapping.Options{Logger: log, Watch: recheckTables(cfg), Emit: cfg.Emit})
	if err != nil {
		return nil, nil, &configError{annotate(cfg, err)}
	}
	return m, tables, nil
}

// configProblems splits the error of compileMapping into the config
// problems it holds and any other error.
func configProblems(err error) (config.Errors, error) {
	var ce *configError
	if err == nil || !errors.As(err, &ce) {
		return nil, err
	}
	var errs config.Errors
	if errors.As(ce.err, &errs) {
		return errs, nil
	}
	return config.Errors{{Msg: ce.err.Error()}}, nil
}

// annotate turns mapping errors into config errors with file and line.
func annotate(cfg *config.Config, err error) error {
	var errs mapping.Errors
	if !errors.As(err, &errs) {
		return err
	}
	out := make(config.Errors, 0, len(errs))
	for _, e := range errs {
		msg := e.Msg
		if e.Table != "" && !strings.Contains(msg, e.Table) {
			msg = "(mapping of table " + e.Table + ") " + msg
		}
		out = append(out, &config.Error{File: cfg.File, Line: cfg.Line(e.Key), Key: e.Key, Msg: msg})
	}
	return out
}

// discard is a Sink that drops everything, for commands that only compile.
type discard struct{}

func (discard) Append(context.Context, broadcaster.Batch) error { return nil }
