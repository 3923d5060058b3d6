// common.js: what every dashboard of the demo shares. Sign-in with a demo
// token, the demo API, the realtime client and its state badge, keyed lists
// that mark new and changed rows, a debounced refetch, the live activity
// feed (its words: activity.js). No framework: the DOM is built with el()
// and kept by key.
import { createRealtime } from './realtime.js';
import { actionKey, describe, nameBook, words } from './activity.js';

export const params = new URLSearchParams(location.search);

// el builds an element. attrs: class, text, testid (data-testid), id,
// dataset entries as data-*, other attributes as they are; children are
// nodes or strings (null and false are skipped).
export function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') n.className = v;
    else if (k === 'text') n.textContent = v;
    else if (k === 'testid') n.dataset.testid = v;
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    n.append(c instanceof Node ? c : String(c));
  }
  return n;
}

export const $ = (sel) => document.querySelector(sel);

export function tag(status, text) {
  return el('span', { class: `tag ${status}`, text: (text ?? status).replace(/_/g, ' ') });
}

export function progressBar(pct) {
  const bar = el('i');
  bar.style.width = `${Math.max(0, Math.min(100, pct))}%`; // CSSOM: allowed by the page's CSP
  return el('div', { class: 'progress-cell' }, el('div', { class: 'progress' }, bar), el('span', { text: `${pct}%` }));
}

const two = (n) => String(n).padStart(2, '0');
export function clock(t) {
  const d = new Date(t);
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}
export function shortTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? `${two(d.getHours())}:${two(d.getMinutes())}` : d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}
export const fmtScore = (n) => (n === null || n === undefined ? '–' : Number(n).toFixed(Number.isInteger(n) ? 0 : 1));

// ---------------------------------------------------------------------------
// Sign-in: a demo token per user, kept in sessionStorage so each tab can be
// someone else.

const tokenKey = (userId) => `cdc-demo.token.${userId}`;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || body?.error || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error;
  }
}

async function readJSON(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

export async function mintToken(userId) {
  const res = await fetch('api/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId: String(userId) }),
  });
  const tok = await readJSON(res);
  sessionStorage.setItem(tokenKey(userId), JSON.stringify(tok));
  return tok;
}

// session returns getToken (for the realtime client) and api (for the demo
// API) for one user. A token is reused until five minutes before it
// expires, or until the server refuses it.
export function session(userId) {
  let cur = null;
  try {
    cur = JSON.parse(sessionStorage.getItem(tokenKey(userId)) || 'null');
  } catch {
    cur = null;
  }
  let minting = null;
  async function fresh() {
    minting ??= mintToken(userId).finally(() => (minting = null));
    cur = await minting;
    return cur.token;
  }
  async function getToken(reason) {
    if (reason === 'rejected' || reason === 'expiring' || !cur || cur.expiresAt - Date.now() < 5 * 60e3) return fresh();
    return cur.token;
  }
  async function api(path) {
    let res = await fetch(`api/${path}`, { headers: { Authorization: `Bearer ${await getToken()}` } });
    if (res.status === 401) res = await fetch(`api/${path}`, { headers: { Authorization: `Bearer ${await fresh()}` } });
    return readJSON(res);
  }
  return { getToken, api };
}

// ---------------------------------------------------------------------------
// Errors and the page frame.

export function showError(err) {
  const box = $('#error');
  if (!box) return console.error(err);
  box.hidden = false;
  box.replaceChildren(...(err instanceof Node ? [err] : [String(err?.message ?? err)]));
}

export function clearError() {
  const box = $('#error');
  if (box) box.hidden = true;
}

export const dashboardFor = (role) =>
  ({ super_admin: 'admin', admin: 'admin', teacher: 'teacher', student: 'student', parent: 'parent' })[role];

// start signs in as ?user=, checks that the user's role fits this
// dashboard, and connects the realtime client. It resolves to
// {me, api, rt, userId}, or throws after showing why not.
export async function start(roles) {
  const userId = params.get('user');
  if (!userId || !/^[0-9]{1,18}$/.test(userId)) {
    showError(el('span', {}, 'No user chosen. ', el('a', { href: './', text: 'Pick someone to sign in as' }), '.'));
    throw new Error('no user');
  }
  const s = session(userId);
  let me;
  try {
    me = await s.api('me');
  } catch (err) {
    showError(err.status === 404 ? `User ${userId} is not in the school.` : err);
    throw err;
  }
  const who = $('#who');
  if (who) who.textContent = `${me.name}`;
  const sub = $('#who-role');
  if (sub) sub.textContent = `${me.role.replace('_', ' ')} · user ${me.id}`;
  document.title = `${me.name} · ${document.title}`;
  if (!roles.includes(me.role)) {
    const d = dashboardFor(me.role);
    showError(el('span', {}, `${me.name} is a ${me.role.replace('_', ' ')}: `,
      el('a', { href: `${d}.html?user=${me.id}`, text: `open the ${d} dashboard` }), '.'));
    throw new Error('wrong dashboard');
  }
  const rt = createRealtime({
    getToken: s.getToken,
    ...realtimeTuning(),
    onError: (e) => console.warn('realtime:', e.code, e.message ?? ''),
    onRevoked: (ch, reason) => console.warn('realtime: channel', ch, reason),
  });
  stateBadge(rt);
  window.addEventListener('pagehide', () => rt.close());
  // Back to a page from the back-forward cache: its client was closed.
  window.addEventListener('pageshow', (e) => e.persisted && location.reload());
  return { me, api: s.api, rt, userId };
}

