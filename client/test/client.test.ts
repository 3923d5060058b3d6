import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRealtime, getRealtime } from '../src/index.js';
import type { ConnectionState, RealtimeEvent, WebSocketCtor } from '../src/index.js';
import { FakeWS, ev, flush, frame, goLive, lastWS, setup } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

/** Makes the next n connects fail, each after its backoff delay. */
async function failConnects(n: number) {
  for (let i = 0; i < n; i++) {
    const count = FakeWS.all.length;
    lastWS().drop(1006);
    while (FakeWS.all.length === count) await flush(250);
  }
}

describe('connect and subscribe', () => {
  it('sends the token only in the first frame, never in the URL, with subprotocol cdc.v1', async () => {
    const { client, getToken } = setup();
    const ws = lastWS();
    expect(ws.url).toBe('wss://school.example/ws');
    expect(ws.protocols).toBe('cdc.v1');
    await goLive(ws);
    expect(getToken).toHaveBeenCalledWith('connect');
    expect(ws.sent[0]).toEqual({ id: 1, type: 'auth', token: 'tok-1' });
    expect(FakeWS.all.every((w) => !w.url.includes('tok'))).toBe(true);
    client.close();
  });

  it('subscribes when live, delivers events with the matching channels, once', async () => {
    const { client } = setup();
    const ws = lastWS();
    const got: [RealtimeEvent, string[]][] = [];
    client.subscribe(['class:42', 'exam:7'], (e, c) => got.push([e, c]));
    expect(ws.sent).toEqual([]); // not open yet
    await goLive(ws);
    expect(ws.frames('subscribe')).toEqual([{ id: 2, type: 'subscribe', channels: ['class:42', 'exam:7'] }]);
    ws.msg({ id: 2, type: 'subscribed', channels: ['class:42', 'exam:7'], cursor: 'H1' });
    ws.msg(frame(['class:42', 'exam:7'], ev(1)));
    ws.msg(frame(['class:42'], ev(1))); // duplicate
    ws.msg(frame(['exam:7'], ev(2)));
    expect(got.map(([e, c]) => [e.eventId, c])).toEqual([
      [ev(1).eventId, ['class:42', 'exam:7']],
      [ev(2).eventId, ['exam:7']],
    ]);
    client.close();
  });

  it('a subscription made while live is sent at once and takes the subscribed cursor', async () => {
    const { client } = setup();
    const ws = lastWS();
    await goLive(ws);
    client.subscribe(['class:42'], () => {});
    const sub = ws.frames('subscribe')[0];
    expect(sub).toEqual({ id: 2, type: 'subscribe', channels: ['class:42'] });
    ws.msg({ id: 2, type: 'subscribed', channels: ['class:42'], cursor: 'H5' });
    ws.drop(1006);
    await flush(300);
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')).toEqual([{ id: expect.any(Number), type: 'subscribe', channels: ['class:42'], since: 'H5' }]);
    client.close();
  });

  it('an exception in one handler does not stop the others', async () => {
    const reportError = vi.fn();
    vi.stubGlobal('reportError', reportError);
    const { client } = setup();
    const ws = lastWS();
    const ok = vi.fn();
    client.subscribe(['a'], () => {
      throw new Error('boom');
    });
    client.subscribe(['a'], ok);
    await goLive(ws);
    ws.msg(frame(['a'], ev(1)));
    expect(ok).toHaveBeenCalledOnce();
    expect(reportError).toHaveBeenCalledOnce();
    client.close();
  });
});

