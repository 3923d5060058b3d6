/**
 * React bindings (entry `cdc-broadcaster-client/react`): the core entry has
 * no React. React 18 or later is an optional peer dependency.
 */
import { useEffect, useRef, useSyncExternalStore } from 'react';
import type { DependencyList } from 'react';
import { getRealtime } from './client.js';
import type { RealtimeClient } from './client.js';
import type { ConnectionState, EventHandler, Row, SubscribeOptions } from './types.js';

/** Options of {@link useRealtime}. */
export interface UseRealtimeOptions extends SubscribeOptions {
  /** The client; default the page's shared one, {@link getRealtime}(). */
  client?: RealtimeClient<any, any>;
}

/**
 * Subscribes the component to channels while it is mounted. The latest
 * onEvent is always the one called, so it need not be memoized; the
 * subscription is renewed when the channels (by value), the client or deps
 * change. An empty channel list subscribes to nothing.
 */
export function useRealtime<T = Row>(
  channels: string[],
  onEvent: EventHandler<T>,
  deps: DependencyList = [],
  options: UseRealtimeOptions = {},
): void {
  const latest = useRef({ onEvent, options });
  latest.current = { onEvent, options };
  const key = JSON.stringify(channels);
  useEffect(() => {
    const names: string[] = JSON.parse(key);
    if (names.length === 0) return;
    const client = options.client ?? getRealtime();
    const o = latest.current.options;
    return client.subscribe<T>(names, (e, c) => latest.current.onEvent(e, c), {
      since: o.since,
      persist: o.persist,
      onStatus: (s, sub) => latest.current.options.onStatus?.(s, sub),
      onReset: (c) => latest.current.options.onReset?.(c),
      onRevoked: (c, r) => latest.current.options.onRevoked?.(c, r),
    });
  }, [key, options.client, ...deps]);
}

/** The client's connection state, re-rendering on every change. */
export function useRealtimeState(client?: RealtimeClient<any, any>): ConnectionState {
  const c = client ?? getRealtime();
  return useSyncExternalStore(c.onStateChange, () => c.state, () => 'connecting');
}
