// lib.mjs: what the browser tests share. The broadcaster as a child
// process (started, SIGKILLed, restarted), the database through pg, and
// Chromium through playwright-core with one fresh context per user.
//
// The environment comes from integration/browser_test.go (TestBrowser):
//   CDC_BIN      the cdc-broadcaster binary
//   CDC_CONFIG   its config (server.demo on, listening on CDC_URL's port)
//   CDC_DB       a superuser URL of a database holding the example school
//   CDC_URL      http://127.0.0.1:PORT, where serve listens
//   CHROMIUM     the Chromium executable (Debian's /usr/bin/chromium)
//   SCREENSHOTS  the directory screenshots are written to
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { chromium } from 'playwright-core';

/** env returns the variable name, or throws saying who sets it. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through go test ./integration -run TestBrowser`);
  return v;
}

/** Generous timeout of one expectation, in milliseconds. */
export const WAIT = 10_000;

// ---------------------------------------------------------------------------
// The broadcaster.

const ready = ['"msg":"serving"', '"msg":"streaming"'];

/**
 * Server runs `cdc-broadcaster serve --config CDC_CONFIG` and can stop,
 * kill and start it again. Its stderr is kept for failure messages.
 */
export class Server {
  constructor(bin = env('CDC_BIN'), config = env('CDC_CONFIG')) {
    this.bin = bin;
    this.config = config;
    this.proc = null;
    this.log = '';
    this.starts = 0;
  }

