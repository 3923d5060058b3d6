import type { BackoffOptions } from './types.js';

/** The default reconnect backoff. */
export const defaultBackoff: BackoffOptions = { initialMs: 500, maxMs: 30000, factor: 2 };

/**
 * Backoff counts failed attempts and hands out delays with full jitter:
 * attempt n (from 0) waits random(0, min(maxMs, initialMs * factor^n)).
 */
export class Backoff {
  /** Failed attempts since the last reset. */
  attempt = 0;
  private readonly opts: BackoffOptions;

  constructor(opts: Partial<BackoffOptions> = {}, private readonly random: () => number = Math.random) {
    this.opts = { ...defaultBackoff, ...opts };
  }

  /** The ceiling of attempt n's delay. */
  ceiling(n = this.attempt): number {
    const { initialMs, maxMs, factor } = this.opts;
    return Math.min(maxMs, initialMs * Math.pow(factor, n));
  }

  /**
   * The next delay in milliseconds; counts one more failed attempt. With
   * slow (rate limited), the count jumps to at least 4 and the delay is at
   * least half its ceiling.
   */
  next(slow = false): number {
    if (slow) this.attempt = Math.max(this.attempt, 4);
    const c = this.ceiling();
    this.attempt++;
    return slow ? c / 2 + this.random() * (c / 2) : this.random() * c;
  }

  /** Starts over after a success. */
  reset(): void {
    this.attempt = 0;
  }
}
