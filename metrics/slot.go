package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Defaults for SlotMonitorOptions fields left zero.
const (
	DefaultSlotInterval   = 10 * time.Second
	DefaultMaxRetainedWAL = 1 << 30 // 1 GiB
	DefaultRepeatWarning  = 10 * time.Minute
)

// SlotQuerier runs the monitor's query: a *pgxpool.Pool or a *pgx.Conn.
type SlotQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SlotMonitorOptions configure a SlotMonitor. Slot and DB are required.
type SlotMonitorOptions struct {
	// Slot is the replication slot to watch.
	Slot string
	// DB runs the query; a pool of its own, so that a busy access-rule
	// pool never delays it.
	DB SlotQuerier
	// Interval is the time between polls. Default 10s.
	Interval time.Duration
	// MaxRetainedWAL is the WAL, in bytes, the slot may hold back before
	// a warning is logged. Default 1 GiB.
	MaxRetainedWAL uint64
	// RepeatWarning is how often a warning is logged again while its
	// condition lasts. Default 10m.
	RepeatWarning time.Duration
	// Logger receives the warnings. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// SlotState is what the last poll found.
type SlotState struct {
	// Slot is the slot's name.
	Slot string
	// PolledAt is the time of the last successful poll; zero before it.
	PolledAt time.Time
	// Exists is false when the slot is not there.
	Exists bool
	// Active reports whether a connection is reading the slot.
	Active bool
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved or lost.
	WALStatus string
	// ServerLSN is the server's current WAL position.
	ServerLSN broadcaster.LSN
	// ConfirmedFlushLSN is the position the slot has been confirmed to.
	ConfirmedFlushLSN broadcaster.LSN
	// RetainedBytes is the WAL the slot holds back: from its restart_lsn
	// to the server's current position.
	RetainedBytes uint64
	// SafeWALSize is how much more WAL can be written before the slot is
	// in danger of being invalidated; nil when max_slot_wal_keep_size is
	// unlimited.
	SafeWALSize *int64
	// Threshold is MaxRetainedWAL.
	Threshold uint64
	// OverThreshold reports RetainedBytes > Threshold.
	OverThreshold bool
	// Lost reports wal_status lost: the slot was invalidated.
	Lost bool
	// PollErrors counts failed polls.
	PollErrors uint64
	// LastError is the last poll's error; "" after a success.
	LastError string
}

// SlotMonitor polls the replication slot and the server's WAL position: for
// the lag metrics, for the WAL the slot retains, and to warn in the log when
// that passes a threshold or the slot is invalidated. Make it with
// NewSlotMonitor and call Run.
type SlotMonitor struct {
	opts SlotMonitorOptions
	log  *slog.Logger

	mu      sync.Mutex // protects everything below
	state   SlotState
	samples []walSample // the server's WAL position, oldest first
	// The conditions worth a log line, each logged when it starts and
	// again every RepeatWarning while it lasts.
	over, lost, unreserved, missing, failing alarm
}

// NewSlotMonitor checks opts and applies the defaults.
func NewSlotMonitor(opts SlotMonitorOptions) (*SlotMonitor, error) {
	if opts.Slot == "" {
		return nil, errors.New("metrics: new slot monitor: slot name is empty")
	}
	if opts.DB == nil {
		return nil, errors.New("metrics: new slot monitor: no database")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultSlotInterval
	}
	if opts.MaxRetainedWAL == 0 {
		opts.MaxRetainedWAL = DefaultMaxRetainedWAL
	}
	if opts.RepeatWarning <= 0 {
		opts.RepeatWarning = DefaultRepeatWarning
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &SlotMonitor{opts: opts, log: opts.Logger}
	m.state.Slot = opts.Slot
	m.state.Threshold = opts.MaxRetainedWAL
	return m, nil
}

// Run polls at once and then every Interval until ctx ends. Failed polls
// are counted and logged (at most every RepeatWarning); the state keeps the
// last good values.
func (m *SlotMonitor) Run(ctx context.Context) {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		if err := m.Poll(ctx); err != nil && ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// slotQuery reads the server's WAL position (the replay position on a
// standby) and the slot, one row even when the slot is missing.
const slotQuery = `
WITH w AS (
	SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
	            ELSE pg_catalog.pg_current_wal_lsn() END AS lsn
)
SELECT w.lsn::text,
       s.slot_name IS NOT NULL,
       COALESCE(s.active, false),
       COALESCE(s.wal_status, ''),
       s.confirmed_flush_lsn::text,
       pg_catalog.pg_wal_lsn_diff(w.lsn, s.restart_lsn)::bigint,
       s.safe_wal_size
FROM w LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = $1`

// slotSample is one poll's answer.
type slotSample struct {
	serverLSN   broadcaster.LSN
	exists      bool
	active      bool
	walStatus   string
	confirmed   broadcaster.LSN
	retained    int64
	safeWALSize *int64
}

// Poll queries the server once and records the answer.
func (m *SlotMonitor) Poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.Interval)
	defer cancel()
	s, err := m.query(ctx)
	if err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			m.failed(err)
		}
		return err
	}
	m.record(s)
	return nil
}

