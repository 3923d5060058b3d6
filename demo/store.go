package demo

import (
	"context"
	"errors"
	"time"
)

// errNotFound is returned by a store when the row asked for does not exist.
var errNotFound = errors.New("not found")

// store is what the handler reads. pgStore implements it on the school
// database; tests use a fake.
type store interface {
	// People lists who can sign in, for the picker.
	People(ctx context.Context) (*People, error)
	// User returns one user, or errNotFound.
	User(ctx context.Context, id int64) (*User, error)
	// Me returns the caller's own header data, or errNotFound.
	Me(ctx context.Context, id int64) (*Me, error)
	// Teacher returns a teacher's classes, exams, sittings and attendance.
	Teacher(ctx context.Context, id int64) (*TeacherView, error)
	// Student returns one student's record, or errNotFound.
	Student(ctx context.Context, studentID int64) (*StudentView, error)
	// Parent returns a parent and their children, or errNotFound.
	Parent(ctx context.Context, id int64) (*ParentView, error)
	// Admin returns school-wide counts and recent rows.
	Admin(ctx context.Context) (*AdminView, error)
	// Announcements returns the latest announcements for role (all of
	// them when all is true).
	Announcements(ctx context.Context, role string, all bool) ([]Announcement, error)
	// MayReadStudent tells whether user (not an admin) may read the
	// student: the student themself, a linked parent, or a teacher of the
	// student's class.
	MayReadStudent(ctx context.Context, user, studentID int64) (bool, error)
	// Names returns the names or titles of the ids asked for, by kind (the
	// keys of nameKinds); ids that do not exist are left out.
	Names(ctx context.Context, ids map[string][]int64) (Names, error)
}

// nameKinds are the kinds of GET /demo/api/names: the ids events carry
// (actors, student_id, exam_id, class_id, term_id, vacancy_id) whose
// names the activity feed shows.
var nameKinds = []string{"users", "students", "exams", "classes", "terms", "vacancies"}

// Names is GET /demo/api/names: for each kind asked for, id -> name (a
// person's full name; an exam's, vacancy's title; a class's, term's name).
type Names map[string]map[string]string

// User is one row of users, as the token endpoint needs it.
type User struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	IsActive bool   `json:"isActive"`
}

// ClassRef names a class.
type ClassRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// People is the sign-in picker's list, by role.
type People struct {
	Admins   []User           `json:"admins"`
	Teachers []TeacherSummary `json:"teachers"`
	Students []StudentSummary `json:"students"`
	Parents  []ParentSummary  `json:"parents"`
}

// TeacherSummary is a teacher and the classes they teach.
type TeacherSummary struct {
	ID      int64          `json:"id"`
	Name    string         `json:"name"`
	Classes []TeacherClass `json:"classes"`
}

// TeacherClass is a class a teacher teaches.
type TeacherClass struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Level       string `json:"level,omitempty"`
	FormTeacher bool   `json:"formTeacher"`
	Students    int64  `json:"students"`
}

// StudentSummary is a student and their class (nil when not enrolled).
type StudentSummary struct {
	ID              int64     `json:"id"`     // students.id
	UserID          int64     `json:"userId"` // users.id
	Name            string    `json:"name"`
	AdmissionNumber string    `json:"admissionNumber,omitempty"`
	Status          string    `json:"status,omitempty"`
	Class           *ClassRef `json:"class"`
}

// ParentSummary is a parent and their children.
type ParentSummary struct {
	ID       int64            `json:"id"`
	Name     string           `json:"name"`
	Children []StudentSummary `json:"children"`
}

// Me is the caller: who they are, their student record when they are a
// student, and their latest notifications.
type Me struct {
	ID            int64          `json:"id"`
	Name          string         `json:"name"`
	Role          string         `json:"role"`
	StudentID     *int64         `json:"studentId,omitempty"`
	Notifications []Notification `json:"notifications"`
	Unread        int64          `json:"unread"`
}

// Notification is one of the caller's notifications.
type Notification struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	IsRead    bool      `json:"isRead"`
	CreatedAt time.Time `json:"createdAt"`
}

// Exam is one exam with its sittings counted.
type Exam struct {
	ID        int64      `json:"id"`
	Title     string     `json:"title"`
	ClassID   int64      `json:"classId"`
	ClassName string     `json:"className"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"`
	StartsAt  *time.Time `json:"startsAt"`
	Sittings  int64      `json:"sittings"`
	Submitted int64      `json:"submitted"`
	UpdatedAt time.Time  `json:"updatedAt"`
}

