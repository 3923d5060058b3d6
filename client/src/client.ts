import { Backoff } from './backoff.js';
import { Dedup } from './dedup.js';
import { Poller, getSync } from './poller.js';
import type {
  ConnectionState,
  CursorStorage,
  EventEnvelope,
  EventHandler,
  EventShape,
  RealtimeOptions,
  Row,
  ServerMessage,
  StateDetail,
  StateListener,
  SubscribeOptions,
  Subscription,
  SubscriptionStatus,
  UntypedEvents,
  WebSocketCtor,
} from './types.js';

/** The WebSocket subprotocol of wire contract v1. */
export const subprotocol = 'cdc.v1';

// One subscribe() call: the handle the app holds, and what the client keeps
// of it (its last cursor, its handlers, how many requests are unanswered).
interface Sub extends Subscription<any, any> {
  channels: string[];
  status: SubscriptionStatus;
  code?: string;
  recovered: boolean;
  cursor?: string;
  fn?: EventHandler<any> | null;
  o: SubscribeOptions;
  from?: string; // the since it started from: nothing at or before it is delivered
  h: [string, (e: any, c: string[]) => void][];
  w: (() => boolean)[]; // ready() waiters
  n: number; // requests sent for it and not answered in full
  rs: boolean; // the last request resumed from its cursor
}

const OPEN = 1;
const name = 'cdc-broadcaster-client';

// Cursors are fixed-width text whose order is commit order (protocol.md).
const earlier = (a: string | undefined, b: string) => (a === undefined || b < a ? b : a);

const fail = (msg: string, more: object) => Object.assign(new Error(`${name}: ${msg}`), more);

function need<T>(v: T | undefined, what: string): T {
  if (!v) throw fail(`no ${what}`, {});
  return v;
}

function call(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    (globalThis.reportError ?? console.error)(err);
  }
}

/**
 * RealtimeClient keeps one WebSocket to the broadcaster for every
 * subscription of the page. It reconnects with backoff and full jitter,
 * resumes each subscription from its cursor, long-polls `/sync` after
 * `pollAfterFailures` failed connects (while still retrying the WebSocket),
 * and drops events a subscription has already had. `E` (the generated
 * `Events`) types `sub.on(eventType, ...)`; `C` the channel names.
 */
export class RealtimeClient<E extends EventShape<E> = UntypedEvents, C extends string = string> {
  readonly #opts: RealtimeOptions;
  readonly #url: string;
  readonly #syncUrl: string;
  readonly #WS: WebSocketCtor;
  readonly #fetchFn: typeof fetch;
  readonly #groups = new Set<Sub>();
  readonly #listeners = new Set<StateListener>();
  readonly #backoff: Backoff;
  readonly #dedup: Dedup;
  readonly #poller: Poller;
  #ws?: WebSocket;
  #live = false; // ws got welcome
  #failures = 0; // connects in a row that never got welcome
  #refused = 0; // tokens refused in a row (close 4001, HTTP 401)
  #pollOk?: boolean; // how the last poll went, while polling
  #timer?: ReturnType<typeof setTimeout>;
  #nextId = 1;
  #reqs = new Map<number, Sub[]>(); // subscribe id → subscriptions it serves
  #top?: string; // cursor of the last subscribed reply
  #current: ConnectionState = 'connecting';
  #last: StateDetail = {};
  #closedByApp = false;

