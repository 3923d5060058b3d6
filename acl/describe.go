package acl

import (
	"slices"
	"strings"
)

// SQLRule is one compiled `sql` allow rule, for tools that check the rules
// against a database before serving (cdc-broadcaster check and serve).
type SQLRule struct {
	// Channel is the index of the channel in the channels config.
	Channel int
	// Allow is the index of the rule in that channel's allow list.
	Allow int
	// Pattern is the channel's pattern.
	Pattern string
	// Query is the rule's query as it runs, :names turned into $1..$n.
	Query string
	// Args names the value each $n takes: "user_id", "role" or a param.
	Args []string
	// RecheckOn lists the channel's recheck_on tables, named as mappings
	// name tables ("public.x" is "x"), sorted.
	RecheckOn []string
}

// SQLRules lists every `sql` allow rule, in config order.
func (r *Rules) SQLRules() []SQLRule {
	var out []SQLRule
	for i, cr := range r.channels {
		for _, a := range cr.allow {
			if a.sql == nil {
				continue
			}
			recheck := make([]string, 0, len(cr.recheck))
			for t := range cr.recheck {
				recheck = append(recheck, t)
			}
			slices.Sort(recheck)
			out = append(out, SQLRule{
				Channel: i, Allow: a.index, Pattern: cr.pat.text,
				Query: a.sql.text, Args: slices.Clone(a.sql.args), RecheckOn: recheck,
			})
		}
	}
	return out
}

// CanMatch reports whether a channel rendered from a mapping's channel
// template could fit one of the channel patterns. A template is literal
// text with {column}, {old.column} or {new.column} placeholders. A template
// without placeholders must resolve as it stands; one with placeholders
// must have the literal shape of some pattern (each placeholder and each
// {param} standing for any text), since the values come from rows that are
// not known in advance.
func (r *Rules) CanMatch(template string) bool {
	tmpl, ok := globTokens(template)
	if !ok {
		return false
	}
	if !slices.Contains(tmpl, wildcard) {
		_, err := r.Resolve(template)
		return err == nil
	}
	for _, cr := range r.channels {
		pat, ok := globTokens(cr.pat.text)
		if ok && globsIntersect(tmpl, pat) {
			return true
		}
	}
	return false
}

// wildcard stands for a {placeholder} among the bytes of a glob.
const wildcard = -1

// globTokens turns text with {name}s into its bytes with a wildcard for
// each {name}; ok is false for unbalanced braces.
func globTokens(s string) ([]int, bool) {
	var out []int
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			open = len(rest)
		}
		for i := 0; i < open; i++ {
			out = append(out, int(rest[i]))
		}
		if open == len(rest) {
			break
		}
		if rest[open] == '}' {
			return nil, false
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, false
		}
		out = append(out, wildcard)
		rest = rest[open+1+end+1:]
	}
	return out, true
}

// globsIntersect reports whether some string fits both globs, a wildcard
// standing for any text (the empty text included).
func globsIntersect(a, b []int) bool {
	memo := map[[2]int]bool{}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		var v bool
		switch {
		case i == len(a) && j == len(b):
			v = true
		case i < len(a) && a[i] == wildcard:
			v = match(i+1, j) || (j < len(b) && match(i, j+1))
		case j < len(b) && b[j] == wildcard:
			v = match(i, j+1) || (i < len(a) && match(i+1, j))
		case i < len(a) && j < len(b):
			v = a[i] == b[j] && match(i+1, j+1)
		}
		memo[key] = v
		return v
	}
	return match(0, 0)
}
