package main

import (
	"errors"
	"flag"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

func TestPickWeighted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
		allowed []int // indexes that may come out; nil: only -1
	}{
		{"empty", nil, nil},
		{"all zero", []int{0, 0, 0}, nil},
		{"negative counts as zero", []int{-5, 0}, nil},
		{"single", []int{3}, []int{0}},
		{"zeros are skipped", []int{0, 2, 0, 1, -1}, []int{1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRand(1)
			for range 1000 {
				got := pickWeighted(r, tt.weights)
				if tt.allowed == nil {
					if got != -1 {
						t.Fatalf("pickWeighted(%v) = %d, want -1", tt.weights, got)
					}
					continue
				}
				if !slices.Contains(tt.allowed, got) {
					t.Fatalf("pickWeighted(%v) = %d, want one of %v", tt.weights, got, tt.allowed)
				}
			}
		})
	}
}

func TestPickWeightedDistribution(t *testing.T) {
	t.Parallel()
	weights := []int{1, 0, 3, 6}
	const n = 100_000
	counts := make([]int, len(weights))
	r := newRand(7)
	for range n {
		counts[pickWeighted(r, weights)]++
	}
	for i, w := range weights {
		want := float64(n) * float64(w) / 10
		if math.Abs(float64(counts[i])-want) > 0.02*n {
			t.Errorf("index %d (weight %d): %d draws, want about %.0f", i, w, counts[i], want)
		}
	}
}

// The same seed gives the same sequence of actions, another seed another.
func TestActionSequenceDeterministic(t *testing.T) {
	t.Parallel()
	sequence := func(seed uint64) []string {
		s := newSim(nil, seed, io.Discard, nil)
		var names []string
		for range 50 {
			names = append(names, s.actions[pickWeighted(s.rng, s.weights)].name)
		}
		return names
	}
	a, b, c := sequence(42), sequence(42), sequence(43)
	if !slices.Equal(a, b) {
		t.Errorf("seed 42 twice gave different sequences:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same sequence %v", a)
	}
}

func TestChoose(t *testing.T) {
	t.Parallel()
	r := newRand(3)
	seen := map[string]int{}
	for range 10_000 {
		seen[choose(r, attendanceStatuses)]++
	}
	for _, s := range attendanceStatuses {
		if seen[s.v] == 0 {
			t.Errorf("status %q never chosen", s.v)
		}
	}
	if seen["present"] < seen["late"]+seen["absent"]+seen["excused"] {
		t.Errorf("present should dominate: %v", seen)
	}
}

func TestActionsTable(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, a := range actions {
		t.Run(a.name, func(t *testing.T) {
			if names[a.name] {
				t.Errorf("duplicate action name")
			}
			names[a.name] = true
			if a.weight <= 0 {
				t.Errorf("weight %d: never chosen", a.weight)
			}
			if a.run == nil {
				t.Errorf("no run function")
			}
			if !strings.Contains(a.name, ".") {
				t.Errorf("name should be <thing>.<verb>")
			}
		})
	}
}

func TestGradeFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pct  float64
		want string
	}{
		{100, "A1"}, {75, "A1"}, {74.99, "B2"}, {70, "B2"}, {65, "B3"}, {60, "C4"},
		{55, "C5"}, {50, "C6"}, {45, "D7"}, {40, "E8"}, {39.5, "F9"}, {0, "F9"}, {-1, "F9"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := gradeFor(tt.pct); got != tt.want {
				t.Errorf("gradeFor(%v) = %q, want %q", tt.pct, got, tt.want)
			}
		})
	}
}

func TestScorePercent(t *testing.T) {
	t.Parallel()
	r := newRand(5)
	for range 10_000 {
		p := scorePercent(r)
		if p < 0 || p > 100 || p*2 != math.Trunc(p*2) {
			t.Fatalf("scorePercent = %v, want 0..100 in half marks", p)
		}
	}
}

func TestProgressSteps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		step func(*rand.Rand, int) int
		max  int
	}{
		{"exam autosave", progressStep, maxTickProgress},
		{"upload chunk", uploadStep, 90},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRand(9)
			for cur := 0; cur <= 100; cur++ {
				next := tt.step(r, cur)
				if next < cur || next > max(cur, tt.max) {
					t.Fatalf("step(%d) = %d, want %d..%d", cur, next, cur, max(cur, tt.max))
				}
				if cur < tt.max && next == cur {
					t.Fatalf("step(%d) made no progress", cur)
				}
			}
		})
	}
}

func TestSchoolDays(t *testing.T) {
	t.Parallel()
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name, in, same, next string
	}{
		{"monday", "2025-11-03", "2025-11-03", "2025-11-04"},
		{"friday", "2025-11-07", "2025-11-07", "2025-11-10"},
		{"saturday", "2025-11-08", "2025-11-10", "2025-11-10"},
		{"sunday", "2025-11-09", "2025-11-10", "2025-11-10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := schoolDay(day(tt.in)).Format(time.DateOnly); got != tt.same {
				t.Errorf("schoolDay(%s) = %s, want %s", tt.in, got, tt.same)
			}
			if got := nextSchoolDay(day(tt.in)).Format(time.DateOnly); got != tt.next {
				t.Errorf("nextSchoolDay(%s) = %s, want %s", tt.in, got, tt.next)
			}
		})
	}
}

