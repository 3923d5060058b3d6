// adapter.test.mjs: the browser adapter (client/, served to pages as
// /demo/realtime.js) against a real `serve` and PostgreSQL, in Chromium and
// in Node (on Node's own WebSocket: TestBrowser runs node with
// --experimental-websocket, which Node 22 has on by default). Issue 14:
// honest states (a refused token, a server that is down), per-subscription
// status, snapshot-then-stream with a commit between the snapshot and the
// subscribe, and Node use. Run through integration/browser_test.go.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Server, WAIT, db, env, launch, one, open } from './lib.mjs';

let server;
let pool;
let browser;
let pages = [];
let adapter; // the same build the pages load, imported by Node
let tmp;

before(async () => {
  server = new Server();
  await server.start();
  pool = db();
  browser = await launch();
  // demo/static has no package.json saying "module": a copy as .mjs.
  tmp = mkdtempSync(path.join(tmpdir(), 'cdc-adapter-e2e-'));
  const file = path.join(tmp, 'realtime.mjs');
  const here = path.dirname(fileURLToPath(import.meta.url));
  writeFileSync(file, readFileSync(path.join(here, '..', 'demo', 'static', 'realtime.js')));
  adapter = await import(file);
});

after(async () => {
  await browser?.close();
  await pool?.end();
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function scenario(name, body) {
  test(name, { timeout: 120_000 }, async () => {
    try {
      await body();
    } catch (err) {
      console.log(`serve's last log lines:\n${server.tail(20)}`);
      for (const d of pages) console.log(`${d.page.url()} console:\n${d.console.slice(-15).join('\n')}`);
      throw err;
    } finally {
      const ps = pages;
      pages = [];
      for (const d of ps) d.assertNoPageErrors();
      await Promise.all(ps.map((d) => d.close().catch(() => {})));
      if (!server.proc) await server.start(); // a failed test may leave it down
    }
  });
}

// blank opens the demo's picker page: a page of serve's origin with
// /demo/realtime.js to import, and no client of its own.
async function blank() {
  const d = await open(browser, '/demo/', { live: false });
  pages.push(d);
  await d.page.evaluate(async () => {
    window.rtm = await import('/demo/realtime.js');
    window.mint = async (userId) => {
      const res = await fetch('/demo/api/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: String(userId) }) });
      if (!res.ok) throw new Error(`mint ${userId}: HTTP ${res.status}`);
      return (await res.json()).token;
    };
  });
  return d;
}

// mint gets a demo token from Node.
async function mint(userId) {
  const res = await fetch(new URL('/demo/api/token', env('CDC_URL')), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId: String(userId) }),
  });
  assert.equal(res.status, 200, `mint ${userId}`);
  return (await res.json()).token;
}

let userSeq = 0;
async function createUser(tag) {
  userSeq++;
  const r = await one(pool, `INSERT INTO users (email, password_hash, first_name, last_name, role)
    VALUES ($1, 'x', 'Ada', $2, 'teacher') RETURNING id`, [`adapter-${process.pid}-${Date.now()}-${userSeq}@example.test`, `${tag} ${userSeq}`]);
  return Number(r.id);
}

