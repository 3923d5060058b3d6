// Package ws is the gateway between the event log and the clients: it
// serves the WebSocket endpoint GET /ws of docs/protocol.md (authentication,
// subscriptions, token refresh, limits, close codes), fans every event of the
// log out to the connections subscribed to its channels, and serves
// GET /healthz and GET /readyz.
//
// The replication side never waits for a browser: it only appends to the
// log. The hub (Server.Run) follows the log and queues each event, without
// blocking, on every matching connection's bounded send queue; a connection
// whose queue is full is closed with 4009 "slow consumer" and nobody else is
// delayed. A client that reconnects and resumes with its cursor loses
// nothing.
//
// # Goroutines and what they own
//
//   - The hub goroutine (Server.Run, the caller's) reads the log and fans
//     out. It encodes an event's body once, builds each distinct envelope
//     (the list of matching channels of a connection) once per event, and
//     queues the same bytes on every connection that wants them.
//   - Per connection, the HTTP handler goroutine is the reader: it reads
//     frames, enforces the per-connection limits and answers requests. It
//     owns the rate limiters. When the connection ends it waits for the
//     connection's other goroutines, then unregisters it.
//   - Per connection, one writer goroutine owns every write and the close
//     handshake, so frames reach the client in the order they were queued
//     (commit order for events). It also owns the connection's timers:
//     first-frame authentication deadline, token_expiring and token expiry.
//   - Per connection, one pinger goroutine sends a WebSocket ping every
//     heartbeat and closes a peer that does not answer in time.
//   - Server.TablesChanged re-checks affected subscriptions in a goroutine
//     of its own, tracked like the connections.
//
// Once its writer runs, nothing closes a connection but the writer (or
// coder/websocket itself, on a broken socket or an oversized frame): every
// other goroutine asks for a close with conn.fail, which never blocks. A
// read context is never cancelled to close a connection, because
// coder/websocket then drops the socket without a close frame; Shutdown
// cancels it only once its deadline has passed.
//
// # Cursors
//
// The cursor of welcome, subscribed and pong is the hub's position: every
// event after it reaches the connection's subscriptions, none at or before
// it does. Once the hub has caught up it is the log's head.
//
// # Locks
//
//   - Server.mu protects the set of live connections, the connections of
//     each user (oldest first) and the closing flag.
//   - hub.mu protects the channel index, every connection's subscriptions
//     and the hub's position. Replies that must be ordered against events
//     (subscribed, unsubscribed, revoked, pong) are queued while it is held,
//     so a client never sees an event of a channel after its unsubscribed
//     or revoked, and sees every event after the cursor it is handed.
//   - conn.mu protects the connection's claims and token expiry.
//   - ipLimiter.mu, counters.mu and auditLog.mu protect what their comments
//     say. Locks are never held across a network write or an access check;
//     queueing a frame never blocks.
//
// # Limits
//
// The limits section of the config, per docs/config.md, and these fixed
// rules:
//   - max_messages_per_second is a token bucket with a burst of twice the
//     rate; a refused request is answered with error rate_limited, and
//     3 × burst refusals in a row close the connection with 4008.
//   - Bad frames (not JSON, not an object, unknown type, missing or
//     ill-typed fields) are answered with error bad_request and the
//     connection stays; more than 10 within a minute (a bucket of 10
//     refilled one every 6 s) close it with 1008.
//   - A frame over max_frame_bytes is closed with 1009 by coder/websocket.
//   - max_connections_per_ip_per_minute is a token bucket per remote IP
//     (RemoteAddr; proxies' forwarding headers are not trusted), burst the
//     limit; over it the upgrade is answered with HTTP 429.
//   - A user's connection beyond max_connections_per_user closes that
//     user's oldest connection with 4010.
//   - A write that does not complete within 10 s, or a ping unanswered
//     within the heartbeat interval, drops the connection.
//
// # Audit log
//
// Options.Audit receives one JSON object per line. Every line has "time"
// (RFC 3339, UTC) and "event"; the other fields by event:
//
//	connect           connectionId, userId, role, ip
//	auth_failed       reason, ip (and connectionId after the upgrade)
//	subscribe_denied  connectionId, userId, channel, code (the error code)
//	revoke            connectionId, userId, channel, reason
//	disconnect        connectionId, userId, code (the close code), reason,
//	                  duration_ms, messages_sent
//
// For example:
//
//	{"time":"2025-11-29T10:00:00.123Z","event":"connect","connectionId":"5f0c9a1e2b3d4c6f","userId":"19","role":"teacher","ip":"10.0.0.7"}
//	{"time":"2025-11-29T10:05:00.001Z","event":"disconnect","connectionId":"5f0c9a1e2b3d4c6f","userId":"19","code":4009,"reason":"slow consumer","duration_ms":299878,"messages_sent":8121}
//
// No audit or log line ever holds a token or a request's query string.
package ws
