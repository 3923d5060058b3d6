import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Backoff } from '../src/index.js';
import { FakeWS, flush, goLive, lastWS, setup } from './fakes.js';

describe('Backoff', () => {
  it('ceilings grow by factor from initialMs and stop at maxMs', () => {
    const b = new Backoff({}, () => 0.999999);
    const got = Array.from({ length: 9 }, () => Math.round(b.next()));
    expect(got).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it('full jitter: every delay is within [0, ceiling], and can be 0', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 3 });
    for (let i = 0; i < 200; i++) {
      const ceiling = b.ceiling();
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(ceiling);
      expect(ceiling).toBeLessThanOrEqual(1000);
    }
    expect(new Backoff({}, () => 0).next()).toBe(0);
  });

  it('reset starts over', () => {
    const b = new Backoff({}, () => 0.5);
    b.next();
    b.next();
    b.next();
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(250);
  });

  it('slow (rate limited) waits at least half of a raised ceiling', () => {
    const b = new Backoff({}, () => 0);
    expect(b.next(true)).toBe(4000); // ceiling(4) = 8000, half of it
    expect(b.next(true)).toBe(8000);
  });
});

describe('client reconnect delays', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.spyOn(Math, 'random').mockReturnValue(0.999);
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('grow while connects fail, and start over after a successful connect', async () => {
    const { client } = setup({ pollAfterFailures: 100 });
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const n = FakeWS.all.length;
      lastWS().drop(1006);
      let waited = 0;
      while (FakeWS.all.length === n) {
        await flush(100);
        waited += 100;
      }
      waits.push(waited);
    }
    expect(waits).toEqual([500, 1000, 2000, 4000]);
    await goLive(lastWS());
    expect(client.state).toBe('live');
    lastWS().drop(1001);
    await flush(498);
    const n = FakeWS.all.length;
    await flush(2);
    expect(FakeWS.all.length).toBe(n + 1);
    client.close();
  });

  it('backs off longer after 4008', async () => {
    const { client } = setup();
    await goLive(lastWS());
    lastWS().drop(4008);
    await flush(3999);
    expect(FakeWS.all.length).toBe(1);
    await flush(8000);
    expect(FakeWS.all.length).toBe(2);
    client.close();
  });
});
