import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { invalidateOn } from '../src/index.js';
import type { EmittedEvent, QueryKey } from '../src/index.js';
import { ev, flush, frame, goLive, lastWS, setup } from './fakes.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('invalidateOn', () => {
  it('invalidates the keys mapped from the table or event type, once per key per burst', async () => {
    const { client } = setup();
    const invalidate = vi.fn<(k: QueryKey) => void>();
    const off = invalidateOn(client, {
      channels: ['class:42'],
      map: {
        exams: [['exams'], ['dashboard']],
        attendance: (e) => [['attendance', e.operation === 'TRUNCATE' ? 'all' : e.data.id]],
        'exam.deleted': [['exams'], ['trash']],
      },
      invalidate,
    });
    await goLive(lastWS());
    const ws = lastWS();
    ws.msg(frame(['class:42'], ev(1, 'exams')));
    ws.msg(frame(['class:42'], ev(2, 'exams')));
    ws.msg(frame(['class:42'], ev(3, 'attendance')));
    ws.msg(frame(['class:42'], ev(4, 'grades'))); // not mapped
    await flush();
    expect(invalidate.mock.calls.map((c) => c[0])).toEqual([['exams'], ['dashboard'], ['attendance', 3]]);

    invalidate.mockClear();
    ws.msg(frame(['class:42'], { ...ev(5, 'exams'), eventType: 'exam.deleted', operation: 'DELETE' }));
    await flush();
    expect(invalidate.mock.calls.map((c) => c[0])).toEqual([['exams'], ['trash']]);

    // An emitted event has no table: only its type can map it.
    invalidate.mockClear();
    const emitted = (n: number, eventType: string): EmittedEvent => {
      const { eventId, cursor, timestamp } = ev(n);
      return { eventId, cursor, timestamp, txId: 0, eventType, operation: 'EMIT', data: { examId: n } };
    };
    ws.msg(frame(['class:42'], emitted(6, 'exam.closing_soon'))); // not mapped
    ws.msg(frame(['class:42'], emitted(7, 'exam.deleted')));
    await flush();
    expect(invalidate.mock.calls.map((c) => c[0])).toEqual([['exams'], ['trash']]);

    invalidate.mockClear();
    ws.msg({ type: 'reset', channels: ['class:42'], reason: 'cursor_expired' });
    await flush();
    expect(invalidate.mock.calls.map((c) => c[0])).toEqual([['exams'], ['dashboard'], ['trash']]);

    invalidate.mockClear();
    off();
    ws.msg(frame(['class:42'], ev(6, 'exams')));
    await flush();
    expect(invalidate).not.toHaveBeenCalled();
    expect(ws.frames('unsubscribe')).toHaveLength(1);
    client.close();
  });
});
