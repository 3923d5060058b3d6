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
 * What each event type carries, by event type: the shape of the file that
 * `cdc-broadcaster types` generates (`export interface Events {...}`).
 * `operation` lists the operations the type is emitted for (default: any);
 * a type emitted only for TRUNCATE has no `data` (`data?: undefined`).
 */
export type EventTypes = Record<string, { operation?: Operation; data?: object | undefined }>;

/**
 * The constraint on a client's `E`: every key an entry of EventTypes. An
 * `interface Events` (which has no index signature, so is no
 * `EventTypes`) meets it as well as a type alias does.
 */
export type EventShape<E> = { [K in keyof E]: EventTypes[string] };

/** The default when no generated `Events` is given: any type, any row. */
export type UntypedEvents = Record<string, { operation: Operation; data: Row }>;

type OpsOf<V> = V extends { operation?: infer O } ? ([Exclude<O, undefined>] extends [never] ? Operation : Exclude<O, undefined>) : Operation;

/**
 * The event of type K of E: `data` typed by E[K]; a TRUNCATE (only when
 * E[K] lists it) carries no `data`; an emitted event (EMIT) no `table`.
 */
export type EventOf<E extends EventShape<E>, K extends keyof E & string> =
  | ([Exclude<OpsOf<E[K]>, 'TRUNCATE' | 'EMIT'>] extends [never]
      ? never
      : Omit<RowEvent<E[K]['data']>, 'eventType' | 'operation'> & {
          eventType: K;
          operation: Exclude<OpsOf<E[K]>, 'TRUNCATE' | 'EMIT'>;
        })
  | ('TRUNCATE' extends OpsOf<E[K]> ? TruncateEvent & { eventType: K } : never)
  | ('EMIT' extends OpsOf<E[K]> ? Omit<EmittedEvent<E[K]['data']>, 'eventType'> & { eventType: K } : never);

/**
 * Connection state:
 * - 'connecting': the first WebSocket is opening;
 * - 'live': the WebSocket is authenticated, events flow on it;
 * - 'reconnecting': the WebSocket was lost or failed, a new one is tried
 *   with backoff (fewer than `pollAfterFailures` failures, or `/sync` not
 *   answered yet);
 * - 'polling': the WebSocket keeps failing but `/sync` answers: events come
 *   by long-polling while the WebSocket is retried;
 * - 'offline': the server is unreachable (the WebSocket and `/sync` both
 *   fail), or the browser says it is offline; retried with backoff;
 * - 'unauthorized': the token was refused twice in a row (close 4001 or
 *   HTTP 401, even after a fresh `getToken('rejected')`): `onError` got
 *   `{code: 'unauthorized'}`, and the client retries only every
 *   `authRetryMs` (or at once on `reconnect()`);
 * - 'closed': the app called `close()`.
 */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'polling' | 'offline' | 'unauthorized' | 'closed';

/** What led to a state: the code and reason of the last WebSocket close (none before the first). */
export interface StateDetail {
  code?: number;
  reason?: string;
}

/** Called on every state change. */
export type StateListener = (state: ConnectionState, detail: StateDetail) => void;

/**
 * A subscription's status:
 * - 'pending': not (or no longer) confirmed by the server: before the
 *   first `subscribed`, and again while the connection is down;
 * - 'subscribed': the server confirmed it; `recovered` says whether it
 *   resumed from a cursor with nothing missed;
 * - 'reset': confirmed, but the events since its cursor are gone
 *   (`cursor_expired`): refetch (onReset is called); new events flow;
 * - 'refused': every channel was refused on subscribe (`code`: forbidden,
 *   unknown_channel, ...); final;
 * - 'revoked': access to every channel was lost later (`code`); final;
 * - 'closed': unsubscribed, or the client was closed; final.
 */
export type SubscriptionStatus = 'pending' | 'subscribed' | 'reset' | 'refused' | 'revoked' | 'closed';

