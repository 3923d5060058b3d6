package acl

import (
	"context"
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/treasure-home/cdc-broadcaster/config"
)

// Real-Postgres coverage of sql rules (the queries of config.example.yaml
// against migrations/001_school_schema.sql) lives in the integration
// tests; here a fake Querier checks placeholder translation, argument
// passing and the answer cache.

// fakeDB answers queries with answer and records every call.
type fakeDB struct {
	mu     sync.Mutex
	calls  []fakeCall
	answer func(sql string, args []any) (found bool, err error)
	// lateErr, when set, comes from rows.Err instead of Query, as pgx
	// reports most server errors.
	lateErr bool
}

type fakeCall struct {
	SQL  string
	Args []any
}

func (f *fakeDB) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{SQL: sql, Args: args})
	answer := f.answer
	f.mu.Unlock()
	found, err := false, error(nil)
	if answer != nil {
		found, err = answer(sql, args)
	}
	if err != nil && !f.lateErr {
		return nil, err
	}
	return &fakeRows{left: map[bool]int{true: 1}[found], err: err}, nil
}

func (f *fakeDB) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// fakeRows is a result of left rows, or of the error err.
type fakeRows struct {
	left   int
	err    error
	closed bool
}

func (r *fakeRows) Close() { r.closed = true }
func (r *fakeRows) Err() error {
	if r.closed || r.left == 0 {
		return r.err
	}
	return nil
}
func (r *fakeRows) CommandTag() pgconn.CommandTag { return pgconn.CommandTag{} }
func (r *fakeRows) FieldDescriptions() []pgconn.FieldDescription {
	return nil
}
func (r *fakeRows) Next() bool {
	if r.err != nil || r.closed || r.left == 0 {
		return false
	}
	r.left--
	return true
}
func (r *fakeRows) Scan(...any) error      { return nil }
func (r *fakeRows) Values() ([]any, error) { return []any{int32(1)}, nil }
func (r *fakeRows) RawValues() [][]byte    { return [][]byte{[]byte("1")} }
func (r *fakeRows) TypeMap() *pgtype.Map   { return nil }
func (r *fakeRows) Conn() *pgx.Conn        { return nil }

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testAuth() config.Auth {
	return config.Auth{AdminRoles: []string{"admin", "super_admin"}, ACLCacheTTL: time.Minute}
}

