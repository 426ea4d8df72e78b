package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tearline/tearline/internal/lru"
	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// View shows a held report as verified: every portion of the signed
// header, with content for the portions held here (and allowed by keep,
// when keep is not nil) and only the digest for the others. A report just
// received is shown from what its receipt check verified (receivedChecks);
// any other is verified again, through the verify cache.
func (n *Node) View(r *storev1.StoredReport, keep func(index uint32, m marking.Marking) bool) *clientv1.ReportView {
	env := r.GetEnvelope()
	out := &clientv1.ReportView{}
	checked := n.received.get(r) // nil unless receipt just checked r
	var v *report.Verified
	if checked != nil {
		v = checked.v
	} else {
		var err error
		if v, err = n.vcache.header(env.GetHeader(), n.trust); err != nil {
			// Show what can be shown, marked unverified.
			out.SignatureVerified = false
			return out
		}
	}
	h := v.Header
	out.Id, out.Originator, out.Created, out.Topics, out.Route = h.GetId(), h.GetOriginator(), h.GetCreated(), h.GetTopics(), h.GetRoute()
	out.SignatureVerified = true
	out.Signer = v.Signer.String()
	if w := r.GetWithdrawn(); w != nil {
		// A withdrawn report shows its tombstone only.
		out.Withdrawal = &clientv1.WithdrawalView{Action: w.GetAction(), Reason: w.GetReason(), Applied: w.GetApplied()}
		if wd, err := report.OpenWithdrawal(w.GetWithdrawal(), n.trust); err == nil {
			out.Withdrawal.Id = wd.GetId()
		}
		keep = func(uint32, marking.Marking) bool { return false }
	}
	for _, pd := range h.GetPortions() {
		pv := &clientv1.PortionView{Index: pd.GetIndex(), Digest: pd.GetDigest(), Withheld: true}
		i := slices.IndexFunc(env.GetPortions(), func(p *reportv1.Portion) bool { return p.GetIndex() == pd.GetIndex() })
		if i >= 0 {
			p := env.GetPortions()[i]
			m, err := report.MarkingFromProto(p.GetMarking())
			if err == nil && (keep == nil || keep(p.GetIndex(), m)) {
				pv.Withheld = false
				pv.Banner = m.Banner()
				pv.Topics = m.Topics
				pv.ContentType = p.GetContentType()
				pv.Title = p.GetTitle()
				pv.Body = p.GetBody()
				pv.Verified = checked != nil || report.CheckAgainstHeader(h, []*reportv1.Portion{p}) == nil
			}
		}
		out.Portions = append(out.Portions, pv)
	}
	for i, sh := range env.GetHops() {
		var vh *report.VerifiedHop
		if checked != nil {
			vh = checked.hops[i]
		} else {
			var err error
			if vh, err = n.vcache.hop(sh, v.Digest, h.GetId(), n.trust); err != nil {
				continue
			}
		}
		out.Hops = append(out.Hops, &clientv1.HopView{
			From: vh.Hop.GetFrom(), To: vh.Hop.GetTo(), Sent: vh.Hop.GetSent(), Portions: vh.Hop.GetPortions(), Signer: vh.Signer.String(),
		})
	}
	return out
}

// Summary is a one-line view of a held report.
func (n *Node) Summary(e store.FeedEntry) *clientv1.ReportSummary {
	env := e.Report.GetEnvelope()
	s := &clientv1.ReportSummary{ReceivedFrom: e.Report.GetReceivedFrom(), PortionsHeld: uint32(len(env.GetPortions())), Withdrawn: e.Report.GetWithdrawn() != nil}
	if e.Report.GetWithdrawn().GetAction() == "purge" {
		s.PortionsHeld = 0 // their content is gone: only the tombstone is held
	}
	v, err := n.vcache.header(env.GetHeader(), n.trust)
	if err != nil {
		return s
	}
	s.Id, s.Originator, s.Created = v.Header.GetId(), v.Header.GetOriginator(), v.Header.GetCreated()
	s.PortionsTotal = uint32(len(v.Header.GetPortions()))
	var top marking.Marking
	for _, p := range env.GetPortions() {
		m, err := report.MarkingFromProto(p.GetMarking())
		if err != nil {
			continue
		}
		if top.Classification == "" || n.scheme.Compare(m.Classification, top.Classification) > 0 {
			top = marking.Marking{Classification: m.Classification}
		}
		if s.Title == "" && e.Report.GetWithdrawn() == nil {
			s.Title = p.GetTitle()
		}
	}
	s.Banner = top.Classification
	return s
}

