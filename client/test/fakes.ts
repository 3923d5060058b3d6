// Test doubles: a scriptable WebSocket and fetch, and a client wired to them.
import { vi } from 'vitest';
import { createRealtime } from '../src/index.js';
import type { RealtimeEvent, RealtimeOptions, RowEvent, WebSocketCtor } from '../src/index.js';

/** FakeWS records what the client sends; the test plays the server. */
export class FakeWS {
  static all: FakeWS[] = [];
  readyState = 0;
  sent: any[] = [];
  closedWith?: number;
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason?: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeWS.all.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close(code = 1005): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closedWith = code;
    this.onclose?.({ code });
  }

  // Server side.
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  msg(m: object): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  drop(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** An error and no close, as Node 20's WebSocket does when a connect fails. */
  error(): void {
    this.onerror?.({});
  }
  /** The frames sent of one type. */
  frames(type: string): any[] {
    return this.sent.filter((f) => f.type === type);
  }
}

/** The last socket made. */
export const lastWS = (): FakeWS => FakeWS.all[FakeWS.all.length - 1]!;

/** One request made to the fake fetch; the test answers it. */
export interface FetchCall {
  url: URL;
  headers: Record<string, string>;
  aborted: () => boolean;
  answer: (status: number, body: unknown) => void;
  /** Rejects as fetch does when the server cannot be reached. */
  fail: () => void;
}

/** A fetch whose requests wait until the test answers them. */
export function fakeFetch() {
  const calls: FetchCall[] = [];
  const fn = vi.fn((input: string | URL | Request, init?: RequestInit) => {
    return new Promise<Response>((resolve, reject) => {
      const signal = init?.signal;
      signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      calls.push({
        url: new URL(String(input), 'https://school.example'),
        headers: (init?.headers ?? {}) as Record<string, string>,
        aborted: () => signal?.aborted ?? false,
        answer: (status, body) =>
          resolve({ ok: status >= 200 && status < 300, status, json: async () => body } as Response),
        fail: () => reject(new TypeError('fetch failed')),
      });
    });
  });
  return { fn: fn as unknown as typeof fetch, calls };
}

/** Lets pending promises and due timers run. */
export const flush = (ms = 0) => vi.advanceTimersByTimeAsync(ms);

/** A client on the fakes, with getToken answering tok-1, tok-2, ... */
export function setup(extra: Partial<RealtimeOptions> = {}) {
  FakeWS.all = [];
  const f = fakeFetch();
  let n = 0;
  const getToken = vi.fn(async (_reason?: string) => `tok-${++n}`);
  const client = createRealtime({
    url: 'wss://school.example/ws',
    getToken,
    WebSocket: FakeWS as unknown as WebSocketCtor,
    fetch: f.fn,
    ...extra,
  });
  return { client, getToken, fetch: f };
}

/** Answers every subscribe frame sent so far that has no answer: subscribed, then the pong of its ping. */
export function answer(ws: FakeWS, cursor = 'H1', reset?: string[]): void {
  for (const f of ws.frames('subscribe')) {
    if ((ws as any).answered?.has(f.id)) continue;
    ((ws as any).answered ??= new Set()).add(f.id);
    ws.msg({ id: f.id, type: 'subscribed', channels: f.channels, cursor });
    if (reset) ws.msg({ type: 'reset', channels: reset, reason: 'cursor_expired' });
    ws.msg({ id: f.id + 1, type: 'pong', cursor });
  }
}

/** Opens ws, lets the auth frame go, and says welcome. */
export async function goLive(ws: FakeWS, cursor = 'H0'): Promise<void> {
  ws.open();
  await flush();
  ws.msg({ type: 'welcome', connectionId: 'c1', userId: '19', cursor, heartbeatMs: 25000 });
}

/** An event with id and cursor n (fixed-width like the server's). */
export function ev(n: number, table = 'exams'): RowEvent {
  const id = `00000000000000${n.toString(16).padStart(2, '0')}-00000000`;
  return {
    eventId: id,
    cursor: id,
    eventType: 'exam.published',
    table,
    operation: 'UPDATE',
    data: { id: n },
    timestamp: 1764403200000 + n,
    txId: 1000 + n,
  };
}

/** An event frame. */
export const frame = (channels: string[], e: RealtimeEvent) => ({ type: 'event', channels, event: e });
