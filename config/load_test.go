package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleYAML follows docs/config.md; the HMAC secret comes from the
// environment.
const sampleYAML = `source:
  database_url: postgres://cdc@localhost:5432/school
  slot: cdc_broadcaster
  publication: cdc_broadcaster
  create: true
  heartbeat: 30s

server:
  listen: ":8080"
  allowed_origins: ["http://localhost:8080"]
  drain_timeout: 10s
  demo: false

auth:
  jwt:
    algorithms: [HS256]
    secret: ""
    issuer: treasure-home
    audience: realtime
    leeway: 30s
    claims: {user_id: sub, role: role}
  admin_roles: [admin, super_admin]
  acl_cache_ttl: 60s

retention:
  max_events: 100000
  max_age: 15m

limits:
  max_connections_per_ip_per_minute: 60
  max_connections_per_user: 10
  max_subscriptions_per_connection: 200
  max_frame_bytes: 65536
  max_messages_per_second: 50
  send_queue: 1024

audit:
  log: stdout

mappings:
  - table: exams
    domain: exam
    payload: [id, class_id, subject_id, status]
    actor: updated_by
    channels: ["exam:{id}", "class:{class_id}", "role:teacher", "table:exams"]
    events:
      - on: update
        when: "old.status != 'published' && new.status == 'published'"
        type: exam.published
      - on: insert
        type: exam.created
      - on: update
        type: exam.updated
      - on: delete
        type: exam.deleted
  - table: students
    domain: student
    channels: ["class:{old.class_id}", "class:{new.class_id}"]

channels:
  - pattern: "user:{userId}"
    params: {userId: "^[0-9A-Za-z_-]{1,64}$"}
    allow:
      - self: userId
      - roles: [admin, super_admin]
  - pattern: "role:{role}"
    allow:
      - claim: {role: "{role}"}
  - pattern: "table:{table}"
    allow:
      - roles: [admin, super_admin]
  - pattern: "class:{classId}"
    allow:
      - roles: [admin, super_admin]
      - sql: "SELECT 1 FROM class_teachers WHERE class_id = :classId AND teacher_id = :user_id"
    recheck_on: [class_teachers, students]
`

var sampleEnv = []string{"CDC_AUTH_JWT_SECRET=s3cret", "HOME=/root"}

// mustParse parses src or fails the test.
func mustParse(t *testing.T, src string, env ...string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), "config.yaml", env)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

// parseErrors parses src and returns its errors, failing when there are
// none or when they are not Errors.
func parseErrors(t *testing.T, src string, env ...string) Errors {
	t.Helper()
	_, err := Parse([]byte(src), "config.yaml", env)
	if err == nil {
		t.Fatalf("parse: no error for\n%s", src)
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("parse: error %T is not config.Errors: %v", err, err)
	}
	return errs
}

func TestParseSample(t *testing.T) {
	c := mustParse(t, sampleYAML, sampleEnv...)
	if err := c.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if c.File != "config.yaml" {
		t.Errorf("File = %q", c.File)
	}
	if c.Auth.JWT.Secret != "s3cret" {
		t.Errorf("secret = %q, want it from the environment", c.Auth.JWT.Secret)
	}
	if len(c.Mappings) != 2 || len(c.Mappings[0].Events) != 4 {
		t.Fatalf("mappings = %+v", c.Mappings)
	}
	r := c.Mappings[0].Events[0]
	want := EventRule{On: "update", When: "old.status != 'published' && new.status == 'published'", Type: "exam.published"}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("events[0] = %+v, want %+v", r, want)
	}
	// Keys inside the list sections keep their case (viper would lower them).
	if got := c.Channels[0].Params["userId"]; got != "^[0-9A-Za-z_-]{1,64}$" {
		t.Errorf(`params["userId"] = %q (params: %v)`, got, c.Channels[0].Params)
	}
	if got := c.Channels[3].RecheckOn; !reflect.DeepEqual(got, []string{"class_teachers", "students"}) {
		t.Errorf("recheck_on = %v", got)
	}
	if got := c.Server.AllowedOrigins; !reflect.DeepEqual(got, []string{"http://localhost:8080"}) {
		t.Errorf("allowed_origins = %v", got)
	}
}

