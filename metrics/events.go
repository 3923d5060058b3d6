package metrics

import (
	"context"
	"maps"
	"sync"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// CountingLog is a broadcaster.Log that counts, by event type, the events
// appended to the log it wraps. Events the log skips as replays (at or
// before its head: the stream delivers them again after a reconnect) are
// not counted, nor are the events of a batch the log refused.
//
// Put it in front of the log, where the mapping appends; Counts is safe to
// call from any goroutine.
type CountingLog struct {
	broadcaster.Log

	mu     sync.Mutex // protects byType
	byType map[string]uint64
}

var _ broadcaster.Log = (*CountingLog)(nil)

// NewCountingLog returns a CountingLog in front of l.
func NewCountingLog(l broadcaster.Log) *CountingLog {
	return &CountingLog{Log: l, byType: make(map[string]uint64)}
}

// Append appends the batch to the wrapped log and counts its new events.
func (c *CountingLog) Append(ctx context.Context, b broadcaster.Batch) error {
	head := c.Log.Head()
	if err := c.Log.Append(ctx, b); err != nil {
		return err
	}
	if len(b.Events) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range b.Events {
		if ev := &b.Events[i]; head.Before(ev.ID) && !ev.IsControl() {
			c.byType[ev.Type]++
		}
	}
	return nil
}

// Counts returns the number of events appended so far, by event type.
func (c *CountingLog) Counts() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byType)
}
