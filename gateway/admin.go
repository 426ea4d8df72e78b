package gateway

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// adminService serves the party's officers and security team.
type adminService struct {
	adminv1.UnimplementedAdminServiceServer
	node  *node.Node
	log   *slog.Logger
	fetch node.DigestFetcher
}

func tsOrNil(t interface{ IsZero() bool }, ts *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return ts
}

func (s *adminService) ListAgreements(ctx context.Context, _ *adminv1.ListAgreementsRequest) (*adminv1.ListAgreementsResponse, error) {
	resp := &adminv1.ListAgreementsResponse{}
	for _, a := range s.node.Agreements() {
		out := &adminv1.Agreement{Partner: a.Partner, State: a.State, ReviewDue: a.ReviewDue}
		if g := a.Agreement; g != nil {
			out.MaxClassification, out.Topics, out.Purpose = g.MaxClassification, g.Topics, g.Purpose
			out.ValidFrom = tsOrNil(g.ValidFrom, timestamppb.New(g.ValidFrom))
			out.ValidUntil = tsOrNil(g.ValidUntil, timestamppb.New(g.ValidUntil))
			out.Review = tsOrNil(g.ReviewDate, timestamppb.New(g.ReviewDate))
		}
		resp.Agreements = append(resp.Agreements, out)
	}
	return resp, nil
}

func (s *adminService) ListSecurityEvents(ctx context.Context, _ *adminv1.ListSecurityEventsRequest) (*adminv1.ListSecurityEventsResponse, error) {
	es, err := s.node.SecurityEvents(ctx)
	if err != nil {
		return nil, toStatus(s.log, "ListSecurityEvents", err)
	}
	resp := &adminv1.ListSecurityEventsResponse{}
	for _, e := range es {
		resp.Events = append(resp.Events, &adminv1.SecurityEvent{
			Seq: e.GetSeq(), Time: e.GetTime(), Kind: e.GetKind(), Partner: e.GetPartner(), Rule: e.GetRule(),
			Message: e.GetMessage(), ReportId: e.GetReportId(), QuarantineSeq: e.GetQuarantineSeq(),
		})
	}
	return resp, nil
}

func crisisProto(c *node.CrisisState) *adminv1.Crisis {
	d := c.Declaration
	return &adminv1.Crisis{
		Id: d.GetId(), Originator: d.GetOriginator(), Topics: d.GetTopics(), Parties: d.GetParties(),
		MaxClassification: d.GetMaxClassification(), Issued: d.GetIssued(), Expires: d.GetExpires(), Reason: d.GetReason(),
		State: c.State, Ended: c.Ended,
	}
}

func (s *adminService) DeclareCrisis(ctx context.Context, req *adminv1.DeclareCrisisRequest) (*adminv1.DeclareCrisisResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetDuration() == nil || req.GetDuration().CheckValid() != nil {
		return nil, status.Error(codes.InvalidArgument, "a duration (--for) is required")
	}
	c, sent, err := s.node.DeclareCrisis(ctx, by, node.CrisisInput{
		Topics: req.GetTopics(), Parties: req.GetParties(), Max: req.GetMaxClassification(), For: req.GetDuration().AsDuration(), Reason: req.GetReason(),
	})
	if err != nil {
		return nil, toStatus(s.log, "DeclareCrisis", err)
	}
	return &adminv1.DeclareCrisisResponse{Crisis: crisisProto(c), SentTo: sent}, nil
}

func (s *adminService) EndCrisis(ctx context.Context, req *adminv1.EndCrisisRequest) (*adminv1.EndCrisisResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.node.EndCrisis(ctx, by, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "EndCrisis", err)
	}
	return &adminv1.EndCrisisResponse{Crisis: crisisProto(c)}, nil
}

func (s *adminService) ListCrises(ctx context.Context, _ *adminv1.ListCrisesRequest) (*adminv1.ListCrisesResponse, error) {
	cs, err := s.node.Crises(ctx)
	if err != nil {
		return nil, toStatus(s.log, "ListCrises", err)
	}
	resp := &adminv1.ListCrisesResponse{}
	for _, c := range cs {
		resp.Crises = append(resp.Crises, crisisProto(c))
	}
	return resp, nil
}

func (s *adminService) ReviewCrisis(ctx context.Context, req *adminv1.ReviewCrisisRequest) (*adminv1.ReviewCrisisResponse, error) {
	c, rels, err := s.node.ReviewCrisis(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "ReviewCrisis", err)
	}
	resp := &adminv1.ReviewCrisisResponse{Crisis: crisisProto(c)}
	for _, r := range rels {
		resp.Releases = append(resp.Releases, &adminv1.CrisisRelease{
			ReportId: r.Release.GetReportId(), Portion: r.Release.GetPortion(), From: r.Release.GetFrom(), To: r.Release.GetTo(),
			Time: r.Release.GetTime(), Normal: node.DecisionProto(r.Normal),
		})
	}
	return resp, nil
}

func suspensionProto(s *storev1.Suspension) *adminv1.Suspension {
	if s == nil {
		return nil
	}
	return &adminv1.Suspension{Reason: s.GetReason(), By: s.GetBy(), Since: s.GetSince()}
}

