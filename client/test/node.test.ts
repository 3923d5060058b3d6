/// <reference types="node" />
// The client in Node on Node's own WebSocket and fetch (issue 14, item 6),
// with real timers, against a port where nothing listens: a server that is
// down at start. Node 20's WebSocket (--experimental-websocket, see
// vitest.config.ts) fires error and never close on such a connect.
import { createServer } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRealtime } from '../src/index.js';
import type { ConnectionState } from '../src/index.js';

/** A port that was free a moment ago: nothing listens there. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('in Node', () => {
  it('uses the global WebSocket, retries a server that is down at start, and says offline', async () => {
    expect(typeof globalThis.WebSocket).toBe('function');
    const Native = globalThis.WebSocket;
    let attempts = 0;
    vi.stubGlobal('WebSocket', class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        attempts++;
        super(url, protocols);
      }
    });
    const port = await deadPort();
    const states: ConnectionState[] = [];
    const rt = createRealtime({
      url: `ws://127.0.0.1:${port}/ws`,
      getToken: () => 'token',
      backoff: { initialMs: 20, maxMs: 100 },
      pollAfterFailures: 3,
      onStateChange: (s) => states.push(s),
    });
    const sub = rt.subscribe(['class:42'], () => {});
    try {
      await vi.waitFor(() => expect(rt.state).toBe('offline'), { timeout: 20_000, interval: 20 });
      await vi.waitFor(() => expect(attempts).toBeGreaterThanOrEqual(5), { timeout: 20_000, interval: 20 });
      expect(states.slice(0, 2)).toEqual(['reconnecting', 'offline']);
      expect(rt.detail.code).toBe(1006);
      expect(sub.status).toBe('pending');
      await expect(rt.head(['class:42'])).rejects.toMatchObject({ code: 'unreachable', status: 0 });
    } finally {
      rt.close();
    }
    expect(rt.state).toBe('closed');
  }, 30_000);
});