// loadExample reads the channels of the project's config.example.yaml, as
// the loader hands them over (params anchored).
func loadExample(t testing.TB) *config.Config {
	t.Helper()
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data, "config.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testChannels are the example config's channels plus patterns with
// several params and with params whose regexps need care.
func testChannels(t testing.TB) []config.Channel {
	t.Helper()
	chs := loadExample(t).Channels
	return append(chs,
		config.Channel{
			Pattern:   "exam:{examId}:student:{studentId}",
			Params:    map[string]string{"examId": "^[0-9]{1,18}$"},
			Allow:     []config.AllowRule{{Self: "studentId"}, {Roles: []string{"teacher"}, When: "claims.school == 3"}},
			RecheckOn: []string{"public.exams", "students"},
		},
		config.Channel{
			Pattern: "pair:{a}:{b}",
			Params:  map[string]string{"a": "^[0-9:]+$", "b": "^[a-z]+$"},
			Allow:   []config.AllowRule{{Roles: []string{"admin"}}},
		},
		config.Channel{
			Pattern: "alt:{z}",
			Params:  map[string]string{"z": "^(?:^a|b$)$"},
			Allow:   []config.AllowRule{{Roles: []string{"admin"}}},
		},
		config.Channel{
			Pattern: "grade:{g}",
			Params:  map[string]string{"g": "^[0-9]+$"},
			Allow:   []config.AllowRule{{Claim: map[string]string{"grade": "{g}"}}, {Claim: map[string]string{"groups": "grade-{g}", "role": "student"}}},
		},
		config.Channel{
			Pattern: "staff",
			Allow: []config.AllowRule{
				{When: "'staff' in claims && claims.staff == true"},
				{Roles: []string{"teacher"}, When: "params.size() == 0 && claims.school == 3"},
			},
		},
	)
}

func newTestRules(t testing.TB, db Querier, opts RulesOptions) *Rules {
	t.Helper()
	r, err := NewRules(testChannels(t), testAuth(), db, opts)
	if err != nil {
		t.Fatalf("NewRules: %v", err)
	}
	return r
}

func TestResolve(t *testing.T) {
	t.Parallel()
	r := newTestRules(t, &fakeDB{}, RulesOptions{})
	for _, tc := range []struct {
		name    string
		channel string
		pattern string
		params  map[string]string
		err     error
		errText string
	}{
		{name: "user", channel: "user:19", pattern: "user:{userId}", params: map[string]string{"userId": "19"}},
		{name: "class", channel: "class:42", pattern: "class:{classId}", params: map[string]string{"classId": "42"}},
		{name: "literal", channel: "school", pattern: "school", params: map[string]string{}},
		{name: "role", channel: "role:teacher", pattern: "role:{role}", params: map[string]string{"role": "teacher"}},
		{name: "two params", channel: "exam:7:student:9", pattern: "exam:{examId}:student:{studentId}", params: map[string]string{"examId": "7", "studentId": "9"}},
		{name: "param with colons", channel: "pair:1:2:x", pattern: "pair:{a}:{b}", params: map[string]string{"a": "1:2", "b": "x"}},
		{name: "inner anchors a", channel: "alt:a", pattern: "alt:{z}", params: map[string]string{"z": "a"}},
		{name: "inner anchors b", channel: "alt:b", pattern: "alt:{z}", params: map[string]string{"z": "b"}},
		{name: "default regexp", channel: "exam:7:student:a.b-C_9", pattern: "exam:{examId}:student:{studentId}", params: map[string]string{"examId": "7", "studentId": "a.b-C_9"}},

		{name: "unknown prefix", channel: "teacher:19", err: ErrUnknownChannel},
		{name: "empty", channel: "", err: ErrUnknownChannel},
		{name: "literal plus suffix", channel: "schools", err: ErrUnknownChannel},
		{name: "literal case", channel: "School", err: ErrUnknownChannel},
		{name: "no separator", channel: "class42", err: ErrUnknownChannel},

		{name: "user not numeric", channel: "user:abc", err: ErrInvalidChannel, errText: "param userId"},
		{name: "empty param", channel: "class:", err: ErrInvalidChannel, errText: "param classId"},
		{name: "too long", channel: "class:1234567890123456789", err: ErrInvalidChannel},
		{name: "unknown role", channel: "role:janitor", err: ErrInvalidChannel, errText: "param role"},
		{name: "sql quote", channel: "class:1' OR '1'='1", err: ErrInvalidChannel},
		{name: "sql statement", channel: "class:1;DROP TABLE x", err: ErrInvalidChannel},
		{name: "sql comment", channel: "class:1--", err: ErrInvalidChannel},
		{name: "newline", channel: "class:42\n", err: ErrInvalidChannel},
		{name: "newline before", channel: "class:\n42", err: ErrInvalidChannel},
		{name: "nul", channel: "class:4\x002", err: ErrInvalidChannel},
		{name: "unicode digits", channel: "class:٤٢", err: ErrInvalidChannel},
		{name: "space", channel: "class: 42", err: ErrInvalidChannel},
		{name: "extra segment", channel: "exam:7:student:9:student:3", err: ErrInvalidChannel, errText: "param studentId"},
		{name: "first of two params bad", channel: "exam:x:student:9", err: ErrInvalidChannel, errText: "param examId"},
		{name: "default regexp refuses quote", channel: "exam:7:student:9'", err: ErrInvalidChannel},
		{name: "inner anchors ab", channel: "alt:ab", err: ErrInvalidChannel},
		{name: "table upper case", channel: "table:Exams", err: ErrInvalidChannel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := r.Resolve(tc.channel)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Resolve(%q) = %+v, %v; want %v", tc.channel, ch, err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.errText) {
					t.Errorf("error %q, want it to name %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tc.channel, err)
			}
			if ch.Name != tc.channel || ch.Pattern != tc.pattern || !reflect.DeepEqual(ch.Params, tc.params) {
				t.Errorf("Resolve(%q) = %q %q %v; want %q %v", tc.channel, ch.Name, ch.Pattern, ch.Params, tc.pattern, tc.params)
			}
		})
	}
}

