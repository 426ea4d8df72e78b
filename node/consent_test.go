package node

// Deciding consent requests: which decision each state of a request takes,
// and that no consent is asked or granted for a withdrawn report. A refused
// call leaves the store as it was.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// consentWorld is USA (originator), GBR (holder of USA's ORCON report) and
// CAN, the third party GBR asks to pass the report to.
type consentWorld struct {
	usa, gbr   *Node
	off, goff  pki.Identity
	reportID   string
	ctx        context.Context
	requestFor func(t *testing.T) string // GBR asks, USA receives; the request id
}

func newConsentWorld(t *testing.T) *consentWorld {
	t.Helper()
	dir, trust := t.TempDir(), pki.NewTrust()
	all := []string{"USA", "GBR", "CAN"}
	w := &consentWorld{
		usa: testNode(t, dir, trust, "USA", all), gbr: testNode(t, dir, trust, "GBR", all),
		off:  pki.Identity{Party: "USA", Kind: pki.KindOfficer, Name: "o"},
		goff: pki.Identity{Party: "GBR", Kind: pki.KindOfficer, Name: "g"},
		ctx:  context.Background(),
	}
	testNode(t, dir, trust, "CAN", all)
	id, _, err := w.usa.Publish(w.ctx, w.off, PublishInput{Portions: []NewPortion{{Banner: "SECRET//REL TO USA, GBR//ORCON", Body: []byte("ORCON CONTENT")}}})
	if err != nil {
		t.Fatal(err)
	}
	w.reportID = id
	deliver(t, w.usa, "GBR", w.gbr, true)
	w.requestFor = func(t *testing.T) string {
		t.Helper()
		rec, err := w.gbr.RequestConsent(w.ctx, w.goff, id, "CAN", "joint operation", nil)
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, w.gbr, "USA", w.usa, true)
		return rec.GetId()
	}
	return w
}

// storeState is what a refused call must leave as it was: the consent
// records, the report's events, what is queued for GBR, and the audit head.
type storeState struct {
	consents []*storev1.ConsentRecord
	events   int
	queued   int
	auditSeq uint64
}

