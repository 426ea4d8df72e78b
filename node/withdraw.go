package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// RuleWithdrawn is the rule of a share refused because the originator
// withdrew the report.
const RuleWithdrawn policy.Rule = "withdrawn"

// recipients returns, from a report's events, the partners this node sent the report to (released,
// or queued and held for a suspended partner) and, at the originator, the
// parties holders reported onward releases to.
func recipients(evs []*storev1.Event) (direct, onward []string) {
	for _, e := range evs {
		switch e.GetKind() {
		case "released", "held":
			if !slices.Contains(direct, e.GetParty()) {
				direct = append(direct, e.GetParty())
			}
		case "onward-release":
			if !slices.Contains(onward, e.GetParty()) {
				onward = append(onward, e.GetParty())
			}
		}
	}
	return direct, onward
}

// Withdraw signs a withdrawal of one of this party's reports, applies it
// here, and sends it to every partner the report was released to. Holders
// pass it on and acknowledge it; the outbox retries until they have.
func (n *Node) Withdraw(ctx context.Context, by pki.Identity, reportID, reason, action string) (*storev1.WithdrawalRecord, error) {
	now := n.clock()
	if action == "" {
		action = "purge"
	}
	if action != "purge" && action != "quarantine" {
		return nil, fmt.Errorf("%w: --action %q: want purge or quarantine", ErrInvalid, action)
	}
	if strings.TrimSpace(reason) == "" || len(reason) > maxPurpose {
		return nil, fmt.Errorf("%w: say why (--reason, at most %d bytes)", ErrInvalid, maxPurpose)
	}
	if err := freeText("the reason (--reason)", reason); err != nil {
		return nil, err
	}
	held, v, err := n.heldReport(reportID)
	if err != nil {
		return nil, err
	}
	if o := v.Header.GetOriginator(); o != n.party {
		return nil, fmt.Errorf("%w: report %s is %s's; only %s can withdraw it", ErrInvalid, reportID, o, o)
	}
	if held.GetWithdrawn() != nil {
		return nil, fmt.Errorf("%w: report %s is already withdrawn", ErrInvalid, reportID)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	w := &reportv1.Withdrawal{Id: id.String(), ReportId: reportID, Originator: n.party, Action: action, Reason: reason, Issued: timestamppb.New(now)}
	sd, err := report.SignStatement(report.KindWithdrawal, w, n.signer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	var rec *storev1.WithdrawalRecord
	var direct []string
	// Who gets it is read in the same write transaction that applies it, so
	// a share committed just before is seen and one just after is refused.
	err = n.st.Update(now, func(t *store.Tx) error {
		cur, err := t.Report(reportID)
		if err != nil {
			return err
		}
		if cur.GetWithdrawn() != nil {
			return fmt.Errorf("%w: report %s is already withdrawn", ErrInvalid, reportID)
		}
		evs, err := t.Events(reportID)
		if err != nil {
			return err
		}
		var onward []string
		direct, onward = recipients(evs)
		rec = &storev1.WithdrawalRecord{Withdrawal: sd, ReportId: reportID, By: by.String(), Parties: map[string]*storev1.WithdrawalParty{}}
		for _, p := range append(slices.Clone(direct), onward...) {
			rec.Parties[p] = &storev1.WithdrawalParty{}
		}
		if err := n.applyWithdrawal(t, now, reportID, sd, w); err != nil {
			return err
		}
		if err := t.PutWithdrawal(rec); err != nil {
			return err
		}
		for _, p := range direct {
			if err := n.enqueueRequest(t, p, reportID, &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Withdrawal{Withdrawal: sd}}); err != nil {
				return err
			}
		}
		return t.AddEvent(&storev1.Event{ReportId: reportID, Kind: "withdrawal-issued", Subject: by.String(),
			Detail: fmt.Sprintf("%s (%s): sent to %s", action, reason, strings.Join(direct, ", "))})
	})
	if errors.Is(err, ErrInvalid) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	n.wake(direct)
	n.log.Warn("report withdrawn", "report", reportID, "action", action, "by", by.String(), "sent_to", strings.Join(direct, ","))
	return rec, nil
}

// withdrawnBy is the originator a kept withdrawal names ("" if it does not
// parse; it was verified when it was kept).
func withdrawnBy(wr *storev1.WithdrawalRecord) string {
	w := &reportv1.Withdrawal{}
	if proto.Unmarshal(wr.GetWithdrawal().GetPayload(), w) != nil {
		return ""
	}
	return w.GetOriginator()
}

// applyWithdrawal purges or quarantines a held report: portion content is
// deleted (purge) or kept but never shown or passed on (quarantine); the
// signed header, hops and provenance stay as a tombstone, and the report
// goes to the end of the feed again so that subscribers hear of it.
func (n *Node) applyWithdrawal(t *store.Tx, now time.Time, reportID string, sd *reportv1.Signed, w *reportv1.Withdrawal) error {
	held, err := t.Report(reportID)
	if err != nil {
		return err
	}
	held = proto.CloneOf(held)
	if w.GetAction() == "purge" {
		for _, p := range held.GetEnvelope().GetPortions() {
			p.Body, p.Title = nil, ""
		}
	}
	held.Withdrawn = &storev1.AppliedWithdrawal{Withdrawal: sd, Action: w.GetAction(), Reason: w.GetReason(), Applied: timestamppb.New(now)}
	if err := t.PutReport(reportID, held); err != nil {
		return err
	}
	// Content still queued for partners must not overtake the withdrawal.
	if _, err := t.DropQueuedEnvelopes(reportID); err != nil {
		return err
	}
	if err := t.AppendFeed(reportID); err != nil {
		return err
	}
	return t.AddEvent(&storev1.Event{ReportId: reportID, Kind: "withdrawn", Party: w.GetOriginator(),
		Detail: fmt.Sprintf("%s by %s: %s (withdrawal %s)", w.GetAction(), w.GetOriginator(), w.GetReason(), w.GetId())})
}

// receiveWithdrawal applies a withdrawal that `from` sent here, passes it
// on to every partner this node sent the report to, and acknowledges it to
// the originator (through `from` when the originator is not a partner).
func (n *Node) receiveWithdrawal(now time.Time, from string, sd *reportv1.Signed) (Outcome, error) {
	w, err := report.OpenWithdrawal(sd, n.trust)
	if err != nil {
		return Rejected, err
	}
	outcome := Accepted
	var woken []string
	err = n.st.Batch(now, func(t *store.Tx) error {
		outcome, woken = Accepted, nil
		held, err := t.Report(w.GetReportId())
		isHeld := err == nil
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Not held (yet): remember the withdrawal, so that the report
			// is refused if it arrives later.
			if _, err := t.Withdrawal(w.GetReportId()); err == nil {
				outcome = Duplicate
				return nil
			}
			if err := t.PutWithdrawal(&storev1.WithdrawalRecord{Withdrawal: sd, ReportId: w.GetReportId()}); err != nil {
				return err
			}
			if err := t.AddEvent(&storev1.Event{ReportId: w.GetReportId(), Kind: "withdrawal-received", Party: w.GetOriginator(),
				Detail: fmt.Sprintf("%s by %s, from %s: not held here; kept so that the report is refused if it arrives (withdrawal %s)", w.GetAction(), w.GetOriginator(), from, w.GetId())}); err != nil {
				return err
			}
		case err != nil:
			return err
		case held.GetWithdrawn() != nil:
			outcome = Duplicate
			return nil
		default:
			hv, err := report.OpenHeader(held.GetEnvelope().GetHeader(), n.trust)
			if err != nil || hv.Header.GetOriginator() != w.GetOriginator() {
				return errWrongOriginator
			}
			if err := n.applyWithdrawal(t, now, w.GetReportId(), sd, w); err != nil {
				return err
			}
		}
		evs, err := t.Events(w.GetReportId())
		if err != nil {
			return err
		}
		direct, _ := recipients(evs)
		onward := slices.DeleteFunc(direct, func(p string) bool { return p == from || p == w.GetOriginator() })
		for _, p := range onward {
			if err := n.enqueueRequest(t, p, w.GetReportId(), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Withdrawal{Withdrawal: sd}}); err != nil {
				return err
			}
			woken = append(woken, p)
		}
		ack, err := report.SignStatement(report.KindWithdrawalAck, &reportv1.WithdrawalAck{
			WithdrawalId: w.GetId(), ReportId: w.GetReportId(), Holder: n.party, Held: isHeld, Applied: timestamppb.New(now),
		}, n.signer)
		if err != nil {
			return err
		}
		to := w.GetOriginator()
		if _, ok := n.partners[to]; !ok {
			to = from
		}
		woken = append(woken, to)
		return n.enqueueRequest(t, to, w.GetReportId(), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_WithdrawalAck{WithdrawalAck: ack}})
	})
	if errors.Is(err, errWrongOriginator) {
		return Rejected, err
	}
	if err != nil {
		return 0, err
	}
	n.wake(woken)
	return outcome, nil
}

