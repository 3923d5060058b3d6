package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// emitYAML is sampleYAML with an emit section.
const emitYAML = sampleYAML + `
emit:
  enabled: true
  max_bytes: 4096
  types: ["system.*"]
  channels: ["role:{role}", "school"]
  events:
    - type: exam.closing_soon
      description: The exam closes in a few minutes.
      channels: ["exam:{examId}", "class:{classId}"]
      data: {examId: integer, classId: integer, minutesLeft: integer, closesAt: string, note: "string?", tags: "string[]"}
    - type: system.notice
`

func TestEmitParse(t *testing.T) {
	c := mustParse(t, emitYAML, sampleEnv...)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	want := Emit{
		Enabled: true, Prefix: DefaultEmitPrefix, MaxBytes: 4096,
		Types:    []string{"system.*"},
		Channels: []string{"role:{role}", "school"},
		Events: []EmitEvent{
			{
				Type: "exam.closing_soon", Description: "The exam closes in a few minutes.",
				Channels: []string{"exam:{examId}", "class:{classId}"},
				// The field names keep their case (viper would lower them).
				Data: map[string]string{"examId": "integer", "classId": "integer", "minutesLeft": "integer", "closesAt": "string", "note": "string?", "tags": "string[]"},
			},
			{Type: "system.notice"},
		},
	}
	if !reflect.DeepEqual(c.Emit, want) {
		t.Errorf("emit = %+v\nwant   %+v", c.Emit, want)
	}
	if got := c.Line("emit.events[0].data.examId"); got == 0 {
		t.Errorf("no line for emit.events[0].data.examId")
	}
}

func TestEmitEnvironment(t *testing.T) {
	c := mustParse(t, sampleYAML, append(sampleEnv, "CDC_EMIT_ENABLED=true", "CDC_EMIT_TYPES=system.*, upload.*", "CDC_EMIT_CHANNELS=school", "CDC_EMIT_PREFIX=app.emit")...)
	if !c.Emit.Enabled || c.Emit.Prefix != "app.emit" || !reflect.DeepEqual(c.Emit.Types, []string{"system.*", "upload.*"}) || !reflect.DeepEqual(c.Emit.Channels, []string{"school"}) {
		t.Errorf("emit = %+v", c.Emit)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	// emit.events, a list of structs, comes from the file only.
	errs := parseErrors(t, sampleYAML+"emit:\n  events: [{type: a.b, data: {x: [1]}}]\n")
	if len(errs) != 1 || errs[0].Key != "emit.events[0].data.x" {
		t.Errorf("errors = %v, want one on emit.events[0].data.x", errs)
	}
}

func TestEmitValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *Emit)
		key    string
		msg    string
	}{
		{"prefix empty", func(e *Emit) { e.Prefix = "" }, "emit.prefix", "must not be empty"},
		{"prefix reserved", func(e *Emit) { e.Prefix = "cdc.actor" }, "emit.prefix", "replication stream's own"},
		{"max bytes zero", func(e *Emit) { e.MaxBytes = 0 }, "emit.max_bytes", "must be 1 to 262144"},
		{"max bytes too large", func(e *Emit) { e.MaxBytes = MaxEmitBytes + 1 }, "emit.max_bytes", "must be 1 to"},
		{"bad glob", func(e *Emit) { e.Types = []string{"exam.["} }, "emit.types[0]", "invalid glob"},
		{"empty glob", func(e *Emit) { e.Types = []string{"system.*", " "} }, "emit.types[1]", "empty"},
		{"bad channel pattern", func(e *Emit) { e.Channels = []string{"role:{role"} }, "emit.channels[0]", "unclosed"},
		{"bad event channel", func(e *Emit) { e.Events[0].Channels = []string{"exam:{exam.id}"} }, "emit.events[0].channels[0]", "invalid param"},
		{"bad type", func(e *Emit) { e.Events[1].Type = "notice" }, "emit.events[1].type", "invalid event type"},
		{"type twice", func(e *Emit) { e.Events[1].Type = "exam.closing_soon" }, "emit.events[1].type", "already declared by emit.events[0]"},
		{"bad field name", func(e *Emit) { e.Events[0].Data["exam-id"] = "integer" }, "emit.events[0].data.exam-id", "invalid field name"},
		{"bad field type", func(e *Emit) { e.Events[0].Data["examId"] = "int" }, "emit.events[0].data.examId", `invalid type "int"`},
		{"nothing to emit", func(e *Emit) { e.Types, e.Events = nil, nil }, "emit", "no event type may be emitted"},
		{"no channels for globs", func(e *Emit) { e.Channels = nil }, "emit.channels", "no channel pattern"},
		{"no channels for a declared type", func(e *Emit) { e.Types, e.Channels = nil, nil }, "emit.channels", "no channel pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, emitYAML, sampleEnv...)
			tc.change(&c.Emit)
			err := c.Validate()
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Validate() = %v, want config.Errors", err)
			}
			if len(errs) != 1 || errs[0].Key != tc.key || !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("got  %v\nwant one error on %s containing %q", err, tc.key, tc.msg)
			}
			if errs[0].Line == 0 {
				t.Errorf("%s: no line", errs[0].Key)
			}
		})
	}
}

func TestEmitValidateOK(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *Emit)
	}{
		{"disabled, prefix and size unchecked", func(e *Emit) { e.Enabled, e.Prefix, e.MaxBytes = false, "", 0 }},
		{"disabled with nothing", func(e *Emit) { *e = Emit{} }},
		{"declared events only, each with channels", func(e *Emit) {
			e.Types, e.Channels = nil, nil
			e.Events = e.Events[:1]
		}},
		{"globs only", func(e *Emit) { e.Events = nil }},
		{"largest size", func(e *Emit) { e.MaxBytes = MaxEmitBytes }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, emitYAML, sampleEnv...)
			tc.change(&c.Emit)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestParseDataType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want DataType
	}{
		{"string", DataType{Kind: KindString}},
		{"integer", DataType{Kind: KindInteger}},
		{"number?", DataType{Kind: KindNumber, Optional: true}},
		{"boolean[]", DataType{Kind: KindBoolean, List: true}},
		{"object[]?", DataType{Kind: KindObject, List: true, Optional: true}},
		{" any ", DataType{Kind: KindAny}},
	} {
		got, err := ParseDataType(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDataType(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if err == nil && got.String() != strings.TrimSpace(tc.in) {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), strings.TrimSpace(tc.in))
		}
	}
	for _, bad := range []string{"", "int", "string?[]", "string[][]", "?", "[]", "String", "array"} {
		if _, err := ParseDataType(bad); err == nil {
			t.Errorf("ParseDataType(%q): no error", bad)
		}
	}
}
