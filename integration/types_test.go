package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// `cdc-broadcaster types` against the example school: the declarations it
// writes compile, a client that reads a wrong field does not, and the
// events a running serve sends fit them.

// tsc runs the TypeScript compiler of client/ (a devDependency) on files
// in dir with the strictest options the adapter uses; it returns the exit
// code and the compiler's output.
func tsc(t *testing.T, dir string, files ...string) (int, string) {
	t.Helper()
	return tscWith(t, dir, nil, files...)
}

// tscWith is tsc with compiler options added or changed (the adapter
// needs the DOM's lib).
func tscWith(t *testing.T, dir string, opts map[string]any, files ...string) (int, string) {
	t.Helper()
	bin := filepath.Join(repoRoot, "client", "node_modules", ".bin", "tsc")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no TypeScript compiler at %s (cd client && npm ci): %v", bin, err)
	}
	cfg := map[string]any{
		"compilerOptions": map[string]any{
			"target": "ES2020", "module": "ESNext", "moduleResolution": "Bundler",
			"strict": true, "noEmit": true, "exactOptionalPropertyTypes": true,
			"types": []string{}, "lib": []string{"ES2022"}, "skipDefaultLibCheck": true,
		},
		"files": files,
	}
	for k, v := range opts {
		cfg["compilerOptions"].(map[string]any)[k] = v
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "--pretty", "false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("run tsc: %v\n%s", err, out)
	}
	return 0, string(out)
}

// tsErrors parses tsc's errors: "file(line,col): error TSnnnn: message".
var tsErrorLine = regexp.MustCompile(`(?m)^(.+?)\((\d+),\d+\): error (TS\d+): (.*)$`)

type tsError struct {
	file string
	line int
	code string
	msg  string
}

func tsErrors(out string) []tsError {
	var errs []tsError
	for _, m := range tsErrorLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		errs = append(errs, tsError{file: filepath.Base(m[1]), line: n, code: m[3], msg: m[4]})
	}
	return errs
}

// typesPrelude starts both samples: the generated types, and the adapter's
// shape of `on`, declared here so that the test does not depend on the
// adapter's own generics.
const typesPrelude = `import type { Events, Channel } from './realtime-events';

declare function on<K extends keyof Events>(
  type: K,
  handler: (e: { operation: Events[K]['operation']; data: Events[K]['data'] }) => void,
): void;

`

// typesSample reads correct fields of the example school's events; it must
// compile.
const typesSample = typesPrelude + `on('exam.graded', (e) => {
  // numeric(5,2): a number, or its exact text when a double cannot hold it.
  const score: number | string = e.data.score;
  const op: 'INSERT' | 'UPDATE' = e.operation;
  // text: an UPDATE may leave out an unchanged TOASTed value.
  const grade: string | undefined = e.data.grade;
  void score, op, grade;
});
on('exam.submitted', (e) => {
  const progress: number = e.data.progress;
  const id: number | string = e.data.id;
  void progress, id;
});
on('attendance.marked', (e) => {
  const date: string = e.data.date;
  const status: string = e.data.status;
  void date, status;
});
on('announcement.created', (e) => {
  const audience: string | null = e.data.target_role;
  const pinned: boolean = e.data.is_pinned;
  void audience, pinned;
});
on('vacancy.created', (e) => {
  const tags: (string | null)[] = e.data.tags;
  void tags;
});
on('upload.started', (e) => {
  const id: string = e.data.id;
  const bytes: number | string = e.data.bytes;
  void id, bytes;
});
on('user.deleted', (e) => {
  // users has the default replica identity: a DELETE carries the key only.
  const id: number | string = e.data.id;
  void id;
});
on('gradingTask.truncated', (e) => {
  const none: undefined = e.data;
  void none;
});
// Emitted by the application (emit.events): the declared data fields.
on('exam.closing_soon', (e) => {
  const op: 'EMIT' = e.operation;
  const left: number = e.data.minutesLeft;
  const at: string = e.data.closesAt;
  void op, left, at;
});
on('system.notice', (e) => {
  const url: string | null | undefined = e.data.url;
  void url;
});

const channels: Channel[] = ['class:1', 'exam:7', 'school', 'role:teacher', 'student:3', 'user:19', 'role:super_admin'];
void channels;
`

