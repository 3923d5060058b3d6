package integration

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// run runs the binary to completion and returns its exit code, stdout and
// stderr.
func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	p := Start(t, env, args...)
	code := p.Wait(t, time.Minute)
	return code, strings.Join(p.Stdout(), "\n"), p.Stderr()
}

// TestBadConfigRefusedAtStart: each broken mapping stops serve before it
// touches the stream, with exit code 2 and a message naming the key, the
// table and the reason.
func TestBadConfigRefusedAtStart(t *testing.T) {
	db := NewDB(t)
	tests := []struct {
		name  string
		edits map[string]any
		want  []string
	}{
		{"unknown key", map[string]any{"source.slott": "x"}, []string{"source.slott", "unknown key"}},
		{"unknown key in a mapping", map[string]any{"mappings.0.evnets": []any{}}, []string{"mappings[0].evnets", "unknown key"}},
		{"wrong type", map[string]any{"retention.max_events": "lots"}, []string{"retention.max_events"}},
		{"bad duration", map[string]any{"source.heartbeat": "soon"}, []string{"source.heartbeat", "soon"}},
		{"missing payload column", map[string]any{"mappings.0.payload": []string{"id", "nosuch"}}, []string{"mappings[0].payload", "exams", "nosuch"}},
		{"CEL that does not compile", map[string]any{"mappings.0.events.0.when": "new.status == "}, []string{"mappings[0].events[0].when", "exams", "new.status == "}},
		{"CEL comparing a number with a string", map[string]any{"mappings.0.events.0.when": "new.id == 'seven'"}, []string{"mappings[0].events[0].when", "exams", "new.id == 'seven'"}},
		{"CEL naming a missing column", map[string]any{"mappings.0.events.0.when": "new.statuz == 'x'"}, []string{"mappings[0].events[0].when", "statuz"}},
		{"template naming a missing column", map[string]any{"mappings.0.channels": []string{"class:{klass_id}"}}, []string{"mappings[0].channels[0]", "exams", "klass_id"}},
		{"mapped table missing", map[string]any{"mappings.0.table": "examz"}, []string{"mappings[0]", "examz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edits := map[string]any{"auth.jwt.secret": "s", "source.slot": "never_created"}
			for k, v := range tt.edits {
				edits[k] = v
			}
			cfg := WriteConfig(t, db, edits)
			code, _, stderr := run(t, nil, "serve", "--config", cfg)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("panicked:\n%s", stderr)
			}
			if !strings.Contains(stderr, filepath.Base(cfg)+":") {
				t.Errorf("stderr does not name the file and line:\n%s", stderr)
			}
		})
	}
	if n := db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'never_created'"); n != 0 {
		t.Fatalf("a refused config still created the slot")
	}
}

// TestAllProblemsReportedTogether: several mistakes, one run, every one named.
func TestAllProblemsReportedTogether(t *testing.T) {
	db := NewDB(t)
	cfg := WriteConfig(t, db, map[string]any{
		"auth.jwt.secret":          "s",
		"mappings.0.payload":       []string{"nosuch"},
		"mappings.1.events.0.when": "new.status == 1",
		"mappings.2.channels":      []string{"x:{nothing}"},
	})
	code, _, stderr := run(t, nil, "serve", "--config", cfg)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, w := range []string{"mappings[0].payload", "mappings[1].events[0].when", "mappings[2].channels[0]"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

func TestSetupAndCheck(t *testing.T) {
	db := NewDB(t)
	// A database that has the schema but was never prepared.
	db.Exec(t, "DROP PUBLICATION cdc_broadcaster; ALTER TABLE exams REPLICA IDENTITY DEFAULT")
	cfg := WriteConfig(t, db, map[string]any{"auth.jwt.secret": "s", "source.create": false, "source.slot": "s_" + db.Name})

	code, out, stderr := run(t, nil, "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("check on an unprepared database: exit %d, want 1\n%s\n%s", code, out, stderr)
	}
	for _, w := range []string{`publication "cdc_broadcaster" does not exist`, `slot "s_` + db.Name + `" does not exist`, "reads old status of table exams", "REPLICA IDENTITY FULL"} {
		if !strings.Contains(out, w) {
			t.Errorf("check output lacks %q:\n%s", w, out)
		}
	}

	code, out, stderr = run(t, nil, "setup", "--dry-run", "--config", cfg)
	if code != 0 {
		t.Fatalf("setup --dry-run: exit %d\n%s", code, stderr)
	}
	for _, w := range []string{"CREATE PUBLICATION \"cdc_broadcaster\" FOR TABLE", "ALTER TABLE \"exams\" REPLICA IDENTITY FULL", "pg_create_logical_replication_slot('s_" + db.Name + "', 'pgoutput')"} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run lacks %q:\n%s", w, out)
		}
	}
	if n := db.QueryInt(t, "SELECT count(*) FROM pg_publication"); n != 0 {
		t.Fatalf("--dry-run created a publication")
	}

	if code, out, stderr = run(t, nil, "setup", "--config", cfg); code != 0 {
		t.Fatalf("setup: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, out, _ = run(t, nil, "setup", "--config", cfg); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second setup is not idempotent: exit %d\n%s", code, out)
	}
	if code, out, stderr = run(t, nil, "check", "--config", cfg); code != 0 || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("check after setup: exit %d\n%s\n%s", code, out, stderr)
	}
}

