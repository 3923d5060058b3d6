package acl

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Channel is a channel name resolved against the channel patterns.
type Channel struct {
	// Name is the channel as the client named it: "class:42".
	Name string
	// Pattern is the config pattern it matched: "class:{classId}".
	Pattern string
	// Params holds the value of each {param}: {"classId": "42"}.
	Params map[string]string

	rule int // index of the pattern in Rules.channels
}

// ErrUnknownChannel is returned by Resolve for a name that fits no pattern.
var ErrUnknownChannel = errors.New("unknown channel")

// ErrInvalidChannel is returned by Resolve for a name that has the shape of
// a pattern but whose param fails that param's regexp.
var ErrInvalidChannel = errors.New("invalid channel")

// MaxChannelBytes bounds the length of a channel name whatever the
// patterns allow: a pattern whose params are unbounded matches names up to
// this long.
const MaxChannelBytes = 1024

// DefaultParamRegexp is the regexp of a param the config gives none for.
const DefaultParamRegexp = `^[0-9A-Za-z_.-]{1,128}$`

// pattern is one compiled channel pattern.
//
// Matching is in two steps. full is one anchored regexp of the literal
// parts with each param's own regexp embedded (its anchors turned into
// empty matches, its groups into non-capturing ones), so that when any way
// of splitting a name fits, it is found. shape puts a lazy (?s:.*?) in
// place of each param and tells a name of the right shape whose param is
// wrong (ErrInvalidChannel) from one of no known shape (ErrUnknownChannel).
// Whatever either captures is then checked again against each param's own
// anchored regexp, so a name resolves only when every param satisfies its
// regexp exactly as written.
type pattern struct {
	text    string
	literal int                       // bytes of literal text, to tell the more specific of two patterns
	maxLen  int                       // the longest name it matches, at most MaxChannelBytes
	names   []string                  // params in order; nil for a literal pattern
	re      map[string]*regexp.Regexp // each param's anchored regexp
	src     map[string]string         // each param's regexp as configured, for messages
	full    *regexp.Regexp
	shape   *regexp.Regexp
}

// patternPart is a literal or, when param is set, a {param}.
type patternPart struct {
	text  string
	param bool
}

// splitPattern cuts a pattern into literal parts and {param}s, refusing
// unbalanced braces and bad or repeated names.
func splitPattern(p string) ([]patternPart, error) {
	if p == "" {
		return nil, errors.New("empty pattern")
	}
	var parts []patternPart
	seen := map[string]bool{}
	for rest := p; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			parts = append(parts, patternPart{text: rest})
			break
		}
		if rest[open] == '}' {
			return nil, errors.New("unmatched '}'")
		}
		if open > 0 {
			parts = append(parts, patternPart{text: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, errors.New("unclosed '{'")
		}
		name := rest[open+1 : open+1+end]
		switch {
		case !paramName.MatchString(name):
			return nil, fmt.Errorf("invalid param {%s}: want a letter or _ then letters, digits or _", name)
		case seen[name]:
			return nil, fmt.Errorf("param {%s} appears twice", name)
		}
		seen[name] = true
		parts = append(parts, patternPart{text: name, param: true})
		rest = rest[open+1+end+1:]
	}
	return parts, nil
}

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// compilePattern builds the matchers of a pattern from its params'
// regexps (missing ones take DefaultParamRegexp).
func compilePattern(p string, params map[string]string) (*pattern, error) {
	parts, err := splitPattern(p)
	if err != nil {
		return nil, err
	}
	pt := &pattern{text: p, re: map[string]*regexp.Regexp{}, src: map[string]string{}}
	longest := 0
	var full, shape strings.Builder
	full.WriteString("^")
	shape.WriteString("^")
	for _, part := range parts {
		if !part.param {
			pt.literal += len(part.text)
			longest += len(part.text)
			full.WriteString(regexp.QuoteMeta(part.text))
			shape.WriteString(regexp.QuoteMeta(part.text))
			continue
		}
		src, ok := params[part.text]
		if !ok {
			src = DefaultParamRegexp
		}
		re, err := regexp.Compile(anchorRegexp(src))
		if err != nil {
			return nil, fmt.Errorf("params.%s: invalid regexp %q: %w", part.text, src, err)
		}
		inner, err := embeddable(src)
		if err != nil {
			return nil, fmt.Errorf("params.%s: invalid regexp %q: %w", part.text, src, err)
		}
		longest += maxMatch(src)
		pt.names = append(pt.names, part.text)
		pt.re[part.text] = re
		pt.src[part.text] = src
		full.WriteString("(" + inner + ")")
		shape.WriteString("(?s:(.*?))")
	}
	full.WriteString("$")
	shape.WriteString("$")
	pt.maxLen = min(longest, MaxChannelBytes)
	for name := range params {
		if _, ok := pt.re[name]; !ok {
			return nil, fmt.Errorf("params.%s: not a param of the pattern", name)
		}
	}
	if pt.names == nil {
		return pt, nil
	}
	if pt.full, err = regexp.Compile(full.String()); err != nil {
		return nil, fmt.Errorf("combine param regexps: %w", err)
	}
	pt.shape = regexp.MustCompile(shape.String())
	return pt, nil
}

