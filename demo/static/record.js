// record.js: one student's record (results, sittings, attendance, report
// cards), kept live on student:{id}. The student's and the parent's
// dashboards show it, the parent's once per child.
import { el, tag, progressBar, shortTime, fmtScore, keyedList, refetcher } from './common.js';

function card(title, testid, head, empty, extra) {
  const body = el('tbody', { testid, id: testid });
  const none = el('p', { class: 'empty', text: empty });
  const section = el('section', { class: 'card' },
    el('h2', {}, title, extra ?? null),
    el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, el('tr', {}, ...head)), body)), none);
  return { section, body, none };
}

const th = (t, cls) => el('th', { text: t, class: cls });

// studentPanel fills root with the cards of one student and keeps them
// live; onLoad(view) is called after each fetch. The lists' ids carry the
// student id, so two children on one page never share one; row ids are the
// rows' own, unique in the school.
export function studentPanel({ api, rt, feed, studentId, root, onLoad }) {
  const sid = studentId;
  const tallyBox = el('span', { class: 'tallies', testid: `attendance-tally-${sid}` });
  const results = card('Results', `result-list-${sid}`, [th('Exam'), th('Subject'), th('Score', 'num'), th('Grade')], 'No graded exams yet.');
  const sittings = card('Exam sittings', `sitting-list-${sid}`, [th('Exam'), th('Status'), th('Progress')], 'No exams sat yet.');
  const attendance = card('Attendance', `attendance-list-${sid}`, [th('Date'), th('Status')], 'Nothing marked yet.', tallyBox);
  const cards = card('Report cards', `reportcard-list-${sid}`, [th('Term'), th('Class'), th('Status'), th('Average', 'num'), th('Position', 'num')], 'No report card yet.');
  root.append(results.section, sittings.section, attendance.section, cards.section);

  const upd = {
    results: keyedList(results.body, {
      key: (r) => r.id, empty: results.none,
      render: (r) => el('tr', { testid: `result-${r.id}`, id: `result-${r.id}`, 'data-grade': r.grade },
        el('td', { text: r.examTitle }), el('td', { text: r.subject }),
        el('td', { class: 'num nowrap', text: `${fmtScore(r.score)} / ${fmtScore(r.total)}` }), el('td', {}, el('b', { text: r.grade }))),
    }),
    sittings: keyedList(sittings.body, {
      key: (x) => x.id, empty: sittings.none,
      render: (x) => el('tr', { testid: `exam-session-${x.id}`, id: `exam-session-${x.id}`, 'data-status': x.status },
        el('td', { text: x.examTitle }), el('td', {}, tag(x.status)), el('td', {}, progressBar(x.progress))),
    }),
    attendance: keyedList(attendance.body, {
      key: (m) => m.id, empty: attendance.none,
      render: (m) => el('tr', { testid: `attendance-${m.id}`, id: `attendance-${m.id}`, 'data-status': m.status },
        el('td', { text: m.date }), el('td', {}, tag(m.status))),
    }),
    cards: keyedList(cards.body, {
      key: (c) => c.id, empty: cards.none,
      render: (c) => el('tr', { testid: `reportcard-${c.id}`, id: `reportcard-${c.id}`, 'data-status': c.status },
        el('td', { text: c.term }), el('td', { class: 'nowrap', text: c.className }), el('td', {}, tag(c.status)),
        el('td', { class: 'num', text: fmtScore(c.average) }), el('td', { class: 'num', text: c.position ?? '–' })),
    }),
  };

  const reload = refetcher(async () => {
    const v = await api(`student/${sid}`);
    upd.results(v.results);
    upd.sittings(v.sessions);
    upd.attendance(v.attendance);
    upd.cards(v.reportCards);
    tallyBox.replaceChildren(...['present', 'absent', 'late', 'excused'].map((s) => tag(s, `${s} ${v.attendanceTally[s] ?? 0}`)));
    onLoad?.(v);
    root.dataset.ready = 'true';
    document.body.dataset.ready = 'true';
  });
  rt.subscribe([`student:${sid}`], (e, ch) => {
    feed(e, ch);
    reload.schedule();
  }, { onReset: reload.schedule });
  reload.now();
  return reload;
}
