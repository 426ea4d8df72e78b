package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/internal/safetext"
	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Consent and crisis limits.
const (
	DefaultGrantTTL = 72 * time.Hour
	MaxGrantTTL     = 30 * 24 * time.Hour
	MaxCrisis       = 72 * time.Hour
	maxPurpose      = 512
)

// authorities are the consent grants and crisis declarations a decision
// may rest on, with their signed forms to pass on in envelopes.
type authorities struct {
	consents []policy.Consent
	crises   []policy.Crisis
	signed   map[string]*reportv1.Signed // by grant or declaration id
}

func grantPolicy(g *reportv1.ConsentGrant) policy.Consent {
	return policy.Consent{
		ID: g.GetId(), ReportID: g.GetReportId(), Originator: g.GetOriginator(), Holder: g.GetHolder(), To: g.GetTo(),
		Portions: g.GetPortions(), Purpose: g.GetPurpose(), Expires: g.GetExpires().AsTime(),
	}
}

func crisisPolicy(c *reportv1.CrisisDeclaration, ended bool) policy.Crisis {
	return policy.Crisis{
		ID: c.GetId(), Originator: c.GetOriginator(), Topics: c.GetTopics(), Parties: c.GetParties(),
		MaxClassification: c.GetMaxClassification(), Expires: c.GetExpires().AsTime(), Ended: ended || c.GetEnded(),
	}
}

// loadAuthorities collects the grants this node holds for reportID and the
// crisis declarations of originator that it knows, re-verifying each.
func (n *Node) loadAuthorities(reportID, originator string) (authorities, error) {
	a := authorities{signed: map[string]*reportv1.Signed{}}
	if err := n.addGrants(&a, reportID, originator); err != nil {
		return a, err
	}
	return a, n.addCrises(&a, originator)
}

// addGrants adds the approved grants this node holds for reportID.
func (n *Node) addGrants(a *authorities, reportID, originator string) error {
	cs, err := n.st.Consents()
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.GetReportId() != reportID || c.GetState() != "approved" || c.GetHolder() != n.party || c.GetGrant() == nil {
			continue
		}
		g, _, err := report.OpenGrant(c.GetGrant(), n.trust)
		if err != nil || g.GetOriginator() != originator {
			continue
		}
		a.consents = append(a.consents, grantPolicy(g))
		a.signed[g.GetId()] = c.GetGrant()
	}
	return nil
}

// addCrises adds the crisis declarations of originator this node knows.
func (n *Node) addCrises(a *authorities, originator string) error {
	crs, err := n.st.Crises()
	if err != nil {
		return err
	}
	for _, cr := range crs {
		d, _, err := report.OpenCrisis(cr.GetDeclaration(), n.trust)
		if err != nil || d.GetOriginator() != originator {
			continue
		}
		a.crises = append(a.crises, crisisPolicy(d, cr.GetEnd() != nil))
		a.signed[d.GetId()] = cr.GetDeclaration()
	}
	return nil
}

// envelopeAuthorities opens the grants and declarations carried in an
// envelope. One that does not verify, is not the originator's, or is
// neither a grant nor a declaration refuses the envelope: an honest holder
// passes on only the originator's statements that its hops name, so such
// an authority is a forgery or junk, and the error says which.
func (n *Node) envelopeAuthorities(env *reportv1.Envelope, originator string) ([]policy.Consent, []policy.Crisis, error) {
	var cs []policy.Consent
	var crs []policy.Crisis
	for i, sd := range env.GetAuthorities() {
		switch sd.GetKind() {
		case report.KindGrant:
			g, _, err := report.OpenGrant(sd, n.trust)
			if err != nil {
				return nil, nil, fmt.Errorf("consent grant %d of the envelope does not verify: %w", i+1, err)
			}
			if g.GetOriginator() != originator {
				return nil, nil, fmt.Errorf("%w: consent grant %d of the envelope is a grant of %s, not of the originator %s", report.ErrSignature, i+1, g.GetOriginator(), originator)
			}
			cs = append(cs, grantPolicy(g))
		case report.KindCrisis:
			c, _, err := report.OpenCrisis(sd, n.trust)
			if err != nil {
				return nil, nil, fmt.Errorf("crisis declaration %d of the envelope does not verify: %w", i+1, err)
			}
			if c.GetOriginator() != originator {
				return nil, nil, fmt.Errorf("%w: crisis declaration %d of the envelope is a declaration of %s, not of the originator %s", report.ErrSignature, i+1, c.GetOriginator(), originator)
			}
			crs = append(crs, crisisPolicy(c, false))
		default:
			return nil, nil, fmt.Errorf("%w: authority %d of the envelope is neither a consent grant nor a crisis declaration", report.ErrInvalid, i+1)
		}
	}
	// Declarations this node knows (and their ends) count too.
	known := authorities{signed: map[string]*reportv1.Signed{}}
	if err := n.addCrises(&known, originator); err == nil {
		for _, c := range known.crises {
			crs = slices.DeleteFunc(crs, func(x policy.Crisis) bool { return x.ID == c.ID && c.Ended })
			crs = append(crs, c)
		}
	}
	return cs, crs, nil
}