  constructor(options: RealtimeOptions) {
    this.#opts = options;
    const loc = globalThis.location;
    this.#url = need(options.url ?? (loc && `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`), 'url (pass options.url)');
    this.#syncUrl = options.syncUrl ?? new URL('/api/realtime/sync', this.#url.replace(/^ws/, 'http')).href;
    this.#WS = need(options.WebSocket ?? globalThis.WebSocket, 'WebSocket (pass options.WebSocket)');
    this.#fetchFn = need(options.fetch ?? globalThis.fetch?.bind(globalThis), 'fetch (pass options.fetch)');
    this.#backoff = new Backoff(options.backoff);
    this.#dedup = new Dedup(options.dedupSize ?? 5000);
    this.#poller = new Poller(this.#syncUrl, options.getToken, this.#fetchFn, {
      channels: () => this.#channels(),
      since: () => {
        let s: string | undefined;
        for (const g of this.#groups) if (g.cursor) s = earlier(s, g.cursor);
        return s;
      },
      deliver: (events, cursor) => {
        for (const g of this.#groups) if (g.status === 'pending' && g.channels.length) this.#confirm(g, !!g.cursor);
        for (const e of events) this.#deliver(e);
        if (cursor) for (const g of this.#groups) this.#move(g, cursor);
      },
      reset: (channels) => this.#reset(channels, undefined),
      refuse: (channel, code) => this.#revoke(channel, code, false),
      polled: (status) => {
        if (status === 401) this.#refusedToken('HTTP 401');
        else this.#pollOk = status > 0 && status < 500;
        this.#update();
        return this.#refused < 2;
      },
    }, options.backoff);
    globalThis.addEventListener?.('online', this.#online);
    globalThis.addEventListener?.('offline', this.#offline);
    this.#connect();
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#current;
  }

  /** The code and reason of the last WebSocket close ({} before the first). */
  get detail(): StateDetail {
    return this.#last;
  }

  /** Whether the app closed this client. */
  get closed(): boolean {
    return this.#closedByApp;
  }

  /** Calls cb(state, detail) on every state change until the returned function is called. */
  onStateChange = (cb: StateListener): (() => void) => {
    this.#listeners.add(cb);
    return () => void this.#listeners.delete(cb);
  };

  /**
   * Delivers the events of channels to onEvent (and to the handlers of
   * `sub.on`), each once, until the returned subscription is called or
   * unsubscribed. `T` types the events' `data` for onEvent.
   */
  subscribe<T = Row>(channels: C[], onEvent?: EventHandler<T> | null, opts: SubscribeOptions = {}): Subscription<E, C> {
    const others = new Set(this.#channels());
    const g = (() => this.#unsubscribe(g)) as Sub;
    let stored: string | null | undefined;
    try {
      stored = opts.persist ? this.#store()?.getItem(name + ':' + opts.persist) : null;
    } catch {
      // no storage here
    }
    Object.assign(g, {
      channels: [...new Set(channels)],
      status: 'pending',
      recovered: false,
      cursor: stored ?? opts.since,
      from: stored ?? opts.since,
      fn: onEvent,
      o: opts,
      h: [],
      w: [],
      n: 0,
      rs: false,
      unsubscribe: g,
      on: (t: string, fn: (e: any, c: string[]) => void) => {
        const e: Sub['h'][0] = [t, fn];
        g.h.push(e);
        return () => void (g.h = g.h.filter((x) => x !== e));
      },
      ready: () =>
        new Promise<Sub>((ok, no) => {
          const f = () =>
            g.status === 'subscribed' || g.status === 'reset'
              ? (ok(g), true)
              : g.status !== 'pending' && (no(fail(`subscription ${g.status} ${g.code ?? ''}`, { code: g.code, status: g.status })), true);
          f() || g.w.push(f);
        }),
    });
    if (this.#closedByApp) g.status = 'closed';
    else this.#groups.add(g);
    if (this.#live && g.channels.length) {
      // A channel this connection has already gets no replay: resubscribe
      // it from the earlier cursor (the others drop what they had).
      const had = g.cursor ? g.channels.filter((c) => others.has(c)) : [];
      if (had.length) this.#send({ id: this.#nextId++, type: 'unsubscribe', channels: had });
      this.#sub(g.channels);
    } else if (this.#poller.running) this.#poller.restart();
    return g as unknown as Subscription<E, C>;
  }

  /**
   * The head cursor of channels (GET syncUrl without `since`), checked
   * against the caller's access. Take it before loading a snapshot, then
   * subscribe with `since` it: nothing committed in between is lost.
   * Rejects with an Error whose `code` is the server's (forbidden, ...).
   */
  async head(channels: C[]): Promise<string> {
    const { status, body } = await getSync(this.#fetchFn, this.#syncUrl, await this.#opts.getToken('poll'), { channels: channels.join(',') });
    if (status !== 200) throw fail(`head: HTTP ${status} ${body.error ?? ''}`, { code: body.error ?? 'unreachable', status, channel: body.channel });
    return body.cursor;
  }

  /** Connects again at once (e.g. after the user signed in again while 'unauthorized'). */
  reconnect(): void {
    if (this.#closedByApp) return;
    this.#drop();
    this.#backoff.reset();
    this.#failures = 0;
    this.#connect();
  }

  /** Closes the connection for good: no reconnect; the state becomes 'closed'. */
  close(): void {
    this.#closedByApp = true;
    globalThis.removeEventListener?.('online', this.#online);
    globalThis.removeEventListener?.('offline', this.#offline);
    this.#drop();
    for (const g of this.#groups) this.#status(g, 'closed');
    this.#update();
  }

  #unsubscribe(g: Sub): void {
    if (!this.#groups.delete(g)) return;
    this.#status(g, 'closed');
    const needed = new Set(this.#channels());
    const gone = g.channels.filter((c) => !needed.has(c));
    if (gone.length && this.#live) this.#send({ id: this.#nextId++, type: 'unsubscribe', channels: gone });
    if (this.#poller.running) this.#poller.restart();
  }

  #channels(): string[] {
    const all = new Set<string>();
    for (const g of this.#groups) for (const c of g.channels) all.add(c);
    return [...all];
  }

  #store(): CursorStorage | undefined {
    return this.#opts.storage ?? globalThis.sessionStorage;
  }

  // move sets a subscription's cursor (and stores it, for persist).
  #move(g: Sub, cursor: string | undefined): void {
    g.cursor = cursor;
    if (g.o.persist && cursor) call(() => this.#store()?.setItem(name + ':' + g.o.persist, cursor));
  }

  #status(g: Sub, s: SubscriptionStatus, code?: string): void {
    if (g.status === s || g.status === 'closed') return;
    g.status = s;
    if (code) g.code = code;
    g.w = g.w.filter((f) => !f());
    call(() => g.o.onStatus?.(s, g));
  }

  #confirm(g: Sub, recovered: boolean): void {
    g.recovered = recovered;
    this.#status(g, 'subscribed');
  }

  // update derives the state from what is known and tells the listeners.
  #update(): void {
    const s: ConnectionState = this.#closedByApp
      ? 'closed'
      : this.#live
        ? 'live'
        : globalThis.navigator?.onLine === false
          ? 'offline'
          : this.#refused > 1
            ? 'unauthorized'
            : this.#poller.running && this.#pollOk !== undefined
              ? this.#pollOk
                ? 'polling'
                : 'offline'
              : this.#last.code
                ? 'reconnecting'
                : 'connecting';
    if (s === this.#current) return;
    this.#current = s;
    const d = this.#last;
    call(() => this.#opts.onStateChange?.(s, d));
    for (const cb of [...this.#listeners]) call(() => cb(s, d));
  }

  #err(code: string, message: unknown): void {
    call(() => this.#opts.onError?.({ code, message: String(message) }));
  }

  // drop ends the socket, the poller and any retry, without reconnecting.
  #drop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#poller.stop();
    this.#pollOk = undefined;
    const ws = this.#ws;
    this.#ws = undefined;
    this.#live = false;
    this.#lost();
    ws?.close(1000);
  }

  // lost forgets the requests of a connection that is gone: its
  // subscriptions wait to be confirmed again.
  #lost(): void {
    this.#reqs.clear();
    for (const g of this.#groups) {
      g.n = 0;
      if (g.status === 'subscribed' || g.status === 'reset') this.#status(g, 'pending');
    }
  }

  #online = (): void => {
    if (!this.#ws) this.reconnect();
  };

  #offline = (): void => {
    if (this.#closedByApp) return;
    this.#drop();
    this.#update();
  };

  #connect(): void {
    this.#timer = undefined;
    if (this.#closedByApp) return;
    if (globalThis.navigator?.onLine === false) return this.#update();
    let ws: WebSocket;
    try {
      ws = new this.#WS(this.#url, subprotocol);
    } catch (err) {
      this.#err('websocket', err);
      return this.#ended(undefined, 1006);
    }
    this.#ws = ws;
    ws.onopen = async () => {
      try {
        const token = await this.#opts.getToken(this.#refused ? 'rejected' : 'connect');
        if (this.#ws === ws && ws.readyState === OPEN) ws.send(JSON.stringify({ id: this.#nextId++, type: 'auth', token }));
      } catch (err) {
        this.#err('token', err);
        ws.close();
      }
    };
    ws.onmessage = (m: MessageEvent) => {
      if (this.#ws !== ws) return;
      let msg: ServerMessage;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      this.#handle(msg);
    };
    ws.onclose = (e: CloseEvent) => this.#ended(ws, e.code, e.reason);
    // A connect that fails may fire error and never close (Node 20's
    // WebSocket): an error is the end of the socket.
    ws.onerror = () => this.#ended(ws, 1006);
    this.#update();
  }

  #refusedToken(reason: string): void {
    if (++this.#refused > 1) {
      this.#poller.stop();
      this.#err('unauthorized', reason || 'the token was refused');
    }
  }

  // ended schedules the reconnect after the socket closed by itself.
  #ended(ws: WebSocket | undefined, code: number, reason = ''): void {
    if (this.#ws !== ws) return;
    this.#ws = undefined;
    ws?.close(); // never throws without a code; ends a socket that only fired error
    this.#last = { code, reason };
    this.#lost();
    if (!this.#live) this.#failures++;
    this.#live = false;
    if (code === 4001) this.#refusedToken(reason);
    const slow = this.#refused > 1;
    if (this.#failures >= (this.#opts.pollAfterFailures ?? 5) && !slow && !this.#poller.running) this.#poller.restart();
    this.#update();
    this.#timer = setTimeout(
      () => this.#connect(),
      slow ? ((this.#opts.authRetryMs ?? 6e4) * (1 + Math.random())) / 2 : this.#backoff.next(code === 4008 || code === 4010),
    );
  }

  #send(msg: object): void {
    if (this.#ws?.readyState === OPEN) this.#ws.send(JSON.stringify(msg));
  }

  // sub subscribes channels on the connection, each from the earliest
  // cursor of the subscriptions that want it. A ping follows each request:
  // its pong comes after the whole answer (subscribed, reset, refusals).
  #sub(channels: string[]): void {
    const by = new Map<string | undefined, string[]>();
    for (const c of channels) {
      let since: string | undefined;
      for (const g of this.#groups) if (g.cursor && g.channels.includes(c)) since = earlier(since, g.cursor);
      by.set(since, [...(by.get(since) ?? []), c]);
    }
    for (const [since, chans] of by) {
      const id = this.#nextId;
      this.#nextId += 2;
      const waiting = [...this.#groups].filter((g) => g.channels.some((c) => chans.includes(c)));
      for (const g of waiting) {
        g.n++;
        g.rs = !!g.cursor;
      }
      this.#reqs.set(id, waiting);
      this.#send({ id, type: 'subscribe', channels: chans, since });
      this.#send({ id: id + 1, type: 'ping' });
    }
  }

  #handle(msg: ServerMessage): void {
    switch (msg.type) {
      case 'welcome':
        this.#live = true;
        this.#failures = this.#refused = 0;
        this.#backoff.reset();
        this.#poller.stop();
        this.#pollOk = undefined;
        this.#update();
        this.#sub(this.#channels());
        break;
      case 'event':
        this.#deliver(msg);
        break;
      case 'subscribed':
        this.#top = msg.cursor;
        for (const g of this.#reqs.get(msg.id!) ?? []) if (!g.cursor) this.#move(g, msg.cursor);
        break;
      case 'pong': {
        const waiting = this.#reqs.get(msg.id! - 1);
        this.#reqs.delete(msg.id! - 1);
        for (const g of waiting ?? []) if (--g.n <= 0 && g.status === 'pending' && g.channels.length) this.#confirm(g, g.rs);
        break;
      }
      case 'reset':
        this.#reset(msg.channels, this.#top);
        break;
      case 'revoked':
        this.#revoke(msg.channel, msg.reason, false);
        break;
      case 'error':
        if (msg.channel) this.#revoke(msg.channel, msg.code, true);
        else {
          // A subscribe refused whole (too_many_subscriptions, a bad since):
          // what it was sent for and has no answer yet is refused.
          for (const g of this.#reqs.get(msg.id!) ?? []) {
            if (g.status !== 'pending') continue;
            this.#groups.delete(g);
            this.#status(g, 'refused', msg.code);
          }
          this.#err(msg.code, msg.message);
        }
        break;
      case 'token_expiring':
        void this.#refresh();
        break;
    }
  }

  async #refresh(): Promise<void> {
    const ws = this.#ws;
    try {
      const token = await this.#opts.getToken('expiring');
      if (this.#ws === ws) this.#send({ id: this.#nextId++, type: 'auth', token });
    } catch (err) {
      this.#err('token', err);
    }
  }

  #deliver({ event: e, channels }: EventEnvelope): void {
    for (const g of [...this.#groups]) {
      const mine = g.channels.filter((c) => channels.includes(c));
      if (mine.length === 0 || (g.from && e.cursor <= g.from)) continue;
      this.#move(g, e.cursor);
      if (!this.#dedup.add(e.eventId, g)) continue;
      if (g.fn) call(() => g.fn!(e, mine));
      for (const [t, fn] of g.h) if (t === e.eventType) call(() => fn(e, mine));
    }
  }

  // reset tells the subscriptions of channels to refetch; one all of whose
  // channels were reset starts again from head.
  #reset(channels: string[], head: string | undefined): void {
    for (const g of [...this.#groups]) {
      const mine = g.channels.filter((c) => channels.includes(c));
      if (mine.length === 0) continue;
      if (mine.length === g.channels.length) this.#move(g, head);
      g.recovered = false;
      this.#status(g, 'reset');
      call(() => g.o.onReset?.(mine));
    }
    call(() => this.#opts.onReset?.(channels));
  }

  // revoke drops a channel that was refused (on subscribe) or revoked; a
  // subscription left with no channel ends with that status.
  #revoke(channel: string, reason: string, refused: boolean): void {
    for (const g of [...this.#groups]) {
      if (!g.channels.includes(channel)) continue;
      g.channels = g.channels.filter((c) => c !== channel);
      call(() => g.o.onRevoked?.(channel, reason));
      if (!g.channels.length) {
        this.#groups.delete(g);
        this.#status(g, refused || g.status === 'pending' ? 'refused' : 'revoked', reason);
      }
    }
    call(() => this.#opts.onRevoked?.(channel, reason));
    if (this.#poller.running) this.#poller.restart();
  }
}

/** Creates a client and starts connecting. */
export function createRealtime<E extends EventShape<E> = UntypedEvents, C extends string = string>(
  options: RealtimeOptions,
): RealtimeClient<E, C> {
  return new RealtimeClient<E, C>(options);
}

let shared: RealtimeClient<any, any> | undefined;

/**
 * Returns the page's shared client, creating it from options on the first
 * call (or after it was closed); later calls may omit options. In a server
 * process (SSR) it would be shared by every request: create one per user
 * there instead, or none.
 */
export function getRealtime<E extends EventShape<E> = UntypedEvents, C extends string = string>(
  options?: RealtimeOptions,
): RealtimeClient<E, C> {
  if (!shared || shared.closed) shared = createRealtime(need(options, 'options: call getRealtime(options) first'));
  return shared;
}