describe('resume bookkeeping', () => {
  it('each subscription keeps the cursor of its last event; reconnect resubscribes with since', async () => {
    const { client } = setup();
    let ws = lastWS();
    client.subscribe(['class:42'], () => {});
    client.subscribe(['exam:7'], () => {});
    client.subscribe(['user:19'], () => {});
    await goLive(ws);
    const [s1] = ws.frames('subscribe'); // no cursor yet: one frame, from the head
    expect(s1).toEqual({ id: 2, type: 'subscribe', channels: ['class:42', 'exam:7', 'user:19'] });
    ws.msg({ id: s1.id, type: 'subscribed', channels: ['class:42', 'exam:7', 'user:19'], cursor: 'H0' });
    ws.msg(frame(['class:42'], ev(1)));
    ws.msg(frame(['exam:7'], ev(2)));
    ws.msg(frame(['class:42'], ev(3)));
    for (const code of [1001, 4009, 4010, 1006]) {
      ws.drop(code);
      await flush(10_000);
      ws = lastWS();
      await goLive(ws, 'H9');
      const subs = ws.frames('subscribe').map((f) => [f.channels, f.since]);
      expect(subs, `after close ${code}`).toEqual(
        expect.arrayContaining([
          [['class:42'], ev(3).cursor],
          [['exam:7'], ev(2).cursor],
          [['user:19'], 'H0'],
        ]),
      );
      expect(subs).toHaveLength(3);
    }
    client.close();
  });

  it('a channel wanted by two subscriptions resumes from the earlier cursor', async () => {
    const { client } = setup();
    const ws = lastWS();
    client.subscribe(['class:42', 'exam:7'], () => {});
    client.subscribe(['exam:7'], () => {});
    await goLive(ws);
    ws.msg(frame(['exam:7'], ev(1)));
    ws.msg(frame(['class:42'], ev(2))); // only the first subscription moves on
    ws.drop(1006);
    await flush(300);
    await goLive(lastWS());
    const subs = lastWS().frames('subscribe').map((f) => [f.channels, f.since]);
    expect(subs).toEqual(
      expect.arrayContaining([
        [['class:42'], ev(2).cursor],
        [['exam:7'], ev(1).cursor],
      ]),
    );
    client.close();
  });

  it('reset calls the subscription onReset and the global onReset, then goes on live', async () => {
    const onReset = vi.fn();
    const { client } = setup({ onReset });
    const ws = lastWS();
    const mine = vi.fn();
    const events = vi.fn();
    client.subscribe(['class:42', 'exam:7'], events, { onReset: mine });
    await goLive(ws);
    ws.msg(frame(['class:42'], ev(1)));
    ws.drop(1006);
    await flush(300);
    const ws2 = lastWS();
    await goLive(ws2);
    const sub = ws2.frames('subscribe')[0];
    ws2.msg({ id: sub.id, type: 'subscribed', channels: ['class:42', 'exam:7'], cursor: 'H7' });
    ws2.msg({ type: 'reset', channels: ['class:42', 'exam:7'], reason: 'cursor_expired' });
    expect(mine).toHaveBeenCalledWith(['class:42', 'exam:7']);
    expect(onReset).toHaveBeenCalledWith(['class:42', 'exam:7']);
    ws2.msg(frame(['exam:7'], ev(8)));
    expect(events).toHaveBeenCalledTimes(2);
    client.close();
  });

  it('after a reset with no event since, the next resume starts from the subscribed head', async () => {
    const { client } = setup();
    client.subscribe(['class:42'], () => {});
    await goLive(lastWS());
    lastWS().msg(frame(['class:42'], ev(1)));
    lastWS().drop(1006);
    await flush(300);
    const ws = lastWS();
    await goLive(ws);
    const sub = ws.frames('subscribe')[0];
    ws.msg({ id: sub.id, type: 'subscribed', channels: ['class:42'], cursor: 'H7' });
    ws.msg({ type: 'reset', channels: ['class:42'], reason: 'cursor_expired' });
    ws.drop(1006);
    await flush(300);
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')[0].since).toBe('H7');
    client.close();
  });
});

describe('token flow', () => {
  it('token_expiring asks for a new token and refreshes on the live connection', async () => {
    const { client, getToken } = setup();
    const ws = lastWS();
    await goLive(ws);
    ws.msg({ type: 'token_expiring', expiresAt: 1 });
    await flush();
    expect(getToken).toHaveBeenLastCalledWith('expiring');
    expect(ws.frames('auth')).toEqual([
      { id: 1, type: 'auth', token: 'tok-1' },
      { id: 2, type: 'auth', token: 'tok-2' },
    ]);
    expect(FakeWS.all).toHaveLength(1);
    client.close();
  });

  it('4001 reconnects with a new token', async () => {
    const { client, getToken } = setup();
    client.subscribe(['class:42'], () => {});
    await goLive(lastWS());
    lastWS().drop(4001);
    expect(client.state).toBe('reconnecting');
    await flush(300);
    expect(FakeWS.all).toHaveLength(2);
    lastWS().open();
    await flush();
    expect(getToken).toHaveBeenLastCalledWith('rejected');
    expect(lastWS().sent[0]).toEqual({ id: expect.any(Number), type: 'auth', token: 'tok-2' });
    expect(FakeWS.all.every((w) => !w.url.includes('tok'))).toBe(true);
    client.close();
  });

  it('a getToken failure closes the attempt and retries later', async () => {
    const onError = vi.fn();
    const getToken = vi.fn().mockRejectedValueOnce(new Error('logged out')).mockResolvedValue('tok');
    const { client } = setup({ getToken, onError });
    lastWS().open();
    await flush();
    expect(onError).toHaveBeenCalledWith({ code: 'token', message: 'Error: logged out' });
    expect(client.state).toBe('reconnecting');
    await flush(300);
    await goLive(lastWS());
    expect(client.state).toBe('live');
    client.close();
  });
});

