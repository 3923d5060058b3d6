import { Backoff } from './backoff.js';
import { Dedup } from './dedup.js';
import { Poller } from './poller.js';
import type {
  ConnectionState,
  EventEnvelope,
  EventHandler,
  RealtimeOptions,
  Row,
  ServerMessage,
  SubscribeOptions,
  WebSocketCtor,
} from './types.js';

/** The WebSocket subprotocol of wire contract v1. */
export const subprotocol = 'cdc.v1';

// One subscribe() call: its channels and the last cursor seen on them.
interface Group {
  channels: string[];
  onEvent: EventHandler<any>;
  opts: SubscribeOptions;
  cursor?: string;
}

const OPEN = 1;

// Cursors are fixed-width text whose order is commit order (protocol.md).
const earlier = (a: string | undefined, b: string) => (a === undefined || b < a ? b : a);

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
 * and drops events it has already delivered.
 */
export class RealtimeClient {
  private readonly opts: RealtimeOptions;
  private readonly url: string;
  private readonly WS: WebSocketCtor;
  private readonly groups = new Set<Group>();
  private readonly listeners = new Set<(s: ConnectionState) => void>();
  private readonly backoff: Backoff;
  private readonly dedup: Dedup;
  private readonly poller: Poller;
  private ws?: WebSocket;
  private live = false; // ws got welcome
  private failures = 0; // connects in a row that never got welcome
  private timer?: ReturnType<typeof setTimeout>;
  private nextId = 1;
  private pending = new Map<number, Group[]>(); // subscribe id → groups awaiting a cursor
  private head?: string; // cursor of the last subscribed reply
  private current: ConnectionState = 'connecting';
  private closedByApp = false;
  private rejected = false; // the last close was 4001: ask for a new token

  constructor(options: RealtimeOptions) {
    this.opts = options;
    const loc = globalThis.location;
    const url = options.url ?? (loc && `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`);
    const WS = options.WebSocket ?? globalThis.WebSocket;
    const fetchFn = options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (!url || !WS || !fetchFn) throw new Error('cdc-broadcaster-client: no url, WebSocket or fetch');
    this.url = url;
    this.WS = WS;
    this.backoff = new Backoff(options.backoff);
    this.dedup = new Dedup(options.dedupSize ?? 5000);
    this.poller = new Poller(options.syncUrl ?? '/api/realtime/sync', options.getToken, fetchFn, {
      channels: () => this.channels(),
      since: () => {
        let s: string | undefined;
        for (const g of this.groups) if (g.cursor) s = earlier(s, g.cursor);
        return s;
      },
      deliver: (events, cursor) => {
        for (const e of events) this.deliver(e);
        if (cursor) for (const g of this.groups) g.cursor = cursor;
      },
      reset: (channels) => this.reset(channels, undefined),
      refuse: (channel, code) => this.revoke(channel, code),
    }, options.backoff);
    globalThis.addEventListener?.('online', this.online);
    globalThis.addEventListener?.('offline', this.offline);
    this.connect();
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** Whether the app closed this client. */
  get closed(): boolean {
    return this.closedByApp;
  }

  /** Calls cb on every state change until the returned function is called. */
  onStateChange = (cb: (state: ConnectionState) => void): (() => void) => {
    this.listeners.add(cb);
    return () => void this.listeners.delete(cb);
  };

  /**
   * Delivers the events of channels to onEvent, each once, until the
   * returned function is called. `T` types the events' `data`.
   */
  subscribe<T = Row>(channels: string[], onEvent: EventHandler<T>, opts: SubscribeOptions = {}): () => void {
    const g: Group = { channels: [...new Set(channels)], onEvent, opts };
    this.groups.add(g);
    if (this.live && g.channels.length) this.sendSubscribe(g.channels, undefined, [g]);
    else if (this.poller.running) this.poller.restart();
    return () => this.unsubscribe(g);
  }

  /** Closes the connection for good: no reconnect; the state becomes 'offline'. */
  close(): void {
    this.closedByApp = true;
    globalThis.removeEventListener?.('online', this.online);
    globalThis.removeEventListener?.('offline', this.offline);
    this.drop();
    this.setState('offline');
  }

  private unsubscribe(g: Group): void {
    if (!this.groups.delete(g)) return;
    const needed = new Set(this.channels());
    const gone = g.channels.filter((c) => !needed.has(c));
    if (gone.length && this.live) this.send({ id: this.nextId++, type: 'unsubscribe', channels: gone });
    if (this.poller.running) this.poller.restart();
  }

  private channels(): string[] {
    const all = new Set<string>();
    for (const g of this.groups) for (const c of g.channels) all.add(c);
    return [...all];
  }

  private setState(s: ConnectionState): void {
    if (s === this.current) return;
    this.current = s;
    call(() => this.opts.onStateChange?.(s));
    for (const cb of [...this.listeners]) call(() => cb(s));
  }

  // drop ends the socket, the poller and any retry, without reconnecting.
  private drop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.poller.stop();
    const ws = this.ws;
    this.ws = undefined;
    this.live = false;
    ws?.close(1000);
  }

  private online = (): void => {
    if (this.closedByApp || this.ws) return;
    clearTimeout(this.timer);
    this.backoff.reset();
    this.failures = 0;
    this.connect();
  };

  private offline = (): void => {
    if (this.closedByApp) return;
    this.drop();
    this.setState('offline');
  };

