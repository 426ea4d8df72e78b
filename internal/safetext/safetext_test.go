package safetext

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFindAndCheck(t *testing.T) {
	for _, c := range []struct {
		s    string
		pos  int
		r    rune
		kind string
	}{
		{"joint operation", 0, 0, ""},
		{"café — naïve ok, ελληνικά, 日本語", 0, 0, ""},
		{"a\nb", 2, '\n', "U+000A, a control character"},
		{"tab\there", 4, '\t', "U+0009, a control character"},
		{"é\x1b[2J", 2, 0x1b, "U+001B, a control character"},
		{"del\x7f", 4, 0x7f, "U+007F, a control character"},
		{"c1 \u009b31m", 4, 0x9b, "U+009B, a control character"},
		{"x\u202egnp.exe", 2, 0x202e, "U+202E, a bidirectional override"},
		{"\u2066isolate", 1, 0x2066, "U+2066, a bidirectional override"},
		{"\u2069", 1, 0x2069, "U+2069, a bidirectional override"},
		{"ok\xffbad", 3, utf8.RuneError, "a byte that is not UTF-8"},
		{"\u200d\u2028\u202f", 0, 0, ""}, // joiners and spaces are text
	} {
		pos, r := Find(c.s)
		if pos != c.pos || r != c.r {
			t.Errorf("Find(%q) = %d, %U; want %d, %U", c.s, pos, r, c.pos, c.r)
		}
		err := Check("the purpose (--purpose)", c.s)
		if c.pos == 0 {
			if err != nil || !Clean(c.s) || Escape(c.s) != c.s {
				t.Errorf("%q: Check %v, Clean %v, Escape %q; want it accepted as it is", c.s, err, Clean(c.s), Escape(c.s))
			}
			continue
		}
		if err == nil || Clean(c.s) {
			t.Errorf("Check(%q) accepted it", c.s)
			continue
		}
		for _, want := range []string{"the purpose (--purpose)", "character " + strconv.Itoa(c.pos), c.kind} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Check(%q) = %q; want it to say %q", c.s, err, want)
			}
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain, with a \\ backslash":        "plain, with a \\ backslash",
		"row\nFORGED  row":                  `row\nFORGED  row`,
		"a\tb\r\x00":                        `a\tb\r\x00`,
		"\x1b[31mred\x1b[0m":                `\x1b[31mred\x1b[0m`,
		"\x7f\u0085\u009b":                  `\x7f\u0085\u009b`,
		"file\u202etxt.exe \u2066x\u2069":   `file\u202etxt.exe \u2066x\u2069`,
		"é\xff\x9bü":                        `é\xff\x9bü`,
		"ελληνικά \u200d 日本語":               "ελληνικά \u200d 日本語",
		strings.Repeat("é", 3) + "\n" + "漢": `ééé\n漢`,
	} {
		got := Escape(in)
		if got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		if pos, _ := Find(got); pos != 0 {
			t.Errorf("Escape(%q) = %q still holds an unsafe character at %d", in, got, pos)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\x1b[2J", "\u202e", "\xff\x9b", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if pos, r := Find(e); pos != 0 {
			t.Fatalf("Escape(%q) = %q holds %U at %d", s, e, r, pos)
		}
		if Clean(s) != (e == s) {
			t.Fatalf("Clean(%q) = %v but Escape gives %q", s, Clean(s), e)
		}
		if (Check("f", s) == nil) != Clean(s) {
			t.Fatalf("Check and Clean disagree on %q", s)
		}
	})
}
