package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// failingDB refuses every query, as a database does to a role without the
// SELECT privilege.
type failingDB struct{}

func (failingDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("permission denied for table class_teachers")
}

// TestLoggingRulesLogsFailures: an access check that fails is logged at
// error level, once per interval, with the count of failures behind it.
func TestLoggingRulesLogsFailures(t *testing.T) {
	rules, err := acl.NewRules([]config.Channel{{
		Pattern: "class:{classId}",
		Allow:   []config.AllowRule{{SQL: "SELECT 1 FROM class_teachers WHERE class_id = :classId"}},
	}}, config.Auth{}, failingDB{}, acl.RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l := newLoggingRules(rules, slog.New(slog.NewTextHandler(&buf, nil)))
	ch, err := l.Resolve("class:1")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ok, err := l.Allowed(context.Background(), &acl.Claims{UserID: "7"}, ch); ok || err == nil {
			t.Fatalf("Allowed = %v, %v; want a refusal with an error", ok, err)
		}
	}
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Fatalf("%d lines logged, want 1 per interval:\n%s", n, out)
	}
	for _, w := range []string{"level=ERROR", "access check failed", "permission denied for table class_teachers", "failures=1"} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %q:\n%s", w, out)
		}
	}
}