func TestServeRefusesUnpreparedDatabaseWithoutCreate(t *testing.T) {
	db := NewDB(t)
	db.Exec(t, "DROP PUBLICATION cdc_broadcaster")
	cfg := WriteConfig(t, db, map[string]any{"auth.jwt.secret": "s", "source.create": false})
	code, _, stderr := run(t, nil, "serve", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "CREATE PUBLICATION") || !strings.Contains(stderr, "setup") {
		t.Fatalf("exit %d, want 1 with the SQL setup would run:\n%s", code, stderr)
	}
}

func TestTailRefusesMissingPublication(t *testing.T) {
	db := NewDB(t)
	db.Exec(t, "DROP PUBLICATION cdc_broadcaster")
	cfg := WriteConfig(t, db, nil)
	code, _, stderr := run(t, nil, "tail", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "publication") {
		t.Fatalf("exit %d, want 1 naming the publication:\n%s", code, stderr)
	}
	if n := db.QueryInt(t, "SELECT count(*) FROM pg_publication"); n != 0 {
		t.Fatalf("tail created a publication: it must touch nothing")
	}
}

func TestTailTypesFilter(t *testing.T) {
	db := NewDB(t, WithExampleData())
	cfg := WriteConfig(t, db, nil)
	tail := StartTail(t, cfg, "--types", "announcement.*,user.deleted")
	db.Exec(t, "INSERT INTO subjects (name, code) VALUES ('Astronomy', 'AST')")
	db.Exec(t, "INSERT INTO announcements (title, body, created_by) VALUES ('Hi', 'x', 1)")
	if e := tail.NextEvent(t, eventWait); e.Event.EventType != "announcement.created" {
		t.Fatalf("got %s, want only announcement.* and user.deleted", e.Event.EventType)
	}
	code, _, stderr := run(t, nil, "tail", "--config", cfg, "--types", "[")
	if code != 2 || !strings.Contains(stderr, "bad pattern") {
		t.Fatalf("bad glob: exit %d\n%s", code, stderr)
	}
}

