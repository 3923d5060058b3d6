// admin.js: the admin's dashboard. School-wide counts and the latest users,
// students, exams and classes from GET /demo/api/admin, live through the
// table:{t} channels of every mapped table; events counted by type as they
// arrive; the connection's state changes.
import { $, el, tag, shortTime, start, keyedList, refetcher, eventFeed, liveAnnouncements } from './common.js';

// The tables whose events the admin counts. users, students, exams and
// classes also refresh the lists.
const TABLES = [
  'users', 'students', 'classes', 'exams', 'exam_sessions', 'exam_results', 'grading_tasks',
  'attendance', 'report_cards', 'subjects', 'academic_terms', 'vacancies', 'applications', 'uploads',
];

// The school's counts, in this order.
const COUNT_LABELS = {
  users: 'users', students: 'students', teachers: 'teachers', parents: 'parents', classes: 'classes',
  exams: 'exams', examsPublished: 'exams published', sittingsInProgress: 'sitting now',
  examSessions: 'exam sittings', examResults: 'results', attendance: 'attendance marks',
  reportCards: 'report cards', announcements: 'announcements',
};

const counter = (testid, value, label) => el('div', { class: 'counter', testid, id: testid },
  el('b', { text: value }), el('span', { text: label }));

async function main() {
  const { me, api, rt } = await start(['admin', 'super_admin']);
  const feed = eventFeed($('#event-feed'), { api, me, max: 40 });
  const counts = keyedList($('#school-counts'), {
    key: (c) => c.key, render: (c) => counter(`count-${c.key}`, c.value, COUNT_LABELS[c.key] ?? c.key),
  });
  const users = keyedList($('#user-list'), {
    key: (u) => u.id,
    render: (u) => el('tr', { testid: `user-${u.id}`, id: `user-${u.id}`, 'data-role': u.role },
      el('td', { text: u.id }), el('td', { text: u.name }), el('td', {}, tag('role', u.role.replace('_', ' '))),
      el('td', {}, tag(u.isActive ? 'active' : 'inactive')), el('td', { text: shortTime(u.createdAt) })),
  });
  const students = keyedList($('#student-list'), {
    key: (s) => s.id,
    render: (s) => el('tr', { testid: `student-${s.id}`, id: `student-${s.id}`, 'data-status': s.status },
      el('td', { text: s.id }), el('td', { text: s.name }), el('td', { text: s.admissionNumber }),
      el('td', { text: s.class ? s.class.name : '–' }), el('td', {}, tag(s.status))),
  });
  const exams = keyedList($('#exam-list'), {
    key: (e) => e.id,
    render: (e) => el('tr', { testid: `exam-${e.id}`, id: `exam-${e.id}`, 'data-status': e.status },
      el('td', { text: e.id }), el('td', { text: e.title }), el('td', { text: e.className }), el('td', { text: e.subject }),
      el('td', {}, tag(e.status)), el('td', { class: 'num', text: `${e.submitted} / ${e.sittings}` })),
  });
  const classes = keyedList($('#class-list'), {
    key: (c) => c.id,
    render: (c) => el('tr', { testid: `class-${c.id}`, id: `class-${c.id}` },
      el('td', { text: c.id }), el('td', { text: c.name }), el('td', { class: 'num', text: `${c.students} / ${c.capacity}` }),
      el('td', { text: c.teachers.join(', ') }), el('td', {}, tag(c.isActive ? 'active' : 'inactive'))),
  });

  // Events by type, counted since the page opened.
  const byType = new Map();
  const typeCounters = keyedList($('#event-counters'), {
    key: (c) => c.type, empty: $('#event-counters-empty'),
    render: (c) => el('li', { testid: `counter-${c.type}`, id: `counter-${c.type}`, 'data-count': c.n },
      el('code', { text: c.type }), el('b', { text: c.n })),
  });
  const count = (e) => {
    byType.set(e.eventType, (byType.get(e.eventType) ?? 0) + 1);
    typeCounters([...byType].sort((a, b) => a[0].localeCompare(b[0])).map(([type, n]) => ({ type, n })));
  };

  const reload = refetcher(async () => {
    const v = await api('admin');
    const known = Object.keys(COUNT_LABELS).filter((k) => k in v.counts);
    const rest = Object.keys(v.counts).filter((k) => !(k in COUNT_LABELS)).sort();
    counts([...known, ...rest].map((key) => ({ key, value: v.counts[key] })));
    users(v.users);
    students(v.students);
    exams(v.exams);
    classes(v.classes);
    document.body.dataset.ready = 'true';
  }, 300);
  rt.subscribe(TABLES.map((t) => `table:${t}`), (e, ch) => {
    count(e);
    feed(e, ch);
    reload.schedule();
  }, { onReset: reload.schedule });
  // Announcements: table:announcements carries every one, whatever its
  // audience (role:{r} is only for that role).
  liveAnnouncements({ api, rt, channels: ['table:announcements'], feed: (e, ch) => { count(e); feed(e, ch); } }).now();
  await reload.now();
}

main().catch((err) => console.error(err));
