// The subscription handle (issue 14, item 3) and snapshot-then-stream
// (item 4), on the fakes.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SubscriptionStatus } from '../src/index.js';
import { answer, ev, fakeFetch, flush, frame, goLive, lastWS, setup } from './fakes.js';

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('subscription status', () => {
  it('pending → subscribed (after the whole answer), pending while down, subscribed and recovered after a reconnect', async () => {
    const { client } = setup();
    const seen: SubscriptionStatus[] = [];
    const sub = client.subscribe(['class:42'], () => {}, { onStatus: (s) => seen.push(s) });
    expect(sub.status).toBe('pending');
    const ready = vi.fn();
    void sub.ready().then(ready);
    await goLive(lastWS());
    const [s] = lastWS().frames('subscribe');
    // subscribed alone does not settle it: a reset may follow.
    lastWS().msg({ id: s.id, type: 'subscribed', channels: ['class:42'], cursor: 'H1' });
    expect(sub.status).toBe('pending');
    expect(lastWS().frames('ping')).toEqual([{ id: s.id + 1, type: 'ping' }]);
    lastWS().msg({ id: s.id + 1, type: 'pong', cursor: 'H1' });
    expect(sub.status).toBe('subscribed');
    expect(sub.recovered).toBe(false); // from the head: nothing to recover
    expect(sub.cursor).toBe('H1');
    await flush();
    expect(ready).toHaveBeenCalledWith(sub);

    lastWS().drop(1006);
    expect(sub.status).toBe('pending');
    await flush(300);
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')[0].since).toBe('H1');
    answer(lastWS(), 'H2');
    expect(sub.status).toBe('subscribed');
    expect(sub.recovered).toBe(true);
    expect(seen).toEqual(['subscribed', 'pending', 'subscribed']);
    client.close();
    expect(sub.status).toBe('closed');
  });

  it('reset after a reconnect: status reset, recovered false, onReset', async () => {
    const { client } = setup();
    const onReset = vi.fn();
    const sub = client.subscribe(['class:42'], () => {}, { onReset });
    await goLive(lastWS());
    answer(lastWS(), 'H1');
    lastWS().drop(1006);
    await flush(300);
    await goLive(lastWS());
    answer(lastWS(), 'H9', ['class:42']);
    expect(sub.status).toBe('reset');
    expect(sub.recovered).toBe(false);
    expect(onReset).toHaveBeenCalledWith(['class:42']);
    expect(sub.cursor).toBe('H9');
    await expect(sub.ready()).resolves.toBe(sub);
    client.close();
  });

  it('refused: status refused with the code, ready() rejects; a partial refusal leaves the rest subscribed', async () => {
    const { client } = setup();
    const mine = client.subscribe(['class:42'], () => {});
    const mixed = client.subscribe(['exam:7', 'class:43'], () => {});
    const readyMine = mine.ready();
    await goLive(lastWS());
    const [s] = lastWS().frames('subscribe');
    lastWS().msg({ id: s.id, type: 'subscribed', channels: ['exam:7'], cursor: 'H1' });
    lastWS().msg({ id: s.id, type: 'error', code: 'forbidden', channel: 'class:42', message: 'no' });
    lastWS().msg({ id: s.id, type: 'error', code: 'forbidden', channel: 'class:43', message: 'no' });
    lastWS().msg({ id: s.id + 1, type: 'pong', cursor: 'H1' });
    expect(mine.status).toBe('refused');
    expect(mine.code).toBe('forbidden');
    await expect(readyMine).rejects.toMatchObject({ code: 'forbidden', status: 'refused' });
    expect(mixed.status).toBe('subscribed');
    expect(mixed.channels).toEqual(['exam:7']);
    client.close();
  });

  it('a subscribe refused whole (an error naming no channel) refuses what waited for it, and goes to onError', async () => {
    const onError = vi.fn();
    const { client } = setup({ onError });
    await goLive(lastWS());
    const sub = client.subscribe(['a', 'b'], () => {}, { since: 'not-a-cursor' });
    const [s] = lastWS().frames('subscribe');
    lastWS().msg({ id: s.id, type: 'error', code: 'bad_request', message: 'since: not a cursor' });
    lastWS().msg({ id: s.id + 1, type: 'pong', cursor: 'H1' });
    expect(sub.status).toBe('refused');
    expect(sub.code).toBe('bad_request');
    expect(onError).toHaveBeenCalledWith({ code: 'bad_request', message: 'since: not a cursor' });
    lastWS().drop(1006);
    await flush(300);
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')).toEqual([]); // dropped: not sent again
    client.close();
  });

  it('a subscription made on a closed client is closed', () => {
    const { client } = setup();
    client.close();
    expect(client.subscribe(['a'], () => {}).status).toBe('closed');
  });

  it('revoked when access to its last channel is lost', async () => {
    const { client } = setup();
    const sub = client.subscribe(['class:42'], () => {});
    await goLive(lastWS());
    answer(lastWS());
    lastWS().msg({ type: 'revoked', channel: 'class:42', reason: 'forbidden' });
    expect(sub.status).toBe('revoked');
    expect(sub.code).toBe('forbidden');
    client.close();
  });

  it('is callable, has unsubscribe(), and both stop it; ready() after that rejects', async () => {
    const { client } = setup();
    const a = client.subscribe(['a'], () => {});
    const b = client.subscribe(['b'], () => {});
    await goLive(lastWS());
    answer(lastWS());
    a();
    b.unsubscribe();
    expect([a.status, b.status]).toEqual(['closed', 'closed']);
    expect(lastWS().frames('unsubscribe').map((f) => f.channels)).toEqual([['a'], ['b']]);
    await expect(a.ready()).rejects.toMatchObject({ status: 'closed' });
    client.close();
  });

  it('on(eventType) calls the handler with that type only, until stopped', async () => {
    const { client } = setup();
    const sub = client.subscribe(['class:42']);
    const published = vi.fn();
    const off = sub.on('exam.published', published);
    const other = vi.fn();
    sub.on('exam.submitted', other);
    await goLive(lastWS());
    lastWS().msg(frame(['class:42'], ev(1)));
    expect(published).toHaveBeenCalledExactlyOnceWith(ev(1), ['class:42']);
    expect(other).not.toHaveBeenCalled();
    off();
    lastWS().msg(frame(['class:42'], ev(2)));
    expect(published).toHaveBeenCalledOnce();
    client.close();
  });

  it('while polling: subscribed once /sync answers, reset on 410', async () => {
    const { client, fetch } = setup({ pollAfterFailures: 1 });
    const sub = client.subscribe(['a'], () => {});
    lastWS().drop(1006);
    await flush();
    fetch.calls[0]!.answer(200, { events: [], cursor: 'C1' });
    await flush();
    expect(sub.status).toBe('subscribed');
    fetch.calls[1]!.answer(410, { error: 'cursor_expired' });
    await flush();
    expect(sub.status).toBe('reset');
    client.close();
  });
});

