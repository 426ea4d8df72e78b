package gateway

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/pki"
)

type callerKey struct{}

// Caller returns the verified identity of the caller of an RPC.
func Caller(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(callerKey{}).(pki.Identity)
	return id, ok
}

// who is a class of caller in the authorisation table.
type who int

const (
	ownOfficer  who = 1 << iota // .../party/<own>/officer/<name>
	ownService                  // .../party/<own>/svc/<name>
	partnerNode                 // .../party/<partner>/node/<name>
	ownNode                     // .../party/<own>/node/<name>
)

// authz is the authorisation table: deny by default, keyed by full method
// name, restated in the proto comment of each RPC (STYLE 8).
var authz = map[string]who{
	"/tearline.federation.v1.FederationService/Deliver":      partnerNode,
	"/tearline.federation.v1.FederationService/AuditDigests": partnerNode,

	"/tearline.client.v1.ClientService/Publish":        ownOfficer,
	"/tearline.client.v1.ClientService/PublishStream":  ownOfficer,
	"/tearline.client.v1.ClientService/ListReports":    ownOfficer,
	"/tearline.client.v1.ClientService/GetReport":      ownOfficer,
	"/tearline.client.v1.ClientService/GetProvenance":  ownOfficer,
	"/tearline.client.v1.ClientService/Share":          ownOfficer,
	"/tearline.client.v1.ClientService/Subscribe":      ownOfficer | ownService,
	"/tearline.client.v1.ClientService/RequestConsent": ownOfficer,
	"/tearline.client.v1.ClientService/ListConsents":   ownOfficer,
	"/tearline.client.v1.ClientService/DecideConsent":  ownOfficer,

	"/tearline.admin.v1.AdminService/ListAgreements":      ownOfficer,
	"/tearline.admin.v1.AdminService/ListSecurityEvents":  ownOfficer,
	"/tearline.admin.v1.AdminService/DeclareCrisis":       ownOfficer,
	"/tearline.admin.v1.AdminService/EndCrisis":           ownOfficer,
	"/tearline.admin.v1.AdminService/ListCrises":          ownOfficer,
	"/tearline.admin.v1.AdminService/ReviewCrisis":        ownOfficer,
	"/tearline.admin.v1.AdminService/SuspendPartner":      ownOfficer,
	"/tearline.admin.v1.AdminService/ReinstatePartner":    ownOfficer,
	"/tearline.admin.v1.AdminService/ListPartners":        ownOfficer,
	"/tearline.admin.v1.AdminService/SuspendSubscriber":   ownOfficer,
	"/tearline.admin.v1.AdminService/ReinstateSubscriber": ownOfficer,
	"/tearline.admin.v1.AdminService/ListSubscribers":     ownOfficer,
	"/tearline.admin.v1.AdminService/Withdraw":            ownOfficer,
	"/tearline.admin.v1.AdminService/WithdrawStatus":      ownOfficer,
	"/tearline.admin.v1.AdminService/VerifyAudit":         ownOfficer,
	"/tearline.admin.v1.AdminService/ExportAudit":         ownOfficer,
	"/tearline.admin.v1.AdminService/VerifyPartnerAudit":  ownOfficer,
	"/tearline.admin.v1.AdminService/WhoSaw":              ownOfficer,
	"/tearline.admin.v1.AdminService/AuditSummary":        ownOfficer,

	"/grpc.health.v1.Health/Check": ownOfficer | ownService | partnerNode | ownNode,
	"/grpc.health.v1.Health/Watch": ownOfficer | ownService | partnerNode | ownNode,
	"/grpc.health.v1.Health/List":  ownOfficer | ownService | partnerNode | ownNode,

	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      ownOfficer,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ownOfficer,
}

// authn derives the caller from the verified TLS connection: exactly one
// URI SAN, verified against the CA of the party it names (the handshake
// did the chain check with the same Trust; it is repeated here so that no
// handler ever sees an unverified identity).
type authn struct {
	party    string
	partners map[string]bool
	trust    *pki.Trust
	clock    func() time.Time
	// suspended reports a suspended partner: its calls are refused even on
	// a connection that is still open.
	suspended func(party string) bool
	// attempted records a suspended caller's refused attempt
	// (node.SuspendedAttempt).
	attempted func(id pki.Identity, what string)
}

func (a *authn) identify(ctx context.Context, method string) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "mutual TLS is required")
	}
	id, err := pki.PeerIdentity(ti.State, a.trust, a.clock())
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "the client certificate is not trusted")
	}
	if id.Party != a.party && a.suspended != nil && a.suspended(id.Party) {
		if a.attempted != nil {
			a.attempted(id, "call "+path.Base(method))
		}
		return nil, suspendedCallStatus(fmt.Sprintf("party %s is suspended at this node", id.Party))
	}
	allowed, ok := authz[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
	}
	if allowed&a.classify(id) == 0 {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s: only %s may", id, path.Base(method), a.describe(allowed))
	}
	return context.WithValue(ctx, callerKey{}, id), nil
}

// describe names the callers of a class set, for a refusal.
func (a *authn) describe(w who) string {
	var out []string
	for _, c := range []struct {
		w    who
		name string
	}{
		{ownOfficer, "officers of " + a.party},
		{ownService, "subscriber services of " + a.party},
		{partnerNode, "partner nodes"},
		{ownNode, a.party + "'s own nodes"},
	} {
		if w&c.w != 0 {
			out = append(out, c.name)
		}
	}
	return strings.Join(out, " and ")
}

func (a *authn) classify(id pki.Identity) who {
	switch {
	case id.Party == a.party && id.Kind == pki.KindOfficer:
		return ownOfficer
	case id.Party == a.party && id.Kind == pki.KindService:
		return ownService
	case id.Party == a.party && id.Kind == pki.KindNode:
		return ownNode
	case a.partners[id.Party] && id.Kind == pki.KindNode:
		return partnerNode
	}
	return 0
}

func (a *authn) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := a.identify(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

type identifiedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identifiedStream) Context() context.Context { return s.ctx }

func (a *authn) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := a.identify(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, identifiedStream{ss, ctx})
}

func mustCaller(ctx context.Context) (pki.Identity, error) {
	id, ok := Caller(ctx)
	if !ok {
		// The interceptor always sets the caller; reaching here is a bug.
		return pki.Identity{}, status.Error(codes.Internal, "internal error: no authenticated caller")
	}
	return id, nil
}
