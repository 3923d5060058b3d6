// dashboards.test.mjs: the /demo/ dashboards in Chromium against a real
// `serve` and PostgreSQL. Each test writes to the database as the school's
// app would and checks, with Playwright's auto-waiting locators, that the
// open pages show the change without a reload. Run through
// integration/browser_test.go (go test ./integration -run TestBrowser).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, WAIT, db, duplicateTestIds, env, launch, one, open, waitCount } from './lib.mjs';

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

// markAttendance marks a student on the day after their latest mark.
async function markAttendance(studentId, status, markedBy) {
  const r = await one(pool, `INSERT INTO attendance (student_id, class_id, date, status, marked_by)
    SELECT s.id, s.class_id, coalesce((SELECT max(date) FROM attendance WHERE student_id = s.id), current_date) + 1, $2, $3
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
  // reset. The feed keeps one row per eventId: a change sent twice under
  // two ids would show twice, a lost one not at all.
  const feed = teacher.$('event-feed');
  for (const id of [seen, missed]) {
    const rows = feed.locator('[data-type="exam.submitted"]').filter({ hasText: new RegExp(`exam_sessions ${id}(\\s|$)`) });
    await waitCount(rows, 1);
  }
  await waitCount(feed.locator('[data-type="attendance.marked"]').filter({ hasText: new RegExp(`attendance ${mark.id}(\\s|$)`) }), 1);
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