  private connect(): void {
    this.timer = undefined;
    if (this.closedByApp) return;
    if (globalThis.navigator?.onLine === false) return this.setState('offline');
    if (!this.poller.running) this.setState('connecting');
    let ws: WebSocket;
    try {
      ws = new this.WS(this.url, subprotocol);
    } catch (err) {
      call(() => this.opts.onError?.({ code: 'websocket', message: String(err) }));
      return this.onClosed(1006);
    }
    this.ws = ws;
    ws.onopen = async () => {
      try {
        const token = await this.opts.getToken(this.rejected ? 'rejected' : 'connect');
        if (this.ws === ws && ws.readyState === OPEN) ws.send(JSON.stringify({ id: this.nextId++, type: 'auth', token }));
      } catch (err) {
        call(() => this.opts.onError?.({ code: 'token', message: String(err) }));
        ws.close();
      }
    };
    ws.onmessage = (m: MessageEvent) => {
      if (this.ws !== ws) return;
      let msg: ServerMessage;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      this.handle(msg);
    };
    ws.onclose = (e: CloseEvent) => {
      if (this.ws === ws) this.onClosed(e.code);
    };
  }

  // onClosed schedules the reconnect after the socket closed by itself.
  private onClosed(code: number): void {
    this.ws = undefined;
    this.rejected = code === 4001;
    this.pending.clear();
    if (!this.live) this.failures++;
    this.live = false;
    const delay = this.backoff.next(code === 4008 || code === 4010);
    if (this.failures >= (this.opts.pollAfterFailures ?? 5)) {
      if (!this.poller.running) this.poller.restart();
      this.setState('polling');
    } else {
      this.setState('connecting');
    }
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private send(msg: object): void {
    if (this.ws?.readyState === OPEN) this.ws.send(JSON.stringify(msg));
  }

  private sendSubscribe(channels: string[], since: string | undefined, waiting: Group[]): void {
    const id = this.nextId++;
    if (waiting.length) this.pending.set(id, waiting);
    this.send(since ? { id, type: 'subscribe', channels, since } : { id, type: 'subscribe', channels });
  }

  // resubscribe subscribes every channel on a new connection, each from the
  // earliest cursor of the groups that want it.
  private resubscribe(): void {
    const from = new Map<string, string | undefined>();
    for (const g of this.groups) {
      for (const c of g.channels) {
        const prev = from.get(c);
        from.set(c, g.cursor ? earlier(prev, g.cursor) : prev);
      }
    }
    const bySince = new Map<string | undefined, string[]>();
    for (const [c, since] of from) bySince.set(since, [...(bySince.get(since) ?? []), c]);
    for (const [since, channels] of bySince) {
      const waiting = [...this.groups].filter((g) => !g.cursor && g.channels.some((c) => channels.includes(c)));
      this.sendSubscribe(channels, since, waiting);
    }
  }

  private handle(msg: ServerMessage): void {
    switch (msg.type) {
      case 'welcome':
        this.live = true;
        this.failures = 0;
        this.backoff.reset();
        this.poller.stop();
        this.setState('live');
        this.resubscribe();
        break;
      case 'event':
        this.deliver(msg);
        break;
      case 'subscribed': {
        this.head = msg.cursor;
        for (const g of this.pending.get(msg.id ?? -1) ?? []) g.cursor ??= msg.cursor;
        this.pending.delete(msg.id ?? -1);
        break;
      }
      case 'reset':
        this.reset(msg.channels, this.head);
        break;
      case 'revoked':
        this.revoke(msg.channel, msg.reason);
        break;
      case 'error':
        if (msg.channel) this.revoke(msg.channel, msg.code);
        else call(() => this.opts.onError?.({ code: msg.code, message: msg.message }));
        break;
      case 'token_expiring':
        void this.refresh();
        break;
    }
  }

  private async refresh(): Promise<void> {
    const ws = this.ws;
    try {
      const token = await this.opts.getToken('expiring');
      if (this.ws === ws) this.send({ id: this.nextId++, type: 'auth', token });
    } catch (err) {
      call(() => this.opts.onError?.({ code: 'token', message: String(err) }));
    }
  }

  private deliver(env: EventEnvelope): void {
    const fresh = this.dedup.add(env.event.eventId);
    for (const g of [...this.groups]) {
      const mine = g.channels.filter((c) => env.channels.includes(c));
      if (mine.length === 0) continue;
      g.cursor = env.event.cursor;
      if (fresh) call(() => g.onEvent(env.event, mine));
    }
  }

  // reset tells the groups of channels to refetch; a group all of whose
  // channels were reset starts again from head.
  private reset(channels: string[], head: string | undefined): void {
    for (const g of [...this.groups]) {
      const mine = g.channels.filter((c) => channels.includes(c));
      if (mine.length === 0) continue;
      if (mine.length === g.channels.length) g.cursor = head;
      call(() => g.opts.onReset?.(mine));
    }
    call(() => this.opts.onReset?.(channels));
  }

  private revoke(channel: string, reason: string): void {
    for (const g of [...this.groups]) {
      if (!g.channels.includes(channel)) continue;
      g.channels = g.channels.filter((c) => c !== channel);
      call(() => g.opts.onRevoked?.(channel, reason));
    }
    call(() => this.opts.onRevoked?.(channel, reason));
    if (this.poller.running) this.poller.restart();
  }
}

/** Creates a client and starts connecting. */
export function createRealtime(options: RealtimeOptions): RealtimeClient {
  return new RealtimeClient(options);
}

let shared: RealtimeClient | undefined;

/**
 * Returns the page's shared client, creating it from options on the first
 * call (or after it was closed); later calls may omit options.
 */
export function getRealtime(options?: RealtimeOptions): RealtimeClient {
  if (!shared || shared.closed) {
    if (!options) throw new Error('cdc-broadcaster-client: call getRealtime(options) first');
    shared = createRealtime(options);
  }
  return shared;
}
