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
  /**
   * The outcome of each poll: its HTTP status, 0 when the server could not
   * be reached. Returns whether to go on (false after a refused token).
   */
  polled(status: number): boolean;
}

/** How long one poll waits on the server for an event. */
export const pollWait = '25s';

/** An answer of `/sync`: status 0 when fetch failed (network). */
export interface SyncAnswer {
  status: number;
  body: any;
}

/**
 * get asks `/sync` once: the token as a Bearer header, the query from q.
 * A network failure is status 0, never a throw (but an abort is).
 */
export async function getSync(
  fetchFn: typeof fetch,
  url: string,
  token: string,
  q: Record<string, string | undefined>,
  signal?: AbortSignal,
): Promise<SyncAnswer> {
  const p = new URLSearchParams();
  for (const k in q) if (q[k]) p.set(k, q[k]!);
  try {
    const res = await fetchFn(`${url}${url.includes('?') ? '&' : '?'}${p}`, {
      headers: { Authorization: `Bearer ${token}` },
      signal,
    });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  } catch (err) {
    if (signal?.aborted) throw err;
    return { status: 0, body: {} };
  }
}

/**
 * Poller long-polls `/sync` (the fallback while the WebSocket is down): one
 * request at a time, from the host's cursor, for the host's channels, with
 * the token as a Bearer header; the first at once, the next ones waiting
 * for an event. Failed requests are retried with backoff.
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
    // Only after an answer does a poll wait on the server: the first one
    // (and the first after a failure) answers at once, telling the client
    // that the server is reachable.
    let wait: string | undefined;
    while (gen === this.gen) {
      const channels = this.host.channels();
      if (channels.length === 0) return;
      const abort = (this.abort = new AbortController());
      let ok = false;
      try {
        const token = await this.getToken(rejected ? 'rejected' : 'poll');
        if (gen !== this.gen) return;
        const { status, body } = await getSync(this.fetchFn, this.url, token, {
          channels: channels.join(','),
          since: this.host.since(),
          wait,
        }, abort.signal);
        if (gen !== this.gen || !this.host.polled(status)) return;
        rejected = status === 401;
        wait = status === 200 ? pollWait : undefined;
        ok = true;
        if (status === 200) this.host.deliver(body.events ?? [], body.cursor);
        else if (status === 410) this.host.reset(channels);
        else if ((status === 403 || status === 400) && body.channel) this.host.refuse(body.channel, body.error ?? 'forbidden');
        else ok = rejected;
      } catch {
        // getToken threw, or aborted: retry after the backoff.
      }
      if (gen !== this.gen) return;
      if (ok) errors.reset();
      else await new Promise((r) => setTimeout(r, errors.next()));
    }
  }
}