/**
 * What `subscribe` returns. Calling it (or `unsubscribe()`) stops it, as
 * the function `subscribe` returned before.
 */
export interface Subscription<E extends EventShape<E> = UntypedEvents, C extends string = string> {
  (): void;
  /** Stops the subscription; twice is harmless. */
  unsubscribe(): void;
  /** Its channels, less the refused and revoked ones. */
  readonly channels: C[];
  readonly status: SubscriptionStatus;
  /** Why it was refused or revoked (or why its last channel went). */
  readonly code?: string;
  /**
   * After the last confirmation: true when it resumed from a cursor and
   * the server replayed everything missed; false when it started from the
   * head (a first subscribe without `since`) or was reset.
   */
  readonly recovered: boolean;
  /** The cursor of the last event seen on its channels (else the head it started from). */
  readonly cursor?: string;
  /**
   * Resolves with the subscription once it is 'subscribed' or 'reset';
   * rejects (an Error with `code` and `status`) once it is refused,
   * revoked or closed first.
   */
  ready(): Promise<Subscription<E, C>>;
  /** Calls handler with the events of one type; returns the function that stops it. */
  on<K extends keyof E & string>(eventType: K, handler: (event: EventOf<E, K>, channels: C[]) => void): () => void;
}

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
 * request, also `head()`), 'expiring' (the server sent token_expiring),
 * 'rejected' (the last token was refused: close 4001 or HTTP 401).
 */
export type TokenReason = 'connect' | 'poll' | 'expiring' | 'rejected';

/** Where subscriptions with `persist` keep their cursor (sessionStorage by default). */
export type CursorStorage = Pick<Storage, 'getItem' | 'setItem'>;

/** Options of {@link createRealtime}. Only `getToken` is required. */
export interface RealtimeOptions {
  /** WebSocket URL. Default: ws(s)://<location.host>/ws (required outside a browser). */
  url?: string;
  /** Polling fallback URL. Default: `/api/realtime/sync` (absolute outside a browser). */
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
  /** While 'unauthorized', the retry delay is random(authRetryMs/2, authRetryMs). Default 60000. */
  authRetryMs?: number;
  /** How many recent eventIds are remembered to drop duplicates. Default 5000. */
  dedupSize?: number;
  /** WebSocket implementation. Default: globalThis.WebSocket (browsers, Node 22+). */
  WebSocket?: WebSocketCtor;
  /** fetch implementation. Default: globalThis.fetch. */
  fetch?: typeof fetch;
  /** Where `persist` subscriptions keep their cursor. Default: globalThis.sessionStorage. */
  storage?: CursorStorage;
  /** Called on every state change, with the last close code and reason. */
  onStateChange?: StateListener;
  /** Called when channels could not resume (cursor expired): refetch their data. */
  onReset?: (channels: string[]) => void;
  /** Called when a channel is refused or revoked; the client drops it. */
  onRevoked?: (channel: string, reason: string) => void;
  /**
   * Called with errors that name no channel: `unauthorized` (the token was
   * refused twice in a row), `subject_mismatch`, `rate_limited`,
   * `too_many_subscriptions`, `token` (getToken threw), `websocket` (the
   * constructor threw).
   */
  onError?: (error: { code: string; message?: string }) => void;
}

/** Per-subscription options of {@link RealtimeClient.subscribe}. */
export interface SubscribeOptions {
  /**
   * Start after this cursor (e.g. from `client.head()` taken before the
   * app's snapshot): every event committed after it is delivered, even
   * ones the snapshot already holds, so apply events idempotently.
   */
  since?: string;
  /**
   * Keep the cursor in `storage` under this key, and start from the stored
   * one (before `since`), so that a reload resumes. Opt-in.
   */
  persist?: string;
  /** Called on every status change. */
  onStatus?: (status: SubscriptionStatus, sub: Subscription<any, any>) => void;
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
