package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tearline/tearline/internal/freeport"
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
		// --for says how long a declaration lasts, in range, or is refused
		// with the range; only a missing --for is "required".
		{[]string{"crisis", "declare", "--topics", "CT", "--parties", "GBR", "--max", "SECRET", "--for", "0s", "--reason", "r"},
			"--for 0s: a crisis declaration lasts more than 0 and at most 72h0m0s (see tearline crisis declare --help)"},
		{[]string{"crisis", "declare", "--topics", "CT", "--parties", "GBR", "--max", "SECRET", "--for", "-1h", "--reason", "r"},
			"--for -1h0m0s: a crisis declaration lasts more than 0 and at most 72h0m0s"},
		{[]string{"crisis", "declare", "--topics", "CT", "--parties", "GBR", "--max", "SECRET", "--for", "73h", "--reason", "r"},
			"--for 73h0m0s: a crisis declaration lasts more than 0 and at most 72h0m0s"},
		{[]string{"crisis", "declare", "--topics", "CT", "--parties", "GBR", "--max", "SECRET", "--reason", "r"},
			"--topics, --parties, --max, --for and --reason are all required"},
		// A --timeout that allows no time is refused before any call.
		{[]string{"--timeout", "0s", "reports"}, "--timeout 0s: give a positive duration, e.g. 30s (see tearline reports --help)"},
		{[]string{"reports", "--timeout", "-1s"}, "--timeout -1s: give a positive duration"},
		// --node with --dev/--as names the node twice.
		{[]string{"--dev", "tearline-dev", "--as", "USA", "--node", "127.0.0.1:17402", "reports"},
			"--node and --dev/--as both say which node to call: give --node ADDR --profile DIR, or --dev DIR --as PARTY"},
		{[]string{"--as", "USA", "--node", "127.0.0.1:17402", "--profile", "p", "consent", "list"}, "--node and --dev/--as both say which node to call"},
		{[]string{"--as", "USA", "reports"}, "--as needs --dev DIR"},
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

// TestSuspendHelp: each suspend verb's help says what a suspension does
// and how it is lifted, not only its one-line summary.
func TestSuspendHelp(t *testing.T) {
	for noun, wants := range map[string][]string{
		"partner": {"records the suspension first", "every live connection with PARTY's node closes",
			"new TLS handshakes and calls from PARTY's node are refused", "'share' to PARTY is refused (rule suspended)",
			"queued and held, not dropped", "'partner reinstate PARTY' lifts the suspension", "delivered in order"},
		"subscriber": {"records the suspension first", "its live streams end at once", "new subscriptions are refused",
			"saved cursor is kept", "'subscriber reinstate NAME'", "'subscribe\n--resume' continues"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main([]string{noun, "suspend", "--help"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("%s suspend --help: exit %d, %s", noun, code, stderr.String())
		}
		for _, want := range wants {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%s suspend --help does not say %q:\n%s", noun, want, stdout.String())
			}
		}
	}
}

// TestDevIgnoresEnvNode: with --dev DIR --as PARTY the node is PARTY's in
// DIR; TEARLINE_NODE, meant for --profile use, does not send the call
// elsewhere (before, it won, and USA's profile went to that address).
func TestDevIgnoresEnvNode(t *testing.T) {
	dir := t.TempDir()
	base, err := freeport.Range(2)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"dev", "--init-only", "--dir", dir, "--parties", "USA,GBR", "--base-port", fmt.Sprint(base)}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("dev --init-only: exit %d: %s", code, stderr.String())
	}
	t.Setenv("TEARLINE_NODE", "nohost.invalid:7400")
	stdout.Reset()
	stderr.Reset()
	// Nothing listens at USA's dev address: the call is refused there.
	code := Main([]string{"--json", "--dev", dir, "--as", "USA", "--timeout", "5s", "reports"}, strings.NewReader(""), &stdout, &stderr)
	var e struct{ Error cliError }
	if code != 1 || json.Unmarshal(stdout.Bytes(), &e) != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if e.Error.Reason == "unresolved" || !strings.Contains(e.Error.Message, fmt.Sprintf("127.0.0.1:%d", base)) {
		t.Fatalf("the call went to %q, not to USA's dev node at port %d", e.Error.Message, base)
	}
}
