import { describe, expect, it } from 'vitest';
import { Dedup } from '../src/index.js';

describe('Dedup', () => {
  it('drops a duplicate', () => {
    const d = new Dedup(10);
    expect(d.add('a')).toBe(true);
    expect(d.add('b')).toBe(true);
    expect(d.add('a')).toBe(false);
    expect(d.add('b')).toBe(false);
  });

  it('forgets the oldest id when full', () => {
    const d = new Dedup(3);
    for (const id of ['a', 'b', 'c', 'd']) expect(d.add(id)).toBe(true);
    expect(d.add('d')).toBe(false);
    expect(d.add('b')).toBe(false);
    expect(d.add('a')).toBe(true); // evicted, so new again
  });

  it('keeps memory bounded', () => {
    const d = new Dedup(5000);
    for (let i = 0; i < 50000; i++) d.add(`id-${i}`);
    expect(d.count).toBe(5000);
    expect(d.add('id-49999')).toBe(false);
    expect(d.add('id-44999')).toBe(true);
  });
});