var errWrongOriginator = errors.New("the withdrawal's originator is not the report's")

// receiveWithdrawalAck records a holder's acknowledgement at the
// originator, or passes it on towards the originator.
func (n *Node) receiveWithdrawalAck(now time.Time, from string, sd *reportv1.Signed) (Outcome, error) {
	a, err := report.OpenWithdrawalAck(sd, n.trust)
	if err != nil {
		return Rejected, err
	}
	outcome := Accepted
	var relayTo string
	err = n.st.Batch(now, func(t *store.Tx) error {
		outcome, relayTo = Accepted, ""
		rec, err := t.Withdrawal(a.GetReportId())
		if err == nil && rec.GetBy() == "" {
			// A holder's record of a withdrawal it could not apply: not ours.
			err = store.ErrNotFound
		}
		if errors.Is(err, store.ErrNotFound) {
			// Not ours: pass it towards the originator.
			held, err := t.Report(a.GetReportId())
			if err != nil {
				return errNotOurs
			}
			hv, err := report.OpenHeader(held.GetEnvelope().GetHeader(), n.trust)
			if err != nil {
				return errNotOurs
			}
			o := hv.Header.GetOriginator()
			if _, ok := n.partners[o]; !ok || o == n.party {
				return errNotOurs
			}
			relayTo = o
			return n.enqueueRequest(t, o, a.GetReportId(), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_WithdrawalAck{WithdrawalAck: sd}})
		}
		if err != nil {
			return err
		}
		rec = proto.CloneOf(rec)
		if p := rec.Parties[a.GetHolder()]; p != nil && p.GetAcknowledged() {
			outcome = Duplicate
			return nil
		}
		rec.Parties[a.GetHolder()] = &storev1.WithdrawalParty{Acknowledged: true, Time: a.GetApplied(), Held: a.GetHeld()}
		if err := t.PutWithdrawal(rec); err != nil {
			return err
		}
		return t.AddEvent(&storev1.Event{ReportId: a.GetReportId(), Kind: "withdrawal-acknowledged", Party: a.GetHolder(),
			Detail: fmt.Sprintf("%s applied the withdrawal (held: %v)", a.GetHolder(), a.GetHeld())})
	})
	if errors.Is(err, errNotOurs) {
		return Rejected, err
	}
	if err != nil {
		return 0, err
	}
	if relayTo != "" {
		n.wake([]string{relayTo})
	}
	return outcome, nil
}

