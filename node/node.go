// Package node is a Tearline node's domain: it publishes, receives, shares
// and shows reports, applying the release rules of node/policy on every
// path and recording each step in the node's store. It knows nothing of
// gRPC servers: the gateway calls it with the caller's verified identity.
package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Errors returned by the node. The gateway maps them to gRPC codes.
var (
	ErrInvalid  = errors.New("node: invalid request")
	ErrNotFound = errors.New("node: not found")
	ErrDenied   = errors.New("node: denied")
	ErrInternal = errors.New("node: internal error")
)

// DeniedError carries the reasons of a denial. errors.Is(err, ErrDenied).
type DeniedError struct {
	Reasons []policy.Reason
}

func (e *DeniedError) Error() string {
	if len(e.Reasons) == 0 {
		return "denied"
	}
	return "denied: " + e.Reasons[0].Message
}

// Is makes a DeniedError match ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Partner is a party this node has a link with.
type Partner struct {
	Party   string
	Address string
	// Agreement governs release to the partner; nil means none.
	Agreement *policy.Agreement
}

// Config is what a node needs; it is not changed after New.
type Config struct {
	Party       string
	Store       *store.Store
	Signer      report.Signer
	Trust       report.Verifier
	Partners    []Partner
	Subscribers []policy.Subscriber
	Scheme      *marking.Scheme
	Clock       func() time.Time
	Logger      *slog.Logger
	Audit       AuditConfig
}

// Node is one party's node.
type Node struct {
	party       string
	st          *store.Store
	signer      report.Signer
	trust       report.Verifier
	partners    map[string]Partner
	subscribers map[string]policy.Subscriber
	scheme      *marking.Scheme
	clock       func() time.Time
	log         *slog.Logger

	mu     sync.Mutex
	wakeOf map[string]chan struct{} // per partner: closed when its outbox grows
	upOf   map[string]chan struct{} // per partner: closed when its node connects here

	susp   suspensions
	vcache verifyCache
	// received: what receipt checked of reports just stored, for View.
	received receivedChecks
	views    viewMemo
	aud      *auditState
	attempts attempts // a suspended caller's attempts recorded (SuspendedAttempt)
}

// New makes a node from cfg.
func New(cfg Config) (*Node, error) {
	if !marking.ValidParty(cfg.Party) {
		return nil, fmt.Errorf("%w: party %q is not a party code", ErrInvalid, cfg.Party)
	}
	if cfg.Store == nil || cfg.Signer == nil || cfg.Trust == nil {
		return nil, fmt.Errorf("%w: store, signer and trust are required", ErrInvalid)
	}
	n := &Node{
		party: cfg.Party,
		st:    cfg.Store,
		// Statements signed at once (concurrent publishes) share one
		// signature over their batch's Merkle root.
		signer:      report.NewBatchSigner(cfg.Signer),
		trust:       cfg.Trust,
		partners:    make(map[string]Partner),
		subscribers: make(map[string]policy.Subscriber),
		scheme:      cfg.Scheme,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		wakeOf:      make(map[string]chan struct{}),
		upOf:        make(map[string]chan struct{}),
		vcache:      newVerifyCache(),
		views:       newViewMemo(),
		received:    newReceivedChecks(),
	}
	if n.scheme == nil {
		n.scheme = marking.Default
	}
	if n.clock == nil {
		n.clock = time.Now
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	for _, p := range cfg.Partners {
		if p.Party == cfg.Party || !marking.ValidParty(p.Party) {
			return nil, fmt.Errorf("%w: partner %q", ErrInvalid, p.Party)
		}
		if _, dup := n.partners[p.Party]; dup {
			return nil, fmt.Errorf("%w: partner %s listed twice", ErrInvalid, p.Party)
		}
		n.partners[p.Party] = p
		n.wakeOf[p.Party] = make(chan struct{})
		n.upOf[p.Party] = make(chan struct{})
	}
	for _, s := range cfg.Subscribers {
		n.subscribers[s.Name] = s
	}
	if err := n.susp.load(n.st); err != nil {
		return nil, fmt.Errorf("%w: load suspensions: %w", ErrInternal, err)
	}
	n.initAudit(cfg.Audit)
	return n, nil
}

// Party is this node's party code.
func (n *Node) Party() string { return n.party }

// Store is the node's store.
func (n *Node) Store() *store.Store { return n.st }

// Partners returns the partners, sorted by code.
func (n *Node) Partners() []Partner {
	out := make([]Partner, 0, len(n.partners))
	for _, p := range n.partners {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Partner) int { return strings.Compare(a.Party, b.Party) })
	return out
}

// OutboxChanged returns a channel closed the next time party's outbox grows.
func (n *Node) OutboxChanged(party string) <-chan struct{} {
	return n.next(n.wakeOf, party)
}

// wake closes the parties' channels from OutboxChanged. A closed one is
// replaced only when a link asks for it again, not at every wake (one
// channel per report published, before).
func (n *Node) wake(parties []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range parties {
		closeOnce(n.wakeOf[p])
	}
}

// PartnerUp returns a channel closed the next time party's node connects
// to this one (PartnerConnected).
func (n *Node) PartnerUp(party string) <-chan struct{} {
	return n.next(n.upOf, party)
}

// PartnerConnected notes that party's node has opened a federation stream
// to this one, so it is up: the link to it, if waiting out a backoff after
// failing to reach it, tries again at once instead of up to MaxBackoff
// later (a partner that restarts gets its backlog without that wait).
func (n *Node) PartnerConnected(party string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	closeOnce(n.upOf[party])
}

