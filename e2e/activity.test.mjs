// activity.test.mjs: the activity feed's words (demo/static/activity.js)
// without a browser: each event type of config.example.yaml's catalogue has
// a sentence, the events of one transaction make one, names and "you" fill
// it in, and names are looked up a batch at a time. Run with the browser
// tests (integration/browser_test.go), or alone: node --test activity.test.mjs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

// activity.js is a browser module in a directory without package.json:
// import its source (it imports nothing).
const src = readFileSync(new URL('../demo/static/activity.js', import.meta.url), 'utf8');
const { actionKey, describe, hasWords, headline, nameBook, words } = await import(`data:text/javascript,${encodeURIComponent(src)}`);

// The example school's people and things, as GET /demo/api/names answers.
const NAMES = {
  users: { 2: 'Ngozi Eze', 10: 'Chinedu Obi', 100: 'Amaka Okafor', 1001: 'Ada Lovelace' },
  students: { 1: 'Amaka Okafor', 1001: 'Ada Lovelace' },
  exams: { 7: 'JSS 1 Mathematics Mid-Term Test' },
  classes: { 1: 'JSS 1A', 2: 'JSS 2A' },
  terms: { 1: 'First Term 2025/2026' },
  vacancies: { 3: 'School Nurse' },
};
const name = (kind, id) => NAMES[kind]?.[id];
const nobody = () => undefined;

let seq = 0;
function ev(eventType, data, { table = 'x', op = 'INSERT', userId, txId = 500, oldData } = {}) {
  seq++;
  return { eventId: `00000000000000AA-${String(seq).padStart(8, '0')}`, eventType, table, operation: op, data, oldData, userId, txId, timestamp: 0 };
}
const say = (events, n = name, me = {}) => words(describe(events).parts, n, me).map((w) => w.text).join('');

// catalogue is config.example.yaml's event types: each mapping's `type:`s,
// or its domain's default four when it has none (docs/config.md).
function catalogue() {
  const yaml = readFileSync(new URL('../config.example.yaml', import.meta.url), 'utf8');
  const mappings = yaml.slice(yaml.indexOf('\nmappings:'), yaml.indexOf('\nchannels:')).split(/\n {2}- table: /).slice(1);
  const types = new Set();
  for (const m of mappings) {
    const domain = m.match(/\n {4}domain: (\w+)/)[1];
    const own = [...m.matchAll(/\n {8}type: (\S+)/g)].map((x) => x[1]);
    for (const t of own.length ? own : ['created', 'updated', 'deleted', 'truncated'].map((a) => `${domain}.${a}`)) types.add(t);
  }
  return [...types].sort();
}

// A row with every column the mappings' payloads carry.
const ROW = {
  id: '1001', exam_id: '7', student_id: '1', class_id: '1', user_id: '100', vacancy_id: '3', term_id: '1', subject_id: '1',
  status: 'late', progress: 40, grade: 'B', score: '34', date: '2025-11-04', role: 'student', is_active: true,
  target_role: 'parent', is_pinned: false, question_no: 2, bytes: 1000, tags: ['x'], exam_session_id: '5',
};