// Get returns a held report, re-verified.
func (n *Node) Get(ctx context.Context, id string) (*clientv1.ReportView, error) {
	r, err := n.st.Report(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notHeld(id)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return n.View(r, nil), nil
}

// List returns up to limit held reports, newest first.
func (n *Node) List(ctx context.Context, limit int) ([]*clientv1.ReportSummary, error) {
	es, err := n.st.Latest(limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	out := make([]*clientv1.ReportSummary, 0, len(es))
	for _, e := range es {
		out = append(out, n.Summary(e))
	}
	return out, nil
}

// Provenance returns a report's view and its local events.
func (n *Node) Provenance(ctx context.Context, id string) (*clientv1.ReportView, []*storev1.Event, error) {
	v, err := n.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	evs, err := n.st.Events(id)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return v, evs, nil
}

// Subscriber returns the subscriber a caller is, or false. Officers of this
// party see every portion held (they operate the node); services see what
// their configured clearance and need-to-know allow.
func (n *Node) Subscriber(id pki.Identity) (policy.Subscriber, bool, error) {
	if id.Party != n.party {
		return policy.Subscriber{}, false, fmt.Errorf("%w: %s is not of party %s", ErrDenied, id, n.party)
	}
	switch id.Kind {
	case pki.KindOfficer:
		return policy.Subscriber{}, true, nil
	case pki.KindService:
		s, ok := n.subscribers[id.Name]
		if !ok {
			return policy.Subscriber{}, false, fmt.Errorf("%w: service %q is not a configured subscriber of this node", ErrDenied, id.Name)
		}
		if n.SuspensionOf(SuspendSubscriber, id.Name) != nil {
			n.SuspendedAttempt(id, "subscribe")
			return policy.Subscriber{}, false, fmt.Errorf("%w: subscriber %s is suspended at this node; its saved cursor is kept for reinstatement", ErrSuspended, id.Name)
		}
		return s, false, nil
	}
	return policy.Subscriber{}, false, fmt.Errorf("%w: %s may not subscribe", ErrDenied, id)
}

// portionSet is a set of portion indexes (1..report.MaxPortions).
type portionSet uint64

func (s portionSet) with(ix uint32) portionSet {
	if ix == 0 || ix > 64 {
		return s
	}
	return s | 1<<(ix-1)
}

func (s portionSet) has(ix uint32) bool { return ix >= 1 && ix <= 64 && s&(1<<(ix-1)) != 0 }

// viewMemo shares the view of a report showing a given set of portions
// between every subscriber allowed exactly that set, so that fanning a
// report out builds (and the gateway encodes) it once per distinct view,
// not once per subscriber. It is keyed by the decoded report the store
// shares between readers; a rewritten report is a new key.
type viewMemo struct {
	m *lru.Map[viewKey, *clientv1.ReportView]
}

type viewKey struct {
	r    *storev1.StoredReport
	kept portionSet
}

// maxViews is how many views a generation of the memo holds (see
// store.maxDecoded for the size).
const maxViews = 2048

// view returns the shared view of r showing the portions in kept. The
// view must not be modified.
func newViewMemo() viewMemo {
	return viewMemo{lru.New[viewKey, *clientv1.ReportView](maxViews)}
}

func (vm viewMemo) view(n *Node, r *storev1.StoredReport, kept portionSet) *clientv1.ReportView {
	v, _ := vm.m.Load(viewKey{r, kept}, func() (*clientv1.ReportView, error) {
		return n.View(r, func(ix uint32, _ marking.Marking) bool { return kept.has(ix) }), nil
	})
	return v
}

// Delivery is one report for a subscriber, with only what it may see.
type Delivery struct {
	Cursor uint64
	View   *clientv1.ReportView
	// Withheld are the portions of the report that sub may not see.
	Withheld []policy.Reason
}

// Deliveries returns the feed after cursor as sub may see it, reading at
// most limit feed entries and returning at most most deliveries (0: no
// bound): when it stops at the most-th, the cursor it returns is that
// delivery's, and no entry after it is looked at (nor recorded as
// withheld). Reports that match no topic
// of the filter, or of which sub may see nothing, are skipped (their
// withheld portions are recorded in provenance now); the caller records
// what it actually sent with RecordDelivered.
func (n *Node) Deliveries(ctx context.Context, who pki.Identity, sub policy.Subscriber, officer bool, after uint64, topics []string, limit, most int) ([]Delivery, uint64, error) {
	es, err := n.st.Feed(after, limit)
	if err != nil {
		return nil, after, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	now := n.clock()
	var out []Delivery
	last := after
	var events []*storev1.Event
	for _, e := range es {
		last = e.Seq
		var withheld []policy.Reason
		var kept portionSet
		for _, p := range e.Report.GetEnvelope().GetPortions() {
			m, err := report.MarkingFromProto(p.GetMarking())
			if err != nil {
				continue // View shows it withheld
			}
			if !officer {
				if r := policy.MayDeliver(n.scheme, sub, policy.Portion{Index: p.GetIndex(), Marking: m}); !r.Allowed {
					withheld = append(withheld, r)
					continue
				}
			}
			kept = kept.with(p.GetIndex())
		}
		view := n.views.view(n, e.Report, kept)
		if !matchTopics(view, topics) {
			continue
		}
		held := false
		for _, p := range view.GetPortions() {
			held = held || !p.GetWithheld()
		}
		if view.GetWithdrawal() != nil {
			// Tell the subscriber of a withdrawal if it may see any portion.
			withheld = nil
			for _, p := range e.Report.GetEnvelope().GetPortions() {
				if m, err := report.MarkingFromProto(p.GetMarking()); err == nil &&
					(officer || policy.MayDeliver(n.scheme, sub, policy.Portion{Index: p.GetIndex(), Marking: m}).Allowed) {
					held = true
				}
			}
		}
		if !held {
			if len(withheld) > 0 {
				events = append(events, &storev1.Event{ReportId: view.GetId(), Kind: "withheld", Subject: who.String(), Decisions: decisionsProto(withheld)})
			}
			continue
		}
		out = append(out, Delivery{Cursor: e.Seq, View: view, Withheld: withheld})
		if most > 0 && len(out) == most {
			break
		}
	}
	if err := n.recordEvents(now, events); err != nil {
		return nil, after, fmt.Errorf("%w: record withheld portions: %w", ErrInternal, err)
	}
	return out, last, nil
}

// SentDelivery is what RecordDelivered records of a delivery once it is
// sent. It holds none of the report's view, so that what waits to be
// recorded costs little memory.
type SentDelivery struct {
	ReportID   string
	Withdrawal bool            // the delivery shows the report's withdrawal
	Shown      []uint32        // the portions shown, by index
	Withheld   []policy.Reason // the portions withheld, and why
}

// Sent is what RecordDelivered needs of d.
func (d *Delivery) Sent() SentDelivery {
	s := SentDelivery{ReportID: d.View.GetId(), Withdrawal: d.View.GetWithdrawal() != nil, Withheld: d.Withheld}
	for _, p := range d.View.GetPortions() {
		if !p.GetWithheld() {
			s.Shown = append(s.Shown, p.GetIndex())
		}
	}
	return s
}

// RecordAtOnce is how many deliveries make RecordDelivered commit at once.
const RecordAtOnce = 64

// RecordDelivered records, once they are sent, the deliveries to a
// subscriber and the portions withheld from them, and saves the
// subscriber's cursor (under cursorKey, if not empty), in one commit.
//
// Nothing waits on the record, so a record of fewer than RecordAtOnce
// deliveries joins the store's next commit (store.BatchLater); a larger
// one means its writer has fallen behind the sends, and commits at once.
func (n *Node) RecordDelivered(who pki.Identity, ds []SentDelivery, cursorKey string, cursor uint64) error {
	subject := who.String()
	events := make([]*storev1.Event, 0, len(ds))
	for _, d := range ds {
		if len(d.Withheld) > 0 {
			events = append(events, &storev1.Event{ReportId: d.ReportID, Kind: "withheld", Subject: subject, Decisions: decisionsProto(d.Withheld)})
		}
		kind := "delivered"
		if d.Withdrawal {
			kind = "withdrawal-delivered"
		}
		events = append(events, &storev1.Event{ReportId: d.ReportID, Kind: kind, Subject: subject, Portions: d.Shown})
	}
	batch := n.st.BatchLater
	if len(ds) >= RecordAtOnce {
		batch = n.st.Batch
	}
	err := batch(n.clock(), func(t *store.Tx) error {
		for _, ev := range events {
			ev.Seq, ev.Time = 0, nil
			if err := t.AddEvent(ev); err != nil {
				return err
			}
		}
		if cursorKey == "" {
			return nil
		}
		return t.PutCursor(cursorKey, cursor)
	})
	if err != nil {
		return fmt.Errorf("%w: record deliveries: %w", ErrInternal, err)
	}
	return nil
}

func (n *Node) recordEvents(now time.Time, events []*storev1.Event) error {
	if len(events) == 0 {
		return nil
	}
	return n.st.Batch(now, func(t *store.Tx) error {
		for _, ev := range events {
			ev.Seq, ev.Time = 0, nil
			if err := t.AddEvent(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

func matchTopics(v *clientv1.ReportView, topics []string) bool {
	if len(topics) == 0 {
		return true
	}
	for _, t := range v.GetTopics() {
		if slices.Contains(topics, t) {
			return true
		}
	}
	return false
}

// notHeld is the error for a report id that names no report held here:
// ErrInvalid, quoted, when it is not a report id at all (a UUID), so that
// a mistyped id is told as such; ErrNotFound otherwise.
func notHeld(id string) error {
	if !report.IsUUID(id) {
		return fmt.Errorf("%w: %s is not a report id (a report id is a UUID, as 'tearline reports' lists them)", ErrInvalid, marking.Quote(id))
	}
	return fmt.Errorf("%w: report %s is not held here", ErrNotFound, id)
}

// heldReport reads a held report and re-verifies its header.
func (n *Node) heldReport(id string) (*storev1.StoredReport, *report.Verified, error) {
	held, err := n.st.Report(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, notHeld(id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	v, err := report.OpenHeader(held.GetEnvelope().GetHeader(), n.trust)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: held header of %s no longer verifies: %w", ErrInternal, id, err)
	}
	return held, v, nil
}