// until polls cond (sync or async) until it is truthy, failing after timeout.
async function until(what, cond, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const fast = { initialMs: 100, maxMs: 1000, factor: 2 };
const wsUrl = () => new URL('/ws', env('CDC_URL')).href.replace(/^http/, 'ws');

scenario('Chromium: a refused token ends in unauthorized, onError is called, and the token is not asked for again and again', async () => {
  const d = await blank();
  await d.page.evaluate((backoff) => {
    window.calls = [];
    window.errors = [];
    window.states = [];
    window.rt = window.rtm.createRealtime({
      getToken: (reason) => {
        window.calls.push(reason);
        return 'not-a-token';
      },
      backoff,
      onError: (e) => window.errors.push(e),
      onStateChange: (s, detail) => window.states.push([s, detail.code]),
    });
    window.sub = window.rt.subscribe(['table:users']);
  }, fast);
  await d.page.waitForFunction(() => window.rt.state === 'unauthorized', null, { timeout: WAIT });
  const at = await d.page.evaluate(() => ({ calls: [...window.calls], errors: window.errors, states: window.states, status: window.sub.status }));
  assert.deepEqual(at.calls, ['connect', 'rejected'], 'one token, then one fresh token after the first refusal');
  assert.equal(at.errors.length, 1);
  assert.equal(at.errors[0].code, 'unauthorized');
  assert.deepEqual(at.states.at(-1), ['unauthorized', 4001]);
  assert.ok(!at.states.some(([s]) => s === 'polling'), `states: ${JSON.stringify(at.states)}`);
  assert.equal(at.status, 'pending');
  // The next retry is at least authRetryMs/2 (30 s) away: nothing in 5 s,
  // where the old adapter asked every 0.1-1 s here.
  await new Promise((r) => setTimeout(r, 5000));
  assert.deepEqual(await d.page.evaluate(() => window.calls.length), 2);
  assert.equal(await d.page.evaluate(() => window.rt.state), 'unauthorized');
  console.log(`states: ${JSON.stringify(at.states)}`);
});

scenario('Chromium: a server that is down shows offline (not polling); back up, the subscription recovers what it missed', async () => {
  const d = await blank();
  await d.page.evaluate(async (backoff) => {
    const token = await window.mint(1);
    window.states = [];
    window.got = [];
    window.rt = window.rtm.createRealtime({ getToken: () => token, backoff, onStateChange: (s, detail) => window.states.push([s, detail.code]) });
    window.sub = window.rt.subscribe(['table:users'], (e) => window.got.push(e.data?.id));
    await window.sub.ready();
  }, fast);
  assert.equal(await d.page.evaluate(() => window.sub.recovered), false, 'a first subscribe starts from the head');

  await server.kill();
  await d.page.waitForFunction(() => window.rt.state === 'offline', null, { timeout: 30_000 });
  const down = await d.page.evaluate(() => ({ states: window.states, status: window.sub.status }));
  assert.equal(down.status, 'pending');
  assert.ok(!down.states.some(([s]) => s === 'polling'), `states while down: ${JSON.stringify(down.states)}`);
  assert.deepEqual(down.states.map(([s]) => s).slice(0, 3), ['live', 'reconnecting', 'offline']);
  const missed = await createUser('missed');

  await server.start();
  await d.page.waitForFunction(() => window.rt.state === 'live' && window.sub.status === 'subscribed', null, { timeout: 30_000 });
  assert.equal(await d.page.evaluate(() => window.sub.recovered), true);
  await d.page.waitForFunction((id) => window.got.includes(id), missed, { timeout: WAIT });
  console.log(`states: ${JSON.stringify(await d.page.evaluate(() => window.states))}`);
});

scenario('Chromium: subscription status says refused (with the code) and reset', async () => {
  const st = await one(pool, `SELECT s.user_id FROM students s WHERE s.status = 'active' ORDER BY s.id LIMIT 1`);
  const d = await blank();
  const got = await d.page.evaluate(async (userId) => {
    const token = await window.mint(userId);
    const rt = window.rtm.createRealtime({ getToken: () => token });
    const refused = rt.subscribe(['table:users']);
    const why = await refused.ready().then(() => 'subscribed', (err) => `${err.status} ${err.code}`);
    // A cursor past anything the database wrote cannot be resumed: reset.
    const reset = rt.subscribe([`user:${userId}`], null, { since: 'FFFFFFFFFFFFFFF0-00000000' });
    await reset.ready();
    const head = await rt.head([`user:${userId}`]);
    const headRefused = await rt.head(['table:users']).then(() => 'answered', (err) => `${err.status} ${err.code}`);
    const got = { why, refused: [refused.status, refused.code], reset: [reset.status, reset.recovered], head, headRefused };
    rt.close();
    return got;
  }, st.user_id);
  assert.equal(got.why, 'refused forbidden');
  assert.deepEqual(got.refused, ['refused', 'forbidden']);
  assert.deepEqual(got.reset, ['reset', false]);
  assert.match(got.head, /^[0-9A-F]{16}-[0-9A-F]{8}$/);
  assert.equal(got.headRefused, '403 forbidden');
});

scenario('Chromium: snapshot, then stream: a change committed between the snapshot and the subscribe is not lost', async () => {
  const d = await blank();
  const commits = {};
  // The page calls this at each step; Node commits a user there.
  await d.page.exposeFunction('step', async (name) => (commits[name] = await createUser(name)));
  const r = await d.page.evaluate(async () => {
    const token = await window.mint(1);
    const rt = window.rtm.createRealtime({ getToken: () => token });
    const since = await rt.head(['table:users']);
    const inSnapshot = await window.step('before-snapshot'); // in the snapshot and, again, as an event
    const snapshot = await (await fetch('/demo/api/admin', { headers: { Authorization: `Bearer ${token}` } })).json();
    const between = await window.step('between'); // after the snapshot, before the subscribe
    window.withSince = [];
    window.plain = [];
    const sub = rt.subscribe(['table:users'], (e) => window.withSince.push(e.data?.id), { since });
    // The control: the same on a connection of its own, without since,
    // loses the change.
    const rt2 = window.rtm.createRealtime({ getToken: () => token });
    const control = rt2.subscribe(['table:users'], (e) => window.plain.push(e.data?.id));
    await Promise.all([sub.ready(), control.ready()]);
    window.rt = rt;
    window.rt2 = rt2;
    return { since, inSnapshot, between, users: snapshot.users.map((u) => u.id), recovered: sub.recovered };
  });
  assert.ok(r.users.includes(r.inSnapshot), 'the snapshot holds the first commit');
  assert.ok(!r.users.includes(r.between), 'the snapshot does not hold the change between');
  assert.equal(r.recovered, true);
  const marker = await createUser('after');
  // Commit order: once the marker is in, so is everything before it.
  await d.page.waitForFunction((id) => window.withSince.includes(id) && window.plain.includes(id), marker, { timeout: WAIT });
  const withSince = await d.page.evaluate(() => window.withSince);
  const plain = await d.page.evaluate(() => window.plain);
  assert.ok(withSince.includes(r.between), `the change between snapshot and subscribe was lost: ${JSON.stringify(withSince)}`);
  assert.ok(withSince.includes(r.inSnapshot), 'since the head: the change the snapshot holds comes too (apply idempotently)');
  assert.equal(withSince.filter((id) => id === r.between).length, 1, 'delivered once');
  assert.ok(!plain.includes(r.between), 'the control, subscribed without since, should have missed it: the test cannot tell');
  await d.page.evaluate(() => {
    window.rt.close();
    window.rt2.close();
  });
});

scenario('Node: snapshot, then stream on Node\'s WebSocket, with a commit between', async () => {
  assert.equal(typeof globalThis.WebSocket, 'function', 'run node with --experimental-websocket (Node 20) or Node 22+');
  const token = await mint(1);
  const rt = adapter.createRealtime({ url: wsUrl(), getToken: () => token });
  try {
    const since = await rt.head(['table:users']);
    const res = await fetch(new URL('/demo/api/admin', env('CDC_URL')), { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const between = await createUser('node-between');
    const got = [];
    const sub = rt.subscribe(['table:users'], (e) => got.push(e.data?.id), { since });
    await sub.ready();
    assert.equal(rt.state, 'live');
    await until('the change between snapshot and subscribe', () => got.includes(between));
  } finally {
    rt.close();
  }
});

scenario('Node: a server that is down at start is retried (no stuck connecting), offline, then live', async () => {
  const token = await mint(1);
  await server.kill();
  let attempts = 0;
  const Native = globalThis.WebSocket;
  const states = [];
  const rt = adapter.createRealtime({
    url: wsUrl(),
    getToken: () => token,
    backoff: fast,
    WebSocket: class extends Native {
      constructor(url, protocols) {
        attempts++;
        super(url, protocols);
      }
    },
    onStateChange: (s) => states.push(s),
  });
  try {
    const sub = rt.subscribe(['table:users']);
    await until('offline', () => rt.state === 'offline', 30_000);
    assert.ok(attempts >= 5, `${attempts} connects`);
    assert.deepEqual(states.slice(0, 2), ['reconnecting', 'offline']);
    await server.start();
    await until('live and subscribed', () => rt.state === 'live' && sub.status === 'subscribed', 30_000);
    console.log(`connects: ${attempts}; states: ${states.join(' ')}`);
  } finally {
    rt.close();
  }
});