// realtimeTuning reads the page's test knob. `?fast=1` (for browser tests,
// e2e/) shortens the adapter's reconnect backoff to 100 ms doubling up to
// 1 s, so a test sees a reconnect, or the fall back to polling after
// pollAfterFailures (5) failed connects, within seconds instead of up to a
// minute. Without it the adapter's defaults apply (500 ms up to 30 s).
function realtimeTuning() {
  if (params.get('fast') !== '1') return {};
  return { backoff: { initialMs: 100, maxMs: 1000, factor: 2 } };
}

// stateBadge shows the client's connection state in the corner.
export function stateBadge(rt) {
  const badge = $('#state-badge');
  const history = $('#state-history');
  const show = (state) => {
    badge.dataset.state = state;
    badge.textContent = state;
    badge.title = `realtime connection: ${state} since ${clock(Date.now())}`;
    if (history) {
      history.prepend(el('li', { 'data-state': state }, el('time', { text: clock(Date.now()) }), el('div', {}, tag(stateTag[state], state))));
      while (history.children.length > 12) history.lastChild.remove();
    }
  };
  show(rt.state);
  rt.onStateChange(show);
}
const stateTag = { live: 'present', connecting: 'draft', reconnecting: 'draft', polling: 'late', offline: 'absent', unauthorized: 'absent', closed: 'absent' };

// ---------------------------------------------------------------------------
// Keyed lists: rows are kept by key, so a row is never shown twice; rows
// that appear after the first render get .is-new, rows whose data changed
// .is-changed, for a few seconds.

function mark(node, cls, ms) {
  node.classList.add(cls);
  setTimeout(() => node.classList.remove(cls), ms);
}

// keyedList(container, {key, render, empty}) returns update(items). render
// builds one row's element from an item; empty is an element shown while
// there are no items. The cells of a table's rows get their column's
// heading as data-label, which a narrow screen shows beside each value
// (demo.css).
export function keyedList(container, { key, render, empty }) {
  let first = true;
  const headings = [...(container.closest?.('table')?.tHead?.rows[0]?.cells ?? [])].map((th) => th.textContent);
  return function update(items) {
    const old = new Map();
    for (const n of container.children) if (n.dataset.key) old.set(n.dataset.key, n);
    const seen = new Set();
    let prev = null;
    for (const item of items) {
      const k = String(key(item));
      if (seen.has(k)) continue;
      seen.add(k);
      const sig = JSON.stringify(item);
      let node = old.get(k);
      if (!node || node.dataset.sig !== sig) {
        const fresh = render(item);
        for (const [i, td] of [...(fresh.cells ?? [])].entries()) if (headings[i] && !td.dataset.label) td.dataset.label = headings[i];
        fresh.dataset.key = k;
        fresh.dataset.sig = sig;
        if (!first) mark(fresh, node ? 'is-changed' : 'is-new', node ? 2000 : 3000);
        if (node) node.replaceWith(fresh);
        node = fresh;
      }
      const want = prev ? prev.nextSibling : container.firstChild;
      if (want !== node) container.insertBefore(node, want);
      prev = node;
    }
    for (const [k, n] of old) if (!seen.has(k)) n.remove();
    if (empty) empty.hidden = seen.size > 0;
    container.dataset.count = String(seen.size);
    first = false;
  };
}

// refetcher runs load at most once at a time: schedule() coalesces the
// calls of a burst of events into one reload shortly after; a call during
// a reload runs one more reload after it.
export function refetcher(load, delay = 200) {
  let timer = null;
  let running = false;
  let again = false;
  async function run() {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await load();
      clearError();
    } catch (err) {
      showError(err);
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }
  function schedule() {
    timer ??= setTimeout(run, delay);
  }
  return { now: run, schedule };
}

