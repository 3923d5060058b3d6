// activity.js: the live activity feed's words. The events of one
// transaction are one action of someone at school (a sitting started is
// exam.started and examSession.started of one row; an admission is
// user.created, student.created and student.enrolled), so the feed shows
// one line per transaction, said the way the school would say it, with
// people's names instead of their ids. Pure functions and a name cache; the
// DOM is common.js's (eventFeed).

// actionKey is the key of the line an event belongs to: its transaction.
export const actionKey = (e) => (e.txId ? `tx${e.txId}` : `ev${e.eventId}`);

// The event that names a transaction's action when it has several, first
// first; the others come with it (examSession.started with exam.started).
// Types not listed rank after these, in the order they came.
const HEADLINE = [
  'student.created', 'exam.submitted', 'exam.auto_submitted', 'exam.started', 'exam.graded',
  'examSession.completed', 'examSession.started', 'student.enrolled', 'user.created',
];
const rank = (type) => {
  const i = HEADLINE.indexOf(type);
  return i < 0 ? HEADLINE.length : i;
};

// headline picks the event that names the action.
export function headline(events) {
  let best = events[0];
  for (const e of events) if (rank(e.eventType) < rank(best.eventType)) best = e;
  return best;
}

const ROLES = { super_admin: 'head of school', admin: 'administrator', teacher: 'teacher', student: 'student', parent: 'parent' };
const a = (noun) => (/^[aeiou]/i.test(noun) ? `an ${noun}` : `a ${noun}`);
const pct = (n) => `${Number(n)}%`;

// The words of a line are parts: a string, a name ({ref: [kind, id],
// fallback, poss}) or a status ({tag}). words() turns them into text.
const ref = (kind, id, fallback) => ({ ref: [kind, id === undefined || id === null ? '' : String(id)], fallback });
const poss = (r) => ({ ...r, poss: true });
const tagged = (status) => ({ tag: String(status ?? '') });

// who names the event's actor (the transaction's cdc.actor, or the
// mapping's actor column), or is null when the change has none.
const who = (e) => (e.userId ? ref('users', e.userId, 'someone') : null);

// by puts an actor before a sentence, or says it in the passive:
// by(actor, ['marked ', x], [x, ' was marked']).
const by = (actor, active, passive) => (actor ? [actor, ' ', ...active] : passive);

