package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// actions is what happens at school, with how often (weights are relative).
// Each function does one change in tx and returns its line, or
// errNothingToDo when the school is in no state for it.
var actions = []action{
	{"exam.create", 2, createExam},
	{"exam.publish", 3, publishExam},
	{"exam.start", 10, startExam},
	{"exam.progress", 14, progressExam},
	{"exam.submit", 6, submitExam},
	{"exam.grade", 7, gradeExam},
	{"exam.regrade", 1, regradeExam},
	{"exam.close", 1, closeExam},
	{"attendance.mark", 14, markAttendance},
	{"attendance.correct", 3, correctAttendance},
	{"announcement.create", 3, createAnnouncement},
	{"announcement.pin", 1, pinAnnouncement},
	{"reportcard.create", 4, createReportCard},
	{"reportcard.publish", 3, publishReportCard},
	{"reportcard.finalize", 2, finalizeReportCard},
	{"reportcard.revert", 1, revertReportCard},
	{"student.admit", 2, admitStudent},
	{"vacancy.create", 1, createVacancy},
	{"vacancy.close", 1, closeVacancy},
	{"application.submit", 2, submitApplication},
	{"application.review", 2, reviewApplication},
	{"upload.start", 3, startUpload},
	{"upload.progress", 5, progressUpload},
	{"upload.finish", 3, finishUpload},
	{"notification.create", 5, createNotification},
	{"notification.read", 4, readNotification},
}

// adminID is the school administrator of the example data: admissions,
// recruitment and finalizing report cards are theirs.
const adminID = 2

// Limits that keep a long run from piling up open work.
const (
	maxDraftExams     = 3
	minSubmitProgress = 60
	maxOpenVacancies  = 4
	candidateLimit    = 200
)

// teacherOf picks a teacher of the class, or the administrator when it
// has none.
func teacherOf(ctx context.Context, tx pgx.Tx, r *rand.Rand, classID int64) (int64, error) {
	id, err := pickRow(ctx, tx, r, pgx.RowTo[int64],
		"SELECT teacher_id FROM class_teachers WHERE class_id = $1 ORDER BY teacher_id", classID)
	if errors.Is(err, errNothingToDo) {
		return adminID, nil
	}
	return id, err
}

// teacherActs picks a teacher of the class, as teacherOf does, and names
// them the actor of the transaction.
func teacherActs(ctx context.Context, tx pgx.Tx, r *rand.Rand, classID int64) (int64, error) {
	teacher, err := teacherOf(ctx, tx, r, classID)
	if err != nil {
		return 0, err
	}
	return teacher, emitActor(ctx, tx, teacher)
}

// activeTerm returns the active academic term's id.
func activeTerm(ctx context.Context, tx pgx.Tx) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, "SELECT id FROM academic_terms WHERE is_active").Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errNothingToDo
	}
	if err != nil {
		return 0, fmt.Errorf("find the active term: %w", err)
	}
	return id, nil
}

