package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// The pure part of the simulation: grades, dates, status transitions and
// the names and texts the actions put into rows.

// gradeBands is the WAEC grading scale: the lowest percentage of each grade.
var gradeBands = []struct {
	min   float64
	grade string
}{
	{75, "A1"}, {70, "B2"}, {65, "B3"}, {60, "C4"}, {55, "C5"},
	{50, "C6"}, {45, "D7"}, {40, "E8"}, {0, "F9"},
}

// gradeFor returns the grade of a percentage score.
func gradeFor(pct float64) string {
	for _, b := range gradeBands {
		if pct >= b.min {
			return b.grade
		}
	}
	return "F9"
}

// scorePercent draws a plausible exam percentage: most students between 45
// and 80, a few failing or excelling; always within 0..100, in half marks.
func scorePercent(r *rand.Rand) float64 {
	p := 62 + 15*r.NormFloat64()
	p = math.Max(0, math.Min(100, p))
	return math.Round(p*2) / 2
}

// round2 rounds to two decimals, the scale of numeric(5,2) columns.
func round2(x float64) float64 {
	return math.Round(x*100) / 100
}

// maxTickProgress is the furthest an autosave tick takes a sitting: 100 is
// reached by submitting.
const maxTickProgress = 95

// progressStep returns the progress after one autosave tick: 5 to 25 points
// further, at most maxTickProgress, and never behind cur.
func progressStep(r *rand.Rand, cur int) int {
	next := cur + 5 + r.IntN(21)
	return max(cur, min(next, maxTickProgress))
}

// uploadStep returns an upload's progress after one more chunk: 10 to 40
// points further, at most 90 (completion sets 100).
func uploadStep(r *rand.Rand, cur int) int {
	return max(cur, min(cur+10+r.IntN(31), 90))
}

// schoolDay returns d, or the Monday after it when d falls on a weekend.
func schoolDay(d time.Time) time.Time {
	switch d.Weekday() {
	case time.Saturday:
		return d.AddDate(0, 0, 2)
	case time.Sunday:
		return d.AddDate(0, 0, 1)
	}
	return d
}

// nextSchoolDay returns the first weekday after d.
func nextSchoolDay(d time.Time) time.Time {
	return schoolDay(d.AddDate(0, 0, 1))
}

// attendanceStatuses are the statuses a teacher marks, by how common they are.
var attendanceStatuses = []weighted[string]{
	{"present", 80}, {"late", 8}, {"absent", 8}, {"excused", 4},
}

// attendanceNote is the note a teacher leaves with a status, or "" for none.
func attendanceNote(status string) string {
	switch status {
	case "late":
		return "arrived after assembly"
	case "absent":
		return "no message from home"
	case "excused":
		return "medical appointment"
	}
	return ""
}

// attendanceCorrection is how a marked status is later corrected: an
// absence excused by a parent's note, a present student found to have come
// late. ok is false for statuses that are not corrected.
func attendanceCorrection(status string) (next, note string, ok bool) {
	switch status {
	case "absent":
		return "excused", "parent sent a note", true
	case "present":
		return "late", "signed in late at the gate", true
	}
	return "", "", false
}

// applicationNext returns the status a reviewer moves an application to
// from cur, or ok false when cur is final.
func applicationNext(r *rand.Rand, cur string) (next string, ok bool) {
	switch cur {
	case "submitted":
		return "reviewing", true
	case "reviewing":
		return choose(r, []weighted[string]{{"shortlisted", 6}, {"rejected", 4}}), true
	case "shortlisted":
		return choose(r, []weighted[string]{{"hired", 3}, {"rejected", 7}}), true
	}
	return "", false
}

// roleLabel is how a line names a user of a role.
func roleLabel(role string) string {
	if role == "super_admin" {
		return "proprietor"
	}
	return role
}

// who names a user in a line. Lines name students by their student id
// elsewhere, so a student's user id says so.
func who(role string, userID int64) string {
	if role == "student" {
		return fmt.Sprintf("student user %d", userID)
	}
	return fmt.Sprintf("%s %d", roleLabel(role), userID)
}

// audience is how a line names an announcement's target_role (nil: all).
func audience(target *string) string {
	if target == nil {
		return "everyone"
	}
	return *target + "s"
}

