package federation

import (
	"strings"
	"testing"

	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
)

// A partner's refusal is kept bounded: its message cut at maxPartnerText
// bytes, its rule id kept only if it is one, so that one cheap item cannot
// make the node store megabytes in provenance and the audit log.
func TestAckEventBoundsPartnerText(t *testing.T) {
	resp := &federationv1.DeliverResponse{Outcome: federationv1.Outcome_OUTCOME_REJECTED, Reason: "rel-to\x1b[2J" + strings.Repeat("x", 100), Message: strings.Repeat("m", 4<<20)}
	ev := ackEvent("GBR", "r1", "", resp)
	d := ev.GetDecisions()[0]
	if len(d.GetMessage()) > maxPartnerText+64 || !strings.HasSuffix(d.GetMessage(), "... (4194304 bytes in all)") {
		t.Fatalf("kept %d bytes of a 4 MiB message (ending %q)", len(d.GetMessage()), d.GetMessage()[max(0, len(d.GetMessage())-40):])
	}
	if d.GetRule() != "unknown" {
		t.Fatalf("kept rule %q", d.GetRule())
	}
	resp.Reason, resp.Message = "rel-to", "short"
	if d := ackEvent("GBR", "r1", "", resp).GetDecisions()[0]; d.GetRule() != "rel-to" || d.GetMessage() != "short" {
		t.Fatalf("a well-formed refusal is not kept as sent: %+v", d)
	}
}