func (m *SlotMonitor) query(ctx context.Context) (slotSample, error) {
	var (
		s                   slotSample
		server              *string
		confirmed           *string
		retained, safeBytes *int64
	)
	err := m.opts.DB.QueryRow(ctx, slotQuery, m.opts.Slot).
		Scan(&server, &s.exists, &s.active, &s.walStatus, &confirmed, &retained, &safeBytes)
	if err != nil {
		return s, fmt.Errorf("poll replication slot %s: %w", m.opts.Slot, err)
	}
	if server == nil {
		return s, fmt.Errorf("poll replication slot %s: the server reports no WAL position", m.opts.Slot)
	}
	if s.serverLSN, err = broadcaster.ParseLSN(*server); err != nil {
		return s, fmt.Errorf("poll replication slot %s: %w", m.opts.Slot, err)
	}
	if confirmed != nil {
		if s.confirmed, err = broadcaster.ParseLSN(*confirmed); err != nil {
			return s, fmt.Errorf("poll replication slot %s: %w", m.opts.Slot, err)
		}
	}
	if retained != nil {
		s.retained = *retained
	}
	s.safeWALSize = safeBytes
	return s, nil
}

// failed counts a failed poll and logs it, when it starts failing and then
// every RepeatWarning.
func (m *SlotMonitor) failed(err error) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state.PollErrors++
	m.state.LastError = err.Error()
	if raise, _ := m.failing.update(true, now, m.opts.RepeatWarning); raise {
		m.log.Warn("cannot read the replication slot's state; its metrics are stale", "slot", m.opts.Slot, "err", err)
	}
}

