// dashboards.test.mjs: the /demo/ dashboards in Chromium against a real
// `serve` and PostgreSQL. Each test writes to the database as the school's
// app would and checks, with Playwright's auto-waiting locators, that the
// open pages show the change without a reload. Run through
// integration/browser_test.go (go test ./integration -run TestBrowser).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PHONE, Server, WAIT, db, duplicateTestIds, env, launch, layoutProblems, one, open, waitCount } from './lib.mjs';

let server;
let pool;
let browser;
// Every page opened, closed after each test; their errors fail it.
let pages = [];

before(async () => {
  server = new Server();
  const ms = await server.start();
  console.log(`serve ready in ${ms} ms`);
  pool = db();
  browser = await launch();
  console.log(`Chromium ${browser.version()}`);
});

after(async () => {
  await browser?.close();
  await pool?.end();
  await server?.stop();
});

// page opens a dashboard (lib.open) and closes it after the test.
async function page(path, opts) {
  const d = await open(browser, path, opts);
  pages.push(d);
  return d;
}

// done checks the test's pages threw nothing and closes them.
async function done() {
  const ps = pages;
  pages = [];
  try {
    for (const d of ps) d.assertNoPageErrors();
  } finally {
    await Promise.all(ps.map((d) => d.close().catch(() => {})));
  }
}

// failed dumps what helps to see why a test failed.
function failed(err) {
  console.log(`serve's last log lines:\n${server.tail(20)}`);
  for (const d of pages) console.log(`${d.page.url()} console:\n${d.console.slice(-15).join('\n')}`);
  throw err;
}

// scenario runs body as a test and always cleans its pages up.
function scenario(name, body) {
  test(name, { timeout: 90_000 }, async () => {
    try {
      await body();
    } catch (err) {
      failed(err);
    } finally {
      await done();
    }
  });
}

// A published exam of a class, a teacher of that class and a student of it
// who has not sat the exam: what a sitting needs.
async function sitting() {
  return one(pool, `
    SELECT e.id AS exam_id, e.class_id, ct.teacher_id, s.id AS student_id, s.user_id AS student_user
    FROM exams e
    JOIN class_teachers ct ON ct.class_id = e.class_id
    JOIN students s ON s.class_id = e.class_id AND s.status = 'active'
    WHERE e.status = 'published'
      AND NOT EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = e.id AND x.student_id = s.id)
    ORDER BY ct.is_form_teacher DESC, ct.teacher_id, e.id, s.id
    LIMIT 1`);
}

// startSitting inserts an in_progress sitting and returns its id.
async function startSitting(s, studentId = s.student_id) {
  const r = await one(pool, `INSERT INTO exam_sessions (exam_id, student_id, class_id, status, progress)
    VALUES ($1, $2, $3, 'in_progress', 10) RETURNING id`, [s.exam_id, studentId, s.class_id]);
  return String(r.id);
}

async function submitSitting(id) {
  await pool.query(`UPDATE exam_sessions SET status = 'submitted', progress = 100, submitted_at = now(),
    updated_at = now() WHERE id = $1`, [id]);
}

// A school day after every mark so far: a mark on it is on the latest day
// of its class, the day the teacher's dashboard shows.
const nextDay = `coalesce((SELECT max(date) FROM attendance), current_date) + 1`;

// markAttendance marks a student on a day after every mark so far.
async function markAttendance(studentId, status, markedBy) {
  const r = await one(pool, `INSERT INTO attendance (student_id, class_id, date, status, marked_by)
    SELECT s.id, s.class_id, ${nextDay}, $2, $3
    FROM students s WHERE s.id = $1 RETURNING id, date::text`, [studentId, status, markedBy]);
  return { id: String(r.id), date: r.date };
}

let userSeq = 0;
async function createUser(role = 'teacher') {
  userSeq++;
  const tag = `${process.pid}-${Date.now()}-${userSeq}`;
  const r = await one(pool, `INSERT INTO users (email, password_hash, first_name, last_name, role)
    VALUES ($1, 'x', 'Ada', $2, $3) RETURNING id`, [`e2e-${tag}@example.test`, `Browser ${userSeq}`, role]);
  return String(r.id);
}

