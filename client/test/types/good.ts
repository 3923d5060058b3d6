// Must compile (test/types.test.ts runs tsc --noEmit on it): typed events
// from a generated Events, and untyped use as before.
import { createRealtime, getRealtime } from '../../src/index.js';
import type { EventOf, RealtimeClient, Subscription } from '../../src/index.js';
import type { Channel, Events } from './realtime-events.js';

const rt = createRealtime<Events, Channel>({ url: 'ws://x/ws', getToken: () => 't' });
const sub: Subscription<Events, Channel> = rt.subscribe(['exam:7', 'role:student']);
sub.on('exam.submitted', (e, channels) => {
  const score: number | null = e.data.score;
  const student: number = e.data.student_id;
  const op: 'INSERT' | 'UPDATE' = e.operation;
  const type: 'exam.submitted' = e.eventType;
  const old: number | undefined = e.oldData?.score ?? undefined;
  const ch: Channel[] = channels;
  return [score, student, op, type, old, ch];
});
sub.on('announcement.published', (e) => e.data.title.toUpperCase());
// A type that may be a TRUNCATE: narrow on operation before data.
sub.on('exam.cleared', (e) => (e.operation === 'TRUNCATE' ? undefined : e.data.id));
// An emitted event: operation EMIT, its declared data, no table.
sub.on('exam.closing_soon', (e) => {
  const op: 'EMIT' = e.operation;
  const table: undefined = e.table;
  const left: number = e.data.minutesLeft;
  return [op, table, left];
});
const unsubscribe: () => void = sub;
unsubscribe();
sub.unsubscribe();
void sub.ready().then((s) => s.recovered && s.status === 'subscribed' && s.cursor);

// The shared client, typed the same way.
const shared: RealtimeClient<Events> = getRealtime<Events>();
shared.subscribe(['anything']).on('exam.submitted', (e) => e.data.score);

// Untyped: any event type, data a Row after narrowing, onEvent as before.
const plain = createRealtime({ url: 'ws://x/ws', getToken: () => 't' });
const stop: () => void = plain.subscribe(['class:42'], (e) => {
  if (e.operation !== 'TRUNCATE') return e.data.whatever;
});
stop();
// Untyped, an emitted event is the one without a table.
plain.subscribe(['class:42'], (e) => (e.operation === 'EMIT' ? e.data.whatever : e.table.length))();
plain.subscribe(['class:42']).on('whatever.happened', (e) => (e.operation === 'TRUNCATE' ? null : e.data.id));
plain.subscribe<{ id: number }>(['class:42'], (e) => e.data?.id.toFixed());

// EventOf names one event's type for helpers.
export function score(e: EventOf<Events, 'exam.submitted'>): number | null {
  return e.data.score;
}

// A type emitted only for TRUNCATE carries no data.
rt.subscribe(['class:42']).on('class.truncated', (e) => {
  const none: undefined = e.data;
  return none;
});