// exec runs one statement, naming what it does in its error.
func exec(ctx context.Context, tx pgx.Tx, what, sql string, args ...any) error {
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// -- Exams ---------------------------------------------------------------

func createExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	var drafts int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM exams WHERE status = 'draft'").Scan(&drafts); err != nil {
		return "", fmt.Errorf("count draft exams: %w", err)
	}
	if drafts >= maxDraftExams {
		return "", errNothingToDo
	}
	type classSubject struct {
		ClassID   int64
		Level     string
		SubjectID int64
		Subject   string
	}
	c, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[classSubject],
		"SELECT c.id, c.level, s.id, s.name FROM classes c CROSS JOIN subjects s WHERE c.is_active ORDER BY c.id, s.id")
	if err != nil {
		return "", err
	}
	term, err := activeTerm(ctx, tx)
	if err != nil {
		return "", err
	}
	teacher, err := teacherActs(ctx, tx, r, c.ClassID)
	if err != nil {
		return "", err
	}
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO exams (class_id, subject_id, term_id, title, instructions, duration_minutes, starts_at, created_by, updated_by)
		VALUES ($1, $2, $3, $4, 'Answer all questions.', $5, now() + interval '1 day', $6, $6)
		RETURNING id`,
		c.ClassID, c.SubjectID, term, fmt.Sprintf("%s %s Class Test", c.Level, c.Subject), 30+15*r.IntN(5), teacher,
	).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert exam: %w", err)
	}
	return fmt.Sprintf("teacher %d created exam %d (class %d, %s): draft", teacher, id, c.ClassID, c.Subject), nil
}

func publishExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type exam struct{ ID, ClassID int64 }
	e, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[exam],
		"SELECT id, class_id FROM exams WHERE status = 'draft' ORDER BY id")
	if err != nil {
		return "", err
	}
	teacher, err := teacherActs(ctx, tx, r, e.ClassID)
	if err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "publish exam",
		"UPDATE exams SET status = 'published', starts_at = COALESCE(starts_at, now()), updated_by = $2 WHERE id = $1",
		e.ID, teacher); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d published exam %d (class %d)", teacher, e.ID, e.ClassID), nil
}

// sitting is one student's exam session, with the student's user id.
type sitting struct {
	ID, ExamID, StudentID, ClassID, UserID int64
	Progress                               int
}

const sittingColumns = "x.id, x.exam_id, x.student_id, x.class_id, s.user_id, x.progress"

func startExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type seat struct{ ExamID, StudentID, ClassID, UserID int64 }
	c, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[seat], `
		SELECT e.id, s.id, s.class_id, s.user_id
		FROM exams e JOIN students s ON s.class_id = e.class_id AND s.status = 'active'
		WHERE e.status = 'published'
		  AND NOT EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = e.id AND x.student_id = s.id)
		ORDER BY e.id, s.id LIMIT $1`, candidateLimit)
	if err != nil {
		return "", err
	}
	if err := emitActor(ctx, tx, c.UserID); err != nil {
		return "", err
	}
	var id int64
	err = tx.QueryRow(ctx, "INSERT INTO exam_sessions (exam_id, student_id, class_id) VALUES ($1, $2, $3) RETURNING id",
		c.ExamID, c.StudentID, c.ClassID).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert exam session: %w", err)
	}
	return fmt.Sprintf("student %d started exam %d (class %d): session %d", c.StudentID, c.ExamID, c.ClassID, id), nil
}

// pickSitting picks an in-progress sitting with progress in lo..hi.
func pickSitting(ctx context.Context, tx pgx.Tx, r *rand.Rand, lo, hi int) (sitting, error) {
	return pickRow(ctx, tx, r, pgx.RowToStructByPos[sitting], `
		SELECT `+sittingColumns+`
		FROM exam_sessions x JOIN students s ON s.id = x.student_id
		WHERE x.status = 'in_progress' AND x.progress BETWEEN $1 AND $2
		ORDER BY x.id LIMIT $3`, lo, hi, candidateLimit)
}

func progressExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	x, err := pickSitting(ctx, tx, r, 0, maxTickProgress-1)
	if err != nil {
		return "", err
	}
	next := progressStep(r, x.Progress)
	if err := emitActor(ctx, tx, x.UserID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "save exam progress",
		"UPDATE exam_sessions SET progress = $2, answers = answers || jsonb_build_object($3::text, $4::text) WHERE id = $1",
		x.ID, next, fmt.Sprintf("q%d", next/5), string(rune('A'+r.IntN(4)))); err != nil {
		return "", err
	}
	return fmt.Sprintf("student %d is at %d%% of exam %d (class %d)", x.StudentID, next, x.ExamID, x.ClassID), nil
}

func submitExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	if r.IntN(5) == 0 { // the timer ran out: the system submits, no actor
		x, err := pickSitting(ctx, tx, r, 0, 100)
		if err != nil {
			return "", err
		}
		if err := exec(ctx, tx, "auto-submit exam",
			"UPDATE exam_sessions SET status = 'auto_submitted', submitted_at = now() WHERE id = $1", x.ID); err != nil {
			return "", err
		}
		return fmt.Sprintf("time up: exam %d auto-submitted for student %d (class %d) at %d%%", x.ExamID, x.StudentID, x.ClassID, x.Progress), nil
	}
	x, err := pickSitting(ctx, tx, r, minSubmitProgress, 100) // students hand in once they have answered most
	if err != nil {
		return "", err
	}
	if err := emitActor(ctx, tx, x.UserID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "submit exam",
		"UPDATE exam_sessions SET status = 'submitted', progress = 100, submitted_at = now() WHERE id = $1", x.ID); err != nil {
		return "", err
	}
	return fmt.Sprintf("student %d submitted exam %d (class %d)", x.StudentID, x.ExamID, x.ClassID), nil
}

func gradeExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type script struct {
		ID, ExamID, StudentID, ClassID int64
		Total                          float64
	}
	x, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[script], `
		SELECT x.id, x.exam_id, x.student_id, x.class_id, e.total_marks::float8
		FROM exam_sessions x JOIN exams e ON e.id = x.exam_id
		WHERE x.status IN ('submitted', 'auto_submitted')
		  AND NOT EXISTS (SELECT 1 FROM exam_results er WHERE er.exam_id = x.exam_id AND er.student_id = x.student_id)
		ORDER BY x.id LIMIT $1`, candidateLimit)
	if err != nil {
		return "", err
	}
	teacher, err := teacherOf(ctx, tx, r, x.ClassID)
	if err != nil {
		return "", err
	}
	pct := scorePercent(r)
	score := round2(x.Total * pct / 100)
	grade := gradeFor(pct)
	if err := emitActor(ctx, tx, teacher); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "insert exam result",
		"INSERT INTO exam_results (exam_id, student_id, score, grade, remarks, graded_by) VALUES ($1, $2, $3, $4, $5, $6)",
		x.ExamID, x.StudentID, score, grade, "Marked by hand", teacher); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "mark session graded",
		"UPDATE exam_sessions SET status = 'graded' WHERE id = $1", x.ID); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d graded exam %d of student %d (class %d): %.2f/%.0f (%s)",
		teacher, x.ExamID, x.StudentID, x.ClassID, score, x.Total, grade), nil
}

func regradeExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type result struct {
		ID, ExamID, StudentID, ClassID int64
		Score, Total                   float64
	}
	x, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[result], `
		SELECT er.id, er.exam_id, er.student_id, e.class_id, er.score::float8, e.total_marks::float8
		FROM exam_results er JOIN exams e ON e.id = er.exam_id
		ORDER BY er.id DESC LIMIT $1`, candidateLimit)
	if err != nil {
		return "", err
	}
	teacher, err := teacherOf(ctx, tx, r, x.ClassID)
	if err != nil {
		return "", err
	}
	score := round2(min(x.Total, x.Score+float64(1+r.IntN(5)))) // a missed question found
	grade := gradeFor(100 * score / x.Total)
	if err := emitActor(ctx, tx, teacher); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "re-grade exam result",
		"UPDATE exam_results SET score = $2, grade = $3, remarks = 'Re-marked on appeal', graded_by = $4 WHERE id = $1",
		x.ID, score, grade, teacher); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d re-graded exam %d of student %d: %.2f -> %.2f (%s)",
		teacher, x.ExamID, x.StudentID, x.Score, score, grade), nil
}

func closeExam(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type exam struct{ ID, ClassID int64 }
	e, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[exam], `
		SELECT e.id, e.class_id FROM exams e
		WHERE e.status = 'published'
		  AND EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = e.id)
		  AND NOT EXISTS (SELECT 1 FROM exam_sessions x WHERE x.exam_id = e.id AND x.status <> 'graded')
		  AND 2 * (SELECT count(*) FROM exam_sessions x WHERE x.exam_id = e.id)
		      >= (SELECT count(*) FROM students s WHERE s.class_id = e.class_id AND s.status = 'active')
		ORDER BY e.id`)
	if err != nil {
		return "", err
	}
	teacher, err := teacherActs(ctx, tx, r, e.ClassID)
	if err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "close exam",
		"UPDATE exams SET status = 'closed', updated_by = $2 WHERE id = $1", e.ID, teacher); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d closed exam %d (class %d): most of the class sat it, every script graded", teacher, e.ID, e.ClassID), nil
}

// -- Attendance ----------------------------------------------------------

// pupil is an enrolled student.
type pupil struct{ ID, ClassID int64 }

// unmarked lists the enrolled students without attendance on day.
func unmarked(ctx context.Context, tx pgx.Tx, r *rand.Rand, day time.Time) (pupil, error) {
	return pickRow(ctx, tx, r, pgx.RowToStructByPos[pupil], `
		SELECT s.id, s.class_id FROM students s
		WHERE s.class_id IS NOT NULL AND s.status = 'active'
		  AND NOT EXISTS (SELECT 1 FROM attendance a WHERE a.student_id = s.id AND a.date = $1)
		ORDER BY s.id`, day)
}

// markAttendance marks one student on the simulated school day: the latest
// day marked (today at first), or the next school day once everyone has
// been marked on it.
func markAttendance(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	var day time.Time
	if err := tx.QueryRow(ctx, "SELECT COALESCE(max(date), current_date) FROM attendance").Scan(&day); err != nil {
		return "", fmt.Errorf("find the school day: %w", err)
	}
	day = schoolDay(day)
	p, err := unmarked(ctx, tx, r, day)
	if errors.Is(err, errNothingToDo) {
		day = nextSchoolDay(day)
		p, err = unmarked(ctx, tx, r, day)
	}
	if err != nil {
		return "", err
	}
	teacher, err := teacherOf(ctx, tx, r, p.ClassID)
	if err != nil {
		return "", err
	}
	status := choose(r, attendanceStatuses)
	var note *string
	if n := attendanceNote(status); n != "" {
		note = &n
	}
	if err := emitActor(ctx, tx, teacher); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "mark attendance",
		"INSERT INTO attendance (student_id, class_id, date, status, note, marked_by) VALUES ($1, $2, $3, $4, $5, $6)",
		p.ID, p.ClassID, day, status, note, teacher); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d marked attendance of student %d (class %d) on %s: %s",
		teacher, p.ID, p.ClassID, day.Format(time.DateOnly), status), nil
}

func correctAttendance(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type mark struct {
		ID, StudentID, ClassID int64
		Date                   time.Time
		Status                 string
	}
	m, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[mark], `
		SELECT id, student_id, class_id, date, status FROM attendance
		WHERE status IN ('absent', 'present')
		ORDER BY date DESC, id DESC LIMIT 50`)
	if err != nil {
		return "", err
	}
	next, note, ok := attendanceCorrection(m.Status)
	if !ok {
		return "", errNothingToDo
	}
	teacher, err := teacherActs(ctx, tx, r, m.ClassID)
	if err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "correct attendance",
		"UPDATE attendance SET status = $2, note = $3, marked_by = $4 WHERE id = $1", m.ID, next, note, teacher); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d corrected attendance of student %d (class %d) on %s: %s -> %s (%s)",
		teacher, m.StudentID, m.ClassID, m.Date.Format(time.DateOnly), m.Status, next, note), nil
}

// -- Announcements -------------------------------------------------------

func createAnnouncement(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type author struct {
		ID   int64
		Role string
	}
	a, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[author],
		"SELECT id, role FROM users WHERE role IN ('super_admin', 'admin', 'teacher') AND is_active ORDER BY id")
	if err != nil {
		return "", err
	}
	n := announcements[r.IntN(len(announcements))]
	pinned := r.IntN(10) == 0
	if err := emitActor(ctx, tx, a.ID); err != nil {
		return "", err
	}
	var id int64
	err = tx.QueryRow(ctx,
		"INSERT INTO announcements (title, body, target_role, is_pinned, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING id",
		n.title, n.body, n.target, pinned, a.ID).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert announcement: %w", err)
	}
	return fmt.Sprintf("%s announced %q to %s (announcement %d)", who(a.Role, a.ID), n.title, audience(n.target), id), nil
}

func pinAnnouncement(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type notice struct {
		ID     int64
		Pinned bool
		Author int64
		Role   string
	}
	n, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[notice], `
		SELECT a.id, a.is_pinned, u.id, u.role
		FROM announcements a JOIN users u ON u.id = COALESCE(a.created_by, $1)
		ORDER BY a.id DESC LIMIT 20`, int64(adminID))
	if err != nil {
		return "", err
	}
	if err := emitActor(ctx, tx, n.Author); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "pin announcement",
		"UPDATE announcements SET is_pinned = NOT is_pinned WHERE id = $1", n.ID); err != nil {
		return "", err
	}
	verb := "pinned"
	if n.Pinned {
		verb = "unpinned"
	}
	return fmt.Sprintf("%s %s announcement %d", who(n.Role, n.Author), verb, n.ID), nil
}

// -- Report cards --------------------------------------------------------

func createReportCard(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	term, err := activeTerm(ctx, tx)
	if err != nil {
		return "", err
	}
	type student struct {
		ID, ClassID int64
		Average     *float64
	}
	s, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[student], `
		SELECT s.id, s.class_id,
		       (SELECT avg(er.score / e.total_marks * 100)::float8
		        FROM exam_results er JOIN exams e ON e.id = er.exam_id
		        WHERE er.student_id = s.id AND e.term_id = $1)
		FROM students s
		WHERE s.class_id IS NOT NULL AND s.status = 'active'
		  AND NOT EXISTS (SELECT 1 FROM report_cards rc WHERE rc.student_id = s.id AND rc.term_id = $1)
		ORDER BY s.id LIMIT $2`, term, candidateLimit)
	if err != nil {
		return "", err
	}
	avg := scorePercent(r) // no exam graded yet: the continuous assessment
	if s.Average != nil {
		avg = round2(*s.Average)
	}
	teacher, err := teacherActs(ctx, tx, r, s.ClassID)
	if err != nil {
		return "", err
	}
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO report_cards (student_id, term_id, class_id, average, remarks, updated_by)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		s.ID, term, s.ClassID, avg, "A steady term. Keep it up.", teacher).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert report card: %w", err)
	}
	return fmt.Sprintf("teacher %d drafted report card %d of student %d (class %d): average %.2f",
		teacher, id, s.ID, s.ClassID, avg), nil
}

// reportCard is a report card with its status.
type reportCard struct{ ID, StudentID, ClassID int64 }

// pickReportCard picks a report card in status.
func pickReportCard(ctx context.Context, tx pgx.Tx, r *rand.Rand, status string) (reportCard, error) {
	return pickRow(ctx, tx, r, pgx.RowToStructByPos[reportCard],
		"SELECT id, student_id, class_id FROM report_cards WHERE status = $1 ORDER BY id LIMIT $2", status, candidateLimit)
}

func publishReportCard(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	rc, err := pickReportCard(ctx, tx, r, "draft")
	if err != nil {
		return "", err
	}
	teacher, err := teacherActs(ctx, tx, r, rc.ClassID)
	if err != nil {
		return "", err
	}
	var position int
	err = tx.QueryRow(ctx, `
		UPDATE report_cards rc SET status = 'published', updated_by = $2,
		       position = (SELECT count(*) + 1 FROM report_cards o
		                   WHERE o.class_id = rc.class_id AND o.term_id = rc.term_id AND o.average > rc.average)
		WHERE id = $1 RETURNING position`, rc.ID, teacher).Scan(&position)
	if err != nil {
		return "", fmt.Errorf("publish report card: %w", err)
	}
	return fmt.Sprintf("teacher %d published report card %d of student %d (class %d): position %d",
		teacher, rc.ID, rc.StudentID, rc.ClassID, position), nil
}

func finalizeReportCard(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	rc, err := pickReportCard(ctx, tx, r, "published")
	if err != nil {
		return "", err
	}
	if err := emitActor(ctx, tx, adminID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "finalize report card",
		"UPDATE report_cards SET status = 'finalized', updated_by = $2 WHERE id = $1", rc.ID, int64(adminID)); err != nil {
		return "", err
	}
	return fmt.Sprintf("admin %d finalized report card %d of student %d (class %d)", adminID, rc.ID, rc.StudentID, rc.ClassID), nil
}

func revertReportCard(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	rc, err := pickReportCard(ctx, tx, r, "published")
	if err != nil {
		return "", err
	}
	teacher, err := teacherActs(ctx, tx, r, rc.ClassID)
	if err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "revert report card",
		"UPDATE report_cards SET status = 'draft', remarks = 'Corrected after a parent query.', updated_by = $2 WHERE id = $1",
		rc.ID, teacher); err != nil {
		return "", err
	}
	return fmt.Sprintf("teacher %d took report card %d of student %d (class %d) back to draft for a correction",
		teacher, rc.ID, rc.StudentID, rc.ClassID), nil
}

// -- Admissions ----------------------------------------------------------

// admitStudent creates a student's account and record, then enrols them in
// a class with room: two steps, as the admissions office does it.
func admitStudent(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	class, err := pickRow(ctx, tx, r, pgx.RowTo[int64], `
		SELECT c.id FROM classes c
		WHERE c.is_active AND (SELECT count(*) FROM students s WHERE s.class_id = c.id) < c.capacity
		ORDER BY c.id`)
	if err != nil {
		return "", err
	}
	var userID, studentID int64
	err = tx.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('users', 'id')), nextval(pg_get_serial_sequence('students', 'id'))`).
		Scan(&userID, &studentID)
	if err != nil {
		return "", fmt.Errorf("allocate ids: %w", err)
	}
	first, last := personName(r)
	now := time.Now()
	if err := emitActor(ctx, tx, adminID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "insert user",
		"INSERT INTO users (id, email, password_hash, first_name, last_name, role) VALUES ($1, $2, '!', $3, $4, 'student')",
		userID, fmt.Sprintf("student%d@students.treasurehome.school", userID), first, last); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "insert student",
		"INSERT INTO students (id, user_id, admission_number, date_of_birth) VALUES ($1, $2, $3, $4)",
		studentID, userID, fmt.Sprintf("TH/%d/%d", now.Year(), studentID), dateOfBirth(r, class, now)); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "enrol student",
		"UPDATE students SET class_id = $2 WHERE id = $1", studentID, class); err != nil {
		return "", err
	}
	return fmt.Sprintf("admin %d admitted %s %s as student %d (user %d) and enrolled them in class %d",
		adminID, first, last, studentID, userID, class), nil
}

