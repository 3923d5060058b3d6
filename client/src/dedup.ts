/**
 * Dedup remembers the last `size` event ids in a ring, so that memory stays
 * bounded: the oldest id is forgotten when a new one comes in. Each id
 * remembers who had it, so that an event replayed for a subscription that
 * never had it reaches that subscription, and no other twice.
 */
export class Dedup {
  private readonly ring: (string | undefined)[];
  private readonly seen = new Map<string, unknown[]>();
  private next = 0;

  constructor(readonly size = 5000) {
    this.ring = new Array(Math.max(1, size));
  }

  /** Reports whether id is new to who (default: anyone), and remembers it. */
  add(id: string, who: unknown = this): boolean {
    let had = this.seen.get(id);
    if (!had) {
      const old = this.ring[this.next];
      if (old !== undefined) this.seen.delete(old);
      this.ring[this.next] = id;
      this.next = (this.next + 1) % this.ring.length;
      this.seen.set(id, (had = []));
    }
    if (had.includes(who)) return false;
    had.push(who);
    return true;
  }

  /** How many ids are remembered. */
  get count(): number {
    return this.seen.size;
  }
}
