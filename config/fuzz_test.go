package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary YAML and environment (one KEY=value a line) to
// Parse and Validate: they must never panic, every failure must be
// config.Errors whose entries say something, and whatever the shape check
// accepts the decoder must take too (so every error can name its key).
func FuzzParse(f *testing.F) {
	seeds := []struct{ yaml, env string }{
		{sampleYAML, "CDC_AUTH_JWT_SECRET=s3cret"},
		{sampleYAML, "CDC_SOURCE_HEARTBEAT=5s\nCDC_RETENTION_MAX_EVENTS=x"},
		{"", "CDC_SERVER_ALLOWED_ORIGINS=a,,b"},
		{"source:\n  create: false\n  heartbeat: 0\n", ""},
		{"mappings:\n  - &m {table: t, domain: d, events: [{on: insert, type: d.x}]}\n  - <<: *m\n    table: u\n", ""},
		{"channels:\n  - pattern: \"a:{x}\"\n    params: {x: \"[\"}\n    allow: [{claim: {r: \"{x\"}}]\n", ""},
		{"source: &x {<<: *x}\n", ""},
		{"log: {level: [a], format: {b: c}}\nauth: {jwt: {claims: {A.b: c}}}\n", ""},
		{"source: !foo {slot: !!str 5, create: !!bool true}\nmappings: !!map [!!str {table: x}]\n", ""},
		{"a: [\n", ""},
		{"- 1\n- 2\n", ""},
		{"source: {}\n---\nlog: {}\n", ""},
		{"limits:\n  send_queue: 99999999999999999999\n", "CDC_LIMITS_SEND_QUEUE=-1"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.yaml), s.env)
	}
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		c, err := Parse(data, "fuzz.yaml", strings.Split(env, "\n"))
		if err != nil {
			checkErrors(t, "Parse", err)
			for _, e := range err.(Errors) {
				if e.Key == "" && e.Line == 0 && (strings.HasPrefix(e.Msg, "decode") || strings.HasPrefix(e.Msg, "read yaml")) {
					t.Fatalf("the shape check accepted what the decoder refused: %v", e)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if err := c.Validate(); err != nil {
			checkErrors(t, "Validate", err)
		}
	})
}

// checkErrors fails unless err is a non-empty Errors of non-empty entries.
func checkErrors(t *testing.T, what string, err error) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("%s: error %T is not a non-empty config.Errors: %v", what, err, err)
	}
	for _, e := range errs {
		if e == nil || e.Msg == "" {
			t.Fatalf("%s: empty error in %v", what, errs)
		}
	}
}