// -- Recruitment ---------------------------------------------------------

func createVacancy(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	var open int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM vacancies WHERE status = 'open'").Scan(&open); err != nil {
		return "", fmt.Errorf("count open vacancies: %w", err)
	}
	if open >= maxOpenVacancies {
		return "", errNothingToDo
	}
	v := vacancies[r.IntN(len(vacancies))]
	if err := emitActor(ctx, tx, adminID); err != nil {
		return "", err
	}
	var id int64
	err := tx.QueryRow(ctx, `
		INSERT INTO vacancies (title, description, tags, deadline, created_by)
		VALUES ($1, $2, $3, current_date + 30, $4) RETURNING id`,
		v.title, "Treasure-Home is hiring: "+v.title+".", v.tags, int64(adminID)).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert vacancy: %w", err)
	}
	return fmt.Sprintf("admin %d opened vacancy %d: %s %v", adminID, id, v.title, v.tags), nil
}

func closeVacancy(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type post struct {
		ID    int64
		Title string
	}
	v, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[post], `
		SELECT v.id, v.title FROM vacancies v
		WHERE v.status = 'open' AND (SELECT count(*) FROM applications a WHERE a.vacancy_id = v.id) >= 2
		ORDER BY v.id`)
	if err != nil {
		return "", err
	}
	if err := emitActor(ctx, tx, adminID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "close vacancy", "UPDATE vacancies SET status = 'closed' WHERE id = $1", v.ID); err != nil {
		return "", err
	}
	return fmt.Sprintf("admin %d closed vacancy %d (%s)", adminID, v.ID, v.Title), nil
}

