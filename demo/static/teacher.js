// teacher.js: a teacher's dashboard. Data from GET /demo/api/teacher/{id};
// live through class:{id} of each class they teach (sittings started and
// submitted, results, attendance, report cards, exams) and exam:{id} of
// each published exam (the progress ticks, which go to exam channels only).
import {
  $, el, tag, progressBar, shortTime, fmtScore, start, keyedList, refetcher, eventFeed,
  channelSet, liveAnnouncements, liveNotifications,
} from './common.js';

const sessionRow = (x) => el('tr', { testid: `exam-session-${x.id}`, id: `exam-session-${x.id}`, 'data-status': x.status },
  el('td', { text: x.studentName }),
  el('td', { text: x.examTitle, title: `exam ${x.examId}` }),
  el('td', { class: 'nowrap', text: x.className }),
  el('td', {}, tag(x.status)),
  el('td', {}, progressBar(x.progress)),
  el('td', { class: 'num nowrap', text: x.grade ? `${fmtScore(x.score)} (${x.grade})` : '–' }),
  el('td', { text: shortTime(x.startedAt) }));

const examRow = (e) => el('tr', { testid: `exam-${e.id}`, id: `exam-${e.id}`, 'data-status': e.status },
  el('td', { text: e.id }),
  el('td', { text: e.title }),
  el('td', { class: 'nowrap', text: e.className }),
  el('td', {}, tag(e.status)),
  el('td', { class: 'num', text: `${e.submitted} / ${e.sittings}` }));

const classTallyRow = (c) => el('tr', { testid: `attendance-class-${c.classId}`, id: `attendance-class-${c.classId}` },
  el('td', { text: c.name }),
  el('td', { text: `${Object.values(c.counts).reduce((a, b) => a + b, 0)} / ${c.students}` }),
  ...['present', 'absent', 'late', 'excused'].map((s) => el('td', { class: 'num', text: c.counts[s] ?? 0 })));

const markRow = (m) => el('tr', { testid: `attendance-${m.id}`, id: `attendance-${m.id}`, 'data-status': m.status },
  el('td', { text: m.studentName }), el('td', {}, tag(m.status)), el('td', { text: shortTime(m.updatedAt) }));

const classItem = (c) => el('li', { testid: `class-${c.id}`, id: `class-${c.id}` },
  el('b', { text: c.name }), ` ${c.formTeacher ? '· form teacher ' : ''}· ${c.students} students`);

async function main() {
  const { me, api, rt } = await start(['teacher']);
  const feed = eventFeed($('#event-feed'), { api, me });
  const sessions = keyedList($('#session-list'), { key: (x) => x.id, render: sessionRow, empty: $('#session-empty') });
  const exams = keyedList($('#exam-list'), { key: (e) => e.id, render: examRow, empty: $('#exam-empty') });
  const tallies = keyedList($('#attendance-classes'), { key: (c) => c.classId, render: classTallyRow });
  const marks = keyedList($('#attendance-list'), { key: (m) => m.id, render: markRow, empty: $('#attendance-empty') });
  const classes = keyedList($('#class-list'), { key: (c) => c.id, render: classItem });

  const onEvent = (e, ch) => {
    feed(e, ch);
    reload.schedule();
  };
  const classChannels = channelSet(rt, onEvent, { onReset: () => reload.schedule() });
  const examChannels = channelSet(rt, onEvent, { onReset: () => reload.schedule() });

  const reload = refetcher(async () => {
    const v = await api(`teacher/${me.id}`);
    classes(v.classes);
    sessions(v.sessions);
    exams(v.exams);
    $('#attendance-date').textContent = v.attendance.date ? `school day ${v.attendance.date}` : '';
    tallies(v.attendance.classes);
    marks(v.attendance.marks);
    classChannels(v.classes.map((c) => `class:${c.id}`));
    examChannels(v.exams.filter((e) => e.status === 'published').map((e) => `exam:${e.id}`));
    document.body.dataset.ready = 'true';
  });
  await reload.now();
  liveAnnouncements({ api, rt, channels: ['school', 'role:teacher'], feed }).now();
  liveNotifications({ api, rt, me, feed });
}

main().catch((err) => console.error(err));
