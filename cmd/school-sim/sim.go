package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// actionTimeout bounds one action. An action runs to its end even after a
// stop signal (it is detached from the run's context), so this is also the
// longest a stop can wait.
const actionTimeout = 10 * time.Second

// maxTries is how many actions one tick tries before giving up when each
// finds nothing to do (no in-progress exam to submit, say).
const maxTries = 8

// errNothingToDo is returned by an action that found no row to act on; the
// tick then tries another action. It is not a failure.
var errNothingToDo = errors.New("nothing to do")

// action is one kind of change the school makes. run does it inside tx
// and returns the line to print.
type action struct {
	name   string
	weight int
	run    func(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error)
}

// sim runs actions against the database. It is not safe for concurrent use.
type sim struct {
	db      *pgxpool.Pool
	rng     *rand.Rand
	out     io.Writer
	log     *slog.Logger
	actions []action
	weights []int
	stats   stats
}

func newSim(db *pgxpool.Pool, seed uint64, out io.Writer, log *slog.Logger) *sim {
	s := &sim{
		db:      db,
		rng:     rand.New(rand.NewPCG(seed, seed^0x5c4001)),
		out:     out,
		log:     log,
		actions: actions,
		stats:   stats{},
	}
	for _, a := range s.actions {
		s.weights = append(s.weights, a.weight)
	}
	return s
}

// run does about rate actions per second until ctx ends.
func (s *sim) run(ctx context.Context, rate float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick does one action, trying others while they find nothing to do.
func (s *sim) tick(ctx context.Context) {
	for range maxTries {
		if ctx.Err() != nil {
			return
		}
		a := s.actions[pickWeighted(s.rng, s.weights)]
		if err := s.do(ctx, a); !errors.Is(err, errNothingToDo) {
			return
		}
	}
}

// do runs one action in its own transaction, prints its line and counts it.
func (s *sim) do(ctx context.Context, a action) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), actionTimeout)
	defer cancel()
	var line string
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		line, err = a.run(ctx, tx, s.rng)
		return err
	})
	switch {
	case errors.Is(err, errNothingToDo):
		s.stats.count(a.name, outcomeSkipped)
	case err != nil:
		s.stats.count(a.name, outcomeFailed)
		s.log.Error("action failed", "action", a.name, "err", err)
	default:
		s.stats.count(a.name, outcomeOK)
		fmt.Fprintln(s.out, line)
	}
	return err
}

// pickWeighted returns an index of weights, each with a probability
// proportional to its weight (negative weights count as zero), or -1 when
// no weight is positive.
func pickWeighted(r *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += max(w, 0)
	}
	if total == 0 {
		return -1
	}
	n := r.IntN(total)
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		if n < w {
			return i
		}
		n -= w
	}
	return -1 // not reached: n < total
}

// weighted is a value with its weight, for choose.
type weighted[T any] struct {
	v T
	w int
}

// choose picks one of choices by weight; it panics if no weight is positive
// (the tables it is used with are constants).
func choose[T any](r *rand.Rand, choices []weighted[T]) T {
	ws := make([]int, len(choices))
	for i, c := range choices {
		ws[i] = c.w
	}
	return choices[pickWeighted(r, ws)].v
}

// outcome is what became of one action.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeSkipped
	outcomeFailed
)

// stats counts outcomes per action name.
type stats map[string]*[3]int

func (st stats) count(name string, o outcome) {
	c := st[name]
	if c == nil {
		c = new([3]int)
		st[name] = c
	}
	c[o]++
}

// total sums one outcome over all actions.
func (st stats) total(o outcome) int {
	n := 0
	for _, c := range st {
		n += c[o]
	}
	return n
}

// write prints a summary, one line per action, sorted by name.
func (st stats) write(w io.Writer) {
	fmt.Fprintf(w, "school-sim: %d actions done, %d failed, %d found nothing to do\n",
		st.total(outcomeOK), st.total(outcomeFailed), st.total(outcomeSkipped))
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := st[n]
		fmt.Fprintf(w, "  %-22s ok %4d  failed %3d  nothing to do %3d\n", n, c[outcomeOK], c[outcomeFailed], c[outcomeSkipped])
	}
}

// emitActor names the user who makes this transaction's changes, for the
// events' userId (docs/config.md, `actor`). It must come first in the
// transaction.
func emitActor(ctx context.Context, tx pgx.Tx, userID int64) error {
	_, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'cdc.actor', $1::text)", strconv.FormatInt(userID, 10))
	if err != nil {
		return fmt.Errorf("emit actor %d: %w", userID, err)
	}
	return nil
}

// pickRow runs a query listing candidate rows and returns one, chosen with
// r, or errNothingToDo when there is none.
func pickRow[T any](ctx context.Context, tx pgx.Tx, r *rand.Rand, scan pgx.RowToFunc[T], sql string, args ...any) (T, error) {
	var zero T
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return zero, fmt.Errorf("list candidates: %w", err)
	}
	cands, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return zero, fmt.Errorf("list candidates: %w", err)
	}
	if len(cands) == 0 {
		return zero, errNothingToDo
	}
	return cands[r.IntN(len(cands))], nil
}
