package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/tearline/tearline/internal/safetext"
)

// textf prints like fmt.Fprintf, with every string argument escaped
// (internal/safetext): the text output shows what nodes send (a partner's
// consent purpose or withdrawal reason, a subscriber's suspension reason,
// a report's title), and a control character or a bidirectional override
// in it must not forge rows or reorder what the terminal shows. A node
// refuses such text from its own officers, but an older or hostile partner
// node may still send it. Only the offending characters are escaped (\n,
// \x1b, \u202e), so ordinary text reads as it was written. The format's
// own newlines are kept; report bodies, which are content, are not passed
// through here.
func textf(w io.Writer, format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = safetext.Escape(s)
		}
	}
	fmt.Fprintf(w, format, args...)
}

// plural is n with the noun in the number n calls for: "1 checkpoint",
// "2 checkpoints".
func plural[N int | int64 | uint64 | uint32](n N, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// bodyLine is one line of a text portion's body as the terminal shows it:
// a carriage return that ends it (CRLF text) is dropped, tabs are kept,
// and every other control character or bidirectional override is escaped,
// so that a partner's report cannot move the cursor over the lines printed
// before it (a banner, "digest verified") or forge a report of another.
func bodyLine(line string) string {
	parts := strings.Split(strings.TrimSuffix(line, "\r"), "\t")
	for i, p := range parts {
		parts[i] = safetext.Escape(p)
	}
	return strings.Join(parts, "\t")
}
