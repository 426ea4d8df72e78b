package node

import (
	"context"
	"errors"
	"testing"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/pki"
)

// A holder's share of a report back to its originator is refused before
// any portion is decided, whatever the portions' markings: the originator
// already holds every portion (they are its own, under its signed
// digests). Nothing is queued for the originator, no send is recorded,
// and the refusal is recorded as a refused share with its reason.
func TestShareBackToOriginator(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa, gbr := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all)
	testNode(t, dir, trust, "CAN", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	goff := pki.Identity{Party: "GBR", Kind: pki.KindOfficer, Name: "g"}
	id, _, err := usa.Publish(ctx, off, PublishInput{Portions: []NewPortion{
		{Banner: "SECRET//REL TO USA, GBR, CAN", Body: []byte("OPEN CONTENT")},      // REL TO allows it back to USA
		{Banner: "SECRET//REL TO USA, GBR//ORCON", Body: []byte("ORCON CONTENT")},   // consent could not allow it
		{Banner: "SECRET//REL TO GBR, CAN", Body: []byte("OUTSIDE REL TO CONTENT")}, // USA outside its own REL TO
	}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	if _, _, err := gbr.heldReport(id); err != nil {
		t.Fatalf("GBR does not hold the report: %v", err)
	}
	const next = "none: USA is the report's originator and already holds it"
	for _, only := range [][]uint32{nil, {1}, {2}, {3}} {
		reasons, err := gbr.Share(ctx, goff, id, "USA", only)
		var d *DeniedError
		if !errors.As(err, &d) || reasons != nil {
			t.Fatalf("share of portions %v back to the originator: reasons %v, error %v; want a denial", only, reasons, err)
		}
		if len(d.Reasons) != 1 {
			t.Fatalf("share of portions %v back to the originator: %d reasons, want 1: %v", only, len(d.Reasons), d.Reasons)
		}
		r := d.Reasons[0]
		if r.Allowed || r.Rule != policy.RuleOriginatorHolds || r.Party != "USA" || r.Next != next ||
			r.Message != "report "+id+" is from USA; USA is its originator and already holds it, so GBR need not pass it back" {
			t.Errorf("share of portions %v back to the originator: %+v", only, r)
		}
	}
	if items := mustOutbox(t, gbr, "USA"); len(items) != 0 {
		t.Fatalf("GBR queued %d items for USA", len(items))
	}
	evs, err := gbr.Store().Events(id)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range evs {
		if e.GetParty() != "USA" {
			continue
		}
		switch e.GetKind() {
		case "released", "held":
			t.Fatalf("GBR recorded a send to USA: %v", e)
		case "refused":
			refused++
			if ds := e.GetDecisions(); len(ds) != 1 || ds[0].GetAllowed() || ds[0].GetRule() != string(policy.RuleOriginatorHolds) {
				t.Fatalf("refused event: %v", e)
			}
		}
	}
	if refused != 4 {
		t.Fatalf("GBR recorded %d refused shares to USA, want 4", refused)
	}
	// A share to a third party still goes: the refusal is only for the
	// originator.
	if _, err := gbr.Share(ctx, goff, id, "CAN", []uint32{1}); err != nil {
		t.Fatalf("share to CAN: %v", err)
	}
	if items := mustOutbox(t, gbr, "CAN"); len(items) != 1 {
		t.Fatalf("GBR queued %d items for CAN, want 1", len(items))
	}
}
