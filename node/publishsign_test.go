package node

import (
	"bytes"
	"context"
	"testing"

	"github.com/tearline/tearline/pki"
)

// A report published alone (no other statement waiting to be signed) has
// its header and each partner's hop under one signature, each leaf salted,
// and each partner accepts its envelope.
func TestPublishSignsHeaderAndHopsTogether(t *testing.T) {
	for _, tc := range []struct {
		name     string
		banners  []string
		partners []string
	}{
		{"one partner", []string{"SECRET//REL TO USA, GBR"}, []string{"GBR"}},
		{"two partners", []string{"SECRET//REL TO USA, GBR, CAN", "SECRET//REL TO USA, GBR"}, []string{"GBR", "CAN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, trust := t.TempDir(), pki.NewTrust()
			all := []string{"USA", "GBR", "CAN"}
			usa := testNode(t, dir, trust, "USA", all)
			nodes := map[string]*Node{"GBR": testNode(t, dir, trust, "GBR", all), "CAN": testNode(t, dir, trust, "CAN", all)}
			off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
			var ps []NewPortion
			for _, b := range tc.banners {
				ps = append(ps, NewPortion{Banner: b, Body: []byte(b)})
			}
			id, _, err := usa.Publish(context.Background(), off, PublishInput{Topics: []string{"CT"}, Portions: ps})
			if err != nil {
				t.Fatal(err)
			}
			r, err := usa.Store().Report(id)
			if err != nil {
				t.Fatal(err)
			}
			hdr := r.GetEnvelope().GetHeader()
			if hdr.GetBatch() == nil || len(hdr.GetBatch().GetSalt()) == 0 {
				t.Errorf("the header's batch %v, want a salted proof", hdr.GetBatch())
			}
			for _, p := range tc.partners {
				items := mustOutbox(t, usa, p)
				if len(items) != 1 {
					t.Fatalf("%d items for %s", len(items), p)
				}
				env := items[0].Item.GetEnvelope()
				h := env.GetHops()[len(env.GetHops())-1]
				if !bytes.Equal(h.GetSignature(), hdr.GetSignature()) {
					t.Errorf("the hop to %s has its own signature (its batch %v)", p, h.GetBatch())
				}
				out, reason, err := nodes[p].Receive(context.Background(), nodeID("USA"), env)
				if err != nil || out != Accepted {
					t.Errorf("%s: %v, %s, %v", p, out, reason.Message, err)
				}
			}
		})
	}
}
