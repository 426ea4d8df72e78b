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

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// CrisisInput is a crisis declaration to make.
type CrisisInput struct {
	Topics  []string
	Parties []string
	Max     string
	For     time.Duration
	Reason  string
}

// CrisisState is a declaration as this node knows it.
type CrisisState struct {
	Declaration *reportv1.CrisisDeclaration
	State       string // active, ended, expired
	Ended       *timestamppb.Timestamp
}

// DeclareCrisis signs a crisis declaration of this party and sends it to
// the parties it names and to every partner that holds a matching report
// of this party.
func (n *Node) DeclareCrisis(ctx context.Context, by pki.Identity, in CrisisInput) (*CrisisState, []string, error) {
	now := n.clock()
	topics, err := marking.NormalizeTopics(in.Topics)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(topics) == 0 {
		return nil, nil, fmt.Errorf("%w: a crisis declaration needs at least one topic (--topics)", ErrInvalid)
	}
	if len(in.Parties) == 0 {
		return nil, nil, fmt.Errorf("%w: a crisis declaration needs at least one party (--parties)", ErrInvalid)
	}
	parties := slices.Clone(in.Parties)
	slices.Sort(parties)
	parties = slices.Compact(parties)
	for _, p := range parties {
		if _, ok := n.partners[p]; !ok {
			return nil, nil, fmt.Errorf("%w: %q is not a partner of %s (partners: %s)", ErrInvalid, p, n.party, strings.Join(n.partnerList(), ", "))
		}
	}
	if _, ok := n.scheme.Rank(in.Max); !ok {
		return nil, nil, fmt.Errorf("%w: --max %q is not one of %s", ErrInvalid, in.Max, strings.Join(n.scheme.Levels(), ", "))
	}
	if in.For <= 0 || in.For > MaxCrisis {
		return nil, nil, fmt.Errorf("%w: --for %s: a crisis declaration lasts more than 0 and at most %s", ErrInvalid, in.For, MaxCrisis)
	}
	if strings.TrimSpace(in.Reason) == "" || len(in.Reason) > maxPurpose {
		return nil, nil, fmt.Errorf("%w: give the reason for the declaration (--reason, at most %d bytes)", ErrInvalid, maxPurpose)
	}
	if err := freeText("the reason (--reason)", in.Reason); err != nil {
		return nil, nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	d := &reportv1.CrisisDeclaration{
		Id: id.String(), Originator: n.party, Topics: topics, Parties: parties, MaxClassification: in.Max,
		Issued: timestamppb.New(now), Expires: timestamppb.New(now.Add(in.For)), Reason: in.Reason,
	}
	sd, err := report.SignStatement(report.KindCrisis, d, n.signer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	holders, err := n.holdersOfMatching(topics)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	sendTo := slices.Clone(parties)
	for _, h := range holders {
		if !slices.Contains(sendTo, h) {
			sendTo = append(sendTo, h)
		}
	}
	slices.Sort(sendTo)
	if err := n.st.Update(now, func(t *store.Tx) error {
		if err := t.PutCrisis(d.GetId(), &storev1.CrisisRecord{Declaration: sd}); err != nil {
			return err
		}
		for _, p := range sendTo {
			if err := n.enqueueRequest(t, p, "", &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Crisis{Crisis: sd}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	n.wake(sendTo)
	n.log.Warn("crisis declared", "crisis", d.GetId(), "topics", strings.Join(topics, ","), "parties", strings.Join(parties, ","), "max", in.Max, "expires", d.GetExpires().AsTime(), "by", by.String())
	return &CrisisState{Declaration: d, State: "active"}, sendTo, nil
}

// holdersOfMatching returns the partners to which this node released a
// report of its own with a topic among topics.
func (n *Node) holdersOfMatching(topics []string) ([]string, error) {
	var out []string
	var after uint64
	for {
		es, err := n.st.Feed(after, 512)
		if err != nil {
			return nil, err
		}
		if len(es) == 0 {
			return out, nil
		}
		for _, e := range es {
			after = e.Seq
			if e.Report.GetReceivedFrom() != "" {
				continue
			}
			v, err := report.OpenHeader(e.Report.GetEnvelope().GetHeader(), n.trust)
			if err != nil || !slices.ContainsFunc(v.Header.GetTopics(), func(t string) bool { return slices.Contains(topics, t) }) {
				continue
			}
			evs, err := n.st.Events(v.Header.GetId())
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				if (ev.GetKind() == "released" || ev.GetKind() == "onward-release") && ev.GetParty() != "" && !slices.Contains(out, ev.GetParty()) {
					if _, ok := n.partners[ev.GetParty()]; ok {
						out = append(out, ev.GetParty())
					}
				}
			}
		}
	}
}

// EndCrisis ends one of this party's declarations: a signed end notice goes
// to everyone the declaration went to.
func (n *Node) EndCrisis(ctx context.Context, by pki.Identity, id string) (*CrisisState, error) {
	now := n.clock()
	var state *CrisisState
	var sendTo []string
	// The holders are found before the write transaction: bbolt must not
	// have a read and a write transaction open in one goroutine.
	var holders []string
	_ = n.st.View(func(t *store.Tx) error {
		if rec, err := t.Crisis(id); err == nil {
			if d, _, err := report.OpenCrisis(rec.GetDeclaration(), n.trust); err == nil {
				holders = d.GetTopics()
			}
		}
		return nil
	})
	holders, err := n.holdersOfMatching(holders)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	err = n.st.Update(now, func(t *store.Tx) error {
		rec, err := t.Crisis(id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no crisis declaration %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		d, _, err := report.OpenCrisis(rec.GetDeclaration(), n.trust)
		if err != nil {
			return fmt.Errorf("stored declaration does not verify: %w", err)
		}
		if d.GetOriginator() != n.party {
			return fmt.Errorf("%w: declaration %s is %s's; only %s can end it", ErrInvalid, id, d.GetOriginator(), d.GetOriginator())
		}
		if rec.GetEnd() != nil {
			return fmt.Errorf("%w: declaration %s has already ended", ErrInvalid, id)
		}
		end := proto.CloneOf(d)
		end.Ended, end.Issued = true, timestamppb.New(now)
		sd, err := report.SignStatement(report.KindCrisis, end, n.signer)
		if err != nil {
			return err
		}
		rec = proto.CloneOf(rec)
		rec.End = sd
		if err := t.PutCrisis(id, rec); err != nil {
			return err
		}
		sendTo = slices.Clone(d.GetParties())
		for _, h := range holders {
			if !slices.Contains(sendTo, h) {
				sendTo = append(sendTo, h)
			}
		}
		for _, p := range sendTo {
			if err := n.enqueueRequest(t, p, "", &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Crisis{Crisis: sd}}); err != nil {
				return err
			}
		}
		state = &CrisisState{Declaration: d, State: "ended", Ended: end.GetIssued()}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	n.wake(sendTo)
	n.log.Warn("crisis ended", "crisis", id, "by", by.String())
	return state, nil
}

// Crises lists the declarations this node knows.
func (n *Node) Crises(ctx context.Context) ([]*CrisisState, error) {
	recs, err := n.st.Crises()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	now := n.clock()
	var out []*CrisisState
	for _, r := range recs {
		if s := n.crisisState(r, now); s != nil {
			out = append(out, s)
		}
	}
	return out, nil
}

func (n *Node) crisisState(r *storev1.CrisisRecord, now time.Time) *CrisisState {
	d, _, err := report.OpenCrisis(r.GetDeclaration(), n.trust)
	if err != nil {
		return nil
	}
	s := &CrisisState{Declaration: d, State: "active"}
	if r.GetEnd() != nil {
		if e, _, err := report.OpenCrisis(r.GetEnd(), n.trust); err == nil {
			s.State, s.Ended = "ended", e.GetIssued()
		}
	} else if !now.Before(d.GetExpires().AsTime()) {
		s.State = "expired"
	}
	return s
}

// CrisisReleaseView is one release under a declaration, with what the
// normal rules would have decided.
type CrisisReleaseView struct {
	Release *storev1.CrisisRelease
	Normal  policy.Reason
}

// ReviewCrisis is the post-crisis review of one of this party's
// declarations: every release made under it (by this node, and by holders,
// who report their hops back), and what the normal rules would have decided.
// The normal decision is taken with the markings only (an agreement in
// force is assumed, since the release happened under one).
func (n *Node) ReviewCrisis(ctx context.Context, id string) (*CrisisState, []CrisisReleaseView, error) {
	var rec *storev1.CrisisRecord
	err := n.st.View(func(t *store.Tx) error {
		var err error
		rec, err = t.Crisis(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: no crisis declaration %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	state := n.crisisState(rec, n.clock())
	if state == nil {
		return nil, nil, fmt.Errorf("%w: stored declaration %s does not verify", ErrInternal, id)
	}
	if state.Declaration.GetOriginator() != n.party {
		return nil, nil, fmt.Errorf("%w: declaration %s is %s's; its review is at %s", ErrInvalid, id, state.Declaration.GetOriginator(), state.Declaration.GetOriginator())
	}
	rels, err := n.st.CrisisReleases(id)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	top := n.scheme.Levels()[len(n.scheme.Levels())-1]
	var out []CrisisReleaseView
	for _, r := range rels {
		v := CrisisReleaseView{Release: r}
		if held, err := n.st.Report(r.GetReportId()); err == nil {
			hv, herr := report.OpenHeader(held.GetEnvelope().GetHeader(), n.trust)
			for _, p := range held.GetEnvelope().GetPortions() {
				if p.GetIndex() != r.GetPortion() || herr != nil {
					continue
				}
				m, err := report.MarkingFromProto(p.GetMarking())
				if err != nil {
					continue
				}
				v.Normal = policy.Release(policy.ReleaseInput{
					Scheme: n.scheme, Now: r.GetTime().AsTime(),
					ReportID: r.GetReportId(), Originator: n.party, Holder: r.GetFrom(), To: r.GetTo(),
					Portion:   policy.Portion{Index: p.GetIndex(), Marking: m},
					Agreement: &policy.Agreement{Partner: r.GetTo(), MaxClassification: top, ValidUntil: r.GetTime().AsTime().Add(time.Hour)},
					Route:     policyRoute(hv.Header),
				})
			}
		}
		out = append(out, v)
	}
	return state, out, nil
}

// AgreementState is a partner's agreement and its state now.
type AgreementState struct {
	Partner   string
	Agreement *policy.Agreement
	State     string // active, expired, not-yet-valid, none
	ReviewDue bool
}

// Agreements lists each partner's agreement and its state.
func (n *Node) Agreements() []AgreementState {
	now := n.clock()
	var out []AgreementState
	for _, p := range n.Partners() {
		s := AgreementState{Partner: p.Party, Agreement: p.Agreement, State: "none"}
		if a := p.Agreement; a != nil {
			switch {
			case a.Active(now):
				s.State = "active"
			case !a.ValidFrom.IsZero() && now.Before(a.ValidFrom):
				s.State = "not-yet-valid"
			default:
				s.State = "expired"
			}
			s.ReviewDue = !a.ReviewDate.IsZero() && !now.Before(a.ReviewDate)
		}
		out = append(out, s)
	}
	return out
}

// SecurityEvents lists the security events, oldest first.
func (n *Node) SecurityEvents(ctx context.Context) ([]*storev1.SecurityEvent, error) {
	es, err := n.st.SecurityEvents()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return es, nil
}