// freeText refuses free text that holds a control character or a
// bidirectional override (internal/safetext): another party's officer
// reads it, and it must not forge lines or reorder what a terminal shows.
// field names it as the error should, e.g. "the reason (--reason)".
func freeText(field, s string) error {
	if err := safetext.Check(field, s); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func (n *Node) enqueueRequest(t *store.Tx, party, reportID string, req *federationv1.DeliverRequest) error {
	return t.Enqueue(party, &storev1.OutboxItem{ReportId: reportID, Request: req})
}

// RequestConsent asks the originator of a held report for consent to pass
// it to a third party.
func (n *Node) RequestConsent(ctx context.Context, by pki.Identity, reportID, to, purpose string, portions []uint32) (*storev1.ConsentRecord, error) {
	now := n.clock()
	if len(purpose) > maxPurpose {
		return nil, fmt.Errorf("%w: the purpose is longer than %d bytes", ErrInvalid, maxPurpose)
	}
	if strings.TrimSpace(purpose) == "" {
		return nil, fmt.Errorf("%w: give the purpose of the request (--purpose)", ErrInvalid)
	}
	if err := freeText("the purpose (--purpose)", purpose); err != nil {
		return nil, err
	}
	if _, ok := n.partners[to]; !ok {
		return nil, fmt.Errorf("%w: %q is not a partner of %s (partners: %s)", ErrInvalid, to, n.party, strings.Join(n.partnerList(), ", "))
	}
	held, v, err := n.heldReport(reportID)
	if err != nil {
		return nil, err
	}
	if w := held.GetWithdrawn(); w != nil {
		return nil, withdrawnDenial(reportID, w, to)
	}
	o := v.Header.GetOriginator()
	if o == n.party {
		return nil, fmt.Errorf("%w: %s originated %s and needs no consent: share it", ErrInvalid, n.party, reportID)
	}
	if _, ok := n.partners[o]; !ok {
		return nil, fmt.Errorf("%w: the originator %s is not a partner of %s, so it cannot be asked", ErrInvalid, o, n.party)
	}
	if to == o {
		return nil, fmt.Errorf("%w: %s is the originator", ErrInvalid, to)
	}
	for _, ix := range portions {
		if !slices.ContainsFunc(held.GetEnvelope().GetPortions(), func(p *reportv1.Portion) bool { return p.GetIndex() == ix }) {
			return nil, fmt.Errorf("%w: portion %d of %s is not held here", ErrInvalid, ix, reportID)
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	rec := &storev1.ConsentRecord{
		Id: id.String(), ReportId: reportID, Holder: n.party, To: to, Originator: o, Portions: portions, Purpose: purpose,
		State: "pending", Direction: "outgoing", Requested: timestamppb.New(now),
	}
	err = n.st.Update(now, func(t *store.Tx) error {
		// A withdrawal applied since the check above refuses it too.
		cur, err := t.Report(reportID)
		if errors.Is(err, store.ErrNotFound) {
			return notHeld(reportID)
		}
		if err != nil {
			return err
		}
		if w := cur.GetWithdrawn(); w != nil {
			return withdrawnDenial(reportID, w, to)
		}
		if err := t.PutConsent(rec); err != nil {
			return err
		}
		if err := t.AddEvent(&storev1.Event{ReportId: reportID, Kind: "consent-requested", Party: to, Subject: by.String(), Detail: "asked " + o + " for consent to pass it to " + to + "; request " + rec.GetId()}); err != nil {
			return err
		}
		return n.enqueueRequest(t, o, reportID, &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_ConsentRequest{ConsentRequest: &federationv1.ConsentRequest{
			Id: rec.GetId(), ReportId: reportID, To: to, Portions: portions, Purpose: purpose,
		}}})
	})
	if errors.Is(err, ErrDenied) || errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	n.wake([]string{o})
	return rec, nil
}

// Consents lists every consent record, newest first.
func (n *Node) Consents(ctx context.Context) ([]*storev1.ConsentRecord, error) {
	cs, err := n.st.Consents()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	slices.Reverse(cs) // ids are time-ordered
	return cs, nil
}

// DecideConsent approves or denies a pending incoming consent request, or
// (withdraw set, approve not) withdraws the grant of an approved one. An
// approval signs a grant and sends it to the holder. A request in any other
// state is refused and left as it is: denying an approved request does not
// withdraw it, and no grant is signed for a report this node has withdrawn.
func (n *Node) DecideConsent(ctx context.Context, by pki.Identity, id string, approve, withdraw bool, ttl time.Duration, reason string) (*storev1.ConsentRecord, error) {
	now := n.clock()
	if approve && withdraw {
		return nil, fmt.Errorf("%w: approve and withdraw exclude each other: approve a pending request, or withdraw an approved one", ErrInvalid)
	}
	if ttl == 0 {
		ttl = DefaultGrantTTL
	}
	if approve && (ttl < time.Second || ttl > MaxGrantTTL) {
		return nil, fmt.Errorf("%w: --ttl %s is out of range (1s to %s)", ErrInvalid, ttl, MaxGrantTTL)
	}
	if withdraw && strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: say why the approval is withdrawn (--reason)", ErrInvalid)
	}
	if !approve && strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: say why the request is denied (--reason)", ErrInvalid)
	}
	if len(reason) > maxPurpose {
		return nil, fmt.Errorf("%w: the reason is longer than %d bytes", ErrInvalid, maxPurpose)
	}
	if err := freeText("the reason (--reason)", reason); err != nil {
		return nil, err
	}
	var rec *storev1.ConsentRecord
	err := n.st.Update(now, func(t *store.Tx) error {
		r, err := t.Consent(id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no consent request %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if r.GetDirection() != "incoming" {
			return fmt.Errorf("%w: request %s was sent by this node; only the originator %s decides it", ErrInvalid, id, r.GetOriginator())
		}
		if err := decidable(r, approve, withdraw); err != nil {
			return err
		}
		if approve {
			// No grant for a report this node has withdrawn.
			held, err := t.Report(r.GetReportId())
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if w := held.GetWithdrawn(); w != nil {
				return withdrawnDenial(r.GetReportId(), w, r.GetTo())
			}
		}
		rec = proto.CloneOf(r)
		rec.Decided = timestamppb.New(now)
		dec := &federationv1.ConsentDecision{RequestId: id, Approved: approve, Reason: reason}
		if approve {
			g := &reportv1.ConsentGrant{
				Id: id, ReportId: rec.GetReportId(), Originator: n.party, Holder: rec.GetHolder(), To: rec.GetTo(),
				Portions: rec.GetPortions(), Purpose: rec.GetPurpose(), Issued: timestamppb.New(now), Expires: timestamppb.New(now.Add(ttl)),
			}
			sg, err := report.SignStatement(report.KindGrant, g, n.signer)
			if err != nil {
				return err
			}
			rec.State, rec.Grant, rec.Expires = "approved", sg, g.GetExpires()
			dec.Grant = sg
		} else if withdraw {
			// Withdrawing an approval: the holder's grant no longer allows anything.
			rec.State, rec.Reason = "withdrawn", reason
		} else {
			rec.State, rec.Reason = "denied", reason
		}
		if err := t.PutConsent(rec); err != nil {
			return err
		}
		detail := fmt.Sprintf("consent for %s to pass it to %s: %s (request %s)", rec.GetHolder(), rec.GetTo(), rec.GetState(), id)
		if err := t.AddEvent(&storev1.Event{ReportId: rec.GetReportId(), Kind: "consent-" + rec.GetState(), Party: rec.GetHolder(), Subject: by.String(), Detail: detail}); err != nil {
			return err
		}
		return n.enqueueRequest(t, rec.GetHolder(), rec.GetReportId(), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_ConsentDecision{ConsentDecision: dec}})
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrDenied) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	n.wake([]string{rec.GetHolder()})
	return rec, nil
}

// decidable returns why request r cannot take the decision (approve, or
// withdraw, or else deny), or nil. Only a pending request is approved or
// denied and only an approved one is withdrawn; a refusal says what to do
// instead.
func decidable(r *storev1.ConsentRecord, approve, withdraw bool) error {
	id, state := r.GetId(), r.GetState()
	switch {
	case withdraw && state == "approved", !withdraw && state == "pending":
		return nil
	case withdraw && state == "pending":
		return fmt.Errorf("%w: request %s is pending: deny it instead (tearline consent deny %s --reason TEXT)", ErrInvalid, id, id)
	case withdraw && state == "denied":
		return fmt.Errorf("%w: request %s was denied, so it has no grant to withdraw", ErrInvalid, id)
	case !approve && !withdraw && state == "approved":
		return fmt.Errorf("%w: request %s is already approved; to take its grant back: tearline consent withdraw %s --reason TEXT", ErrInvalid, id, id)
	}
	return fmt.Errorf("%w: request %s is already %s", ErrInvalid, id, state)
}

// securityEvent records evidence against a partner.
func (n *Node) securityEvent(now time.Time, e *storev1.SecurityEvent) error {
	n.log.Warn("security event", "kind", e.GetKind(), "partner", e.GetPartner(), "rule", e.GetRule(), "reason", e.GetMessage())
	return n.st.Batch(now, func(t *store.Tx) error { return t.AddSecurityEvent(proto.CloneOf(e)) })
}

// Unreadable records a security event naming the partner whose node sent
// a federation message that could not be read at all: it does not decode,
// or it is over the size limit. There is no item to quarantine; what says
// why the message could not be read.
func (n *Node) Unreadable(from pki.Identity, what string) error {
	return n.securityEvent(n.clock(), &storev1.SecurityEvent{
		Kind: "malformed-message", Partner: from.Party, Rule: string(policy.RuleBadInput),
		Message: from.Party + " sent a message that could not be read: " + what,
	})
}

// ReceiveItem handles a federation item other than an envelope from the
// node of party `from`. A refused item is acknowledged as rejected and
// raises a security event; the error is non-nil only when the store failed.
func (n *Node) ReceiveItem(ctx context.Context, from pki.Identity, req *federationv1.DeliverRequest) (Outcome, policy.Reason, error) {
	now := n.clock()
	refuse := func(kind string, rule policy.Rule, format string, args ...any) (Outcome, policy.Reason, error) {
		r := policy.Reason{Rule: rule, Party: from.Party, Message: fmt.Sprintf(format, args...)}
		// Without the evidence on disk the item is not acknowledged: the
		// sender keeps it and sends it again.
		if err := n.securityEvent(now, &storev1.SecurityEvent{Kind: kind, Partner: from.Party, Rule: string(r.Rule), Message: r.Message}); err != nil {
			return 0, policy.Reason{}, fmt.Errorf("%w: record security event: %w", ErrInternal, err)
		}
		return Rejected, r, nil
	}
	reject := func(kind, format string, args ...any) (Outcome, policy.Reason, error) {
		return refuse(kind, policy.RuleBadChain, format, args...)
	}
	ok := policy.Reason{Allowed: true}
	switch it := req.GetItem().(type) {
	case *federationv1.DeliverRequest_ConsentRequest:
		cr := it.ConsentRequest
		if _, err := uuid.Parse(cr.GetId()); err != nil || !marking.ValidParty(cr.GetTo()) || len(cr.GetPurpose()) > maxPurpose || len(cr.GetPortions()) > report.MaxPortions {
			return reject("bad-consent-request", "a consent request from %s is malformed", from.Party)
		}
		held, err := n.st.Report(cr.GetReportId())
		if err != nil {
			return reject("bad-consent-request", "%s asked for consent on report %s, which %s did not originate", from.Party, marking.Quote(cr.GetReportId()), n.party)
		}
		if v, err := report.OpenHeader(held.GetEnvelope().GetHeader(), n.trust); err != nil || v.Header.GetOriginator() != n.party {
			return reject("bad-consent-request", "%s asked for consent on report %s, which %s did not originate", from.Party, cr.GetReportId(), n.party)
		}
		outcome := Accepted
		err = n.st.Batch(now, func(t *store.Tx) error {
			outcome = Accepted
			if _, err := t.Consent(cr.GetId()); err == nil {
				outcome = Duplicate
				return nil
			}
			rec := &storev1.ConsentRecord{
				Id: cr.GetId(), ReportId: cr.GetReportId(), Holder: from.Party, To: cr.GetTo(), Originator: n.party,
				Portions: cr.GetPortions(), Purpose: cr.GetPurpose(), State: "pending", Direction: "incoming", Requested: timestamppb.New(now),
			}
			if err := t.PutConsent(rec); err != nil {
				return err
			}
			return t.AddEvent(&storev1.Event{ReportId: cr.GetReportId(), Kind: "consent-requested", Party: from.Party, Detail: from.Party + " asks to pass it to " + cr.GetTo() + "; request " + cr.GetId()})
		})
		return outcome, ok, err
	case *federationv1.DeliverRequest_ConsentDecision:
		d := it.ConsentDecision
		if len(d.GetReason()) > maxPurpose {
			return refuse("bad-consent", policy.RuleBadInput, "%s answered consent request %s with a reason of %d bytes; the limit is %d", from.Party, marking.Quote(d.GetRequestId()), len(d.GetReason()), maxPurpose)
		}
		outcome := Accepted
		var bad string
		var badRule policy.Rule
		err := n.st.Batch(now, func(t *store.Tx) error {
			outcome, bad, badRule = Accepted, "", policy.RuleBadChain
			r, err := t.Consent(d.GetRequestId())
			if err != nil || r.GetDirection() != "outgoing" || r.GetOriginator() != from.Party {
				bad = fmt.Sprintf("%s answered consent request %s, which this node did not send to it", from.Party, marking.Quote(d.GetRequestId()))
				return nil
			}
			withdrawn := r.GetState() == "approved" && !d.GetApproved()
			if r.GetState() != "pending" && !withdrawn {
				outcome = Duplicate
				return nil
			}
			r = proto.CloneOf(r)
			r.Decided = timestamppb.New(now)
			if withdrawn {
				r.State, r.Reason = "withdrawn", d.GetReason()
			} else if d.GetApproved() {
				g, _, err := report.OpenGrant(d.GetGrant(), n.trust)
				switch {
				case err != nil:
					bad, badRule = fmt.Sprintf("%s sent a consent grant for request %s that does not verify: %v", from.Party, r.GetId(), err), policy.RuleBadSignature
				case g.GetOriginator() != from.Party:
					bad, badRule = fmt.Sprintf("%s sent a consent grant of %s for request %s: only the originator %s grants it", from.Party, g.GetOriginator(), r.GetId(), from.Party), policy.RuleBadSignature
				case g.GetId() != r.GetId() || g.GetHolder() != n.party || g.GetTo() != r.GetTo() || g.GetReportId() != r.GetReportId():
					bad = fmt.Sprintf("%s sent a consent grant that does not match request %s (its request, report, holder or recipient differs)", from.Party, r.GetId())
				}
				if bad != "" {
					return nil
				}
				r.State, r.Grant, r.Expires = "approved", d.GetGrant(), g.GetExpires()
			} else {
				r.State, r.Reason = "denied", d.GetReason()
			}
			if err := t.PutConsent(r); err != nil {
				return err
			}
			verb := r.GetState() // approved, denied
			if verb == "withdrawn" {
				verb = "withdrew its consent to"
			}
			return t.AddEvent(&storev1.Event{ReportId: r.GetReportId(), Kind: "consent-" + r.GetState(), Party: from.Party, Detail: fmt.Sprintf("%s %s passing it to %s (request %s)", from.Party, verb, r.GetTo(), r.GetId())})
		})
		if err == nil && bad != "" {
			return refuse("bad-consent", badRule, "%s", bad)
		}
		return outcome, ok, err
	case *federationv1.DeliverRequest_Crisis:
		d, _, err := report.OpenCrisis(it.Crisis, n.trust)
		if err != nil {
			return refuse("bad-crisis", policy.RuleBadSignature, "%s sent a crisis declaration that does not verify: %v", from.Party, err)
		}
		if d.GetOriginator() != from.Party {
			return refuse("bad-crisis", policy.RuleBadSignature, "%s sent a crisis declaration of %s: only %s's node declares it", from.Party, d.GetOriginator(), d.GetOriginator())
		}
		if !report.IsUUID(d.GetId()) {
			return reject("bad-crisis", "%s sent a crisis declaration whose id %s is not a UUID", from.Party, marking.Quote(d.GetId()))
		}
		// What a node checks when its own officer declares, it checks of a
		// partner's declaration too: at most MaxCrisis long, naming parties.
		if span := d.GetExpires().AsTime().Sub(d.GetIssued().AsTime()); !d.GetEnded() && (span <= 0 || span > MaxCrisis) {
			return reject("bad-crisis", "%s sent a crisis declaration %s lasting %s: a declaration lasts more than 0 and at most %s", from.Party, d.GetId(), span, MaxCrisis)
		}
		for _, p := range d.GetParties() {
			if !marking.ValidParty(p) {
				return reject("bad-crisis", "%s sent a crisis declaration %s naming %s, which is not a party code", from.Party, d.GetId(), marking.Quote(p))
			}
		}
		out, r, err := n.storeCrisis(now, it.Crisis, d)
		var taken errCrisisTaken
		if errors.As(err, &taken) {
			return refuse("bad-crisis", policy.RuleBadSignature, "%s sent a crisis declaration with id %s, which is %s's declaration: refused, %s's stands", from.Party, d.GetId(), taken.originator, taken.originator)
		}
		return out, r, err
	case *federationv1.DeliverRequest_HopNotice:
		hn := it.HopNotice
		held, err := n.st.Report(hn.GetReportId())
		if err != nil {
			return reject("bad-hop-notice", "%s sent a hop notice for report %s, which is not held here", from.Party, marking.Quote(hn.GetReportId()))
		}
		v, err := report.OpenHeader(held.GetEnvelope().GetHeader(), n.trust)
		if err != nil || v.Header.GetOriginator() != n.party {
			return reject("bad-hop-notice", "%s sent a hop notice for report %s, which %s did not originate", from.Party, hn.GetReportId(), n.party)
		}
		h, err := report.OpenHop(hn.GetHop(), v.Digest, v.Header.GetId(), n.trust)
		if err != nil || h.Hop.GetFrom() != from.Party {
			return reject("bad-hop-notice", "%s sent a hop notice that does not verify", from.Party)
		}
		hopSum := sha256.Sum256(hn.GetHop().GetPayload())
		outcome := Accepted
		err = n.st.Batch(now, func(t *store.Tx) error {
			outcome = Accepted
			// Idempotent: the same hop notice again (a resend after a lost
			// acknowledgement) is acknowledged and not recorded twice.
			if t.SeenReceipt(hn.GetReportId(), hopSum[:]) {
				outcome = Duplicate
				return nil
			}
			if err := t.MarkReceipt(hn.GetReportId(), hopSum[:]); err != nil {
				return err
			}
			for _, pr := range h.Hop.GetPortions() {
				if pr.GetBasis() == reportv1.Basis_BASIS_CRISIS {
					if err := t.AddCrisisRelease(&storev1.CrisisRelease{CrisisId: pr.GetAuthorityId(), ReportId: hn.GetReportId(), Portion: pr.GetIndex(), From: h.Hop.GetFrom(), To: h.Hop.GetTo(), Time: h.Hop.GetSent()}); err != nil {
						return err
					}
				}
			}
			ev := &storev1.Event{ReportId: hn.GetReportId(), Kind: "onward-release", Party: h.Hop.GetTo(), Subject: h.Hop.GetFrom(), Detail: fmt.Sprintf("%s released it to %s: %s", h.Hop.GetFrom(), h.Hop.GetTo(), basesText(h.Hop))}
			for _, pr := range h.Hop.GetPortions() {
				ev.Portions = append(ev.Portions, pr.GetIndex())
				ev.Decisions = append(ev.Decisions, &reportv1.Decision{Index: pr.GetIndex(), Allowed: true, Rule: string(ruleOf[pr.GetBasis()]), Party: h.Hop.GetTo(), Authority: pr.GetAuthorityId()})
			}
			return t.AddEvent(ev)
		})
		return outcome, ok, err
	case *federationv1.DeliverRequest_Withdrawal:
		outcome, err := n.receiveWithdrawal(now, from.Party, it.Withdrawal)
		if outcome == Rejected {
			return reject("bad-withdrawal", "%s sent a withdrawal that was refused: %v", from.Party, err)
		}
		return outcome, ok, err
	case *federationv1.DeliverRequest_AuditCheckpoint:
		outcome, err := n.receiveCheckpoint(now, from.Party, it.AuditCheckpoint)
		if outcome == Rejected {
			return reject("bad-audit-checkpoint", "%s sent an audit checkpoint that was refused: %v", from.Party, err)
		}
		return outcome, ok, err
	case *federationv1.DeliverRequest_WithdrawalAck:
		outcome, err := n.receiveWithdrawalAck(now, from.Party, it.WithdrawalAck)
		if outcome == Rejected {
			return reject("bad-withdrawal-ack", "%s sent a withdrawal acknowledgement that was refused: %v", from.Party, err)
		}
		return outcome, ok, err
	}
	return reject("bad-item", "%s sent an item of an unknown kind", from.Party)
}

func basesText(h *reportv1.Hop) string {
	var parts []string
	for _, pr := range h.GetPortions() {
		b := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(pr.GetBasis().String()), "basis_"), "_", "-")
		if pr.GetAuthorityId() != "" {
			b += ":" + pr.GetAuthorityId()
		}
		parts = append(parts, fmt.Sprintf("portion %d on %s", pr.GetIndex(), b))
	}
	return strings.Join(parts, ", ")
}

