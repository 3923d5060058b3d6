package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestHarnessWALLevelLogical(t *testing.T) {
	db := NewDB(t)
	var level string
	if err := db.Pool.QueryRow(t.Context(), "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
	if n := db.QueryInt(t, "SELECT setting::int FROM pg_settings WHERE name = 'max_replication_slots'"); n < 64 {
		t.Fatalf("max_replication_slots = %d, want >= 64", n)
	}
}

func TestHarnessNewDBAppliesMigrationsInOrder(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"001_schema.sql":       "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);",
		"002_more.sql":         "ALTER TABLE a ADD COLUMN name text; INSERT INTO a VALUES (1, 'one');",
		"010_example_data.sql": "INSERT INTO a VALUES (2, 'two'), (3, 'three');",
		"notes.txt":            "not a migration",
	}
	for name, sql := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		opts []DBOption
		rows int64
	}{
		{name: "without example data", opts: []DBOption{withMigrationsDir(dir)}, rows: 1},
		{name: "with example data", opts: []DBOption{withMigrationsDir(dir), WithExampleData()}, rows: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := NewDB(t, tc.opts...)
			if !strings.HasPrefix(db.Name, "t_") {
				t.Errorf("name %q lacks the t_ prefix", db.Name)
			}
			if n := db.QueryInt(t, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"); n != 2 {
				t.Errorf("public tables = %d, want 2", n)
			}
			if n := db.QueryInt(t, "SELECT count(*) FROM a"); n != tc.rows {
				t.Errorf("rows in a = %d, want %d", n, tc.rows)
			}
		})
	}
}

func TestHarnessNewDBRealMigrations(t *testing.T) {
	files, err := migrationFiles(filepath.Join(repoRoot, "migrations"), false)
	if err != nil {
		t.Fatal(err)
	}
	db := NewDB(t)
	tables := db.QueryInt(t, "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
	if len(files) == 0 && tables != 0 {
		t.Errorf("no migrations but %d tables", tables)
	}
	if len(files) > 0 && tables == 0 {
		t.Errorf("%d migrations applied but no tables exist", len(files))
	}
	t.Logf("%d migrations, %d tables", len(files), tables)
}

func TestHarnessDropsDatabaseAndSlots(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		db := NewDB(t)
		name = db.Name
		db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
	})
	if n := adminQueryInt(t, "SELECT count(*) FROM pg_database WHERE datname = $1", name); n != 0 {
		t.Errorf("database %s still exists", name)
	}
	if n := adminQueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", name); n != 0 {
		t.Errorf("slot %s still exists", name)
	}
}