var firstNames = []string{
	"Adaeze", "Babajide", "Chiamaka", "Damilola", "Efosa", "Folake", "Garba",
	"Habiba", "Ikechukwu", "Jumoke", "Kayode", "Lami", "Mobolaji", "Nkechi",
	"Olamide", "Precious", "Rotimi", "Simisola", "Temitope", "Uzoma",
	"Victoria", "Wuraola", "Yemisi", "Zubair",
}

var lastNames = []string{
	"Adekunle", "Bello", "Chukwuemeka", "Dike", "Ekwueme", "Fashola", "Gowon",
	"Ibekwe", "Lawal", "Nnadi", "Ogundipe", "Onuoha", "Salami", "Uchenna",
	"Yusuf",
}

// personName draws a first and last name.
func personName(r *rand.Rand) (first, last string) {
	return firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
}

// dateOfBirth draws a birthday fitting class id 1..6 (JSS 1 .. SS 3):
// JSS 1 pupils turn 11 this year.
func dateOfBirth(r *rand.Rand, classID int64, now time.Time) time.Time {
	age := 10 + int(min(max(classID, 1), 6))
	return time.Date(now.Year()-age, time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
}

// announcement is a text the school posts, with whom it is usually for
// (nil: everyone).
type announcement struct {
	title, body string
	target      *string
}

func role(s string) *string { return &s }

var announcements = []announcement{
	{"Inter-house sports on Friday", "All students in house colours by 8 a.m.", nil},
	{"Mid-term break", "School closes on Thursday and resumes on Monday.", nil},
	{"PTA meeting on Saturday", "Parents are invited to the hall at 10 a.m.", role("parent")},
	{"School fees reminder", "Second instalment is due before the end of the month.", role("parent")},
	{"Staff meeting after school", "All teaching staff in the staff room at 2:30 p.m.", role("teacher")},
	{"Submit lesson notes", "Lesson notes for next week are due on Friday.", role("teacher")},
	{"Library week", "Borrow two books and write a short review.", role("student")},
	{"Mock exam timetable", "The SS 3 mock timetable is on the notice board.", role("student")},
	{"Audit of admissions records", "Please review the admissions files before Monday.", role("admin")},
}

// vacancy is a staff position the school advertises.
type vacancy struct {
	title string
	tags  []string
}

var vacancies = []vacancy{
	{"Mathematics Teacher", []string{"teaching", "mathematics", "full-time"}},
	{"Physics Teacher", []string{"teaching", "science", "full-time"}},
	{"English Language Teacher", []string{"teaching", "languages"}},
	{"School Nurse", []string{"health", "full-time"}},
	{"ICT Instructor", []string{"teaching", "computing", "part-time"}},
	{"Bursar", []string{"administration", "finance"}},
}

// uploadFiles are files people upload, by role.
var uploadFiles = map[string][]struct{ name, mime string }{
	"teacher": {
		{"lesson-notes-week-%d.pdf", "application/pdf"},
		{"past-questions-%d.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
		{"lab-practical-%d.mp4", "video/mp4"},
	},
	"student": {
		{"assignment-%d.pdf", "application/pdf"},
		{"project-photo-%d.jpg", "image/jpeg"},
	},
}

// uploadFile draws a file name, type and size for a user of role.
func uploadFile(r *rand.Rand, role string) (name, mime string, size int64) {
	files := uploadFiles[role]
	if len(files) == 0 {
		files = uploadFiles["teacher"]
	}
	f := files[r.IntN(len(files))]
	return fmt.Sprintf(f.name, 1+r.IntN(12)), f.mime, int64(50_000 + r.IntN(20_000_000))
}

// uploadErrors are why uploads fail.
var uploadErrors = []string{"connection reset by peer", "file too large", "virus scan failed"}

// sizeLabel writes a byte count for people.
func sizeLabel(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1_000:
		return fmt.Sprintf("%d kB", n/1_000)
	}
	return fmt.Sprintf("%d B", n)
}

// notices are notifications sent to users, by role.
var notices = map[string][]struct{ title, link string }{
	"parent": {
		{"New exam result for your child", "/results"},
		{"Report card available", "/report-cards"},
		{"Attendance alert", "/attendance"},
	},
	"student": {
		{"New assignment posted", "/assignments"},
		{"Exam starts tomorrow", "/exams"},
	},
	"teacher": {
		{"Scripts waiting for grading", "/grading"},
		{"Timetable changed", "/timetable"},
	},
	"admin": {
		{"New job application", "/recruitment"},
	},
}
