/**
 * Dedup remembers the last `size` event ids in a ring, so that memory stays
 * bounded: the oldest id is forgotten when a new one comes in.
 */
export class Dedup {
  private readonly ring: (string | undefined)[];
  private readonly seen = new Set<string>();
  private next = 0;

  constructor(readonly size = 5000) {
    this.ring = new Array(Math.max(1, size));
  }

  /** Reports whether id is new, and remembers it. */
  add(id: string): boolean {
    if (this.seen.has(id)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.seen.delete(old);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.ring.length;
    this.seen.add(id);
    return true;
  }

  /** How many ids are remembered. */
  get count(): number {
    return this.seen.size;
  }
}
