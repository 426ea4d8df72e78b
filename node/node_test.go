package node

// In-process tests of the node domain: several nodes with real stores and
// development CAs, items moved between their outboxes by hand so that the
// order of events (a lost acknowledgement, a late envelope) is chosen by
// the test.

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
)

func testNode(t testing.TB, dir string, trust *pki.Trust, party string, all []string) *Node {
	t.Helper()
	ca, err := pki.OpenDevCA(filepath.Join(dir, "ca-"+party), party)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ca.Bundle(context.Background())
	trust.Set(party, b)
	id := pki.Identity{Domain: pki.DefaultDomain(party), Party: party, Kind: pki.KindNode, Name: "n"}
	cs, err := pki.NewCertSource(ca, id, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, party+".db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ps []Partner
	for _, p := range all {
		if p != party {
			ps = append(ps, Partner{Party: p, Agreement: &policy.Agreement{Partner: p, MaxClassification: "TOP SECRET", ValidUntil: time.Now().Add(time.Hour)}})
		}
	}
	n, err := New(Config{Party: party, Store: st, Signer: cs, Trust: trust, Partners: ps})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nodeID(p string) pki.Identity { return pki.Identity{Party: p, Kind: pki.KindNode, Name: "n"} }

// deliver hands src's outbox for `to` to dst; with ack false the items stay
// queued, as when the acknowledgement is lost.
func deliver(t testing.TB, src *Node, to string, dst *Node, ack bool) {
	t.Helper()
	ctx := context.Background()
	items, err := src.Store().Outbox(to, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if e := it.Item.GetEnvelope(); e != nil {
			_, _, err = dst.Receive(ctx, nodeID(src.Party()), e)
		} else {
			_, _, err = dst.ReceiveItem(ctx, nodeID(src.Party()), it.Item.GetRequest())
		}
		if err != nil {
			t.Fatal(err)
		}
		if ack {
			if err := src.Store().Ack(time.Now(), to, store.Acked{Seq: it.Seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A withdrawn (quarantined) report that arrives again from another holder
// is neither stored again nor relayed onward with its content.
func TestWithdrawnReportIsNotRelayedAgain(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN", "AUS"}
	usa, gbr, aus := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all), testNode(t, dir, trust, "AUS", all)
	testNode(t, dir, trust, "CAN", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	id, _, err := usa.Publish(ctx, off, PublishInput{Topics: []string{"CT"}, Route: []policy.RouteEntry{{Via: "GBR", To: "CAN"}},
		Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR, CAN, AUS", Body: []byte("SECRET CONTENT")}}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "AUS", aus, true)
	deliver(t, usa, "GBR", gbr, true)
	if _, err := usa.Withdraw(ctx, off, id, "burned source", "quarantine"); err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	for _, it := range mustOutbox(t, gbr, "CAN") { // drop what GBR queued before
		gbr.Store().Ack(time.Now(), "CAN", store.Acked{Seq: it.Seq})
	}
	// AUS has not heard of the withdrawal yet and shares the report to GBR.
	if _, err := aus.Share(ctx, pki.Identity{Party: "AUS", Kind: pki.KindOfficer, Name: "a"}, id, "GBR", nil); err != nil {
		t.Fatal(err)
	}
	deliver(t, aus, "GBR", gbr, true)
	for _, it := range mustOutbox(t, gbr, "CAN") {
		if it.Item.GetEnvelope() != nil {
			t.Fatalf("after the withdrawal GBR queued the report to CAN again")
		}
	}
	if r, err := gbr.Store().Report(id); err != nil || r.GetWithdrawn() == nil {
		t.Fatalf("GBR's copy: %v, withdrawn %v", err, r.GetWithdrawn())
	}
}

// A withdrawal that reaches a node before the report makes it refuse the
// report when it arrives.
func TestWithdrawalBeforeReport(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR"}
	usa, gbr := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	id, _, err := usa.Publish(ctx, off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("LATE CONTENT")}}})
	if err != nil {
		t.Fatal(err)
	}
	items := mustOutbox(t, usa, "GBR")
	env := items[0].Item.GetEnvelope()
	if _, err := usa.Withdraw(ctx, off, id, "wrong report", "purge"); err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true) // only the withdrawal is left to deliver
	if out, _, err := gbr.Receive(ctx, nodeID("USA"), env); err != nil || out == Rejected {
		t.Fatalf("late envelope: %v %v", out, err)
	}
	if _, err := gbr.Store().Report(id); err == nil {
		t.Fatal("GBR stored a report withdrawn before it arrived")
	}
}

// Purging a report removes its content from every outbox: a partner that
// had not received it yet never does.
func TestPurgeEmptiesOutbox(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "CAN"}
	usa := testNode(t, dir, trust, "USA", all)
	testNode(t, dir, trust, "CAN", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	id, _, err := usa.Publish(ctx, off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, CAN", Body: []byte("PURGED CONTENT")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := usa.Withdraw(ctx, off, id, "burned", "purge"); err != nil {
		t.Fatal(err)
	}
	items := mustOutbox(t, usa, "CAN")
	if len(items) != 1 || items[0].Item.GetEnvelope() != nil || items[0].Item.GetRequest().GetWithdrawal() == nil {
		t.Fatalf("USA's outbox to CAN after the purge holds %d items, want only the withdrawal", len(items))
	}
	r, _ := usa.Store().Report(id)
	for _, p := range r.GetEnvelope().GetPortions() {
		if len(p.GetBody()) != 0 {
			t.Fatal("the originator's own copy still holds the content")
		}
	}
}

// A hop notice sent again after a lost acknowledgement is recorded once.
func TestHopNoticeIdempotent(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	usa, gbr := testNode(t, dir, trust, "USA", all), testNode(t, dir, trust, "GBR", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	goff := pki.Identity{Party: "GBR", Kind: pki.KindOfficer, Name: "g"}
	id, _, err := usa.Publish(ctx, off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR//ORCON", Body: []byte("x")}}})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	rec, err := gbr.RequestConsent(ctx, goff, id, "CAN", "ops", nil)
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, gbr, "USA", usa, true)
	if _, err := usa.DecideConsent(ctx, off, rec.GetId(), true, false, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	deliver(t, usa, "GBR", gbr, true)
	if _, err := gbr.Share(ctx, goff, id, "CAN", nil); err != nil {
		t.Fatal(err)
	}
	deliver(t, gbr, "USA", usa, false) // the acknowledgement is lost
	deliver(t, gbr, "USA", usa, true)  // the link sends it again
	evs, _ := usa.Store().Events(id)
	n := 0
	for _, e := range evs {
		if e.GetKind() == "onward-release" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("onward-release recorded %d times for one hop", n)
	}
}

func mustOutbox(t *testing.T, n *Node, party string) []store.OutboxEntry {
	t.Helper()
	items, err := n.Store().Outbox(party, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// Subscribers allowed the same portions share one view of a report;
// subscribers allowed different portions each get their own, right, view.
func TestDeliveriesShareViewsOnlyBetweenEqualRights(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA"})
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	_, _, err := usa.Publish(ctx, off, PublishInput{Topics: []string{"CT"}, Portions: []NewPortion{
		{Banner: "SECRET", Title: "secret part", Body: []byte("s")},
		{Banner: "CONFIDENTIAL", Title: "confidential part", Body: []byte("c")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	subs := []policy.Subscriber{
		{Name: "a", Clearance: "SECRET", NeedToKnow: []string{"CT"}},
		{Name: "b", Clearance: "SECRET", NeedToKnow: []string{"CT"}},
		{Name: "c", Clearance: "CONFIDENTIAL", NeedToKnow: []string{"CT"}},
	}
	views := map[string]*Delivery{}
	for _, s := range subs {
		who := pki.Identity{Party: "USA", Kind: pki.KindService, Name: s.Name}
		ds, _, err := usa.Deliveries(ctx, who, s, false, 0, nil, 10, 0)
		if err != nil || len(ds) != 1 {
			t.Fatalf("%s: %d deliveries, %v", s.Name, len(ds), err)
		}
		views[s.Name] = &ds[0]
	}
	if views["a"].View != views["b"].View {
		t.Error("two subscribers with equal rights got separately built views")
	}
	if views["a"].View == views["c"].View {
		t.Fatal("subscribers with different rights share a view")
	}
	shown := func(d *Delivery) (titles []string) {
		for _, p := range d.View.GetPortions() {
			if !p.GetWithheld() {
				titles = append(titles, p.GetTitle())
			}
		}
		return titles
	}
	if got := shown(views["a"]); len(got) != 2 {
		t.Errorf("SECRET subscriber sees %v, want both portions", got)
	}
	if got := shown(views["c"]); len(got) != 1 || got[0] != "confidential part" {
		t.Errorf("CONFIDENTIAL subscriber sees %v, want only the confidential part", got)
	}
	if len(views["c"].Withheld) != 1 || views["c"].Withheld[0].Rule != policy.RuleClearance {
		t.Errorf("CONFIDENTIAL subscriber's withheld reasons = %v, want one clearance denial", views["c"].Withheld)
	}
}

// TestOutboxChangedWakesOnce: the channel OutboxChanged returns is closed
// by the next publish to that partner, not before; wakes without a reader
// in between close it once (no panic); a link asking again after a wake
// gets an open channel, and asking again without one gets the same.
func TestOutboxChangedWakesOnce(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "CAN"}
	usa := testNode(t, dir, trust, "USA", all)
	ctx := context.Background()
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	publish := func() {
		t.Helper()
		if _, _, err := usa.Publish(ctx, off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, CAN", Body: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
	}
	ch := usa.OutboxChanged("CAN")
	if again := usa.OutboxChanged("CAN"); again != ch {
		t.Error("asked twice without a wake, OutboxChanged gave two channels")
	}
	if isClosed(ch) {
		t.Fatal("closed before anything was queued")
	}
	publish()
	if !isClosed(ch) {
		t.Fatal("a publish to CAN left the link's channel open")
	}
	publish() // a second wake with the channel already closed
	next := usa.OutboxChanged("CAN")
	if isClosed(next) {
		t.Fatal("after the wake OutboxChanged gave a closed channel")
	}
	publish()
	if !isClosed(next) {
		t.Fatal("the next publish left the new channel open")
	}
}

// TestPartnerUpClosedWhenThePartnerConnects: the channel PartnerUp returns
// is closed by the partner's next connection and by nothing else (a
// publish to it, another partner's connection); connecting twice closes it
// once; asking again after that gives an open channel.
func TestPartnerUpClosedWhenThePartnerConnects(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "CAN", "GBR"})
	up := usa.PartnerUp("CAN")
	if again := usa.PartnerUp("CAN"); again != up {
		t.Error("asked twice without a connection, PartnerUp gave two channels")
	}
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	if _, _, err := usa.Publish(context.Background(), off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, CAN", Body: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	usa.PartnerConnected("GBR")
	usa.PartnerConnected("NZL") // not a partner: nothing to wake
	if isClosed(up) {
		t.Fatal("closed by a publish or by another party's connection")
	}
	usa.PartnerConnected("CAN")
	usa.PartnerConnected("CAN")
	if !isClosed(up) {
		t.Fatal("CAN connected and its channel stayed open")
	}
	if next := usa.PartnerUp("CAN"); isClosed(next) {
		t.Fatal("after the connection PartnerUp gave a closed channel")
	}
}

// A publish whose caller is gone before the commit (its deadline passed,
// its stream ended) stores nothing, and says why: the caller could never
// learn the report's id, and might send it again.
func TestPublishAbandonedStoresNothing(t *testing.T) {
	dir, trust := t.TempDir(), pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR"})
	off := pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"}
	in := PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := usa.Publish(ctx, off, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with its caller gone: %v, want context.Canceled", err)
	}
	if n, err := usa.Store().Count(); err != nil || n != 0 {
		t.Fatalf("USA holds %d reports (%v), want 0", n, err)
	}
	if items := mustOutbox(t, usa, "GBR"); len(items) != 0 {
		t.Fatalf("GBR's outbox holds %d items, want 0", len(items))
	}
	if _, _, err := usa.Publish(context.Background(), off, in); err != nil {
		t.Fatal(err)
	}
	if n, _ := usa.Store().Count(); n != 1 {
		t.Fatalf("USA holds %d reports after a publish, want 1", n)
	}
}
