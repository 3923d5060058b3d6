package acl

import (
	"errors"
	"fmt"
	"strings"
)

// sqlQuery is an allow rule's query with its :name placeholders turned
// into $1..$n.
type sqlQuery struct {
	text string
	// args names the value of each $n, in order: argUserID, argRole or a
	// param name.
	args []string
}

// Placeholder names that are not channel params.
const (
	argUserID = "user_id"
	argRole   = "role"
)

// translateSQL replaces the :name placeholders of q by $1..$n (the same
// name, the same number) and records which value each takes. Names are
// :user_id, :role and the pattern's params; any other is an error. Text in
// string literals, quoted identifiers, dollar quotes and comments is left
// alone, and so are ::type casts. Positional $1 parameters are refused:
// values only ever reach the query as bound parameters.
func translateSQL(q string, params map[string]bool) (*sqlQuery, error) {
	var out strings.Builder
	out.Grow(len(q) + 8)
	sq := &sqlQuery{}
	index := map[string]int{}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'':
			end, err := skipQuoted(q, i, '\'', escapeString(q, i))
			if err != nil {
				return nil, err
			}
			out.WriteString(q[i:end])
			i = end
		case c == '"':
			end, err := skipQuoted(q, i, '"', false)
			if err != nil {
				return nil, err
			}
			out.WriteString(q[i:end])
			i = end
		case c == '-' && strings.HasPrefix(q[i:], "--"):
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				end = len(q) - i
			}
			out.WriteString(q[i : i+end])
			i += end
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			end, err := skipBlockComment(q, i)
			if err != nil {
				return nil, err
			}
			out.WriteString(q[i:end])
			i = end
		case c == '$':
			if i+1 < len(q) && isDigit(q[i+1]) && (i == 0 || !isIdentByte(q[i-1])) {
				return nil, errors.New("positional parameters ($1) are not allowed: use :user_id, :role or :<param>")
			}
			end, ok, err := skipDollarQuoted(q, i)
			if err != nil {
				return nil, err
			}
			if !ok {
				end = i + 1
			}
			out.WriteString(q[i:end])
			i = end
		case c == ':' && strings.HasPrefix(q[i:], "::"):
			out.WriteString("::")
			i += 2
		case c == ':' && i+1 < len(q) && isIdentStart(q[i+1]):
			j := i + 2
			for j < len(q) && isIdentByte(q[j]) {
				j++
			}
			name := q[i+1 : j]
			n, err := sq.placeholder(name, params, index)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&out, "$%d", n)
			i = j
		default:
			out.WriteByte(c)
			i++
		}
	}
	sq.text = out.String()
	return sq, nil
}

// placeholder returns the $n of name, adding it when new.
func (sq *sqlQuery) placeholder(name string, params map[string]bool, index map[string]int) (int, error) {
	if n, ok := index[name]; ok {
		return n, nil
	}
	caller := name == argUserID || name == argRole
	switch {
	case caller && params[name]:
		return 0, fmt.Errorf("placeholder :%s is ambiguous: both the caller's %s and a param of the pattern; rename the param", name, name)
	case !caller && !params[name]:
		return 0, fmt.Errorf("unknown placeholder :%s: want :user_id, :role or a param of the pattern", name)
	}
	sq.args = append(sq.args, name)
	index[name] = len(sq.args)
	return len(sq.args), nil
}

// escapeString reports whether the quote at q[i] opens an E'...' string,
// in which a backslash escapes the next byte.
func escapeString(q string, i int) bool {
	return i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i == 1 || !isIdentByte(q[i-2]))
}

// skipQuoted returns the index after the literal opening at q[i], where a
// doubled quote stands for itself.
func skipQuoted(q string, i int, quote byte, backslash bool) (int, error) {
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			if backslash {
				j++
			}
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c at byte %d", quote, i)
}

// skipBlockComment returns the index after the comment opening at q[i];
// PostgreSQL block comments nest.
func skipBlockComment(q string, i int) (int, error) {
	depth := 0
	for j := i; j+1 < len(q); {
		switch q[j : j+2] {
		case "/*":
			depth++
			j += 2
		case "*/":
			depth--
			j += 2
			if depth == 0 {
				return j, nil
			}
		default:
			j++
		}
	}
	return 0, fmt.Errorf("unterminated /* comment at byte %d", i)
}

// skipDollarQuoted returns the index after a $tag$...$tag$ string opening
// at q[i]; ok is false when q[i] does not open one.
func skipDollarQuoted(q string, i int) (end int, ok bool, err error) {
	if i > 0 && isIdentByte(q[i-1]) {
		return 0, false, nil // part of an identifier such as a$b
	}
	j := i + 1
	for j < len(q) && q[j] != '$' {
		if !isIdentByte(q[j]) || (j == i+1 && isDigit(q[j])) {
			return 0, false, nil
		}
		j++
	}
	if j >= len(q) {
		return 0, false, nil
	}
	tag := q[i : j+1]
	k := strings.Index(q[j+1:], tag)
	if k < 0 {
		return 0, false, fmt.Errorf("unterminated dollar quote %s at byte %d", tag, i)
	}
	return j + 1 + k + len(tag), true, nil
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdentByte(c byte) bool  { return isIdentStart(c) || isDigit(c) || c >= 0x80 }