describe('snapshot, then stream', () => {
  it('head() asks /sync without since, with the Bearer token, and answers its cursor; a refusal rejects with the code', async () => {
    const { client, fetch } = setup();
    const head = client.head(['class:42', 'exam:7']);
    await flush();
    const call = fetch.calls[0]!;
    expect(call.url.pathname).toBe('/api/realtime/sync');
    expect(Object.fromEntries(call.url.searchParams)).toEqual({ channels: 'class:42,exam:7' });
    expect(call.headers).toEqual({ Authorization: 'Bearer tok-1' });
    call.answer(200, { events: [], cursor: 'H5', more: false });
    await expect(head).resolves.toBe('H5');
    const refused = client.head(['class:43']);
    await flush();
    fetch.calls[1]!.answer(403, { error: 'forbidden', channel: 'class:43' });
    await expect(refused).rejects.toMatchObject({ code: 'forbidden', status: 403, channel: 'class:43' });
    client.close();
  });

  it('subscribe with since resumes from it, and delivers nothing at or before it', async () => {
    const { client } = setup();
    const got: string[] = [];
    const sub = client.subscribe(['class:42'], (e) => got.push(e.eventId), { since: ev(2).cursor });
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')).toEqual([{ id: expect.any(Number), type: 'subscribe', channels: ['class:42'], since: ev(2).cursor }]);
    answer(lastWS(), 'H9');
    expect(sub.recovered).toBe(true);
    expect(sub.cursor).toBe(ev(2).cursor); // not the head: it resumes from since
    for (const n of [2, 3, 4]) lastWS().msg(frame(['class:42'], ev(n)));
    expect(got).toEqual([ev(3).eventId, ev(4).eventId]);
    client.close();
  });

  it('since on a channel the connection already has: resubscribed from the earlier cursor; the replay reaches the new subscription only', async () => {
    const { client } = setup();
    const old: string[] = [];
    const fresh: string[] = [];
    client.subscribe(['class:42'], (e) => old.push(e.eventId));
    await goLive(lastWS());
    answer(lastWS(), ev(1).cursor);
    for (const n of [2, 3]) lastWS().msg(frame(['class:42'], ev(n)));
    // A snapshot taken at head ev(1): the new subscription needs ev(2), ev(3).
    client.subscribe(['class:42', 'exam:7'], (e) => fresh.push(e.eventId), { since: ev(1).cursor });
    const ws = lastWS();
    expect(ws.frames('unsubscribe').at(-1)).toMatchObject({ channels: ['class:42'] });
    expect(ws.frames('subscribe').at(-1)).toMatchObject({ channels: ['class:42', 'exam:7'], since: ev(1).cursor });
    answer(ws, ev(3).cursor);
    for (const n of [2, 3, 4]) ws.msg(frame(['class:42'], ev(n)));
    expect(old).toEqual([ev(2).eventId, ev(3).eventId, ev(4).eventId]);
    expect(fresh).toEqual([ev(2).eventId, ev(3).eventId, ev(4).eventId]);
    client.close();
  });

  it('persist keeps the cursor in storage, and a new client (a reload) resumes from it', async () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) };
    const first = setup({ storage });
    first.client.subscribe(['user:19'], () => {}, { persist: 'notifications' });
    await goLive(lastWS());
    lastWS().msg(frame(['user:19'], ev(4)));
    first.client.close();
    expect(store.get('cdc-broadcaster-client:notifications')).toBe(ev(4).cursor);

    const second = setup({ storage, fetch: fakeFetch().fn });
    const got: string[] = [];
    second.client.subscribe(['user:19'], (e) => got.push(e.eventId), { persist: 'notifications', since: 'ignored-when-stored' });
    await goLive(lastWS());
    expect(lastWS().frames('subscribe')[0].since).toBe(ev(4).cursor);
    lastWS().msg(frame(['user:19'], ev(4)));
    lastWS().msg(frame(['user:19'], ev(5)));
    expect(got).toEqual([ev(5).eventId]);
    second.client.close();
  });
});