func TestResolveFirstFitWins(t *testing.T) {
	t.Parallel()
	allow := []config.AllowRule{{Roles: []string{"admin"}}}
	r, err := NewRules([]config.Channel{
		{Pattern: "x:{id}", Params: map[string]string{"id": "^[0-9]+$"}, Allow: allow},
		{Pattern: "x:{name}", Params: map[string]string{"name": "^[a-z]+$"}, Allow: allow},
		{Pattern: "x:{any}", Params: map[string]string{"any": "^[a-z0-9]+$"}, Allow: allow},
	}, testAuth(), nil, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, channel, pattern string }{
		{"digits", "x:12", "x:{id}"},
		{"letters skip the first", "x:ab", "x:{name}"},
		{"mixed to the third", "x:a1", "x:{any}"},
		{"none fits", "x:!", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := r.Resolve(tc.channel)
			if tc.pattern == "" {
				if !errors.Is(err, ErrInvalidChannel) {
					t.Fatalf("err = %v, want ErrInvalidChannel", err)
				}
				if !strings.Contains(err.Error(), "param id") {
					t.Errorf("error %q should name the first pattern's param", err)
				}
				return
			}
			if err != nil || ch.Pattern != tc.pattern {
				t.Fatalf("Resolve = %+v, %v; want pattern %q", ch, err, tc.pattern)
			}
		})
	}
}