  /** start runs serve and resolves once it listens and streams. */
  async start(timeout = 60_000) {
    if (this.proc) throw new Error('serve is already running');
    // The CDC_* variables of this process are the tests' own, and serve
    // reads CDC_* as config overrides: keep them out.
    const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CDC_')));
    const proc = spawn(this.bin, ['serve', '--config', this.config], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    this.starts++;
    const began = Date.now();
    let own = '';
    proc.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.stderr.setEncoding('utf8');
    const seen = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve not ready within ${timeout} ms:\n${this.tail()}`)), timeout);
      proc.stderr.on('data', (chunk) => {
        own += chunk;
        this.log = (this.log + chunk).slice(-200_000);
        if (ready.every((m) => own.includes(m))) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`serve exited (${code ?? signal}) before it was ready:\n${this.tail()}`));
      });
    });
    proc.exited.then(() => {
      if (this.proc === proc) this.proc = null;
    });
    await seen;
    return Date.now() - began;
  }

  /** kill sends SIGKILL and waits for the exit: a crash, no drain. */
  async kill() {
    const p = this.proc;
    if (!p) return;
    p.kill('SIGKILL');
    await p.exited;
  }

  /** stop sends SIGTERM, waits up to 20 s for the exit, then kills. */
  async stop() {
    const p = this.proc;
    if (!p) return;
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
    await p.exited;
    clearTimeout(t);
  }

  /** tail is the end of serve's stderr, across restarts. */
  tail(n = 40) {
    return this.log.trimEnd().split('\n').slice(-n).join('\n');
  }
}

// ---------------------------------------------------------------------------
// The database.

/** db returns a pg pool on CDC_DB (the superuser: the tests write). */
export function db() {
  return new pg.Pool({ connectionString: env('CDC_DB'), max: 4 });
}

/** one runs sql and returns its first row, failing when there is none. */
export async function one(pool, sql, params = []) {
  const { rows } = await pool.query(sql, params);
  if (rows.length === 0) throw new Error(`no row from: ${sql} ${JSON.stringify(params)}`);
  return rows[0];
}

// ---------------------------------------------------------------------------
// The browser.

const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** launch starts headless Chromium (CHROMIUM). */
export function launch() {
  return chromium.launch({ executablePath: env('CHROMIUM'), headless: true, args: chromiumArgs });
}

/**
 * Dashboard is one user's page in a fresh browser context: its own
 * sessionStorage, cookies and connections. It records uncaught page errors
 * and the realtime frames of the page's WebSockets (when they are not
 * routed through Playwright).
 */
export class Dashboard {
  constructor(context, page) {
    this.context = context;
    this.page = page;
    this.errors = [];
    this.console = [];
    this.sockets = [];
    this.syncRequests = 0;
    page.on('pageerror', (err) => this.errors.push(String(err)));
    page.on('console', (m) => {
      this.console.push(`${m.type()}: ${m.text()}`);
      if (this.console.length > 200) this.console.shift();
    });
    page.on('request', (r) => {
      if (r.url().includes('/api/realtime/sync')) this.syncRequests++;
    });
    page.on('websocket', (ws) => {
      const s = { url: ws.url(), subscribed: new Set(), frames: [], closed: false };
      this.sockets.push(s);
      ws.on('framereceived', ({ payload }) => {
        let m;
        try {
          m = JSON.parse(String(payload));
        } catch {
          return;
        }
        s.frames.push(m);
        if (m.type === 'subscribed') for (const c of m.channels ?? []) s.subscribed.add(c);
      });
      ws.on('close', () => (s.closed = true));
    });
  }

  /** $ is the locator of one data-testid. */
  $(testid) {
    return this.page.getByTestId(testid);
  }

  /** state is the connection-state badge's locator. */
  get badge() {
    return this.$('connection-state');
  }

  /** waitState waits until the badge shows state. */
  async waitState(state, timeout = WAIT) {
    await this.page.locator(`[data-testid="connection-state"][data-state="${state}"]`).waitFor({ timeout });
  }

  /**
   * waitSubscribed waits until the page's current WebSocket has been told
   * `subscribed` for every one of channels, so that a change made next is
   * one the page must receive.
   */
  async waitSubscribed(channels, timeout = WAIT) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const s = this.sockets.findLast((x) => !x.closed);
      if (s && channels.every((c) => s.subscribed.has(c))) return;
      if (Date.now() > deadline) {
        const have = s ? [...s.subscribed].join(' ') : 'no open WebSocket';
        throw new Error(`page not subscribed to ${channels.join(' ')} within ${timeout} ms (has: ${have})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** shot saves a full-page screenshot as SCREENSHOTS/name.png. */
  async shot(name) {
    const dir = env('SCREENSHOTS');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${name}.png`);
    await this.page.screenshot({ path: file, fullPage: true });
    return file;
  }

  /** assertNoPageErrors fails when the page threw an uncaught error. */
  assertNoPageErrors() {
    if (this.errors.length) throw new Error(`page errors:\n${this.errors.join('\n')}`);
  }

  /** close closes the context (and the page's connections). */
  async close() {
    await this.context.close();
  }
}

/** The browser context of a desktop, and of a phone (390 x 844 CSS px, touch). */
export const DESKTOP = { viewport: { width: 1280, height: 900 } };
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

/**
 * open signs in on a fresh context as the page at path (e.g.
 * '/demo/teacher.html?user=10'), with the test knob ?fast=1 (short
 * reconnect backoff, demo/static/common.js), and waits until the page has
 * rendered its data and, unless live is false, until its WebSocket is live.
 * before(context, page) runs before the page is loaded (routes); device is
 * DESKTOP (default) or PHONE.
 */
export async function open(browser, pathAndQuery, { live = true, before, device = DESKTOP } = {}) {
  const context = await browser.newContext(device);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const d = new Dashboard(context, page);
  if (before) await before(context, page);
  const url = new URL(pathAndQuery, env('CDC_URL'));
  url.searchParams.set('fast', '1');
  await page.goto(url.href);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: WAIT });
  if (live) await d.waitState('live');
  if (await d.$('error').isVisible()) throw new Error(`${pathAndQuery} shows an error: ${await d.$('error').textContent()}`);
  return d;
}

/**
 * waitCount waits until locator matches exactly n elements (the keyed
 * lists must never show a row twice), failing after timeout.
 */
export async function waitCount(locator, n, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let c;
  for (;;) {
    c = await locator.count();
    if (c === n) return;
    if (Date.now() > deadline) throw new Error(`${locator} matches ${c} elements, want ${n} (waited ${timeout} ms)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** duplicateTestIds returns the data-testids that occur more than once under the list. */
export async function duplicateTestIds(list) {
  return list.evaluate((root) => {
    const seen = new Map();
    for (const n of root.querySelectorAll('[data-testid]')) seen.set(n.dataset.testid, (seen.get(n.dataset.testid) ?? 0) + 1);
    return [...seen].filter(([, c]) => c > 1).map(([id, c]) => `${id} x${c}`);
  });
}

/**
 * layoutProblems lists what does not fit a screen width CSS px wide: the
 * document scrolling sideways (or, on a phone, the browser zooming out to
 * show it all), elements reaching past the width (unless a container that
 * fits clips them), containers that scroll sideways inside, and controls
 * (links, buttons, inputs) smaller than 44 x 44 CSS px, a fingertip. Empty
 * when the page fits.
 */
export async function layoutProblems(page, width) {
  return page.evaluate((vw) => {
    const name = (n) => {
      const id = n.dataset?.testid ?? n.id;
      return `${n.tagName.toLowerCase()}${id ? `#${id}` : ''}${n.className && typeof n.className === 'string' ? `.${n.className.trim().split(/\s+/).join('.')}` : ''}`;
    };
    const path = (n) => {
      const parts = [];
      for (let p = n; p && p !== document.body && parts.length < 4; p = p.parentElement) parts.unshift(name(p));
      return parts.join(' > ');
    };
    const problems = [];
    if (window.innerWidth !== vw) problems.push(`window.innerWidth ${window.innerWidth}, not ${vw}: the page is zoomed out to fit`);
    if (document.documentElement.scrollWidth > vw) problems.push(`document.documentElement.scrollWidth ${document.documentElement.scrollWidth} > ${vw}`);
    if (document.body.scrollWidth > vw) problems.push(`document.body.scrollWidth ${document.body.scrollWidth} > ${vw}`);
    for (const n of document.body.querySelectorAll('*')) {
      const r = n.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      const style = getComputedStyle(n);
      if (style.visibility === 'hidden') continue;
      if (r.right > vw + 0.5 || r.left < -0.5) {
        let clipped = false;
        for (let p = n.parentElement; p && p !== document.body; p = p.parentElement) {
          if (getComputedStyle(p).overflowX === 'visible') continue;
          const pr = p.getBoundingClientRect();
          if (pr.right <= vw + 0.5 && pr.left >= -0.5) clipped = true;
          break;
        }
        if (!clipped) problems.push(`${path(n)} spans x ${Math.round(r.left)}..${Math.round(r.right)} of ${vw}`);
      }
      if (['auto', 'scroll'].includes(style.overflowX) && n.scrollWidth > n.clientWidth + 1) {
        problems.push(`${path(n)} scrolls sideways (${n.scrollWidth} in ${n.clientWidth})`);
      }
      if (n.matches('a[href], button, input, select, textarea, [role="button"]') && (r.height < 44 || r.width < 44)) {
        problems.push(`${path(n)} is ${Math.round(r.width)} x ${Math.round(r.height)}, under 44 x 44 for a finger`);
      }
    }
    return problems.length > 20 ? [...problems.slice(0, 20), `and ${problems.length - 20} more`] : problems;
  }, width);
}