// inTx runs fn(client) in one transaction whose changes actor (a user id)
// makes, as the school's app names it (cdc.actor: cmd/school-sim,
// docs/config.md), and returns fn's result with tx, the transaction's id
// as events carry it (txId: the 32-bit xid).
async function inTx(actor, fn) {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    if (actor) await c.query(`SELECT pg_logical_emit_message(true, 'cdc.actor', $1::text)`, [String(actor)]);
    const result = await fn(c);
    const { rows } = await c.query('SELECT (txid_current() % 4294967296)::text AS xid');
    await c.query('COMMIT');
    return { ...result, tx: rows[0].xid };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// said waits until the dashboard's activity feed has one line for
// transaction tx, made of exactly types (when given), whose words match
// want (a string: the whole line; or a RegExp), and returns them.
async function said(d, tx, want, types) {
  const feed = d.$('event-feed');
  const line = feed.getByTestId(`activity-tx${tx}`);
  await line.waitFor();
  const re = typeof want === 'string' ? new RegExp(`^${esc(want)}$`) : want;
  const deadline = Date.now() + WAIT;
  let text;
  let got;
  for (;;) {
    text = (await line.locator('.say').innerText()).trim();
    got = (await line.getAttribute('data-types')).split(' ').sort().join(' ');
    if (re.test(text) && (!types || got === [...types].sort().join(' '))) break;
    if (Date.now() > deadline) {
      throw new Error(`${d.page.url()}: activity line of tx ${tx} says "${text}" (events: ${got}), want ${re}${types ? ` of ${types.join(' ')}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await waitCount(feed.locator(`[data-tx="${tx}"]`), 1);
  return text;
}

scenario('the activity feed says who did what, in names, one line per action', async () => {
  const s = await one(pool, `
    SELECT e.id AS exam_id, e.title, e.class_id, ct.teacher_id, s.id AS student_id, s.user_id AS student_user,
      ps.parent_id, su.first_name || ' ' || su.last_name AS student_name, tu.first_name || ' ' || tu.last_name AS teacher_name
    FROM exams e
    JOIN class_teachers ct ON ct.class_id = e.class_id
    JOIN students s ON s.class_id = e.class_id AND s.status = 'active'
    JOIN parent_students ps ON ps.student_id = s.id
    JOIN users su ON su.id = s.user_id
    JOIN users tu ON tu.id = ct.teacher_id
    WHERE e.status = 'published'
      AND NOT EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = e.id AND x.student_id = s.id)
    ORDER BY ct.is_form_teacher DESC, ct.teacher_id, e.id, s.id, ps.parent_id LIMIT 1`);
  const teacher = await page(`/demo/teacher.html?user=${s.teacher_id}`);
  const parent = await page(`/demo/parent.html?user=${s.parent_id}`);
  const student = await page(`/demo/student.html?user=${s.student_user}`);
  await teacher.waitSubscribed([`class:${s.class_id}`, `exam:${s.exam_id}`]);
  for (const d of [parent, student]) await d.waitSubscribed([`student:${s.student_id}`]);

  // The student starts the exam: exam.started and examSession.started of
  // one row, in one transaction, on the same channels.
  const started = await inTx(s.student_user, async (c) => {
    const { rows } = await c.query(`INSERT INTO exam_sessions (exam_id, student_id, class_id) VALUES ($1, $2, $3) RETURNING id`,
      [s.exam_id, s.student_id, s.class_id]);
    return { id: String(rows[0].id) };
  });
  const both = ['exam.started', 'examSession.started'];
  await said(teacher, started.tx, `${s.student_name} started ${s.title}`, both);
  await said(parent, started.tx, `${s.student_name} started ${s.title}`, both);
  await said(student, started.tx, `You started ${s.title}`, both);

  // Autosaves: one line for the sitting's progress, the latest.
  const ticks = [];
  for (const progress of [30, 60]) {
    ticks.push(await inTx(s.student_user, (c) => c.query('UPDATE exam_sessions SET progress = $2 WHERE id = $1', [started.id, progress])));
  }
  await said(teacher, ticks[1].tx, `${s.student_name} is 60% through ${s.title}`, ['examSession.progress']);
  await waitCount(teacher.$('event-feed').locator(`[data-type="examSession.progress"][data-rows~="exam_sessions/${started.id}"]`), 1);

  // Handing it in: exam.submitted and examSession.completed.
  const submitted = await inTx(s.student_user, (c) => c.query(`UPDATE exam_sessions SET status = 'submitted', progress = 100,
    submitted_at = now() WHERE id = $1`, [started.id]));
  const handedIn = ['exam.submitted', 'examSession.completed'];
  await said(teacher, submitted.tx, `${s.student_name} handed in ${s.title}`, handedIn);
  await said(parent, submitted.tx, `${s.student_name} handed in ${s.title}`, handedIn);
  await said(student, submitted.tx, `You handed in ${s.title}`, handedIn);

  // The teacher marks the student late: their own words, and the parent's.
  const marked = await inTx(s.teacher_id, (c) => c.query(`INSERT INTO attendance (student_id, class_id, date, status, marked_by)
    SELECT s.id, s.class_id, ${nextDay}, 'late', $2 FROM students s WHERE s.id = $1`, [s.student_id, s.teacher_id]));
  await said(teacher, marked.tx, new RegExp(`^You marked ${esc(s.student_name)} late on \\S.*$`), ['attendance.marked']);
  await said(parent, marked.tx, new RegExp(`^${esc(s.teacher_name)} marked ${esc(s.student_name)} late on \\S.*$`), ['attendance.marked']);
  await said(student, marked.tx, new RegExp(`^${esc(s.teacher_name)} marked you late on \\S.*$`), ['attendance.marked']);

  // No line shows an event type, a channel, a table or an id.
  for (const d of [teacher, parent, student]) {
    const text = await d.$('event-feed').innerText();
    assert.doesNotMatch(text, /\b[a-z]+[A-Z]?[a-z]*\.[a-z_]+[A-Za-z]*\b|\b(student|class|exam|user):\d+|exam_sessions|\bstudent \d+/, `${d.page.url()}:\n${text}`);
  }
  await teacher.shot('teacher-activity');
  await parent.shot('parent-activity');
});

scenario('an admission is one line on the admin dashboard: who admitted whom into which class', async () => {
  const admin = await page('/demo/admin.html?user=1');
  await admin.waitSubscribed(['table:users', 'table:students']);
  const actor = await one(pool, `SELECT id, first_name || ' ' || last_name AS name FROM users WHERE id = 2`);
  const cls = await one(pool, `SELECT id, name FROM classes WHERE is_active ORDER BY id LIMIT 1`);
  const last = `Admitted${process.pid}${Date.now() % 100000}`;
  // As the admissions office does it (cmd/school-sim admitStudent): the
  // account, the student record, then the class, in one transaction.
  const admitted = await inTx(actor.id, async (c) => {
    const u = await c.query(`INSERT INTO users (email, password_hash, first_name, last_name, role)
      VALUES ($1, '!', 'Ada', $2, 'student') RETURNING id`, [`${last.toLowerCase()}@students.example.test`, last]);
    const st = await c.query(`INSERT INTO students (user_id, admission_number) VALUES ($1, $2) RETURNING id`, [u.rows[0].id, `E2E/${last}`]);
    await c.query(`UPDATE students SET class_id = $2 WHERE id = $1`, [st.rows[0].id, cls.id]);
    return {};
  });
  await said(admin, admitted.tx, `${actor.name} admitted Ada ${last} into ${cls.name}`, ['user.created', 'student.created', 'student.enrolled']);
  await admin.shot('admin-admission');
});

scenario('student submits an exam: the teacher dashboard shows it without a reload', async () => {
  const s = await sitting();
  const teacher = await page(`/demo/teacher.html?user=${s.teacher_id}`);
  const student = await page(`/demo/student.html?user=${s.student_user}`);
  await teacher.page.evaluate(() => (window.__e2e = 'same page'));
  await teacher.waitSubscribed([`class:${s.class_id}`, `exam:${s.exam_id}`]);
  await student.waitSubscribed([`student:${s.student_id}`]);

  const id = await startSitting(s);
  const row = teacher.$(`exam-session-${id}`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-status'), 'in_progress');
  await student.$(`sitting-list-${s.student_id}`).getByTestId(`exam-session-${id}`).waitFor();

  await submitSitting(id);
  await teacher.page.locator(`[data-testid="exam-session-${id}"][data-status="submitted"]`).waitFor();
  await student.page.locator(`[data-testid="exam-session-${id}"][data-status="submitted"]`).waitFor();
  await teacher.$('event-feed').locator('[data-type="exam.submitted"]').first().waitFor();
  await waitCount(teacher.$(`exam-session-${id}`), 1);
  assert.equal(await teacher.page.evaluate(() => window.__e2e), 'same page', 'the teacher page was reloaded');
  await teacher.shot('teacher-exam-submitted');
  await student.shot('student-exam-submitted');
});

scenario('admin creates a user: the user list updates in two other admin sessions', async () => {
  const a1 = await page('/demo/admin.html?user=1');
  const a2 = await page('/demo/admin.html?user=2');
  for (const a of [a1, a2]) await a.waitSubscribed(['table:users']);
  const before1 = Number(await a1.$('user-list').getAttribute('data-count'));

  const id = await createUser('teacher');
  for (const a of [a1, a2]) {
    const row = a.$('user-list').getByTestId(`user-${id}`);
    await row.waitFor();
    assert.equal(await row.getAttribute('data-role'), 'teacher');
    await a.page.locator('[data-testid="counter-user.created"][data-count="1"]').waitFor();
    await waitCount(a.$(`user-${id}`), 1);
  }
  assert.ok(Number(await a1.$('user-list').getAttribute('data-count')) >= before1);
  await a1.shot('admin-1-user-created');
  await a2.shot('admin-2-user-created');
});

scenario('teacher marks attendance: the parent dashboard shows it', async () => {
  const p = await one(pool, `
    SELECT ps.parent_id, s.id AS student_id, ct.teacher_id
    FROM parent_students ps JOIN students s ON s.id = ps.student_id
    JOIN class_teachers ct ON ct.class_id = s.class_id
    WHERE s.status = 'active'
    ORDER BY ps.parent_id, ct.is_form_teacher DESC, s.id LIMIT 1`);
  const parent = await page(`/demo/parent.html?user=${p.parent_id}`);
  await parent.$(`child-${p.student_id}`).waitFor();
  await parent.page.locator(`[data-testid="child-${p.student_id}"] .grid[data-ready="true"]`).waitFor();
  await parent.waitSubscribed([`student:${p.student_id}`]);

  const mark = await markAttendance(p.student_id, 'late', p.teacher_id);
  const row = parent.$(`attendance-list-${p.student_id}`).getByTestId(`attendance-${mark.id}`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-status'), 'late');
  assert.match(await row.textContent(), new RegExp(mark.date));
  await parent.$(`attendance-tally-${p.student_id}`).getByText(/late [1-9]/).waitFor();
  await parent.$('event-feed').locator('[data-type="attendance.marked"]').first().waitFor();
  await parent.shot('parent-attendance-marked');

  // And an update of the mark (the teacher corrects it).
  await pool.query(`UPDATE attendance SET status = 'excused', updated_at = now() WHERE id = $1`, [mark.id]);
  await parent.page.locator(`[data-testid="attendance-${mark.id}"][data-status="excused"]`).waitFor();
  await waitCount(parent.$(`attendance-${mark.id}`), 1);
  await parent.shot('parent-attendance-updated');
});

scenario('broadcaster killed and restarted: the open page catches up, no duplicate', async () => {
  const s = await sitting();
  const other = await one(pool, `SELECT s.id AS student_id FROM students s
    WHERE s.class_id = $1 AND s.status = 'active' AND s.id <> $2
      AND NOT EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = $3 AND x.student_id = s.id)
    ORDER BY s.id LIMIT 1`, [s.class_id, s.student_id, s.exam_id]);
  const teacher = await page(`/demo/teacher.html?user=${s.teacher_id}`);
  await teacher.page.evaluate(() => (window.__e2e = 'same page'));
  await teacher.waitSubscribed([`class:${s.class_id}`, `exam:${s.exam_id}`]);
  // One sitting seen live before the crash, submitted while serve is down.
  const seen = await startSitting(s);
  await teacher.$(`exam-session-${seen}`).waitFor();

  await server.kill();
  await teacher.page.locator('[data-testid="connection-state"]:not([data-state="live"])').waitFor();
  const stateWhileDown = await teacher.badge.getAttribute('data-state');
  // Down means offline (the WebSocket and /sync both fail), not a calm
  // "polling" badge.
  await teacher.waitState('offline', 20_000);

  // Writes while nothing streams: they wait in the replication slot.
  await submitSitting(seen);
  const missed = await startSitting(s, other.student_id);
  await submitSitting(missed);
  const mark = await markAttendance(s.student_id, 'absent', s.teacher_id);

  const restartMs = await server.start();
  await teacher.waitState('live', 20_000);
  for (const [id, status] of [[seen, 'submitted'], [missed, 'submitted']]) {
    await teacher.page.locator(`[data-testid="exam-session-${id}"][data-status="${status}"]`).waitFor();
    await waitCount(teacher.$(`exam-session-${id}`), 1);
  }
  await teacher.page.locator(`[data-testid="attendance-${mark.id}"][data-status="absent"]`).waitFor();
  await waitCount(teacher.$(`attendance-${mark.id}`), 1);
  assert.deepEqual(await duplicateTestIds(teacher.$('session-list')), []);
  assert.deepEqual(await duplicateTestIds(teacher.$('attendance-list')), []);
  // The events of the downtime came as events, once each: the restarted
  // serve rebuilt its log from the slot with the same event ids, so the
  // page resumed from its cursor (docs/protocol.md) rather than being
  // reset. The feed keeps one line per transaction and shows an eventId
  // once: a change sent twice under two ids would show twice, a lost one
  // not at all.
  const feed = teacher.$('event-feed');
  for (const id of [seen, missed]) {
    await waitCount(feed.locator(`[data-type="exam.submitted"][data-rows~="exam_sessions/${id}"]`), 1);
  }
  await waitCount(feed.locator(`[data-type="attendance.marked"][data-rows~="attendance/${mark.id}"]`), 1);
  assert.equal(await teacher.page.evaluate(() => window.__e2e), 'same page', 'the teacher page was reloaded');
  console.log(`badge while serve was down: ${stateWhileDown}; serve restarted in ${restartMs} ms`);
  await teacher.shot('teacher-after-restart');
});

// Sums the samples of one metric of serve's GET /metrics.
async function metric(name) {
  const text = await (await fetch(new URL('/metrics', env('CDC_URL')))).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

scenario('WebSocket blocked: the page falls back to polling, then goes live again', async () => {
  const st = await one(pool, `SELECT s.id, s.user_id FROM students s
    WHERE s.status = 'active' AND s.class_id IS NOT NULL ORDER BY s.id DESC LIMIT 1`);
  // page.route does not see WebSocket upgrades (and CDP's
  // Network.setBlockedURLs does not block them): routeWebSocket does. While
  // blocked, each WebSocket the page opens is closed at once by Playwright
  // and never reaches serve; unblocked, it is connected to serve.
  let blocked = true;
  let attempts = 0;
  let forwarded = [];
  const opened0 = await metric('cdc_broadcaster_connections_opened_total');
  const student = await page(`/demo/student.html?user=${st.user_id}`, {
    live: false,
    before: (context, p) => p.routeWebSocket(/\/ws$/, (ws) => {
      attempts++;
      if (blocked) {
        ws.close({ code: 1006, reason: 'blocked by the test' }).catch(() => {});
        return;
      }
      const srv = ws.connectToServer();
      srv.onMessage((m) => {
        forwarded.push(String(m));
        ws.send(m);
      });
    }),
  });
  await student.waitState('polling', 20_000);
  assert.ok(attempts >= 5, `only ${attempts} WebSocket attempts before polling`);
  assert.equal(await metric('cdc_broadcaster_connections_opened_total'), opened0, 'a WebSocket reached serve while blocked');

  const polled = await markAttendance(st.id, 'present', null);
  await student.page.locator(`[data-testid="attendance-${polled.id}"][data-status="present"]`).waitFor({ timeout: 15_000 });
  assert.ok(student.syncRequests > 0, 'no /api/realtime/sync request');
  await waitCount(student.$(`attendance-${polled.id}`), 1);
  assert.equal(await student.badge.getAttribute('data-state'), 'polling', 'the change did not come through /sync');
  await student.shot('student-polling');

  blocked = false;
  await student.waitState('live', 20_000);
  forwarded = forwarded.filter((m) => m.includes('"type":"subscribed"'));
  const deadline = Date.now() + WAIT;
  while (!forwarded.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    forwarded = forwarded.filter((m) => m.includes('"type":"subscribed"'));
  }
  assert.ok(forwarded.length, 'no subscribed reply over the reconnected WebSocket');
  assert.ok(await metric('cdc_broadcaster_connections_opened_total') > opened0, 'serve counted no new WebSocket');
  const live = await markAttendance(st.id, 'late', null);
  await student.page.locator(`[data-testid="attendance-${live.id}"][data-status="late"]`).waitFor();
  await waitCount(student.$(`attendance-${live.id}`), 1);
  await waitCount(student.$(`attendance-${polled.id}`), 1);
  console.log(`WebSocket attempts: ${attempts}; /sync requests: ${student.syncRequests}`);
  await student.shot('student-live-again');
});

scenario('a screenshot of each dashboard', async () => {
  const t = await sitting();
  const p = await one(pool, 'SELECT parent_id FROM parent_students ORDER BY parent_id LIMIT 1');
  const picker = await page('/demo/', { live: false });
  for (const list of ['people-admins', 'people-teachers', 'people-students', 'people-parents']) {
    await picker.$(list).locator('a[data-testid^="person-"]').first().waitFor();
  }
  await picker.$(`person-${t.teacher_id}`).waitFor();
  assert.equal(await picker.$(`person-${t.teacher_id}`).getAttribute('data-role'), 'teacher');
  await picker.shot('picker');
  // The picker's links open the dashboards (a user's own tab signs in).
  await picker.$(`person-${t.teacher_id}`).click();
  await picker.page.waitForURL(/\/demo\/teacher\.html\?user=/);
  await picker.page.locator('body[data-ready="true"]').waitFor();
  await picker.waitState('live');
  for (const [name, path] of [
    ['teacher', `/demo/teacher.html?user=${t.teacher_id}`],
    ['student', `/demo/student.html?user=${t.student_user}`],
    ['parent', `/demo/parent.html?user=${p.parent_id}`],
    ['admin', '/demo/admin.html?user=1'],
  ]) {
    const d = await page(path);
    assert.notEqual(((await d.$('who').textContent()) ?? '').trim(), '', `${name}: no name in [data-testid=who]`);
    await d.shot(name);
  }
});

scenario('on a 390 px phone every dashboard fits: no sideways scroll, stacked tables, finger-sized controls', async () => {
  // A parent's child in a class with a published exam the child has not sat.
  const s = await one(pool, `
    SELECT e.id AS exam_id, e.class_id, ct.teacher_id, s.id AS student_id, s.user_id AS student_user, ps.parent_id
    FROM exams e
    JOIN class_teachers ct ON ct.class_id = e.class_id
    JOIN students s ON s.class_id = e.class_id AND s.status = 'active'
    JOIN parent_students ps ON ps.student_id = s.id
    WHERE e.status = 'published'
      AND NOT EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = e.id AND x.student_id = s.id)
    ORDER BY ct.is_form_teacher DESC, ct.teacher_id, e.id, s.id, ps.parent_id LIMIT 1`);
  // Rows in every table: a sitting handed in and graded, a mark.
  const id = await startSitting(s);
  await submitSitting(id);
  await pool.query(`INSERT INTO exam_results (exam_id, student_id, score, grade, graded_by) VALUES ($1, $2, 41.5, 'B2', $3)
    ON CONFLICT DO NOTHING`, [s.exam_id, s.student_id, s.teacher_id]);
  await markAttendance(s.student_id, 'absent', s.teacher_id);
  const opened = [];
  for (const [name, path, live] of [
    ['picker', '/demo/', false],
    ['teacher', `/demo/teacher.html?user=${s.teacher_id}`, true],
    ['student', `/demo/student.html?user=${s.student_user}`, true],
    ['parent', `/demo/parent.html?user=${s.parent_id}`, true],
    ['admin', '/demo/admin.html?user=1', true],
  ]) opened.push([name, await page(path, { live, device: PHONE })]);
  // A change while they are open, so that each feed has a line.
  for (const [name, d] of opened) {
    if (name === 'teacher') await d.waitSubscribed([`class:${s.class_id}`]);
    else if (name === 'admin') await d.waitSubscribed(['table:attendance']);
    else if (name !== 'picker') await d.waitSubscribed([`student:${s.student_id}`]);
  }
  const marked = await markAttendance(s.student_id, 'late', s.teacher_id);
  for (const [name, d] of opened) {
    if (name !== 'picker') await d.$('event-feed').locator(`[data-rows~="attendance/${marked.id}"]`).waitFor();
  }
  const problems = [];
  for (const [name, d] of opened) {
    for (const problem of await layoutProblems(d.page, PHONE.viewport.width)) problems.push(`${name}: ${problem}`);
    if (name !== 'picker') {
      // A table on a phone is a stack of rows of "heading: value" lines.
      const row = d.page.locator('tbody tr:visible').first();
      await row.waitFor();
      if (await d.page.locator('thead:visible').count()) problems.push(`${name}: table headings shown, not stacked rows`);
      if (!await row.locator('td[data-label]').count()) problems.push(`${name}: a row's cells without their column's heading`);
    }
    await d.shot(`phone-${name}`);
  }
  assert.deepEqual(problems, [], `what does not fit a 390 px phone:\n${problems.join('\n')}`);
});
