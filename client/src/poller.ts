import { Backoff } from './backoff.js';
import type { BackoffOptions, EventEnvelope, TokenReason } from './types.js';

/** What the poller needs from the client. */
export interface PollHost {
  /** The channels to poll now; none idles the poller until restart. */
  channels(): string[];
  /** Where to poll from: the earliest cursor of the subscriptions, if any. */
  since(): string | undefined;
  /** Delivers a page of events; cursor is where the next poll starts. */
  deliver(events: EventEnvelope[], cursor: string | undefined): void;
  /** The cursor expired (410): these channels must refetch. */
  reset(channels: string[]): void;
  /** A channel was refused (403 forbidden, 400 unknown or invalid). */
  refuse(channel: string, code: string): void;
}

/** How long one poll waits on the server for an event. */
export const pollWait = '25s';

/**
 * Poller long-polls `/sync` (the fallback while the WebSocket is down): one
 * request at a time, from the host's cursor, for the host's channels, with
 * the token as a Bearer header. Failed requests are retried with backoff.
 */
export class Poller {
  private gen = 0;
  private abort?: AbortController;
  /** Whether the poller was started and not stopped. */
  running = false;

  constructor(
    private readonly url: string,
    private readonly getToken: (reason: TokenReason) => Promise<string> | string,
    private readonly fetchFn: typeof fetch,
    private readonly host: PollHost,
    private readonly backoff?: Partial<BackoffOptions>,
  ) {}

  /** Starts polling, or starts over (after the channels changed). */
  restart(): void {
    this.stop();
    this.running = true;
    void this.loop(this.gen);
  }

  /** Stops polling; an answer still in flight is dropped. */
  stop(): void {
    this.running = false;
    this.gen++;
    this.abort?.abort();
    this.abort = undefined;
  }

  private async loop(gen: number): Promise<void> {
    const errors = new Backoff(this.backoff);
    let rejected = false;
    while (gen === this.gen) {
      const channels = this.host.channels();
      if (channels.length === 0) return;
      const abort = (this.abort = new AbortController());
      try {
        const token = await this.getToken(rejected ? 'rejected' : 'poll');
        if (gen !== this.gen) return;
        const q = new URLSearchParams({ channels: channels.join(','), wait: pollWait });
        const since = this.host.since();
        if (since) q.set('since', since);
        const res = await this.fetchFn(`${this.url}${this.url.includes('?') ? '&' : '?'}${q}`, {
          headers: { Authorization: `Bearer ${token}` },
          signal: abort.signal,
        });
        const body = await res.json().catch(() => ({}));
        if (gen !== this.gen) return;
        rejected = res.status === 401;
        if (res.ok) {
          this.host.deliver(body.events ?? [], body.cursor);
        } else if (res.status === 410) {
          this.host.reset(channels);
        } else if ((res.status === 403 || res.status === 400) && body.channel) {
          this.host.refuse(body.channel, body.error ?? 'forbidden');
        } else {
          throw new Error(`sync: HTTP ${res.status}`);
        }
        errors.reset();
      } catch {
        if (gen !== this.gen) return;
        await new Promise((r) => setTimeout(r, errors.next()));
      }
    }
  }
}
