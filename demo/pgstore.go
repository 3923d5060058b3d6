package demo

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// DB is the part of a pgx pool the demo reads through; *pgxpool.Pool and
// *pgx.Conn have it.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgStore reads the example school's tables (migrations/001_school_schema.sql).
type pgStore struct{ db DB }

var _ store = pgStore{}

// List sizes: the dashboards show the latest rows, not whole tables.
const (
	maxPickerStudents = 500
	maxTeacherExams   = 30
	maxTeacherSitting = 50
	maxStudentRows    = 20
	maxAttendanceRows = 15
	maxAdminRows      = 20
	maxNotifications  = 10
	maxAnnouncements  = 15
)

const nameSQL = `u.first_name || ' ' || u.last_name`

// studentSQL selects a StudentSummary (scanStudent) from students s.
const studentSQL = `s.id, s.user_id, ` + nameSQL + `, s.admission_number, s.status, c.id, c.name
	FROM students s JOIN users u ON u.id = s.user_id LEFT JOIN classes c ON c.id = s.class_id`

// examSQL selects an Exam (scanExam) from exams e.
const examSQL = `e.id, e.title, e.class_id, c.name, sub.name, e.status, e.starts_at,
	(SELECT count(*) FROM exam_sessions x WHERE x.exam_id = e.id),
	(SELECT count(*) FROM exam_sessions x WHERE x.exam_id = e.id AND x.status <> 'in_progress'),
	e.updated_at
	FROM exams e JOIN classes c ON c.id = e.class_id JOIN subjects sub ON sub.id = e.subject_id`

// sessionSQL selects a Session (scanSession) from exam_sessions x.
const sessionSQL = `x.id, x.exam_id, e.title, x.student_id, ` + nameSQL + `, x.class_id, c.name,
	x.status, x.progress, x.started_at, x.submitted_at, r.score::float8, r.grade, x.updated_at
	FROM exam_sessions x
	JOIN exams e ON e.id = x.exam_id
	JOIN students s ON s.id = x.student_id
	JOIN users u ON u.id = s.user_id
	JOIN classes c ON c.id = x.class_id
	LEFT JOIN exam_results r ON r.exam_id = x.exam_id AND r.student_id = x.student_id`

// teacherClassesSQL is the ids of the classes teacher $1 teaches.
const teacherClassesSQL = `SELECT class_id FROM class_teachers WHERE teacher_id = $1`

func scanStudent(row pgx.CollectableRow, before ...any) (StudentSummary, error) {
	var (
		s         StudentSummary
		classID   *int64
		className *string
	)
	dest := append(before, &s.ID, &s.UserID, &s.Name, &s.AdmissionNumber, &s.Status, &classID, &className)
	if err := row.Scan(dest...); err != nil {
		return s, err
	}
	if classID != nil && className != nil {
		s.Class = &ClassRef{ID: *classID, Name: *className}
	}
	return s, nil
}

func scanExam(row pgx.CollectableRow) (Exam, error) {
	var e Exam
	err := row.Scan(&e.ID, &e.Title, &e.ClassID, &e.ClassName, &e.Subject, &e.Status, &e.StartsAt,
		&e.Sittings, &e.Submitted, &e.UpdatedAt)
	return e, err
}

func scanSession(row pgx.CollectableRow) (Session, error) {
	var x Session
	err := row.Scan(&x.ID, &x.ExamID, &x.ExamTitle, &x.StudentID, &x.StudentName, &x.ClassID, &x.ClassName,
		&x.Status, &x.Progress, &x.StartedAt, &x.SubmittedAt, &x.Score, &x.Grade, &x.UpdatedAt)
	return x, err
}

func scanMark(row pgx.CollectableRow) (Mark, error) {
	var m Mark
	err := row.Scan(&m.ID, &m.StudentID, &m.StudentName, &m.ClassID, &m.Date, &m.Status, &m.UpdatedAt)
	return m, err
}

func scanUser(row pgx.CollectableRow) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Name, &u.Role, &u.IsActive)
	return u, err
}

// collect runs a query and scans every row with fn; what names the query in
// errors.
func collect[T any](ctx context.Context, db DB, what string, fn pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, fn)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}

