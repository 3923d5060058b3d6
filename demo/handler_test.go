package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// fakeStore is a tiny school: admin 2, teacher 10 (class 1, student 1),
// teacher 11 (class 2), student user 100 (student 1), parent 200 (of
// student 1), inactive user 300.
type fakeStore struct {
	err error // returned by every method when set
}

var fakeUsers = map[int64]User{
	2:   {ID: 2, Name: "Ngozi Eze", Role: "admin", IsActive: true},
	10:  {ID: 10, Name: "Chinedu Obi", Role: "teacher", IsActive: true},
	11:  {ID: 11, Name: "Funmilayo Adeyemi", Role: "teacher", IsActive: true},
	100: {ID: 100, Name: "Amaka Okafor", Role: "student", IsActive: true},
	200: {ID: 200, Name: "Aisha Okafor", Role: "parent", IsActive: true},
	300: {ID: 300, Name: "Gone Away", Role: "teacher", IsActive: false},
}

var amaka = StudentSummary{ID: 1, UserID: 100, Name: "Amaka Okafor", AdmissionNumber: "TH/2025/001", Status: "active",
	Class: &ClassRef{ID: 1, Name: "JSS 1A"}}

func (f fakeStore) People(context.Context) (*People, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &People{
		Admins:   []User{fakeUsers[2]},
		Teachers: []TeacherSummary{{ID: 10, Name: "Chinedu Obi", Classes: []TeacherClass{{ID: 1, Name: "JSS 1A", FormTeacher: true}}}},
		Students: []StudentSummary{amaka},
		Parents:  []ParentSummary{{ID: 200, Name: "Aisha Okafor", Children: []StudentSummary{amaka}}},
	}, nil
}

func (f fakeStore) User(_ context.Context, id int64) (*User, error) {
	if f.err != nil {
		return nil, f.err
	}
	u, ok := fakeUsers[id]
	if !ok {
		return nil, errNotFound
	}
	return &u, nil
}

func (f fakeStore) Me(ctx context.Context, id int64) (*Me, error) {
	u, err := f.User(ctx, id)
	if err != nil {
		return nil, err
	}
	return &Me{ID: u.ID, Name: u.Name, Role: u.Role, Notifications: []Notification{}}, nil
}

func (f fakeStore) Teacher(ctx context.Context, id int64) (*TeacherView, error) {
	u, err := f.User(ctx, id)
	if err != nil {
		return nil, err
	}
	if u.Role != "teacher" {
		return nil, errNotFound
	}
	return &TeacherView{Teacher: *u, Classes: []TeacherClass{{ID: id - 9, Name: fmt.Sprintf("class %d", id-9)}}}, nil
}

func (f fakeStore) Student(_ context.Context, id int64) (*StudentView, error) {
	if f.err != nil {
		return nil, f.err
	}
	if id != 1 {
		return nil, errNotFound
	}
	return &StudentView{Student: amaka}, nil
}

func (f fakeStore) Parent(ctx context.Context, id int64) (*ParentView, error) {
	u, err := f.User(ctx, id)
	if err != nil {
		return nil, err
	}
	if u.Role != "parent" {
		return nil, errNotFound
	}
	return &ParentView{Parent: *u, Children: []StudentSummary{amaka}}, nil
}

func (f fakeStore) Admin(context.Context) (*AdminView, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &AdminView{Counts: map[string]int64{"users": int64(len(fakeUsers))}}, nil
}

func (f fakeStore) Announcements(_ context.Context, role string, all bool) ([]Announcement, error) {
	if f.err != nil {
		return nil, f.err
	}
	teachers := "teacher"
	list := []Announcement{{ID: 1, Title: "Everyone"}, {ID: 2, Title: "Teachers", TargetRole: &teachers}}
	if all || role == "teacher" {
		return list, nil
	}
	return list[:1], nil
}

// MayReadStudent: student 1 is readable by user 100 (themself), parent 200
// and teacher 10.
func (f fakeStore) MayReadStudent(_ context.Context, user, student int64) (bool, error) {
	if f.err != nil {
		return false, f.err
	}
	return student == 1 && (user == 100 || user == 200 || user == 10), nil
}

