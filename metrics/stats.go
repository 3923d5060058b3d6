package metrics

import (
	"encoding/json"
	"maps"
	"net/http"
	"time"
)

// Stats is the service's state at a moment: what GET /api/realtime/stats
// answers and what /metrics exposes. A section is nil when its source is
// not wired.
type Stats struct {
	Time time.Time `json:"time"`
	// Node, Role and Reader say which node this is and what it does.
	Node        string            `json:"node,omitempty"`
	Role        string            `json:"role,omitempty"`
	Reader      *ReaderStats      `json:"reader,omitempty"`
	Gateway     *GatewayStats     `json:"gateway,omitempty"`
	Events      *EventStats       `json:"events,omitempty"`
	ACL         *ACLStats         `json:"acl,omitempty"`
	EventLog    *EventLogStats    `json:"eventLog,omitempty"`
	Replication *ReplicationStats `json:"replication,omitempty"`
	Slot        *SlotState        `json:"slot,omitempty"`
	// Publish is the writer's (a reader on a stream); Stream a gateway's
	// position in the stream.
	Publish *PublisherStats `json:"publish,omitempty"`
	Stream  *FollowerStats  `json:"stream,omitempty"`
	// failovers is the reader's, for the metrics.
	failovers uint64
}

// ReaderStats is the reader's state: leader, standby or off, since when.
type ReaderStats struct {
	State string
	Since time.Time
}

// MarshalJSON encodes since in Unix milliseconds.
func (r ReaderStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		State string `json:"state"`
		Since int64  `json:"since"`
	}{r.State, r.Since.UnixMilli()})
}

// EventStats counts the events emitted: appended to the event log.
type EventStats struct {
	Emitted uint64            `json:"emitted"`
	ByType  map[string]uint64 `json:"byType"`
}

// EventLogStats is the event log's size.
type EventLogStats struct {
	Events int `json:"events"`
	// Oldest is the commit time of the oldest retained event; zero when
	// the log is empty.
	Oldest time.Time `json:"-"`
	// OldestAge is how long ago Oldest was; zero when the log is empty.
	OldestAge time.Duration `json:"-"`
	// Held, HeldBytes and HeldDropped are as in LogStats.
	Held        int
	HeldBytes   int64
	HeldDropped uint64
}

// MarshalJSON encodes the times as RFC 3339 (null when the log is empty)
// and the age in seconds.
func (l EventLogStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Events      int        `json:"events"`
		Oldest      *time.Time `json:"oldestEventTime"`
		OldestAge   float64    `json:"oldestEventAgeSeconds"`
		Held        int        `json:"heldEvents"`
		HeldBytes   int64      `json:"heldBytes"`
		HeldDropped uint64     `json:"heldDropped"`
	}{l.Events, timeOrNil(l.Oldest), l.OldestAge.Seconds(), l.Held, l.HeldBytes, l.HeldDropped})
}

// ReplicationStats is the replication stream's state and lag.
type ReplicationStats struct {
	StreamStatus
	// Lag is nil while unknown: without a slot monitor, or before its
	// first poll.
	Lag *Lag
}

// MarshalJSON encodes LSNs in PostgreSQL's text form and the lag in bytes
// and seconds.
func (r ReplicationStats) MarshalJSON() ([]byte, error) {
	var lagBytes *uint64
	var lagSeconds *float64
	if r.Lag != nil {
		b, s := r.Lag.Bytes, r.Lag.Duration.Seconds()
		lagBytes, lagSeconds = &b, &s
	}
	return json.Marshal(struct {
		Slot         string     `json:"slot"`
		Connected    bool       `json:"connected"`
		CaughtUp     bool       `json:"caughtUp"`
		ReceivedLSN  string     `json:"receivedLsn"`
		ConfirmedLSN string     `json:"confirmedLsn"`
		LastCommit   *time.Time `json:"lastCommitTime"`
		Reconnects   int64      `json:"reconnects"`
		LagBytes     *uint64    `json:"lagBytes"`
		LagSeconds   *float64   `json:"lagSeconds"`
	}{
		r.Slot, r.Connected, r.CaughtUp, r.ReceivedLSN.String(), r.ConfirmedLSN.String(),
		timeOrNil(r.LastCommit), r.Reconnects, lagBytes, lagSeconds,
	})
}