// submitApplication is an applicant on the public website: no actor.
func submitApplication(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type post struct {
		ID    int64
		Title string
	}
	v, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[post],
		"SELECT id, title FROM vacancies WHERE status = 'open' ORDER BY id")
	if err != nil {
		return "", err
	}
	first, last := personName(r)
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO applications (vacancy_id, full_name, email, phone, resume_url, cover_letter)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		v.ID, first+" "+last, fmt.Sprintf("%s.%s@example.com", first, last), fmt.Sprintf("+23480%08d", r.IntN(1e8)),
		"https://cv.example.com/"+first+"-"+last+".pdf", "I would love to join Treasure-Home.").Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert application: %w", err)
	}
	return fmt.Sprintf("applicant %s %s applied for vacancy %d (%s): application %d", first, last, v.ID, v.Title, id), nil
}

func reviewApplication(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type app struct {
		ID, VacancyID int64
		Status        string
	}
	a, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[app], `
		SELECT id, vacancy_id, status FROM applications
		WHERE status IN ('submitted', 'reviewing', 'shortlisted')
		ORDER BY id LIMIT $1`, candidateLimit)
	if err != nil {
		return "", err
	}
	next, ok := applicationNext(r, a.Status)
	if !ok {
		return "", errNothingToDo
	}
	if err := emitActor(ctx, tx, adminID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "review application",
		"UPDATE applications SET status = $2, reviewed_by = $3 WHERE id = $1", a.ID, next, int64(adminID)); err != nil {
		return "", err
	}
	return fmt.Sprintf("admin %d moved application %d (vacancy %d): %s -> %s", adminID, a.ID, a.VacancyID, a.Status, next), nil
}