describe('polling fallback', () => {
  it('polls /sync after 5 failed connects, then switches back to the WebSocket without gap or duplicate', async () => {
    const states: ConnectionState[] = [];
    const { client, fetch } = setup({ onStateChange: (s) => states.push(s) });
    const got: string[] = [];
    client.subscribe(['class:42'], (e) => got.push(e.eventId));
    await goLive(lastWS());
    const sub = lastWS().frames('subscribe')[0];
    lastWS().msg({ id: sub.id, type: 'subscribed', channels: ['class:42'], cursor: 'H0' });
    lastWS().msg(frame(['class:42'], ev(1)));

    // The live socket drops, then 5 reconnects fail.
    lastWS().drop(1006);
    await flush(300);
    await failConnects(4);
    expect(client.state).toBe('reconnecting');
    expect(fetch.calls).toHaveLength(0);
    await failConnects(1);
    expect(client.state).toBe('reconnecting'); // polling only once /sync answers
    await flush();

    // The poll resumes from the last cursor, with the Bearer header.
    expect(fetch.calls).toHaveLength(1);
    let call = fetch.calls[0]!;
    expect(call.url.pathname).toBe('/api/realtime/sync');
    // The first poll answers at once (the server is reachable: polling), the next ones wait.
    expect(Object.fromEntries(call.url.searchParams)).toEqual({ channels: 'class:42', since: ev(1).cursor });
    expect(call.headers).toEqual({ Authorization: 'Bearer tok-2' });
    call.answer(200, { events: [{ channels: ['class:42'], event: ev(1) }, { channels: ['class:42'], event: ev(2) }], cursor: ev(3).cursor, more: false });
    await flush();
    expect(client.state).toBe('polling');
    expect(got).toEqual([ev(1).eventId, ev(2).eventId]); // ev(1) deduped

    // The next poll goes on from the answer's cursor.
    call = fetch.calls[1]!;
    expect(Object.fromEntries(call.url.searchParams)).toEqual({ channels: 'class:42', since: ev(3).cursor, wait: '25s' });

    // The WebSocket is still retried in the background; when it is back,
    // polling stops and the subscription resumes from the poll's cursor.
    await failConnects(1);
    expect(fetch.calls).toHaveLength(2);
    const ws = lastWS();
    await goLive(ws);
    expect(client.state).toBe('live');
    expect(call.aborted()).toBe(true);
    expect(ws.frames('subscribe')).toEqual([{ id: expect.any(Number), type: 'subscribe', channels: ['class:42'], since: ev(3).cursor }]);
    ws.msg(frame(['class:42'], ev(2))); // overlap
    ws.msg(frame(['class:42'], ev(4)));
    expect(got).toEqual([ev(1).eventId, ev(2).eventId, ev(4).eventId]);
    await flush(60_000);
    expect(fetch.calls).toHaveLength(2);
    expect(states).toEqual(['live', 'reconnecting', 'polling', 'live']);
    client.close();
  });

  it('a poll answer that arrives after the WebSocket is back is dropped', async () => {
    const { client, fetch } = setup({ pollAfterFailures: 1 });
    const got: string[] = [];
    client.subscribe(['a'], (e) => got.push(e.eventId));
    lastWS().drop(1006);
    await flush();
    expect(client.state).toBe('reconnecting');
    const call = fetch.calls[0]!;
    expect(call.url.searchParams.has('since')).toBe(false); // nothing seen yet: from the head
    await flush(300);
    await goLive(lastWS());
    call.answer(200, { events: [{ channels: ['a'], event: ev(1) }], cursor: ev(1).cursor });
    await flush();
    expect(got).toEqual([]);
    client.close();
  });

  it('follows `more` at once, and 410 resets', async () => {
    const onReset = vi.fn();
    const { client, fetch } = setup({ pollAfterFailures: 1, onReset });
    const got: string[] = [];
    client.subscribe(['a'], (e) => got.push(e.eventId));
    lastWS().drop(1006);
    await flush();
    fetch.calls[0]!.answer(200, { events: [{ channels: ['a'], event: ev(1) }], cursor: ev(1).cursor, more: true });
    await flush();
    expect(fetch.calls[1]!.url.searchParams.get('since')).toBe(ev(1).cursor);
    fetch.calls[1]!.answer(410, { error: 'cursor_expired' });
    await flush();
    expect(onReset).toHaveBeenCalledWith(['a']);
    expect(fetch.calls[2]!.url.searchParams.has('since')).toBe(false);
    client.close();
  });

  it('403 naming a channel revokes it and polls on without it; 401 asks for a new token', async () => {
    const onRevoked = vi.fn();
    const { client, fetch, getToken } = setup({ pollAfterFailures: 1, onRevoked });
    client.subscribe(['a', 'b'], () => {});
    lastWS().drop(1006);
    await flush();
    fetch.calls[0]!.answer(403, { error: 'forbidden', channel: 'b' });
    await flush();
    expect(onRevoked).toHaveBeenCalledWith('b', 'forbidden');
    expect(fetch.calls[1]!.url.searchParams.get('channels')).toBe('a');
    fetch.calls[1]!.answer(401, { error: 'unauthenticated' });
    await flush(1000);
    expect(getToken).toHaveBeenLastCalledWith('rejected');
    expect(fetch.calls).toHaveLength(3);
    client.close();
  });

  it('a subscription added while polling restarts the poll with its channels', async () => {
    const { client, fetch } = setup({ pollAfterFailures: 1 });
    client.subscribe(['a'], () => {});
    lastWS().drop(1006);
    await flush();
    client.subscribe(['b'], () => {});
    await flush();
    expect(fetch.calls[0]!.aborted()).toBe(true);
    expect(fetch.calls[1]!.url.searchParams.get('channels')).toBe('a,b');
    client.close();
  });
});