// eventFeed keeps the latest actions in an <ol>, newest first: one line
// per transaction (activity.js says it in words, with names looked up
// through api), however many events it has and on however many channels
// they come. A sitting's progress ticks keep one line, the latest. me
// ({id, studentId}) is "you". Returns add(event, channels).
export function eventFeed(list, { api, me = {}, max = 30 } = {}) {
  const seen = new Set(); // eventIds shown, the latest 2000
  const lines = new Map(); // actionKey -> {events, channels, li}
  const total = $('#event-total');
  let n = 0;
  const names = nameBook(api, () => lines.forEach(render));

  function render(line) {
    const { type, parts } = describe(line.events);
    const rows = [...new Set(line.events.map((e) => `${e.table}/${e.data?.id ?? ''}`))];
    const li = line.li;
    li.dataset.type = type;
    li.dataset.types = line.events.map((e) => e.eventType).join(' ');
    li.dataset.rows = rows.join(' ');
    li.dataset.events = String(line.events.length);
    li.title = `${li.dataset.types} · ${rows.join(' ')} · ${[...line.channels].join(' ')}`;
    const say = words(parts, names.get, me).map((w) =>
      (w.tag ? tag(w.tag, w.text) : w.name ? el('b', { text: w.text }) : w.text));
    li.replaceChildren(el('time', { text: clock(line.events[0].timestamp) }), el('div', { class: 'say' }, say));
  }

  // progressOf is the sitting whose progress alone a line tells, if so.
  const progressOf = (line) =>
    (line.events.every((e) => e.eventType === 'examSession.progress') ? String(line.events[0].data?.id) : null);

  function remove(key) {
    lines.get(key)?.li.remove();
    lines.delete(key);
  }

  return function add(event, channels) {
    if (seen.has(event.eventId)) return;
    seen.add(event.eventId);
    if (seen.size > 2000) seen.delete(seen.values().next().value);
    const key = actionKey(event);
    let line = lines.get(key);
    if (line) {
      line.events.push(event);
      channels.forEach((c) => line.channels.add(c));
      render(line);
      return;
    }
    line = { events: [event], channels: new Set(channels), li: el('li', { testid: `activity-${key}`, id: `activity-${key}`, 'data-tx': event.txId }) };
    const sitting = progressOf(line);
    if (sitting) for (const [k, l] of lines) if (progressOf(l) === sitting) remove(k);
    lines.set(key, line);
    n++;
    if (total) total.textContent = `${n} ${n === 1 ? 'update' : 'updates'}`;
    render(line);
    list.prepend(line.li);
    mark(line.li, 'is-new', 3000);
    while (lines.size > max) remove(lines.keys().next().value);
  };
}

// Subscriptions kept in step with a set of channels that changes with the
// data (the teacher's published exams): one subscription per channel.
export function channelSet(rt, onEvent, opts) {
  const subs = new Map();
  return function sync(channels) {
    const want = new Set(channels);
    for (const [c, unsub] of subs) {
      if (!want.has(c)) {
        unsub();
        subs.delete(c);
      }
    }
    for (const c of want) if (!subs.has(c)) subs.set(c, rt.subscribe([c], onEvent, opts));
  };
}

// ---------------------------------------------------------------------------
// Cards every dashboard has.

// liveAnnouncements renders the caller's announcements into
// #announcement-list and refetches them on announcement.* events of
// channels (other events of those channels are ignored).
export function liveAnnouncements({ api, rt, channels, feed }) {
  const update = keyedList($('#announcement-list'), {
    key: (a) => a.id,
    empty: $('#announcement-empty'),
    render: (a) => el('li', { testid: `announcement-${a.id}`, id: `announcement-${a.id}`, class: a.isPinned ? 'pin' : '' },
      el('span', { text: a.title }), ' ',
      el('small', { class: 'muted', text: `${a.targetRole ? `to ${a.targetRole}s` : 'to everyone'} · ${shortTime(a.createdAt)}` })),
  });
  const r = refetcher(async () => update((await api('announcements')).announcements));
  rt.subscribe(channels, (e, ch) => {
    if (!e.eventType.startsWith('announcement.')) return;
    feed?.(e, ch);
    r.schedule();
  }, { onReset: r.schedule });
  return r;
}

// liveNotifications renders the caller's notifications into
// #notification-list from GET /demo/api/me, again on events of user:{id}.
export function liveNotifications({ api, rt, me, feed }) {
  const list = $('#notification-list');
  const unread = $('#notification-unread');
  const update = keyedList(list, {
    key: (n) => n.id,
    empty: $('#notification-empty'),
    render: (n) => el('li', { testid: `notification-${n.id}`, id: `notification-${n.id}`, class: n.isRead ? '' : 'unread' },
      n.title, ' ', el('small', { text: shortTime(n.createdAt) })),
  });
  const show = (m) => {
    update(m.notifications);
    if (unread) unread.textContent = `${m.unread} unread`;
  };
  show(me);
  const r = refetcher(async () => show(await api('me')));
  rt.subscribe([`user:${me.id}`], (e, ch) => {
    feed?.(e, ch);
    r.schedule();
  }, { onReset: r.schedule });
  return r;
}
