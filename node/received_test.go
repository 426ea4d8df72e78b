package node

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// TestViewOfReceivedReportIsAsVerified: a report just received, at the
// relay (GBR) and at the end of its route (CAN: two hops, USA -> GBR ->
// CAN, two portions), is shown from what its receipt check verified, and
// the view is the one a full verification with an empty verify cache gives
// the same report read back from the file. A report read back, one
// rewritten since (withdrawn), one whose portions are not the checked
// envelope's, and one whose hops were changed after the check are not
// shown from the receipt's check. (The first two are other objects: they
// fail only if a receipt's memo ever covered the file or a rewrite.)
func TestViewOfReceivedReportIsAsVerified(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa, gbr, can := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all), testNode(t, dir, trust, "CAN", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	id, _, err := usa.Publish(ctx, off, PublishInput{Topics: []string{"CT"}, Route: []policy.RouteEntry{{Via: "GBR", To: "CAN"}},
		Portions: []NewPortion{
			{Banner: "SECRET//REL TO USA, GBR, CAN", Title: "one", Body: []byte("first")},
			{Banner: "CONFIDENTIAL//REL TO USA, GBR, CAN", Title: "two", Body: []byte("second")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	deliver(t, gbr, "CAN", can, true)

	var fresh *storev1.StoredReport
	// GBR relayed it; CAN is where it ends.
	for _, at := range []struct {
		n    *Node
		hops int
	}{{gbr, 1}, {can, 2}} {
		es, err := at.n.Store().Feed(0, 10)
		if err != nil || len(es) != 1 || es[0].ID != id {
			t.Fatalf("%s's feed: %d entries, %v", at.n.Party(), len(es), err)
		}
		fresh = es[0].Report
		if at.n.received.get(fresh) == nil {
			t.Fatalf("the report %s just received is not shown from its receipt's check", at.n.Party())
		}
		fromFile, err := at.n.Store().Report(id)
		if err != nil {
			t.Fatal(err)
		}
		if at.n.received.get(fromFile) != nil {
			t.Fatal("a report read back from the file is shown from the receipt's check")
		}
		got := at.n.View(fresh, nil)
		at.n.vcache = newVerifyCache() // verify from scratch, not from what check remembered
		want := at.n.View(fromFile, nil)
		if !proto.Equal(got, want) {
			t.Fatalf("%s: the view from the receipt's check:\n%v\ndiffers from the verified one:\n%v", at.n.Party(), got, want)
		}
		if !got.GetSignatureVerified() || len(got.GetHops()) != at.hops || len(got.GetPortions()) != 2 ||
			!got.GetPortions()[0].GetVerified() || !got.GetPortions()[1].GetVerified() {
			t.Fatalf("%s's view: %v", at.n.Party(), got)
		}
		for i, route := range [][2]string{{"USA", "GBR"}, {"GBR", "CAN"}}[:at.hops] {
			if h := got.GetHops()[i]; h.GetFrom() != route[0] || h.GetTo() != route[1] {
				t.Fatalf("%s's view: hop %d is %s -> %s, want %s -> %s", at.n.Party(), i, h.GetFrom(), h.GetTo(), route[0], route[1])
			}
		}
	}

	// Content that is not the checked envelope's is not vouched for.
	env := fresh.GetEnvelope()
	other := &storev1.StoredReport{Envelope: &reportv1.Envelope{Header: env.GetHeader(), Hops: env.GetHops(),
		Portions: []*reportv1.Portion{proto.CloneOf(env.GetPortions()[0])}}}
	reason, v, hops, err := can.check(time.Now(), "GBR", env)
	if err != nil || !reason.Allowed {
		t.Fatalf("check: %v, %v", reason, err)
	}
	can.received.put(other, env, v, hops)
	if can.received.get(other) != nil {
		t.Fatal("a report with a portion not from the checked envelope was recorded as checked")
	}
	changed := &storev1.StoredReport{Envelope: &reportv1.Envelope{Header: env.GetHeader(), Hops: env.GetHops(), Portions: env.GetPortions()}}
	can.received.put(changed, env, v, hops)
	if can.received.get(changed) == nil {
		t.Fatal("a report made of the checked envelope's messages was not recorded")
	}
	changed.Envelope.Hops = changed.Envelope.Hops[:1]
	if can.received.get(changed) != nil {
		t.Fatal("a report whose hops changed after the check is still shown from it")
	}

	// Rewritten (withdrawn): another object, verified again.
	if _, err := usa.Withdraw(ctx, off, id, "burned source", "quarantine"); err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	deliver(t, gbr, "CAN", can, true)
	es, err := can.Store().Feed(0, 10)
	if err != nil || len(es) == 0 || es[len(es)-1].ID != id {
		t.Fatalf("CAN's feed after the withdrawal: %d entries, %v", len(es), err)
	}
	withdrawn := es[len(es)-1].Report
	if withdrawn == fresh || can.received.get(withdrawn) != nil {
		t.Fatal("the withdrawn report is still shown from the first receipt's check")
	}
	if v := can.View(withdrawn, nil); v.GetWithdrawal() == nil || !v.GetSignatureVerified() {
		t.Fatalf("view after the withdrawal: %v", v)
	}
}

// BenchmarkViewReceived: what showing a report GBR has just received costs
// GBR, as its subscribers' deliveries show it (Node.View, once per report
// and set of portions shown). The reports are the ones the store hands its
// readers after the commit, as in a delivery.
func BenchmarkViewReceived(b *testing.B) {
	gbr, rs := receivedReports(b, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if v := gbr.View(rs[i%len(rs)], nil); !v.GetSignatureVerified() || !v.GetPortions()[0].GetVerified() || len(v.GetHops()) != 1 {
			b.Fatalf("view: %v", v)
		}
	}
}

// receivedReports has USA publish n reports releasable to GBR and GBR
// receive them, and returns GBR and the reports as its store hands them to
// readers.
func receivedReports(b *testing.B, n int) (*Node, []*storev1.StoredReport) {
	b.Helper()
	dir, trust := b.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR"}
	usa, gbr := testNode(b, dir, trust, "USA", all), testNode(b, dir, trust, "GBR", all)
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	body := make([]byte, 2048)
	for range n {
		if _, _, err := usa.Publish(context.Background(), off, PublishInput{Topics: []string{"CT"},
			Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: "t", Body: body}}}); err != nil {
			b.Fatal(err)
		}
	}
	deliver(b, usa, "GBR", gbr, true)
	es, err := gbr.Store().Feed(0, n)
	if err != nil || len(es) != n {
		b.Fatalf("GBR's feed: %d reports, %v", len(es), err)
	}
	out := make([]*storev1.StoredReport, n)
	for i, e := range es {
		out[i] = e.Report
	}
	return gbr, out
}

// BenchmarkReceivedPut: what remembering a receipt's check costs, once for
// each report received (a new report object each time, as a receipt makes).
func BenchmarkReceivedPut(b *testing.B) {
	gbr, rs := receivedReports(b, 1)
	c := gbr.received.get(rs[0])
	env := rs[0].GetEnvelope()
	b.ReportAllocs()
	for b.Loop() {
		gbr.received.put(&storev1.StoredReport{Envelope: env}, env, c.v, c.hops)
	}
}
