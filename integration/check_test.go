package integration

import (
	"path/filepath"
	"strings"
	"testing"
)

// roleURL is db's URL for the example's own role, cdc_broadcaster
// (migrations/002_replication.sql): LOGIN REPLICATION, owner of nothing,
// SELECT only where the migration grants it.
func roleURL(db *DB) string {
	return strings.Replace(db.URL, "postgres://postgres@", "postgres://cdc_broadcaster@", 1)
}

// TestServeRefusesBeforeDDL: each config that serve cannot run with is
// refused with exit 2 before serve creates anything (no slot, no
// publication: with systemd's RestartPreventExitStatus=2 nothing would
// clean them up), and check names the same problem instead of saying ok.
func TestServeRefusesBeforeDDL(t *testing.T) {
	other := NewDB(t) // owns the slot of "slot of another database"
	tests := []struct {
		name  string
		edits map[string]any
		setup func(t *testing.T, db *DB, slot string)
		want  []string
	}{
		{
			name:  "unknown placeholder in a sql rule",
			edits: map[string]any{"channels.4.allow.1.sql": "SELECT 1 FROM class_teachers WHERE class_id = :clasId AND teacher_id = :user_id"},
			want:  []string{"channels[4].allow[1]", ":clasId"},
		},
		{
			name:  "positional parameter in a sql rule",
			edits: map[string]any{"channels.4.allow.1.sql": "SELECT 1 FROM class_teachers WHERE class_id = $1"},
			want:  []string{"channels[4].allow[1]", "positional"},
		},
		{
			name:  "unwritable audit log",
			edits: map[string]any{"audit.log": "/nonexistent-dir/audit.log"},
			want:  []string{"audit.log", "/nonexistent-dir/audit.log"},
		},
		{
			name:  "bad trusted proxy",
			edits: map[string]any{"server.trusted_proxies": []string{"10.0.0.1", "10.0.0.300"}},
			want:  []string{"server.trusted_proxies[1]", "10.0.0.300"},
		},
		{
			name:  "sql rule naming a missing table",
			edits: map[string]any{"channels.4.allow.1.sql": "SELECT 1 FROM class_teacherz WHERE class_id = :classId AND teacher_id = :user_id"},
			want:  []string{"channels[4].allow[1].sql", "class_teacherz"},
		},
		{
			name:  "sql rule naming a missing column",
			edits: map[string]any{"channels.4.allow.2.sql": "SELECT 1 FROM students WHERE klass_id = :classId AND user_id = :user_id"},
			want:  []string{"channels[4].allow[2].sql", "klass_id"},
		},
		{
			name:  "mapping template of no channel pattern",
			edits: map[string]any{"mappings.0.channels": []string{"exam:{id}", "klass:{class_id}"}},
			want:  []string{"mappings[0].channels[1]", "klass:{class_id}", "no channel pattern"},
		},
		{
			name:  "event template of no channel pattern",
			edits: map[string]any{"mappings.1.events.5.channels": []string{"exam:{exam_id}", "students:{student_id}"}},
			want:  []string{"mappings[1].events[5].channels[1]", "students:{student_id}"},
		},
		{
			name: "slot of another database",
			setup: func(t *testing.T, db *DB, slot string) {
				other.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
				t.Cleanup(func() { other.Exec(t, "SELECT pg_drop_replication_slot($1)", slot) })
			},
			want: []string{"source.slot", "belongs to database", other.Name},
		},
		{
			name:  "malformed database url",
			edits: map[string]any{"source.database_url": "postgres://localhost:notaport/school"},
			want:  []string{"source.database_url"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := NewDB(t)
			db.Exec(t, "DROP PUBLICATION cdc_broadcaster")
			slot := "s_" + db.Name
			if tt.setup != nil {
				tt.setup(t, db, slot)
			}
			edits := map[string]any{"auth.jwt.secret": "s", "source.slot": slot}
			for k, v := range tt.edits {
				edits[k] = v
			}
			cfg := WriteConfig(t, db, edits)

			code, out, stderr := run(t, nil, "serve", "--config", cfg)
			if code != 2 {
				t.Fatalf("serve: exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("serve's stderr lacks %q:\n%s", w, stderr)
				}
			}
			if !strings.Contains(stderr, filepath.Base(cfg)+":") {
				t.Errorf("serve's stderr does not name the file and line:\n%s", stderr)
			}
			if n := db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE database = $1", db.Name); n != 0 {
				t.Errorf("serve left %d replication slot(s) in %s", n, db.Name)
			}
			if n := db.QueryInt(t, "SELECT count(*) FROM pg_publication"); n != 0 {
				t.Errorf("serve created a publication")
			}

			code, out, stderr = run(t, nil, "check", "--config", cfg)
			if code != 1 && code != 2 {
				t.Fatalf("check: exit %d, want 1 or 2\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(out+stderr, w) {
					t.Errorf("check does not say %q:\n%s%s", w, out, stderr)
				}
			}
		})
	}
}