// -- Uploads -------------------------------------------------------------

// upload is a file being uploaded, with its uploader.
type upload struct {
	ID       string
	UserID   int64
	Role     string
	Filename string
	Progress int
}

// pickUpload picks an upload in one of statuses.
func pickUpload(ctx context.Context, tx pgx.Tx, r *rand.Rand, statuses ...string) (upload, error) {
	return pickRow(ctx, tx, r, pgx.RowToStructByPos[upload], `
		SELECT up.id::text, up.uploaded_by, u.role, up.filename, up.progress
		FROM uploads up JOIN users u ON u.id = up.uploaded_by
		WHERE up.status = ANY($1) ORDER BY up.created_at, up.id LIMIT $2`, statuses, candidateLimit)
}

func startUpload(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type uploader struct {
		ID   int64
		Role string
	}
	u, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[uploader],
		"SELECT id, role FROM users WHERE role IN ('teacher', 'student') AND is_active ORDER BY id")
	if err != nil {
		return "", err
	}
	name, mime, size := uploadFile(r, u.Role)
	if err := emitActor(ctx, tx, u.ID); err != nil {
		return "", err
	}
	var id string
	err = tx.QueryRow(ctx,
		"INSERT INTO uploads (uploaded_by, filename, mime_type, bytes) VALUES ($1, $2, $3, $4) RETURNING id::text",
		u.ID, name, mime, size).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert upload: %w", err)
	}
	return fmt.Sprintf("%s started uploading %s (%s)", who(u.Role, u.ID), name, sizeLabel(size)), nil
}

