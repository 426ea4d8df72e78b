package node

import (
	"bytes"
	"context"
	"testing"

	"github.com/tearline/tearline/pki"
)

// A report published alone (no other statement waiting to be signed) for
// one partner has its header and that partner's hop under one signature,
// and the partner accepts it. Published for two, each statement is signed
// alone: neither partner's proof may hold a hash of the other's hop.
func TestPublishSignsHeaderAndHopTogether(t *testing.T) {
	for _, tc := range []struct {
		name     string
		banners  []string
		partners []string
		together bool
	}{
		{"one partner", []string{"SECRET//REL TO USA, GBR"}, []string{"GBR"}, true},
		{"two partners", []string{"SECRET//REL TO USA, GBR, CAN", "SECRET//REL TO USA, GBR"}, []string{"GBR", "CAN"}, false},
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
			if tc.together != (hdr.GetBatch().GetSize() == 2) || !tc.together && hdr.GetBatch() != nil {
				t.Errorf("the header's batch %v", hdr.GetBatch())
			}
			for _, p := range tc.partners {
				items := mustOutbox(t, usa, p)
				if len(items) != 1 {
					t.Fatalf("%d items for %s", len(items), p)
				}
				env := items[0].Item.GetEnvelope()
				h := env.GetHops()[len(env.GetHops())-1]
				if shared := bytes.Equal(h.GetSignature(), hdr.GetSignature()); shared != tc.together {
					t.Errorf("the hop to %s shares the header's signature: %v (its batch %v)", p, shared, h.GetBatch())
				}
				out, reason, err := nodes[p].Receive(context.Background(), nodeID("USA"), env)
				if err != nil || out != Accepted {
					t.Errorf("%s: %v, %s, %v", p, out, reason.Message, err)
				}
			}
		})
	}
}
