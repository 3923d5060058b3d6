package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// catRow is an expected data or oldData object. Values are compared through
// their JSON encoding, so 5001, json.Number("5001") and 5001.0 are equal.
type catRow map[string]any

// catWant is one event a catalogue case expects, in commit order.
type catWant struct {
	eventType string
	table     string
	op        string
	// channels is the exact set the example config gives the event.
	channels []string
	data     catRow
	// old is the expected oldData; nil means absent, as on an INSERT, or
	// an UPDATE of a table with the default replica identity (the stream
	// then sends no old row). On DELETE, data is the old row as well.
	old catRow
	// userID is the expected actor; "" means no userId.
	userID string
	// noTx: an event of a non-transactional message, in no transaction
	// (txId 0).
	noTx bool
}

// catCase is one entry of the event catalogue: SQL to run (one implicit
// transaction unless it says otherwise) and the events it must produce.
type catCase struct {
	name string
	sql  string
	want []catWant
}

// Channel sets shared by several cases.
var (
	catExamChans = func(exam, class string) []string {
		return []string{"exam:" + exam, "class:" + class, "role:teacher", "table:exams"}
	}
	catSessionChans = []string{"exam:1", "class:1", "student:1", "table:exam_sessions"}
	catReportChans  = []string{"reportcard:5301", "student:2", "class:2", "table:report_cards"}
	catUserChans    = []string{"user:5501", "role:admin", "role:super_admin", "table:users"}
	catTermChans    = []string{"school", "table:academic_terms"}
	catUploadChans  = []string{"user:10", "table:uploads"}
)

const catUpload = "6f1c2a9e-8d1b-4c7e-9a35-2f0c4b6d8e01"