func progressUpload(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	u, err := pickUpload(ctx, tx, r, "started", "uploading")
	if err != nil {
		return "", err
	}
	if u.Progress >= 90 {
		return "", errNothingToDo
	}
	next := uploadStep(r, u.Progress)
	if err := exec(ctx, tx, "update upload progress",
		"UPDATE uploads SET status = 'uploading', progress = $2 WHERE id = $1::uuid", u.ID, next); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s's upload of %s is at %d%%", who(u.Role, u.UserID), u.Filename, next), nil
}

func finishUpload(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	u, err := pickUpload(ctx, tx, r, "uploading")
	if err != nil {
		return "", err
	}
	if r.IntN(7) == 0 {
		reason := uploadErrors[r.IntN(len(uploadErrors))]
		if err := exec(ctx, tx, "fail upload",
			"UPDATE uploads SET status = 'failed', error = $2 WHERE id = $1::uuid", u.ID, reason); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s's upload of %s failed at %d%%: %s", who(u.Role, u.UserID), u.Filename, u.Progress, reason), nil
	}
	if err := exec(ctx, tx, "complete upload",
		"UPDATE uploads SET status = 'completed', progress = 100 WHERE id = $1::uuid", u.ID); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s's upload of %s completed", who(u.Role, u.UserID), u.Filename), nil
}