// The statuses written must pass the schema's CHECK constraints.
func TestStatusesFitSchema(t *testing.T) {
	t.Parallel()
	attendanceCheck := []string{"present", "absent", "late", "excused"}
	for _, s := range attendanceStatuses {
		if !slices.Contains(attendanceCheck, s.v) {
			t.Errorf("attendance status %q not allowed by the schema", s.v)
		}
		if next, _, ok := attendanceCorrection(s.v); ok && !slices.Contains(attendanceCheck, next) {
			t.Errorf("correction of %q to %q not allowed by the schema", s.v, next)
		}
	}

	applicationCheck := []string{"submitted", "reviewing", "shortlisted", "rejected", "hired"}
	r := newRand(11)
	for _, from := range applicationCheck {
		for range 100 {
			next, ok := applicationNext(r, from)
			final := from == "rejected" || from == "hired"
			if ok == final {
				t.Fatalf("applicationNext(%q) ok = %v, want %v", from, ok, !final)
			}
			if ok && (!slices.Contains(applicationCheck, next) || next == from) {
				t.Fatalf("applicationNext(%q) = %q", from, next)
			}
		}
	}

	roleCheck := []string{"admin", "teacher", "student", "parent"}
	for _, a := range announcements {
		if a.target != nil && !slices.Contains(roleCheck, *a.target) {
			t.Errorf("announcement %q: target_role %q not allowed", a.title, *a.target)
		}
	}
	for _, role := range roleCheck { // createNotification's recipients
		if len(notices[role]) == 0 {
			t.Errorf("no notification text for role %q", role)
		}
	}
}

func TestDateOfBirth(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	r := newRand(13)
	for class := int64(0); class <= 7; class++ {
		dob := dateOfBirth(r, class, now)
		age := now.Year() - dob.Year()
		if age < 11 || age > 16 {
			t.Errorf("class %d: born %s, age %d", class, dob.Format(time.DateOnly), age)
		}
	}
}

func TestSizeLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int64
		want string
	}{{512, "512 B"}, {51_200, "51 kB"}, {4_300_000, "4.3 MB"}}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := sizeLabel(tt.n); got != tt.want {
				t.Errorf("sizeLabel(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	t.Parallel()
	const db = "postgres://postgres@127.0.0.1:5432/school"
	tests := []struct {
		name    string
		args    []string
		want    options // Seed checked apart
		wantErr string
	}{
		{"defaults", []string{"-db", db}, options{DB: db, Rate: 2}, ""},
		{"all flags", []string{"-db", db, "-rate", "0.5", "-duration", "20s", "-seed", "9"},
			options{DB: db, Rate: 0.5, Duration: 20 * time.Second, Seed: 9}, ""},
		{"no db", nil, options{}, "-db is required"},
		{"zero rate", []string{"-db", db, "-rate", "0"}, options{}, "-rate 0"},
		{"huge rate", []string{"-db", db, "-rate", "1e6"}, options{}, "-rate 1e+06"},
		{"negative duration", []string{"-db", db, "-duration", "-1s"}, options{}, "-duration -1s"},
		{"extra argument", []string{"-db", db, "now"}, options{}, "unexpected arguments"},
		{"unknown flag", []string{"-db", db, "-fast"}, options{}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseOptions(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Seed == 0 {
				t.Error("seed 0 was not replaced by a clock seed")
			}
			if tt.want.Seed == 0 {
				got.Seed = 0
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseOptionsHelp(t *testing.T) {
	t.Parallel()
	if _, err := parseOptions([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	st := stats{}
	st.count("exam.start", outcomeOK)
	st.count("exam.start", outcomeOK)
	st.count("exam.close", outcomeSkipped)
	st.count("attendance.mark", outcomeFailed)
	var b strings.Builder
	st.write(&b)
	out := b.String()
	if !strings.HasPrefix(out, "school-sim: 2 actions done, 1 failed, 1 found nothing to do\n") {
		t.Errorf("summary:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
	if len(lines) != 3 || !strings.Contains(lines[0], "attendance.mark") || !strings.Contains(lines[2], "exam.start") {
		t.Errorf("per-action lines not sorted by name:\n%s", out)
	}
}

func TestWho(t *testing.T) {
	t.Parallel()
	tests := []struct {
		role string
		id   int64
		want string
	}{
		{"student", 106, "student user 106"},
		{"teacher", 11, "teacher 11"},
		{"parent", 204, "parent 204"},
		{"super_admin", 1, "proprietor 1"},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			t.Parallel()
			if got := who(tt.role, tt.id); got != tt.want {
				t.Errorf("who(%q, %d) = %q, want %q", tt.role, tt.id, got, tt.want)
			}
		})
	}
}
