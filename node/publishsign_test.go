package node

import (
	"bytes"
	"context"
	"testing"

	"github.com/tearline/tearline/pki"
)

// A report published alone (no other statement waiting to be signed) has
// its header and each partner's hop under one signature, and each partner
// accepts its envelope.
func TestPublishSignsHeaderAndHopsTogether(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa, gbr, can := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all), testNode(t, dir, trust, "CAN", all)
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	id, _, err := usa.Publish(context.Background(), off, PublishInput{Topics: []string{"CT"}, Portions: []NewPortion{
		{Banner: "SECRET//REL TO USA, GBR, CAN", Body: []byte("for both")},
		{Banner: "SECRET//REL TO USA, GBR", Body: []byte("for GBR")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := usa.Store().Report(id)
	if err != nil {
		t.Fatal(err)
	}
	hdr := r.GetEnvelope().GetHeader()
	if hdr.GetBatch().GetSize() != 3 {
		t.Fatalf("the header's batch %v, want one of 3 (the header and two hops)", hdr.GetBatch())
	}
	for _, to := range []struct {
		party string
		n     *Node
	}{{"GBR", gbr}, {"CAN", can}} {
		items := mustOutbox(t, usa, to.party)
		if len(items) != 1 {
			t.Fatalf("%d items for %s", len(items), to.party)
		}
		env := items[0].Item.GetEnvelope()
		h := env.GetHops()[len(env.GetHops())-1]
		if !bytes.Equal(h.GetSignature(), hdr.GetSignature()) || h.GetBatch().GetSize() != 3 {
			t.Errorf("the hop to %s has its own signature (batch %v)", to.party, h.GetBatch())
		}
		out, reason, err := to.n.Receive(context.Background(), nodeID("USA"), env)
		if err != nil || out != Accepted {
			t.Errorf("%s: %v, %s, %v", to.party, out, reason.Message, err)
		}
	}
}