// errCrisisTaken refuses a declaration or end notice whose id is that of a
// declaration of another originator held here.
type errCrisisTaken struct{ originator string }

func (e errCrisisTaken) Error() string { return "crisis id taken by " + e.originator }

// storeCrisis keeps a verified declaration or end notice. An end notice
// ends the declaration with the same id; a declaration never revives an
// ended one.
func (n *Node) storeCrisis(now time.Time, sd *reportv1.Signed, d *reportv1.CrisisDeclaration) (Outcome, policy.Reason, error) {
	outcome := Accepted
	err := n.st.Batch(now, func(t *store.Tx) error {
		outcome = Accepted
		rec, err := t.Crisis(d.GetId())
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = &storev1.CrisisRecord{}
		case err != nil:
			return err
		default:
			rec = proto.CloneOf(rec)
			// One party cannot end or replace another's declaration by
			// sending one of its own under the same id.
			held := &reportv1.CrisisDeclaration{}
			if err := proto.Unmarshal(rec.GetDeclaration().GetPayload(), held); err == nil && held.GetOriginator() != d.GetOriginator() {
				return errCrisisTaken{held.GetOriginator()}
			}
		}
		if d.GetEnded() {
			if rec.GetEnd() != nil {
				outcome = Duplicate
				return nil
			}
			rec.End = sd
			if rec.Declaration == nil {
				rec.Declaration = sd
			}
		} else {
			if rec.GetDeclaration() != nil && rec.GetDeclaration().GetKind() == report.KindCrisis && string(rec.GetDeclaration().GetPayload()) == string(sd.GetPayload()) {
				outcome = Duplicate
				return nil
			}
			if rec.GetDeclaration() == nil || rec.GetEnd() == nil {
				rec.Declaration = sd
			}
		}
		return t.PutCrisis(d.GetId(), rec)
	})
	return outcome, policy.Reason{Allowed: true}, err
}
