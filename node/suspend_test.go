package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tearline/tearline/pki"
)

// TestReinstateNamesAnUnknownName: reinstating a name this node does not
// know says so (with its partners), not that it "is not suspended"; a
// known one that is not suspended is told that; a suspended one is
// reinstated.
func TestReinstateNamesAnUnknownName(t *testing.T) {
	n := testNode(t, t.TempDir(), pki.NewTrust(), "USA", []string{"USA", "GBR"})
	ctx := context.Background()
	by := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "sec"}
	for _, c := range []struct{ kind, name, want string }{
		{SuspendPartner, "XYZ", `"XYZ" is not a partner of USA (partners: GBR)`},
		{SuspendSubscriber, "nobody", `"nobody" is not a configured subscriber of this node`},
		{SuspendPartner, "GBR", `partner "GBR" is not suspended`},
	} {
		err := n.Reinstate(ctx, by, c.kind, c.name)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Reinstate(%s, %s) = %v, want ErrInvalid saying %q", c.kind, c.name, err, c.want)
		}
	}
	if _, err := n.Suspend(ctx, by, SuspendPartner, "GBR", "incident"); err != nil {
		t.Fatal(err)
	}
	if err := n.Reinstate(ctx, by, SuspendPartner, "GBR"); err != nil {
		t.Fatalf("Reinstate of a suspended partner: %v", err)
	}
	if n.Suspended(SuspendPartner, "GBR") {
		t.Fatal("GBR still suspended after Reinstate")
	}
}
