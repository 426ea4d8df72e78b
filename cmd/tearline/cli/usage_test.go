package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestUsageErrors: a usage error exits 2 and points at the help of the
// verb it came from; with --json it is a JSON error on stdout even when
// cobra refused the verb or flag before it parsed --json.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		text string // on stderr, without --json
	}{
		{[]string{"bogusverb"}, `unknown command "bogusverb" for "tearline" (see tearline --help)`},
		{[]string{"publish", "--bogus"}, "unknown flag: --bogus (see tearline publish --help)"},
		{[]string{"subscribe", "--count", "-1"}, "(see tearline subscribe --help)"},
		{[]string{"consent", "approve"}, "(see tearline consent approve --help)"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(c.args, strings.NewReader(""), &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.text) || stdout.Len() != 0 {
			t.Errorf("%v: stderr %q, stdout %q; want stderr to say %q", c.args, stderr.String(), stdout.String(), c.text)
		}
		for _, args := range [][]string{append([]string{"--json"}, c.args...), append(append([]string{}, c.args...), "--json")} {
			stdout.Reset()
			stderr.Reset()
			if code := Main(args, strings.NewReader(""), &stdout, &stderr); code != 2 {
				t.Errorf("%v: exit %d, want 2", args, code)
			}
			var e struct {
				Error struct{ Code, Reason, Message string }
			}
			if err := json.Unmarshal(stdout.Bytes(), &e); err != nil || e.Error.Code != "InvalidArgument" || e.Error.Reason != "usage" || e.Error.Message == "" {
				t.Errorf("%v: stdout %q (%v), want a JSON usage error", args, stdout.String(), err)
			}
		}
	}
	if jsonAsked([]string{"publish", "--", "--json"}) {
		t.Error("--json after -- is an argument, not the flag")
	}
}