// catalogueCases walk the whole event catalogue of the school's plan over
// the example data (migrations/010_example_data.sql) and the example config.
// Cases run in order on one database: later ones use rows earlier ones made.
// Ids of the rows cases make start at 5001, clear of the example data.
var catalogueCases = []catCase{
	// -- exams ---------------------------------------------------------------
	{
		name: "exam.created",
		sql: `INSERT INTO exams (id, class_id, subject_id, term_id, title, status, created_by, updated_by)
		      VALUES (5001, 2, 3, 1, 'JSS 2 Basic Science Test', 'draft', 11, 11)`,
		want: []catWant{{
			eventType: "exam.created", table: "exams", op: "INSERT",
			channels: catExamChans("5001", "2"),
			data:     catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "draft"},
			userID:   "11",
		}},
	},
	{
		name: "exam.updated",
		sql:  `UPDATE exams SET title = 'JSS 2 Basic Science Mid-Term Test', updated_by = 12 WHERE id = 5001`,
		want: []catWant{{
			eventType: "exam.updated", table: "exams", op: "UPDATE",
			channels: catExamChans("5001", "2"),
			data:     catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "draft"},
			old:      catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "draft"},
			userID:   "12",
		}},
	},
	{
		name: "exam.published",
		sql:  `UPDATE exams SET status = 'published', updated_by = 11 WHERE id = 5001`,
		want: []catWant{{
			eventType: "exam.published", table: "exams", op: "UPDATE",
			channels: catExamChans("5001", "2"),
			data:     catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "published"},
			old:      catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "draft"},
			userID:   "11",
		}},
	},
	{
		// The instructions are TOASTed and unchanged by the UPDATE: the
		// rule still sees old.status, and the event does not suffer.
		name: "exam.published with TOASTed instructions",
		sql: `INSERT INTO exams (id, class_id, subject_id, term_id, title, instructions, created_by, updated_by)
		      SELECT 5002, 3, 1, 1, 'JSS 3 Mathematics Examination', string_agg(md5(i::text), ''), 12, 12
		      FROM generate_series(1, 4000) AS i;
		      UPDATE exams SET status = 'published', updated_by = 12 WHERE id = 5002`,
		want: []catWant{{
			eventType: "exam.published", table: "exams", op: "UPDATE",
			channels: catExamChans("5002", "3"),
			data:     catRow{"id": 5002, "class_id": 3, "subject_id": 1, "term_id": 1, "status": "published"},
			old:      catRow{"id": 5002, "class_id": 3, "subject_id": 1, "term_id": 1, "status": "draft"},
			userID:   "12",
		}},
	},
	{
		name: "exam.deleted",
		sql:  `DELETE FROM exams WHERE id = 5001`,
		want: []catWant{{
			eventType: "exam.deleted", table: "exams", op: "DELETE",
			// class:{class_id} comes from the old row (REPLICA IDENTITY FULL).
			channels: catExamChans("5001", "2"),
			data:     catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "published"},
			old:      catRow{"id": 5001, "class_id": 2, "subject_id": 3, "term_id": 1, "status": "published"},
			userID:   "11",
		}},
	},

	// -- exam sessions: one change, two events ----------------------------------
	{
		name: "exam.started and examSession.started",
		sql:  `INSERT INTO exam_sessions (id, exam_id, student_id, class_id) VALUES (5101, 1, 1, 1)`,
		want: []catWant{
			{
				eventType: "exam.started", table: "exam_sessions", op: "INSERT",
				channels: catSessionChans,
				data:     catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "in_progress", "progress": 0},
			},
			{
				eventType: "examSession.started", table: "exam_sessions", op: "INSERT",
				channels: catSessionChans,
				data:     catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "in_progress", "progress": 0},
			},
		},
	},
	{
		name: "examSession.progress",
		sql:  `UPDATE exam_sessions SET progress = 40, answers = '{"q1": "b", "q2": "d"}' WHERE id = 5101`,
		want: []catWant{{
			eventType: "examSession.progress", table: "exam_sessions", op: "UPDATE",
			channels: []string{"exam:1", "student:1"},
			data:     catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "in_progress", "progress": 40},
			old:      catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "in_progress", "progress": 0},
		}},
	},
	{
		name: "exam.submitted and examSession.completed",
		sql:  `UPDATE exam_sessions SET status = 'submitted', progress = 100, submitted_at = now() WHERE id = 5101`,
		want: []catWant{
			{
				eventType: "exam.submitted", table: "exam_sessions", op: "UPDATE",
				channels: catSessionChans,
				data:     catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "submitted", "progress": 100},
				old:      catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "in_progress", "progress": 40},
			},
			{
				eventType: "examSession.completed", table: "exam_sessions", op: "UPDATE",
				channels: catSessionChans,
				data:     catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "submitted", "progress": 100},
				old:      catRow{"id": 5101, "exam_id": 1, "student_id": 1, "class_id": 1, "status": "in_progress", "progress": 40},
			},
		},
	},
	{
		// Student 7 is in class 1 too; the time ran out at 60 %.
		name: "exam.auto_submitted and examSession.completed",
		sql: `INSERT INTO exam_sessions (id, exam_id, student_id, class_id, progress) VALUES (5102, 1, 7, 1, 60);
		      UPDATE exam_sessions SET status = 'auto_submitted', submitted_at = now() WHERE id = 5102`,
		want: []catWant{
			{
				eventType: "exam.auto_submitted", table: "exam_sessions", op: "UPDATE",
				channels: []string{"exam:1", "class:1", "student:7", "table:exam_sessions"},
				data:     catRow{"id": 5102, "exam_id": 1, "student_id": 7, "class_id": 1, "status": "auto_submitted", "progress": 60},
				old:      catRow{"id": 5102, "exam_id": 1, "student_id": 7, "class_id": 1, "status": "in_progress", "progress": 60},
			},
			{
				eventType: "examSession.completed", table: "exam_sessions", op: "UPDATE",
				channels: []string{"exam:1", "class:1", "student:7", "table:exam_sessions"},
				data:     catRow{"id": 5102, "exam_id": 1, "student_id": 7, "class_id": 1, "status": "auto_submitted", "progress": 60},
				old:      catRow{"id": 5102, "exam_id": 1, "student_id": 7, "class_id": 1, "status": "in_progress", "progress": 60},
			},
		},
	},
	{
		name: "exam.graded",
		sql: `INSERT INTO exam_results (id, exam_id, student_id, score, grade, remarks, graded_by)
		      VALUES (5201, 1, 1, 87.50, 'A1', 'Excellent work', 10)`,
		want: []catWant{{
			eventType: "exam.graded", table: "exam_results", op: "INSERT",
			channels: []string{"exam:1", "student:1", "table:exam_results"},
			data:     catRow{"id": 5201, "exam_id": 1, "student_id": 1, "score": 87.5, "grade": "A1"},
			userID:   "10",
		}},
	},
	{
		name: "exam.graded on a re-grade",
		sql:  `UPDATE exam_results SET score = 91.25, grade = 'A1', graded_by = 12 WHERE id = 5201`,
		want: []catWant{{
			eventType: "exam.graded", table: "exam_results", op: "UPDATE",
			channels: []string{"exam:1", "student:1", "table:exam_results"},
			data:     catRow{"id": 5201, "exam_id": 1, "student_id": 1, "score": 91.25, "grade": "A1"},
			userID:   "12",
		}},
	},

	// -- report cards --------------------------------------------------------------
	{
		name: "reportcard.created",
		sql:  `INSERT INTO report_cards (id, student_id, term_id, class_id, updated_by) VALUES (5301, 2, 1, 2, 11)`,
		want: []catWant{{
			eventType: "reportcard.created", table: "report_cards", op: "INSERT",
			channels: catReportChans,
			data:     catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "draft"},
			userID:   "11",
		}},
	},
	{
		name: "reportcard.updated",
		sql:  `UPDATE report_cards SET remarks = 'A diligent pupil.', average = 71.40, updated_by = 11 WHERE id = 5301`,
		want: []catWant{{
			eventType: "reportcard.updated", table: "report_cards", op: "UPDATE",
			channels: catReportChans,
			data:     catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "draft"},
			old:      catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "draft"},
			userID:   "11",
		}},
	},
	{
		name: "reportcard.published",
		sql:  `UPDATE report_cards SET status = 'published', updated_by = 11 WHERE id = 5301`,
		want: []catWant{{
			eventType: "reportcard.published", table: "report_cards", op: "UPDATE",
			channels: catReportChans,
			data:     catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "published"},
			old:      catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "draft"},
			userID:   "11",
		}},
	},
	{
		name: "reportcard.finalized",
		sql:  `UPDATE report_cards SET status = 'finalized', updated_by = 1 WHERE id = 5301`,
		want: []catWant{{
			eventType: "reportcard.finalized", table: "report_cards", op: "UPDATE",
			channels: catReportChans,
			data:     catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "finalized"},
			old:      catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "published"},
			userID:   "1",
		}},
	},
	{
		name: "reportcard.reverted",
		sql:  `UPDATE report_cards SET status = 'published', updated_by = 2 WHERE id = 5301`,
		want: []catWant{{
			eventType: "reportcard.reverted", table: "report_cards", op: "UPDATE",
			channels: catReportChans,
			data:     catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "published"},
			old:      catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "finalized"},
			userID:   "2",
		}},
	},
	{
		name: "reportcard.deleted",
		sql:  `DELETE FROM report_cards WHERE id = 5301`,
		want: []catWant{{
			eventType: "reportcard.deleted", table: "report_cards", op: "DELETE",
			channels: catReportChans,
			data:     catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "published"},
			old:      catRow{"id": 5301, "student_id": 2, "term_id": 1, "class_id": 2, "status": "published"},
			userID:   "2",
		}},
	},

	// -- attendance ----------------------------------------------------------------
	{
		name: "attendance.marked",
		sql: `INSERT INTO attendance (id, student_id, class_id, date, status, marked_by)
		      VALUES (5401, 3, 3, '2025-11-28', 'present', 12)`,
		want: []catWant{{
			eventType: "attendance.marked", table: "attendance", op: "INSERT",
			channels: []string{"class:3", "student:3", "table:attendance"},
			data:     catRow{"id": 5401, "student_id": 3, "class_id": 3, "date": "2025-11-28", "status": "present"},
			userID:   "12",
		}},
	},
	{
		name: "attendance.updated",
		sql:  `UPDATE attendance SET status = 'late', note = 'Arrived 08:20', marked_by = 12 WHERE id = 5401`,
		want: []catWant{{
			eventType: "attendance.updated", table: "attendance", op: "UPDATE",
			channels: []string{"class:3", "student:3", "table:attendance"},
			data:     catRow{"id": 5401, "student_id": 3, "class_id": 3, "date": "2025-11-28", "status": "late"},
			userID:   "12",
		}},
	},

	// -- users: default events, never the password hash -----------------------------
	{
		name: "user.created",
		sql: `INSERT INTO users (id, email, password_hash, first_name, last_name, role)
		      VALUES (5501, 'kemi.adewale@treasurehome.school', '$2b$10$notarealhashnotarealhashnotarealhashnotareal', 'Kemi', 'Adewale', 'teacher')`,
		want: []catWant{{
			eventType: "user.created", table: "users", op: "INSERT",
			channels: catUserChans,
			data:     catRow{"id": 5501, "role": "teacher", "is_active": true},
		}},
	},
	{
		name: "user.updated",
		sql:  `UPDATE users SET is_active = false, phone = '+2348030005501' WHERE id = 5501`,
		want: []catWant{{
			eventType: "user.updated", table: "users", op: "UPDATE",
			channels: catUserChans,
			data:     catRow{"id": 5501, "role": "teacher", "is_active": false},
		}},
	},
	{
		name: "user.deleted",
		sql:  `DELETE FROM users WHERE id = 5501`,
		want: []catWant{{
			eventType: "user.deleted", table: "users", op: "DELETE",
			channels: catUserChans,
			// Default replica identity: only the key of the old row is known.
			data: catRow{"id": 5501},
			old:  catRow{"id": 5501},
		}},
	},

	// -- students --------------------------------------------------------------------
	{
		name: "student.created",
		sql: `INSERT INTO users (id, email, password_hash, first_name, last_name, role)
		      VALUES (5502, 'tobi.adewale@students.treasurehome.school', '!', 'Tobi', 'Adewale', 'student');
		      INSERT INTO students (id, user_id, class_id, admission_number) VALUES (5601, 5502, 4, 'TH/2022/5601')`,
		want: []catWant{{
			eventType: "student.created", table: "students", op: "INSERT",
			channels: []string{"student:5601", "class:4", "table:students"},
			data:     catRow{"id": 5601, "user_id": 5502, "class_id": 4, "status": "active"},
		}},
	},
	{
		name: "student.updated",
		sql:  `UPDATE students SET status = 'suspended' WHERE id = 5601`,
		want: []catWant{{
			eventType: "student.updated", table: "students", op: "UPDATE",
			channels: []string{"student:5601", "class:4", "table:students"},
			data:     catRow{"id": 5601, "user_id": 5502, "class_id": 4, "status": "suspended"},
			old:      catRow{"id": 5601, "user_id": 5502, "class_id": 4, "status": "active"},
		}},
	},
	{
		name: "student.enrolled, moving class",
		sql:  `UPDATE students SET class_id = 5 WHERE id = 5601`,
		want: []catWant{{
			eventType: "student.enrolled", table: "students", op: "UPDATE",
			channels: []string{"student:5601", "class:4", "class:5", "table:students"},
			data:     catRow{"id": 5601, "user_id": 5502, "class_id": 5, "status": "suspended"},
			old:      catRow{"id": 5601, "user_id": 5502, "class_id": 4, "status": "suspended"},
		}},
	},
	{
		// class:{new.class_id} is null and skipped.
		name: "student.enrolled, leaving every class",
		sql:  `UPDATE students SET class_id = NULL WHERE id = 5601`,
		want: []catWant{{
			eventType: "student.enrolled", table: "students", op: "UPDATE",
			channels: []string{"student:5601", "class:5", "table:students"},
			data:     catRow{"id": 5601, "user_id": 5502, "class_id": nil, "status": "suspended"},
			old:      catRow{"id": 5601, "user_id": 5502, "class_id": 5, "status": "suspended"},
		}},
	},
	{
		name: "student.deleted",
		sql: `UPDATE students SET class_id = 6 WHERE id = 5601;
		      DELETE FROM students WHERE id = 5601`,
		want: []catWant{{
			eventType: "student.deleted", table: "students", op: "DELETE",
			channels: []string{"student:5601", "class:6", "table:students"},
			data:     catRow{"id": 5601, "user_id": 5502, "class_id": 6, "status": "suspended"},
			old:      catRow{"id": 5601, "user_id": 5502, "class_id": 6, "status": "suspended"},
		}},
	},

	// -- classes, subjects, terms -----------------------------------------------------
	{
		name: "class.created",
		sql:  `INSERT INTO classes (id, name, level, capacity) VALUES (5701, 'JSS 1B', 'JSS 1', 35)`,
		want: []catWant{{
			eventType: "class.created", table: "classes", op: "INSERT",
			channels: []string{"class:5701", "role:teacher", "table:classes"},
			data:     catRow{"id": 5701, "is_active": true},
		}},
	},
	{
		name: "class.updated",
		sql:  `UPDATE classes SET capacity = 30, is_active = false WHERE id = 5701`,
		want: []catWant{{
			eventType: "class.updated", table: "classes", op: "UPDATE",
			channels: []string{"class:5701", "role:teacher", "table:classes"},
			data:     catRow{"id": 5701, "is_active": false},
		}},
	},
	{
		name: "class.deleted",
		sql:  `DELETE FROM classes WHERE id = 5701`,
		want: []catWant{{
			eventType: "class.deleted", table: "classes", op: "DELETE",
			channels: []string{"class:5701", "role:teacher", "table:classes"},
			data:     catRow{"id": 5701},
			old:      catRow{"id": 5701},
		}},
	},
	{
		name: "subject.created",
		sql:  `INSERT INTO subjects (id, name, code) VALUES (5801, 'French', 'FRE')`,
		want: []catWant{{
			eventType: "subject.created", table: "subjects", op: "INSERT",
			channels: []string{"role:teacher", "table:subjects"},
			data:     catRow{"id": 5801}, // the default payload: the primary key
		}},
	},
	{
		name: "subject.updated",
		sql:  `UPDATE subjects SET name = 'French Language' WHERE id = 5801`,
		want: []catWant{{
			eventType: "subject.updated", table: "subjects", op: "UPDATE",
			channels: []string{"role:teacher", "table:subjects"},
			data:     catRow{"id": 5801},
		}},
	},
	{
		name: "subject.deleted",
		sql:  `DELETE FROM subjects WHERE id = 5801`,
		want: []catWant{{
			eventType: "subject.deleted", table: "subjects", op: "DELETE",
			channels: []string{"role:teacher", "table:subjects"},
			data:     catRow{"id": 5801},
			old:      catRow{"id": 5801},
		}},
	},
	{
		name: "term.created",
		sql: `INSERT INTO academic_terms (id, name, session, starts_on, ends_on)
		      VALUES (5901, 'Third Term', '2025/2026', '2026-04-27', '2026-07-24')`,
		want: []catWant{{
			eventType: "term.created", table: "academic_terms", op: "INSERT",
			channels: catTermChans,
			data:     catRow{"id": 5901, "is_active": false},
		}},
	},
	{
		name: "term.updated",
		sql:  `UPDATE academic_terms SET ends_on = '2026-07-31' WHERE id = 5901`,
		want: []catWant{{
			eventType: "term.updated", table: "academic_terms", op: "UPDATE",
			channels: catTermChans,
			data:     catRow{"id": 5901, "is_active": false},
			old:      catRow{"id": 5901, "is_active": false},
		}},
	},
	{
		// The running term is closed first (term.updated for term 1).
		name: "term.activated",
		sql: `UPDATE academic_terms SET is_active = false WHERE id = 1;
		      UPDATE academic_terms SET is_active = true WHERE id = 5901`,
		want: []catWant{
			{
				eventType: "term.updated", table: "academic_terms", op: "UPDATE",
				channels: catTermChans,
				data:     catRow{"id": 1, "is_active": false},
				old:      catRow{"id": 1, "is_active": true},
			},
			{
				eventType: "term.activated", table: "academic_terms", op: "UPDATE",
				channels: catTermChans,
				data:     catRow{"id": 5901, "is_active": true},
				old:      catRow{"id": 5901, "is_active": false},
			},
		},
	},
	{
		name: "term.deleted",
		sql: `DELETE FROM academic_terms WHERE id = 5901;
		      UPDATE academic_terms SET is_active = true WHERE id = 1`,
		want: []catWant{{
			eventType: "term.deleted", table: "academic_terms", op: "DELETE",
			channels: catTermChans,
			data:     catRow{"id": 5901, "is_active": true},
			old:      catRow{"id": 5901, "is_active": true},
		}},
	},

	// -- announcements: everyone (`school`) or one role --------------------------------
	{
		name: "announcement.created for everyone",
		sql: `INSERT INTO announcements (id, title, body, target_role, created_by)
		      VALUES (6001, 'Mid-term break', 'School closes on Friday at noon.', NULL, 2)`,
		want: []catWant{{
			eventType: "announcement.created", table: "announcements", op: "INSERT",
			channels: []string{"school", "table:announcements"},
			data:     catRow{"id": 6001, "target_role": nil, "is_pinned": false},
			userID:   "2",
		}},
	},
	{
		// A large, TOASTed body that no payload carries.
		name: "announcement.created for one role",
		sql: `INSERT INTO announcements (id, title, body, target_role, created_by)
		      SELECT 6002, 'PTA meeting', string_agg(md5(i::text), ' '), 'parent', 1
		      FROM generate_series(1, 3000) AS i`,
		want: []catWant{{
			eventType: "announcement.created", table: "announcements", op: "INSERT",
			channels: []string{"role:parent", "table:announcements"},
			data:     catRow{"id": 6002, "target_role": "parent", "is_pinned": false},
			userID:   "1",
		}},
	},
	{
		// The same role on both sides is one channel.
		name: "announcement.updated",
		sql:  `UPDATE announcements SET is_pinned = true WHERE id = 6002`,
		want: []catWant{{
			eventType: "announcement.updated", table: "announcements", op: "UPDATE",
			channels: []string{"role:parent", "table:announcements"},
			data:     catRow{"id": 6002, "target_role": "parent", "is_pinned": true},
			old:      catRow{"id": 6002, "target_role": "parent", "is_pinned": false},
			userID:   "1",
		}},
	},
	{
		name: "announcement.updated to another role",
		sql:  `UPDATE announcements SET target_role = 'teacher' WHERE id = 6002`,
		want: []catWant{{
			eventType: "announcement.updated", table: "announcements", op: "UPDATE",
			channels: []string{"role:parent", "role:teacher", "table:announcements"},
			data:     catRow{"id": 6002, "target_role": "teacher", "is_pinned": true},
			old:      catRow{"id": 6002, "target_role": "parent", "is_pinned": true},
			userID:   "1",
		}},
	},
	{
		name: "announcement.updated from everyone to one role",
		sql:  `UPDATE announcements SET target_role = 'student' WHERE id = 6001`,
		want: []catWant{{
			eventType: "announcement.updated", table: "announcements", op: "UPDATE",
			channels: []string{"school", "role:student", "table:announcements"},
			data:     catRow{"id": 6001, "target_role": "student", "is_pinned": false},
			old:      catRow{"id": 6001, "target_role": nil, "is_pinned": false},
			userID:   "2",
		}},
	},
	{
		name: "announcement.deleted for one role",
		sql:  `DELETE FROM announcements WHERE id = 6002`,
		want: []catWant{{
			eventType: "announcement.deleted", table: "announcements", op: "DELETE",
			channels: []string{"role:teacher", "table:announcements"},
			data:     catRow{"id": 6002, "target_role": "teacher", "is_pinned": true},
			old:      catRow{"id": 6002, "target_role": "teacher", "is_pinned": true},
			userID:   "1",
		}},
	},
	{
		name: "announcement.deleted for everyone",
		sql: `INSERT INTO announcements (id, title, body, created_by) VALUES (6003, 'Typo', 'Ignore this.', 2);
		      DELETE FROM announcements WHERE id = 6003`,
		want: []catWant{{
			eventType: "announcement.deleted", table: "announcements", op: "DELETE",
			channels: []string{"school", "table:announcements"},
			data:     catRow{"id": 6003, "target_role": nil, "is_pinned": false},
			old:      catRow{"id": 6003, "target_role": nil, "is_pinned": false},
			userID:   "2",
		}},
	},

	// -- vacancies and applications --------------------------------------------------------
	{
		name: "vacancy.created",
		sql: `INSERT INTO vacancies (id, title, description, tags, created_by)
		      VALUES (6101, 'Mathematics Teacher (SS)', 'B.Sc. Ed. Mathematics', '{mathematics,full-time}', 2)`,
		want: []catWant{{
			eventType: "vacancy.created", table: "vacancies", op: "INSERT",
			channels: []string{"role:admin", "table:vacancies"},
			data:     catRow{"id": 6101, "status": "open", "tags": []any{"mathematics", "full-time"}},
			userID:   "2",
		}},
	},
	{
		name: "vacancy.closed",
		sql:  `UPDATE vacancies SET status = 'closed' WHERE id = 6101`,
		want: []catWant{{
			eventType: "vacancy.closed", table: "vacancies", op: "UPDATE",
			channels: []string{"role:admin", "table:vacancies"},
			data:     catRow{"id": 6101, "status": "closed", "tags": []any{"mathematics", "full-time"}},
			old:      catRow{"id": 6101, "status": "open", "tags": []any{"mathematics", "full-time"}},
			userID:   "2",
		}},
	},
	{
		name: "application.submitted",
		sql: `INSERT INTO applications (id, vacancy_id, full_name, email, phone, cover_letter)
		      VALUES (6201, 6101, 'Olamide Johnson', 'olamide.j@example.com', '+2348099990000', 'I have taught for six years.')`,
		want: []catWant{{
			eventType: "application.submitted", table: "applications", op: "INSERT",
			channels: []string{"table:applications"},
			data:     catRow{"id": 6201, "vacancy_id": 6101, "status": "submitted"},
		}},
	},
	{
		name: "application.statusChanged",
		sql:  `UPDATE applications SET status = 'shortlisted', reviewed_by = 2 WHERE id = 6201`,
		want: []catWant{{
			eventType: "application.statusChanged", table: "applications", op: "UPDATE",
			channels: []string{"table:applications"},
			data:     catRow{"id": 6201, "vacancy_id": 6101, "status": "shortlisted"},
			old:      catRow{"id": 6201, "vacancy_id": 6101, "status": "submitted"},
			userID:   "2",
		}},
	},

	// -- uploads and notifications -----------------------------------------------------------
	{
		name: "upload.started",
		sql: `INSERT INTO uploads (id, uploaded_by, filename, mime_type)
		      VALUES ('` + catUpload + `', 10, 'jss1-algebra-notes.pdf', 'application/pdf')`,
		want: []catWant{{
			eventType: "upload.started", table: "uploads", op: "INSERT",
			channels: catUploadChans,
			data:     catRow{"id": catUpload, "status": "started", "progress": 0, "bytes": 0},
			userID:   "10",
		}},
	},
	{
		name: "upload.progress",
		sql:  `UPDATE uploads SET status = 'uploading', progress = 35, bytes = 1048576 WHERE id = '` + catUpload + `'`,
		want: []catWant{{
			eventType: "upload.progress", table: "uploads", op: "UPDATE",
			channels: []string{"user:10"},
			data:     catRow{"id": catUpload, "status": "uploading", "progress": 35, "bytes": 1048576},
			old:      catRow{"id": catUpload, "status": "started", "progress": 0, "bytes": 0},
			userID:   "10",
		}},
	},
	{
		name: "upload.completed",
		sql:  `UPDATE uploads SET status = 'completed', progress = 100, bytes = 2995712 WHERE id = '` + catUpload + `'`,
		want: []catWant{{
			eventType: "upload.completed", table: "uploads", op: "UPDATE",
			channels: catUploadChans,
			data:     catRow{"id": catUpload, "status": "completed", "progress": 100, "bytes": 2995712},
			old:      catRow{"id": catUpload, "status": "uploading", "progress": 35, "bytes": 1048576},
			userID:   "10",
		}},
	},
	{
		name: "upload.failed",
		sql: `INSERT INTO uploads (id, uploaded_by, filename, status, progress, bytes)
		      VALUES ('0b7e4f52-3c1a-4d8e-b6f0-9a2c5d7e1f03', 14, 'ss2-chemistry-practical.mp4', 'uploading', 80, 52428800);
		      UPDATE uploads SET status = 'failed', error = 'connection reset'
		      WHERE id = '0b7e4f52-3c1a-4d8e-b6f0-9a2c5d7e1f03'`,
		want: []catWant{{
			eventType: "upload.failed", table: "uploads", op: "UPDATE",
			channels: []string{"user:14", "table:uploads"},
			data:     catRow{"id": "0b7e4f52-3c1a-4d8e-b6f0-9a2c5d7e1f03", "status": "failed", "progress": 80, "bytes": 52428800},
			old:      catRow{"id": "0b7e4f52-3c1a-4d8e-b6f0-9a2c5d7e1f03", "status": "uploading", "progress": 80, "bytes": 52428800},
			userID:   "14",
		}},
	},
	{
		name: "notification.created",
		sql: `INSERT INTO notifications (id, user_id, title, body)
		      VALUES (6301, 200, 'Attendance', 'Amaka was marked late today.')`,
		want: []catWant{{
			eventType: "notification.created", table: "notifications", op: "INSERT",
			channels: []string{"user:200"},
			data:     catRow{"id": 6301, "user_id": 200, "is_read": false},
		}},
	},
	{
		name: "notification.read",
		sql:  `UPDATE notifications SET is_read = true WHERE id = 6301`,
		want: []catWant{{
			eventType: "notification.read", table: "notifications", op: "UPDATE",
			channels: []string{"user:200"},
			data:     catRow{"id": 6301, "user_id": 200, "is_read": true},
			old:      catRow{"id": 6301, "user_id": 200, "is_read": false},
		}},
	},

	// -- the actor message -----------------------------------------------------------------
	{
		name: "cdc.actor message on a table without an actor column",
		sql: `BEGIN;
		      SELECT pg_logical_emit_message(true, 'cdc.actor', '77');
		      UPDATE classes SET capacity = 38 WHERE id = 6;
		      COMMIT;`,
		want: []catWant{{
			eventType: "class.updated", table: "classes", op: "UPDATE",
			channels: []string{"class:6", "role:teacher", "table:classes"},
			data:     catRow{"id": 6, "is_active": true},
			userID:   "77",
		}},
	},
	{
		name: "cdc.actor message wins over the actor column",
		sql: `BEGIN;
		      SELECT pg_logical_emit_message(true, 'cdc.actor', '77');
		      UPDATE exams SET title = 'JSS 1 Mathematics Mid-Term Test (revised)', updated_by = 10 WHERE id = 1;
		      COMMIT;`,
		want: []catWant{{
			eventType: "exam.updated", table: "exams", op: "UPDATE",
			channels: catExamChans("1", "1"),
			data:     catRow{"id": 1, "class_id": 1, "subject_id": 1, "term_id": 1, "status": "published"},
			old:      catRow{"id": 1, "class_id": 1, "subject_id": 1, "term_id": 1, "status": "published"},
			userID:   "77",
		}},
	},
	// -- emitted events (config.example.yaml's emit, migrations/003_emit.sql) --
	{
		name: "exam.closing_soon (emitted)",
		sql: `SELECT cdc_emit('exam.closing_soon', ARRAY['exam:1', 'class:1'],
		      jsonb_build_object('examId', 1, 'classId', 1, 'minutesLeft', 10, 'closesAt', '2025-11-29T10:30:00Z'))`,
		want: []catWant{{
			eventType: "exam.closing_soon", op: "EMIT",
			channels: []string{"exam:1", "class:1"},
			data:     catRow{"examId": 1, "classId": 1, "minutesLeft": 10, "closesAt": "2025-11-29T10:30:00Z"},
		}},
	},
	{
		name: "gradingJob.progress (emitted, not transactional)",
		sql: `SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1', 'role:teacher'],
		      jsonb_build_object('examId', 1, 'done', 3, 'total', 30), transactional => false)`,
		want: []catWant{{
			eventType: "gradingJob.progress", op: "EMIT",
			channels: []string{"exam:1", "role:teacher"},
			data:     catRow{"examId": 1, "done": 3, "total": 30},
			noTx:     true,
		}},
	},
	{
		name: "system.notice (emitted, with the transaction's actor)",
		sql: `BEGIN;
		      SELECT pg_logical_emit_message(true, 'cdc.actor', '2');
		      SELECT cdc_emit('system.notice', ARRAY['role:admin', 'role:super_admin'],
		             jsonb_build_object('level', 'warning', 'message', 'The nightly backup failed'));
		      COMMIT;`,
		want: []catWant{{
			eventType: "system.notice", op: "EMIT",
			channels: []string{"role:admin", "role:super_admin"},
			data:     catRow{"level": "warning", "message": "The nightly backup failed"},
			userID:   "2",
		}},
	},
}