func TestDefaults(t *testing.T) {
	want := Config{
		Source: Source{Slot: "cdc_broadcaster", Publication: "cdc_broadcaster", Create: true,
			Heartbeat: 30 * time.Second, StatusInterval: 10 * time.Second, MaxRetainedWAL: 1 << 30, FailoverTimeout: 10 * time.Second},
		Server: Server{Listen: ":8080", DrainTimeout: 10 * time.Second},
		Auth: Auth{
			JWT: JWT{Algorithms: []string{"HS256"}, Leeway: 30 * time.Second,
				Claims: map[string]string{"user_id": "sub", "role": "role"}},
			AdminRoles:  []string{"admin", "super_admin"},
			ACLCacheTTL: 60 * time.Second,
		},
		Retention: Retention{MaxEvents: 100000, MaxAge: 15 * time.Minute, MaxHeldBytes: 64 << 20},
		Limits: Limits{MaxConnectionsPerIPPerMinute: 60, MaxConnectionsPerUser: 10,
			MaxSubscriptionsPerConn: 200, MaxFrameBytes: 65536, MaxMessagesPerSecond: 50, SendQueue: 1024, StallTimeout: 5 * time.Second,
			MaxSyncPollsPerUser: 4, MaxSyncPollsPerIP: 100},
		Audit: Audit{Log: "stdout"},
		Log: Log{Level: "info", Format: "json", Backend: BackendMemory, CacheEvents: 100000,
			NATS: NATS{URLs: []string{"nats://127.0.0.1:4222"}, Stream: "CDC_EVENTS", SubjectPrefix: "cdc", Replicas: 3}},
		File: "config.yaml",
	}
	for _, tc := range []struct{ name, src string }{
		{"empty file", ""},
		{"comment only", "# nothing\n"},
		{"null document", "~\n"},
		{"empty sections", "source:\nserver:\nauth:\n  jwt:\nlimits:\nlog:\n"},
		{"null values", "source:\n  slot: ~\nlog:\n  level:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, tc.src)
			c.pos = nil
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("got  %+v\nwant %+v", *c, want)
			}
		})
	}
}

