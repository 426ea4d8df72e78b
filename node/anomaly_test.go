package node

import (
	"context"
	"errors"
	"testing"

	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/pki"
)

// TestPublicationRefusalsAreNotDenials: an originator whose markings leave
// a partner out of what it publishes records that in provenance, but it is
// not a denial concerning the partner: many such publications raise no
// repeated-denials alert naming it. Shares to it refused are, and as many
// of those raise one.
func TestPublicationRefusalsAreNotDenials(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa := testNode(t, dir, trust, "USA", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	alerts := func() uint64 { return usa.AuditMetrics().Counts()[audit.AnomalyDenials] }

	n := audit.DefaultThresholds.DenialsPerPartner
	var id string
	for range n + 5 {
		var err error
		id, _, err = usa.Publish(ctx, off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("b")}}, Topics: []string{"CT"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	evs, err := usa.Store().Events(id)
	if err != nil {
		t.Fatal(err)
	}
	recorded := false
	for _, e := range evs {
		if e.GetKind() == "refused" && e.GetParty() == "CAN" && e.GetDetail() == audit.DetailAtPublication {
			recorded = true
		}
	}
	if !recorded {
		t.Fatalf("the publication's provenance does not record CAN left out (%q): %v", audit.DetailAtPublication, evs)
	}
	if a := alerts(); a != 0 {
		t.Fatalf("%d publications leaving CAN out raised %d repeated-denials alerts", n+5, a)
	}
	for i := range n {
		_, err := usa.Share(ctx, off, id, "CAN", nil)
		if d := (*DeniedError)(nil); !errors.As(err, &d) {
			t.Fatalf("share %d to CAN: %v, want a denial", i, err)
		}
	}
	if a := alerts(); a != 1 {
		t.Fatalf("%d refused shares to CAN raised %d repeated-denials alerts, want 1", n, a)
	}
}