func stateOf(t *testing.T, n *Node, reportID, to string) storeState {
	t.Helper()
	var s storeState
	var err error
	if s.consents, err = n.Store().Consents(); err != nil {
		t.Fatal(err)
	}
	if err := n.Store().View(func(tx *store.Tx) error {
		evs, err := tx.Events(reportID)
		s.events = len(evs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	items, err := n.Store().Outbox(to, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	s.queued = len(items)
	if s.auditSeq, _, err = n.Store().AuditHead(); err != nil {
		t.Fatal(err)
	}
	return s
}

func sameState(t *testing.T, what string, before, after storeState) {
	t.Helper()
	if len(before.consents) != len(after.consents) {
		t.Fatalf("%s: %d consent records, then %d", what, len(before.consents), len(after.consents))
	}
	for i := range before.consents {
		if !proto.Equal(before.consents[i], after.consents[i]) {
			t.Fatalf("%s changed consent record %s:\nbefore %v\nafter  %v", what, before.consents[i].GetId(), before.consents[i], after.consents[i])
		}
	}
	if before.events != after.events || before.queued != after.queued || before.auditSeq != after.auditSeq {
		t.Fatalf("%s changed the store: events %d→%d, queued %d→%d, audit %d→%d", what,
			before.events, after.events, before.queued, after.queued, before.auditSeq, after.auditSeq)
	}
}

func consentState(t *testing.T, n *Node, id string) string {
	t.Helper()
	var rec *storev1.ConsentRecord
	if err := n.Store().View(func(tx *store.Tx) error {
		var err error
		rec, err = tx.Consent(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return rec.GetState()
}

// Each decision is taken only in the state it applies to: approve and deny
// a pending request, withdraw an approved one. Anything else is refused
// with ErrInvalid, says what to do instead, and changes nothing.
func TestDecideConsentStates(t *testing.T) {
	type call struct {
		approve, withdraw bool
		reason            string
	}
	var (
		approve  = call{approve: true}
		deny     = call{reason: "not now"}
		withdraw = call{withdraw: true, reason: "operation over"}
		both     = call{approve: true, withdraw: true, reason: "x"}
	)
	tests := []struct {
		name  string
		setup []call // taken in order, each must succeed
		try   call
		state string // the state after try, or "" when try is refused
		want  string // the refusal, with REQ standing for the request id
	}{
		{"approve pending", nil, approve, "approved", ""},
		{"deny pending", nil, deny, "denied", ""},
		{"withdraw approved", []call{approve}, withdraw, "withdrawn", ""},
		{"deny approved is refused", []call{approve}, deny, "",
			"request REQ is already approved; to take its grant back: tearline consent withdraw REQ --reason TEXT"},
		{"withdraw pending is refused", nil, withdraw, "",
			"request REQ is pending: deny it instead (tearline consent deny REQ --reason TEXT)"},
		{"withdraw denied is refused", []call{deny}, withdraw, "",
			"request REQ was denied, so it has no grant to withdraw"},
		{"withdraw withdrawn is refused", []call{approve, withdraw}, withdraw, "",
			"request REQ is already withdrawn"},
		{"deny withdrawn is refused", []call{approve, withdraw}, deny, "",
			"request REQ is already withdrawn"},
		{"deny denied is refused", []call{deny}, deny, "",
			"request REQ is already denied"},
		{"approve approved is refused", []call{approve}, approve, "",
			"request REQ is already approved"},
		{"approve withdrawn is refused", []call{approve, withdraw}, approve, "",
			"request REQ is already withdrawn"},
		{"approve and withdraw together are refused", nil, both, "",
			"approve and withdraw exclude each other"},
		{"approve and withdraw together are refused on an approved request", []call{approve}, both, "",
			"approve and withdraw exclude each other"},
		{"withdraw without a reason is refused", []call{approve}, call{withdraw: true}, "",
			"say why the approval is withdrawn (--reason)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newConsentWorld(t)
			req := w.requestFor(t)
			for _, c := range tt.setup {
				if _, err := w.usa.DecideConsent(w.ctx, w.off, req, c.approve, c.withdraw, time.Hour, c.reason); err != nil {
					t.Fatalf("setup %+v: %v", c, err)
				}
			}
			before := stateOf(t, w.usa, w.reportID, "GBR")
			rec, err := w.usa.DecideConsent(w.ctx, w.off, req, tt.try.approve, tt.try.withdraw, time.Hour, tt.try.reason)
			if tt.state != "" {
				if err != nil {
					t.Fatal(err)
				}
				if rec.GetState() != tt.state || consentState(t, w.usa, req) != tt.state {
					t.Fatalf("state %q (stored %q), want %q", rec.GetState(), consentState(t, w.usa, req), tt.state)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || rec != nil {
				t.Fatalf("DecideConsent = %v, %v; want ErrInvalid", rec, err)
			}
			if want := strings.ReplaceAll(tt.want, "REQ", req); !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q\nwant it to say %q", err, want)
			}
			sameState(t, "a refused decision", before, stateOf(t, w.usa, w.reportID, "GBR"))
		})
	}
}

// The holder hears of a withdrawn approval, and its grant no longer allows
// the share; a refused deny of an approved request leaves the grant in
// force at the holder.
func TestConsentWithdrawReachesHolder(t *testing.T) {
	w := newConsentWorld(t)
	req := w.requestFor(t)
	if _, err := w.usa.DecideConsent(w.ctx, w.off, req, true, false, time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	deliver(t, w.usa, "GBR", w.gbr, true)
	if _, err := w.usa.DecideConsent(w.ctx, w.off, req, false, false, 0, "changed my mind"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("deny of an approved request: %v, want ErrInvalid", err)
	}
	deliver(t, w.usa, "GBR", w.gbr, true)
	if s := consentState(t, w.gbr, req); s != "approved" {
		t.Fatalf("after a refused deny GBR's request is %s, want approved", s)
	}
	if _, err := w.usa.DecideConsent(w.ctx, w.off, req, false, true, 0, "operation over"); err != nil {
		t.Fatal(err)
	}
	deliver(t, w.usa, "GBR", w.gbr, true)
	if s := consentState(t, w.gbr, req); s != "withdrawn" {
		t.Fatalf("after the withdrawal GBR's request is %s, want withdrawn", s)
	}
	// GBR's provenance reads as a sentence.
	evs, err := w.gbr.Store().Events(w.reportID)
	if err != nil {
		t.Fatal(err)
	}
	said := false
	for _, e := range evs {
		if e.GetKind() == "consent-withdrawn" {
			said = e.GetDetail() == "USA withdrew its consent to passing it to CAN (request "+req+")"
			if !said {
				t.Fatalf("GBR's provenance of the withdrawal: %q", e.GetDetail())
			}
		}
	}
	if !said {
		t.Fatalf("GBR's provenance has no consent-withdrawn event: %v", evs)
	}
	if _, err := w.gbr.Share(w.ctx, w.goff, w.reportID, "CAN", nil); !errors.Is(err, ErrDenied) {
		t.Fatalf("share on a withdrawn grant: %v, want a denial", err)
	}
}

// wantWithdrawnDenial checks err is the denial Share gives for a withdrawn
// report.
func wantWithdrawnDenial(t *testing.T, err error, reportID string) {
	t.Helper()
	var d *DeniedError
	if !errors.As(err, &d) || !errors.Is(err, ErrDenied) || len(d.Reasons) != 1 || d.Reasons[0].Rule != RuleWithdrawn {
		t.Fatalf("error %v, want the withdrawn-report denial", err)
	}
	if r := d.Reasons[0]; !strings.HasPrefix(r.Message, "report "+reportID+" was withdrawn by its originator (") || r.Next != "none: a withdrawn report is never passed on" || r.Party != "CAN" {
		t.Fatalf("reason %s", r)
	}
}

// A holder cannot ask for consent on a report its originator has
// withdrawn: the request is refused as a share of it is, and nothing is
// stored or sent.
func TestRequestConsentOnWithdrawnReport(t *testing.T) {
	for _, action := range []string{"purge", "quarantine"} {
		t.Run(action, func(t *testing.T) {
			w := newConsentWorld(t)
			if _, err := w.usa.Withdraw(w.ctx, w.off, w.reportID, "burned source", action); err != nil {
				t.Fatal(err)
			}
			deliver(t, w.usa, "GBR", w.gbr, true)
			before := stateOf(t, w.gbr, w.reportID, "USA")
			_, shareErr := w.gbr.Share(w.ctx, w.goff, w.reportID, "CAN", nil)
			wantWithdrawnDenial(t, shareErr, w.reportID)
			rec, err := w.gbr.RequestConsent(w.ctx, w.goff, w.reportID, "CAN", "joint operation", nil)
			if rec != nil {
				t.Fatalf("consent requested on a withdrawn report: %v", rec)
			}
			wantWithdrawnDenial(t, err, w.reportID)
			if err.Error() != shareErr.Error() {
				t.Errorf("request refused with %q, share with %q", err, shareErr)
			}
			sameState(t, "a refused consent request", before, stateOf(t, w.gbr, w.reportID, "USA"))
		})
	}
}

// The originator signs no grant for a report it has withdrawn, even for a
// request made before the withdrawal; it may still deny the request.
func TestApproveConsentOnWithdrawnReport(t *testing.T) {
	w := newConsentWorld(t)
	req := w.requestFor(t)
	if _, err := w.usa.Withdraw(w.ctx, w.off, w.reportID, "burned source", "purge"); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, w.usa, w.reportID, "GBR")
	rec, err := w.usa.DecideConsent(w.ctx, w.off, req, true, false, time.Hour, "")
	if rec != nil {
		t.Fatalf("approved a request for a withdrawn report: %v", rec)
	}
	wantWithdrawnDenial(t, err, w.reportID)
	sameState(t, "a refused approval", before, stateOf(t, w.usa, w.reportID, "GBR"))
	for _, it := range mustOutbox(t, w.usa, "GBR") {
		if it.Item.GetRequest().GetConsentDecision() != nil {
			t.Fatal("a consent decision was queued for GBR")
		}
	}
	if _, err := w.usa.DecideConsent(w.ctx, w.off, req, false, false, 0, "withdrawn"); err != nil {
		t.Fatalf("deny of a request for a withdrawn report: %v", err)
	}
}
