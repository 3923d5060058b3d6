// A hand-written stand-in for the file `cdc-broadcaster types --out
// src/realtime-events.d.ts` generates: the shape the typing contract names.
export interface Events {
  'exam.submitted': { operation: 'INSERT' | 'UPDATE'; data: { id: number; score: number | null; student_id: number } };
  'announcement.published': { operation: 'INSERT'; data: { id: number; title: string } };
  'exam.cleared': { operation: 'TRUNCATE' | 'DELETE'; data: { id: number } };
  // As the generator writes a type emitted only for TRUNCATE.
  'class.truncated': { operation: 'TRUNCATE'; data?: undefined; oldData?: undefined };
  // As it writes a type the application emits (emit.events).
  'exam.closing_soon': { operation: 'EMIT'; data: { examId: number; minutesLeft: number }; oldData?: undefined };
}
export type Channel = `exam:${string}` | `class:${string}` | 'role:student';