// typesWrong reads a field the payload does not have and one a DELETE
// does not carry, takes a bigint for a number, names a channel no template
// makes and reads a field an emitted event does not declare: five errors.
const typesWrong = typesPrelude + `on('exam.graded', (e) => {
  void e.data.remarks;
});
on('exam.submitted', (e) => {
  const id: number = e.data.id;
  void id;
});
on('user.deleted', (e) => {
  void e.data.role;
});
const c: Channel = 'klass:1';
void c;
on('system.notice', (e) => {
  void e.data.examId;
});
`

// typesSampleUse reads tsgen's golden sample (tsgen/testdata/sample.d.ts),
// whose cases the example school lacks: an event type from two tables (a
// union with a table discriminant), TRUNCATE beside row events, an enum, a
// quoted column name, data that may be absent. It must compile.
const typesSampleUse = `import type { Events } from './sample';

declare function on<K extends keyof Events>(type: K, handler: (e: Events[K]) => void): void;

on('exam.changed', (e) => {
  if (e.operation === 'UPDATE') {
    const table: 'announcements' = e.table;
    const id: number = e.data.id;
    void table, id;
  } else {
    const none: undefined = e.data;
    void none;
  }
});
on('announcement.published', (e) => {
  const audience: 'teacher' | 'student' | null = e.data.target_role;
  void audience;
});
on('note.edited', (e) => {
  const name: string | undefined = e.data?.['Odd name'];
  void name;
});
`

