// Package gateway serves a Tearline node over mutual-TLS gRPC: the
// federation service for partner nodes, the client service for the party's
// officers and subscribers, health and reflection. It authenticates every
// call from the verified certificate, authorises it from a table, validates
// requests and translates node errors to gRPC statuses with their reasons.
package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/node/federation"
	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
)

// StopGrace is how long Run waits for calls in flight before it stops hard.
const StopGrace = 5 * time.Second

// Server is one running node.
type Server struct {
	cfg    *Config
	log    *slog.Logger
	clock  func() time.Time
	st     *store.Store
	certs  *pki.CertSource
	trust  *pki.Trust
	node   *node.Node
	lis    net.Listener
	grpc   *grpc.Server
	health *health.Server
	links  []*federation.Link
	client *clientService
	vault  *vaultPKI // pki.mode vault only

	// nodeReady is set once the node exists: certificate events before it
	// are recorded by the node-started entry.
	nodeReady atomic.Pointer[node.Node]
	dialers   map[string]partnerDialer
	metrics   net.Listener
}

// partnerDialer reaches a partner's node as the link does.
type partnerDialer struct {
	address string
	creds   credentials.TransportCredentials
	opts    []grpc.DialOption
}

// Option changes how a Server is built (tests).
type Option func(*Server)

// WithClock injects a clock.
func WithClock(c func() time.Time) Option { return func(s *Server) { s.clock = c } }

// streamWorkers is how many goroutines the gRPC server keeps to run calls.
const streamWorkers = 256

// Every connection a node serves or dials, and the CLI's, has fixed
// HTTP/2 flow-control windows. Left dynamic, grpc-go estimates the
// bandwidth-delay product by sending the peer a PING as the first data
// after each PING's answer arrives: when reports come a few a millisecond
// that is one PING and its answer per message each way, four thread
// wake-ups in two processes for nothing the report needs (BENCHMARKS.md,
// issue 7). The windows are what the estimate grows to on a busy link:
// a peer sends at most streamWindow on one call and connWindow on the
// connection before the receiver has read it, and the receiver tells it
// to go on after a quarter of that.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// windows are the server options for those windows.
func windows() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StaticStreamWindowSize(streamWindow), grpc.StaticConnWindowSize(connWindow)}
}

// dialWindows are the dial options for those windows.
func dialWindows() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStaticStreamWindowSize(streamWindow), grpc.WithStaticConnWindowSize(connWindow)}
}