func (s *adminService) SuspendPartner(ctx context.Context, req *adminv1.SuspendPartnerRequest) (*adminv1.SuspendPartnerResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	sp, err := s.node.Suspend(ctx, by, node.SuspendPartner, req.GetParty(), req.GetReason())
	if err != nil {
		return nil, toStatus(s.log, "SuspendPartner", err)
	}
	return &adminv1.SuspendPartnerResponse{Suspension: suspensionProto(sp)}, nil
}

func (s *adminService) ReinstatePartner(ctx context.Context, req *adminv1.ReinstatePartnerRequest) (*adminv1.ReinstatePartnerResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.node.Reinstate(ctx, by, node.SuspendPartner, req.GetParty()); err != nil {
		return nil, toStatus(s.log, "ReinstatePartner", err)
	}
	return &adminv1.ReinstatePartnerResponse{}, nil
}

func (s *adminService) ListPartners(ctx context.Context, _ *adminv1.ListPartnersRequest) (*adminv1.ListPartnersResponse, error) {
	resp := &adminv1.ListPartnersResponse{}
	states := map[string]string{}
	for _, a := range s.node.Agreements() {
		states[a.Partner] = a.State
	}
	for _, p := range s.node.Partners() {
		n, err := s.node.Store().OutboxLen(p.Party)
		if err != nil {
			return nil, toStatus(s.log, "ListPartners", err)
		}
		resp.Partners = append(resp.Partners, &adminv1.Partner{
			Party: p.Party, Address: p.Address, Queued: uint64(n), Agreement: states[p.Party],
			Suspension: suspensionProto(s.node.SuspensionOf(node.SuspendPartner, p.Party)),
		})
	}
	return resp, nil
}

func (s *adminService) SuspendSubscriber(ctx context.Context, req *adminv1.SuspendSubscriberRequest) (*adminv1.SuspendSubscriberResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	sp, err := s.node.Suspend(ctx, by, node.SuspendSubscriber, req.GetName(), req.GetReason())
	if err != nil {
		return nil, toStatus(s.log, "SuspendSubscriber", err)
	}
	return &adminv1.SuspendSubscriberResponse{Suspension: suspensionProto(sp)}, nil
}

func (s *adminService) ReinstateSubscriber(ctx context.Context, req *adminv1.ReinstateSubscriberRequest) (*adminv1.ReinstateSubscriberResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.node.Reinstate(ctx, by, node.SuspendSubscriber, req.GetName()); err != nil {
		return nil, toStatus(s.log, "ReinstateSubscriber", err)
	}
	return &adminv1.ReinstateSubscriberResponse{}, nil
}

func (s *adminService) ListSubscribers(ctx context.Context, _ *adminv1.ListSubscribersRequest) (*adminv1.ListSubscribersResponse, error) {
	resp := &adminv1.ListSubscribersResponse{}
	for _, sub := range s.node.SubscriberConfigs() {
		cur, err := s.node.Store().Cursor(CursorKey(pki.Identity{Kind: pki.KindService, Name: sub.Name}))
		if err != nil {
			return nil, toStatus(s.log, "ListSubscribers", err)
		}
		resp.Subscribers = append(resp.Subscribers, &adminv1.Subscriber{
			Name: sub.Name, Clearance: sub.Clearance, NeedToKnow: sub.NeedToKnow, Cursor: cur,
			Suspension: suspensionProto(s.node.SuspensionOf(node.SuspendSubscriber, sub.Name)),
		})
	}
	return resp, nil
}

func withdrawStatusProto(rec *storev1.WithdrawalRecord, w *reportv1.Withdrawal) *adminv1.WithdrawStatusResponse {
	out := &adminv1.WithdrawStatusResponse{
		WithdrawalId: w.GetId(), ReportId: w.GetReportId(), Action: w.GetAction(), Reason: w.GetReason(),
		By: rec.GetBy(), Issued: w.GetIssued(), Complete: true,
	}
	for _, party := range slices.Sorted(maps.Keys(rec.GetParties())) {
		p := rec.GetParties()[party]
		out.Parties = append(out.Parties, &adminv1.WithdrawalParty{Party: party, Acknowledged: p.GetAcknowledged(), Time: p.GetTime(), Held: p.GetHeld()})
		out.Complete = out.Complete && p.GetAcknowledged()
	}
	return out
}

func (s *adminService) Withdraw(ctx context.Context, req *adminv1.WithdrawRequest) (*adminv1.WithdrawResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a report id is required")
	}
	if _, err := s.node.Withdraw(ctx, by, req.GetId(), req.GetReason(), req.GetAction()); err != nil {
		return nil, toStatus(s.log, "Withdraw", err)
	}
	rec, w, err := s.node.WithdrawStatus(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "Withdraw", err)
	}
	return &adminv1.WithdrawResponse{Status: withdrawStatusProto(rec, w)}, nil
}

func (s *adminService) WithdrawStatus(ctx context.Context, req *adminv1.WithdrawStatusRequest) (*adminv1.WithdrawStatusResponse, error) {
	rec, w, err := s.node.WithdrawStatus(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "WithdrawStatus", err)
	}
	return withdrawStatusProto(rec, w), nil
}