// MarshalJSON encodes LSNs in PostgreSQL's text form.
func (s SlotState) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Slot              string     `json:"slot"`
		PolledAt          *time.Time `json:"polledAt"`
		Exists            bool       `json:"exists"`
		Active            bool       `json:"active"`
		WALStatus         string     `json:"walStatus"`
		ServerLSN         string     `json:"serverLsn"`
		ConfirmedFlushLSN string     `json:"confirmedFlushLsn"`
		RetainedBytes     uint64     `json:"walRetainedBytes"`
		SafeWALSize       *int64     `json:"safeWalSizeBytes"`
		Threshold         uint64     `json:"maxRetainedWalBytes"`
		OverThreshold     bool       `json:"overThreshold"`
		Lost              bool       `json:"lost"`
		PollErrors        uint64     `json:"pollErrors"`
		LastError         string     `json:"lastError,omitempty"`
	}{
		s.Slot, timeOrNil(s.PolledAt), s.Exists, s.Active, s.WALStatus, s.ServerLSN.String(),
		s.ConfirmedFlushLSN.String(), s.RetainedBytes, s.SafeWALSize, s.Threshold,
		s.OverThreshold, s.Lost, s.PollErrors, s.LastError,
	})
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// Snapshot reads every source once and returns the state.
func (m *Metrics) Snapshot() Stats {
	src := m.sources.Load()
	now := m.now()
	st := Stats{Time: now.UTC()}
	if src.Node != nil {
		n := src.Node()
		st.Node, st.Role, st.failovers = n.ID, n.Role, n.Failovers
		st.Reader = &ReaderStats{State: n.Reader, Since: n.ReaderSince}
	}
	if src.Publisher != nil {
		p := src.Publisher()
		st.Publish = &p
	}
	if src.Follower != nil {
		f := src.Follower()
		st.Stream = &f
	}
	if src.Gateway != nil {
		g := src.Gateway()
		g.ActiveByRole = nonNil(g.ActiveByRole)
		g.ClosesByCode = nonNil(g.ClosesByCode)
		g.SyncRequests = nonNil(g.SyncRequests)
		st.Gateway = &g
	}
	if src.Events != nil {
		ev := &EventStats{ByType: nonNil(maps.Clone(src.Events()))}
		for _, n := range ev.ByType {
			ev.Emitted += n
		}
		st.Events = ev
	}
	if src.ACL != nil {
		a := src.ACL()
		st.ACL = &a
	}
	if src.Log != nil {
		l := src.Log()
		st.EventLog = &EventLogStats{Events: l.Events, Oldest: l.Oldest, Held: l.Held, HeldBytes: l.HeldBytes, HeldDropped: l.HeldDropped}
		if !l.Oldest.IsZero() {
			st.EventLog.OldestAge = max(now.Sub(l.Oldest), 0)
		}
	}
	if src.Stream != nil {
		// A standby has no stream of its own: the leader reports it.
		if ss := src.Stream(); !ss.Standby {
			r := &ReplicationStats{StreamStatus: ss}
			if src.Slot != nil {
				if lag, ok := src.Slot.Lag(r.ReceivedLSN, r.LastCommit); ok {
					r.Lag = &lag
				}
			}
			st.Replication = r
		}
	}
	if src.Slot != nil {
		s := src.Slot.State()
		st.Slot = &s
	}
	return st
}

func nonNil[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

// Authenticator checks the credentials of a stats request: ok is false
// when it carries no valid token, admin reports whether the token's holder
// has an admin role (auth.admin_roles).
type Authenticator func(r *http.Request) (admin, ok bool)

// statsError is the body of a refused stats request.
type statsError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// StatsHandler serves GET /api/realtime/stats: the snapshot as JSON, to
// admins only. A request without a valid token gets 401 unauthenticated,
// one whose token has no admin role 403 forbidden.
func StatsHandler(snapshot func() Stats, auth Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, statsError{Error: "method_not_allowed", Message: "use GET"})
			return
		}
		admin, ok := auth(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cdc-broadcaster"`)
			writeJSON(w, http.StatusUnauthorized, statsError{Error: "unauthenticated", Message: "send Authorization: Bearer <token>"})
			return
		}
		if !admin {
			writeJSON(w, http.StatusForbidden, statsError{Error: "forbidden", Message: "the stats are for admin roles (auth.admin_roles)"})
			return
		}
		writeJSON(w, http.StatusOK, snapshot())
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