// -- Notifications -------------------------------------------------------

// createNotification is the system notifying someone: no actor.
func createNotification(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type recipient struct {
		ID   int64
		Role string
	}
	u, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[recipient],
		"SELECT id, role FROM users WHERE role IN ('admin', 'teacher', 'student', 'parent') AND is_active ORDER BY id")
	if err != nil {
		return "", err
	}
	options := notices[u.Role]
	n := options[r.IntN(len(options))]
	var id int64
	err = tx.QueryRow(ctx,
		"INSERT INTO notifications (user_id, title, body, link) VALUES ($1, $2, $3, $4) RETURNING id",
		u.ID, n.title, n.title+".", n.link).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert notification: %w", err)
	}
	return fmt.Sprintf("notified %s: %q (notification %d)", who(u.Role, u.ID), n.title, id), nil
}

func readNotification(ctx context.Context, tx pgx.Tx, r *rand.Rand) (string, error) {
	type unread struct {
		ID, UserID int64
		Role       string
	}
	n, err := pickRow(ctx, tx, r, pgx.RowToStructByPos[unread], `
		SELECT n.id, n.user_id, u.role FROM notifications n JOIN users u ON u.id = n.user_id
		WHERE NOT n.is_read ORDER BY n.id LIMIT $1`, candidateLimit)
	if err != nil {
		return "", err
	}
	if err := emitActor(ctx, tx, n.UserID); err != nil {
		return "", err
	}
	if err := exec(ctx, tx, "read notification", "UPDATE notifications SET is_read = true WHERE id = $1", n.ID); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s read notification %d", who(n.Role, n.UserID), n.ID), nil
}
