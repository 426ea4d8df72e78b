// Package safetext keeps free text that one party types (a consent
// purpose, a suspension or withdrawal reason) from acting on the terminal
// of another party's officer. A node refuses such text with Check; a
// client escapes what a node sends it with Escape, since an older or
// hostile partner node may still have stored some.
//
// The characters refused and escaped are the C0 controls (tab and newline
// included: every free-text field is one line), DEL, the C1 controls, and
// the Unicode bidirectional embeddings, overrides and isolates (U+202A to
// U+202E, U+2066 to U+2069), which reorder what a terminal shows. A byte
// that is not UTF-8 counts too: some terminals read a lone 0x9B as CSI.
package safetext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Unsafe reports whether r may not appear in free text.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f: // C0, DEL, C1
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi
		return true
	}
	return false
}

// Find returns the position of the first unsafe character of s, counted in
// characters from 1, and that character (utf8.RuneError for a byte that is
// not UTF-8); pos is 0 when s has none.
func Find(s string) (pos int, r rune) {
	i := 0
	for off, r := range s {
		i++
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[off:]); size == 1 {
				return i, r
			}
		}
		if Unsafe(r) {
			return i, r
		}
	}
	return 0, 0
}

// Check returns nil when s holds no unsafe character, or else an error
// naming field (e.g. "the purpose (--purpose)"), the character's position
// and what it is.
func Check(field, s string) error {
	pos, r := Find(s)
	if pos == 0 {
		return nil
	}
	return fmt.Errorf("%s: character %d is %s; free text may not hold control characters (tab and newline included) or bidirectional overrides", field, pos, describe(r))
}

func describe(r rune) string {
	switch {
	case r == utf8.RuneError:
		return "a byte that is not UTF-8"
	case r >= 0x202a:
		return fmt.Sprintf("U+%04X, a bidirectional override", r)
	}
	return fmt.Sprintf("U+%04X, a control character", r)
}

// Escape returns s with each unsafe character written as a Go escape
// (\n, \t, \x1b, \u202e; \xNN for a byte that is not UTF-8) and every
// other character as it is. Text with none comes back unchanged.
func Escape(s string) string {
	if Clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !Unsafe(r):
			b.WriteString(s[i : i+size])
		case r < 0x80:
			if e, ok := short[r]; ok {
				b.WriteString(e)
			} else {
				fmt.Fprintf(&b, `\x%02x`, r)
			}
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// Clean reports whether s holds no unsafe character.
func Clean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			pos, _ := Find(s[i:])
			return pos == 0
		}
	}
	return true
}

var short = map[rune]string{'\a': `\a`, '\b': `\b`, '\f': `\f`, '\n': `\n`, '\r': `\r`, '\t': `\t`, '\v': `\v`}