describe('unsubscribe', () => {
  it('stops delivery, and unsubscribes on the wire when no one else needs the channel', async () => {
    const { client } = setup();
    const ws = lastWS();
    const one = vi.fn();
    const two = vi.fn();
    const off1 = client.subscribe(['a', 'b'], one);
    const off2 = client.subscribe(['b'], two);
    await goLive(ws);
    off1();
    expect(ws.frames('unsubscribe')).toEqual([{ id: expect.any(Number), type: 'unsubscribe', channels: ['a'] }]);
    ws.msg(frame(['a', 'b'], ev(1)));
    expect(one).not.toHaveBeenCalled();
    expect(two).toHaveBeenCalledOnce();
    off2();
    off2(); // twice is harmless
    expect(ws.frames('unsubscribe').map((f) => f.channels)).toEqual([['a'], ['b']]);
    ws.msg(frame(['b'], ev(2)));
    expect(two).toHaveBeenCalledOnce();
    ws.drop(1006);
    await flush(300);
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')).toEqual([]);
    client.close();
  });
});

describe('revoked and refused channels', () => {
  it('revoked calls onRevoked and drops the channel', async () => {
    const onRevoked = vi.fn();
    const { client } = setup({ onRevoked });
    const mine = vi.fn();
    const events = vi.fn();
    client.subscribe(['a', 'b'], events, { onRevoked: mine });
    await goLive(lastWS());
    lastWS().msg({ type: 'revoked', channel: 'b', reason: 'forbidden' });
    expect(onRevoked).toHaveBeenCalledWith('b', 'forbidden');
    expect(mine).toHaveBeenCalledWith('b', 'forbidden');
    lastWS().drop(1006);
    await flush(300);
    await goLive(lastWS());
    expect(lastWS().frames('subscribe').map((f) => f.channels)).toEqual([['a']]);
    client.close();
  });

  it('a subscribe error naming a channel drops it; other errors go to onError', async () => {
    const onRevoked = vi.fn();
    const onError = vi.fn();
    const { client } = setup({ onRevoked, onError });
    client.subscribe(['a', 'class:43'], () => {});
    await goLive(lastWS());
    lastWS().msg({ id: 2, type: 'error', code: 'forbidden', channel: 'class:43', message: 'no' });
    lastWS().msg({ id: 3, type: 'error', code: 'subject_mismatch', message: 'other user' });
    expect(onRevoked).toHaveBeenCalledWith('class:43', 'forbidden');
    expect(onError).toHaveBeenCalledWith({ code: 'subject_mismatch', message: 'other user' });
    client.close();
  });
});

