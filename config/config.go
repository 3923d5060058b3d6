// Package config reads the operator's YAML file (docs/config.md) into typed
// sections, applies defaults and CDC_* environment overrides, and validates
// what can be checked without a database. It depends on no other package of
// the project; each stage takes its own section.
package config

import "time"

// Config is the whole operator file.
type Config struct {
	Source    Source    `mapstructure:"source"`
	Server    Server    `mapstructure:"server"`
	Auth      Auth      `mapstructure:"auth"`
	Retention Retention `mapstructure:"retention"`
	Limits    Limits    `mapstructure:"limits"`
	Audit     Audit     `mapstructure:"audit"`
	Log       Log       `mapstructure:"log"`
	Mappings  []Mapping `mapstructure:"mappings"`
	Channels  []Channel `mapstructure:"channels"`
	Emit      Emit      `mapstructure:"emit"`

	// File is the path the config was read from ("" when none).
	File string `mapstructure:"-"`

	// pos remembers where each key was set (file line or environment
	// variable) so that Validate can point at it; nil for a Config built
	// in code.
	pos *positions
}

// Source says where and how to read the replication stream.
type Source struct {
	// DatabaseURL is a libpq URL or DSN; replication=database is added.
	DatabaseURL string `mapstructure:"database_url"`
	// Slot is the permanent logical replication slot. Default "cdc_broadcaster".
	Slot string `mapstructure:"slot"`
	// Publication is the publication the slot reads. Default "cdc_broadcaster".
	Publication string `mapstructure:"publication"`
	// Create makes the slot and publication on start when missing. Default true.
	Create bool `mapstructure:"create"`
	// Heartbeat is how often an idle stream is nudged so the slot keeps
	// moving. Default 30s; 0 turns it off.
	Heartbeat time.Duration `mapstructure:"heartbeat"`
	// StatusInterval is how often standby status is sent. Default 10s.
	StatusInterval time.Duration `mapstructure:"status_interval"`
	// FailoverTimeout is, with several reader candidates (backend nats),
	// how long after the leader is gone a standby takes over. Default 10s.
	// Reader failover is not built yet (issue 13): read, not used.
	FailoverTimeout time.Duration `mapstructure:"failover_timeout"`
	// MaxRetainedWAL is how many bytes of WAL the slot may hold back before
	// a warning is logged and the over-threshold gauge is set. Default 1 GiB.
	MaxRetainedWAL int64 `mapstructure:"max_retained_wal"`
}

// Server configures the HTTP and WebSocket listener.
type Server struct {
	Listen         string        `mapstructure:"listen"`          // default ":8080"
	AllowedOrigins []string      `mapstructure:"allowed_origins"` // default none (any)
	DrainTimeout   time.Duration `mapstructure:"drain_timeout"`   // default 10s
	Demo           bool          `mapstructure:"demo"`            // default false
	// TrustedProxies lists the addresses or CIDRs of reverse proxies whose
	// X-Forwarded-For names the client (for the per-IP limit and the audit
	// log). Default none: the socket's address is the client.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// AllowQueryToken lets a WebSocket upgrade carry its token in the
	// access_token query parameter, for clients that can neither send a
	// first auth frame nor set headers. Default false: query strings end
	// up in proxy and access logs. GET /api/realtime/sync never takes one.
	AllowQueryToken bool `mapstructure:"allow_query_token"`
}

// Auth configures token checks and access caching.
type Auth struct {
	JWT         JWT           `mapstructure:"jwt"`
	AdminRoles  []string      `mapstructure:"admin_roles"`   // default [admin, super_admin]
	ACLCacheTTL time.Duration `mapstructure:"acl_cache_ttl"` // default 60s
}

