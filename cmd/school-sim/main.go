// Command school-sim simulates school life at Treasure-Home against the
// example schema (migrations/001_school_schema.sql and 010_example_data.sql),
// so that cdc-broadcaster has a steady stream of realistic changes to map:
// exams created, published, sat, submitted, graded and closed; attendance
// marked and corrected; announcements; report cards drafted, published and
// finalized; admissions; vacancies and applications; uploads; notifications.
//
// Usage:
//
//	school-sim -db postgres://postgres@127.0.0.1:5432/school [-rate 2] [-duration 0] [-seed 0]
//
// Each action is one transaction, many of them naming their actor with
// pg_logical_emit_message(true, 'cdc.actor', '<user id>'). An action that
// fails is logged on stderr and the simulation goes on. One human line per
// action goes to stdout; a per-action summary goes to stderr at the end.
// SIGINT or SIGTERM, or the end of -duration, stops it after the action in
// flight; a second signal kills it at once.
//
// The simulator is single-threaded: one action at a time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// options are the command-line flags.
type options struct {
	DB       string
	Rate     float64
	Duration time.Duration
	Seed     uint64
}

// maxRate bounds -rate: the loop does one action at a time, so more than
// this would only measure the database.
const maxRate = 1000

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit, returning the exit code: 0 after a
// clean stop, 1 when the database cannot be reached, 2 on a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "school-sim:", err)
		return 2
	}

	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-sigCtx.Done()
		stop() // a second signal now kills the process
	}()
	ctx := sigCtx
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	pool, err := connect(ctx, opts.DB)
	if err != nil {
		fmt.Fprintln(stderr, "school-sim:", err)
		return 1
	}
	defer pool.Close()

	s := newSim(pool, opts.Seed, stdout, log)
	log.Info("simulating school life", "rate", opts.Rate, "duration", opts.Duration, "seed", opts.Seed)
	s.run(ctx, opts.Rate)
	s.stats.write(stderr)
	return 0
}

// parseOptions reads the flags; -db is required.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("school-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.DB, "db", "", "database URL of the school database (required), e.g. postgres://postgres@127.0.0.1:5432/school")
	fs.Float64Var(&o.Rate, "rate", 2, "actions per second")
	fs.DurationVar(&o.Duration, "duration", 0, "stop after this long; 0 runs until interrupted")
	fs.Uint64Var(&o.Seed, "seed", 0, "random seed; 0 picks one from the clock")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.DB == "":
		return o, errors.New("-db is required")
	case !(o.Rate > 0 && o.Rate <= maxRate):
		return o, fmt.Errorf("-rate %v: must be above 0 and at most %d", o.Rate, maxRate)
	case o.Duration < 0:
		return o, fmt.Errorf("-duration %v: must not be negative", o.Duration)
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// connect opens a small pool and checks the database answers.
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse -db: %w", err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}