func TestAllowedWithoutSQL(t *testing.T) {
	t.Parallel()
	db := &fakeDB{}
	r := newTestRules(t, db, RulesOptions{})
	claims := func(user, role string, all map[string]any) *Claims {
		if all == nil {
			all = map[string]any{}
		}
		all["sub"] = user
		return &Claims{UserID: user, Role: role, All: all}
	}
	for _, tc := range []struct {
		name    string
		claims  *Claims
		channel string
		want    bool
	}{
		{name: "self", claims: claims("19", "teacher", nil), channel: "user:19", want: true},
		{name: "someone else", claims: claims("19", "teacher", nil), channel: "user:20"},
		{name: "admin reads any user", claims: claims("1", "admin", nil), channel: "user:20", want: true},
		{name: "own role", claims: claims("19", "teacher", map[string]any{"role": "teacher"}), channel: "role:teacher", want: true},
		{name: "other role", claims: claims("19", "teacher", map[string]any{"role": "teacher"}), channel: "role:student"},
		{name: "role claim missing", claims: claims("19", "", nil), channel: "role:teacher"},
		{name: "mapped role without a role claim", claims: claims("19", "teacher", nil), channel: "role:teacher", want: true},
		{name: "table admin", claims: claims("1", "super_admin", nil), channel: "table:exams", want: true},
		{name: "table teacher", claims: claims("19", "teacher", nil), channel: "table:exams"},
		{name: "school for a parent", claims: claims("5", "parent", nil), channel: "school", want: true},
		{name: "school without a role", claims: claims("5", "", nil), channel: "school"},
		{name: "numeric claim", claims: claims("5", "student", map[string]any{"grade": int64(7)}), channel: "grade:7", want: true},
		{name: "numeric claim differs", claims: claims("5", "student", map[string]any{"grade": int64(8)}), channel: "grade:7"},
		{name: "list claim and literal", claims: claims("5", "student", map[string]any{"groups": []any{"x", "grade-7"}, "role": "student"}), channel: "grade:7", want: true},
		{name: "list claim, literal fails", claims: claims("5", "student", map[string]any{"groups": []any{"grade-7"}, "role": "parent"}), channel: "grade:7"},
		{name: "self on second param", claims: claims("9", "student", nil), channel: "exam:7:student:9", want: true},
		{name: "roles and when both hold", claims: claims("1", "teacher", map[string]any{"school": int64(3)}), channel: "exam:7:student:9", want: true},
		{name: "roles hold, when fails", claims: claims("1", "teacher", map[string]any{"school": int64(4)}), channel: "exam:7:student:9"},
		{name: "when holds, roles fail", claims: claims("1", "parent", map[string]any{"school": int64(3)}), channel: "exam:7:student:9"},
		{name: "when on a missing claim is false", claims: claims("1", "teacher", nil), channel: "exam:7:student:9"},
		{name: "when true", claims: claims("1", "student", map[string]any{"staff": true}), channel: "staff", want: true},
		{name: "when not a bool", claims: claims("1", "student", map[string]any{"staff": "yes"}), channel: "staff"},
		{name: "when with params", claims: claims("1", "teacher", map[string]any{"school": 3.0}), channel: "staff", want: true},
		{name: "nil claims", claims: nil, channel: "school"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := r.Resolve(tc.channel)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Allowed(context.Background(), tc.claims, ch)
			if err != nil || got != tc.want {
				t.Errorf("Allowed = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if db.count() != 0 {
		t.Errorf("%d queries ran for rules without sql", db.count())
	}
	st := r.Stats()
	if st.Granted == 0 || st.Denied == 0 || st.SQLQueries != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAllowedForeignChannel(t *testing.T) {
	t.Parallel()
	r := newTestRules(t, &fakeDB{}, RulesOptions{})
	c := &Claims{UserID: "1", Role: "admin"}
	for _, ch := range []*Channel{nil, {Name: "user:1", Pattern: "user:{userId}", rule: 3}, {Name: "x", Pattern: "x", rule: 99}, {rule: -1}} {
		if ok, err := r.Allowed(context.Background(), c, ch); ok || err != nil {
			t.Errorf("Allowed(%+v) = %v, %v; want false, nil", ch, ok, err)
		}
	}
}

func TestExampleSQLTranslated(t *testing.T) {
	t.Parallel()
	db := &fakeDB{}
	r := newTestRules(t, db, RulesOptions{})
	ch, err := r.Resolve("exam:7")
	if err != nil {
		t.Fatal(err)
	}
	c := &Claims{UserID: "19", Role: "teacher"}
	if ok, err := r.Allowed(context.Background(), c, ch); ok || err != nil {
		t.Fatalf("Allowed = %v, %v", ok, err)
	}
	want := []fakeCall{
		{SQL: "SELECT 1 FROM exams e JOIN class_teachers ct ON ct.class_id = e.class_id WHERE e.id = $1 AND ct.teacher_id = $2", Args: []any{"7", "19"}},
		{SQL: "SELECT 1 FROM exams e JOIN students s ON s.class_id = e.class_id WHERE e.id = $1 AND s.user_id = $2", Args: []any{"7", "19"}},
	}
	if !reflect.DeepEqual(db.calls, want) {
		t.Errorf("queries =\n%v\nwant\n%v", db.calls, want)
	}
	// Every query of the example config has only $n placeholders left.
	for _, cr := range r.channels {
		for _, a := range cr.allow {
			if a.sql != nil && regexp.MustCompile(`(^|[^:]):[A-Za-z_]`).MatchString(a.sql.text) {
				t.Errorf("%s: %q still has a :name", cr.pat.text, a.sql.text)
			}
		}
	}
}

func TestSQLRuleCache(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: testNow}
	db := &fakeDB{answer: func(sql string, args []any) (bool, error) {
		// user 19 teaches class 42
		return strings.Contains(sql, "class_teachers") && args[0] == "42" && args[1] == "19", nil
	}}
	r := newTestRules(t, db, RulesOptions{Now: clock.Now})
	ctx := context.Background()
	teacher := &Claims{UserID: "19", Role: "teacher"}
	other := &Claims{UserID: "20", Role: "teacher"}
	class42, _ := r.Resolve("class:42")
	exam7, _ := r.Resolve("exam:7")

	step := func(name string, c *Claims, ch *Channel, want bool, queries int) {
		t.Helper()
		before := db.count()
		got, err := r.Allowed(ctx, c, ch)
		if err != nil || got != want {
			t.Errorf("%s: Allowed = %v, %v; want %v", name, got, err, want)
		}
		if n := db.count() - before; n != queries {
			t.Errorf("%s: %d queries, want %d", name, n, queries)
		}
	}
	step("first ask", teacher, class42, true, 1)
	step("cached grant", teacher, class42, true, 0)
	step("other user asks", other, class42, false, 2)
	step("other user cached refusal", other, class42, false, 0)
	step("another channel of the same user", teacher, exam7, false, 2)

	clock.Add(59 * time.Second)
	step("still fresh", teacher, class42, true, 0)
	clock.Add(time.Second)
	step("expired after the TTL", teacher, class42, true, 1)

	r.Invalidate("exams") // in exam:{examId}'s recheck_on, not in class:{classId}'s
	step("unrelated table", teacher, class42, true, 0)
	step("exam asked again", teacher, exam7, false, 2)
	r.Invalidate("public.class_teachers")
	step("after invalidate", teacher, class42, true, 1)
	step("other user after invalidate", other, class42, false, 2)
	step("exam after invalidate", teacher, exam7, false, 2)

	st := r.Stats()
	if st.SQLQueries != uint64(db.count()) || st.CacheHits != 5 {
		t.Errorf("stats = %+v; want %d queries and 5 cache hits", st, db.count())
	}
}

func TestSQLRuleNoCacheWhenTTLZero(t *testing.T) {
	t.Parallel()
	db := &fakeDB{answer: func(string, []any) (bool, error) { return true, nil }}
	auth := testAuth()
	auth.ACLCacheTTL = 0
	r, err := NewRules(testChannels(t), auth, db, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := r.Resolve("class:1")
	for range 3 {
		if ok, err := r.Allowed(context.Background(), &Claims{UserID: "1"}, ch); !ok || err != nil {
			t.Fatalf("Allowed = %v, %v", ok, err)
		}
	}
	if db.count() != 3 {
		t.Errorf("%d queries, want 3", db.count())
	}
}

func TestSQLRuleInvalidatedDuringQuery(t *testing.T) {
	t.Parallel()
	var r *Rules
	db := &fakeDB{}
	db.answer = func(string, []any) (bool, error) {
		if db.count() == 1 {
			r.Invalidate("students") // the change lands while the first query runs
		}
		return true, nil
	}
	r = newTestRules(t, db, RulesOptions{})
	ch, _ := r.Resolve("class:42")
	c := &Claims{UserID: "19"}
	for range 2 {
		if ok, err := r.Allowed(context.Background(), c, ch); !ok || err != nil {
			t.Fatalf("Allowed = %v, %v", ok, err)
		}
	}
	if db.count() != 2 {
		t.Errorf("%d queries, want 2: an answer read before an invalidation must not be cached", db.count())
	}
}

func TestSQLRuleErrors(t *testing.T) {
	t.Parallel()
	badText := &pgconn.PgError{Code: "22P02", Message: `invalid input syntax for type bigint: "x"`}
	outOfRange := &pgconn.PgError{Code: "22003", Message: "value out of range"}
	noTable := &pgconn.PgError{Code: "42P01", Message: `relation "class_teachers" does not exist`}
	for _, tc := range []struct {
		name    string
		err     error
		late    bool
		role    string
		want    bool
		wantErr bool
		cached  bool
	}{
		{name: "22P02 is not allowed", err: badText, cached: true},
		{name: "22P02 from rows.Err", err: badText, late: true, cached: true},
		{name: "22003 is not allowed", err: outOfRange, cached: true},
		{name: "missing table is an error", err: noTable, wantErr: true},
		{name: "missing table from rows.Err", err: noTable, late: true, wantErr: true},
		{name: "connection error", err: errors.New("dial tcp: connection refused"), wantErr: true},
		{name: "admin granted without asking", err: noTable, role: "admin", want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := &fakeDB{lateErr: tc.late, answer: func(string, []any) (bool, error) { return false, tc.err }}
			r := newTestRules(t, db, RulesOptions{})
			ch, _ := r.Resolve("class:42")
			c := &Claims{UserID: "19", Role: tc.role}
			got, err := r.Allowed(context.Background(), c, ch)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("Allowed = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
			if tc.wantErr && (!errors.Is(err, tc.err) || !strings.Contains(err.Error(), "class:{classId}")) {
				t.Errorf("error %v should wrap the cause and name the pattern", err)
			}
			n := db.count()
			_, _ = r.Allowed(context.Background(), c, ch)
			if cached := db.count() == n; cached != tc.cached && !tc.want {
				t.Errorf("answer cached = %v, want %v", cached, tc.cached)
			}
		})
	}
}

func TestSQLRuleErrorThenGrant(t *testing.T) {
	t.Parallel()
	db := &fakeDB{answer: func(sql string, _ []any) (bool, error) {
		if strings.Contains(sql, "class_teachers") {
			return false, errors.New("statement timeout")
		}
		return true, nil
	}}
	r := newTestRules(t, db, RulesOptions{})
	ch, _ := r.Resolve("class:42")
	if ok, err := r.Allowed(context.Background(), &Claims{UserID: "19"}, ch); !ok || err != nil {
		t.Errorf("Allowed = %v, %v; a later rule that grants wins over an earlier error", ok, err)
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	db := &fakeDB{answer: func(string, []any) (bool, error) { return true, nil }}
	r := newTestRules(t, db, RulesOptions{CacheSize: 2})
	ch, _ := r.Resolve("student:5")
	ask := func(user string) {
		t.Helper()
		if ok, err := r.Allowed(context.Background(), &Claims{UserID: user}, ch); !ok || err != nil {
			t.Fatalf("Allowed = %v, %v", ok, err)
		}
	}
	ask("1")
	ask("2")
	ask("1") // 1 is now the most recent
	ask("3") // evicts 2
	if n := r.cache.len(); n != 2 {
		t.Errorf("cache holds %d answers, want 2", n)
	}
	before := db.count()
	ask("1")
	if db.count() != before {
		t.Error("user 1 was evicted; want the least recently used (2) gone")
	}
	ask("2")
	if db.count() != before+1 {
		t.Error("user 2 was still cached")
	}
}

func TestRecheck(t *testing.T) {
	t.Parallel()
	r := newTestRules(t, &fakeDB{}, RulesOptions{})
	want := []string{"class_teachers", "exams", "parent_students", "report_cards", "students"}
	if got := r.RecheckTables(); !slices.Equal(got, want) {
		t.Errorf("RecheckTables = %v, want %v", got, want)
	}
	r.RecheckTables()[0] = "changed"
	if r.RecheckTables()[0] != "class_teachers" {
		t.Error("RecheckTables returned its own slice")
	}
	class, _ := r.Resolve("class:1")
	pair, _ := r.Resolve("exam:1:student:2")
	for _, tc := range []struct {
		name  string
		table string
		ch    *Channel
		want  bool
	}{
		{"listed", "students", class, true},
		{"public. prefix", "public.class_teachers", class, true},
		{"not listed", "exams", class, false},
		{"listed with public. prefix in config", "exams", pair, true},
		{"other schema", "audit.students", class, false},
		{"nil channel", "students", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.AffectedBy(tc.table, tc.ch); got != tc.want {
				t.Errorf("AffectedBy(%q) = %v, want %v", tc.table, got, tc.want)
			}
		})
	}
}

func TestIsAdmin(t *testing.T) {
	t.Parallel()
	r := newTestRules(t, &fakeDB{}, RulesOptions{})
	for _, tc := range []struct {
		name string
		c    *Claims
		want bool
	}{
		{"admin", &Claims{Role: "admin"}, true},
		{"super_admin", &Claims{Role: "super_admin"}, true},
		{"teacher", &Claims{Role: "teacher"}, false},
		{"no role", &Claims{}, false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.IsAdmin(tc.c); got != tc.want {
				t.Errorf("IsAdmin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewRulesErrors(t *testing.T) {
	t.Parallel()
	allow := []config.AllowRule{{Roles: []string{"admin"}}}
	for _, tc := range []struct {
		name string
		ch   config.Channel
		noDB bool
		want string
	}{
		{name: "unclosed brace", ch: config.Channel{Pattern: "class:{id", Allow: allow}, want: `channels[0] (pattern "class:{id"): unclosed '{'`},
		{name: "bad param name", ch: config.Channel{Pattern: "class:{1d}", Allow: allow}, want: "invalid param {1d}"},
		{name: "repeated param", ch: config.Channel{Pattern: "{a}:{a}", Allow: allow}, want: "param {a} appears twice"},
		{name: "empty pattern", ch: config.Channel{Allow: allow}, want: "empty pattern"},
		{name: "param not in pattern", ch: config.Channel{Pattern: "class:{id}", Params: map[string]string{"x": "^1$"}, Allow: allow}, want: "params.x: not a param of the pattern"},
		{name: "bad regexp", ch: config.Channel{Pattern: "class:{id}", Params: map[string]string{"id": "^[0-9$"}, Allow: allow}, want: "params.id: invalid regexp"},
		{name: "no allow", ch: config.Channel{Pattern: "class:{id}"}, want: "at least one rule"},
		{name: "empty allow", ch: config.Channel{Pattern: "class:{id}", Allow: []config.AllowRule{{}}}, want: "allow[0]: empty rule"},
		{name: "self unknown", ch: config.Channel{Pattern: "class:{id}", Allow: []config.AllowRule{{Self: "userId"}}}, want: `allow[0]: self: "userId" is not a param`},
		{name: "claim unknown param", ch: config.Channel{Pattern: "class:{id}", Allow: []config.AllowRule{{Claim: map[string]string{"cls": "{classId}"}}}}, want: "claim.cls: \"{classId}\": {classId} is not a param"},
		{name: "when syntax", ch: config.Channel{Pattern: "class:{id}", Allow: []config.AllowRule{{When: "claims.role =="}}}, want: "allow[0]: when: \"claims.role ==\""},
		{name: "when not bool", ch: config.Channel{Pattern: "class:{id}", Allow: []config.AllowRule{{When: "params.id + 'x'"}}}, want: "the result is string, want bool"},
		{name: "when unknown variable", ch: config.Channel{Pattern: "class:{id}", Allow: []config.AllowRule{{When: "user == 'x'"}}}, want: "undeclared reference to 'user'"},
		{name: "sql unknown placeholder", ch: config.Channel{Pattern: "class:{classId}", Allow: []config.AllowRule{{SQL: "SELECT 1 FROM students WHERE class_id = :class_id"}}}, want: `channels[0] (pattern "class:{classId}"): allow[0]: sql: unknown placeholder :class_id`},
		{name: "sql positional", ch: config.Channel{Pattern: "class:{classId}", Allow: []config.AllowRule{{SQL: "SELECT 1 FROM students WHERE class_id = $1"}}}, want: "positional parameters"},
		{name: "sql ambiguous role", ch: config.Channel{Pattern: "role:{role}", Allow: []config.AllowRule{{SQL: "SELECT 1 WHERE :role = 'x'"}}}, want: "placeholder :role is ambiguous"},
		{name: "sql unterminated", ch: config.Channel{Pattern: "class:{classId}", Allow: []config.AllowRule{{SQL: "SELECT ':classId"}}}, want: "unterminated '"},
		{name: "sql without db", ch: config.Channel{Pattern: "class:{classId}", Allow: []config.AllowRule{{SQL: "SELECT 1 WHERE :classId = '1'"}}}, noDB: true, want: "allow[0] uses sql but no database was given"},
		{name: "empty recheck table", ch: config.Channel{Pattern: "class:{classId}", Allow: allow, RecheckOn: []string{" "}}, want: "recheck_on[0]: empty table name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var db Querier = &fakeDB{}
			if tc.noDB {
				db = nil
			}
			_, err := NewRules([]config.Channel{tc.ch}, testAuth(), db, RulesOptions{})
			if err == nil {
				t.Fatalf("NewRules succeeded; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := NewRules([]config.Channel{{Pattern: "a", Allow: allow}}, testAuth(), nil, RulesOptions{}); err != nil {
		t.Errorf("rules without sql need no database: %v", err)
	}
}

func TestAllowedConcurrent(t *testing.T) {
	t.Parallel()
	db := &fakeDB{answer: func(_ string, args []any) (bool, error) { return args[1] == "19", nil }}
	r := newTestRules(t, db, RulesOptions{CacheSize: 16})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				user := []string{"19", "20"}[i%2]
				ch, err := r.Resolve([]string{"class:1", "class:2", "exam:3", "student:4"}[(i+g)%4])
				if err != nil {
					t.Error(err)
					return
				}
				ok, err := r.Allowed(context.Background(), &Claims{UserID: user}, ch)
				if err != nil || ok != (user == "19") {
					t.Errorf("Allowed(%s, %s) = %v, %v", user, ch.Name, ok, err)
					return
				}
				if i%50 == 0 {
					r.Invalidate("students")
				}
			}
		})
	}
	wg.Wait()
	st := r.Stats()
	if st.Granted+st.Denied != 8*200 {
		t.Errorf("stats = %+v", st)
	}
}