// TestSetupRefusesSlotOfAnotherDatabase: setup does not take a slot of the
// same name in another database of the cluster for its own.
func TestSetupRefusesSlotOfAnotherDatabase(t *testing.T) {
	db, other := NewDB(t), NewDB(t)
	slot := "s_" + db.Name
	other.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
	t.Cleanup(func() { other.Exec(t, "SELECT pg_drop_replication_slot($1)", slot) })
	cfg := WriteConfig(t, db, map[string]any{"source.slot": slot})
	code, out, stderr := run(t, nil, "setup", "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "belongs to database") || !strings.Contains(stderr, other.Name) {
		t.Fatalf("setup: exit %d, want 2 naming the slot's database\n%s\n%s", code, out, stderr)
	}
}

// TestMissingSelectPrivilege: a role that may not read a table the sql
// rules read is caught by check (a problem naming the rule and the table)
// and by serve (exit 2 before it creates the slot), not at the first
// subscription, where every rule would answer "access could not be
// checked".
func TestMissingSelectPrivilege(t *testing.T) {
	db := NewDB(t)
	db.Exec(t, "REVOKE SELECT ON parent_students FROM cdc_broadcaster")
	slot := "s_" + db.Name
	cfg := WriteConfig(t, db, map[string]any{
		"source.database_url": roleURL(db), "auth.jwt.secret": "s", "source.slot": slot,
	})

	code, out, stderr := run(t, nil, "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("check: exit %d, want 1\n%s\n%s", code, out, stderr)
	}
	// student:{studentId} allow[2] and reportcard:{reportCardId} allow[3]
	// read parent_students.
	for _, w := range []string{"channels[6].allow[2].sql", "channels[7].allow[3].sql", "parent_students", "cdc_broadcaster"} {
		if !strings.Contains(out, w) {
			t.Errorf("check output lacks %q:\n%s", w, out)
		}
	}

	code, _, stderr = run(t, nil, "serve", "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "parent_students") {
		t.Fatalf("serve: exit %d, want 2 naming parent_students\n%s", code, stderr)
	}
	if n := db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot); n != 0 {
		t.Fatalf("serve created the slot before refusing")
	}
}

// TestCheckExampleConfig: config.example.yaml checks clean against the
// example school (migrations/), as the role the migrations make for it:
// no problem, and no sql rule reading a table its recheck_on leaves out.
func TestCheckExampleConfig(t *testing.T) {
	db := NewDB(t, WithExampleData())
	cfg := WriteConfig(t, db, map[string]any{
		"source.database_url": roleURL(db), "auth.jwt.secret": "s", "source.slot": "s_" + db.Name,
	})
	code, out, stderr := run(t, nil, "check", "--config", cfg)
	if code != 0 || !strings.HasPrefix(out, "ok:") || strings.Contains(out, "warning:") {
		t.Fatalf("check of the example: exit %d\n%s\n%s", code, out, stderr)
	}
}

// TestCheckWarnsAboutRecheckOn: a sql rule reading a table that its
// channel's recheck_on leaves out is a warning, not a problem.
func TestCheckWarnsAboutRecheckOn(t *testing.T) {
	db := NewDB(t)
	cfg := WriteConfig(t, db, map[string]any{
		"auth.jwt.secret": "s", "source.slot": "s_" + db.Name,
		"channels.7.recheck_on": []string{"class_teachers", "students"},
	})
	code, out, stderr := run(t, nil, "check", "--config", cfg)
	if code != 0 {
		t.Fatalf("check: exit %d, want 0 (a warning is no problem)\n%s\n%s", code, out, stderr)
	}
	for _, w := range []string{"warning:", "channels[7].allow[1].sql", "report_cards", "channels[7].recheck_on", filepath.Base(cfg) + ":"} {
		if !strings.Contains(out, w) {
			t.Errorf("check output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "channels[4]") || strings.Contains(out, "table class_teachers, which") {
		t.Errorf("warned about a table recheck_on lists:\n%s", out)
	}
}
