// Package ws is the gateway between the event log and the clients: it
// serves the WebSocket endpoint GET /ws of docs/protocol.md (authentication,
// subscriptions, token refresh, limits, close codes), fans every event of the
// log out to the connections subscribed to its channels, and serves
// GET /healthz and GET /readyz.
//
// The replication side never waits for a browser: it only appends to the
// log. The hub (Server.Run) follows the log and queues each event, without
// blocking, on every matching connection's bounded send queue; a connection
// whose queue is full goes on from the log by itself (catch-up), and one
// whose socket stays blocked limits.stall_timeout is closed with 4009 "slow
// consumer"; nobody else is delayed. A client that reconnects and resumes
// with its cursor loses nothing.
//
// # Goroutines and what they own
//
// An idle connection costs one goroutine, its reader, and a few timers:
// about 12 KiB in all (BENCHMARKS.md).
//
//   - The hub goroutine (Server.Run, the caller's) reads the log and fans
//     out. It encodes an event's body once, builds each distinct envelope
//     (the list of matching channels of a connection) once per event, and
//     queues the same bytes on every connection that wants them. Then it
//     writes them itself (direct.go): for each such connection that no
//     one else is writing to, one non-blocking writev of what it queued,
//     in turn, taking in what the log gained every few hundred connections
//     (Server.intake); what a socket does not take at once goes to the
//     connection's writer.
//   - Per connection, the reader: the HTTP handler upgrades the request,
//     starts it and returns (net/http then frees the request and its
//     buffers). It waits for frames; each message is read and served on a
//     short-lived goroutine of its own (onFreshStack), so that the reader's
//     stack stays small. It owns the rate limiters. When the connection
//     ends it waits for the writer to close it, then unregisters it.
//   - Per connection, a writer goroutine exists only while there is
//     something to write that the hub did not: queueing a reply (or a
//     catch-up, or the rest of a direct write) starts it, and it returns
//     when the queue is empty. One at a time, the writer or a direct
//     write (conn.writing) owns the queued frames, and the writer the
//     close handshake, so frames reach the client in the order they were
//     queued (commit order for events).
//   - Per connection, timers (time.AfterFunc, no goroutine while they
//     wait): the first-frame authentication deadline, token_expiring then
//     the token's expiry, and the ping sent every heartbeat, which drops a
//     peer that does not answer within one.
//   - A control record in the log (broadcaster.Event.Recheck: a transaction
//     changed tables that access depends on) is applied by the hub at its
//     place in commit order: it drops the cached answers, gates every
//     connection with an affected subscription (the hub stops queueing for
//     it; it goes on from the log once its re-checks are done) and starts a
//     goroutine, tracked like the connections, that re-checks them a few
//     connections at a time and revokes what was lost.
//
// Once authenticated, nothing closes a connection but the writer (or
// coder/websocket itself, on a broken socket or an oversized frame, or the
// stall sweeper, for a writer stuck in a write): every other goroutine asks
// for a close with conn.fail, which never blocks and starts the writer if
// none runs. Reads take no context (an idle read would hold a registration
// with one); Shutdown, once its deadline has passed, closes the sockets
// under the connections instead.
//
// # Memory of a connection
//
// Beyond its one goroutine: the send queue is a slice that grows with a
// burst and is given back when emptied; coder/websocket gets a 128-byte
// read buffer and a 16-byte write buffer over a frameWriter (which sends a
// frame's header and payload in one writev) instead of net/http's 4 KiB
// each; writes are bounded by a deadline on the socket rather than a
// context (coder/websocket keeps the last write's context); connections on
// one channel share its resolved acl.Channel.
//
// # What the hub has applied
//
// Nothing after the hub's position is served to anyone: catch-ups and
// /sync read the log only up to it. So a control record has taken effect
// (cache dropped, affected connections gated) before any event after it
// reaches a client, and /sync checks access again at the records it reads.
// A connection catching up holds its place in the log
// (broadcaster.LogReader.Hold): the log keeps what it still needs past the
// retention, within retention.max_held_bytes, and drops the hold when the
// connection is live again or gone.
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
//   - conn.mu protects the connection's claims; conn.qmu its send queue
//     and whether its writer runs; conn.tmu its timers. Order: hub.mu
//     before conn.qmu (the hub queues under its lock); conn.tmu before
//     conn.mu (a token timer reads the claims).
//   - ipLimiter.mu, pollLimiter.mu, counters.mu and auditLog.mu protect
//     what their comments say. Locks are never held across an access check, nor across a
//     network write but for frameWriter.mu, which serializes the socket's
//     writes (taken inside coder/websocket's own write lock, never before
//     hub.mu or conn.qmu; a direct write only tries it, under conn.qmu,
//     and then writes without blocking); queueing a frame never blocks.
//
// # Limits
//
// The limits section of the config, per docs/config.md, and these fixed
// rules:
//   - max_messages_per_second is a token bucket with a burst of twice the
//     rate; a refused request is answered with error rate_limited, and
//     3 × burst refusals in a row close the connection with 4008.
//   - A subscribe naming more than max_subscriptions_per_connection
//     channels is refused whole with one error too_many_subscriptions,
//     before any access check (an unsubscribe, with bad_request). Otherwise each refused channel (unknown,
//     invalid, forbidden, over the limit: an access query and an audit
//     line) draws on the connection's refusal budget, a bucket of
//     2 × max_subscriptions_per_connection refilled at
//     max_subscriptions_per_connection a minute; the refusal that finds it
//     empty ends the request and closes the connection with 4008. A
//     refusal because the access check failed is not counted.
//   - The replies and notices of a connection may fill its send queue
//     max_subscriptions_per_connection + 2 frames past send_queue (the
//     replies of one subscribe), so a client that reads is not closed 4009
//     for the refusals of its own request.
//   - A channel name that did not resolve is echoed (error, audit log) cut
//     to 200 bytes; the acl refuses names longer than any pattern matches
//     (at most acl.MaxChannelBytes) before reading them.
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
//   - GET /api/realtime/sync: a request while its user has
//     max_sync_polls_per_user in progress, or its client IP
//     max_sync_polls_per_ip, is answered 429 rate_limited (pollLimiter).
//   - A write that does not complete within 5–10 s, or a ping unanswered
//     within the heartbeat interval, drops the connection.
//
// # Audit log
//
// Options.Audit receives one JSON object per line. Every line has "time"
// (RFC 3339, UTC) and "event"; the other fields by event:
//
//	connect           connectionId, userId, role, ip
//	auth_failed       reason, ip (and connectionId after the upgrade)
//	subscribe_denied  connectionId, userId, channel (cut to 200 bytes when
//	                  it did not resolve), code (the error code)
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