// record updates the state with a poll's answer and logs what changed.
func (m *SlotMonitor) record(s slotSample) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.state
	st.PolledAt = now
	st.LastError = ""
	st.ServerLSN = s.serverLSN
	st.Exists = s.exists
	st.Active = s.active
	st.WALStatus = s.walStatus
	st.ConfirmedFlushLSN = s.confirmed
	st.RetainedBytes = uint64(max(s.retained, 0))
	st.SafeWALSize = s.safeWALSize
	st.OverThreshold = st.RetainedBytes > st.Threshold
	st.Lost = s.walStatus == "lost"
	m.samples = addSample(m.samples, walSample{lsn: s.serverLSN, at: now})

	repeat := m.opts.RepeatWarning
	slot := m.opts.Slot
	if _, cleared := m.failing.update(false, now, repeat); cleared {
		m.log.Info("reading the replication slot's state again", "slot", slot)
	}
	if raise, _ := m.missing.update(!s.exists, now, repeat); raise {
		m.log.Error("replication slot does not exist",
			"slot", slot,
			"what_happened", "the slot was dropped while the broadcaster was reading it",
			"what_to_do", "the stream stops; restart cdc-broadcaster (the slot is created again with source.create: true, or by `cdc-broadcaster setup`); clients get reset and refetch their state")
	}
	if raise, _ := m.lost.update(st.Lost, now, repeat); raise {
		m.log.Error("replication slot is invalidated (wal_status lost)",
			"slot", slot,
			"what_happened", "PostgreSQL removed WAL the slot still needed, because the slot held back more than max_slot_wal_keep_size; the changes in that WAL can no longer be streamed",
			"what_to_do", fmt.Sprintf("drop the slot (SELECT pg_drop_replication_slot('%s')) and restart cdc-broadcaster, which creates it again (source.create: true, or `cdc-broadcaster setup`); clients get reset and refetch their state; then find out why the stream fell behind (cdc_broadcaster_replication_lag_seconds)", slot))
	}
	if raise, _ := m.unreserved.update(s.walStatus == "unreserved", now, repeat); raise {
		m.log.Warn("replication slot is about to be invalidated (wal_status unreserved)",
			"slot", slot,
			"retained", formatBytes(st.RetainedBytes),
			"what_happened", "the slot holds back more WAL than max_slot_wal_keep_size; PostgreSQL will remove it at a checkpoint unless the stream confirms past it first",
			"what_to_do", "check that cdc-broadcaster is connected and keeping up (cdc_broadcaster_replication_lag_seconds), or raise max_slot_wal_keep_size")
	}
	raise, cleared := m.over.update(st.OverThreshold, now, repeat)
	switch {
	case raise:
		m.log.Warn("replication slot retains more WAL than the threshold",
			"slot", slot,
			"retained", formatBytes(st.RetainedBytes),
			"retained_bytes", st.RetainedBytes,
			"threshold", formatBytes(st.Threshold),
			"wal_status", s.walStatus,
			"slot_active", s.active,
			"what_happened", "PostgreSQL keeps WAL on disk until the slot is confirmed past it; the slot is confirmed only as far as the stream has read and the event log no longer needs (the in-memory log holds it at its oldest event, up to retention.max_age)",
			"what_to_do", "check that cdc-broadcaster is connected and keeping up (cdc_broadcaster_replication_lag_seconds); on a busy database, a long retention.max_age retains that much WAL by design: raise the threshold (source.max_retained_wal) or shorten the retention; set max_slot_wal_keep_size on the server so that a stuck slot is invalidated before the disk fills")
	case cleared:
		m.log.Info("replication slot's retained WAL is back under the threshold",
			"slot", slot, "retained", formatBytes(st.RetainedBytes), "threshold", formatBytes(st.Threshold))
	}
}

// State returns what the last poll found.
func (m *SlotMonitor) State() SlotState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state
	if st.SafeWALSize != nil {
		v := *st.SafeWALSize
		st.SafeWALSize = &v
	}
	return st
}

// Lag returns how far a stream that has read up to pos, and whose last
// transaction committed at lastCommit, is behind the server (see Lag); ok
// is false before the first poll.
func (m *SlotMonitor) Lag(pos broadcaster.LSN, lastCommit time.Time) (lag Lag, ok bool) {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = pruneSamples(m.samples, pos)
	return lagOf(m.samples, pos, lastCommit, now)
}

// alarm is a condition that is logged when it starts and again every
// repeat while it lasts.
type alarm struct {
	on   bool
	last time.Time // when it was last logged
}

// update sets the condition: raise reports that it should be logged now,
// cleared that it has just ended.
func (a *alarm) update(on bool, now time.Time, repeat time.Duration) (raise, cleared bool) {
	switch {
	case on && !a.on:
		a.on, a.last = true, now
		return true, false
	case on && now.Sub(a.last) >= repeat:
		a.last = now
		return true, false
	case !on && a.on:
		a.on = false
		return false, true
	}
	return false, false
}

// formatBytes renders n in binary units: "1.5 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
