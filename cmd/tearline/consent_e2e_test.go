package main

// Consent decisions through the real binary: each verb takes only the state
// it applies to and says what to do instead, the "Next:" of a denial is a
// command that works when followed, and no consent is asked or granted for
// a withdrawn report.

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestE2EConsentDecisions(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	secrets := []string{"ORCON-BODY"}
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "CT", "--body", "ORCON-BODY")
	f.waitHolds("GBR", id)

	// refused runs a consent verb that must be refused as invalid, with a
	// message that contains want, and leave the request in its state.
	refused := func(party, req, state, want string, args ...string) {
		t.Helper()
		e := f.denied(party, secrets, args...)
		if e.Code != "InvalidArgument" || !strings.Contains(e.Message, want) {
			t.Fatalf("tearline %s: %+v, want InvalidArgument saying %q", strings.Join(args, " "), e, want)
		}
		if s := f.consentState(party, req); s != state {
			t.Fatalf("after the refused %s the request is %s, want %s", args[1], s, state)
		}
	}

	// The denial's next step is a consent request that works as printed
	// (TEXT filled in).
	e := f.denied("GBR", secrets, "share", id, "--to", "CAN")
	m := regexp.MustCompile(`\(tearline (consent request [^)]*)\)$`).FindStringSubmatch(e.Next)
	if e.Reason != "third-party-rule" || m == nil || !strings.Contains(m[1], "--purpose TEXT") {
		t.Fatalf("ORCON share: %+v", e)
	}
	var req struct{ ID string }
	f.jsonCLI(&req, "GBR", strings.Fields(strings.Replace(m[1], "TEXT", "joint-operation", 1))...)
	eventually(t, 15*time.Second, "USA to see the request", func() bool { return f.consentState("USA", req.ID) == "pending" })

	// Passing the report back to its originator is never advised as a
	// consent request: USA holds it.
	e = f.denied("GBR", secrets, "share", id, "--to", "USA")
	if e.Next != "none: USA is the report's originator and already holds it" || strings.Contains(e.Message, "consent") {
		t.Fatalf("share back to the originator: %+v", e)
	}

	// withdraw needs an approval; deny does not take one back.
	refused("USA", req.ID, "pending", "request "+req.ID+" is pending: deny it instead (tearline consent deny "+req.ID+" --reason TEXT)",
		"consent", "withdraw", req.ID, "--reason", "too early")
	f.mustCLI("USA", "consent", "approve", req.ID, "--ttl", "1h")
	eventually(t, 15*time.Second, "GBR to get the grant", func() bool { return f.consentState("GBR", req.ID) == "approved" })
	refused("USA", req.ID, "approved", "request "+req.ID+" is already approved; to take its grant back: tearline consent withdraw "+req.ID+" --reason TEXT",
		"consent", "deny", req.ID, "--reason", "changed my mind")
	f.mustCLI("USA", "consent", "withdraw", req.ID, "--reason", "source at risk")
	eventually(t, 15*time.Second, "GBR to learn of the withdrawal", func() bool { return f.consentState("GBR", req.ID) == "withdrawn" })
	refused("USA", req.ID, "withdrawn", "request "+req.ID+" is already withdrawn", "consent", "withdraw", req.ID, "--reason", "again")

	// A request made before the report is withdrawn is not approved after.
	var late struct{ ID string }
	f.jsonCLI(&late, "GBR", "consent", "request", id, "--to", "CAN", "--purpose", "second look")
	eventually(t, 15*time.Second, "USA to see the second request", func() bool { return f.consentState("USA", late.ID) == "pending" })
	f.mustCLI("USA", "withdraw", id, "--reason", "burned source")
	if e := f.denied("USA", secrets, "consent", "approve", late.ID); e.Reason != "withdrawn" {
		t.Fatalf("approve for a withdrawn report: %+v", e)
	}
	if s := f.consentState("USA", late.ID); s != "pending" {
		t.Fatalf("after the refused approval the request is %s", s)
	}
	// And the holder cannot ask once it has the withdrawal.
	eventually(t, 15*time.Second, "GBR to apply the withdrawal", func() bool {
		var s struct {
			Withdrawn *struct{ Action string } `json:"withdrawn"`
		}
		f.jsonCLI(&s, "GBR", "show", id)
		return s.Withdrawn != nil
	})
	if e := f.denied("GBR", secrets, "consent", "request", id, "--to", "CAN", "--purpose", "third look"); e.Reason != "withdrawn" {
		t.Fatalf("consent request for a withdrawn report: %+v", e)
	}
}
