// student.js: a student's dashboard. Their record from GET
// /demo/api/student/{studentId}, live through student:{studentId}
// (exam.graded, attendance, report cards, sittings); announcements through
// school and role:student; notifications through user:{id}.
import { $, el, eventFeed, liveAnnouncements, liveNotifications, start } from './common.js';
import { studentPanel } from './record.js';

async function main() {
  const { me, api, rt } = await start(['student']);
  const feed = eventFeed($('#event-feed'), { api, me });
  if (me.studentId) {
    studentPanel({
      api, rt, feed, studentId: me.studentId, root: $('#student-panel'),
      onLoad: (v) => {
        const s = v.student;
        $('#who-role').textContent = `student · ${s.class ? s.class.name : 'not enrolled'} · ${s.admissionNumber} · user ${me.id}`;
      },
    });
  } else {
    $('#student-panel').append(el('p', { class: 'empty', text: 'No student record for this user.' }));
  }
  liveAnnouncements({ api, rt, channels: ['school', 'role:student'], feed }).now();
  liveNotifications({ api, rt, me, feed });
}

main().catch((err) => console.error(err));