func adminQueryInt(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := adminPool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const exampleYAML = `# example
source:
  database_url: postgres://cdc@localhost:5432/school   # added by the program
  slot: cdc_broadcaster
  publication: cdc_broadcaster
retention:
  max_events: 100000
mappings:
  - table: exams
    domain: exam
`

func TestHarnessEditYAML(t *testing.T) {
	tests := []struct {
		name  string
		edits map[string]any
		check func(t *testing.T, m map[string]any, text string)
	}{
		{
			name:  "replace scalar keeps comment and order",
			edits: map[string]any{"source.slot": "s1"},
			check: func(t *testing.T, m map[string]any, text string) {
				if got := m["source"].(map[string]any)["slot"]; got != "s1" {
					t.Errorf("slot = %v", got)
				}
				if !strings.Contains(text, "# added by the program") || !strings.Contains(text, "# example") {
					t.Errorf("comments lost:\n%s", text)
				}
				if strings.Index(text, "source:") > strings.Index(text, "retention:") {
					t.Errorf("order lost:\n%s", text)
				}
			},
		},
		{
			name:  "add missing nested keys",
			edits: map[string]any{"server.listen": "127.0.0.1:0", "retention.max_age": "1m", "source.create": false},
			check: func(t *testing.T, m map[string]any, _ string) {
				if got := m["server"].(map[string]any)["listen"]; got != "127.0.0.1:0" {
					t.Errorf("server.listen = %v", got)
				}
				r := m["retention"].(map[string]any)
				if r["max_age"] != "1m" || r["max_events"] != 100000 {
					t.Errorf("retention = %v", r)
				}
				if m["source"].(map[string]any)["create"] != false {
					t.Errorf("source.create not false")
				}
			},
		},
		{
			name:  "list index and structured values",
			edits: map[string]any{"mappings.0.payload": []string{"id", "status"}, "mappings.1": map[string]any{"table": "t2", "domain": "d2"}},
			check: func(t *testing.T, m map[string]any, _ string) {
				ms := m["mappings"].([]any)
				if len(ms) != 2 {
					t.Fatalf("mappings = %v", ms)
				}
				p := ms[0].(map[string]any)["payload"].([]any)
				if len(p) != 2 || p[1] != "status" {
					t.Errorf("payload = %v", p)
				}
				if ms[1].(map[string]any)["table"] != "t2" {
					t.Errorf("mappings[1] = %v", ms[1])
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := editYAML([]byte(exampleYAML), tc.edits)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := yaml.Unmarshal(out, &m); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			tc.check(t, m, string(out))
		})
	}
	if _, err := editYAML([]byte(exampleYAML), map[string]any{"mappings.x": 1}); err == nil {
		t.Error("a non-numeric list index was accepted")
	}
}

func TestHarnessWriteConfigSetsDatabaseURL(t *testing.T) {
	db := &DB{Name: "x", URL: "postgres://postgres@127.0.0.1:1/x?sslmode=disable"}
	src := filepath.Join(t.TempDir(), "example.yaml")
	if err := os.WriteFile(src, []byte(exampleYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfigFrom(t, src, db, map[string]any{"retention.max_events": 5})
	var cfg struct {
		Source    map[string]any `yaml:"source"`
		Retention map[string]any `yaml:"retention"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Source["database_url"] != db.URL || cfg.Source["slot"] != "cdc_broadcaster" || cfg.Retention["max_events"] != 5 {
		t.Errorf("config = %+v", cfg)
	}
}

func TestHarnessWriteConfigExample(t *testing.T) {
	db := NewDB(t)
	path := WriteConfig(t, db, map[string]any{"source.slot": "harness_slot"})
	var cfg struct {
		Source map[string]any `yaml:"source"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Source["database_url"] != db.URL || cfg.Source["slot"] != "harness_slot" {
		t.Errorf("source = %v", cfg.Source)
	}
}

func TestHarnessClusterRestartKeepsData(t *testing.T) {
	db := NewDB(t)
	db.Exec(t, "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 100)")
	PG.Restart(t)
	if n := db.QueryInt(t, "SELECT count(*) FROM kept"); n != 100 {
		t.Fatalf("after restart: %d rows, want 100", n)
	}
	PG.Stop(t)
	PG.Start(t)
	if n := db.QueryInt(t, "SELECT count(*) FROM kept"); n != 100 {
		t.Fatalf("after stop/start: %d rows, want 100", n)
	}
}

// procScript prints a line, an event with a number too big for a float64,
// logs readiness on stderr and exits 3; with "hang" it waits for SIGTERM,
// its trap set before it prints anything, so that a SIGTERM sent once a line
// is seen always finds it (set after, the shell could die of the signal).
const procScript = `if [ "$1" = hang ]; then trap 'echo bye >&2; exit 0' TERM; fi
echo "starting $HARNESS_SELFTEST" >&2
echo '{"level":"INFO","msg":"streaming"}' >&2
echo 'line one'
echo '{"channels":["exam:9"],"event":{"eventId":"A-1","eventType":"exam.published","data":{"id":9007199254740993},"txId":7731}}'
if [ "$1" = hang ]; then while :; do sleep 0.05; done; fi
printf 'no newline'
exit 3`

func TestHarnessProc(t *testing.T) {
	t.Run("lines, events and exit code", func(t *testing.T) {
		p := startProgram(t, "/bin/sh", []string{"HARNESS_SELFTEST=yes"}, "-c", procScript, "sh")
		p.WaitStderr(t, readinessMsg, readyTimeout)
		if got := p.Line(t, readyTimeout); got != "line one" {
			t.Fatalf("line = %q", got)
		}
		e := p.NextEvent(t, readyTimeout)
		id, ok := e.Event.Data["id"].(json.Number)
		if e.Event.EventType != "exam.published" || !ok || id.String() != "9007199254740993" || e.Event.TxID != 7731 || e.Channels[0] != "exam:9" {
			t.Fatalf("event = %+v", e)
		}
		if code := p.Wait(t, readyTimeout); code != 3 {
			t.Fatalf("exit code = %d, want 3", code)
		}
		if got := p.Line(t, readyTimeout); got != "no newline" {
			t.Fatalf("last line = %q", got)
		}
		if len(p.Stdout()) != 3 || !strings.Contains(p.Stderr(), "starting yes") {
			t.Fatalf("stdout = %q, stderr = %q", p.Stdout(), p.Stderr())
		}
	})
	t.Run("stop sends SIGTERM", func(t *testing.T) {
		p := startProgram(t, "/bin/sh", nil, "-c", procScript, "sh", "hang")
		p.Line(t, readyTimeout)
		p.WaitEvent(t, readyTimeout, func(e Envelope) bool { return e.Event.EventID == "A-1" })
		if code := p.Stop(t); code != 0 {
			t.Fatalf("exit code = %d, want 0; stderr:\n%s", code, p.Stderr())
		}
		if !strings.HasSuffix(p.Stderr(), "bye\n") {
			t.Fatalf("stderr = %q", p.Stderr())
		}
	})
	t.Run("kill", func(t *testing.T) {
		p := startProgram(t, "/bin/sh", nil, "-c", procScript, "sh", "hang")
		p.WaitStderr(t, readinessMsg, readyTimeout)
		p.Kill(t)
		if code := p.Wait(t, readyTimeout); code != -1 {
			t.Fatalf("exit code = %d, want -1", code)
		}
	})
}
