package broadcaster

import (
	"errors"
	"fmt"
	"strconv"
)

// Cursor is a position in the event stream, totally ordered in commit order.
// It is derived from the commit LSN of the event's transaction and the
// event's position in that transaction, so it is the same on every replay.
//
// Its text form, "0000000016B3748C-00000003" (16 hex digits of commit LSN, a
// dash, 8 hex digits of position), is what clients see as eventId and cursor.
// Fixed width keeps the text order equal to the numeric order, and the dash
// keeps it from ever being all digits.
type Cursor struct {
	// LSN is the commit LSN of the event's transaction.
	LSN LSN
	// Pos is the event's position within its transaction, from 1. Zero means
	// "the end of the transaction at LSN": every event of that transaction and
	// of earlier ones lies at or before it.
	Pos uint32
}

// ErrBadCursor is returned by ParseCursor for text that is not a cursor.
var ErrBadCursor = errors.New("malformed cursor")

// cursorLen is the length of a cursor's text form.
const cursorLen = 16 + 1 + 8

// String returns the cursor's text form.
func (c Cursor) String() string {
	var b [cursorLen]byte
	return string(c.AppendText(b[:0]))
}

// AppendText appends the cursor's text form to b.
func (c Cursor) AppendText(b []byte) []byte {
	const hex = "0123456789ABCDEF"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hex[(uint64(c.LSN)>>i)&0xF])
	}
	b = append(b, '-')
	for i := 28; i >= 0; i -= 4 {
		b = append(b, hex[(c.Pos>>i)&0xF])
	}
	return b
}

// IsZero reports whether c is the zero cursor, the start of time.
func (c Cursor) IsZero() bool { return c == Cursor{} }

// Compare returns -1, 0 or +1 as c is before, equal to or after d.
func (c Cursor) Compare(d Cursor) int {
	switch {
	case c.LSN < d.LSN:
		return -1
	case c.LSN > d.LSN:
		return 1
	}
	// Pos 0 stands for the end of the transaction, after every real position.
	cp, dp := uint64(c.Pos), uint64(d.Pos)
	if cp == 0 {
		cp = 1 << 32
	}
	if dp == 0 {
		dp = 1 << 32
	}
	switch {
	case cp < dp:
		return -1
	case cp > dp:
		return 1
	}
	return 0
}

// Before reports whether c is strictly before d.
func (c Cursor) Before(d Cursor) bool { return c.Compare(d) < 0 }

// ParseCursor parses a cursor's text form. It accepts exactly what String
// produces (hex digits in either case) and nothing else.
func ParseCursor(s string) (Cursor, error) {
	if len(s) != cursorLen || s[16] != '-' {
		return Cursor{}, fmt.Errorf("%w %q: want 16 hex digits, '-', 8 hex digits", ErrBadCursor, truncate(s, 40))
	}
	lsn, err := strconv.ParseUint(s[:16], 16, 64)
	if err != nil || !isHex(s[:16]) {
		return Cursor{}, fmt.Errorf("%w %q: bad lsn part", ErrBadCursor, s)
	}
	pos, err := strconv.ParseUint(s[17:], 16, 32)
	if err != nil || !isHex(s[17:]) {
		return Cursor{}, fmt.Errorf("%w %q: bad position part", ErrBadCursor, s)
	}
	return Cursor{LSN: LSN(lsn), Pos: uint32(pos)}, nil
}

// MarshalText implements encoding.TextMarshaler.
func (c Cursor) MarshalText() ([]byte, error) { return c.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Cursor) UnmarshalText(b []byte) error {
	v, err := ParseCursor(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
