package mapping

import (
	"strings"
)

// Error is one problem in the rules, with the key path in the config file's
// terms.
type Error struct {
	// Key is the key path of the offending setting, e.g.
	// "mappings[2].channels[1]" or "mappings[0].events[1].when".
	Key string
	// Table is the table the mapping names, as written.
	Table string
	// Msg says what is wrong. When it concerns a value, it starts with that
	// value quoted.
	Msg string
}

// Error reads like `mappings[0].channels[2] "class:{klass_id}": table exams
// has no column klass_id`, or `mappings[1].table: required`.
func (e *Error) Error() string {
	if strings.HasPrefix(e.Msg, `"`) {
		return e.Key + " " + e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errors is every problem New found, in the order of the rules.
type Errors []*Error

// Error puts one problem on each line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