// Session is one student's sitting of an exam, with the result once graded.
type Session struct {
	ID          int64      `json:"id"`
	ExamID      int64      `json:"examId"`
	ExamTitle   string     `json:"examTitle"`
	StudentID   int64      `json:"studentId"`
	StudentName string     `json:"studentName"`
	ClassID     int64      `json:"classId"`
	ClassName   string     `json:"className"`
	Status      string     `json:"status"`
	Progress    int64      `json:"progress"`
	StartedAt   time.Time  `json:"startedAt"`
	SubmittedAt *time.Time `json:"submittedAt"`
	Score       *float64   `json:"score"`
	Grade       *string    `json:"grade"`
	UpdatedAt   time.Time  `json:"updatedAt"`
}

// Mark is one attendance mark.
type Mark struct {
	ID          int64     `json:"id"`
	StudentID   int64     `json:"studentId"`
	StudentName string    `json:"studentName,omitempty"`
	ClassID     int64     `json:"classId"`
	Date        string    `json:"date"` // YYYY-MM-DD
	Status      string    `json:"status"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// AttendanceDay is the marks of one school day in a teacher's classes.
type AttendanceDay struct {
	Date    string         `json:"date"` // "" when nothing is marked yet
	Marks   []Mark         `json:"marks"`
	Classes []ClassTallies `json:"classes"`
}

// ClassTallies counts one class's marks of a day by status.
type ClassTallies struct {
	ClassID  int64            `json:"classId"`
	Name     string           `json:"name"`
	Students int64            `json:"students"`
	Counts   map[string]int64 `json:"counts"`
}

// TeacherView is GET /demo/api/teacher/{id}.
type TeacherView struct {
	Teacher    User           `json:"teacher"`
	Classes    []TeacherClass `json:"classes"`
	Exams      []Exam         `json:"exams"`
	Sessions   []Session      `json:"sessions"`
	Attendance AttendanceDay  `json:"attendance"`
}

// Result is one graded exam of a student.
type Result struct {
	ID        int64     `json:"id"`
	ExamID    int64     `json:"examId"`
	ExamTitle string    `json:"examTitle"`
	Subject   string    `json:"subject"`
	Score     float64   `json:"score"`
	Total     float64   `json:"total"`
	Grade     string    `json:"grade"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ReportCard is one term's report card of a student.
type ReportCard struct {
	ID        int64     `json:"id"`
	Term      string    `json:"term"`
	ClassName string    `json:"className"`
	Status    string    `json:"status"`
	Average   *float64  `json:"average"`
	Position  *int64    `json:"position"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// StudentView is GET /demo/api/student/{id}.
type StudentView struct {
	Student     StudentSummary   `json:"student"`
	Sessions    []Session        `json:"sessions"`
	Results     []Result         `json:"results"`
	Attendance  []Mark           `json:"attendance"`
	Tally       map[string]int64 `json:"attendanceTally"`
	ReportCards []ReportCard     `json:"reportCards"`
}

// ParentView is GET /demo/api/parent/{id}.
type ParentView struct {
	Parent   User             `json:"parent"`
	Children []StudentSummary `json:"children"`
}

// AdminUser is a row of the admin's user list.
type AdminUser struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	IsActive  bool      `json:"isActive"`
	CreatedAt time.Time `json:"createdAt"`
}

// AdminClass is a row of the admin's class list.
type AdminClass struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Level    string   `json:"level"`
	Capacity int64    `json:"capacity"`
	IsActive bool     `json:"isActive"`
	Students int64    `json:"students"`
	Teachers []string `json:"teachers"`
}

// AdminView is GET /demo/api/admin.
type AdminView struct {
	Counts   map[string]int64 `json:"counts"`
	Users    []AdminUser      `json:"users"`
	Students []StudentSummary `json:"students"`
	Exams    []Exam           `json:"exams"`
	Classes  []AdminClass     `json:"classes"`
}

// Announcement is one announcement, without its body.
type Announcement struct {
	ID         int64     `json:"id"`
	Title      string    `json:"title"`
	TargetRole *string   `json:"targetRole"`
	IsPinned   bool      `json:"isPinned"`
	CreatedAt  time.Time `json:"createdAt"`
}
