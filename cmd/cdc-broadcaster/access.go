package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/treasure-home/cdc-broadcaster/acl"
)

// accessErrorLogEvery is how often at most a failing access check is
// logged; the checks that fail in between are counted into the next line.
const accessErrorLogEvery = 10 * time.Second

// loggingRules are the access rules with their failures logged: a sql rule
// that cannot run (a privilege revoked, a table renamed) refuses every
// caller with 403 or "access could not be checked", and an operator must
// hear of it even where the gateway logs nothing (/sync). It logs at error
// level, at most once per accessErrorLogEvery, with the count of failures
// since the last line.
type loggingRules struct {
	*acl.Rules
	log *slog.Logger

	failed atomic.Uint64 // failures not yet logged
	mu     sync.Mutex    // guards last
	last   time.Time     // when a failure was last logged
}

func newLoggingRules(r *acl.Rules, log *slog.Logger) *loggingRules {
	return &loggingRules{Rules: r, log: log}
}

// Allowed is acl.Rules.Allowed, logging failures.
func (l *loggingRules) Allowed(ctx context.Context, c *acl.Claims, ch *acl.Channel) (bool, error) {
	ok, err := l.Rules.Allowed(ctx, c, ch)
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		l.failed.Add(1)
		l.mu.Lock()
		due := time.Since(l.last) >= accessErrorLogEvery
		if due {
			l.last = time.Now()
		}
		l.mu.Unlock()
		if due {
			l.log.Error("access check failed: callers are refused until it runs again (run `cdc-broadcaster check`)",
				"channel", ch.Pattern, "err", err, "failures", l.failed.Swap(0))
		}
	}
	return ok, err
}