// next returns m's channel for party, replacing it if it was closed (a
// signal closed the last one: the next signal closes this one).
func (n *Node) next(m map[string]chan struct{}, party string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := m[party]
	if !ok || isClosed(ch) {
		ch = make(chan struct{})
		m[party] = ch
	}
	return ch
}

// closeOnce closes ch unless it is nil or closed already.
func closeOnce(ch chan struct{}) {
	if ch != nil && !isClosed(ch) {
		close(ch)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// known reports whether code is this party or a partner.
func (n *Node) known(code string) bool {
	_, ok := n.partners[code]
	return ok || code == n.party
}

// NewPortion is a portion to publish.
type NewPortion struct {
	Banner      string
	Topics      []string
	ContentType string
	Title       string
	Body        []byte
}

// PublishInput is a report to publish.
type PublishInput struct {
	Portions []NewPortion
	Topics   []string
	Route    []policy.RouteEntry
}

// Release is what publishing or sharing decided for one partner.
type Release struct {
	Party   string
	Reasons []policy.Reason
	// Held says why the allowed portions are queued and not sent (the
	// partner is suspended); empty when they are sent.
	Held string

	notified string // the originator, when a hop notice was queued for it
}

// Publish makes, signs and stores a report originated here, and queues for
// each partner the portions the rules release to it, in one commit.
func (n *Node) Publish(ctx context.Context, by pki.Identity, in PublishInput) (string, []Release, error) {
	now := n.clock()
	if len(in.Portions) == 0 {
		return "", nil, fmt.Errorf("%w: a report needs at least one portion with a body", ErrInvalid)
	}
	topics, err := marking.NormalizeTopics(in.Topics)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	draft := report.Draft{Originator: n.party, Created: now, Topics: topics}
	for _, r := range in.Route {
		if _, ok := n.partners[r.Via]; !ok {
			return "", nil, fmt.Errorf("%w: route names %q as relay, which is not a partner of %s", ErrInvalid, r.Via, n.party)
		}
		switch {
		case r.To == r.Via:
			return "", nil, fmt.Errorf("%w: route to %s via %s: a relay route names a partner that relays (--via) to another party (--to); to send to %s directly, name no route", ErrInvalid, r.To, r.Via, r.To)
		case r.To == n.party:
			return "", nil, fmt.Errorf("%w: route to %s via %s: %s is this node's own party", ErrInvalid, r.To, r.Via, r.To)
		case !n.known(r.To):
			return "", nil, fmt.Errorf("%w: route to %q via %s: %q is not a party this node knows", ErrInvalid, r.To, r.Via, r.To)
		}
		draft.Route = append(draft.Route, &reportv1.RouteEntry{Via: r.Via, To: r.To})
	}
	var markings []marking.Marking
	for i, np := range in.Portions {
		m, err := n.scheme.Parse(np.Banner)
		if err != nil {
			return "", nil, fmt.Errorf("%w: portion %d: %w", ErrInvalid, i+1, err)
		}
		for _, p := range m.RelTo {
			if !n.known(p) {
				return "", nil, fmt.Errorf("%w: portion %d: REL TO names %s, which is not a party this node knows (known: %s)", ErrInvalid, i+1, p, strings.Join(n.knownList(), ", "))
			}
		}
		pt := np.Topics
		if len(pt) == 0 {
			pt = topics
		}
		if m.Topics, err = marking.NormalizeTopics(pt); err != nil {
			return "", nil, fmt.Errorf("%w: portion %d: %w", ErrInvalid, i+1, err)
		}
		markings = append(markings, m)
		if len(np.Body) == 0 && np.Title == "" {
			return "", nil, fmt.Errorf("%w: portion %d is empty: give it a body", ErrInvalid, i+1)
		}
		ct := np.ContentType
		if ct == "" {
			ct = "text/plain"
		}
		draft.Portions = append(draft.Portions, &reportv1.Portion{
			Marking: report.MarkingToProto(m), ContentType: ct, Title: np.Title, Body: np.Body,
		})
	}
	h, portions, err := report.Prepare(draft)
	var hst report.Statement
	if err == nil {
		hst, err = report.NewStatement(report.KindHeader, h)
	}
	if err != nil {
		if errors.Is(err, report.ErrInvalid) || errors.Is(err, report.ErrTooLarge) {
			return "", nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return "", nil, fmt.Errorf("%w: seal: %w", ErrInternal, err)
	}
	// The releases are decided on the header as it will be signed, and
	// their hops signed with it, together (below).
	digest := sha256.Sum256(hst.Payload)
	v := &report.Verified{Header: h, Digest: digest[:]}
	held := &storev1.StoredReport{Envelope: &reportv1.Envelope{Portions: portions}}
	// A new report has no grants yet; only this party's crises can apply.
	auth := authorities{signed: map[string]*reportv1.Signed{}}
	if err := n.addCrises(&auth, n.party); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	// A relay passes on only portions releasable to it and to the party it
	// relays to (DESIGN §3: by REL TO or a crisis declaration of this
	// party, rule 5): a route no portion can take would be refused at the
	// relay, where the originator would never hear of it.
	reaches := func(m marking.Marking, x string) bool {
		return m.RelToContains(x) || slices.ContainsFunc(auth.crises, func(c policy.Crisis) bool { return c.Covers(n.scheme, n.party, m, x, now) })
	}
	for _, r := range in.Route {
		if !slices.ContainsFunc(markings, func(m marking.Marking) bool { return !m.NoForn && reaches(m, r.Via) && reaches(m, r.To) }) {
			return "", nil, fmt.Errorf("%w: route to %s via %s: no portion is releasable to both %s and %s (in its REL TO, or under a crisis declaration of %s, and not NOFORN), so %s would relay nothing; add them to a portion's REL TO, or name no route", ErrInvalid, r.To, r.Via, r.Via, r.To, n.party, r.Via)
		}
	}
	// Decide and sign each partner's release before the commit, so that
	// the commit (shared with concurrent publishes) only writes.
	var plans []*releasePlan
	sts := []report.Statement{hst}
	for _, p := range n.Partners() {
		if routedVia(draft.Route, p.Party) != "" {
			continue
		}
		plan, err := n.decideRelease(now, v, held, p.Party, nil, by.String(), auth, true)
		if err != nil {
			return "", nil, fmt.Errorf("%w: %w", ErrInternal, err)
		}
		if plan.hop == nil {
			// Nothing of it goes to p as published (its markings, or
			// the agreement with p): not a denial concerning p
			// (audit.DetailAtPublication).
			plan.ev.Detail = audit.DetailAtPublication
		} else {
			st, err := report.NewStatement(report.KindHop, plan.hop)
			if err != nil {
				return "", nil, fmt.Errorf("%w: hop to %s: %w", ErrInternal, p.Party, err)
			}
			sts = append(sts, st)
		}
		plans = append(plans, plan)
	}
	// The header and its hops in one batch: one signature, which each
	// partner verifies once (at rates where no batch forms by itself, a
	// signature each cost a partner two verifications a report). A
	// partner's proofs hold the hashes of the other partners' hops, salted
	// (report.LeafSaltSize): it cannot test guesses of what they got.
	signed := report.SignTogether(n.signer, sts...)
	held.Envelope.Header = signed[0]
	if v, err = report.OpenOwnHeader(signed[0]); err != nil {
		return "", nil, fmt.Errorf("%w: own header: %w", ErrInternal, err)
	}
	k := 1
	for _, plan := range plans {
		if plan.hop != nil {
			n.completeRelease(plan, held, auth, signed[k])
			k++
		}
	}
	// A caller gone by now (its deadline passed, its stream ended) would
	// never learn the report's id: store nothing rather than a report it
	// may send again.
	if err := ctx.Err(); err != nil {
		return "", nil, fmt.Errorf("publish abandoned before it was stored: %w", ctx.Err())
	}
	var releases []Release
	var woken []string
	err = n.st.Batch(now, func(t *store.Tx) error {
		releases, woken = nil, nil
		if err := t.PutReport(v.Header.GetId(), held); err != nil {
			return err
		}
		if err := t.AddEvent(&storev1.Event{ReportId: v.Header.GetId(), Kind: "published", Subject: by.String(), Party: n.party}); err != nil {
			return err
		}
		for _, p := range n.Partners() {
			if via := routedVia(draft.Route, p.Party); via != "" {
				// Addressed through a relay: the relay forwards it.
				if err := t.AddEvent(&storev1.Event{ReportId: v.Header.GetId(), Kind: "routed", Party: p.Party, Subject: by.String(), Detail: "addressed to " + p.Party + " via " + via}); err != nil {
					return err
				}
			}
		}
		for _, plan := range plans {
			rel, queued, err := n.applyRelease(t, v, plan)
			if err != nil {
				return err
			}
			releases = append(releases, rel)
			if queued {
				woken = append(woken, plan.rel.Party)
			}
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("%w: store: %w", ErrInternal, err)
	}
	n.wake(woken)
	n.log.Info("report published", "report", v.Header.GetId(), "portions", len(portions), "by", by.String())
	return v.Header.GetId(), releases, nil
}

func (n *Node) knownList() []string {
	out := []string{n.party}
	for p := range n.partners {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func policyRoute(h *reportv1.Header) []policy.RouteEntry {
	out := make([]policy.RouteEntry, 0, len(h.GetRoute()))
	for _, r := range h.GetRoute() {
		out = append(out, policy.RouteEntry{Via: r.GetVia(), To: r.GetTo()})
	}
	return out
}

var basisOf = map[policy.Rule]reportv1.Basis{
	policy.RuleOrigin:  reportv1.Basis_BASIS_ORIGIN,
	policy.RuleRelay:   reportv1.Basis_BASIS_RELAY,
	policy.RuleRelTo:   reportv1.Basis_BASIS_REL_TO,
	policy.RuleConsent: reportv1.Basis_BASIS_CONSENT,
	policy.RuleCrisis:  reportv1.Basis_BASIS_CRISIS,
}

var ruleOf = map[reportv1.Basis]policy.Rule{
	reportv1.Basis_BASIS_ORIGIN:  policy.RuleOrigin,
	reportv1.Basis_BASIS_RELAY:   policy.RuleRelay,
	reportv1.Basis_BASIS_REL_TO:  policy.RuleRelTo,
	reportv1.Basis_BASIS_CONSENT: policy.RuleConsent,
	reportv1.Basis_BASIS_CRISIS:  policy.RuleCrisis,
}

// releaseTo decides every held portion (or only the listed ones) of r for
// party X and, if any is allowed, queues an envelope with those portions,
// the hops that brought them here and a new signed hop. It records the
// decision as a provenance event. It runs inside t.
func (n *Node) releaseTo(t *store.Tx, now time.Time, v *report.Verified, held *storev1.StoredReport, to string, only []uint32, subject string, auth authorities, hold bool) (Release, bool, error) {
	p, err := n.planRelease(now, v, held, to, only, subject, auth, hold)
	if err != nil {
		return Release{Party: to}, false, err
	}
	return n.applyRelease(t, v, p)
}

// releasePlan is a release decided and signed, not yet stored.
type releasePlan struct {
	rel     Release
	env     *reportv1.Envelope // nil when no portion is allowed
	hop     *reportv1.Hop      // nil when no portion is allowed
	allowed []*reportv1.Portion
	signed  *reportv1.Signed
	ev      *storev1.Event
	notify  bool // the hop rests on an authority or the route of the originator: it is told (a hop notice)
}

// planRelease decides the portions of held for party `to` and signs the hop
// of those allowed. It touches no store, so that the signing can happen
// outside the commit (Publish plans before its transaction).
func (n *Node) planRelease(now time.Time, v *report.Verified, held *storev1.StoredReport, to string, only []uint32, subject string, auth authorities, hold bool) (*releasePlan, error) {
	p, err := n.decideRelease(now, v, held, to, only, subject, auth, hold)
	if err != nil || p.hop == nil {
		return p, err
	}
	sh, err := report.SignHop(p.hop, n.signer)
	if err != nil {
		return nil, err
	}
	n.completeRelease(p, held, auth, sh)
	return p, nil
}

// decideRelease is planRelease up to the signature: the decisions, the
// event, and the hop of the portions allowed (none if none is).
func (n *Node) decideRelease(now time.Time, v *report.Verified, held *storev1.StoredReport, to string, only []uint32, subject string, auth authorities, hold bool) (*releasePlan, error) {
	p := &releasePlan{rel: Release{Party: to}}
	// A suspended partner is denied (rule 1), except that what the
	// originator publishes meanwhile is queued and held: the link delivers
	// it, in order, after reinstatement (DESIGN §2, suspension).
	suspended := n.PartnerSuspended(to)
	if hold && suspended {
		suspended = false
	}
	partner := n.partners[to]
	var allowed []*reportv1.Portion
	hop := &reportv1.Hop{
		ReportId: v.Header.GetId(), HeaderDigest: v.Digest, From: n.party, To: to, Sent: timestamppb.New(now),
	}
	for _, pt := range held.GetEnvelope().GetPortions() {
		if len(only) > 0 && !slices.Contains(only, pt.GetIndex()) {
			continue
		}
		m, err := report.MarkingFromProto(pt.GetMarking())
		if err != nil {
			return nil, fmt.Errorf("held portion %d: %w", pt.GetIndex(), err)
		}
		r := policy.Release(policy.ReleaseInput{
			Scheme: n.scheme, Now: now,
			ReportID: v.Header.GetId(), Originator: v.Header.GetOriginator(), Holder: n.party, To: to,
			Portion:   policy.Portion{Index: pt.GetIndex(), Marking: m},
			Suspended: suspended,
			Agreement: partner.Agreement,
			Route:     policyRoute(v.Header),
			Consents:  auth.consents,
			Crises:    auth.crises,
		})
		p.rel.Reasons = append(p.rel.Reasons, r)
		if r.Allowed {
			allowed = append(allowed, pt)
			hop.Portions = append(hop.Portions, &reportv1.PortionRelease{Index: pt.GetIndex(), Basis: basisOf[r.Rule], AuthorityId: r.Authority})
		}
	}
	p.ev = &storev1.Event{ReportId: v.Header.GetId(), Party: to, Subject: subject, Decisions: decisionsProto(p.rel.Reasons)}
	if len(allowed) == 0 {
		p.ev.Kind = "refused"
		return p, nil
	}
	p.hop, p.allowed = hop, allowed
	return p, nil
}

// completeRelease completes a release that decideRelease planned with its
// hop signed (sh): the envelope for the party, and whether the originator
// is told.
func (n *Node) completeRelease(p *releasePlan, held *storev1.StoredReport, auth authorities, sh *reportv1.Signed) {
	hops, named := hopsCarrying(held.GetEnvelope().GetHops(), p.allowed)
	p.signed = sh
	p.env = &reportv1.Envelope{
		Header:      held.GetEnvelope().GetHeader(),
		Portions:    p.allowed,
		Hops:        append(hops, sh),
		Authorities: authoritiesNamed(held.GetEnvelope().GetAuthorities(), named),
	}
	for _, pr := range p.hop.GetPortions() {
		if pr.GetBasis() == reportv1.Basis_BASIS_RELAY {
			p.notify = true // on the originator's own route: it hears where the report went
			continue
		}
		if pr.GetAuthorityId() == "" {
			continue
		}
		p.notify = true
		if sd, ok := auth.signed[pr.GetAuthorityId()]; ok {
			p.env.Authorities = mergeSigned(p.env.Authorities, []*reportv1.Signed{sd})
		}
	}
}

// applyRelease stores a planned release inside t: the provenance event
// and, if any portion is allowed, the queued envelope, a crisis release
// record and a hop notice to the originator. It may run more than once
// (a group commit retried).
func (n *Node) applyRelease(t *store.Tx, v *report.Verified, p *releasePlan) (Release, bool, error) {
	rel := p.rel
	rel.notified = ""
	ev := proto.CloneOf(p.ev)
	if p.env == nil {
		return rel, false, t.AddEvent(ev)
	}
	to := p.rel.Party
	for _, pr := range p.hop.GetPortions() {
		if pr.GetBasis() == reportv1.Basis_BASIS_CRISIS && n.party == v.Header.GetOriginator() {
			if err := t.AddCrisisRelease(&storev1.CrisisRelease{CrisisId: pr.GetAuthorityId(), ReportId: v.Header.GetId(), Portion: pr.GetIndex(), From: n.party, To: to, Time: p.hop.GetSent()}); err != nil {
				return rel, false, err
			}
		}
	}
	if err := t.Enqueue(to, &storev1.OutboxItem{ReportId: v.Header.GetId(), Envelope: p.env}); err != nil {
		return rel, false, err
	}
	// A release on the originator's consent or crisis declaration is
	// reported back to the originator, for its provenance and crisis review.
	if o := v.Header.GetOriginator(); p.notify && o != n.party {
		if _, ok := n.partners[o]; ok {
			if err := n.enqueueRequest(t, o, v.Header.GetId(), &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_HopNotice{HopNotice: &federationv1.HopNotice{ReportId: v.Header.GetId(), Hop: p.signed}}}); err != nil {
				return rel, false, err
			}
			rel.notified = o
		}
	}
	ev.Kind = "released"
	if n.PartnerSuspended(to) {
		ev.Kind, ev.Detail = "held", to+" is suspended: queued, delivered after reinstatement"
		rel.Held = ev.Detail
	}
	return rel, true, t.AddEvent(ev)
}

// DecisionProto converts a policy reason for the wire.
func DecisionProto(r policy.Reason) *reportv1.Decision {
	return &reportv1.Decision{
		Index: r.Index, Allowed: r.Allowed, Rule: string(r.Rule), Banner: r.Banner,
		Party: r.Party, Message: r.Message, Next: r.Next, Authority: r.Authority,
	}
}

func decisionsProto(rs []policy.Reason) []*reportv1.Decision {
	out := make([]*reportv1.Decision, len(rs))
	for i, r := range rs {
		out[i] = DecisionProto(r)
	}
	return out
}

// Share forwards a held report to a partner with the portions the rules
// allow. When none is allowed it returns a *DeniedError with every reason.
// A share back to the report's originator is refused as a whole, before
// any portion is decided (policy.BackToOriginator): the originator holds
// every portion already. Like any refused share it is recorded as a
// "refused" provenance event; nothing is queued.
func (n *Node) Share(ctx context.Context, by pki.Identity, id, to string, only []uint32) ([]policy.Reason, error) {
	now := n.clock()
	if to == n.party {
		return nil, fmt.Errorf("%w: %s is this node's own party", ErrInvalid, to)
	}
	if _, ok := n.partners[to]; !ok {
		return nil, fmt.Errorf("%w: %q is not a partner of %s (partners: %s)", ErrInvalid, to, n.party, strings.Join(n.partnerList(), ", "))
	}
	var reasons []policy.Reason
	var queued, back bool
	var notified string
	_, hv, err := n.heldReport(id)
	if err != nil {
		return nil, err
	}
	auth, err := n.loadAuthorities(id, hv.Header.GetOriginator())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	err = n.st.Update(now, func(t *store.Tx) error {
		held, err := t.Report(id)
		if errors.Is(err, store.ErrNotFound) {
			return notHeld(id)
		}
		if err != nil {
			return err
		}
		if w := held.GetWithdrawn(); w != nil {
			return withdrawnDenial(id, w, to)
		}
		for _, ix := range only {
			if !slices.ContainsFunc(held.GetEnvelope().GetPortions(), func(p *reportv1.Portion) bool { return p.GetIndex() == ix }) {
				return fmt.Errorf("%w: portion %d of %s is not held here", ErrInvalid, ix, id)
			}
		}
		// The header is immutable: the one verified above is this one.
		if o := hv.Header.GetOriginator(); to == o {
			reasons, back = []policy.Reason{policy.BackToOriginator(id, o, n.party)}, true
			return t.AddEvent(&storev1.Event{ReportId: id, Kind: "refused", Party: to, Subject: by.String(), Decisions: decisionsProto(reasons)})
		}
		rel, q, err := n.releaseTo(t, now, hv, held, to, only, by.String(), auth, false)
		reasons, queued, notified = rel.Reasons, q, rel.notified
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrDenied) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: share: %w", ErrInternal, err)
	}
	if back {
		return nil, &DeniedError{Reasons: reasons}
	}
	if !queued {
		return reasons, &DeniedError{Reasons: denials(reasons)}
	}
	n.wake([]string{to, notified})
	return reasons, nil
}

func denials(rs []policy.Reason) []policy.Reason {
	var out []policy.Reason
	for _, r := range rs {
		if !r.Allowed {
			out = append(out, r)
		}
	}
	return out
}

func (n *Node) partnerList() []string {
	out := make([]string, 0, len(n.partners))
	for p := range n.partners {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Outcome of a receipt.
type Outcome int

// Outcomes.
const (
	Accepted Outcome = iota + 1
	Duplicate
	Rejected
)

// Receipt is one envelope for ReceiveBatch and, after it, the outcome.
type Receipt struct {
	Envelope *reportv1.Envelope
	Outcome  Outcome
	Reason   policy.Reason
}

// Receive checks an envelope that the node of party `from` sent here
// (DESIGN §3, "Receipt") and, if every portion passes, stores it. The
// returned error is non-nil only when the store failed: the sender must not
// take the envelope as acknowledged then.
func (n *Node) Receive(ctx context.Context, from pki.Identity, env *reportv1.Envelope) (Outcome, policy.Reason, error) {
	rs := []Receipt{{Envelope: env}}
	if err := n.ReceiveBatch(ctx, from, rs); err != nil {
		return 0, policy.Reason{}, err
	}
	return rs[0].Outcome, rs[0].Reason, nil
}

// receiptPlan is what ReceiveBatch works out for one envelope before its
// transaction.
type receiptPlan struct {
	v       *report.Verified
	hops    []*report.VerifiedHop // the envelope's, as check verified them
	relayTo []string
	auth    authorities
}

// ReceiveBatch receives envelopes sent here by `from`, in order, as Receive
// does each: it checks them (on every core) and stores them all, accepted
// and quarantined, in one commit. On error nothing is stored and none may
// be acknowledged.
func (n *Node) ReceiveBatch(ctx context.Context, from pki.Identity, rs []Receipt) error {
	now := n.clock()
	plans := make([]receiptPlan, len(rs))
	errs := make([]error, len(rs))
	parallel(len(rs), func(i int) {
		rs[i].Reason, plans[i].v, plans[i].hops, errs[i] = n.check(now, from.Party, rs[i].Envelope)
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range rs {
		r, p := &rs[i], &plans[i]
		if !r.Reason.Allowed {
			n.log.Warn("envelope rejected", "sender", from.Party, "rule", string(r.Reason.Rule), "reason", r.Reason.Message)
			continue
		}
		// A relay named by the originator's route forwards at once.
		for _, rt := range p.v.Header.GetRoute() {
			if _, ok := n.partners[rt.GetTo()]; ok && rt.GetVia() == n.party && rt.GetTo() != from.Party && !slices.Contains(p.relayTo, rt.GetTo()) {
				p.relayTo = append(p.relayTo, rt.GetTo())
			}
		}
		if len(p.relayTo) > 0 {
			var err error
			if p.auth, err = n.loadAuthorities(p.v.Header.GetId(), p.v.Header.GetOriginator()); err != nil {
				return fmt.Errorf("%w: %w", ErrInternal, err)
			}
		}
	}
	var woken []string
	err := n.st.Batch(now, func(t *store.Tx) error {
		woken = woken[:0]
		for i := range rs {
			r, p := &rs[i], &plans[i]
			if !r.Reason.Allowed {
				r.Outcome = Rejected
				if err := n.quarantine(t, from.Party, r.Envelope, r.Reason, p.v); err != nil {
					return err
				}
				continue
			}
			outcome, w, err := n.storeReceipt(t, now, from.Party, r.Envelope, r.Reason, *p)
			if err != nil {
				return err
			}
			r.Outcome = outcome
			woken = append(woken, w...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: store receipt: %w", ErrInternal, err)
	}
	n.wake(woken)
	return nil
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// quarantine keeps a refused envelope as evidence, with a security event
// naming the sender and, when the header verified, a provenance event.
func (n *Node) quarantine(t *store.Tx, from string, env *reportv1.Envelope, reason policy.Reason, v *report.Verified) error {
	var reportID string
	if v != nil {
		reportID = v.Header.GetId()
	}
	if err := t.Quarantine(&storev1.QuarantineItem{Sender: from, Rule: string(reason.Rule), Message: reason.Message, Envelope: env}); err != nil {
		return err
	}
	if err := t.AddSecurityEvent(&storev1.SecurityEvent{
		Kind: "rejected-envelope", Partner: from, Rule: string(reason.Rule), Message: reason.Message,
		ReportId: reportID, QuarantineSeq: t.QuarantineSeq(),
	}); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return t.AddEvent(&storev1.Event{ReportId: reportID, Kind: "rejected", Party: from, Decisions: []*reportv1.Decision{DecisionProto(reason)}})
}

// storeReceipt stores an envelope that passed the receipt checks, unless it
// was received before, and relays it where the originator's route says.
// It returns the outcome and the partners whose outboxes grew.
func (n *Node) storeReceipt(t *store.Tx, now time.Time, from string, env *reportv1.Envelope, reason policy.Reason, p receiptPlan) (Outcome, []string, error) {
	hops := env.GetHops()
	last := sha256.Sum256(hops[len(hops)-1].GetPayload())
	id := p.v.Header.GetId()
	if t.SeenReceipt(id, last[:]) {
		return Duplicate, nil, nil
	}
	held, err := t.Report(id)
	fresh := false
	switch {
	case errors.Is(err, store.ErrNotFound):
		if wr, werr := t.Withdrawal(id); werr == nil && withdrawnBy(wr) == p.v.Header.GetOriginator() {
			// Withdrawn by its originator before it arrived here: not
			// stored. A withdrawal signed by another party (any party may
			// sign one for an id it names) does not count.
			return Duplicate, nil, t.MarkReceipt(id, last[:])
		}
		held = &storev1.StoredReport{Envelope: &reportv1.Envelope{Header: env.GetHeader()}, ReceivedFrom: from}
		fresh = true
	case err != nil:
		return 0, nil, err
	case held.GetWithdrawn() != nil:
		// A tombstone takes no new content and is never relayed.
		return Duplicate, nil, t.MarkReceipt(id, last[:])
	default:
		held = proto.CloneOf(held)
	}
	merge(held.Envelope, env)
	if err := t.PutReport(id, held); err != nil {
		return 0, nil, err
	}
	if fresh {
		// Made of env alone, which check verified: View need not again.
		n.received.put(held, env, p.v, p.hops)
	}
	if err := t.MarkReceipt(id, last[:]); err != nil {
		return 0, nil, err
	}
	if err := t.AddEvent(&storev1.Event{ReportId: id, Kind: "received", Party: from, Decisions: []*reportv1.Decision{DecisionProto(reason)}}); err != nil {
		return 0, nil, err
	}
	var woken []string
	for _, to := range p.relayTo {
		rel, queued, err := n.releaseTo(t, now, p.v, held, to, nil, "relay named by "+p.v.Header.GetOriginator()+"'s route", p.auth, true)
		if err != nil {
			return 0, nil, err
		}
		if queued {
			woken = append(woken, to, rel.notified)
		}
	}
	return Accepted, woken, nil
}

// merge adds to held what env brings that held lacks: portions, hops and
// authorities (compared by their signed bytes).
func merge(held, env *reportv1.Envelope) {
	for _, p := range env.GetPortions() {
		if !slices.ContainsFunc(held.Portions, func(h *reportv1.Portion) bool { return h.GetIndex() == p.GetIndex() }) {
			held.Portions = append(held.Portions, p)
		}
	}
	slices.SortFunc(held.Portions, func(a, b *reportv1.Portion) int { return int(a.GetIndex()) - int(b.GetIndex()) })
	held.Hops = mergeSigned(held.Hops, env.GetHops())
	held.Authorities = mergeSigned(held.Authorities, env.GetAuthorities())
}

func mergeSigned(have, add []*reportv1.Signed) []*reportv1.Signed {
	for _, s := range add {
		if !slices.ContainsFunc(have, func(h *reportv1.Signed) bool { return string(h.GetPayload()) == string(s.GetPayload()) }) {
			have = append(have, s)
		}
	}
	return have
}

// check verifies env as received from party `from`. It returns the first
// failing reason, or an allowing reason for the whole envelope with each of
// env's hops as it verified (in env's order).
func (n *Node) check(now time.Time, from string, env *reportv1.Envelope) (policy.Reason, *report.Verified, []*report.VerifiedHop, error) {
	deny := func(rule policy.Rule, format string, args ...any) policy.Reason {
		return policy.Reason{Rule: rule, Party: n.party, Message: fmt.Sprintf(format, args...), Next: "none: the envelope is kept in quarantine as evidence against " + from}
	}
	p, ok := n.partners[from]
	if !ok {
		return deny(policy.RuleNoAgreement, "%s is not a partner of %s", from, n.party), nil, nil, nil
	}
	v, err := report.OpenHeader(env.GetHeader(), n.trust)
	if err != nil {
		if rule := reportRule(err); rule != policy.RuleBadSignature {
			return deny(rule, "the originator's header is malformed or over a limit: %v", err), nil, nil, nil
		}
		return deny(policy.RuleBadSignature, "the originator's signature does not verify: %v", err), nil, nil, nil
	}
	n.vcache.putHeader(env.GetHeader(), v)
	if v.Header.GetOriginator() == n.party {
		// A report of our own coming back: we hold it already as originator.
		return deny(policy.RuleBadChain, "%s sent back a report that %s originated", from, n.party), v, nil, nil
	}
	if len(env.GetPortions()) == 0 {
		return deny(policy.RuleBadChain, "the envelope from %s carries no portion", from), v, nil, nil
	}
	if err := report.CheckAgainstHeader(v.Header, env.GetPortions()); err != nil {
		return deny(reportRule(err), "%v", err), v, nil, nil
	}
	if len(env.GetHops()) == 0 {
		return deny(policy.RuleBadChain, "the envelope from %s carries no hop", from), v, nil, nil
	}
	if len(env.GetHops()) > maxEnvelopeHops {
		return deny(policy.RuleBadInput, "the envelope from %s carries %d hops; the limit is %d", from, len(env.GetHops()), maxEnvelopeHops), v, nil, nil
	}
	if len(env.GetAuthorities()) > report.MaxAuthorities {
		return deny(policy.RuleBadInput, "the envelope from %s carries %d consent grants and crisis declarations; the limit is %d", from, len(env.GetAuthorities()), report.MaxAuthorities), v, nil, nil
	}
	consents, crises, err := n.envelopeAuthorities(env, v.Header.GetOriginator())
	if err != nil {
		return deny(reportRule(err), "%v", err), v, nil, nil
	}
	var facts []hopFact
	hops := make([]*report.VerifiedHop, 0, len(env.GetHops()))
	for _, sh := range env.GetHops() {
		h, err := report.OpenHop(sh, v.Digest, v.Header.GetId(), n.trust)
		if err != nil {
			return deny(policy.RuleBadChain, "a hop does not verify: %v", err), v, nil, nil
		}
		n.vcache.putHop(sh, v.Digest, v.Header.GetId(), h)
		facts = append(facts, hopFact{h.Hop})
		hops = append(hops, h)
	}
	lastHop := facts[len(facts)-1].hop
	if lastHop.GetFrom() != from || lastHop.GetTo() != n.party {
		return deny(policy.RuleBadChain, "the last hop is %s -> %s but the envelope came from %s to %s", lastHop.GetFrom(), lastHop.GetTo(), from, n.party), v, nil, nil
	}
	for _, pt := range env.GetPortions() {
		m, err := report.MarkingFromProto(pt.GetMarking())
		if err != nil {
			return deny(policy.RuleBadSignature, "portion %d: %v", pt.GetIndex(), err), v, nil, nil
		}
		r := policy.Receipt(policy.ReceiptInput{
			Scheme: n.scheme, Now: now,
			ReportID: v.Header.GetId(), Originator: v.Header.GetOriginator(), Recipient: n.party, Sender: from,
			SenderSuspended: n.PartnerSuspended(from),
			Agreement:       p.Agreement,
			Portion:         policy.Portion{Index: pt.GetIndex(), Marking: m},
			Route:           policyRoute(v.Header),
			Chain:           chainFor(facts, pt.GetIndex(), v.Header.GetOriginator()),
			Consents:        consents,
			Crises:          crises,
		})
		if !r.Allowed {
			return r, v, nil, nil
		}
	}
	return policy.Reason{Allowed: true, Rule: "receipt", Party: n.party, Message: fmt.Sprintf("received from %s: every portion verified against %s's signature and every hop has a basis", from, v.Header.GetOriginator())}, v, hops, nil
}

// maxEnvelopeHops bounds the hops of one envelope: a chain of at most
// report.MaxHops hops for each portion.
const maxEnvelopeHops = report.MaxHops * report.MaxPortions

// reportRule is the rule of a refusal by node/report: a signature or digest
// that does not verify is bad-signature; a statement or portion that is
// malformed or over a limit is bad-input.
func reportRule(err error) policy.Rule {
	if errors.Is(err, report.ErrSignature) || errors.Is(err, report.ErrDigest) {
		return policy.RuleBadSignature
	}
	return policy.RuleBadInput
}

type hopFact struct{ hop *reportv1.Hop }

func (h hopFact) carries(ix uint32) (*reportv1.PortionRelease, bool) {
	for _, pr := range h.hop.GetPortions() {
		if pr.GetIndex() == ix {
			return pr, true
		}
	}
	return nil, false
}

// chainFor finds the hops that carried portion ix here: from the last hop
// back, each step a hop to the previous one's sender that carried ix, until
// the originator. The policy checks the result (an incomplete chain does
// not start at the originator and is refused there).
func chainFor(facts []hopFact, ix uint32, originator string) []policy.HopFact {
	var rev []policy.HopFact
	used := make([]bool, len(facts))
	cur := len(facts) - 1
	for steps := 0; cur >= 0 && steps <= report.MaxHops; steps++ {
		used[cur] = true
		h := facts[cur]
		pr, ok := h.carries(ix)
		if !ok {
			break
		}
		rev = append(rev, policy.HopFact{
			From: h.hop.GetFrom(), To: h.hop.GetTo(), Sent: h.hop.GetSent().AsTime(),
			Basis: ruleOf[pr.GetBasis()], Authority: pr.GetAuthorityId(),
		})
		if h.hop.GetFrom() == originator {
			break
		}
		next := -1
		for i, f := range facts {
			if !used[i] && f.hop.GetTo() == h.hop.GetFrom() {
				if _, ok := f.carries(ix); ok {
					next = i
					break
				}
			}
		}
		cur = next
	}
	slices.Reverse(rev)
	return rev
}

// hopsCarrying keeps the held hop statements that carried at least one of
// the portions being released: the recipient needs them to check each
// portion's chain, and learns nothing of hops that concern only others. It
// also returns the grant and declaration ids those hops rest on.
func hopsCarrying(hops []*reportv1.Signed, ps []*reportv1.Portion) ([]*reportv1.Signed, map[string]bool) {
	var out []*reportv1.Signed
	named := map[string]bool{}
	for _, sh := range hops {
		h := &reportv1.Hop{}
		if proto.Unmarshal(sh.GetPayload(), h) != nil {
			continue
		}
		if !slices.ContainsFunc(h.GetPortions(), func(pr *reportv1.PortionRelease) bool {
			return slices.ContainsFunc(ps, func(p *reportv1.Portion) bool { return p.GetIndex() == pr.GetIndex() })
		}) {
			continue
		}
		out = append(out, sh)
		for _, pr := range h.GetPortions() {
			if pr.GetAuthorityId() != "" {
				named[pr.GetAuthorityId()] = true
			}
		}
	}
	return out, named
}

// routedVia returns the relay the route names for party to, or "".
func routedVia(route []*reportv1.RouteEntry, to string) string {
	for _, r := range route {
		if r.GetTo() == to {
			return r.GetVia()
		}
	}
	return ""
}

// authoritiesNamed keeps the held grants and declarations whose ids are
// named (by the hops passed on), and no others: a grant for another party,
// with its purpose, is not passed on.
func authoritiesNamed(held []*reportv1.Signed, named map[string]bool) []*reportv1.Signed {
	var out []*reportv1.Signed
	for _, sd := range held {
		var id string
		switch sd.GetKind() {
		case report.KindGrant:
			g := &reportv1.ConsentGrant{}
			if proto.Unmarshal(sd.GetPayload(), g) == nil {
				id = g.GetId()
			}
		case report.KindCrisis:
			c := &reportv1.CrisisDeclaration{}
			if proto.Unmarshal(sd.GetPayload(), c) == nil {
				id = c.GetId()
			}
		}
		if id != "" && named[id] {
			out = append(out, sd)
		}
	}
	return out
}
