package node

import (
	"context"
	"errors"
	"strings"
	"testing"

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
}