// TestCatalogue runs every entry of the event catalogue through one `tail`
// of the example config on one database holding the example school, and
// checks each event's type, table, operation, channels, payload, actor and
// transaction fields.
func TestCatalogue(t *testing.T) {
	db := NewDB(t, WithExampleData())
	cfg := WriteConfig(t, db, nil)
	p := StartTail(t, cfg)
	start := time.Now()

	for _, tc := range catalogueCases {
		t.Run(tc.name, func(t *testing.T) {
			db.Exec(t, tc.sql)
			var txID uint32
			for i, w := range tc.want {
				got := p.WaitEvent(t, 20*time.Second, func(e Envelope) bool {
					return e.Event.EventType == w.eventType && catSameJSON(e.Event.Data["id"], w.data["id"])
				})
				catCheck(t, w, got, start)
				// The events of one statement's transaction share its txId.
				if i == 0 || w.noTx {
					txID = got.Event.TxID
				} else if got.Event.TxID != txID {
					t.Errorf("%s: txId %d, want %d like the transaction's first event", w.eventType, got.Event.TxID, txID)
				}
			}
		})
		if t.Failed() {
			// Later cases build on earlier ones; their failures would only
			// repeat this one.
			break
		}
	}
}

// catCheck compares one received event with what a case expects.
func catCheck(t *testing.T, w catWant, got Envelope, start time.Time) {
	t.Helper()
	ev := got.Event
	if ev.Table != w.table {
		t.Errorf("%s: table %q, want %q", w.eventType, ev.Table, w.table)
	}
	if ev.Operation != w.op {
		t.Errorf("%s: operation %q, want %q", w.eventType, ev.Operation, w.op)
	}
	if gotCh, wantCh := catSorted(got.Channels), catSorted(w.channels); !slices.Equal(gotCh, wantCh) {
		t.Errorf("%s: channels %q, want %q", w.eventType, gotCh, wantCh)
	}
	if g, x := catJSON(t, ev.Data), catJSON(t, w.data); g != x {
		t.Errorf("%s: data %s, want %s", w.eventType, g, x)
	}
	if g, x := catJSON(t, ev.OldData), catJSON(t, w.old); g != x {
		t.Errorf("%s: oldData %s, want %s", w.eventType, g, x)
	}
	if ev.UserID != w.userID {
		t.Errorf("%s: userId %q, want %q", w.eventType, ev.UserID, w.userID)
	}
	if (ev.TxID == 0) != w.noTx {
		t.Errorf("%s: txId %d, want it set unless the event is of a non-transactional message", w.eventType, ev.TxID)
	}
	commit := time.UnixMilli(ev.Timestamp)
	if commit.Before(start.Add(-time.Minute)) || commit.After(time.Now().Add(time.Minute)) {
		t.Errorf("%s: timestamp %d (%v) is not the commit time of a change made since %v",
			w.eventType, ev.Timestamp, commit, start)
	}
	if ev.EventID == "" || ev.Cursor != ev.EventID {
		t.Errorf("%s: eventId %q, cursor %q: want both set and equal", w.eventType, ev.EventID, ev.Cursor)
	}
}