func TestExplicitZeroKept(t *testing.T) {
	c := mustParse(t, `
source:
  create: false
  heartbeat: 0s
server:
  drain_timeout: 0
auth:
  admin_roles: []
  jwt:
    claims: {user_id: uid}
retention:
  max_events: 0
limits:
  send_queue: 0
`)
	if c.Source.Create {
		t.Error("create: false became true")
	}
	if c.Source.Heartbeat != 0 || c.Server.DrainTimeout != 0 {
		t.Errorf("heartbeat %v, drain_timeout %v, want 0", c.Source.Heartbeat, c.Server.DrainTimeout)
	}
	if len(c.Auth.AdminRoles) != 0 {
		t.Errorf("admin_roles = %v, want empty", c.Auth.AdminRoles)
	}
	if c.Retention.MaxEvents != 0 || c.Limits.SendQueue != 0 {
		t.Errorf("max_events %d, send_queue %d, want 0", c.Retention.MaxEvents, c.Limits.SendQueue)
	}
	// One claim overridden, the other keeps its default.
	if want := map[string]string{"user_id": "uid", "role": "role"}; !reflect.DeepEqual(c.Auth.JWT.Claims, want) {
		t.Errorf("claims = %v, want %v", c.Auth.JWT.Claims, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	const file = "source:\n  database_url: postgres://file\n  create: true\nlimits:\n  send_queue: 5\n"
	for _, tc := range []struct {
		name string
		env  []string
		get  func(*Config) any
		want any
	}{
		{"key in file", []string{"CDC_SOURCE_DATABASE_URL=postgres://env"},
			func(c *Config) any { return c.Source.DatabaseURL }, "postgres://env"},
		{"key absent from file", []string{"CDC_AUTH_JWT_SECRET=s"},
			func(c *Config) any { return c.Auth.JWT.Secret }, "s"},
		{"int", []string{"CDC_RETENTION_MAX_EVENTS=42"},
			func(c *Config) any { return c.Retention.MaxEvents }, 42},
		{"int in file", []string{"CDC_LIMITS_SEND_QUEUE=9"},
			func(c *Config) any { return c.Limits.SendQueue }, 9},
		{"bool false", []string{"CDC_SOURCE_CREATE=false"},
			func(c *Config) any { return c.Source.Create }, false},
		{"bool absent", []string{"CDC_SERVER_DEMO=true"},
			func(c *Config) any { return c.Server.Demo }, true},
		{"query token opt-in", []string{"CDC_SERVER_ALLOW_QUERY_TOKEN=true"},
			func(c *Config) any { return c.Server.AllowQueryToken }, true},
		{"no-exp opt-in", []string{"CDC_AUTH_JWT_ALLOW_NO_EXP=true"},
			func(c *Config) any { return c.Auth.JWT.AllowNoExp }, true},
		{"sync polls per user", []string{"CDC_LIMITS_MAX_SYNC_POLLS_PER_USER=2"},
			func(c *Config) any { return c.Limits.MaxSyncPollsPerUser }, 2},
		{"duration", []string{"CDC_SOURCE_HEARTBEAT=5s"},
			func(c *Config) any { return c.Source.Heartbeat }, 5 * time.Second},
		{"duration zero", []string{"CDC_SOURCE_HEARTBEAT=0"},
			func(c *Config) any { return c.Source.Heartbeat }, time.Duration(0)},
		{"comma list", []string{"CDC_SERVER_ALLOWED_ORIGINS=https://a.example, https://b.example"},
			func(c *Config) any { return c.Server.AllowedOrigins }, []string{"https://a.example", "https://b.example"}},
		{"algorithms", []string{"CDC_AUTH_JWT_ALGORITHMS=RS256,ES256"},
			func(c *Config) any { return c.Auth.JWT.Algorithms }, []string{"RS256", "ES256"}},
		{"claim", []string{"CDC_AUTH_JWT_CLAIMS_USER_ID=uid"},
			func(c *Config) any { return c.Auth.JWT.Claims["user_id"] }, "uid"},
		{"empty value ignored", []string{"CDC_SOURCE_DATABASE_URL="},
			func(c *Config) any { return c.Source.DatabaseURL }, "postgres://file"},
		{"last wins", []string{"CDC_LOG_LEVEL=warn", "CDC_LOG_LEVEL=debug"},
			func(c *Config) any { return c.Log.Level }, "debug"},
		{"other prefix ignored", []string{"LOG_LEVEL=debug", "cdc_log_level=debug"},
			func(c *Config) any { return c.Log.Level }, "info"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, file, tc.env...)
			if got := tc.get(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name, env, key, msg string
	}{
		{"bad int", "CDC_RETENTION_MAX_EVENTS=lots", "retention.max_events", `CDC_RETENTION_MAX_EVENTS: expected an integer, found "lots"`},
		{"bad duration", "CDC_AUTH_ACL_CACHE_TTL=60", "auth.acl_cache_ttl", `CDC_AUTH_ACL_CACHE_TTL: invalid duration "60"`},
		{"bad bool", "CDC_SERVER_DEMO=yes", "server.demo", `CDC_SERVER_DEMO: expected a boolean, found "yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, "", tc.env)
			if len(errs) != 1 || errs[0].Key != tc.key || !strings.Contains(errs[0].Msg, tc.msg) {
				t.Fatalf("got %v, want one error on %s containing %q", errs, tc.key, tc.msg)
			}
			if errs[0].Line != 0 {
				t.Errorf("line = %d, want none for the environment", errs[0].Line)
			}
		})
	}
}

func TestUnknownKey(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"top level", "source: {}\nsorce: {}\n", "config.yaml:2: sorce: unknown key (did you mean \"source\"?)"},
		{"nested", "auth:\n  jwt:\n    secrte: x\n", "config.yaml:3: auth.jwt.secrte: unknown key (did you mean \"secret\"?)"},
		{"in a mapping", "mappings:\n  - table: t\n    domain: d\n    evnets: []\n", "config.yaml:4: mappings[0].evnets: unknown key (did you mean \"events\"?)"},
		{"in an event rule", "mappings:\n  - table: t\n    events:\n      - on: insert\n        tpye: t.x\n", "config.yaml:5: mappings[0].events[0].tpye: unknown key (did you mean \"type\"?)"},
		{"in an allow rule", "channels:\n  - pattern: p\n    allow:\n      - role: [x]\n", "config.yaml:4: channels[0].allow[0].role: unknown key (did you mean \"roles\"?)"},
		{"no suggestion", "log:\n  colour: red\n", "config.yaml:2: log.colour: unknown key"},
		{"case matters", "Source: {}\n", `config.yaml:1: Source: unknown key (did you mean "source"?)`},
		{"dotted key", "source.slot: x\n", "config.yaml:1: source.slot: unknown key"},
		{"number key", "1: x\n", "config.yaml:1: 1: expected a string key, found integer 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 || errs[0].Error() != tc.want {
				t.Errorf("got  %q\nwant %q", errs.Error(), tc.want)
			}
		})
	}
}

func TestWrongType(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"int as string", "retention:\n  max_events: many\n", `config.yaml:2: retention.max_events: expected an integer, found string "many"`},
		{"int as float", "limits:\n  send_queue: 1.5\n", `config.yaml:2: limits.send_queue: expected an integer, found number 1.5`},
		{"int overflow", "limits:\n  send_queue: 99999999999999999999\n", `limits.send_queue: expected an integer, found number 99999999999999999999`},
		{"bool as string", "source:\n  create: yes\n", `config.yaml:2: source.create: expected a boolean (true or false), found string "yes"`},
		{"string as list", "source:\n  slot: [a, b]\n", `config.yaml:2: source.slot: expected a string, found a list`},
		{"string as bool", "audit:\n  log: true\n", `config.yaml:2: audit.log: expected a string, found boolean true (quote it to make it a string)`},
		{"string as float", "auth:\n  jwt:\n    secret: 1.50\n", `config.yaml:3: auth.jwt.secret: expected a string, found number 1.50 (quote it`},
		{"string with leading zero", "auth:\n  jwt:\n    secret: 007\n", `auth.jwt.secret: expected a string, found integer 007`},
		{"list as string", "server:\n  allowed_origins: http://x\n", `config.yaml:2: server.allowed_origins: expected a list, found string "http://x"`},
		{"section as scalar", "limits: 5\n", `config.yaml:1: limits: expected a mapping, found integer 5`},
		{"mappings as mapping", "mappings:\n  table: t\n", `config.yaml:2: mappings: expected a list, found a mapping`},
		{"mapping item as string", "mappings:\n  - exams\n", `config.yaml:2: mappings[0]: expected a mapping, found string "exams"`},
		{"null list item", "auth:\n  admin_roles: [admin, ~]\n", `config.yaml:2: auth.admin_roles[1]: expected a string, found null`},
		{"null param", "channels:\n  - pattern: p\n    params: {x: }\n", `channels[0].params.x: expected a string, found null`},
		{"map value as list", "auth:\n  jwt:\n    claims: {role: [a]}\n", `config.yaml:3: auth.jwt.claims.role: expected a string, found a list`},
		{"claims key case", "auth:\n  jwt:\n    claims: {userId: uid}\n", `config.yaml:3: auth.jwt.claims.userId: invalid key`},
		{"top level list", "- a\n", `config.yaml:1: expected a mapping of keys at the top level, found a list`},
		{"timestamp", "source:\n  slot: 2024-01-02\n", `source.slot: expected a string, found timestamp 2024-01-02`},
		{"custom tag", "source:\n  slot: !thing x\n", `source.slot: expected a string, found !thing "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("got  %q\nwant %q", errs.Error(), tc.want)
			}
		})
	}
}

func TestBadDuration(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown unit", "source:\n  heartbeat: 30x\n", `config.yaml:2: source.heartbeat: invalid duration "30x"`},
		{"no unit", "auth:\n  acl_cache_ttl: 60\n", `config.yaml:2: auth.acl_cache_ttl: invalid duration 60: a unit is needed, e.g. "60s"`},
		{"words", "retention:\n  max_age: fifteen minutes\n", `config.yaml:2: retention.max_age: invalid duration "fifteen minutes"`},
		{"list", "server:\n  drain_timeout: [1s]\n", `config.yaml:2: server.drain_timeout: expected a duration such as "30s", found a list`},
		{"bool", "auth:\n  jwt:\n    leeway: true\n", `config.yaml:3: auth.jwt.leeway: expected a duration such as "30s", found boolean true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("got  %q\nwant %q", errs.Error(), tc.want)
			}
		})
	}
}

// TestOnKey checks that YAML 1.1 booleans (on, off, yes, no, y, n) stay
// strings, both as keys and as values.
func TestOnKey(t *testing.T) {
	c := mustParse(t, `
mappings:
  - table: t
    domain: d
    actor: yes
    events:
      - on: truncate
        type: d.gone
      - {on: update, type: d.updated, when: "new.flag == 'off'"}
channels:
  - pattern: "x:{y}"
    params: {y: "^n$"}
    allow:
      - claim: {on: "off"}
`)
	ev := c.Mappings[0].Events
	if len(ev) != 2 || ev[0].On != "truncate" || ev[1].On != "update" {
		t.Errorf("events = %+v", ev)
	}
	if c.Mappings[0].Actor != "yes" {
		t.Errorf("actor = %q, want \"yes\"", c.Mappings[0].Actor)
	}
	if got := c.Channels[0].Allow[0].Claim; !reflect.DeepEqual(got, map[string]string{"on": "off"}) {
		t.Errorf("claim = %v", got)
	}
}

func TestAllErrorsReported(t *testing.T) {
	src := `source:
  heartbeat: soon
  slot: 5
  create: maybe
mappings:
  - table: t
    evnets: []
  - table: u
    domain: [x]
retention:
  max_events: "10"
typo: 1
`
	errs := parseErrors(t, src, "CDC_LIMITS_SEND_QUEUE=big")
	want := []struct {
		line int
		key  string
	}{
		{2, "source.heartbeat"},
		{4, "source.create"},
		{7, "mappings[0].evnets"},
		{9, "mappings[1].domain"},
		{11, "retention.max_events"},
		{12, "typo"},
		{0, "limits.send_queue"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if errs[i].Line != w.line || errs[i].Key != w.key {
			t.Errorf("error %d = %v, want line %d key %s", i, errs[i], w.line, w.key)
		}
	}
	// slot: 5 is a fine string; it reads back as "5".
	if strings.Contains(errs.Error(), "source.slot") {
		t.Errorf("unquoted number refused as a string: %v", errs)
	}
	var one *Error
	if !errors.As(error(errs), &one) || one.Key != "source.heartbeat" {
		t.Errorf("errors.As found %v", one)
	}
	if lines := strings.Count(errs.Error(), "\n") + 1; lines != len(want) {
		t.Errorf("Error() has %d lines, want %d", lines, len(want))
	}
}

func TestYAMLProblems(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"syntax", "source:\n  slot: x\n  create: [\n", "config.yaml:3: invalid YAML: did not find expected node content"},
		{"bad indent", "source:\n  slot: x\n bad: y\n", "config.yaml:2: invalid YAML: did not find expected key"},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", "config.yaml:3: log.level: duplicate key, first at line 2"},
		{"merge of itself", "source: &x {slot: a, <<: *x}\n", "config.yaml:1: source: a merge (<<) includes itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, tc.src)
			if !strings.HasPrefix(errs.Error(), tc.want) {
				t.Errorf("got  %q\nwant prefix %q", errs.Error(), tc.want)
			}
		})
	}
}

func TestAliasesAndMerge(t *testing.T) {
	c := mustParse(t, `
mappings:
  - &base
    table: exams
    domain: exam
    channels: ["table:exams"]
  - <<: *base
    table: quizzes
channels:
  - pattern: "a:{x}"
    allow: &admins
      - roles: [admin]
  - pattern: "b:{x}"
    allow: *admins
`)
	if len(c.Mappings) != 2 || c.Mappings[1].Table != "quizzes" || c.Mappings[1].Domain != "exam" {
		t.Errorf("mappings = %+v", c.Mappings)
	}
	if len(c.Channels[1].Allow) != 1 || c.Channels[1].Allow[0].Roles[0] != "admin" {
		t.Errorf("channels = %+v", c.Channels)
	}
	errs := parseErrors(t, "mappings:\n  - &m {table: t, domian: d}\n  - *m\n")
	if len(errs) != 2 || errs[0].Key != "mappings[0].domian" || errs[1].Key != "mappings[1].domian" {
		t.Errorf("errors through an alias = %v", errs)
	}
}

func TestAliasBomb(t *testing.T) {
	// Each level merges the one below ten times: 10^8 entries if expanded.
	var b strings.Builder
	b.WriteString("a: &a {slot: x}\n")
	prev := "a"
	for i := range 8 {
		name := string(rune('b' + i))
		b.WriteString(name + ": &" + name + " {<<: [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]}\n")
		prev = name
	}
	b.WriteString("source: {<<: *" + prev + "}\n")
	start := time.Now()
	errs := parseErrors(t, b.String())
	if !strings.Contains(errs.Error(), "too many aliases") {
		t.Errorf("got %v", errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestParamsAnchored(t *testing.T) {
	c := mustParse(t, `
channels:
  - pattern: "a:{x}:{y}:{z}"
    params: {x: "[0-9]+", y: "^[a-z]+$", z: "^a|b$"}
    allow: [{roles: [admin]}]
`)
	want := map[string]string{"x": "^(?:[0-9]+)$", "y": "^[a-z]+$", "z": "^(?:^a|b$)$"}
	if !reflect.DeepEqual(c.Channels[0].Params, want) {
		t.Errorf("params = %v, want %v", c.Channels[0].Params, want)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *Error
		want string
	}{
		{"all", &Error{File: "config.yaml", Line: 12, Key: "mappings[2].events[0].when", Msg: "bad"}, "config.yaml:12: mappings[2].events[0].when: bad"},
		{"no line", &Error{File: "config.yaml", Key: "source.database_url", Msg: "required"}, "config.yaml: source.database_url: required"},
		{"no file", &Error{Key: "log.level", Msg: "bad"}, "log.level: bad"},
		{"line only", &Error{Line: 3, Msg: "bad"}, "line 3: bad"},
		{"no key", &Error{File: "c.yaml", Line: 1, Msg: "invalid YAML"}, "c.yaml:1: invalid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	es := Errors{{Key: "a", Msg: "x"}, {Key: "b", Msg: "y"}}
	if got := es.Error(); got != "a: x\nb: y" {
		t.Errorf("Errors.Error() = %q", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		key    string
		msg    string
	}{
		{"database_url required", func(c *Config) { c.Source.DatabaseURL = "" }, "source.database_url", "required"},
		{"slot name", func(c *Config) { c.Source.Slot = "Bad-Slot" }, "source.slot", `invalid name "Bad-Slot"`},
		{"slot too long", func(c *Config) { c.Source.Slot = strings.Repeat("a", 64) }, "source.slot", "invalid name"},
		{"publication name", func(c *Config) { c.Source.Publication = "1pub" }, "source.publication", "invalid name"},
		{"status interval", func(c *Config) { c.Source.StatusInterval = 0 }, "source.status_interval", "more than 0"},
		{"negative heartbeat", func(c *Config) { c.Source.Heartbeat = -time.Second }, "source.heartbeat", "negative"},
		{"table empty", func(c *Config) { c.Mappings[0].Table = "" }, "mappings[0].table", "invalid table"},
		{"table bad schema", func(c *Config) { c.Mappings[0].Table = ".exams" }, "mappings[0].table", "invalid table"},
		{"table mapped twice", func(c *Config) { c.Mappings[1].Table = "public.exams" }, "mappings[1].table", "already mapped by mappings[0]"},
		{"domain empty", func(c *Config) { c.Mappings[0].Domain = "" }, "mappings[0].domain", "invalid domain"},
		{"domain bad", func(c *Config) { c.Mappings[0].Domain = "exam-x" }, "mappings[0].domain", "invalid domain"},
		{"payload empty column", func(c *Config) { c.Mappings[0].Payload = []string{"id", ""} }, "mappings[0].payload[1]", "empty"},
		{"rule on", func(c *Config) { c.Mappings[0].Events[1].On = "create" }, "mappings[0].events[1].on", `invalid operation "create"`},
		{"rule on missing", func(c *Config) { c.Mappings[0].Events[1].On = "" }, "mappings[0].events[1].on", "invalid operation"},
		{"rule type", func(c *Config) { c.Mappings[0].Events[2].Type = "updated" }, "mappings[0].events[2].type", "invalid event type"},
		{"rule type missing", func(c *Config) { c.Mappings[0].Events[2].Type = "" }, "mappings[0].events[2].type", "invalid event type"},
		{"template unclosed", func(c *Config) { c.Mappings[0].Channels[0] = "exam:{id" }, "mappings[0].channels[0]", "unclosed '{'"},
		{"template unmatched", func(c *Config) { c.Mappings[0].Channels[0] = "exam:id}" }, "mappings[0].channels[0]", "unmatched '}'"},
		{"template nested", func(c *Config) { c.Mappings[0].Channels[0] = "exam:{{id}}" }, "mappings[0].channels[0]", "unclosed '{'"},
		{"template bad name", func(c *Config) { c.Mappings[0].Channels[0] = "exam:{mid.id}" }, "mappings[0].channels[0]", "{mid.id}"},
		{"template empty name", func(c *Config) { c.Mappings[0].Channels[0] = "exam:{}" }, "mappings[0].channels[0]", "{}"},
		{"template empty", func(c *Config) { c.Mappings[0].Channels[0] = "" }, "mappings[0].channels[0]", "empty channel template"},
		{"rule template", func(c *Config) { c.Mappings[0].Events[0].Channels = []string{"x:{new.}"} }, "mappings[0].events[0].channels[0]", "{new.}"},
		{"pattern empty", func(c *Config) { c.Channels[0].Pattern = "" }, "channels[0].pattern", "required"},
		{"pattern syntax", func(c *Config) { c.Channels[1].Pattern = "role:{role" }, "channels[1].pattern", "unclosed"},
		{"pattern param name", func(c *Config) { c.Channels[1].Pattern = "role:{new.role}" }, "channels[1].pattern", "invalid param"},
		{"pattern param twice", func(c *Config) { c.Channels[1].Pattern = "role:{role}:{role}" }, "channels[1].pattern", "appears twice"},
		{"pattern twice", func(c *Config) { c.Channels[2].Pattern = "role:{role}" }, "channels[2].pattern", "already used by channels[1]"},
		{"param not in pattern", func(c *Config) { c.Channels[0].Params["uid"] = "x" }, "channels[0].params.uid", `param "uid" is not in the pattern`},
		{"param regexp", func(c *Config) { c.Channels[0].Params["userId"] = "[0-9" }, "channels[0].params.userId", "invalid regexp"},
		{"no allow rule", func(c *Config) { c.Channels[2].Allow = nil }, "channels[2].allow", "at least one rule"},
		{"empty allow rule", func(c *Config) { c.Channels[2].Allow = []AllowRule{{}} }, "channels[2].allow[0]", "empty rule"},
		{"self not a param", func(c *Config) { c.Channels[0].Allow[0].Self = "user" }, "channels[0].allow[0].self", "not a param"},
		{"claim param", func(c *Config) { c.Channels[1].Allow[0].Claim["role"] = "{rol}" }, "channels[1].allow[0].claim.role", "{rol} is not a param"},
		{"empty role", func(c *Config) { c.Channels[2].Allow[0].Roles = []string{""} }, "channels[2].allow[0].roles[0]", "empty"},
		{"recheck empty", func(c *Config) { c.Channels[3].RecheckOn = []string{""} }, "channels[3].recheck_on[0]", "empty"},
		{"algorithm none", func(c *Config) { c.Auth.JWT.Algorithms = []string{"none"} }, "auth.jwt.algorithms[0]", `"none" is never allowed`},
		{"algorithm unknown", func(c *Config) { c.Auth.JWT.Algorithms = []string{"HS256", "PS256"} }, "auth.jwt.algorithms[1]", `unknown algorithm "PS256"`},
		{"algorithm case", func(c *Config) { c.Auth.JWT.Algorithms = []string{"hs256"} }, "auth.jwt.algorithms[0]", "unknown algorithm"},
		{"no algorithm", func(c *Config) { c.Auth.JWT.Algorithms = nil }, "auth.jwt.algorithms", "at least one"},
		{"HMAC needs secret", func(c *Config) { c.Auth.JWT.Secret = "" }, "auth.jwt.secret", "required by HS256"},
		{"RSA needs key", func(c *Config) { c.Auth.JWT.Algorithms = []string{"RS256"} }, "auth.jwt", "RS256 needs public_key_file, jwks_file or jwks_url"},
		{"EdDSA needs key", func(c *Config) { c.Auth.JWT.Algorithms = []string{"HS256", "EdDSA"} }, "auth.jwt", "EdDSA needs"},
		{"negative leeway", func(c *Config) { c.Auth.JWT.Leeway = -1 }, "auth.jwt.leeway", "negative"},
		{"empty claim", func(c *Config) { c.Auth.JWT.Claims["role"] = "" }, "auth.jwt.claims.role", "must name a token claim"},
		{"empty admin role", func(c *Config) { c.Auth.AdminRoles = []string{"admin", " "} }, "auth.admin_roles[1]", "empty"},
		{"negative ttl", func(c *Config) { c.Auth.ACLCacheTTL = -time.Second }, "auth.acl_cache_ttl", "negative"},
		{"negative max_events", func(c *Config) { c.Retention.MaxEvents = -1 }, "retention.max_events", "negative"},
		{"negative max_age", func(c *Config) { c.Retention.MaxAge = -time.Minute }, "retention.max_age", "negative"},
		{"negative limit", func(c *Config) { c.Limits.MaxFrameBytes = -5 }, "limits.max_frame_bytes", "negative"},
		{"negative send queue", func(c *Config) { c.Limits.SendQueue = -1 }, "limits.send_queue", "negative"},
		{"negative sync polls per user", func(c *Config) { c.Limits.MaxSyncPollsPerUser = -1 }, "limits.max_sync_polls_per_user", "negative"},
		{"negative sync polls per ip", func(c *Config) { c.Limits.MaxSyncPollsPerIP = -1 }, "limits.max_sync_polls_per_ip", "negative"},
		{"failover timeout too short", func(c *Config) { c.Source.FailoverTimeout = 200 * time.Millisecond }, "source.failover_timeout", "at least 1s"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `invalid level "verbose"`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", `invalid format "xml"`},
		{"listen empty", func(c *Config) { c.Server.Listen = "" }, "server.listen", "empty"},
		{"origin empty", func(c *Config) { c.Server.AllowedOrigins = []string{""} }, "server.allowed_origins[0]", "empty"},
		{"audit empty", func(c *Config) { c.Audit.Log = "" }, "audit.log", "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, sampleYAML, sampleEnv...)
			tc.change(c)
			err := c.Validate()
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Validate() = %v, want config.Errors", err)
			}
			if len(errs) != 1 || errs[0].Key != tc.key || !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("got  %v\nwant one error on %s containing %q", err, tc.key, tc.msg)
			}
		})
	}
}

func TestValidateOK(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
	}{
		{"schema table", func(c *Config) { c.Mappings[1].Table = "school.exams" }},
		{"old and new", func(c *Config) { c.Mappings[0].Channels = []string{"c:{old.class_id}:{new.class_id}", "plain"} }},
		{"RSA with JWKS URL", func(c *Config) {
			c.Auth.JWT.Algorithms = []string{"RS256", "ES384", "EdDSA"}
			c.Auth.JWT.JWKSURL = "https://example.test/jwks.json"
		}},
		{"all HMAC", func(c *Config) { c.Auth.JWT.Algorithms = []string{"HS256", "HS384", "HS512"} }},
		{"zero limits", func(c *Config) { c.Limits = Limits{}; c.Retention = Retention{} }},
		{"heartbeat off", func(c *Config) { c.Source.Heartbeat = 0 }},
		{"when rule only", func(c *Config) { c.Channels[2].Allow = []AllowRule{{When: "claims.role == 'x'"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, sampleYAML, sampleEnv...)
			tc.change(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestValidateLinesAndAllAtOnce(t *testing.T) {
	src := `source:
  slot: Bad
mappings:
  - table: exams
    domain: exam
    events:
      - on: create
        type: exam.created
  - table: exams
    domain: exam
channels:
  - pattern: "user:{id}"
    allow: []
log:
  level: loud
`
	c := mustParse(t, src, "CDC_SOURCE_PUBLICATION=Bad")
	err := c.Validate()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate() = %v", err)
	}
	want := []string{
		"config.yaml:1: source.database_url: required (set it here or in CDC_SOURCE_DATABASE_URL)",
		`config.yaml:2: source.slot: invalid name "Bad"`,
		`source.publication: invalid name "Bad"`,
		"config.yaml: auth.jwt.secret: required by HS256",
		`config.yaml:15: log.level: invalid level "loud"`,
		`config.yaml:7: mappings[0].events[0].on: invalid operation "create"`,
		`config.yaml:9: mappings[1].table: table "exams" is already mapped by mappings[0]`,
		"config.yaml:13: channels[0].allow: at least one rule is needed",
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i].Error(), w)
		}
	}
	if !strings.HasSuffix(errs[2].Msg, "(set by CDC_SOURCE_PUBLICATION)") || errs[2].File != "" {
		t.Errorf("env-set error = %#v, want it to name the variable and no file", errs[2])
	}

	c = mustParse(t, "auth:\n  jwt:\n    algorithms: [HS256]\n", "CDC_AUTH_JWT_ALGORITHMS=HS256,none", "CDC_AUTH_JWT_SECRET=x", "CDC_SOURCE_DATABASE_URL=postgres://x")
	want1 := `auth.jwt.algorithms[1]: algorithm "none" is never allowed (set by CDC_AUTH_JWT_ALGORITHMS)`
	if err := c.Validate(); err == nil || err.Error() != want1 {
		t.Errorf("Validate() = %v, want %q", err, want1)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{Source: Source{Slot: "s", Publication: "p", StatusInterval: time.Second},
		Server: Server{Listen: ":1"}, Audit: Audit{Log: "stdout"}, Log: Log{Level: "info", Format: "text"},
		Auth: Auth{JWT: JWT{Algorithms: []string{"HS256"}, Secret: "x"}}}
	err := c.Validate()
	if err == nil || err.Error() != "source.database_url: required (set it here or in CDC_SOURCE_DATABASE_URL)" {
		t.Errorf("Validate() = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(sampleYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CDC_AUTH_JWT_SECRET", "from-env")
	t.Setenv("CDC_LOG_LEVEL", "debug")

	c, err := LoadAndValidate(path)
	if err != nil {
		t.Fatalf("LoadAndValidate: %v", err)
	}
	if c.File != path || c.Auth.JWT.Secret != "from-env" || c.Log.Level != "debug" {
		t.Errorf("file %q secret %q level %q", c.File, c.Auth.JWT.Secret, c.Log.Level)
	}

	t.Setenv("CDC_AUTH_JWT_SECRET", "")
	if _, err := LoadAndValidate(path); err == nil || !strings.Contains(err.Error(), path+":") {
		t.Errorf("LoadAndValidate without secret = %v, want an error naming the file", err)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("source:\n  heartbeat: 1y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAndValidate(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":2: source.heartbeat:") {
		t.Errorf("LoadAndValidate(bad) = %v", err)
	}
}

func TestSecondDocument(t *testing.T) {
	errs := parseErrors(t, "source: {}\n---\nlog: {}\n")
	if got := errs.Error(); got != "config.yaml:2: invalid YAML: a second YAML document is not allowed (one file holds one config)" {
		t.Errorf("got %q", got)
	}
}

// TestNATSBackend: with log.backend nats the retention becomes the
// stream's limits (larger defaults unless set), and the nats keys are
// checked.
func TestNATSBackend(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "log:\n  backend: nats\n")
	if c.Retention.MaxEvents != NATSDefaultMaxEvents || c.Retention.MaxAge != NATSDefaultMaxAge {
		t.Fatalf("retention %+v, want the stream's defaults", c.Retention)
	}
	c = mustParse(t, "log:\n  backend: nats\nretention:\n  max_events: 500\n")
	if c.Retention.MaxEvents != 500 || c.Retention.MaxAge != NATSDefaultMaxAge {
		t.Fatalf("retention %+v, want max_events as set", c.Retention)
	}
	c = mustParse(t, "log:\n  backend: nats\n  cache_events: 0\n  nats:\n    urls: []\n    stream: a.b\n    subject_prefix: 'x.>'\n    replicas: 7\n    tls: {cert_file: c.pem}\n")
	c.Source.DatabaseURL = "postgres://x"
	err := c.Validate()
	for _, key := range []string{"log.nats.urls", "log.nats.stream", "log.nats.subject_prefix", "log.nats.replicas", "log.cache_events", "log.nats.tls"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() = %v, want an error about %s", err, key)
		}
	}
	c = mustParse(t, "log:\n  backend: kafka\n")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "log.backend") {
		t.Errorf("backend kafka: %v", err)
	}
}
