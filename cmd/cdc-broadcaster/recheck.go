package main

import (
	"context"
	"slices"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// recheckTables returns the tables named in any channel's recheck_on.
func recheckTables(cfg *config.Config) []string {
	seen := make(map[string]bool)
	var out []string
	for _, ch := range cfg.Channels {
		for _, t := range ch.RecheckOn {
			t = cdc.Normalize(t)
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// publishedTables is every table the publication must hold: the mapped
// ones and those whose changes re-check access.
func publishedTables(cfg *config.Config) []string {
	seen := make(map[string]bool)
	var out []string
	for _, t := range append(mappedTables(cfg), recheckTables(cfg)...) {
		t = cdc.Normalize(t)
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// recheckTee passes every call on to next and, once a transaction that
// changed one of the watched tables has been accepted, reports those tables,
// so access to channels that depend on them is re-checked.
type recheckTee struct {
	next    broadcaster.TxHandler
	watched map[string]bool
	changed func(tables ...string)

	// touched lists the watched tables the current transaction changed; only
	// the Source's goroutine uses it.
	touched []string
}

func newRecheckTee(next broadcaster.TxHandler, tables []string, changed func(...string)) broadcaster.TxHandler {
	if len(tables) == 0 || changed == nil {
		return next
	}
	w := make(map[string]bool, len(tables))
	for _, t := range tables {
		w[t] = true
	}
	return &recheckTee{next: next, watched: w, changed: changed}
}

func (r *recheckTee) Begin(ctx context.Context, tx *broadcaster.Tx) error {
	r.touched = r.touched[:0]
	return r.next.Begin(ctx, tx)
}

func (r *recheckTee) Change(ctx context.Context, tx *broadcaster.Tx, c *broadcaster.Change) error {
	if t := c.Rel.Table(); r.watched[t] && !slices.Contains(r.touched, t) {
		r.touched = append(r.touched, t)
	}
	return r.next.Change(ctx, tx, c)
}

func (r *recheckTee) Commit(ctx context.Context, tx *broadcaster.Tx) error {
	if err := r.next.Commit(ctx, tx); err != nil {
		return err
	}
	if len(r.touched) > 0 {
		r.changed(append([]string(nil), r.touched...)...)
	}
	return nil
}