// SAY holds, per event type, the words of an action it names. d is the
// row (event.data), e the event, all the transaction's events.
const SAY = {
  'exam.started': (d) => [student(d), ' started ', exam(d)],
  'examSession.started': (d) => [student(d), ' started ', exam(d)],
  'examSession.progress': (d) => [student(d), ` is ${pct(d.progress)} through `, exam(d)],
  'exam.submitted': (d) => [student(d), ' handed in ', exam(d)],
  'exam.auto_submitted': (d) => ['Time ran out: ', exam(d), ' was handed in for ', student(d)],
  'examSession.completed': (d) => (d.status === 'auto_submitted'
    ? ['Time ran out: ', exam(d), ' was handed in for ', student(d)]
    : [student(d), ' handed in ', exam(d)]),
  'exam.graded': (d, e) => [...by(who(e), [e.operation === 'UPDATE' ? 're-graded ' : 'graded ', poss(student(d)), ' ', exam(d)],
    [poss(student(d)), ' ', exam(d), e.operation === 'UPDATE' ? ' was re-graded' : ' was graded']),
  ': ', tagged(d.grade)],
  'exam.created': (d, e) => by(who(e), ['set ', exam(d), ' for ', klass(d)], ['New exam for ', klass(d), ': ', exam(d)]),
  'exam.published': (d, e) => by(who(e), ['published ', exam(d)], [exam(d), ' was published']),
  'exam.updated': (d, e) => (d.status === 'closed'
    ? by(who(e), ['closed ', exam(d)], [exam(d), ' was closed'])
    : by(who(e), ['updated ', exam(d)], [exam(d), ' was updated'])),
  'exam.deleted': (d, e) => by(who(e), ['deleted an exam'], ['An exam was deleted']),
  'gradingTask.created': (d) => ['A question of ', exam(d), ' is waiting to be marked'],
  'gradingTask.updated': (d) => ['A question of ', exam(d), ` is ${String(d.status ?? 'updated').replace(/_/g, ' ')}`],
  'gradingTask.deleted': (d) => ['A marking task of ', exam(d), ' was removed'],
  'attendance.marked': (d, e) => [...by(who(e), ['marked ', student(d), ' '], [student(d), ' was marked ']), tagged(d.status), ` ${day(d.date)}`],
  'attendance.updated': (d, e) => [...by(who(e), ['changed ', poss(student(d)), ' attendance'], [poss(student(d)), ' attendance changed']),
    ` ${day(d.date)} to `, tagged(d.status)],
  'reportcard.created': (d, e) => by(who(e), ['drafted ', poss(student(d)), ' report card'], [poss(student(d)), ' report card was drafted']),
  'reportcard.published': (d, e) => by(who(e), ['published ', poss(student(d)), ' report card'], [poss(student(d)), ' report card was published']),
  'reportcard.finalized': (d, e) => by(who(e), ['finalized ', poss(student(d)), ' report card'], [poss(student(d)), ' report card was finalized']),
  'reportcard.reverted': (d, e) => by(who(e), ['took ', poss(student(d)), ' report card back to draft for a correction'],
    [poss(student(d)), ' report card went back to draft for a correction']),
  'reportcard.updated': (d, e) => by(who(e), ['updated ', poss(student(d)), ' report card'], [poss(student(d)), ' report card was updated']),
  'reportcard.deleted': (d) => [poss(student(d)), ' report card was removed'],
  'announcement.created': (d, e) => by(who(e), [`posted ${d.is_pinned ? 'a pinned' : 'an'} announcement for `, audience(d)],
    [`New announcement for `, audience(d)]),
  'announcement.updated': (d, e) => by(who(e), [d.is_pinned ? 'pinned an announcement' : 'updated an announcement'],
    [d.is_pinned ? 'An announcement was pinned' : 'An announcement was updated']),
  'announcement.deleted': (d, e) => by(who(e), ['removed an announcement'], ['An announcement was removed']),
  'user.created': (d, e) => by(who(e), ['added ', ref('users', d.id, 'someone new'), ` as ${a(ROLES[d.role] ?? 'user')}`],
    [ref('users', d.id, 'Someone new'), ` joined as ${a(ROLES[d.role] ?? 'user')}`]),
  'user.updated': (d) => [poss(ref('users', d.id, 'a user')), d.is_active === false ? ' account was deactivated' : ' account was updated'],
  'user.deleted': () => ['An account was removed'],
  'student.created': (d, e, all) => {
    const enrolled = all.find((x) => x.eventType === 'student.enrolled')?.data ?? d;
    const s = ref('students', d.id, 'a new student');
    const into = enrolled.class_id ? [' into ', ref('classes', enrolled.class_id, 'a class')] : [];
    return [...by(who(e), ['admitted ', s], [s, ' was admitted']), ...into];
  },
  'student.enrolled': (d, e) => {
    const s = ref('students', d.id, 'a student');
    const from = e.oldData?.class_id;
    if (!d.class_id) return [s, ' left ', from ? ref('classes', from, 'their class') : 'their class'];
    return from ? [s, ' moved from ', ref('classes', from, 'a class'), ' to ', ref('classes', d.class_id, 'another')]
      : [s, ' joined ', ref('classes', d.class_id, 'a class')];
  },
  'student.updated': (d) => [poss(ref('students', d.id, 'a student')), ' record was updated', ...(d.status && d.status !== 'active' ? [': ', tagged(d.status)] : [])],
  'student.deleted': () => ['A student record was removed'],
  'class.created': (d) => [ref('classes', d.id, 'A new class'), ' was opened'],
  'class.updated': (d) => [ref('classes', d.id, 'A class'), d.is_active === false ? ' was closed' : ' was updated'],
  'class.deleted': () => ['A class was removed'],
  'subject.created': () => ['A subject was added'],
  'subject.updated': () => ['A subject was updated'],
  'subject.deleted': () => ['A subject was removed'],
  'term.activated': (d) => [ref('terms', d.id, 'A new term'), ' began'],
  'term.created': (d) => [ref('terms', d.id, 'A term'), ' was added to the calendar'],
  'term.updated': (d) => [ref('terms', d.id, 'A term'), ' was updated'],
  'term.deleted': () => ['A term was removed'],
  'vacancy.created': (d, e) => by(who(e), ['opened a vacancy: ', ref('vacancies', d.id, 'a new post')], ['New vacancy: ', ref('vacancies', d.id, 'a new post')]),
  'vacancy.closed': (d, e) => by(who(e), ['closed the vacancy for ', ref('vacancies', d.id, 'a post')], ['The vacancy for ', ref('vacancies', d.id, 'a post'), ' closed']),
  'application.submitted': (d) => ['Someone applied for ', ref('vacancies', d.vacancy_id, 'a vacancy')],
  'application.statusChanged': (d, e) => [...by(who(e), ['moved an application for ', ref('vacancies', d.vacancy_id, 'a vacancy'), ' to '],
    ['An application for ', ref('vacancies', d.vacancy_id, 'a vacancy'), ' is now ']), tagged(d.status)],
  'upload.started': (d, e) => [who(e) ?? 'Someone', ' started uploading a file'],
  'upload.progress': (d, e) => [poss(who(e) ?? ref('users', '', 'someone')), ` upload is at ${pct(d.progress)}`],
  'upload.completed': (d, e) => [poss(who(e) ?? ref('users', '', 'someone')), ' upload finished'],
  'upload.failed': (d, e) => [poss(who(e) ?? ref('users', '', 'someone')), ' upload ', tagged('failed')],
  'notification.created': (d) => [ref('users', d.user_id, 'someone'), ' got a notification'],
  'notification.read': (d) => [ref('users', d.user_id, 'someone'), ' read a notification'],
};

