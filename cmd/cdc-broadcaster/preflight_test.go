package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/treasure-home/cdc-broadcaster/config"
)

func TestPlanTables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		explain string
		want    []string
	}{
		{"one scan", `[{"Plan": {"Node Type": "Seq Scan", "Relation Name": "students", "Schema": "public"}}]`, []string{"students"}},
		{
			"join, subplan and another schema, each once",
			`[{"Plan": {"Node Type": "Hash Join", "Plans": [
				{"Relation Name": "report_cards", "Schema": "public"},
				{"Node Type": "Hash", "Plans": [{"Relation Name": "class_teachers", "Schema": "public"}]},
				{"Parent Relationship": "SubPlan", "Relation Name": "logins", "Schema": "audit"},
				{"Relation Name": "report_cards", "Schema": "public"}]}}]`,
			[]string{"audit.logins", "class_teachers", "report_cards"},
		},
		{"no table", `[{"Plan": {"Node Type": "Result"}}]`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := planTables([]byte(tt.explain))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("planTables = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := planTables([]byte("not json")); err == nil {
		t.Fatal("planTables of garbage: no error")
	}
}

func TestCheckAuditDest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	existing := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dest string
		wantErr    string // "" for no error
	}{
		{"stdout", "stdout", ""},
		{"stderr", "stderr", ""},
		{"existing file", existing, ""},
		{"new file in a directory", filepath.Join(dir, "new.log"), ""},
		{"missing directory", filepath.Join(dir, "nodir", "audit.log"), "cannot create"},
		{"a directory", dir, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkAuditDest(tt.dest)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("checkAuditDest(%q) = %v", tt.dest, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checkAuditDest(%q) = %v, want %q", tt.dest, err, tt.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new.log")); !os.IsNotExist(err) {
		t.Fatalf("the check created the file: %v", err)
	}
}

func TestEventTypes(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Mappings: []config.Mapping{
		{Domain: "user"},
		{Domain: "exam", Events: []config.EventRule{{Type: "exam.published"}, {Type: "exam.created"}, {Type: "exam.published"}}},
	}}
	want := []string{"exam.created", "exam.published", "user.created", "user.deleted", "user.truncated", "user.updated"}
	if got := eventTypes(cfg); !reflect.DeepEqual(got, want) {
		t.Fatalf("eventTypes = %v, want %v", got, want)
	}
}