// NewServer opens the node's store, obtains its certificate, loads the
// partners' CAs and binds the listener. Nothing runs until Run.
func NewServer(cfg *Config, log *slog.Logger, opts ...Option) (*Server, error) {
	// Every line the node logs names its party once, here (tearline dev
	// runs several nodes into one log).
	s := &Server{cfg: cfg, log: log.With("party", cfg.Party), clock: time.Now}
	for _, o := range opts {
		o(s)
	}
	if err := s.build(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *Server) build() error {
	cfg := s.cfg
	id, err := cfg.NodeIdentity()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	// The partners' CA files are read first: a config naming a missing or
	// bad one is refused before a CA is created or Vault issues anything.
	partnerCAs := map[string][]*x509.Certificate{}
	for _, p := range cfg.Partners {
		cas, err := readCAFile(cfg.Path(p.CAFile))
		if err != nil {
			err = fmt.Errorf("%w: partner %s ca_file: %w", ErrConfig, p.Party, err)
			if cfg.file != "" {
				err = fmt.Errorf("%s: %w", cfg.file, err)
			}
			return err
		}
		partnerCAs[p.Party] = cas
	}
	var iss pki.Issuer
	switch cfg.PKI.Mode {
	case "dev":
		ca, err := pki.OpenDevCA(cfg.Path(cfg.PKI.DevCADir), cfg.Party)
		if err != nil {
			return fmt.Errorf("development CA: %w", err)
		}
		iss = ca
	case "vault":
		if s.vault, err = newVaultPKI(cfg, s.log); err != nil {
			return fmt.Errorf("vault PKI: %w", err)
		}
		iss = s.vault.iss
	default:
		return fmt.Errorf("%w: pki.mode %q", ErrConfig, cfg.PKI.Mode)
	}
	s.certs, err = pki.NewCertSource(iss, id, cfg.PKI.CertTTL, pki.WithClock(s.clock), pki.WithLogger(s.log),
		pki.WithOnIssue(func(leaf *x509.Certificate) {
			if n := s.nodeReady.Load(); n != nil {
				n.AuditCertificate("certificate-issued", certText(leaf))
			}
		}))
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	s.trust = pki.NewTrust()
	own, err := iss.Bundle(context.Background())
	if err != nil {
		return fmt.Errorf("own CA bundle: %w", err)
	}
	s.trust.Set(cfg.Party, own)
	var partners []node.Partner
	partnerSet := map[string]bool{}
	for _, p := range cfg.Partners {
		s.trust.Set(p.Party, partnerCAs[p.Party])
		partnerSet[p.Party] = true
		np := node.Partner{Party: p.Party, Address: p.Address}
		if a := p.Agreement; a != nil {
			np.Agreement = &policy.Agreement{
				Partner: p.Party, MaxClassification: a.MaxClassification, Topics: a.Topics, Purpose: a.Purpose,
				ValidFrom: a.ValidFrom, ValidUntil: a.ValidUntil, ReviewDate: a.Review,
			}
		}
		partners = append(partners, np)
	}
	var subs []policy.Subscriber
	for _, sc := range cfg.Subscribers {
		ntk, _ := marking.NormalizeTopics(sc.NeedToKnow)
		subs = append(subs, policy.Subscriber{Name: sc.Name, Clearance: sc.Clearance, NeedToKnow: ntk})
	}
	if err := os.MkdirAll(cfg.Path(cfg.DataDir), 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	s.st, err = store.Open(filepath.Join(cfg.Path(cfg.DataDir), "tearline.db"))
	if err != nil {
		return err
	}
	if s.st.ReadOnly() {
		s.log.Warn("store is read-only: serving reads only; publish, share and receipts are refused until its file system is writable and the node restarts", "path", s.st.Path())
	}
	an := cfg.Audit.Anomalies
	s.node, err = node.New(node.Config{
		Party: cfg.Party, Store: s.st, Signer: s.certs, Trust: s.trust,
		Partners: partners, Subscribers: subs, Clock: s.clock, Logger: s.log,
		Audit: node.AuditConfig{
			CheckpointInterval: cfg.Audit.CheckpointInterval, CheckpointEntries: cfg.Audit.CheckpointEntries,
			Thresholds: audit.Thresholds{
				DeliveryWindow: an.DeliveryWindow, DeliveryFactor: an.DeliveryFactor, DeliveryMin: an.DeliveryMin,
				DenialWindow: an.DenialWindow, DenialsPerPartner: an.DenialsPerPartner,
			},
		},
	})
	if err != nil {
		return err
	}
	if err := s.node.RecordAudit("node-started", id.String(), "certificate "+certText(s.certs.Current().Leaf())); err != nil {
		// A node whose disk is full or read-only still starts, to serve
		// reads; it writes nothing, this entry included.
		if !errors.Is(err, store.ErrFull) && !errors.Is(err, store.ErrReadOnly) {
			return err
		}
		s.log.Warn("the node-started audit entry cannot be written: the store refuses writes", "error", err)
	}
	s.nodeReady.Store(s.node)
	if s.vault != nil {
		s.vault.rev.OnRevoked(func(party string, serial *big.Int) {
			s.node.AuditCertificate("certificate-revoked", fmt.Sprintf("%s's CRL revokes serial %s", party, pki.VaultSerial(serial)))
		})
	}
	a := &authn{party: cfg.Party, partners: partnerSet, trust: s.trust, clock: s.clock, suspended: s.node.PartnerSuspended, attempted: s.node.SuspendedAttempt}
	cut := newCutoff(s.node, s.trust, s.clock)
	tlsCfg := pki.ServerTLS(s.certs, s.trust, s.clock)
	// Revocation first, then suspension: only a certificate that is
	// trusted and not revoked is recorded as its holder's attempt.
	s.vault.tls(tlsCfg)
	tlsCfg.VerifyConnection = cut.verifyConnection(tlsCfg.VerifyConnection)
	tlsCfg.VerifyConnection = logRefusals(s.log, s.clock, tlsCfg.VerifyConnection)
	s.grpc = grpc.NewServer(append(windows(),
		grpc.Creds(s.vault.creds(cut.creds(credentials.NewTLS(tlsCfg)))),
		grpc.ChainUnaryInterceptor(a.unary),
		grpc.ChainStreamInterceptor(a.stream),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(cfg.MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Calls run on kept goroutines: a new goroutine per call grew its
		// stack through the handler each time (5 % of a publishing node's
		// CPU, BENCHMARKS.md). When every worker is busy, grpc-go starts a
		// goroutine as before.
		grpc.NumStreamWorkers(streamWorkers),
	)...)
	federationv1.RegisterFederationServiceServer(s.grpc, &federationService{node: s.node, log: s.log})
	s.dialers = map[string]partnerDialer{}
	s.client = &clientService{node: s.node, log: s.log, authn: a, poll: time.Second, stall: cfg.SubscriberStall, cut: cut, prepared: newPreparedMemo()}
	clientv1.RegisterClientServiceServer(s.grpc, s.client)
	adminv1.RegisterAdminServiceServer(s.grpc, &adminService{node: s.node, log: s.log, fetch: s.fetchDigests})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	for _, p := range cfg.Partners {
		party := p.Party
		want := func(peer pki.Identity) error {
			if peer.Party != party || peer.Kind != pki.KindNode {
				return fmt.Errorf("dialled %s's node but the server is %s", party, peer)
			}
			return nil
		}
		creds := credentials.NewTLS(pki.ClientTLS(s.certs, s.trust, want, s.clock))
		opts := append(dialWindows(),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(cfg.MaxMessageBytes)),
		)
		s.links = append(s.links, &federation.Link{
			Node: s.node, Party: party, Address: p.Address, Log: s.log, Clock: s.clock,
			Creds: creds, DialOptions: opts,
		})
		s.dialers[party] = partnerDialer{address: p.Address, creds: creds, opts: opts}
	}
	if cfg.MetricsListen != "" {
		if s.metrics, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics_listen %s: %w", cfg.MetricsListen, err)
		}
	}
	s.lis, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	return nil
}

func readCAFile(path string) ([]*x509.Certificate, error) {
	cas, err := pki.ReadCertificatesFile(path)
	if err != nil {
		return nil, err
	}
	if len(cas) == 0 {
		return nil, errors.New("no certificate in file")
	}
	return cas, nil
}

// Node is the domain node behind the server.
func (s *Server) Node() *node.Node { return s.node }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Run serves until ctx ends or a part fails; then it stops gracefully
// (GracefulStop, then Stop after StopGrace) and closes the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	tasks := []func(context.Context) error{
		s.certs.Run,
		s.vault.run,
		func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() { errc <- s.grpc.Serve(s.lis) }()
			s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.log.Info("node serving", "address", s.Addr(), "identity", s.certs.Identity().String())
			select {
			case err := <-errc:
				return fmt.Errorf("grpc serve: %w", err)
			case <-ctx.Done():
			}
			s.health.Shutdown()
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(StopGrace):
				s.grpc.Stop()
				<-done
			}
			<-errc
			return nil
		},
	}
	for _, l := range s.links {
		tasks = append(tasks, l.Run)
	}
	tasks = append(tasks, s.node.RunAudit, s.serveMetrics)
	err := runAll(ctx, tasks...)
	s.client.recorders.Wait() // delivery events are on disk before the store closes
	// The last checkpoint covers everything recorded; partners get it at
	// the next start.
	if _, cerr := s.node.Checkpoint(context.Background()); cerr != nil {
		s.log.Error("final audit checkpoint", "error", cerr)
	}
	s.log.Info("node stopped")
	return err
}

func (s *Server) close() {
	if s.lis != nil {
		s.lis.Close()
	}
	if s.metrics != nil {
		s.metrics.Close()
	}
	if s.st != nil {
		s.st.Close()
		s.st = nil
	}
}
