package audit

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func deliveries(sub string, n int) *storev1.AuditEntry {
	e := &storev1.AuditEntry{Kind: "deliveries", Subject: sub}
	for range n {
		e.Deliveries = append(e.Deliveries, &storev1.AuditDelivery{Kind: "delivered"})
	}
	return e
}

// A subscriber's delivery rate far above its own baseline raises one alert
// per window; the same rate from a subscriber whose baseline is that high
// raises none, nor does a burst before any history.
func TestDetectorDeliveryRate(t *testing.T) {
	d := NewDetector(Thresholds{DeliveryWindow: time.Minute, DeliveryFactor: 10, DeliveryMin: 50})
	now := t0
	// A burst in the very first window: no history, no alert.
	if a := d.Observe(now, []*storev1.AuditEntry{deliveries("svc/new", 500)}); len(a) != 0 {
		t.Fatalf("alert without a baseline: %v", a)
	}
	// Four windows of 5 deliveries for a, 100 for b.
	for w := range 4 {
		now = t0.Add(time.Duration(w+1) * time.Minute)
		if a := d.Observe(now, []*storev1.AuditEntry{deliveries("svc/a", 5), deliveries("svc/b", 100)}); len(a) != 0 {
			t.Fatalf("window %d: alert at a steady rate: %v", w, a)
		}
	}
	now = now.Add(time.Minute)
	var alerts []Alert
	for range 10 {
		alerts = append(alerts, d.Observe(now, []*storev1.AuditEntry{deliveries("svc/a", 20), deliveries("svc/b", 20)})...)
	}
	if len(alerts) != 1 || alerts[0].Kind != AnomalyDeliveryRate {
		t.Fatalf("alerts for a 40x burst: %v, want exactly one for svc/a", alerts)
	}
}

// Denials concerning one partner raise an alert at the threshold within the
// window, then re-arm; denials spread wider than the window do not.
func TestDetectorDenials(t *testing.T) {
	d := NewDetector(Thresholds{DenialWindow: 10 * time.Minute, DenialsPerPartner: 5})
	refused := &storev1.AuditEntry{Kind: "refused", Party: "CAN"}
	var alerts []Alert
	for i := range 9 {
		alerts = append(alerts, d.Observe(t0.Add(time.Duration(i)*time.Second), []*storev1.AuditEntry{refused})...)
	}
	if len(alerts) != 1 || alerts[0].Partner != "CAN" || alerts[0].Kind != AnomalyDenials {
		t.Fatalf("alerts: %v", alerts)
	}
	alerts = append(alerts, d.Observe(t0.Add(10*time.Second), []*storev1.AuditEntry{{Kind: "security:rejected-envelope", Party: "CAN"}})...)
	if len(alerts) != 2 {
		t.Fatalf("the tenth denial (a security event) should raise the second alert: %v", alerts)
	}
	// Nor do an originator's publications that leave a partner out.
	for i := range 10 {
		if a := d.Observe(t0.Add(time.Duration(i)*time.Second), []*storev1.AuditEntry{{Kind: "refused", Party: "GBR", Detail: DetailAtPublication}}); len(a) != 0 {
			t.Fatal("a refusal at publication counted as a denial")
		}
	}
	// Own anomaly events never count.
	for i := range 10 {
		if a := d.Observe(t0.Add(time.Duration(i)*time.Second), []*storev1.AuditEntry{{Kind: "security:" + AnomalyDenials, Party: "GBR"}}); len(a) != 0 {
			t.Fatal("an anomaly event counted as a denial")
		}
	}
	slow := NewDetector(Thresholds{DenialWindow: time.Minute, DenialsPerPartner: 3})
	for i := range 10 {
		if a := slow.Observe(t0.Add(time.Duration(i)*time.Minute), []*storev1.AuditEntry{refused}); len(a) != 0 {
			t.Fatalf("denials one a minute raised %v", a)
		}
	}
}