var errNotOurs = errors.New("an acknowledgement of a withdrawal this node neither issued nor can pass on")

// WithdrawStatus returns the withdrawal of one of this party's reports and
// who has acknowledged it.
func (n *Node) WithdrawStatus(ctx context.Context, reportID string) (*storev1.WithdrawalRecord, *reportv1.Withdrawal, error) {
	var rec *storev1.WithdrawalRecord
	err := n.st.View(func(t *store.Tx) error {
		var err error
		rec, err = t.Withdrawal(reportID)
		if err == nil && rec.GetBy() == "" {
			return store.ErrNotFound // a holder's record, not a withdrawal of ours
		}
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: this node has not withdrawn report %s", ErrNotFound, reportID)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	w, err := report.OpenWithdrawal(rec.GetWithdrawal(), n.trust)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: stored withdrawal does not verify: %w", ErrInternal, err)
	}
	return rec, w, nil
}

func withdrawnDenial(reportID string, w *storev1.AppliedWithdrawal, to string) error {
	return &DeniedError{Reasons: []policy.Reason{{
		Rule: RuleWithdrawn, Party: to,
		Message: fmt.Sprintf("report %s was withdrawn by its originator (%s: %s)", reportID, w.GetAction(), w.GetReason()),
		Next:    "none: a withdrawn report is never passed on",
	}}}
}
