package main

import (
	"context"
	"log/slog"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
)

// visibleWait bounds how long a control record waits for its transaction
// to become visible (microseconds, normally).
const visibleWait = 2 * time.Second

// visibleLog holds a batch that carries an access control record back until
// the record's transaction is visible to new snapshots: the re-checks it
// starts (on every gateway) must read the membership as that transaction
// left it, never as it was (logical decoding can deliver a commit a moment
// before the database shows it to other sessions).
type visibleLog struct {
	broadcaster.Log
	db  cdc.Querier
	log *slog.Logger
}

func (v *visibleLog) Append(ctx context.Context, b broadcaster.Batch) error {
	// The mapping puts the record last, in the batch that ends its
	// transaction: no other event needs a look.
	if n := len(b.Events); n > 0 && len(b.Events[n-1].Recheck) > 0 {
		xid := b.Events[n-1].TxID
		visible, err := cdc.AwaitVisible(ctx, v.db, xid, visibleWait)
		if err != nil || !visible {
			v.log.Warn("a membership change is not visible yet; its access re-checks may read the rows as they were", "txId", xid, "err", err)
		}
	}
	return v.Log.Append(ctx, b)
}
