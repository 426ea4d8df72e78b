package node

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// TestPartnerCannotEndAnothersCrisis: a partner that signs a declaration
// (or an end notice) of its own under the id of USA's declaration is
// refused, with a security event, and USA's declaration stands.
func TestPartnerCannotEndAnothersCrisis(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR"}
	usa, gbr := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all)
	ctx := context.Background()
	st, _, err := usa.DeclareCrisis(ctx, officer, CrisisInput{Topics: []string{"CT"}, Parties: []string{"GBR"}, Max: "SECRET", For: time.Hour, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ended := range []bool{true, false} {
		forged := proto.CloneOf(st.Declaration)
		forged.Originator, forged.Ended = "GBR", ended
		sd, err := report.SignStatement(report.KindCrisis, forged, gbr.signer)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := usa.ReceiveItem(ctx, nodeID("GBR"), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Crisis{Crisis: sd}})
		if err != nil || out != Rejected {
			t.Fatalf("GBR's declaration under USA's id (ended %v): %v %v, want rejected", ended, out, err)
		}
	}
	cs, err := usa.Crises(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Declaration.GetOriginator() != "USA" || cs[0].State != "active" {
		t.Fatalf("USA's crises after GBR's forgeries: %+v", cs)
	}
	evs, err := usa.SecurityEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.GetKind() == "bad-crisis" && e.GetPartner() == "GBR" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d bad-crisis security events naming GBR, want 2", n)
	}
}

// TestPartnerCannotWithdrawAnothersReport: a withdrawal GBR signs, for a
// report of CAN that USA does not hold yet, does not stop CAN's report
// from being stored when it arrives: only its originator withdraws it.
func TestPartnerCannotWithdrawAnothersReport(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa, gbr, can := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all), testNode(t, dir, trust, "CAN", all)
	ctx := context.Background()
	coff := pki.Identity{Party: "CAN", Kind: pki.KindOfficer, Name: "c"}
	id, _, err := can.Publish(ctx, coff, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO CAN, USA", Body: []byte("b")}}})
	if err != nil {
		t.Fatal(err)
	}
	wid, _ := uuid.NewV7()
	w := &reportv1.Withdrawal{Id: wid.String(), ReportId: id, Originator: "GBR", Action: "purge", Reason: "x", Issued: timestamppb.Now()}
	sd, err := report.SignStatement(report.KindWithdrawal, w, gbr.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := usa.ReceiveItem(ctx, nodeID("GBR"), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Withdrawal{Withdrawal: sd}}); err != nil {
		t.Fatal(err)
	}
	deliver(t, can, "USA", usa, true)
	if _, _, err := usa.heldReport(id); err != nil {
		t.Fatalf("USA did not store CAN's report after GBR's withdrawal of it: %v", err)
	}
}

// TestPartnerStatementsChecked: a partner's withdrawal must name a report
// id that is a UUID (ids become store keys), and its crisis declaration
// must last no longer than one of ours may: each is refused otherwise.
func TestPartnerStatementsChecked(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR"}
	usa, gbr := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all)
	ctx := context.Background()
	send := func(item *federationv1.DeliverRequest) Outcome {
		t.Helper()
		out, _, err := usa.ReceiveItem(ctx, nodeID("GBR"), item)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	wid, _ := uuid.NewV7()
	w := &reportv1.Withdrawal{Id: wid.String(), ReportId: "", Originator: "GBR", Action: "purge", Reason: "x", Issued: timestamppb.Now()}
	sd, err := report.SignStatement(report.KindWithdrawal, w, gbr.signer)
	if err != nil {
		t.Fatal(err)
	}
	if out := send(&federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Withdrawal{Withdrawal: sd}}); out != Rejected {
		t.Fatalf("a withdrawal of report id \"\": %v, want rejected", out)
	}
	did, _ := uuid.NewV7()
	now := time.Now()
	for _, span := range []time.Duration{100 * time.Hour, -time.Hour} {
		d := &reportv1.CrisisDeclaration{Id: did.String(), Originator: "GBR", Topics: []string{"CT"}, Parties: []string{"USA"}, MaxClassification: "SECRET",
			Issued: timestamppb.New(now), Expires: timestamppb.New(now.Add(span)), Reason: "x"}
		sd, err := report.SignStatement(report.KindCrisis, d, gbr.signer)
		if err != nil {
			t.Fatal(err)
		}
		if out := send(&federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Crisis{Crisis: sd}}); out != Rejected {
			t.Fatalf("a declaration lasting %s: %v, want rejected", span, out)
		}
	}
	if cs, err := usa.Crises(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("USA keeps %d declarations (%v), want none", len(cs), err)
	}
}
