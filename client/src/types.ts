// Types of wire contract v1 (docs/protocol.md) and of the client's options.

/** A row change operation, or EMIT for an event the application emitted. */
export type Operation = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' | 'EMIT';

/** Row data: only the columns the server's mapping allows. */
export type Row = Record<string, unknown>;

interface EventCommon {
  /** Unique and stable across replays, `/sync` and nodes: dedupe on it. */
  eventId: string;
  /** Opaque resume position, in commit order. */
  cursor: string;
  /** `<domain>.<action>` from the server's mapping (or the application's emit), e.g. `exam.published`. */
  eventType: string;
  /** Commit time, Unix milliseconds (a non-transactional emitted event: when it was sent). */
  timestamp: number;
  /** The actor, when the server can tell. */
  userId?: string;
  /** Postgres transaction id: events of one transaction share it (0: a non-transactional emitted event). */
  txId: number;
}

interface EventBase extends EventCommon {
  /** Source table, schema-qualified only outside `public`. */
  table: string;
}

/** An INSERT, UPDATE or DELETE event; `T` types `data`. */
export interface RowEvent<T = Row> extends EventBase {
  operation: 'INSERT' | 'UPDATE' | 'DELETE';
  /** The row's allowed columns (on DELETE: what is known of the deleted row). */
  data: T;
  /** The old values, on UPDATE and DELETE when the replica identity gives them. */
  oldData?: Partial<T>;
}

/** A TRUNCATE event: it carries no row data. */
export interface TruncateEvent extends EventBase {
  operation: 'TRUNCATE';
  data?: undefined;
  oldData?: undefined;
}

/**
 * An event the application emitted from SQL rather than a row change
 * (`exam.closing_soon`, a job's progress): no table, and `data` is what it
 * sent, `{}` when nothing.
 */
export interface EmittedEvent<T = Row> extends EventCommon {
  operation: 'EMIT';
  table?: undefined;
  data: T;
  oldData?: undefined;
}

/** One committed row change, or an emitted event; narrow on `operation` to read `data`. */
export type RealtimeEvent<T = Row> = RowEvent<T> | TruncateEvent | EmittedEvent<T>;

/** Called with each new event and the caller's channels it arrived on. */
export type EventHandler<T = Row> = (event: RealtimeEvent<T>, channels: string[]) => void;

/**
 * Connection state: 'connecting' (WebSocket opening, or waiting to retry),
 * 'live' (WebSocket authenticated), 'polling' (WebSocket down after
 * `pollAfterFailures` tries: long-polling `/sync` while retrying it),
 * 'offline' (the browser is offline, or the app closed the client).
 */
export type ConnectionState = 'connecting' | 'live' | 'polling' | 'offline';

/** Reconnect delays: attempt n waits random(0, min(maxMs, initialMs * factor^n)). */
export interface BackoffOptions {
  /** First ceiling in milliseconds. Default 500. */
  initialMs: number;
  /** Largest ceiling in milliseconds. Default 30000. */
  maxMs: number;
  /** Growth of the ceiling per failed attempt. Default 2. */
  factor: number;
}

/** The WebSocket constructor the client uses (the browser's by default). */
export type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocket;

/**
 * Why a token is asked for: 'connect' (a new WebSocket), 'poll' (a `/sync`
 * request), 'expiring' (the server sent token_expiring), 'rejected' (the
 * last token was refused: close 4001 or HTTP 401).
 */
export type TokenReason = 'connect' | 'poll' | 'expiring' | 'rejected';

/** Options of {@link createRealtime}. Only `getToken` is required. */
export interface RealtimeOptions {
  /** WebSocket URL. Default: ws(s)://<location.host>/ws. */
  url?: string;
  /** Polling fallback URL. Default: `/api/realtime/sync`. */
  syncUrl?: string;
  /**
   * Returns the JWT. Called on every connect, on `token_expiring`, after
   * close 4001 and before every poll, so it should return a cached token
   * while it is valid; reason 'expiring' or 'rejected' asks for a new one.
   * The token is sent only in the first frame (and as the Bearer header of
   * `/sync`), never in a URL.
   */
  getToken: (reason: TokenReason) => Promise<string> | string;
  /** Reconnect backoff with full jitter. Default {initialMs: 500, maxMs: 30000, factor: 2}. */
  backoff?: Partial<BackoffOptions>;
  /** Failed WebSocket connects in a row before long-polling `/sync`. Default 5. */
  pollAfterFailures?: number;
  /** How many recent eventIds are remembered to drop duplicates. Default 5000. */
  dedupSize?: number;
  /** WebSocket implementation. Default: globalThis.WebSocket. */
  WebSocket?: WebSocketCtor;
  /** fetch implementation. Default: globalThis.fetch. */
  fetch?: typeof fetch;
  /** Called on every state change. */
  onStateChange?: (state: ConnectionState) => void;
  /** Called when channels could not resume (cursor expired): refetch their data. */
  onReset?: (channels: string[]) => void;
  /** Called when a channel is refused or revoked; the client drops it. */
  onRevoked?: (channel: string, reason: string) => void;
  /** Called with request errors that name no channel (e.g. `subject_mismatch`). */
  onError?: (error: { code: string; message?: string }) => void;
}

/** Per-subscription options of {@link RealtimeClient.subscribe}. */
export interface SubscribeOptions {
  /** Called when these channels could not resume: refetch their data. */
  onReset?: (channels: string[]) => void;
  /** Called when one of these channels is refused or revoked. */
  onRevoked?: (channel: string, reason: string) => void;
}

/** An event as the server frames it on the WebSocket and in `/sync`. */
export interface EventEnvelope {
  channels: string[];
  event: RealtimeEvent;
}

/** A frame from the server (the fields this client reads). */
export type ServerMessage =
  | { type: 'welcome'; cursor: string; connectionId?: string; userId?: string }
  | { type: 'authed'; id?: number }
  | ({ type: 'event' } & EventEnvelope)
  | { type: 'subscribed'; id?: number; channels: string[]; cursor: string }
  | { type: 'unsubscribed'; id?: number; channels: string[] }
  | { type: 'reset'; channels: string[]; reason?: string }
  | { type: 'revoked'; channel: string; reason: string }
  | { type: 'token_expiring'; expiresAt?: number }
  | { type: 'error'; id?: number; code: string; channel?: string; message?: string }
  | { type: 'pong'; id?: number; cursor?: string };