// anchorRegexp makes re match a whole value. Wrapping an already anchored
// regexp again changes nothing, so it is always wrapped.
func anchorRegexp(re string) string {
	return "^(?:" + re + ")$"
}

// embeddable rewrites a param regexp for use inside the full pattern
// regexp: anchors become empty matches and capture groups plain groups.
func embeddable(src string) (string, error) {
	t, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return "", err
	}
	stripAnchors(t)
	return "(?:" + t.String() + ")", nil
}

func stripAnchors(t *syntax.Regexp) {
	for t.Op == syntax.OpCapture {
		*t = *t.Sub[0]
	}
	switch t.Op {
	case syntax.OpBeginText, syntax.OpEndText, syntax.OpBeginLine, syntax.OpEndLine:
		*t = syntax.Regexp{Op: syntax.OpEmptyMatch}
	}
	for _, s := range t.Sub {
		stripAnchors(s)
	}
}

// maxMatch is the most bytes a match of the regexp src (already compiled
// once) can span, or more than MaxChannelBytes when that is unbounded.
func maxMatch(src string) int {
	t, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return MaxChannelBytes + 1
	}
	return min(maxBytes(t.Simplify()), MaxChannelBytes+1)
}

// unbounded stands for a match of no bound in maxBytes; sums of a few stay
// far from overflowing.
const unbounded = 1 << 40

// maxBytes is the most bytes a match of t can span (unbounded when
// without bound).
func maxBytes(t *syntax.Regexp) int {
	switch t.Op {
	case syntax.OpLiteral:
		if t.Flags&syntax.FoldCase != 0 {
			return len(t.Rune) * utf8.UTFMax // a case fold may be longer (K, the Kelvin sign)
		}
		n := 0
		for _, r := range t.Rune {
			n += utf8.RuneLen(max(r, 0))
		}
		return n
	case syntax.OpCharClass:
		if len(t.Rune) == 0 {
			return 0
		}
		return utf8.RuneLen(min(t.Rune[len(t.Rune)-1], utf8.MaxRune))
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxBytes(t.Sub[0])
	case syntax.OpStar, syntax.OpPlus:
		if maxBytes(t.Sub[0]) == 0 {
			return 0
		}
		return unbounded
	case syntax.OpRepeat:
		sub := maxBytes(t.Sub[0])
		switch {
		case sub == 0:
			return 0
		case t.Max < 0:
			return unbounded
		}
		return min(sub*t.Max, unbounded)
	case syntax.OpConcat:
		n := 0
		for _, s := range t.Sub {
			n = min(n+maxBytes(s), unbounded)
		}
		return n
	case syntax.OpAlternate:
		n := 0
		for _, s := range t.Sub {
			n = max(n, maxBytes(s))
		}
		return n
	}
	return 0 // empty matches, anchors, boundaries, no match
}

// match reports how name fits the pattern: params when it does; fits false
// and err nil when it has another shape; an error naming the param when it
// has this shape but a param fails its regexp.
func (p *pattern) match(name string) (params map[string]string, fits bool, err error) {
	if p.names == nil {
		return map[string]string{}, name == p.text, nil
	}
	if m := p.full.FindStringSubmatch(name); m != nil {
		if params, err = p.check(m[1:]); err == nil {
			return params, true, nil
		}
	}
	m := p.shape.FindStringSubmatch(name)
	if m == nil {
		return nil, false, nil
	}
	if params, err = p.check(m[1:]); err == nil {
		return params, true, nil
	}
	return nil, false, err
}

// check tests each captured value against its param's anchored regexp.
func (p *pattern) check(values []string) (map[string]string, error) {
	params := make(map[string]string, len(p.names))
	for i, name := range p.names {
		if !p.re[name].MatchString(values[i]) {
			return nil, fmt.Errorf("%w: param %s does not match %s", ErrInvalidChannel, name, p.src[name])
		}
		params[name] = values[i]
	}
	return params, nil
}
