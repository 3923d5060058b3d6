// parent.js: a parent's dashboard. Their children from GET
// /demo/api/parent/{id}; each child's record (record.js) live through
// student:{childId}; announcements through school and role:parent;
// notifications through user:{id}.
import { $, el, eventFeed, liveAnnouncements, liveNotifications, start } from './common.js';
import { studentPanel } from './record.js';

async function main() {
  const { me, api, rt } = await start(['parent']);
  const feed = eventFeed($('#event-feed'), { api, me });
  const v = await api(`parent/${me.id}`);
  const box = $('#children');
  if (v.children.length === 0) box.append(el('p', { class: 'empty', text: 'No child is linked to this parent.' }));
  for (const c of v.children) {
    const sub = el('small');
    const root = el('div', { class: 'grid' });
    box.append(el('div', { class: 'child', testid: `child-${c.id}`, id: `child-${c.id}` }, el('h2', {}, c.name, ' ', sub), root));
    studentPanel({
      api, rt, feed, studentId: c.id, root,
      onLoad: (s) => {
        sub.textContent = `${s.student.class ? s.student.class.name : 'not enrolled'} · ${s.student.admissionNumber}`;
      },
    });
  }
  liveAnnouncements({ api, rt, channels: ['school', 'role:parent'], feed }).now();
  liveNotifications({ api, rt, me, feed });
}

main().catch((err) => console.error(err));