// Names knows user 10 and 100, student 1, exam 7 and class 1.
func (f fakeStore) Names(_ context.Context, ids map[string][]int64) (Names, error) {
	if f.err != nil {
		return nil, f.err
	}
	known := map[string]map[int64]string{
		"users":    {10: "Chinedu Obi", 100: "Amaka Okafor"},
		"students": {1: "Amaka Okafor"},
		"exams":    {7: "JSS 1 Mathematics Mid-Term Test"},
		"classes":  {1: "JSS 1A"},
	}
	out := Names{}
	for kind, list := range ids {
		out[kind] = map[string]string{}
		for _, id := range list {
			if n, ok := known[kind][id]; ok {
				out[kind][fmt.Sprint(id)] = n
			}
		}
	}
	return out, nil
}

var testJWT = config.JWT{
	Algorithms: []string{"HS256"},
	Secret:     "demo-test-secret-demo-test-secret",
	Issuer:     "treasure-home",
	Audience:   "realtime",
	Claims:     map[string]string{"user_id": "sub", "role": "role"},
}

func newTestHandler(t *testing.T, jwtCfg config.JWT, st store) (*handler, *acl.Verifier) {
	t.Helper()
	v, err := acl.NewVerifier(context.Background(), testJWT, acl.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return newHandler(Options{JWT: jwtCfg, Verifier: v}, st), v
}

func mint(t *testing.T, sub, role string) string {
	t.Helper()
	tok, err := acl.Mint(testJWT, acl.MintOptions{Subject: sub, Role: role, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func do(h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	return e.Error
}

func TestToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 11, 3, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		body     string
		status   int
		code     string // error code, for failures
		wantRole string
	}{
		{name: "teacher by string", body: `{"userId": "10"}`, status: 200, wantRole: "teacher"},
		{name: "student by number", body: `{"userId": 100}`, status: 200, wantRole: "student"},
		{name: "admin", body: `{"userId":"2"}`, status: 200, wantRole: "admin"},
		{name: "unknown user", body: `{"userId": "999"}`, status: 404, code: "not_found"},
		{name: "inactive user", body: `{"userId": "300"}`, status: 403, code: "inactive"},
		{name: "not a number", body: `{"userId": "ten"}`, status: 400, code: "bad_request"},
		{name: "negative", body: `{"userId": -1}`, status: 400, code: "bad_request"},
		{name: "missing", body: `{}`, status: 400, code: "bad_request"},
		{name: "not JSON", body: `userId=10`, status: 400, code: "bad_request"},
		{name: "too large", body: `{"userId": "10", "x": "` + strings.Repeat("a", maxBodyBytes) + `"}`, status: 400, code: "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHandler(t, testJWT, fakeStore{})
			h.opts.Now = func() time.Time { return now }
			w := do(h, "POST", "/demo/api/token", "", tt.body)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status != 200 {
				if got := errorCode(t, w); got != tt.code {
					t.Errorf("error %q, want %q", got, tt.code)
				}
				return
			}
			var resp TokenResponse
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Role != tt.wantRole || resp.Name == "" {
				t.Errorf("response %+v, want role %s and a name", resp, tt.wantRole)
			}
			if want := now.Add(DefaultTokenTTL).UnixMilli(); resp.ExpiresAt != want {
				t.Errorf("expiresAt %d, want %d", resp.ExpiresAt, want)
			}
			// The token is minted at `now` (2025): check its claims with a
			// verifier whose clock is then.
			v2, err := acl.NewVerifier(context.Background(), testJWT, acl.VerifierOptions{Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			defer v2.Close()
			c, err := v2.Verify(resp.Token)
			if err != nil {
				t.Fatalf("minted token does not verify: %v", err)
			}
			if c.UserID != resp.UserID || c.Role != tt.wantRole || !c.ExpiresAt.Equal(now.Add(time.Hour)) {
				t.Errorf("claims %+v, want sub %s role %s exp %v", c, resp.UserID, tt.wantRole, now.Add(time.Hour))
			}
		})
	}
}

func TestTokenNow(t *testing.T) {
	t.Parallel()
	h, v := newTestHandler(t, testJWT, fakeStore{})
	w := do(h, "POST", "/demo/api/token", "", `{"userId":"10"}`)
	var resp TokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != 200 {
		t.Fatalf("status %d %s: %v", w.Code, w.Body, err)
	}
	c, err := v.Verify(resp.Token)
	if err != nil {
		t.Fatalf("the gateway's verifier refuses the demo token: %v", err)
	}
	if c.UserID != "10" || c.Role != "teacher" {
		t.Errorf("claims %+v", c)
	}
	// The token opens the data endpoints.
	if w := do(h, "GET", "/demo/api/teacher/10", resp.Token, ""); w.Code != 200 {
		t.Errorf("GET teacher/10 with the minted token: %d %s", w.Code, w.Body)
	}
}

func TestTokenWithoutSecret(t *testing.T) {
	t.Parallel()
	noSecret := testJWT
	noSecret.Secret = ""
	h, _ := newTestHandler(t, noSecret, fakeStore{})
	w := do(h, "POST", "/demo/api/token", "", `{"userId":"10"}`)
	if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != "cannot_mint" {
		t.Errorf("status %d %s, want 503 cannot_mint", w.Code, w.Body)
	}
}

func TestDataAccess(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, testJWT, fakeStore{})
	admin := mint(t, "2", "admin")
	superAdmin := mint(t, "1", "super_admin")
	teacher10 := mint(t, "10", "teacher")
	teacher11 := mint(t, "11", "teacher")
	student := mint(t, "100", "student")
	parent := mint(t, "200", "parent")
	otherParent := mint(t, "201", "parent")
	tests := []struct {
		name   string
		path   string
		token  string
		status int
	}{
		{"no token", "/demo/api/me", "", 401},
		{"bad token", "/demo/api/me", "not-a-jwt", 401},
		{"me", "/demo/api/me", student, 200},
		{"me not in the school", "/demo/api/me", otherParent, 404},
		{"teacher self", "/demo/api/teacher/10", teacher10, 200},
		{"teacher other", "/demo/api/teacher/10", teacher11, 403},
		{"teacher by student", "/demo/api/teacher/10", student, 403},
		{"teacher by admin", "/demo/api/teacher/11", admin, 200},
		{"teacher not a teacher", "/demo/api/teacher/100", admin, 404},
		{"teacher bad id", "/demo/api/teacher/abc", admin, 400},
		{"teacher zero id", "/demo/api/teacher/0", admin, 400},
		{"student self", "/demo/api/student/1", student, 200},
		{"student by parent", "/demo/api/student/1", parent, 200},
		{"student by their teacher", "/demo/api/student/1", teacher10, 200},
		{"student by another teacher", "/demo/api/student/1", teacher11, 403},
		{"student by another parent", "/demo/api/student/1", otherParent, 403},
		{"student by super admin", "/demo/api/student/1", superAdmin, 200},
		{"student unknown", "/demo/api/student/2", admin, 404},
		{"student unknown, not admin", "/demo/api/student/2", student, 403},
		{"parent self", "/demo/api/parent/200", parent, 200},
		{"parent other", "/demo/api/parent/200", otherParent, 403},
		{"parent by admin", "/demo/api/parent/200", admin, 200},
		{"admin", "/demo/api/admin", admin, 200},
		{"admin by super admin", "/demo/api/admin", superAdmin, 200},
		{"admin by teacher", "/demo/api/admin", teacher10, 403},
		{"announcements", "/demo/api/announcements", student, 200},
		{"names", "/demo/api/names?students=1", parent, 200},
		{"names without a token", "/demo/api/names?students=1", "", 401},
		{"unknown endpoint", "/demo/api/nothing", admin, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := do(h, "GET", tt.path, tt.token, "")
			if w.Code != tt.status {
				t.Fatalf("GET %s: status %d, want %d: %s", tt.path, w.Code, tt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestAnnouncementsByRole(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, testJWT, fakeStore{})
	tests := []struct {
		name, sub, role string
		want            int
	}{
		{"student sees everyone's", "100", "student", 1},
		{"teacher sees teachers' too", "10", "teacher", 2},
		{"admin sees all", "2", "admin", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := do(h, "GET", "/demo/api/announcements", mint(t, tt.sub, tt.role), "")
			var body struct{ Announcements []Announcement }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if len(body.Announcements) != tt.want {
				t.Errorf("%d announcements, want %d", len(body.Announcements), tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, testJWT, fakeStore{})
	parent := mint(t, "200", "parent")
	many := make([]string, maxNamesPerKind+1)
	for i := range many {
		many[i] = fmt.Sprint(i + 1)
	}
	tests := []struct {
		name   string
		query  string
		status int
		want   Names // for 200
	}{
		{name: "each kind", query: "users=10,100&students=1&exams=7&classes=1", status: 200, want: Names{
			"users":    {"10": "Chinedu Obi", "100": "Amaka Okafor"},
			"students": {"1": "Amaka Okafor"},
			"exams":    {"7": "JSS 1 Mathematics Mid-Term Test"},
			"classes":  {"1": "JSS 1A"},
		}},
		{name: "unknown ids left out", query: "students=1,2&terms=3", status: 200, want: Names{
			"students": {"1": "Amaka Okafor"}, "terms": {},
		}},
		{name: "repeated ids and parameters", query: "users=10,10&users=10", status: 200, want: Names{"users": {"10": "Chinedu Obi"}}},
		{name: "nothing asked", query: "", status: 200, want: Names{}},
		{name: "empty list", query: "users=", status: 200, want: Names{}},
		{name: "unknown kind", query: "parents=200", status: 400},
		{name: "not a number", query: "users=ten", status: 400},
		{name: "zero", query: "users=0", status: 400},
		{name: "negative", query: "exams=-7", status: 400},
		{name: "too many", query: "users=" + strings.Join(many, ","), status: 400},
		{name: "as many as allowed", query: "users=" + strings.Join(many[:maxNamesPerKind], ","), status: 200,
			want: Names{"users": {"10": "Chinedu Obi", "100": "Amaka Okafor"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := do(h, "GET", "/demo/api/names?"+tt.query, parent, "")
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status != 200 {
				if got := errorCode(t, w); got != "bad_request" {
					t.Errorf("error %q, want bad_request", got)
				}
				return
			}
			var got Names
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("names %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseNameIDs(f *testing.F) {
	for _, s := range []string{"users=1,2&students=3", "exams=", "users=1&users=1", "x=1", "terms=-1", "classes=1,,2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		ids, err := parseNameIDs(q)
		if err != nil {
			return
		}
		for kind, list := range ids {
			if !slices.Contains(nameKinds, kind) || len(list) > maxNamesPerKind {
				t.Errorf("parseNameIDs(%q): kind %q with %d ids", s, kind, len(list))
			}
			for _, id := range list {
				if id <= 0 {
					t.Errorf("parseNameIDs(%q): id %d", s, id)
				}
			}
		}
	})
}

func TestPeople(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, testJWT, fakeStore{})
	w := do(h, "GET", "/demo/api/people", "", "")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var p People
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Admins) != 1 || len(p.Teachers) != 1 || len(p.Students) != 1 || len(p.Parents) != 1 ||
		p.Parents[0].Children[0].Class.Name != "JSS 1A" {
		t.Errorf("people %+v", p)
	}
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()
	denied := &pgconn.PgError{Code: "42501", Message: "permission denied for table users"}
	tests := []struct {
		name     string
		err      error
		status   int
		contains string
	}{
		{"permission denied", fmt.Errorf("query admins: %w", denied), 500, "GRANT SELECT (first_name, last_name) ON users"},
		{"other failure", errors.New("connection refused"), 500, "see the server log"},
		{"not found", errNotFound, 404, "no such record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHandler(t, testJWT, fakeStore{err: tt.err})
			w := do(h, "GET", "/demo/api/people", "", "")
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.contains) {
				t.Errorf("status %d %s, want %d containing %q", w.Code, w.Body, tt.status, tt.contains)
			}
			if strings.Contains(w.Body.String(), "connection refused") {
				t.Error("the database's error reached the browser")
			}
		})
	}
}

func TestStatic(t *testing.T) {
	t.Parallel()
	h, _ := newTestHandler(t, testJWT, fakeStore{})
	tests := []struct {
		path     string
		status   int
		ctype    string
		contains string
	}{
		{"/demo/", 200, "text/html", `data-page="picker"`},
		{"/demo/teacher.html", 200, "text/html", `data-testid="connection-state"`},
		{"/demo/student.html", 200, "text/html", `data-testid="connection-state"`},
		{"/demo/parent.html", 200, "text/html", `data-testid="connection-state"`},
		{"/demo/admin.html", 200, "text/html", `data-testid="user-list"`},
		{"/demo/demo.css", 200, "text/css", "#state-badge"},
		{"/demo/realtime.js", 200, "text/javascript", "createRealtime"},
		{"/demo/common.js", 200, "text/javascript", "from './realtime.js'"},
		{"/demo/activity.js", 200, "text/javascript", "export function describe"},
		{"/demo/missing.html", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			w := do(h, "GET", tt.path, "", "")
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if tt.status != 200 {
				return
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("Content-Type %q, want %s", ct, tt.ctype)
			}
			if !strings.Contains(w.Body.String(), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
			if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if w.Header().Get("Cache-Control") != "no-cache" {
				t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
			}
		})
	}
}

// TestStaticReferences checks that every local file a page or module
// names is embedded, and that nothing is loaded from elsewhere.
func TestStaticReferences(t *testing.T) {
	t.Parallel()
	attr := regexp.MustCompile(`(?:src|href)="([^"#?]+)`)
	// import ... from '...' (over lines), import '...', import('...');
	// not "from '" in a string of a module's text.
	imp := regexp.MustCompile(`(?m)(?:^(?:import|export)\b[^;]*?\bfrom|^import|\bimport\()\s*'([^']+)'`)
	err := fs.WalkDir(staticFiles, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "static/realtime.js" {
			return err
		}
		b, err := fs.ReadFile(staticFiles, path)
		if err != nil {
			return err
		}
		var refs [][][]byte
		switch {
		case strings.HasSuffix(path, ".html"):
			refs = attr.FindAllSubmatch(b, -1)
		case strings.HasSuffix(path, ".js"):
			refs = imp.FindAllSubmatch(b, -1)
		}
		for _, m := range refs {
			ref := string(m[1])
			if strings.Contains(ref, "://") || strings.HasPrefix(ref, "//") {
				t.Errorf("%s loads %s from elsewhere", path, ref)
				continue
			}
			if ref == "./" || strings.HasPrefix(ref, "data:") || strings.Contains(ref, "${") {
				continue
			}
			if _, err := fs.Stat(staticFiles, "static/"+strings.TrimPrefix(ref, "./")); err != nil {
				t.Errorf("%s names %s, which is not embedded", path, ref)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHandlerPanicsWithoutDeps(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"no DB", Options{Verifier: &acl.Verifier{}}},
		{"no verifier", Options{DB: nilDB{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			Handler(tt.opts)
		})
	}
}

// nilDB is a DB that is never queried.
type nilDB struct{ DB }

func TestParseUserID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{`"10"`, 10, true},
		{`10`, 10, true},
		{`" 10 "`, 10, true},
		{`"0"`, 0, false},
		{`-5`, 0, false},
		{`1.5`, 0, false},
		{`"9223372036854775808"`, 0, false},
		{`null`, 0, false},
		{``, 0, false},
		{`["10"]`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseUserID(json.RawMessage(tt.in))
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseUserID(%s) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseUserID(f *testing.F) {
	for _, s := range []string{`"10"`, `10`, `" 1 "`, `"\u0031"`, `1e3`, `"-0"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseUserID(json.RawMessage(s))
		if err == nil && id <= 0 {
			t.Errorf("parseUserID(%q) = %d without error", s, id)
		}
	})
}