// catSorted returns a sorted copy of channels; duplicates stay, so a channel
// listed twice fails the comparison.
func catSorted(channels []string) []string {
	s := slices.Clone(channels)
	slices.Sort(s)
	return s
}

// catJSON is v's JSON encoding with object keys sorted and numbers spelled
// alike; a nil or empty object encodes as "null" (an absent data or oldData).
func catJSON(t *testing.T, v any) string {
	t.Helper()
	s, err := catCanon(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// catSameJSON reports whether a and b have the same JSON value (the id of a
// received event against an expected one).
func catSameJSON(a, b any) bool {
	x, err1 := catCanon(a)
	y, err2 := catCanon(b)
	return err1 == nil && err2 == nil && x == y
}

// catCanon encodes v, decodes it and encodes it again, so that 87.50 in a
// json.Number and 87.5 in a float64 both become 87.5, and map keys come out
// sorted.
func catCanon(v any) (string, error) {
	switch m := v.(type) {
	case map[string]any:
		if len(m) == 0 {
			return "null", nil
		}
	case catRow:
		if len(m) == 0 {
			return "null", nil
		}
		v = map[string]any(m)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %v: %w", v, err)
	}
	var norm any
	if err := json.Unmarshal(b, &norm); err != nil {
		return "", fmt.Errorf("decode %s: %w", b, err)
	}
	b, err = json.Marshal(norm)
	if err != nil {
		return "", fmt.Errorf("encode %v: %w", norm, err)
	}
	return string(b), nil
}