describe('states', () => {
  it('connecting → live → reconnecting → live, closed when closed by the app, and no reconnect after', async () => {
    const { client } = setup();
    const seen: ConnectionState[] = [];
    const off = client.onStateChange((s) => seen.push(s));
    expect(client.state).toBe('connecting');
    await goLive(lastWS());
    lastWS().drop(1006);
    await flush(300);
    await goLive(lastWS());
    client.close();
    expect(lastWS().closedWith).toBe(1000);
    expect(seen).toEqual(['live', 'reconnecting', 'live', 'closed']);
    await flush(60_000);
    expect(FakeWS.all).toHaveLength(2);
    off();
  });

  it('goes offline with the browser and reconnects when it is back', async () => {
    const target = new EventTarget();
    const nav = { onLine: true };
    vi.stubGlobal('navigator', nav);
    vi.stubGlobal('addEventListener', target.addEventListener.bind(target));
    vi.stubGlobal('removeEventListener', target.removeEventListener.bind(target));
    const { client } = setup();
    client.subscribe(['a'], () => {});
    await goLive(lastWS(), 'H0');
    lastWS().msg(frame(['a'], ev(1)));
    nav.onLine = false;
    target.dispatchEvent(new Event('offline'));
    expect(client.state).toBe('offline');
    expect(lastWS().closedWith).toBe(1000);
    await flush(60_000);
    expect(FakeWS.all).toHaveLength(1);
    nav.onLine = true;
    target.dispatchEvent(new Event('online'));
    expect(client.state).toBe('connecting');
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')[0].since).toBe(ev(1).cursor);
    client.close();
  });

  it('does not connect while the browser is offline', () => {
    vi.stubGlobal('navigator', { onLine: false });
    const { client } = setup();
    expect(client.state).toBe('offline');
    expect(FakeWS.all).toHaveLength(0);
    client.close();
  });
});

describe('getRealtime', () => {
  it('shares one client per page', () => {
    expect(() => getRealtime()).toThrow(/getRealtime\(options\)/);
    FakeWS.all = [];
    const opts = { url: 'ws://x/ws', getToken: () => 't', WebSocket: FakeWS as unknown as WebSocketCtor, fetch: vi.fn() };
    const a = getRealtime(opts);
    expect(getRealtime()).toBe(a);
    expect(getRealtime(opts)).toBe(a);
    expect(FakeWS.all).toHaveLength(1);
    a.close();
    const b = getRealtime(opts);
    expect(b).not.toBe(a);
    b.close();
  });

  it('derives the URL from location', () => {
    vi.stubGlobal('location', { protocol: 'https:', host: 'school.example:8443' });
    FakeWS.all = [];
    const c = createRealtime({ getToken: () => 't', WebSocket: FakeWS as unknown as WebSocketCtor, fetch: vi.fn() });
    expect(lastWS().url).toBe('wss://school.example:8443/ws');
    c.close();
  });
});

describe('a WebSocket constructor that throws', () => {
  it('counts as a failed connect and is retried', async () => {
    let n = 0;
    class Throwing extends FakeWS {
      constructor(url: string, p?: string | string[]) {
        if (n++ === 0) throw new SyntaxError('bad url');
        super(url, p);
      }
    }
    const onError = vi.fn();
    const { client } = setup({ WebSocket: Throwing as unknown as WebSocketCtor, onError });
    expect(onError).toHaveBeenCalledWith({ code: 'websocket', message: 'SyntaxError: bad url' });
    expect(client.state).toBe('reconnecting');
    await flush(300);
    await goLive(lastWS());
    expect(client.state).toBe('live');
    client.close();
  });
});