// queryRow scans one row; no row is errNotFound.
func queryRow(ctx context.Context, db DB, what, sql string, args []any, dest ...any) error {
	err := db.QueryRow(ctx, sql, args...).Scan(dest...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return errNotFound
	case err != nil:
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

func (p pgStore) People(ctx context.Context) (*People, error) {
	var out People
	var err error
	out.Admins, err = collect(ctx, p.db, "admins", scanUser,
		`SELECT u.id, `+nameSQL+`, u.role, u.is_active FROM users u
		WHERE u.role IN ('super_admin', 'admin') ORDER BY u.id`)
	if err != nil {
		return nil, err
	}
	out.Teachers, err = collect(ctx, p.db, "teachers", func(row pgx.CollectableRow) (TeacherSummary, error) {
		t := TeacherSummary{Classes: []TeacherClass{}}
		return t, row.Scan(&t.ID, &t.Name)
	}, `SELECT u.id, `+nameSQL+` FROM users u WHERE u.role = 'teacher' ORDER BY u.id`)
	if err != nil {
		return nil, err
	}
	type teaching struct {
		teacher int64
		class   TeacherClass
	}
	classes, err := collect(ctx, p.db, "class teachers", func(row pgx.CollectableRow) (teaching, error) {
		var t teaching
		err := row.Scan(&t.teacher, &t.class.ID, &t.class.Name, &t.class.Level, &t.class.FormTeacher, &t.class.Students)
		return t, err
	}, `SELECT ct.teacher_id, c.id, c.name, c.level, ct.is_form_teacher,
		(SELECT count(*) FROM students s WHERE s.class_id = c.id)
		FROM class_teachers ct JOIN classes c ON c.id = ct.class_id
		ORDER BY ct.teacher_id, ct.is_form_teacher DESC, c.id`)
	if err != nil {
		return nil, err
	}
	byTeacher := map[int64]*TeacherSummary{}
	for i := range out.Teachers {
		byTeacher[out.Teachers[i].ID] = &out.Teachers[i]
	}
	for _, t := range classes {
		if ts := byTeacher[t.teacher]; ts != nil {
			ts.Classes = append(ts.Classes, t.class)
		}
	}
	out.Students, err = collect(ctx, p.db, "students", func(row pgx.CollectableRow) (StudentSummary, error) {
		return scanStudent(row)
	}, `SELECT `+studentSQL+` ORDER BY s.id LIMIT $1`, maxPickerStudents)
	if err != nil {
		return nil, err
	}
	out.Parents, err = collect(ctx, p.db, "parents", func(row pgx.CollectableRow) (ParentSummary, error) {
		ps := ParentSummary{Children: []StudentSummary{}}
		return ps, row.Scan(&ps.ID, &ps.Name)
	}, `SELECT u.id, `+nameSQL+` FROM users u WHERE u.role = 'parent' ORDER BY u.id`)
	if err != nil {
		return nil, err
	}
	type child struct {
		parent int64
		s      StudentSummary
	}
	children, err := collect(ctx, p.db, "children", func(row pgx.CollectableRow) (child, error) {
		var c child
		var err error
		c.s, err = scanStudent(row, &c.parent)
		return c, err
	}, `SELECT ps.parent_id, `+studentSQL+` JOIN parent_students ps ON ps.student_id = s.id ORDER BY ps.parent_id, s.id`)
	if err != nil {
		return nil, err
	}
	byParent := map[int64]*ParentSummary{}
	for i := range out.Parents {
		byParent[out.Parents[i].ID] = &out.Parents[i]
	}
	for _, c := range children {
		if ps := byParent[c.parent]; ps != nil {
			ps.Children = append(ps.Children, c.s)
		}
	}
	return &out, nil
}

func (p pgStore) User(ctx context.Context, id int64) (*User, error) {
	var u User
	err := queryRow(ctx, p.db, "user", `SELECT u.id, `+nameSQL+`, u.role, u.is_active FROM users u WHERE u.id = $1`,
		[]any{id}, &u.ID, &u.Name, &u.Role, &u.IsActive)
	if err != nil {
		return nil, err
	}
	return &u, nil
}

func (p pgStore) Me(ctx context.Context, id int64) (*Me, error) {
	var me Me
	err := queryRow(ctx, p.db, "user", `SELECT u.id, `+nameSQL+`, u.role,
		(SELECT s.id FROM students s WHERE s.user_id = u.id),
		(SELECT count(*) FROM notifications n WHERE n.user_id = u.id AND NOT n.is_read)
		FROM users u WHERE u.id = $1`,
		[]any{id}, &me.ID, &me.Name, &me.Role, &me.StudentID, &me.Unread)
	if err != nil {
		return nil, err
	}
	me.Notifications, err = collect(ctx, p.db, "notifications", func(row pgx.CollectableRow) (Notification, error) {
		var n Notification
		return n, row.Scan(&n.ID, &n.Title, &n.IsRead, &n.CreatedAt)
	}, `SELECT id, title, is_read, created_at FROM notifications WHERE user_id = $1 ORDER BY id DESC LIMIT $2`,
		id, maxNotifications)
	if err != nil {
		return nil, err
	}
	return &me, nil
}

// userWithRole returns user id when they have role, else errNotFound.
func (p pgStore) userWithRole(ctx context.Context, id int64, role string) (*User, error) {
	u, err := p.User(ctx, id)
	if err != nil {
		return nil, err
	}
	if u.Role != role {
		return nil, errNotFound
	}
	return u, nil
}

func (p pgStore) Teacher(ctx context.Context, id int64) (*TeacherView, error) {
	u, err := p.userWithRole(ctx, id, "teacher")
	if err != nil {
		return nil, err
	}
	v := TeacherView{Teacher: *u}
	v.Classes, err = collect(ctx, p.db, "classes", func(row pgx.CollectableRow) (TeacherClass, error) {
		var c TeacherClass
		return c, row.Scan(&c.ID, &c.Name, &c.Level, &c.FormTeacher, &c.Students)
	}, `SELECT c.id, c.name, c.level, ct.is_form_teacher,
		(SELECT count(*) FROM students s WHERE s.class_id = c.id AND s.status = 'active')
		FROM class_teachers ct JOIN classes c ON c.id = ct.class_id
		WHERE ct.teacher_id = $1 ORDER BY ct.is_form_teacher DESC, c.id`, id)
	if err != nil {
		return nil, err
	}
	v.Exams, err = collect(ctx, p.db, "exams", scanExam, `SELECT `+examSQL+`
		WHERE e.class_id IN (`+teacherClassesSQL+`)
		ORDER BY (e.status = 'published') DESC, e.id DESC LIMIT $2`, id, maxTeacherExams)
	if err != nil {
		return nil, err
	}
	v.Sessions, err = collect(ctx, p.db, "exam sessions", scanSession, `SELECT `+sessionSQL+`
		WHERE x.class_id IN (`+teacherClassesSQL+`)
		ORDER BY x.id DESC LIMIT $2`, id, maxTeacherSitting)
	if err != nil {
		return nil, err
	}
	v.Attendance, err = p.attendanceDay(ctx, id, v.Classes)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// attendanceDay returns the marks of the latest day marked in the
// teacher's classes, counted per class.
func (p pgStore) attendanceDay(ctx context.Context, teacher int64, classes []TeacherClass) (AttendanceDay, error) {
	day := AttendanceDay{Marks: []Mark{}, Classes: make([]ClassTallies, 0, len(classes))}
	var date *string
	err := queryRow(ctx, p.db, "attendance day",
		`SELECT max(a.date)::text FROM attendance a WHERE a.class_id IN (`+teacherClassesSQL+`)`, []any{teacher}, &date)
	if err != nil {
		return day, err
	}
	if date != nil {
		day.Date = *date
		day.Marks, err = collect(ctx, p.db, "attendance", scanMark, `SELECT a.id, a.student_id, `+nameSQL+`,
			a.class_id, a.date::text, a.status, a.updated_at
			FROM attendance a JOIN students s ON s.id = a.student_id JOIN users u ON u.id = s.user_id
			WHERE a.date = $2::date AND a.class_id IN (`+teacherClassesSQL+`)
			ORDER BY a.id DESC`, teacher, *date)
		if err != nil {
			return day, err
		}
	}
	for _, c := range classes {
		t := ClassTallies{ClassID: c.ID, Name: c.Name, Students: c.Students, Counts: map[string]int64{}}
		for _, m := range day.Marks {
			if m.ClassID == c.ID {
				t.Counts[m.Status]++
			}
		}
		day.Classes = append(day.Classes, t)
	}
	return day, nil
}

func (p pgStore) Student(ctx context.Context, studentID int64) (*StudentView, error) {
	var v StudentView
	rows, err := p.db.Query(ctx, `SELECT `+studentSQL+` WHERE s.id = $1`, studentID)
	if err != nil {
		return nil, fmt.Errorf("query student: %w", err)
	}
	v.Student, err = pgx.CollectOneRow(rows, func(row pgx.CollectableRow) (StudentSummary, error) { return scanStudent(row) })
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, errNotFound
	case err != nil:
		return nil, fmt.Errorf("read student: %w", err)
	}
	v.Sessions, err = collect(ctx, p.db, "exam sessions", scanSession, `SELECT `+sessionSQL+`
		WHERE x.student_id = $1 ORDER BY x.id DESC LIMIT $2`, studentID, maxStudentRows)
	if err != nil {
		return nil, err
	}
	v.Results, err = collect(ctx, p.db, "results", func(row pgx.CollectableRow) (Result, error) {
		var r Result
		return r, row.Scan(&r.ID, &r.ExamID, &r.ExamTitle, &r.Subject, &r.Score, &r.Total, &r.Grade, &r.UpdatedAt)
	}, `SELECT r.id, r.exam_id, e.title, sub.name, r.score::float8, e.total_marks::float8, r.grade, r.updated_at
		FROM exam_results r JOIN exams e ON e.id = r.exam_id JOIN subjects sub ON sub.id = e.subject_id
		WHERE r.student_id = $1 ORDER BY r.id DESC LIMIT $2`, studentID, maxStudentRows)
	if err != nil {
		return nil, err
	}
	v.Attendance, err = collect(ctx, p.db, "attendance", scanMark, `SELECT a.id, a.student_id, '', a.class_id,
		a.date::text, a.status, a.updated_at FROM attendance a
		WHERE a.student_id = $1 ORDER BY a.date DESC LIMIT $2`, studentID, maxAttendanceRows)
	if err != nil {
		return nil, err
	}
	type tally struct {
		status string
		n      int64
	}
	tallies, err := collect(ctx, p.db, "attendance tally", func(row pgx.CollectableRow) (tally, error) {
		var t tally
		return t, row.Scan(&t.status, &t.n)
	}, `SELECT status, count(*) FROM attendance WHERE student_id = $1 GROUP BY status`, studentID)
	if err != nil {
		return nil, err
	}
	v.Tally = map[string]int64{"present": 0, "absent": 0, "late": 0, "excused": 0}
	for _, t := range tallies {
		v.Tally[t.status] = t.n
	}
	v.ReportCards, err = collect(ctx, p.db, "report cards", func(row pgx.CollectableRow) (ReportCard, error) {
		var r ReportCard
		return r, row.Scan(&r.ID, &r.Term, &r.ClassName, &r.Status, &r.Average, &r.Position, &r.UpdatedAt)
	}, `SELECT rc.id, t.name || ' ' || t.session, c.name, rc.status, rc.average::float8, rc.position, rc.updated_at
		FROM report_cards rc JOIN academic_terms t ON t.id = rc.term_id JOIN classes c ON c.id = rc.class_id
		WHERE rc.student_id = $1 ORDER BY rc.term_id DESC, rc.id DESC`, studentID)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func (p pgStore) Parent(ctx context.Context, id int64) (*ParentView, error) {
	u, err := p.userWithRole(ctx, id, "parent")
	if err != nil {
		return nil, err
	}
	v := ParentView{Parent: *u}
	v.Children, err = collect(ctx, p.db, "children", func(row pgx.CollectableRow) (StudentSummary, error) {
		return scanStudent(row)
	}, `SELECT `+studentSQL+` JOIN parent_students ps ON ps.student_id = s.id
		WHERE ps.parent_id = $1 ORDER BY s.id`, id)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// adminCounts are the keys of AdminView.Counts, in the order of countsSQL.
var adminCounts = []string{
	"users", "teachers", "students", "parents", "classes", "exams", "examsPublished",
	"examSessions", "sittingsInProgress", "examResults", "attendance", "reportCards", "announcements",
}

const countsSQL = `SELECT
	(SELECT count(*) FROM users),
	(SELECT count(*) FROM users WHERE role = 'teacher'),
	(SELECT count(*) FROM students),
	(SELECT count(*) FROM users WHERE role = 'parent'),
	(SELECT count(*) FROM classes),
	(SELECT count(*) FROM exams),
	(SELECT count(*) FROM exams WHERE status = 'published'),
	(SELECT count(*) FROM exam_sessions),
	(SELECT count(*) FROM exam_sessions WHERE status = 'in_progress'),
	(SELECT count(*) FROM exam_results),
	(SELECT count(*) FROM attendance),
	(SELECT count(*) FROM report_cards),
	(SELECT count(*) FROM announcements)`

func (p pgStore) Admin(ctx context.Context) (*AdminView, error) {
	v := AdminView{Counts: map[string]int64{}}
	counts := make([]int64, len(adminCounts))
	dest := make([]any, len(counts))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := queryRow(ctx, p.db, "counts", countsSQL, nil, dest...); err != nil {
		return nil, err
	}
	for i, k := range adminCounts {
		v.Counts[k] = counts[i]
	}
	var err error
	v.Users, err = collect(ctx, p.db, "users", func(row pgx.CollectableRow) (AdminUser, error) {
		var u AdminUser
		return u, row.Scan(&u.ID, &u.Name, &u.Role, &u.IsActive, &u.CreatedAt)
	}, `SELECT u.id, `+nameSQL+`, u.role, u.is_active, u.created_at FROM users u ORDER BY u.id DESC LIMIT $1`, maxAdminRows)
	if err != nil {
		return nil, err
	}
	v.Students, err = collect(ctx, p.db, "students", func(row pgx.CollectableRow) (StudentSummary, error) {
		return scanStudent(row)
	}, `SELECT `+studentSQL+` ORDER BY s.id DESC LIMIT $1`, maxAdminRows)
	if err != nil {
		return nil, err
	}
	v.Exams, err = collect(ctx, p.db, "exams", scanExam, `SELECT `+examSQL+` ORDER BY e.id DESC LIMIT $1`, maxAdminRows)
	if err != nil {
		return nil, err
	}
	v.Classes, err = collect(ctx, p.db, "classes", func(row pgx.CollectableRow) (AdminClass, error) {
		var c AdminClass
		return c, row.Scan(&c.ID, &c.Name, &c.Level, &c.Capacity, &c.IsActive, &c.Students, &c.Teachers)
	}, `SELECT c.id, c.name, c.level, c.capacity, c.is_active,
		(SELECT count(*) FROM students s WHERE s.class_id = c.id),
		ARRAY(SELECT `+nameSQL+` FROM class_teachers ct JOIN users u ON u.id = ct.teacher_id
		      WHERE ct.class_id = c.id ORDER BY ct.is_form_teacher DESC, u.id)
		FROM classes c ORDER BY c.id`)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func (p pgStore) Announcements(ctx context.Context, role string, all bool) ([]Announcement, error) {
	return collect(ctx, p.db, "announcements", func(row pgx.CollectableRow) (Announcement, error) {
		var a Announcement
		return a, row.Scan(&a.ID, &a.Title, &a.TargetRole, &a.IsPinned, &a.CreatedAt)
	}, `SELECT id, title, target_role, is_pinned, created_at FROM announcements
		WHERE $2 OR target_role IS NULL OR target_role = $1
		ORDER BY is_pinned DESC, id DESC LIMIT $3`, role, all, maxAnnouncements)
}

func (p pgStore) MayReadStudent(ctx context.Context, user, studentID int64) (bool, error) {
	var ok bool
	err := queryRow(ctx, p.db, "student access", `SELECT
		EXISTS (SELECT 1 FROM students WHERE id = $2 AND user_id = $1)
		OR EXISTS (SELECT 1 FROM parent_students WHERE student_id = $2 AND parent_id = $1)
		OR EXISTS (SELECT 1 FROM students s JOIN class_teachers ct ON ct.class_id = s.class_id
		           WHERE s.id = $2 AND ct.teacher_id = $1)`, []any{user, studentID}, &ok)
	return ok, err
}

// nameSQLs select (id, name) of the ids $1, by kind (nameKinds).
var nameSQLs = map[string]string{
	"users":     `SELECT u.id, ` + nameSQL + ` FROM users u WHERE u.id = ANY($1)`,
	"students":  `SELECT s.id, ` + nameSQL + ` FROM students s JOIN users u ON u.id = s.user_id WHERE s.id = ANY($1)`,
	"exams":     `SELECT id, title FROM exams WHERE id = ANY($1)`,
	"classes":   `SELECT id, name FROM classes WHERE id = ANY($1)`,
	"terms":     `SELECT id, name || ' ' || session FROM academic_terms WHERE id = ANY($1)`,
	"vacancies": `SELECT id, title FROM vacancies WHERE id = ANY($1)`,
}

func (p pgStore) Names(ctx context.Context, ids map[string][]int64) (Names, error) {
	type named struct {
		id   int64
		name string
	}
	out := Names{}
	for _, kind := range nameKinds {
		want := ids[kind]
		if len(want) == 0 {
			continue
		}
		rows, err := collect(ctx, p.db, kind+" names", func(row pgx.CollectableRow) (named, error) {
			var n named
			return n, row.Scan(&n.id, &n.name)
		}, nameSQLs[kind], want)
		if err != nil {
			return nil, err
		}
		m := make(map[string]string, len(rows))
		for _, n := range rows {
			m[strconv.FormatInt(n.id, 10)] = n.name
		}
		out[kind] = m
	}
	return out, nil
}