// hasWords tells whether the feed has a sentence of its own for an event
// type (else it says "Exam session updated").
export const hasWords = (type) => Object.hasOwn(SAY, type);

function student(d) { return ref('students', d.student_id, 'a student'); }
function exam(d) { return ref('exams', d.exam_id, 'an exam'); }
function klass(d) { return ref('classes', d.class_id, 'a class'); }
function audience(d) { return d.target_role ? `${ROLES[d.target_role] ?? d.target_role}s` : 'everyone'; }
function day(date) {
  if (!date) return '';
  const t = new Date(`${date}T12:00:00`);
  if (Number.isNaN(t.getTime())) return `on ${date}`;
  return `on ${t.toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' })}`;
}

// fallback words for an event type the feed has no sentence for:
// "Exam session updated".
function generic(e) {
  const [domain, action = ''] = e.eventType.split('.');
  const noun = domain.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return [`${noun[0].toUpperCase()}${noun.slice(1)} ${action.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/_/g, ' ').toLowerCase()}`];
}

/**
 * describe says the action of one transaction's events: {type, parts},
 * where type is the headline event's type and parts the words, for
 * words().
 */
export function describe(events) {
  const e = headline(events);
  const say = SAY[e.eventType];
  return { type: e.eventType, parts: say ? say(e.data ?? {}, e, events) : generic(e) };
}

/**
 * words turns parts into [{text, name?, tag?}] with names from
 * name(kind, id) (undefined while unknown: the part's fallback shows) and
 * "you" for the signed-in user me ({id, studentId}); the first word gets a
 * capital.
 */
export function words(parts, name, me = {}) {
  const out = [];
  for (const p of parts) {
    if (p === null || p === undefined || p === '') continue;
    if (typeof p === 'string') out.push({ text: p });
    else if (p.tag !== undefined) out.push({ text: p.tag.replace(/_/g, ' '), tag: p.tag });
    else if (p.ref) {
      const [kind, id] = p.ref;
      const you = id !== '' && ((kind === 'users' && id === String(me.id ?? '')) || (kind === 'students' && id === String(me.studentId ?? '')));
      if (you) out.push({ text: p.poss ? 'your' : 'you' });
      else {
        const n = id === '' ? undefined : name(kind, id);
        if (n) out.push({ text: p.poss ? `${n}’s` : n, name: true });
        else if (p.fallback) out.push({ text: p.poss ? `${p.fallback}’s` : p.fallback });
      }
    }
  }
  if (out.length) out[0].text = out[0].text.charAt(0).toUpperCase() + out[0].text.slice(1);
  return out;
}

/**
 * nameBook looks names up through the demo API (GET names), a batch at a
 * time, and remembers them. get(kind, id) is the name, or undefined while
 * it is not known (and asks for it); onLearn runs after each answer.
 */
export function nameBook(api, onLearn) {
  const known = new Map(); // "kind:id" -> name, or null: asked, or no such row
  let wanted = new Map(); // kind -> Set of ids to ask for
  let timer = null;
  async function flush() {
    timer = null;
    const batch = wanted;
    wanted = new Map();
    const q = [...batch].map(([kind, ids]) => `${kind}=${[...ids].slice(0, 100).join(',')}`).join('&');
    try {
      const got = await api(`names?${q}`);
      for (const [kind, ids] of batch) for (const id of ids) known.set(`${kind}:${id}`, got[kind]?.[id] ?? null);
      onLearn?.();
    } catch (err) {
      console.warn('names:', err.message ?? err);
      for (const [kind, ids] of batch) for (const id of ids) known.delete(`${kind}:${id}`); // asked again by the next event
    }
  }
  function get(kind, id) {
    const k = `${kind}:${id}`;
    if (known.has(k)) return known.get(k) ?? undefined;
    known.set(k, null);
    if (!wanted.has(kind)) wanted.set(kind, new Set());
    wanted.get(kind).add(id);
    timer ??= setTimeout(flush, 20);
    return undefined;
  }
  return { get };
}