// JWT says how tokens are verified.
type JWT struct {
	Algorithms    []string          `mapstructure:"algorithms"` // default [HS256]
	Secret        string            `mapstructure:"secret"`
	PublicKeyFile string            `mapstructure:"public_key_file"`
	JWKSFile      string            `mapstructure:"jwks_file"`
	JWKSURL       string            `mapstructure:"jwks_url"`
	Issuer        string            `mapstructure:"issuer"`
	Audience      string            `mapstructure:"audience"`
	Leeway        time.Duration     `mapstructure:"leeway"` // default 30s
	Claims        map[string]string `mapstructure:"claims"` // default {user_id: sub, role: role}
	// AllowNoExp accepts tokens without an exp claim (they never expire).
	// Default false: such a token is refused.
	AllowNoExp bool `mapstructure:"allow_no_exp"`
}

// Retention bounds the replayable event log.
type Retention struct {
	MaxEvents int           `mapstructure:"max_events"` // default 100000
	MaxAge    time.Duration `mapstructure:"max_age"`    // default 15m
	// MaxHeldBytes bounds the memory (estimated) of events kept past
	// MaxEvents and MaxAge for connections still reading them (catching up
	// after a burst). Default 64 MiB.
	MaxHeldBytes int64 `mapstructure:"max_held_bytes"`
}

// Limits protect the gateway.
type Limits struct {
	MaxConnectionsPerIPPerMinute int `mapstructure:"max_connections_per_ip_per_minute"` // default 60
	MaxConnectionsPerUser        int `mapstructure:"max_connections_per_user"`          // default 10
	MaxSubscriptionsPerConn      int `mapstructure:"max_subscriptions_per_connection"`  // default 200
	MaxFrameBytes                int `mapstructure:"max_frame_bytes"`                   // default 65536
	MaxMessagesPerSecond         int `mapstructure:"max_messages_per_second"`           // default 50
	SendQueue                    int `mapstructure:"send_queue"`                        // default 1024
	// StallTimeout is how long a write to a client may stay blocked (it
	// stopped reading) before the connection is closed 4009. Default 5s.
	StallTimeout time.Duration `mapstructure:"stall_timeout"`
	// MaxSyncPollsPerUser bounds the GET /api/realtime/sync requests one
	// user has in progress at once; past it the answer is 429. Default 4.
	MaxSyncPollsPerUser int `mapstructure:"max_sync_polls_per_user"`
	// MaxSyncPollsPerIP bounds them per client address (many users may
	// share one behind a school's NAT). Default 100.
	MaxSyncPollsPerIP int `mapstructure:"max_sync_polls_per_ip"`
}

// Audit says where the audit log goes.
type Audit struct {
	Log string `mapstructure:"log"` // "stdout" (default), "stderr" or a file path
}

// Log configures the process's own logs, and the event log
// (docs/cluster.md): in memory, or a NATS JetStream stream that several
// nodes share.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info (default), warn, error
	Format string `mapstructure:"format"` // json (default) or text
	// Backend is the event log: "memory" (default: one process) or
	// "nats".
	Backend string `mapstructure:"backend"`
	// NATS says where the stream is, with backend nats.
	NATS NATS `mapstructure:"nats"`
	// CacheEvents is, with backend nats, how many recent events each
	// gateway keeps in memory for fan-out and fast resume; older ones are
	// read from the stream. Default 100000.
	CacheEvents int `mapstructure:"cache_events"`
}

// NATS is the JetStream stream the nodes share.
type NATS struct {
	URLs []string `mapstructure:"urls"` // default ["nats://127.0.0.1:4222"]
	// Stream is created if missing when source.create is true. Default
	// CDC_EVENTS.
	Stream string `mapstructure:"stream"`
	// SubjectPrefix: events go to <prefix>.<domain>.<action>. Default cdc.
	SubjectPrefix string `mapstructure:"subject_prefix"`
	// Replicas of the stream; 1 for a single NATS server. Default 3.
	Replicas int `mapstructure:"replicas"`
	// CredentialsFile is a NATS .creds file; or User and Password, or
	// Token (best from CDC_LOG_NATS_PASSWORD, CDC_LOG_NATS_TOKEN).
	CredentialsFile string  `mapstructure:"credentials_file"`
	User            string  `mapstructure:"user"`
	Password        string  `mapstructure:"password"`
	Token           string  `mapstructure:"token"`
	TLS             NATSTLS `mapstructure:"tls"`
}