// TestTypesExampleSchool runs types over the example school and its
// example config, then compiles a client that reads right fields (no
// error) and one that reads wrong ones (an error naming each); and a
// client of tsgen's golden sample.
func TestTypesExampleSchool(t *testing.T) {
	db := NewDB(t, WithExampleData())
	cfg := WriteConfig(t, db, nil) // no JWT secret: types needs none
	dir := t.TempDir()
	out := filepath.Join(dir, "realtime-events.d.ts")

	code, stdout, stderr := run(t, nil, "types", "--config", cfg, "--out", out)
	if code != 0 {
		t.Fatalf("types: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if stdout != "" || !strings.Contains(stderr, "wrote ") || !strings.Contains(stderr, out) {
		t.Errorf("types --out: stdout %q, stderr %q: want nothing on stdout and what was written on stderr", stdout, stderr)
	}
	decl, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	ts := string(decl)
	header := fmt.Sprintf("// Generated by `cdc-broadcaster types` from %s and database %s on %s. Do not edit.\n",
		cfg, db.Name, time.Now().UTC().Format("2006-01-02"))
	if !strings.HasPrefix(ts, header) {
		t.Errorf("header: want %q, got:\n%s", header, strings.SplitN(ts, "\n", 2)[0])
	}
	for _, w := range []string{
		"export interface Events {",
		"'exam.graded': {\n    operation: 'INSERT' | 'UPDATE';",
		"      score: number | string;",     // numeric(5,2) NOT NULL, never TOASTed
		"      grade?: string;",             // text: maybe TOASTed on UPDATE
		"      target_role: string | null;", // announcement.created: INSERT only
		"      date: string;",               // attendance
		"      tags: (string | null)[];",    // vacancy.created
		"'gradingTask.truncated': {\n    operation: 'TRUNCATE';\n    data?: undefined;",
		"'user.deleted': {\n    operation: 'DELETE';\n    data: {\n      /** bigint",
		"`class:${string}`",
		"'school'",
		"export type Channel =",
		// emitted (config.example.yaml's emit.events)
		"'exam.closing_soon': {\n    operation: 'EMIT';\n    data: {",
		"      minutesLeft: number;",
		"      url?: string | null;",
		"'role:super_admin'",
	} {
		if !strings.Contains(ts, w) {
			t.Errorf("declarations lack %q", w)
		}
	}
	// user.deleted: users has the default replica identity, so a DELETE
	// carries the key only.
	if i := strings.Index(ts, "'user.deleted'"); i < 0 || strings.Contains(ts[i:i+strings.Index(ts[i:], "oldData")], "role") {
		t.Errorf("user.deleted: data should hold the key only (the DELETE of a table with the default identity carries no other column)")
	}

	// Without --out the same declarations go to stdout.
	p := Start(t, nil, "types", "--config", cfg)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("types to stdout: exit %d\n%s", code, p.Stderr())
	}
	if got := strings.Join(p.Stdout(), "\n") + "\n"; got != ts {
		t.Errorf("stdout differs from --out's file")
	}

	sample, err := os.ReadFile(filepath.Join(repoRoot, "tsgen", "testdata", "sample.d.ts"))
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"good.ts": typesSample, "wrong.ts": typesWrong, "sample.d.ts": string(sample), "sample-use.ts": typesSampleUse} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	code, output := tsc(t, dir, "good.ts", "wrong.ts", "sample-use.ts")
	t.Logf("tsc: %v", time.Since(start).Round(time.Millisecond))
	errs := tsErrors(output)
	for _, e := range errs {
		if e.file != "wrong.ts" {
			t.Errorf("%s:%d: %s: %s", e.file, e.line, e.code, e.msg)
		}
	}
	if code == 0 || len(errs) == 0 {
		t.Fatalf("wrong.ts compiled:\n%s", output)
	}
	lines := strings.Split(typesWrong, "\n")
	want := []struct{ line, says string }{
		{"e.data.remarks", "'remarks'"},
		{"const id: number = e.data.id;", "'string | number' is not assignable to type 'number'"},
		{"void e.data.role;", "'role'"},
		{"const c: Channel = 'klass:1';", "klass:1"},
		{"void e.data.examId;", "'examId'"},
	}
	for _, w := range want {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, w.line) })
		if !slices.ContainsFunc(errs, func(e tsError) bool { return e.file == "wrong.ts" && e.line == i+1 && strings.Contains(e.msg, w.says) }) {
			t.Errorf("no error on wrong.ts:%d (%s) saying %s:\n%s", i+1, w.line, w.says, output)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(errs), len(want), output)
	}

	// The declarations plug into the adapter itself (its built package,
	// client/dist, as an app imports it), as its README shows: a right
	// field compiles, a wrong one does not.
	adapter := filepath.Join(repoRoot, "client", "dist", "index.js")
	use := func(body string) string {
		return "import { createRealtime } from '" + adapter + "';\n" +
			"import type { Channel, Events } from './realtime-events';\n" +
			"const rt = createRealtime<Events, Channel>({ url: 'ws://localhost/ws', getToken: () => 't' });\n" +
			"const sub = rt.subscribe(['exam:7']);\n" + body + "\n"
	}
	for name, src := range map[string]string{
		"adapter-good.ts":  use("sub.on('exam.graded', (e) => { const s: number | string = e.data.score; void s; });"),
		"adapter-wrong.ts": use("sub.on('exam.graded', (e) => { void e.data.remarks; });"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dom := map[string]any{"lib": []string{"ES2022", "DOM"}, "skipLibCheck": true}
	if code, output := tscWith(t, dir, dom, "adapter-good.ts"); code != 0 {
		t.Errorf("the generated types with the adapter: a right field does not compile:\n%s", output)
	}
	if code, output := tscWith(t, dir, dom, "adapter-wrong.ts"); code == 0 || !strings.Contains(output, "'remarks'") {
		t.Errorf("the generated types with the adapter: a wrong field compiled (exit %d):\n%s", code, output)
	}
}

// TestTypesMatchPayloads: the events a running serve sends, read back
// through /api/realtime/sync, fit the declarations types wrote: each
// event's operation, data and oldData, as the server sent them, is
// compiled as a value of Events[its type]. The rows are picked to make the
// encodings that differ from the obvious: a numeric a double cannot hold
// (a string), a bigint past 2^53 (a string), a TOASTed array an UPDATE
// leaves out, a DELETE under the default identity (the key only), a NULL,
// a TRUNCATE. Then the declarations are made to lie about two of them,
// and the same events must no longer compile.
func TestTypesMatchPayloads(t *testing.T) {
	db := NewDB(t, WithExampleData())
	s := rsStartServe(t, db, nil)
	dir := t.TempDir()
	out := filepath.Join(dir, "realtime-events.d.ts")
	if code, stdout, stderr := run(t, nil, "types", "--config", s.cfg, "--out", out); code != 0 {
		t.Fatalf("types: exit %d\n%s\n%s", code, stdout, stderr)
	}

	tok := gwUserToken(t, "2", "admin")
	channels := "table:exam_results,table:uploads,table:vacancies,table:users,table:announcements," +
		"table:attendance,table:grading_tasks,table:exam_sessions,table:students,user:10,exam:1,role:admin"
	head := rsSync(t, s.addr, tok, "channels", channels)
	if head.Status != http.StatusOK || head.Cursor == "" {
		t.Fatalf("/sync head: HTTP %d %s", head.Status, head.Raw)
	}
	db.Exec(t, `
		INSERT INTO exams (id, class_id, subject_id, term_id, title) VALUES (6001, 1, 1, 1, 'types');
		INSERT INTO exam_results (id, exam_id, student_id, score, grade, graded_by) VALUES
			(6001, 6001, 1, 12.10, 'F9', 10), (6002, 6001, 2, 12.50, 'F9', 10);
		UPDATE exam_results SET score = 99.99, grade = 'A1' WHERE id = 6001;
		INSERT INTO uploads (id, uploaded_by, filename, bytes) VALUES
			('6f1c2a9e-8d1b-4c7e-9a35-2f0c4b6d8e99', 10, 'big.bin', 9007199254740993);
		INSERT INTO vacancies (id, title, tags, created_by)
			SELECT 6001, 'types', array_agg(md5(i::text)), 2 FROM generate_series(1, 400) AS i;
	`)
	// Another transaction, so that the tags are TOASTed on disk when the
	// UPDATE leaves them unchanged.
	db.Exec(t, `
		UPDATE vacancies SET status = 'closed' WHERE id = 6001;
		INSERT INTO users (id, email, password_hash, first_name, last_name, role)
			VALUES (6001, 'types@example.com', '!', 'T', 'S', 'teacher');
		DELETE FROM users WHERE id = 6001;
		INSERT INTO announcements (id, title, body, target_role) VALUES (6001, 'all', 'all', NULL);
		INSERT INTO attendance (id, student_id, class_id, date, status) VALUES (6001, 1, 1, '2025-11-29', 'present');
		INSERT INTO exam_sessions (id, exam_id, student_id, class_id) VALUES (6001, 6001, 1, 1);
		UPDATE exam_sessions SET status = 'submitted', progress = 100 WHERE id = 6001;
		UPDATE students SET class_id = 2 WHERE id = 1;
		INSERT INTO notifications (id, user_id, title) VALUES (6001, 10, 'types');
		TRUNCATE grading_tasks;
	`)
	// Emitted events: one with every declared field, one without its
	// optional one, one not transactional.
	db.Exec(t, `
		SELECT cdc_emit('exam.closing_soon', ARRAY['exam:1'],
			jsonb_build_object('examId', 1, 'classId', 1, 'minutesLeft', 10, 'closesAt', '2025-11-29T10:30:00Z'));
		SELECT cdc_emit('system.notice', ARRAY['role:admin'], jsonb_build_object('level', 'info', 'message', 'types'));
		SELECT cdc_emit('gradingJob.progress', ARRAY['exam:1'], jsonb_build_object('examId', 1, 'done', 1, 'total', 2), transactional => false);
	`)
	wantTypes := []string{
		"exam.graded", "upload.started", "vacancy.created", "vacancy.closed", "user.created", "user.deleted",
		"announcement.created", "attendance.marked", "exam.started", "examSession.started", "exam.submitted",
		"examSession.completed", "student.enrolled", "notification.created", "gradingTask.truncated",
		"exam.closing_soon", "system.notice", "gradingJob.progress",
	}
	events := typesCollect(t, s, tok, head.Cursor, channels, wantTypes)

	// The rows were chosen for these encodings; check that they happened,
	// or the compile below would prove less than it claims.
	byType := map[string][]typesEvent{}
	for _, e := range events {
		byType[e.Type] = append(byType[e.Type], e)
	}
	for _, w := range []struct{ typ, field, raw string }{
		{"exam.graded", "score", `"12.10"`},
		{"exam.graded", "score", `12.5`},
		{"upload.started", "bytes", `"9007199254740993"`},
		{"announcement.created", "target_role", `null`},
	} {
		if !slices.ContainsFunc(byType[w.typ], func(e typesEvent) bool { return string(e.field("data", w.field)) == w.raw }) {
			t.Errorf("no %s event with data.%s = %s: %s", w.typ, w.field, w.raw, typesDump(byType[w.typ]))
		}
	}
	for _, w := range []struct{ typ, field string }{
		{"vacancy.closed", "tags"}, // TOASTed and unchanged: left out
		{"user.deleted", "role"},   // default identity: the key only
	} {
		if len(byType[w.typ]) == 0 || byType[w.typ][0].field("data", w.field) != nil {
			t.Errorf("%s: want data without %s: %s", w.typ, w.field, typesDump(byType[w.typ]))
		}
	}

	var b strings.Builder
	b.WriteString("import type { Events } from './realtime-events';\n\n")
	for i, e := range events {
		fmt.Fprintf(&b, "export const e%d: Events['%s'] = %s;\n", i, e.Type, e.literal(t))
	}
	check := b.String()
	if err := os.WriteFile(filepath.Join(dir, "payloads.ts"), []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, output := tsc(t, dir, "payloads.ts")
	t.Logf("%d events of %d types; tsc: %v", len(events), len(byType), time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("the events serve sent do not fit the declarations:\n%s\n%s", output, typesLines(check, tsErrors(output)))
	}

	// The same events against declarations that lie: numeric and bigint as
	// plain numbers, vacancies' tags always present.
	decl, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lie := strings.NewReplacer(
		"score: number | string;", "score: number;",
		"bytes: number | string;", "bytes: number;",
		"tags?: (string | null)[];", "tags: (string | null)[];",
	).Replace(string(decl))
	if lie == string(decl) {
		t.Fatal("found nothing to make the declarations lie about")
	}
	if err := os.WriteFile(out, []byte(lie), 0o644); err != nil {
		t.Fatal(err)
	}
	code, output = tsc(t, dir, "payloads.ts")
	if code == 0 {
		t.Fatal("the events still compile against declarations that lie about numeric, bigint and TOASTed columns")
	}
	failed := typesLines(check, tsErrors(output))
	for _, w := range []string{`"score":"12.10"`, `"bytes":"9007199254740993"`, `Events['vacancy.closed']`} {
		if !strings.Contains(failed, w) {
			t.Errorf("the lying declarations did not fail on the event with %s:\n%s\n%s", w, output, failed)
		}
	}
}

// typesEvent is one event as /sync sent it, its parts kept raw.
type typesEvent struct {
	Type string
	Raw  map[string]json.RawMessage
}

// field returns the raw value of data or oldData's field name, nil when
// absent.
func (e typesEvent) field(obj, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Raw[obj], &m); err != nil {
		return nil
	}
	return m[name]
}

// literal is the event's operation, data and oldData as a TypeScript
// object literal, exactly as sent: JSON is one.
func (e typesEvent) literal(t *testing.T) string {
	parts := []string{`"operation":` + string(e.Raw["operation"])}
	for _, k := range []string{"data", "oldData"} {
		if v, ok := e.Raw[k]; ok {
			parts = append(parts, `"`+k+`":`+string(v))
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte("{"+strings.Join(parts, ",")+"}")); err != nil {
		t.Fatalf("event %s: %v", e.Type, err)
	}
	return buf.String()
}

// typesCollect reads events on channels from since until every type of
// want has arrived.
func typesCollect(t *testing.T, s *rsServe, tok, since, channels string, want []string) []typesEvent {
	t.Helper()
	var events []typesEvent
	seen := map[string]bool{}
	deadline := time.Now().Add(eventWait)
	for {
		r, err := syncGet(s.addr, tok, url.Values{"channels": {channels}, "since": {since}, "limit": {"1000"}, "wait": {"2s"}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusOK {
			t.Fatalf("/sync: HTTP %d %s", r.Status, r.Raw)
		}
		var page []struct {
			Event map[string]json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(r.EventsRaw), &page); err != nil {
			t.Fatalf("decode /sync events: %v", err)
		}
		for _, p := range page {
			var typ string
			if err := json.Unmarshal(p.Event["eventType"], &typ); err != nil {
				t.Fatalf("eventType: %v", err)
			}
			events = append(events, typesEvent{Type: typ, Raw: p.Event})
			seen[typ] = true
		}
		since = r.Cursor
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return seen[w] })
		if len(missing) == 0 && !r.More {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v events within %v; got %d events: %s", missing, eventWait, len(events), typesDump(events))
		}
	}
}

// typesDump shows events for a failure message.
func typesDump(events []typesEvent) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\n  %s data=%s oldData=%s", e.Type, e.Raw["data"], e.Raw["oldData"])
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

// typesLines returns the lines of src that errs point at.
func typesLines(src string, errs []tsError) string {
	lines := strings.Split(src, "\n")
	var b strings.Builder
	for _, e := range errs {
		if e.line >= 1 && e.line <= len(lines) {
			fmt.Fprintf(&b, "%d: %s\n", e.line, lines[e.line-1])
		}
	}
	return b.String()
}

// TestTypesErrors: a mapping that does not fit the database and a database
// that cannot be reached exit 1 like check, saying why; a flag mistake
// exits 2 with the command's help; -h documents the command.
func TestTypesErrors(t *testing.T) {
	db := NewDB(t)
	t.Run("unknown table", func(t *testing.T) {
		cfg := WriteConfig(t, db, map[string]any{"mappings.0.table": "examz", "mappings.1.payload": []string{"id", "nosuch"}})
		code, stdout, stderr := run(t, nil, "types", "--config", cfg)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
		}
		for _, w := range []string{"does not fit database " + db.Name, "mappings[0].table", "examz", "mappings[1].payload[1]", "nosuch", filepath.Base(cfg) + ":"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		if stdout != "" {
			t.Errorf("wrote declarations anyway:\n%s", stdout)
		}
	})
	t.Run("database unreachable", func(t *testing.T) {
		cfg := WriteConfig(t, db, map[string]any{"source.database_url": fmt.Sprintf("postgres://nobody@127.0.0.1:%d/none?connect_timeout=5", FreePort(t))})
		out := filepath.Join(t.TempDir(), "events.d.ts")
		code, stdout, stderr := run(t, nil, "types", "--config", cfg, "--out", out)
		if code != 1 || !strings.Contains(stderr, "connect to database") {
			t.Fatalf("exit %d, want 1 saying it cannot connect\n%s\n%s", code, stdout, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("wrote %s anyway", out)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		cfg := WriteConfig(t, db, map[string]any{"source.slott": "x"})
		if code, _, stderr := run(t, nil, "types", "--config", cfg); code != 2 || !strings.Contains(stderr, "source.slott") {
			t.Fatalf("exit %d, want 2 naming the key\n%s", code, stderr)
		}
	})
	t.Run("flag mistake", func(t *testing.T) {
		code, _, stderr := run(t, nil, "types", "--outt", "x")
		if code != 2 || strings.Count(stderr, "-outt") != 1 || !strings.Contains(stderr, "Usage: cdc-broadcaster types") {
			t.Fatalf("exit %d, want 2 with the error once and types' help\n%s", code, stderr)
		}
	})
	t.Run("help", func(t *testing.T) {
		code, out, stderr := run(t, nil, "types", "-h")
		if code != 0 {
			t.Fatalf("types -h: exit %d\n%s", code, stderr)
		}
		for _, w := range []string{"Usage: cdc-broadcaster types", "TypeScript", "Example:", "-out", "-config", "CDC_SOURCE_DATABASE_URL"} {
			if !strings.Contains(out, w) {
				t.Errorf("types -h lacks %q:\n%s", w, out)
			}
		}
		if code, out, _ := run(t, nil, "help"); code != 0 || !strings.Contains(out, "types ") {
			t.Errorf("help does not list types:\n%s", out)
		}
	})
}

// exampleMapping returns the index of the example config's mapping of
// table, and how many mappings it has.
func exampleMapping(t *testing.T, table string) (index, count int) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Mappings []struct {
			Table string `yaml:"table"`
		} `yaml:"mappings"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	index = slices.IndexFunc(cfg.Mappings, func(m struct {
		Table string `yaml:"table"`
	}) bool {
		return m.Table == table
	})
	if index < 0 {
		t.Fatalf("config.example.yaml maps no table %s", table)
	}
	return index, len(cfg.Mappings)
}

// TestTypesColumnTypes: the types the example school lacks, on a table of
// their own, as types declares them and as tail shows them: an enum (its
// labels), a domain (its text), an unbounded numeric (TOASTable) beside a
// varchar(4) (never TOASTed), a float NaN, a 2-D array, jsonb, bytea, a
// quoted column name; a generated column and one outside the
// publication's column list are left out, with a warning.
func TestTypesColumnTypes(t *testing.T) {
	db := NewDB(t)
	db.Exec(t, `
		CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s complicated');
		CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
		CREATE TABLE typed_things (
			id             bigint PRIMARY KEY,
			code           varchar(4) NOT NULL,
			amount         numeric,
			ratio          double precision,
			mood           mood,
			qty            posint,
			grid           integer[][],
			doc            jsonb NOT NULL DEFAULT '{}',
			raw            bytea,
			at             timestamptz,
			"Display Name" text,
			doubled        bigint GENERATED ALWAYS AS (id * 2) STORED
		);
		ALTER PUBLICATION cdc_broadcaster ADD TABLE typed_things;`)
	users, n := exampleMapping(t, "users")
	cfg := WriteConfig(t, db, map[string]any{
		fmt.Sprintf("mappings.%d.payload", users): []string{"id", "role", "is_active", "email"},
		fmt.Sprintf("mappings.%d", n): map[string]any{
			"table": "typed_things", "domain": "thing",
			"payload":  []string{"id", "code", "amount", "ratio", "mood", "qty", "grid", "doc", "raw", "at", "Display Name", "doubled"},
			"channels": []string{"thing:{id}", "table:typed_things"},
		},
	})
	dir := t.TempDir()
	out := filepath.Join(dir, "realtime-events.d.ts")
	code, _, stderr := run(t, nil, "types", "--config", cfg, "--out", out)
	if code != 0 {
		t.Fatalf("types: exit %d\n%s", code, stderr)
	}
	for _, w := range []string{
		fmt.Sprintf("mappings[%d].payload: column email of table users is not in publication \"cdc_broadcaster\"'s column list", users),
		fmt.Sprintf("mappings[%d].payload: column doubled of table typed_things is a generated column", n),
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks the warning %q:\n%s", w, stderr)
		}
	}
	decl, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	ts := string(decl)
	entry := func(typ string) string {
		i := strings.Index(ts, "'"+typ+"': {")
		if i < 0 {
			t.Fatalf("no entry %s", typ)
		}
		return ts[i : i+strings.Index(ts[i:], "\n  };\n")]
	}
	created, updated := entry("thing.created"), entry("thing.updated")
	for _, w := range []string{
		"      code: string;",
		"      amount: number | string | null;",
		"      ratio: number | 'NaN' | '+Inf' | '-Inf' | null;",
		"      mood: 'happy' | 'sad' | 'it\\'s complicated' | null;",
		"      qty: string | null;",
		"      grid: (number | null)[][] | null;",
		"      doc: unknown;",
		"      raw: string | null;",
		"      at: string | null;",
		"      'Display Name': string | null;",
	} {
		if !strings.Contains(created, w) {
			t.Errorf("thing.created lacks %q:\n%s", w, created)
		}
	}
	for _, w := range []string{"      code: string;", "      amount?: number | string | null;", "      grid?: (number | null)[][] | null;", "      ratio: number"} {
		if !strings.Contains(updated, w) {
			t.Errorf("thing.updated lacks %q:\n%s", w, updated)
		}
	}
	if strings.Contains(ts, "doubled") || strings.Contains(entry("user.created"), "email") {
		t.Errorf("a column the stream never sends is declared")
	}

	// What the stream really sends for these types fits.
	tail := StartTail(t, cfg, "--types", "thing.*")
	db.Exec(t, `
		INSERT INTO typed_things VALUES
			(1, 'ab', 0.1, 'NaN', 'it''s complicated', 5, '{{1,2},{3,NULL}}', '{"a": [1]}', '\x00ff', now(), 'X'),
			(2, 'cd', NULL, 1.5, NULL, NULL, NULL, 'null', NULL, NULL, NULL);
		UPDATE typed_things SET ratio = '-Infinity', amount = 12345678901234567890.5 WHERE id = 1;
		DELETE FROM typed_things WHERE id = 2;
		TRUNCATE typed_things;`)
	var events []typesEvent
	for len(events) < 5 {
		line := tail.Line(t, eventWait)
		var env struct {
			Event map[string]json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatalf("tail line %q: %v", line, err)
		}
		var typ string
		_ = json.Unmarshal(env.Event["eventType"], &typ)
		events = append(events, typesEvent{Type: typ, Raw: env.Event})
	}
	first := events[0]
	for field, raw := range map[string]string{"qty": `"5"`, "mood": `"it's complicated"`, "ratio": `"NaN"`, "amount": `"0.1"`, "raw": `"AP8="`, "grid": `[[1,2],[3,null]]`} {
		if got := string(first.field("data", field)); got != raw {
			t.Errorf("thing.created data.%s = %s, want %s", field, got, raw)
		}
	}
	var b strings.Builder
	b.WriteString("import type { Events } from './realtime-events';\n\n")
	for i, e := range events {
		fmt.Fprintf(&b, "export const e%d: Events['%s'] = %s;\n", i, e.Type, e.literal(t))
	}
	check := b.String()
	if err := os.WriteFile(filepath.Join(dir, "payloads.ts"), []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, output := tsc(t, dir, "payloads.ts"); code != 0 {
		t.Fatalf("the events tail printed do not fit the declarations:\n%s\n%s", output, typesLines(check, tsErrors(output)))
	}
}
