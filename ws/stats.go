package ws

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of the gateway's counters.
type Stats struct {
	// ConnectionsActive counts authenticated connections now open.
	ConnectionsActive int64
	// ConnectionsTotal counts connections ever authenticated.
	ConnectionsTotal uint64
	// ByRole counts the active connections by their token's role.
	ByRole map[string]int64
	// OpenedByRole counts connections ever authenticated, by role.
	OpenedByRole map[string]uint64
	// Subscriptions counts the channel subscriptions of open connections.
	Subscriptions int64
	// EventsDelivered counts event frames written to clients.
	EventsDelivered uint64
	// BytesSent counts the bytes of every frame written to clients.
	BytesSent uint64
	// Overflows counts connections closed with 4009: they fell out of the
	// retained log while catching up, or their socket stayed blocked past
	// the stall timeout.
	Overflows uint64
	// CatchUps counts times a connection's send queue was full and it went
	// on from the log by itself.
	CatchUps uint64
	// Resumes counts subscriptions resumed from a client's cursor (`since`).
	Resumes uint64
	// Resets counts subscribe requests answered with reset: the cursor was
	// older than the retained log.
	Resets uint64
	// ClosesByCode counts ended connections by close code (1006 for a
	// connection that broke without one).
	ClosesByCode map[int]uint64
	// SyncRequests counts /api/realtime/sync answers by outcome: events,
	// empty, expired, unauthenticated, forbidden, bad_request,
	// rate_limited, error (the log could not be read).
	SyncRequests map[string]uint64
	// AuthFailures counts refused tokens and first frames.
	AuthFailures uint64
	// SubscribeRefusals counts refused subscriptions by error code (one
	// per refused channel, one for a subscribe refused whole).
	SubscribeRefusals map[string]uint64
	// Revocations counts subscriptions revoked after a token refresh or a
	// membership change.
	Revocations uint64
}

// counters are the live figures behind Stats.
type counters struct {
	active       atomic.Int64
	total        atomic.Uint64
	subs         atomic.Int64
	delivered    atomic.Uint64
	bytes        atomic.Uint64
	overflows    atomic.Uint64
	catchUps     atomic.Uint64
	resumes      atomic.Uint64
	resets       atomic.Uint64
	authFailures atomic.Uint64
	revocations  atomic.Uint64

	mu       sync.Mutex // protects byRole, opened, closes, syncs and refusals
	byRole   map[string]int64
	opened   map[string]uint64
	closes   map[int]uint64
	syncs    map[string]uint64
	refusals map[string]uint64
}

func newCounters() *counters {
	return &counters{byRole: make(map[string]int64), opened: make(map[string]uint64), closes: make(map[int]uint64), syncs: make(map[string]uint64),
		refusals: make(map[string]uint64)}
}

// role moves one active connection from role from to role to; "" is none.
func (s *counters) role(from, to string) {
	if from == to {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if from != "" {
		if s.byRole[from]--; s.byRole[from] <= 0 {
			delete(s.byRole, from)
		}
	}
	if to != "" {
		s.byRole[to]++
	}
}

// open counts a newly authenticated connection of role.
func (s *counters) open(role string) {
	s.mu.Lock()
	s.opened[role]++
	s.mu.Unlock()
}

func (s *counters) closed(code int) {
	s.mu.Lock()
	s.closes[code]++
	s.mu.Unlock()
}

func (s *counters) sync(outcome string) {
	s.mu.Lock()
	s.syncs[outcome]++
	s.mu.Unlock()
}

// refused counts a refused subscription with its error code.
func (s *counters) refused(code string) {
	s.mu.Lock()
	s.refusals[code]++
	s.mu.Unlock()
}

func (s *counters) snapshot() Stats {
	st := Stats{
		ConnectionsActive: s.active.Load(),
		ConnectionsTotal:  s.total.Load(),
		Subscriptions:     s.subs.Load(),
		EventsDelivered:   s.delivered.Load(),
		BytesSent:         s.bytes.Load(),
		Overflows:         s.overflows.Load(),
		CatchUps:          s.catchUps.Load(),
		Resumes:           s.resumes.Load(),
		Resets:            s.resets.Load(),
		AuthFailures:      s.authFailures.Load(),
		Revocations:       s.revocations.Load(),
	}
	s.mu.Lock()
	st.ByRole = maps.Clone(s.byRole)
	st.OpenedByRole = maps.Clone(s.opened)
	st.ClosesByCode = maps.Clone(s.closes)
	st.SyncRequests = maps.Clone(s.syncs)
	st.SubscribeRefusals = maps.Clone(s.refusals)
	s.mu.Unlock()
	return st
}