// NATSTLS are the TLS files for NATS: a CA to verify the servers, and a
// certificate and key when the servers verify clients.
type NATSTLS struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Event log backends.
const (
	BackendMemory = "memory"
	BackendNATS   = "nats"
)

// Mapping turns the changes of one table into events.
type Mapping struct {
	// Table is the table's name, schema-qualified where not public.
	Table  string `mapstructure:"table"`
	Domain string `mapstructure:"domain"`
	// Payload lists the columns events carry; default the primary key.
	Payload []string `mapstructure:"payload"`
	// Actor names a column whose value becomes the event's userId.
	Actor    string      `mapstructure:"actor"`
	Channels []string    `mapstructure:"channels"`
	Events   []EventRule `mapstructure:"events"`
}

// EventRule picks an event type for a change; the first match wins unless
// Continue is set.
type EventRule struct {
	On       string `mapstructure:"on"` // insert, update, delete or truncate
	When     string `mapstructure:"when"`
	Type     string `mapstructure:"type"`
	Continue bool   `mapstructure:"continue"`
	// Channels, when set, replaces the mapping's channels for this rule.
	Channels []string `mapstructure:"channels"`
}

// Emit lets the application emit events that are not row changes, from
// SQL, inside its transactions: a logical decoding message with Prefix
// whose content is {"type": ..., "channels": [...], "data": {...}}
// (docs/config.md, "Emitted events"). A message that breaks a rule here is
// dropped whole, and counted.
type Emit struct {
	// Enabled turns emitted events on. Default false: messages with
	// Prefix are dropped (and counted).
	Enabled bool `mapstructure:"enabled"`
	// Prefix is the prefix of the messages that carry emitted events.
	// Default "cdc.emit" (the one migrations' cdc_emit uses).
	Prefix string `mapstructure:"prefix"`
	// MaxBytes bounds the content of one message. Default 8192, at most
	// MaxEmitBytes.
	MaxBytes int `mapstructure:"max_bytes"`
	// Types are globs (path.Match: exam.*, upload.progress) of the event
	// types that may be emitted besides those Events declare. A type that
	// the mappings produce is never emitted. Default none.
	Types []string `mapstructure:"types"`
	// Channels are the channel patterns (the syntax of channels[].pattern,
	// {name} standing for a param) that the channels of an emitted event
	// must each match, unless Events declares its type with channels of
	// its own. Default none.
	Channels []string `mapstructure:"channels"`
	// Events declare emitted event types: they may be emitted, and they
	// join the config's catalogue of event types next to the mapped ones
	// (tail --types, the typed events).
	Events []EmitEvent `mapstructure:"events"`
}

// EmitEvent declares one type of emitted event. A message of a declared
// type must use only its channels and carry exactly its data fields.
type EmitEvent struct {
	// Type is the event type, <domain>.<action>.
	Type string `mapstructure:"type"`
	// Description says what the event means, for the catalogue.
	Description string `mapstructure:"description"`
	// Channels, when set, replace Emit.Channels for this type: patterns
	// each channel of such an event must match.
	Channels []string `mapstructure:"channels"`
	// Data declares the fields of the event's data, each a name and a
	// type (ParseDataType: "integer", "string?", "integer[]"). Without it
	// the event carries no data.
	Data map[string]string `mapstructure:"data"`
}

// Channel is an access rule for the channels matching Pattern.
type Channel struct {
	Pattern   string            `mapstructure:"pattern"`
	Params    map[string]string `mapstructure:"params"`
	Allow     []AllowRule       `mapstructure:"allow"`
	RecheckOn []string          `mapstructure:"recheck_on"`
}

// AllowRule is one way to be granted a channel; the rules of a channel are
// alternatives. Within one rule every condition given must hold.
type AllowRule struct {
	Roles []string          `mapstructure:"roles"`
	Self  string            `mapstructure:"self"`
	Claim map[string]string `mapstructure:"claim"`
	When  string            `mapstructure:"when"`
	SQL   string            `mapstructure:"sql"`
}
