package metrics

import (
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Sources are where a Metrics reads its figures, at each scrape and each
// stats request. Any of them may be nil: its figures are then absent. Each
// function must be safe to call from any goroutine, and cheap.
type Sources struct {
	// Stream reports the replication stream's state.
	Stream func() StreamStatus
	// Gateway reports the WebSocket gateway's counters.
	Gateway func() GatewayStats
	// ACL reports the access rules' counters.
	ACL func() ACLStats
	// Log reports the event log's size.
	Log func() LogStats
	// Events reports the events emitted so far by type: a CountingLog's
	// Counts.
	Events func() map[string]uint64
	// Slot is the replication slot's monitor. It also supplies the
	// server's WAL position, without which the replication lag is unknown.
	Slot *SlotMonitor
	// Node reports which node this is, its role and its reader's state.
	Node func() NodeStatus
	// Publisher reports the counters of the writer that publishes events
	// to the stream (a reader with log.backend nats).
	Publisher func() PublisherStats
	// Follower reports where a gateway is in the stream (log.backend
	// nats).
	Follower func() FollowerStats
}

// Reader states (docs/cluster.md).
const (
	ReaderLeader  = "leader"  // this node streams the slot
	ReaderStandby = "standby" // a reader candidate that does not stream it
	ReaderOff     = "off"     // no reader role (serve --role gateway)
)

// NodeStatus is which node this is and what it does.
type NodeStatus struct {
	// ID names the node among the others (docs/metrics.md says how).
	ID string
	// Role is serve's --role: all, reader or gateway.
	Role string
	// Reader is ReaderLeader, ReaderStandby or ReaderOff, since
	// ReaderSince.
	Reader      string
	ReaderSince time.Time
	// Failovers counts the times this node took over as the leader from
	// another.
	Failovers uint64
}

// PublisherStats are the counters of the writer publishing to the stream.
type PublisherStats struct {
	// Published counts events published (again after a failure too).
	Published uint64 `json:"published"`
	// Failures counts failed publishes (each is made again).
	Failures uint64 `json:"failures"`
	// InFlight counts the events published and not yet acknowledged.
	InFlight int `json:"inFlight"`
	// Recovering is true while failed publishes are being made again.
	Recovering bool `json:"recovering"`
}

// FollowerStats is where a gateway is in the stream.
type FollowerStats struct {
	// Following is true while it reads the stream.
	Following bool `json:"following"`
	// Sequence is the stream sequence of the newest event it has;
	// LastSequence the stream's last when last seen; Lag the difference.
	Sequence     uint64 `json:"sequence"`
	LastSequence uint64 `json:"lastSequence"`
	Lag          uint64 `json:"lag"`
	// Error is why it does not read the stream, while it does not.
	Error string `json:"error,omitempty"`
}

// StreamStatus is the replication stream's state.
type StreamStatus struct {
	// Standby is true while the reader waits as a standby (another node
	// leads and streams the slot): it has no stream to report, and the
	// replication figures are left out.
	Standby   bool
	Connected bool
	// CaughtUp reports that the stream has replayed what the slot held
	// back when it started.
	CaughtUp bool
	Slot     string
	// ReceivedLSN is how far the stream has read: the end of the last WAL
	// data received, or the position of the server's last keepalive if
	// later (every transaction committed before either has been received).
	ReceivedLSN broadcaster.LSN
	// ConfirmedLSN is the position last confirmed to the server.
	ConfirmedLSN broadcaster.LSN
	// LastCommit is the commit time of the last transaction received; zero
	// before the first.
	LastCommit time.Time
	// Reconnects counts the times the replication connection was lost and
	// opened again.
	Reconnects int64
}

// GatewayStats are the WebSocket gateway's counters.
type GatewayStats struct {
	// ConnectionsActive counts authenticated connections now open.
	ConnectionsActive int64 `json:"connectionsActive"`
	// ConnectionsOpened counts connections ever authenticated.
	ConnectionsOpened uint64 `json:"connectionsOpened"`
	// ActiveByRole counts the open connections by their token's role.
	ActiveByRole map[string]int64 `json:"activeByRole"`
	// OpenedByRole counts the connections ever authenticated by role.
	// Optional: when nil, ConnectionsOpened is reported without a role.
	OpenedByRole map[string]uint64 `json:"openedByRole,omitempty"`
	// Subscriptions counts the channel subscriptions of open connections.
	Subscriptions int64 `json:"subscriptions"`
	// EventsDelivered counts event frames written to clients.
	EventsDelivered uint64 `json:"eventsDelivered"`
	// BytesSent counts the bytes of every frame written to clients.
	BytesSent uint64 `json:"bytesSent"`
	// SlowConsumerCloses counts connections closed with 4009.
	SlowConsumerCloses uint64 `json:"slowConsumerCloses"`
	// CatchUps counts times a connection's send queue was full and it went
	// on reading from the log by itself.
	CatchUps uint64 `json:"catchUps"`
	// Resumes counts subscriptions resumed from a client's cursor.
	Resumes uint64 `json:"resumes"`
	// Resets counts subscribe requests answered with reset: the cursor was
	// older than the retained log.
	Resets uint64 `json:"resets"`
	// ClosesByCode counts ended connections by WebSocket close code.
	ClosesByCode map[int]uint64 `json:"closesByCode"`
	// SyncRequests counts /api/realtime/sync answers by outcome.
	SyncRequests map[string]uint64 `json:"syncRequests"`
	// AuthFailures counts refused tokens and first frames.
	AuthFailures uint64 `json:"authFailures"`
	// SubscribeRefusals counts refused subscriptions by error code.
	// Optional: nil reports none.
	SubscribeRefusals map[string]uint64 `json:"subscribeRefusals,omitempty"`
	// Revocations counts subscriptions revoked after a token refresh or a
	// membership change.
	Revocations uint64 `json:"revocations"`
}

// ACLStats are the access rules' counters.
type ACLStats struct {
	Granted    uint64 `json:"granted"`    // access checks that granted
	Denied     uint64 `json:"denied"`     // access checks that refused
	CacheHits  uint64 `json:"cacheHits"`  // sql rule answers served from the cache
	SQLQueries uint64 `json:"sqlQueries"` // sql rule queries run
}

// LogStats is the event log's size.
type LogStats struct {
	// Events is the number of retained events.
	Events int
	// Oldest is the commit time of the oldest retained event; zero when
	// the log is empty.
	Oldest time.Time
	// Held and HeldBytes are the events kept past the retention for
	// connections still reading them, and their estimated size; HeldDropped
	// counts those dropped over retention.max_held_bytes.
	Held        int
	HeldBytes   int64
	HeldDropped uint64
}
