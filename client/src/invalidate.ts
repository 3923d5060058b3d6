import type { RealtimeClient } from './client.js';
import type { RealtimeEvent } from './types.js';

/** A TanStack Query style query key. */
export type QueryKey = readonly unknown[];

/** Options of {@link invalidateOn}. */
export interface InvalidateOptions {
  /** Channels to listen on. */
  channels: string[];
  /**
   * What to invalidate, by event type (`exam.published`) or table name
   * (`exams`); the event type wins when both match. A list of query keys,
   * or a function of the event returning one.
   */
  map: Record<string, QueryKey[] | ((event: RealtimeEvent) => QueryKey[])>;
  /** Invalidates one query key, e.g. `(queryKey) => queryClient.invalidateQueries({ queryKey })`. */
  invalidate: (queryKey: QueryKey) => void;
}

/**
 * Invalidates queries when events arrive on channels. Keys are collected
 * and invalidated once each per microtask, so a transaction of many rows
 * costs one invalidation per key. When the channels must refetch (`reset`),
 * every key listed in map (not the ones functions return) is invalidated.
 * Returns the function that stops it.
 */
export function invalidateOn(client: RealtimeClient<any, any>, opts: InvalidateOptions): () => void {
  const due = new Map<string, QueryKey>();
  const add = (keys: QueryKey[]) => {
    if (due.size === 0) queueMicrotask(flush);
    for (const k of keys) due.set(JSON.stringify(k), k);
  };
  const flush = () => {
    const keys = [...due.values()];
    due.clear();
    for (const k of keys) opts.invalidate(k);
  };
  return client.subscribe(
    opts.channels,
    (e) => {
      const m = opts.map[e.eventType] ?? (e.table === undefined ? undefined : opts.map[e.table]);
      if (m) add(typeof m === 'function' ? m(e) : m);
    },
    { onReset: () => add(Object.values(opts.map).flatMap((m) => (typeof m === 'function' ? [] : m))) },
  );
}
