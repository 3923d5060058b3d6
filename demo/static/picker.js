// picker.js: the sign-in page. Lists the school's people by role (GET
// /demo/api/people); each links to their dashboard, which mints its own
// token.
import { $, el, showError } from './common.js';

function person(p, dashboard, detail) {
  return el('a', {
    class: 'person', href: `${dashboard}.html?user=${p.id}`, testid: `person-${p.id}`,
    'data-role': dashboard, 'data-search': `${p.name} ${detail}`.toLowerCase(),
  }, el('b', { text: p.name }), el('small', { text: detail }));
}

function render(people) {
  $('#people-admins').replaceChildren(...people.admins.map((a) =>
    person(a, 'admin', `${a.role.replace('_', ' ')} · user ${a.id}`)));
  $('#people-teachers').replaceChildren(...people.teachers.map((t) =>
    person(t, 'teacher', t.classes.map((c) => (c.formTeacher ? `${c.name} (form)` : c.name)).join(', ') || 'no class')));

  // Students grouped by class, the unenrolled last.
  const groups = new Map();
  for (const s of people.students) {
    const k = s.class ? s.class.name : 'Not enrolled';
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(s);
  }
  const names = [...groups.keys()].sort((a, b) => (a === 'Not enrolled') - (b === 'Not enrolled') || a.localeCompare(b, undefined, { numeric: true }));
  $('#people-students').replaceChildren(...names.flatMap((k) => [
    el('h3', { text: k }),
    ...groups.get(k).map((s) => person({ id: s.userId, name: s.name }, 'student', `${k} · ${s.admissionNumber}`)),
  ]));
  $('#students-count').textContent = `${people.students.length}`;
  $('#people-parents').replaceChildren(...people.parents.map((p) =>
    person(p, 'parent', p.children.map((c) => `${c.name}${c.class ? ` (${c.class.name})` : ''}`).join(', ') || 'no child linked')));
  $('#parents-count').textContent = `${people.parents.length}`;
}

function filter() {
  const q = $('#filter').value.trim().toLowerCase();
  for (const a of document.querySelectorAll('a.person')) a.hidden = q !== '' && !a.dataset.search.includes(q);
}

async function main() {
  $('#filter').addEventListener('input', filter);
  try {
    const res = await fetch('api/people');
    const body = await res.json();
    if (!res.ok) throw new Error(body.message || body.error);
    render(body);
    filter();
    document.body.dataset.ready = 'true';
  } catch (err) {
    showError(`Could not load the school's people: ${err.message}`);
  }
}

main();
