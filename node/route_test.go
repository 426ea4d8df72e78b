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
	for _, c := range []struct {
		route policy.RouteEntry
		want  string
	}{
		{policy.RouteEntry{To: "CAN", Via: "CAN"}, "a relay route names a partner that relays (--via) to another party (--to); to send to CAN directly, name no route"},
		{policy.RouteEntry{To: "USA", Via: "GBR"}, "USA is this node's own party"},
		{policy.RouteEntry{To: "XYZ", Via: "GBR"}, `"XYZ" is not a party this node knows`},
		{policy.RouteEntry{To: "CAN", Via: "XYZ"}, `route names "XYZ" as relay, which is not a partner of USA`},
	} {
		_, _, err := n.Publish(context.Background(), officer, PublishInput{
			Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("b")}},
			Route:    []policy.RouteEntry{c.route},
		})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("route %+v: %v, want ErrInvalid saying %q", c.route, err, c.want)
		}
	}
	if held, err := n.Store().Count(); err != nil || held != 0 {
		t.Fatalf("%d reports held after refused publishes (%v), want 0", held, err)
	}
}