func TestTokenAndVersion(t *testing.T) {
	db := NewDB(t)
	cfg := WriteConfig(t, db, nil)
	env := []string{"CDC_AUTH_JWT_SECRET=from-env-secret"}
	code, out, stderr := run(t, env, "token", "--config", cfg, "--sub", "19", "--role", "teacher", "--ttl", "5m")
	if code != 0 {
		t.Fatalf("token: exit %d\n%s", code, stderr)
	}
	tok, err := jwt.Parse(strings.TrimSpace(out), func(*jwt.Token) (any, error) { return []byte("from-env-secret"), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("treasure-home"), jwt.WithAudience("realtime"), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	claims := tok.Claims.(jwt.MapClaims)
	if claims["sub"] != "19" || claims["role"] != "teacher" {
		t.Fatalf("claims %v", claims)
	}
	exp, _ := claims.GetExpirationTime()
	if d := time.Until(exp.Time); d < 4*time.Minute || d > 6*time.Minute {
		t.Fatalf("ttl: expires in %v, want about 5m", d)
	}
	if code, _, stderr := run(t, nil, "token", "--config", cfg, "--sub", "19"); code != 2 || !strings.Contains(stderr, "CDC_AUTH_JWT_SECRET") {
		t.Fatalf("token without a secret: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := run(t, nil, "token", "--config", cfg); code != 2 || !strings.Contains(stderr, "--sub") {
		t.Fatalf("token without --sub: exit %d\n%s", code, stderr)
	}
	if code, out, _ := run(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "cdc-broadcaster ") {
		t.Fatalf("version: exit %d %q", code, out)
	}
	if code, _, _ := run(t, nil, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
	if code, _, stderr := run(t, nil, "check", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 2 || !strings.Contains(stderr, "none.yaml") {
		t.Fatalf("missing config file: exit %d\n%s", code, stderr)
	}
}

// TestServePprof: `serve --pprof addr` serves Go's runtime profiles on a
// listener of its own, and says so in its log.
func TestServePprof(t *testing.T) {
	db := NewDB(t, WithExampleData())
	cfg := WriteConfig(t, db, map[string]any{
		"source.slot": "s_" + db.Name, "server.listen": "127.0.0.1:0", "auth.jwt.secret": gwSecret,
	})
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	p := Start(t, nil, "serve", "--config", cfg, "--pprof", addr)
	p.WaitStderr(t, `"msg":"pprof profiles served; keep this address private","listen":"`+addr+`"`, readyTimeout)
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "serve") {
		t.Fatalf("GET /debug/pprof/cmdline: %d %q", resp.StatusCode, body)
	}
	m := servingListen.FindStringSubmatch(p.Stderr())
	if m == nil {
		p.WaitStderr(t, `"msg":"serving"`, readyTimeout)
		m = servingListen.FindStringSubmatch(p.Stderr())
	}
	// The public listener has no profiles.
	resp2, err := http.Get("http://" + m[1] + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode == http.StatusOK {
		t.Fatal("the public listener serves /debug/pprof/")
	}
}

// TestCommandHelp: each command's -h says what it is for, shows an
// example, its flags and the CDC_* variables it reads, on stdout, exit 0;
// a flag mistake prints the error once, then that command's help, exit 2.
func TestCommandHelp(t *testing.T) {
	tests := []struct {
		command string
		want    []string
	}{
		{"serve", []string{"Run the service", "Example:", "-pprof", "-config", "CDC_SOURCE_DATABASE_URL", "CDC_AUTH_JWT_SECRET"}},
		{"check", []string{"Verify the config", "Example:", "-config", "CDC_SOURCE_DATABASE_URL"}},
		{"setup", []string{"Create the publication", "Example:", "-dry-run", "CDC_SOURCE_DATABASE_URL"}},
		{"tail", []string{"Print mapped and emitted events", "Example:", "-types", "CDC_SOURCE_DATABASE_URL"}},
		{"token", []string{"Mint a JWT", "Example:", "-sub", "-ttl", "CDC_AUTH_JWT_SECRET"}},
		{"version", []string{"Print the version", "Example:"}},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := run(t, nil, tt.command, "-h")
			if code != 0 {
				t.Fatalf("%s -h: exit %d\n%s", tt.command, code, stderr)
			}
			for _, w := range append([]string{"Usage: cdc-broadcaster " + tt.command}, tt.want...) {
				if !strings.Contains(out, w) {
					t.Errorf("%s -h lacks %q:\n%s", tt.command, w, out)
				}
			}
		})
	}
	t.Run("flag error", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := run(t, nil, "token", "--ttl", "1x")
		if code != 2 {
			t.Fatalf("token --ttl 1x: exit %d, want 2\n%s", code, stderr)
		}
		if n := strings.Count(stderr, `invalid value "1x"`); n != 1 {
			t.Errorf("the error is printed %d times, want once:\n%s", n, stderr)
		}
		if !strings.Contains(stderr, "Usage: cdc-broadcaster token") || !strings.Contains(stderr, "-sub") || strings.Contains(stderr, "Commands:") {
			t.Errorf("want token's own help after the error:\n%s", stderr)
		}
	})
	t.Run("--version", func(t *testing.T) {
		t.Parallel()
		code, out, stderr := run(t, nil, "--version")
		_, want, _ := run(t, nil, "version")
		if code != 0 || out != want || !strings.HasPrefix(out, "cdc-broadcaster ") {
			t.Fatalf("--version: exit %d %q, want %q\n%s", code, out, want, stderr)
		}
	})
	t.Run("no config file", func(t *testing.T) {
		t.Parallel()
		// The test's directory, the binary's too, has no config.yaml.
		code, _, stderr := run(t, nil, "check")
		if code != 2 || !strings.Contains(stderr, "--config") || !strings.Contains(stderr, "config.example.yaml") {
			t.Fatalf("check without config.yaml: exit %d, want 2 saying to pass --config or copy config.example.yaml\n%s", code, stderr)
		}
	})
}

// TestCommandsWithoutJWTSecret: setup verifies no token, so it runs
// without the JWT key material (tail too: TestTailTypesFilter); check reports the missing secret serve
// would need as one problem among the rest rather than refusing to look.
func TestCommandsWithoutJWTSecret(t *testing.T) {
	db := NewDB(t)
	cfg := WriteConfig(t, db, map[string]any{"source.slot": "s_" + db.Name})
	if code, out, stderr := run(t, nil, "setup", "--dry-run", "--config", cfg); code != 0 {
		t.Fatalf("setup --dry-run without a secret: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr := run(t, nil, "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "auth.jwt.secret") || !strings.Contains(out, "1 problem(s) found") {
		t.Fatalf("check without a secret: exit %d, want 1 with the secret as its only problem\n%s\n%s", code, out, stderr)
	}
	// tail without a secret: TestTailTypesFilter.
}

// TestTailWarnsAboutUnknownTypes: a --types glob that matches no event type
// of the mapping's catalogue is reported on stderr instead of waiting in
// silence.
func TestTailWarnsAboutUnknownTypes(t *testing.T) {
	db := NewDB(t)
	cfg := WriteConfig(t, db, nil)
	tail := Start(t, nil, "tail", "--config", cfg, "--types", "exams.*,exam.*")
	tail.WaitStderr(t, `--types "exams.*" matches no event type`, readyTimeout)
	if strings.Contains(tail.Stderr(), `"exam.*" matches no`) {
		t.Fatalf("warned about a glob that matches:\n%s", tail.Stderr())
	}
	if !strings.Contains(tail.Stderr(), "exam.published") {
		t.Errorf("the warning does not list the types:\n%s", tail.Stderr())
	}
}
