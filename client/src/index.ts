/**
 * Browser adapter for cdc-broadcaster (wire contract v1, docs/protocol.md):
 * one shared WebSocket per page, resume with cursors, `/sync` long-polling
 * fallback, dedup on eventId, and a query-invalidation helper. The React
 * hook is in the separate entry `cdc-broadcaster-client/react`.
 */
export { RealtimeClient, createRealtime, getRealtime, subprotocol } from './client.js';
export { Backoff, defaultBackoff } from './backoff.js';
export { Dedup } from './dedup.js';
export { invalidateOn } from './invalidate.js';
export type { InvalidateOptions, QueryKey } from './invalidate.js';
export type * from './types.js';
