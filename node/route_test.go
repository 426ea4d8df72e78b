package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/pki"
)

// TestPublishBadRouteSaysWhy: each way a relay route can be wrong is told
// as it is, and nothing is published.
func TestPublishBadRouteSaysWhy(t *testing.T) {
	n := testNode(t, t.TempDir(), pki.NewTrust(), "USA", []string{"USA", "GBR", "CAN"})
	const inReach = "SECRET//REL TO USA, GBR, CAN"
	for _, c := range []struct {
		route   policy.RouteEntry
		banners []string
		want    string
	}{
		{policy.RouteEntry{To: "CAN", Via: "CAN"}, []string{inReach}, "a relay route names a partner that relays (--via) to another party (--to); to send to CAN directly, name no route"},
		{policy.RouteEntry{To: "USA", Via: "GBR"}, []string{inReach}, "USA is this node's own party"},
		{policy.RouteEntry{To: "XYZ", Via: "GBR"}, []string{inReach}, `"XYZ" is not a party this node knows`},
		{policy.RouteEntry{To: "CAN", Via: "XYZ"}, []string{inReach}, `route names "XYZ" as relay, which is not a partner of USA`},
		// A route no portion can take: GBR could relay nothing to CAN.
		{policy.RouteEntry{To: "CAN", Via: "GBR"}, []string{"SECRET//REL TO USA, GBR"}, "route to CAN via GBR: no portion is releasable to both GBR and CAN"},
		{policy.RouteEntry{To: "CAN", Via: "GBR"}, []string{"SECRET//REL TO USA, CAN", "SECRET//REL TO USA, GBR"}, "route to CAN via GBR: no portion is releasable to both GBR and CAN"},
		{policy.RouteEntry{To: "CAN", Via: "GBR"}, []string{"CONFIDENTIAL//NOFORN"}, "route to CAN via GBR: no portion is releasable to both GBR and CAN"},
	} {
		var portions []NewPortion
		for _, b := range c.banners {
			portions = append(portions, NewPortion{Banner: b, Body: []byte("b")})
		}
		_, _, err := n.Publish(context.Background(), officer, PublishInput{Portions: portions, Route: []policy.RouteEntry{c.route}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("route %+v with %v: %v, want ErrInvalid saying %q", c.route, c.banners, err, c.want)
		}
	}
	if held, err := n.Store().Count(); err != nil || held != 0 {
		t.Fatalf("%d reports held after refused publishes (%v), want 0", held, err)
	}
	// A route one portion can take is published.
	if _, _, err := n.Publish(context.Background(), officer, PublishInput{
		Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("b")}, {Banner: inReach, Body: []byte("c")}},
		Route:    []policy.RouteEntry{{To: "CAN", Via: "GBR"}},
	}); err != nil {
		t.Fatalf("a route one portion can take: %v", err)
	}
	// So is one a crisis declaration of USA opens: GBR may pass the
	// portion to CAN under it (rule 5), though CAN is not in REL TO.
	if _, _, err := n.DeclareCrisis(context.Background(), officer, CrisisInput{Topics: []string{"CT"}, Parties: []string{"CAN"}, Max: "SECRET", For: time.Hour, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.Publish(context.Background(), officer, PublishInput{
		Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("b")}},
		Topics:   []string{"CT"},
		Route:    []policy.RouteEntry{{To: "CAN", Via: "GBR"}},
	}); err != nil {
		t.Fatalf("a route a crisis declaration opens: %v", err)
	}
}

// TestRelayToldToOriginator: a relay on the originator's route tells the
// originator, as a release on its consent does, so that its provenance
// (who saw the report) names the party reached through the relay.
func TestRelayToldToOriginator(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa, gbr, can := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all), testNode(t, dir, trust, "CAN", all)
	id, _, err := usa.Publish(context.Background(), officer, PublishInput{
		Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR, CAN", Body: []byte("b")}},
		Route:    []policy.RouteEntry{{To: "CAN", Via: "GBR"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	deliver(t, gbr, "CAN", can, true)
	if _, _, err := can.heldReport(id); err != nil {
		t.Fatalf("CAN does not hold the relayed report: %v", err)
	}
	deliver(t, gbr, "USA", usa, true)
	recipients, _, err := usa.WhoSaw(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recipients[1] {
		found = found || (r.Kind == "partner" && r.Name == "CAN" && r.Via == "GBR" && r.Basis == string(policy.RuleRelay))
	}
	if !found {
		t.Fatalf("USA's recipients of portion 1 do not name CAN via GBR: %+v", recipients[1])
	}
}
