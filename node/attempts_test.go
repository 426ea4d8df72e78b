package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
)

// A suspended identity's attempts are recorded at most once a minute, the
// next record counting those between; identities are counted apart.
func TestSuspendedAttemptsBounded(t *testing.T) {
	var a attempts
	now := time.Unix(1_800_000_000, 0)
	if ok, n := a.take("svc/a", now); !ok || n != 0 {
		t.Fatalf("first attempt: %v %d, want recorded", ok, n)
	}
	for i := range 3 {
		if ok, _ := a.take("svc/a", now.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatalf("attempt %d within a minute recorded again", i+2)
		}
	}
	if ok, n := a.take("svc/b", now.Add(time.Second)); !ok || n != 0 {
		t.Fatalf("another identity's first attempt: %v %d, want recorded", ok, n)
	}
	if ok, n := a.take("svc/a", now.Add(attemptEvery)); !ok || n != 3 {
		t.Fatalf("a minute later: %v %d, want recorded with the 3 between", ok, n)
	}
}

// A suspended partner's attempts are bounded by party: certificates of its
// CA naming ever new identities get one record a minute between them.
func TestSuspendedPartnerAttemptsBoundedByParty(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR"})
	ctx := context.Background()
	if _, err := usa.Suspend(ctx, officer, SuspendPartner, "GBR", "incident"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		usa.SuspendedAttempt(pki.Identity{Party: "GBR", Kind: pki.KindOfficer, Name: fmt.Sprintf("x%d", i)}, "connect")
	}
	evs, err := usa.SecurityEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.GetKind() == SecuritySuspendedAttempt {
			n++
			if e.GetPartner() != "GBR" {
				t.Errorf("the attempt's event names partner %q, want GBR", e.GetPartner())
			}
		}
	}
	if n != 1 {
		t.Fatalf("50 attempts by 50 identities of suspended GBR gave %d records, want 1", n)
	}
}
