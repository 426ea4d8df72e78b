package gateway

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
)

// adminService serves the party's officers and security team.
type adminService struct {
	adminv1.UnimplementedAdminServiceServer
	node *node.Node
	log  *slog.Logger
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
