/**
 * Browser adapter for cdc-broadcaster (wire contract v1, docs/protocol.md):
 * one shared WebSocket per page, resume with cursors, `/sync` long-polling
 * fallback, dedup on eventId, per-subscription status, snapshot-then-stream
 * with `head()` and `since`, and a query-invalidation helper. The React
 * hook is in the separate entry `cdc-broadcaster-client/react`. Importing
 * it touches no browser global (safe in SSR); a client needs a `url`, a
 * `WebSocket` and a `fetch` (a browser's, Node 22's, or passed in).
 */
export { RealtimeClient, createRealtime, getRealtime, subprotocol } from './client.js';
export { Backoff, defaultBackoff } from './backoff.js';
export { Dedup } from './dedup.js';
export { invalidateOn } from './invalidate.js';
export type { InvalidateOptions, QueryKey } from './invalidate.js';
export type * from './types.js';
