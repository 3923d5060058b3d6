import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createElement, act } from 'react';
import TestRenderer from 'react-test-renderer';
import type { ReactTestRenderer } from 'react-test-renderer';
import { useRealtime, useRealtimeState } from '../src/react.js';
import { getRealtime } from '../src/index.js';
import type { RealtimeClient, RealtimeEvent, WebSocketCtor } from '../src/index.js';
import { FakeWS, answer, ev, flush, frame, goLive, lastWS, setup } from './fakes.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

beforeEach(() => {
  vi.useFakeTimers();
  // react-test-renderer 19 still works, and says it is deprecated.
  const error = console.error;
  vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
    if (!String(args[0]).includes('react-test-renderer is deprecated')) error(...args);
  });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

function Probe(props: { client: RealtimeClient; channels: string[]; label: string; seen: string[] }) {
  const state = useRealtimeState(props.client);
  useRealtime(props.channels, (e: RealtimeEvent) => props.seen.push(`${props.label}:${e.eventId}`), [], {
    client: props.client,
  });
  return createElement('span', null, state);
}

describe('React hooks', () => {
  it('subscribe while mounted, call the latest handler, follow channel changes and show the state', async () => {
    const { client } = setup();
    const seen: string[] = [];
    let r!: ReactTestRenderer;
    await act(async () => {
      r = TestRenderer.create(createElement(Probe, { client, channels: ['a'], label: 'one', seen }));
    });
    expect(r.toJSON()).toMatchObject({ children: ['connecting'] });
    const ws = lastWS();
    await act(async () => {
      await goLive(ws);
    });
    expect(r.toJSON()).toMatchObject({ children: ['live'] });
    expect(ws.frames('subscribe').map((f) => f.channels)).toEqual([['a']]);

    // A new handler (label) and the same channels by value: no resubscribe.
    await act(async () => {
      r.update(createElement(Probe, { client, channels: ['a'], label: 'two', seen }));
    });
    expect(ws.frames('subscribe')).toHaveLength(1);
    await act(async () => ws.msg(frame(['a'], ev(1))));
    expect(seen).toEqual([`two:${ev(1).eventId}`]);

    // Other channels: unsubscribe a, subscribe b.
    await act(async () => {
      r.update(createElement(Probe, { client, channels: ['b'], label: 'two', seen }));
    });
    expect(ws.frames('unsubscribe').map((f) => f.channels)).toEqual([['a']]);
    expect(ws.frames('subscribe').map((f) => f.channels)).toEqual([['a'], ['b']]);

    await act(async () => r.unmount());
    expect(ws.frames('unsubscribe').map((f) => f.channels)).toEqual([['a'], ['b']]);
    await act(async () => ws.msg(frame(['b'], ev(2))));
    expect(seen).toHaveLength(1);
    client.close();
    await flush();
  });
});

function Shared(props: { seen: string[] }) {
  useRealtime(['a'], (e) => props.seen.push(e.eventId));
  return createElement('span', null, useRealtimeState());
}

describe('React hooks with the shared client', () => {
  it('use getRealtime() when no client is given', async () => {
    FakeWS.all = [];
    const client = getRealtime({ url: 'ws://x/ws', getToken: () => 't', WebSocket: FakeWS as unknown as WebSocketCtor, fetch: vi.fn() });
    const seen: string[] = [];
    let r!: ReactTestRenderer;
    await act(async () => {
      r = TestRenderer.create(createElement(Shared, { seen }));
      await goLive(lastWS());
    });
    expect(r.toJSON()).toMatchObject({ children: ['live'] });
    await act(async () => lastWS().msg(frame(['a'], ev(1))));
    expect(seen).toEqual([ev(1).eventId]);
    await act(async () => r.unmount());
    client.close();
  });
});

function WithStatus(props: { client: RealtimeClient; statuses: string[]; since?: string }) {
  useRealtime(['a'], () => {}, [], { client: props.client, since: props.since, onStatus: (s) => props.statuses.push(s) });
  return null;
}

describe('useRealtime options', () => {
  it('passes since and onStatus through', async () => {
    const { client } = setup();
    const statuses: string[] = [];
    let r!: ReactTestRenderer;
    await act(async () => {
      r = TestRenderer.create(createElement(WithStatus, { client, statuses, since: ev(3).cursor }));
      await goLive(lastWS());
    });
    expect(lastWS().frames('subscribe')).toEqual([{ id: expect.any(Number), type: 'subscribe', channels: ['a'], since: ev(3).cursor }]);
    await act(async () => answer(lastWS()));
    expect(statuses).toEqual(['subscribed']);
    await act(async () => r.unmount());
    expect(statuses).toEqual(['subscribed', 'closed']);
    client.close();
  });
});
