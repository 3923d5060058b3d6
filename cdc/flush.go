package cdc

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// DefaultFlushInterval is WALFlusher.Interval's default.
const DefaultFlushInterval = 500 * time.Millisecond

// WALFlusher gets WAL that nothing flushes to the replication stream. A
// walsender sends only flushed WAL, and a non-transactional logical
// decoding message (an emitted progress tick) is written without a flush:
// before PostgreSQL 17 always, from 17 unless its flush argument is true.
// On a quiet database, with the application's long transaction still open,
// such a message would wait for the next commit anywhere on the server.
//
// Each Interval the flusher compares the server's flushed WAL position with
// the insert position it saw the time before. When the flush has not passed
// it, it commits a transaction of its own that has a transaction id
// (txid_current()): its commit makes the WAL writer flush everything before
// it. On a busy database other commits flush first and it only polls.
type WALFlusher struct {
	// DatabaseURL is where to connect (an ordinary connection).
	DatabaseURL string
	// Interval is how often it looks. Default DefaultFlushInterval.
	Interval time.Duration
	// Active, when set, says whether to look now (a reader that leads).
	Active func() bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Run looks every Interval until ctx ends. Problems are logged, and it
// goes on.
func (f *WALFlusher) Run(ctx context.Context) {
	interval := f.Interval
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	var (
		conn       *pgx.Conn
		prevInsert broadcaster.LSN
		failing    bool
	)
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f.Active != nil && !f.Active() {
			prevInsert = 0
			continue
		}
		var err error
		if conn == nil {
			if conn, err = f.connect(ctx); err != nil {
				conn = nil
			}
		}
		if err == nil {
			prevInsert, err = f.nudge(ctx, conn, prevInsert)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			log.Warn("wal flusher: emitted events that are not transactional may wait for the next commit", "err", redactErr(err, f.DatabaseURL))
			failing = true
		case err == nil && failing:
			log.Info("wal flusher: working again")
			failing = false
		}
		if err != nil && conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
}

func (f *WALFlusher) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(f.DatabaseURL)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "cdc-broadcaster-flush"
	return pgx.ConnectConfig(ctx, cfg)
}

// nudge reads the insert and flush positions and commits a transaction
// with an id when the flush has not passed prevInsert, the insert position
// of the look before. It returns the insert position now.
func (f *WALFlusher) nudge(ctx context.Context, conn *pgx.Conn, prevInsert broadcaster.LSN) (broadcaster.LSN, error) {
	var insertText, flushText string
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_insert_lsn()::text, pg_catalog.pg_current_wal_flush_lsn()::text").Scan(&insertText, &flushText); err != nil {
		return prevInsert, err
	}
	insert, err := broadcaster.ParseLSN(insertText)
	if err != nil {
		return prevInsert, err
	}
	flush, err := broadcaster.ParseLSN(flushText)
	if err != nil {
		return prevInsert, err
	}
	if prevInsert != 0 && flush < prevInsert {
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.txid_current()"); err != nil {
			return insert, err
		}
	}
	return insert, nil
}