// The summary counts per partner, by rule, without ids.
func TestSummarize(t *testing.T) {
	at := timestamppb.New(t0)
	old := timestamppb.New(t0.Add(-40 * 24 * time.Hour))
	entries := []*storev1.AuditEntry{
		{Time: at, Kind: "released", Party: "GBR", ReportId: "r1", Decisions: []*reportv1.Decision{{Allowed: true, Rule: "origin"}, {Rule: "noforn"}}},
		{Time: at, Kind: "released", Party: "GBR", ReportId: "r2", Decisions: []*reportv1.Decision{{Allowed: true, Rule: "origin"}}},
		{Time: at, Kind: "refused", Party: "CAN", ReportId: "r1", Decisions: []*reportv1.Decision{{Rule: "rel-to"}, {Rule: "noforn"}, {Rule: "rel-to"}}},
		{Time: old, Kind: "refused", Party: "CAN", ReportId: "r0", Decisions: []*reportv1.Decision{{Rule: "rel-to"}}},
		{Time: at, Kind: "received", Party: "GBR"},
		{Time: at, Kind: "withdrawn", Party: "GBR"},
		{Time: at, Kind: "withdrawn", Party: "USA"},
	}
	consents := []*storev1.ConsentRecord{
		{Direction: "incoming", Holder: "GBR", Originator: "USA", Requested: at, Decided: at, State: "approved", Grant: &reportv1.Signed{}},
		{Direction: "outgoing", Holder: "USA", Originator: "CAN", Requested: at, State: "pending"},
	}
	got := Summarize("USA", []string{"AUS", "CAN", "GBR"}, entries, consents, nil, t0.Add(-30*24*time.Hour), t0.Add(time.Second))
	if len(got) != 3 || got[0].Party != "AUS" || got[0].ReportsReleased != 0 {
		t.Fatalf("summary: %+v", got)
	}
	can, gbr := got[1], got[2]
	if can.ReportsDenied != 1 || can.DenialsByRule["rel-to"] != 1 || can.DenialsByRule["noforn"] != 1 || can.ConsentsAsked != 1 || can.ConsentsGranted != 0 {
		t.Errorf("CAN: %+v", can)
	}
	if gbr.ReportsReleased != 2 || gbr.DenialsByRule["noforn"] != 1 || gbr.ReportsReceived != 1 || gbr.WithdrawalsReceived != 1 || gbr.ConsentsAsked != 1 || gbr.ConsentsGranted != 1 {
		t.Errorf("GBR: %+v", gbr)
	}
}

// TestEventFromEntryRoundTrip: an event with every field an event audited
// on its own carries comes back whole from its entry (the store keeps such
// an event only there). A field added to storev1.Event must be carried by
// both conversions: the test names the fields it knows.
func TestEventFromEntryRoundTrip(t *testing.T) {
	e := &storev1.Event{
		Seq: 7, Time: timestamppb.New(t0), ReportId: "r1", Kind: "released", Party: "GBR", Subject: "USA/officer/o",
		Decisions: []*reportv1.Decision{{Index: 1, Allowed: true, Rule: "origin", Banner: "SECRET//REL TO GBR, USA", Party: "GBR", Message: "m", Next: "n", Authority: "a"}},
		Detail:    "d", Portions: []uint32{1, 2},
	}
	if got := EventFromEntry(EntryFromEvent(e)); !proto.Equal(got, e) {
		t.Errorf("round trip:\n got %v\nwant %v", got, e)
	}
	var names []string
	fields := e.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		names = append(names, string(fields.Get(i).Name()))
	}
	// recipients: only a shared delivery has them, and it is kept whole.
	want := []string{"seq", "time", "report_id", "kind", "party", "subject", "decisions", "detail", "portions", "recipients"}
	if !slices.Equal(names, want) {
		t.Errorf("storev1.Event has fields %v; EntryFromEvent and EventFromEntry carry %v", names, want)
	}
}
