package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/internal/safetext"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// forged is free text as an older or hostile partner node may send it: a
// newline and a row of its own, an escape sequence that clears the screen,
// a C1 CSI, DEL, a tab and a right-to-left override.
const forged = "routine\n01900000-0000-7000-8000-000000000000  incoming approved  FORGED ROW\x1b[2J\u009b31m\x7f\tx\u202egnp.exe"

// wantRows checks the text output has exactly rows lines, none holding a
// control character or a bidirectional override, and that the forged text
// shows escaped.
func wantRows(t *testing.T, what, out string, rows int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != rows {
		t.Errorf("%s: %d lines, want %d:\n%s", what, len(lines), rows, out)
	}
	for i, l := range lines {
		if pos, r := safetext.Find(l); pos != 0 {
			t.Errorf("%s: line %d holds %U at character %d: %q", what, i+1, r, pos, l)
		}
	}
	if !strings.Contains(out, safetext.Escape(forged)) {
		t.Errorf("%s: output %q\ndoes not show the text escaped: %q", what, out, safetext.Escape(forged))
	}
}

// TestTextOutputEscapesNodeText: what a node sends is printed with its
// control characters and bidi overrides escaped, so a partner cannot forge
// rows in the lists an officer reads.
func TestTextOutputEscapesNodeText(t *testing.T) {
	now := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	susp := &adminv1.Suspension{Reason: forged, By: "spiffe://usa.tearline.test/party/USA/officer/sec", Since: now}
	var out bytes.Buffer
	g := &globals{stdout: &out, stderr: &out}
	for _, c := range []struct {
		what  string
		rows  int
		print func()
	}{
		{"consent list", 2, func() {
			printConsent(g, &clientv1.Consent{Id: "c1", Direction: "incoming", State: "pending", ReportId: "r1", Holder: "GBR", To: "CAN", Originator: "USA", Purpose: forged})
			printConsent(g, &clientv1.Consent{Id: "c2", Direction: "outgoing", State: "denied", ReportId: "r2", Holder: "USA", To: "CAN", Originator: "GBR", Purpose: "p", Reason: forged})
		}},
		{"crisis list", 1, func() {
			printCrisis(g, &adminv1.Crisis{Id: "k1", State: "active", Originator: "GBR", Topics: []string{"CT"}, Parties: []string{"USA"}, MaxClassification: "SECRET", Expires: now, Reason: forged})
		}},
		{"subscriber list", 2, func() {
			printSubscribers(&out, []*adminv1.Subscriber{{Name: "analyst", Clearance: "SECRET", Suspension: susp}, {Name: "other", Clearance: "SECRET"}})
		}},
		{"partner list", 2, func() {
			printPartners(&out, []*adminv1.Partner{{Party: "GBR", Address: "127.0.0.1:7402", Agreement: "active", Suspension: susp}, {Party: "CAN", Agreement: "active"}})
		}},
		{"reports", 2, func() {
			printReports(&out, []*clientv1.ReportSummary{{Id: "r1", Originator: "GBR", Banner: "SECRET", Title: forged}, {Id: "r2", Originator: "USA", Banner: "SECRET", Title: "plain"}})
		}},
		{"events", 1, func() {
			printEvents(&out, []*adminv1.SecurityEvent{{Time: now, Kind: "bad-consent", Partner: "GBR", Rule: "bad-input", Message: forged}})
		}},
		{"withdraw status", 2, func() {
			printWithdraw(g, &adminv1.WithdrawStatusResponse{WithdrawalId: "w1", ReportId: "r1", Action: "purge", Reason: forged, Parties: []*adminv1.WithdrawalParty{{Party: "GBR"}}})
		}},
		{"provenance step", 1, func() {
			out.WriteString(step{Time: "t", What: "withdrawal-applied", Party: "GBR", Detail: forged}.text() + "\n")
		}},
		{"show", 4, func() {
			printReport(&out, &clientv1.ReportView{Id: "r1", Originator: "GBR", Signer: "s", Created: now,
				Withdrawal: &clientv1.WithdrawalView{Action: "purge", Reason: forged},
				Portions:   []*clientv1.PortionView{{Index: 1, Withheld: true}}})
		}},
		{"error", 1, func() {
			report(g, status.Error(codes.PermissionDenied, "report r1 was withdrawn by its originator (purge: "+forged+")"))
		}},
	} {
		out.Reset()
		c.print()
		wantRows(t, c.what, out.String(), c.rows)
	}
}

// TestJSONErrorIsOneLine: with --json an error is one line, so that the
// last line of a stream of JSON lines (subscribe, publish --batch, audit
// export) parses like the rest; it keeps the message intact.
func TestJSONErrorIsOneLine(t *testing.T) {
	var out bytes.Buffer
	g := &globals{json: true, stdout: &out, stderr: &out}
	msg := "subscriber analyst is suspended; the last report sent to it was cursor 3"
	report(g, status.Error(codes.PermissionDenied, msg))
	if strings.Count(out.String(), "\n") != 1 || !strings.HasSuffix(out.String(), "\n") {
		t.Fatalf("the error is not one line: %q", out.String())
	}
	var e struct{ Error cliError }
	if err := json.Unmarshal(out.Bytes(), &e); err != nil || e.Error.Code != "PermissionDenied" || e.Error.Message != msg {
		t.Fatalf("%q: %v %+v", out.String(), err, e)
	}

	// A usage error, refused by cobra or by a verb, too.
	for _, args := range [][]string{{"--json", "bogusverb"}, {"--json", "subscribe", "--count", "-1"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, strings.NewReader(""), &stdout, &stderr); code != 2 {
			t.Fatalf("%v: exit %d", args, code)
		}
		if strings.Count(stdout.String(), "\n") != 1 || !json.Valid(stdout.Bytes()) {
			t.Fatalf("%v: the error is not one line of JSON: %q", args, stdout.String())
		}
	}
}

func TestPlural(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{{0, "0 checkpoints"}, {1, "1 checkpoint"}, {2, "2 checkpoints"}} {
		if got := plural(c.n, "checkpoint", "checkpoints"); got != c.want {
			t.Errorf("plural(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

// A text body keeps its tabs and lines, and loses its power over the
// terminal: a carriage return inside a line, escapes and bidi overrides
// are shown escaped.
func TestBodyLine(t *testing.T) {
	for in, want := range map[string]string{
		"a\tb":                      "a\tb",
		"crlf line\r":               "crlf line",
		"\r\x1b[2A(1) UNCLASSIFIED": `\r\x1b[2A(1) UNCLASSIFIED`,
		"abc\u202edef":              `abc\u202edef`,
	} {
		if got := bodyLine(in); got != want {
			t.Errorf("bodyLine(%q) = %q, want %q", in, got, want)
		}
	}
}