test('every event type of the example mapping has a sentence with names and no ids', () => {
  const types = catalogue();
  assert.ok(types.length > 40, `only ${types.length} types read from config.example.yaml`);
  for (const type of types) {
    if (type.endsWith('.truncated')) continue; // a TRUNCATE: the generic words
    assert.ok(hasWords(type), `${type}: no sentence of its own`);
    for (const userId of [undefined, '2']) {
      const text = say([ev(type, ROW, { userId, op: type.endsWith('.deleted') ? 'DELETE' : 'UPDATE' })]);
      assert.match(text, /^[A-Z]/, `${type}: ${text}`);
      assert.doesNotMatch(text, /undefined|null|NaN|\[object|\b\d{4,}\b|[a-z]\.[a-z]|:\d/i, `${type}: ${text}`);
    }
  }
});

test('a truncation says so in words', () => {
  assert.equal(say([ev('gradingTask.truncated', {})]), 'Grading task truncated');
});

test('the events of one transaction are one action', () => {
  const tests = [
    {
      name: 'a sitting started',
      events: [ev('exam.started', { id: '5', exam_id: '7', student_id: '1', status: 'in_progress' }, { userId: '100' }),
        ev('examSession.started', { id: '5', exam_id: '7', student_id: '1', status: 'in_progress' }, { userId: '100' })],
      type: 'exam.started', want: 'Amaka Okafor started JSS 1 Mathematics Mid-Term Test',
    },
    {
      name: 'handed in',
      events: [ev('examSession.completed', { id: '5', exam_id: '7', student_id: '1', status: 'submitted' }),
        ev('exam.submitted', { id: '5', exam_id: '7', student_id: '1', status: 'submitted' })],
      type: 'exam.submitted', want: 'Amaka Okafor handed in JSS 1 Mathematics Mid-Term Test',
    },
    {
      name: 'time ran out',
      events: [ev('exam.auto_submitted', { id: '5', exam_id: '7', student_id: '1', status: 'auto_submitted' }),
        ev('examSession.completed', { id: '5', exam_id: '7', student_id: '1', status: 'auto_submitted' })],
      type: 'exam.auto_submitted', want: 'Time ran out: JSS 1 Mathematics Mid-Term Test was handed in for Amaka Okafor',
    },
    {
      name: 'an admission, in any order',
      events: [ev('student.enrolled', { id: '1001', user_id: '1001', class_id: '2' }, { userId: '2' }),
        ev('user.created', { id: '1001', role: 'student' }, { userId: '2' }),
        ev('student.created', { id: '1001', user_id: '1001' }, { userId: '2' })],
      type: 'student.created', want: 'Ngozi Eze admitted Ada Lovelace into JSS 2A',
    },
    {
      name: 'a graded script',
      events: [ev('exam.graded', { id: '9', exam_id: '7', student_id: '1', grade: 'B' }, { userId: '10' })],
      type: 'exam.graded', want: 'Chinedu Obi graded Amaka Okafor’s JSS 1 Mathematics Mid-Term Test: B',
    },
    {
      name: 'a class change',
      events: [ev('student.enrolled', { id: '1', class_id: '2' }, { op: 'UPDATE', oldData: { id: '1', class_id: '1' } })],
      type: 'student.enrolled', want: 'Amaka Okafor moved from JSS 1A to JSS 2A',
    },
  ];
  for (const tt of tests) {
    assert.equal(headline(tt.events).eventType, tt.type, tt.name);
    assert.equal(say(tt.events), tt.want, tt.name);
    assert.equal(new Set(tt.events.map(actionKey)).size, 1, tt.name);
  }
  assert.notEqual(actionKey(ev('exam.started', {}, { txId: 1 })), actionKey(ev('exam.started', {}, { txId: 2 })));
});

test('names not known yet: words instead of ids', () => {
  const events = [ev('exam.started', { id: '5', exam_id: '7', student_id: '1' }), ev('examSession.started', { id: '5', exam_id: '7', student_id: '1' })];
  assert.equal(say(events, nobody), 'A student started an exam');
  assert.equal(say([ev('attendance.marked', { id: '3', student_id: '1', status: 'absent', date: '2025-11-04' }, { userId: '10' })], nobody),
    `Someone marked a student absent on ${new Date('2025-11-04T12:00:00').toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' })}`);
});

test('the signed-in user is "you"', () => {
  const mark = [ev('attendance.marked', { id: '3', student_id: '1', status: 'late', date: '2025-11-04' }, { userId: '10' })];
  assert.match(say(mark, name, { id: '10' }), /^You marked Amaka Okafor late on /);
  assert.match(say(mark, name, { id: '100', studentId: '1' }), /^Chinedu Obi marked you late on /);
  const card = [ev('reportcard.published', { id: '4', student_id: '1' })];
  assert.equal(say(card, name, { id: '100', studentId: 1 }), 'Your report card was published');
  assert.equal(say(card, name, { id: '200' }), 'Amaka Okafor’s report card was published');
  const w = words(describe(mark).parts, name, {});
  assert.deepEqual(w.filter((x) => x.name).map((x) => x.text), ['Chinedu Obi', 'Amaka Okafor']);
  assert.deepEqual(w.filter((x) => x.tag).map((x) => x.tag), ['late']);
});

test('nameBook asks for the names of a burst in one request and remembers them', async () => {
  const asked = [];
  let learnt = 0;
  const api = async (path) => {
    asked.push(path);
    return { students: { 1: 'Amaka Okafor' }, exams: {} };
  };
  const book = nameBook(api, () => learnt++);
  assert.equal(book.get('students', '1'), undefined);
  assert.equal(book.get('exams', '7'), undefined);
  assert.equal(book.get('students', '1'), undefined);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(asked, ['names?students=1&exams=7']);
  assert.equal(learnt, 1);
  assert.equal(book.get('students', '1'), 'Amaka Okafor');
  assert.equal(book.get('exams', '7'), undefined); // no such exam: not asked again
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(asked.length, 1);
});

test('nameBook asks again after a failed request', async () => {
  let calls = 0;
  const book = nameBook(async () => {
    calls++;
    if (calls === 1) throw new Error('offline');
    return { users: { 10: 'Chinedu Obi' } };
  });
  const warn = console.warn;
  console.warn = () => {};
  try {
    book.get('users', '10');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(book.get('users', '10'), undefined);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(book.get('users', '10'), 'Chinedu Obi');
    assert.equal(calls, 2);
  } finally {
    console.warn = warn;
  }
});
