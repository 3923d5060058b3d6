// Honest connection states (issue 14, item 2) and Node-side construction
// (item 6), on the fakes with fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRealtime } from '../src/index.js';
import type { ConnectionState, StateDetail, WebSocketCtor } from '../src/index.js';
import { FakeWS, flush, goLive, lastWS, setup } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

/** Records every state change with its detail. */
function recorder() {
  const seen: [ConnectionState, StateDetail][] = [];
  return { seen, onStateChange: (s: ConnectionState, d: StateDetail) => seen.push([s, d]) };
}

describe('a refused token', () => {
  it('ends in unauthorized with onError, and asks for a token only a few times a minute', async () => {
    const onError = vi.fn();
    const r = recorder();
    const { client, getToken, fetch } = setup({ onError, onStateChange: r.onStateChange });
    client.subscribe(['class:42'], () => {});
    // The first connect: refused. The client asks for a new token at once.
    lastWS().open();
    await flush();
    lastWS().drop(4001, 'token expired');
    expect(client.state).toBe('reconnecting');
    expect(onError).not.toHaveBeenCalled();
    await flush(300);
    lastWS().open();
    await flush();
    expect(getToken).toHaveBeenLastCalledWith('rejected');
    lastWS().drop(4001, 'signature invalid');
    // Refused again: unauthorized, told, and no more hammering.
    expect(client.state).toBe('unauthorized');
    expect(r.seen.at(-1)).toEqual(['unauthorized', { code: 4001, reason: 'signature invalid' }]);
    expect(onError).toHaveBeenCalledExactlyOnceWith({ code: 'unauthorized', message: 'signature invalid' });
    expect(fetch.calls).toHaveLength(0);

    // A minute of refusals: each retry asks for one token and is refused.
    const before = getToken.mock.calls.length;
    for (let t = 0; t < 60_000; t += 1000) {
      await flush(1000);
      const ws = lastWS();
      if (ws.readyState === 0) {
        ws.open();
        await flush();
        ws.drop(4001, 'signature invalid');
      }
    }
    const perMinute = getToken.mock.calls.length - before;
    expect(perMinute).toBeGreaterThanOrEqual(1); // it does retry
    expect(perMinute).toBeLessThanOrEqual(3);
    expect(client.state).toBe('unauthorized');
    expect(getToken.mock.calls.slice(before).every((c) => (c as unknown[])[0] === 'rejected')).toBe(true);

    // The app signs the user in again: reconnect() tries at once.
    getToken.mockResolvedValue('good');
    const n = FakeWS.all.length;
    client.reconnect();
    expect(FakeWS.all).toHaveLength(n + 1);
    await goLive(lastWS());
    expect(client.state).toBe('live');
    client.close();
  });

  it('a token refused once (expired on a live connection) is renewed at once, not unauthorized', async () => {
    const onError = vi.fn();
    const { client, getToken } = setup({ onError });
    await goLive(lastWS());
    lastWS().drop(4001);
    await flush(300);
    await goLive(lastWS());
    expect(getToken).toHaveBeenLastCalledWith('rejected');
    expect(client.state).toBe('live');
    lastWS().drop(4001);
    await flush(300);
    lastWS().open();
    await flush();
    expect(client.state).toBe('reconnecting'); // a refusal after a welcome starts the count over
    expect(onError).not.toHaveBeenCalled();
    client.close();
  });

  it('HTTP 401 twice while polling: unauthorized, and polling stops', async () => {
    const onError = vi.fn();
    const { client, fetch } = setup({ pollAfterFailures: 1, onError });
    client.subscribe(['a'], () => {});
    lastWS().drop(1006);
    await flush();
    fetch.calls[0]!.answer(401, { error: 'unauthenticated' });
    await flush();
    expect(fetch.calls).toHaveLength(2);
    fetch.calls[1]!.answer(401, { error: 'unauthenticated' });
    await flush();
    expect(client.state).toBe('unauthorized');
    expect(onError).toHaveBeenCalledWith({ code: 'unauthorized', message: 'HTTP 401' });
    await flush(20_000);
    expect(fetch.calls).toHaveLength(2);
    client.close();
  });
});

describe('a server that is down', () => {
  it('is offline, not polling, once /sync fails too; polling once /sync answers; live when back', async () => {
    const r = recorder();
    const { client, fetch } = setup({ pollAfterFailures: 2, onStateChange: r.onStateChange });
    client.subscribe(['a'], () => {});
    expect(client.state).toBe('connecting');
    lastWS().drop(1006);
    expect(client.state).toBe('reconnecting');
    expect(client.detail).toEqual({ code: 1006, reason: '' });
    await flush(300);
    lastWS().drop(1006);
    await flush();
    expect(client.state).toBe('reconnecting'); // no answer from /sync yet
    // The server is down: fetch fails (the fake rejects like a network error).
    fetch.calls[0]!.fail();
    await flush();
    expect(client.state).toBe('offline');
    // A 502 from a proxy in front of a dead server is offline too.
    await flush(1000);
    fetch.calls[1]!.answer(502, {});
    await flush();
    expect(client.state).toBe('offline');
    // /sync is back while the WebSocket is not: polling.
    await flush(2000);
    fetch.calls[2]!.answer(200, { events: [], cursor: 'C1', more: false });
    await flush();
    expect(client.state).toBe('polling');
    while (lastWS().readyState === 3) await flush(500);
    await goLive(lastWS());
    expect(r.seen.map(([s]) => s)).toEqual(['reconnecting', 'offline', 'polling', 'live']);
    client.close();
    expect(client.state).toBe('closed');
  });

  it('a failed connect that fires error and no close (Node 20) is retried', async () => {
    const { client } = setup();
    const first = lastWS();
    first.error();
    expect(client.state).toBe('reconnecting');
    await flush(300);
    expect(FakeWS.all).toHaveLength(2);
    // The late close of the first socket changes nothing.
    first.onclose?.({ code: 1006 });
    expect(FakeWS.all).toHaveLength(2);
    await goLive(lastWS());
    expect(client.state).toBe('live');
    client.close();
  });
});

describe('construction', () => {
  it('says which of url, WebSocket and fetch is missing', () => {
    const WebSocket = FakeWS as unknown as WebSocketCtor;
    const getToken = () => 't';
    vi.stubGlobal('location', undefined);
    vi.stubGlobal('WebSocket', undefined);
    vi.stubGlobal('fetch', undefined);
    expect(() => createRealtime({ getToken, WebSocket, fetch: vi.fn() })).toThrow(/no url \(pass options\.url\)/);
    expect(() => createRealtime({ getToken, url: 'ws://x/ws', fetch: vi.fn() })).toThrow(/no WebSocket \(pass options\.WebSocket\)/);
    expect(() => createRealtime({ getToken, url: 'ws://x/ws', WebSocket })).toThrow(/no fetch \(pass options\.fetch\)/);
  });

  it('derives the /sync URL from the WebSocket URL (absolute, for Node)', async () => {
    FakeWS.all = [];
    const f = vi.fn(async () => ({ status: 200, json: async () => ({ events: [], cursor: 'H3' }) }) as unknown as Response);
    const c = createRealtime({ url: 'ws://127.0.0.1:8080/ws', getToken: () => 't', WebSocket: FakeWS as unknown as WebSocketCtor, fetch: f });
    expect(await c.head(['a'])).toBe('H3');
    expect((f.mock.calls[0] as unknown[])[0]).toBe('http://127.0.0.1:8080/api/realtime/sync?channels=a');
    c.close();
  });
});
