// Must NOT compile (test/types.test.ts checks tsc's errors): each line
// marked `// error:` is a mistake the generated types catch.
import { createRealtime } from '../../src/index.js';
import type { Channel, Events } from './realtime-events.js';

const rt = createRealtime<Events, Channel>({ url: 'ws://x/ws', getToken: () => 't' });
const sub = rt.subscribe(['exam:7']);
sub.on('exam.submitted', (e) => e.data.nope); // error: 'nope' does not exist
sub.on('exam.submited', () => {}); // error: no such event type
sub.on('announcement.published', (e) => e.data.score); // error: 'score' does not exist
rt.subscribe(['teacher:3']); // error: not a Channel
sub.on('exam.cleared', (e) => e.data.id); // error: data is undefined on TRUNCATE
sub.on('exam.closing_soon', (e) => e.table.length); // error: an emitted event has no table
