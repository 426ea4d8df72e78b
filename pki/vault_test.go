package pki

// Integration tests of the Vault issuer against a real Vault server (the
// vaultdev program of internal/testvault). They fail, never skip, when no
// Vault can be started. `make test-vault` runs them verbosely.

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tearline/tearline/internal/testvault"
)

// vaultFor starts a Vault, bootstraps party's PKI in it and returns the
// server with a token-auth issuer configuration for that party.
func vaultFor(t *testing.T, party string) (*testvault.Server, VaultConfig) {
	t.Helper()
	v := testvault.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := BootstrapVaultPKI(ctx, v.Addr, v.Token, VaultBootstrap{Party: party}, testLogger(t)); err != nil {
		t.Fatalf("bootstrap %s: %v", party, err)
	}
	return v, VaultConfig{Address: v.Addr, Mount: DefaultVaultMount(party), Party: party,
		Auth: VaultAuthToken, Token: v.Token, Logger: testLogger(t)}
}

func newVaultIssuer(t *testing.T, cfg VaultConfig) *VaultIssuer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iss, err := NewVaultIssuer(ctx, cfg)
	if err != nil {
		t.Fatalf("NewVaultIssuer: %v", err)
	}
	return iss
}

func rootClient(t *testing.T, v *testvault.Server) *vault.Client {
	t.Helper()
	c, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Token)
	return c
}

func TestVaultIssue(t *testing.T) {
	_, cfg := vaultFor(t, "USA")
	iss := newVaultIssuer(t, cfg)
	ctx := context.Background()

	bundle, err := iss.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) != 1 || !bundle[0].IsCA || !selfSigned(bundle[0]) {
		t.Fatalf("bundle: want the mount's self-signed root, got %d certificates", len(bundle))
	}
	if got := bundle[0].PermittedURIDomains; len(got) != 1 || got[0] != "usa.tearline.test" {
		t.Fatalf("root CA URI name constraint = %v, want [usa.tearline.test]", got)
	}
	if _, ok := bundle[0].PublicKey.(ed25519.PublicKey); !ok {
		t.Fatalf("root CA key is %T, want ed25519", bundle[0].PublicKey)
	}

	trust := NewTrust()
	trust.Set("USA", bundle)
	for _, kind := range []Kind{KindNode, KindOfficer, KindService} {
		id := mustID(t, "USA", kind, "alpha")
		is, err := iss.Issue(ctx, IssueRequest{Identity: id, TTL: 2 * time.Hour})
		if err != nil {
			t.Fatalf("Issue(%s): %v", id, err)
		}
		leaf := is.Leaf()
		if got, err := trust.Verify(is.Chain, time.Now()); err != nil || got != id {
			t.Fatalf("Verify(%s) = %v, %v", id, got, err)
		}
		if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.Subject.CommonName != "" {
			t.Fatalf("%s: leaf carries names besides its URI: cn=%q dns=%v ip=%v", id, leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
		}
		if life := leaf.NotAfter.Sub(time.Now()); life < 110*time.Minute || life > 2*time.Hour+time.Minute {
			t.Fatalf("%s: lifetime %v, want the requested 2h", id, life)
		}
		if _, err := StaticCertSource(is); err != nil {
			t.Fatalf("issued certificate unusable: %v", err)
		}
	}

	// The issuer refuses another party's identity before asking Vault.
	if _, err := iss.Issue(ctx, IssueRequest{Identity: mustID(t, "GBR", KindNode, "london")}); err == nil || !errors.Is(err, ErrVault) {
		t.Fatalf("Issue for GBR: %v, want a refusal", err)
	}
	// Vault's roles refuse a URI of another kind, or another party, even
	// when asked directly: the node role cannot mint an officer.
	rc := rootClient(t, &testvault.Server{Addr: cfg.Address, Token: cfg.Token})
	for _, uri := range []string{
		"spiffe://usa.tearline.test/party/USA/officer/eve",
		"spiffe://gbr.tearline.test/party/GBR/node/london",
		"spiffe://usa.tearline.test/party/GBR/node/london",
	} {
		_, err := rc.Logical().Write(cfg.Mount+"/issue/node", map[string]any{"uri_sans": uri})
		if err == nil {
			t.Fatalf("node role issued %s", uri)
		}
	}
}

func TestVaultAppRoleLogin(t *testing.T) {
	v, cfg := vaultFor(t, "GBR")
	rc := rootClient(t, v)
	policy, err := os.ReadFile(filepath.Join("..", "deploy", "vault", "policy-node.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Sys().PutPolicy("tearline-node-gbr", strings.ReplaceAll(string(policy), "@MOUNT@", cfg.Mount)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	// Tokens that live 2 s, so the issuer must log in again during the test.
	if _, err := rc.Logical().Write("auth/approle/role/node-gbr", map[string]any{
		"token_policies": "tearline-node-gbr", "token_ttl": "2s", "token_max_ttl": "2s", "secret_id_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	sec, err := rc.Logical().Read("auth/approle/role/node-gbr/role-id")
	if err != nil {
		t.Fatal(err)
	}
	roleID := sec.Data["role_id"].(string)
	sec, err = rc.Logical().Write("auth/approle/role/node-gbr/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	secretID := sec.Data["secret_id"].(string)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte(secretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs strings.Builder
	cfg.Auth, cfg.Token = VaultAuthAppRole, ""
	cfg.RoleID, cfg.SecretIDFile = roleID, secretFile
	cfg.Logger = slogTo(&logs)
	iss := newVaultIssuer(t, cfg)
	ctx := context.Background()
	id := mustID(t, "GBR", KindNode, "london")
	if _, err := iss.Issue(ctx, IssueRequest{Identity: id, TTL: time.Hour}); err != nil {
		t.Fatalf("Issue with an AppRole token: %v", err)
	}
	if _, err := iss.Bundle(ctx); err != nil {
		t.Fatalf("Bundle with an AppRole token: %v", err)
	}
	time.Sleep(2500 * time.Millisecond) // the token expires
	if _, err := iss.Issue(ctx, IssueRequest{Identity: id, TTL: time.Hour}); err != nil {
		t.Fatalf("Issue after the token expired: %v", err)
	}
	if n := iss.Logins(); n < 2 {
		t.Fatalf("logins = %d, want a second login after the token expired", n)
	}
	// The policy is least privilege: the node's token cannot issue an
	// officer certificate, nor revoke.
	if _, err := iss.Issue(ctx, IssueRequest{Identity: mustID(t, "GBR", KindOfficer, "eve")}); err == nil {
		t.Fatal("the node's AppRole token issued an officer certificate")
	}
	if err := iss.Revoke(ctx, "01:02"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("the node's AppRole token may revoke: %v", err)
	}
	for _, secret := range []string{secretID, v.Token} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a secret appeared in the issuer's log")
		}
	}

	// A wrong secret id is refused with an error that says so and does not
	// contain the secret.
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("00000000-0000-0000-0000-000000000000"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SecretIDFile = bad
	_, err = NewVaultIssuer(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "approle login") || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("bad secret id: %v", err)
	}
	if strings.Contains(err.Error(), "00000000-0000") {
		t.Fatalf("the error shows the secret id: %v", err)
	}
	// A secret file others may read is refused before it is used.
	if err := os.Chmod(bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewVaultIssuer(ctx, cfg); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable secret id file: %v", err)
	}
}

func TestVaultConfigRedactsSecrets(t *testing.T) {
	cfg := VaultConfig{Address: "https://vault:8200", Mount: "pki-usa", Party: "USA", Auth: VaultAuthAppRole,
		Token: "hvs.SECRET-TOKEN", RoleID: "role-1", SecretID: "SECRET-ID"}
	var logs strings.Builder
	slogTo(&logs).Info("config", "vault", cfg)
	for _, s := range []string{logs.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, "SECRET") {
			t.Fatalf("secret shown: %s", s)
		}
		if !strings.Contains(s, "pki-usa") {
			t.Fatalf("redaction hid everything: %s", s)
		}
	}
	if got := (&VaultConfig{Auth: VaultAuthAppRole}).Missing(); strings.Join(got, ",") != "address,mount,party,role_id,secret_id_file" {
		t.Fatalf("Missing = %v", got)
	}
}

func TestVaultDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = NewVaultIssuer(ctx, VaultConfig{Address: addr, Mount: "pki-usa", Party: "USA", Auth: VaultAuthToken, Token: "hvs.x"})
	if err == nil {
		t.Fatal("NewVaultIssuer succeeded with no Vault")
	}
	if !errors.Is(err, ErrVault) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("error does not say Vault at %s is unreachable: %v", addr, err)
	}
	if strings.Contains(err.Error(), "hvs.x") {
		t.Fatalf("error shows the token: %v", err)
	}
	t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestVaultDownDuringOperation(t *testing.T) {
	v, cfg := vaultFor(t, "CAN")
	proxy := testvault.NewProxy(t, v.HostPort())
	cfg.Address = "http://" + proxy.Addr
	iss := newVaultIssuer(t, cfg)
	bundle, err := iss.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	trust := NewTrust()
	trust.Set("CAN", bundle)

	clock := newFakeClock()
	id := mustID(t, "CAN", KindNode, "ottawa")
	src, err := NewCertSource(iss, id, time.Hour, WithClock(clock.Now), WithJitter(0),
		WithCheckInterval(5*time.Millisecond), WithBackoff(20*time.Millisecond, 100*time.Millisecond), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	first := src.Current().Leaf().SerialNumber
	client := staticSource(t, issueVault(t, iss, mustID(t, "CAN", KindOfficer, "liaison")))
	srv := startTLSServer(t, ServerTLS(src, trust, nil), trust, time.Now)

	proxy.Down()
	clock.Add(50 * time.Minute) // past the renewal point: renewal fails
	time.Sleep(300 * time.Millisecond)
	if s := src.Current().Leaf().SerialNumber; s.Cmp(first) != 0 {
		t.Fatal("certificate changed while Vault was down")
	}
	// The node keeps serving on its current certificate.
	c, err := dial(t, srv.addr, ClientTLS(client, trust, WantIdentity(id), nil))
	if err != nil {
		t.Fatalf("handshake while Vault is down: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first) != 0 {
		t.Fatal("server did not present its current certificate")
	}
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	renewed := waitForSerial(t, src, first)
	c2, err := dial(t, srv.addr, ClientTLS(client, trust, WantIdentity(id), nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(renewed) != 0 {
		t.Fatal("after Vault came back, a new handshake did not get the renewed certificate")
	}
	if err := echo(c, "still up"); err != nil {
		t.Fatalf("connection made while Vault was down broke: %v", err)
	}
}

func issueVault(t *testing.T, iss *VaultIssuer, id Identity) *Issued {
	t.Helper()
	is, err := iss.Issue(context.Background(), IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatalf("Issue(%s): %v", id, err)
	}
	return is
}

// grpcHealth is a real gRPC server with the health service over ServerTLS;
// a Watch stream on it is the "live stream" of the rotation and
// revocation tests.
type grpcHealth struct {
	addr   string
	health *health.Server
}

func startGRPCHealth(t *testing.T, src *CertSource, trust *Trust, clock func() time.Time, rev *Revocations) *grpcHealth {
	t.Helper()
	cfg := ServerTLS(src, trust, clock)
	var creds credentials.TransportCredentials = credentials.NewTLS(cfg)
	if rev != nil {
		cfg.VerifyConnection = rev.VerifyConnection(cfg.VerifyConnection)
		creds = RevocationCreds(credentials.NewTLS(cfg), rev)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(creds))
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return &grpcHealth{addr: ln.Addr().String(), health: h}
}

// watch opens a health Watch stream with cfg's credentials; the returned
// channel yields each status and closes with the stream, err then holds why.
type watchStream struct {
	updates chan healthpb.HealthCheckResponse_ServingStatus
	err     chan error
	peer    *x509.Certificate
}

func openWatch(t *testing.T, addr string, creds credentials.TransportCredentials) *watchStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "tearline"})
	if err != nil {
		t.Fatal(err)
	}
	w := &watchStream{updates: make(chan healthpb.HealthCheckResponse_ServingStatus, 16), err: make(chan error, 1)}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	w.updates <- first.Status
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				w.err <- err
				close(w.updates)
				return
			}
			w.updates <- m.Status
		}
	}()
	return w
}

func (w *watchStream) next(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	select {
	case s, ok := <-w.updates:
		if !ok {
			t.Fatalf("stream ended: %v", <-w.err)
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no update on the stream")
		return 0
	}
}

func TestVaultRotationUnderLiveStream(t *testing.T) {
	_, cfg := vaultFor(t, "USA")
	iss := newVaultIssuer(t, cfg)
	bundle, err := iss.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	trust := NewTrust()
	trust.Set("USA", bundle)
	clock := newFakeClock()
	nodeID := mustID(t, "USA", KindNode, "washington")
	src, err := NewCertSource(iss, nodeID, time.Hour, WithClock(clock.Now), WithJitter(0),
		WithCheckInterval(5*time.Millisecond), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	client := staticSource(t, issueVault(t, iss, mustID(t, "USA", KindService, "analyst")))
	srv := startGRPCHealth(t, src, trust, clock.Now, nil)
	srv.health.SetServingStatus("tearline", healthpb.HealthCheckResponse_SERVING)

	w := openWatch(t, srv.addr, credentials.NewTLS(ClientTLS(client, trust, WantIdentity(nodeID), clock.Now)))
	if s := w.next(t); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first status %v", s)
	}
	first := src.Current().Leaf().SerialNumber
	msg := []byte("report header signed before the rotation")
	sig, chain := src.Sign(msg)
	clock.Add(45 * time.Minute) // past two thirds of the hour
	second := waitForSerial(t, src, first)

	// What was signed before the rotation still verifies: the signer's
	// chain travels with the signature.
	signer, certs, err := trust.VerifyDER(chain, clock.Now())
	if err != nil || signer != nodeID || !ed25519.Verify(certs[0].PublicKey.(ed25519.PublicKey), msg, sig) {
		t.Fatalf("signature made before the rotation does not verify after it: %v", err)
	}

	// The stream opened on the old certificate survives the rotation...
	srv.health.SetServingStatus("tearline", healthpb.HealthCheckResponse_NOT_SERVING)
	if s := w.next(t); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status after rotation %v", s)
	}
	// ...and a new handshake gets the new certificate, from Vault.
	got := grpcHandshakeSerial(t, srv.addr, client, trust, nodeID, clock.Now)
	if got.Cmp(second) != 0 || got.Cmp(first) == 0 {
		t.Fatalf("new handshake saw serial %s, want the renewed %s", VaultSerial(got), VaultSerial(second))
	}
	t.Logf("rotated %s -> %s under a live stream", VaultSerial(first), VaultSerial(second))
}

// grpcHandshakeSerial makes a gRPC call on a fresh connection and returns
// the serial of the server certificate of that connection's handshake.
func grpcHandshakeSerial(t *testing.T, addr string, client *CertSource, trust *Trust, want Identity, clock func() time.Time) *big.Int {
	t.Helper()
	var serial *big.Int
	cfg := ClientTLS(client, trust, WantIdentity(want), clock)
	inner := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		serial = cs.PeerCertificates[0].SerialNumber
		return inner(cs)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("call on a new connection: %v", err)
	}
	return serial
}

func slogTo(w *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&syncWriter{w: w}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestVaultRevocation revokes certificates in Vault and measures how long a
// live stream authenticated by one of them lives on: with an on-demand CRL
// refresh (the watcher kicked right after the revocation, as `tearline pki
// revoke` does through the node) and with the scheduled refresh alone. New
// handshakes with a revoked certificate are refused; others still pass.
func TestVaultRevocation(t *testing.T) {
	_, cfg := vaultFor(t, "USA")
	iss := newVaultIssuer(t, cfg) // the root token: it may revoke
	ctx := context.Background()
	bundle, err := iss.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trust := NewTrust()
	trust.Set("USA", bundle)
	nodeID := mustID(t, "USA", KindNode, "washington")
	src := staticSource(t, issueVault(t, iss, nodeID))
	rev := NewRevocations(testLogger(t))
	const interval = 500 * time.Millisecond
	w := NewCRLWatcher("USA", func(ctx context.Context) (*x509.RevocationList, error) { return iss.CRL(ctx, bundle) }, rev, interval, testLogger(t))
	wctx, cancel := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(func() { cancel(); <-wdone })
	deadline := time.Now().Add(5 * time.Second)
	for !rev.Known("USA") {
		if time.Now().After(deadline) {
			t.Fatal("no CRL fetched")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv := startGRPCHealth(t, src, trust, nil, rev)
	srv.health.SetServingStatus("tearline", healthpb.HealthCheckResponse_SERVING)

	creds := func(is *Issued) credentials.TransportCredentials {
		return credentials.NewTLS(ClientTLS(staticSource(t, is), trust, WantIdentity(nodeID), nil))
	}
	for _, tc := range []struct {
		name  string
		kick  bool
		bound time.Duration
	}{
		{"on-demand", true, 2 * time.Second},
		{"scheduled", false, interval + 2*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			officer := issueVault(t, iss, mustID(t, "USA", KindOfficer, "liaison-"+tc.name))
			other := issueVault(t, iss, mustID(t, "USA", KindOfficer, "other-"+tc.name))
			stream := openWatch(t, srv.addr, creds(officer))
			bystander := openWatch(t, srv.addr, creds(other))
			stream.next(t)
			bystander.next(t)

			start := time.Now()
			if err := iss.Revoke(ctx, VaultSerial(officer.Leaf().SerialNumber)); err != nil {
				t.Fatal(err)
			}
			if tc.kick {
				w.Kick()
			}
			select {
			case <-stream.err:
			case <-time.After(tc.bound + 5*time.Second):
				t.Fatalf("stream of the revoked certificate still open after %v", time.Since(start))
			}
			took := time.Since(start)
			t.Logf("revocation to stream closed: %v (bound %v)", took.Round(time.Millisecond), tc.bound)
			if took > tc.bound {
				t.Fatalf("stream closed after %v, over the bound %v", took, tc.bound)
			}
			// New handshakes with the revoked certificate are refused...
			conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(creds(officer)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			defer ccancel()
			if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err == nil {
				t.Fatal("a call with the revoked certificate succeeded")
			}
			if err := rev.Check(officer.Chain); !errors.Is(err, ErrRevoked) {
				t.Fatalf("Check(revoked) = %v, want ErrRevoked", err)
			}
			// ...while the other officer's stream lives on.
			srv.health.SetServingStatus("tearline", healthpb.HealthCheckResponse_NOT_SERVING)
			if s := bystander.next(t); s != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("bystander got %v", s)
			}
			srv.health.SetServingStatus("tearline", healthpb.HealthCheckResponse_SERVING)
			bystander.next(t)
		})
	}
}

// TestVaultCRLAtPartner has a GBR node learn of the revocation of a USA
// node's certificate from USA's CRL at its published address (Vault's
// unauthenticated /v1/<mount>/crl), refuse it at the next handshake, and
// close the live connection.
func TestVaultCRLAtPartner(t *testing.T) {
	v := testvault.Start(t)
	ctx := context.Background()
	for _, p := range []string{"USA", "GBR"} {
		if err := BootstrapVaultPKI(ctx, v.Addr, v.Token, VaultBootstrap{Party: p}, testLogger(t)); err != nil {
			t.Fatal(err)
		}
	}
	issuer := func(p string) *VaultIssuer {
		return newVaultIssuer(t, VaultConfig{Address: v.Addr, Mount: DefaultVaultMount(p), Party: p, Auth: VaultAuthToken, Token: v.Token, Logger: testLogger(t)})
	}
	usa, gbr := issuer("USA"), issuer("GBR")
	usaCA, err := usa.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gbrCA, err := gbr.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trust := NewTrust()
	trust.Set("USA", usaCA)
	trust.Set("GBR", gbrCA)
	usaNode := issueVault(t, usa, mustID(t, "USA", KindNode, "washington"))
	dp := usaNode.Leaf().CRLDistributionPoints
	if len(dp) != 1 || dp[0] != v.Addr+"/v1/pki-usa/crl" {
		t.Fatalf("USA certificate's CRL distribution points = %v", dp)
	}

	// GBR's node: its own CRL from its Vault mount, USA's from the address
	// USA's certificate publishes.
	rev := NewRevocations(testLogger(t))
	w := NewCRLWatcher("USA", HTTPCRLFetcher(nil, dp[0], usaCA), rev, time.Hour, testLogger(t))
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// A CRL signed by another party's CA is refused.
	if _, err := HTTPCRLFetcher(nil, dp[0], gbrCA)(ctx); err == nil {
		t.Fatal("USA's CRL accepted against GBR's CA")
	}
	gbrNodeID := mustID(t, "GBR", KindNode, "london")
	srv := startGRPCHealth(t, staticSource(t, issueVault(t, gbr, gbrNodeID)), trust, nil, rev)
	srv.health.SetServingStatus("tearline", healthpb.HealthCheckResponse_SERVING)
	creds := credentials.NewTLS(ClientTLS(staticSource(t, usaNode), trust, WantIdentity(gbrNodeID), nil))
	stream := openWatch(t, srv.addr, creds)
	stream.next(t)

	if err := usa.Revoke(ctx, VaultSerial(usaNode.Leaf().SerialNumber)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := w.Refresh(ctx); err != nil { // on demand
		t.Fatal(err)
	}
	select {
	case <-stream.err:
		t.Logf("partner closed the revoked peer's stream %v after its CRL refresh", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("partner kept the revoked peer's stream open")
	}
	if err := rev.VerifyConnection(nil)(tls.ConnectionState{PeerCertificates: usaNode.Chain}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("partner's handshake check of the revoked certificate: %v", err)
	}
}

// TestVaultPlainHTTPOnlyToALoopbackIP: plain http (which carries the
// token) is refused before anything is sent unless the address is a
// loopback IP; a name, even localhost, could resolve elsewhere.
func TestVaultPlainHTTPOnlyToALoopbackIP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range []string{"http://localhost:8200", "http://vault.example.org:8200", "http://10.0.0.1:8200"} {
		_, err := NewVaultIssuer(ctx, VaultConfig{Address: addr, Mount: "pki-usa", Party: "USA", Auth: VaultAuthToken, Token: "hvs.x"})
		if !errors.Is(err, ErrVault) || !strings.Contains(err.Error(), "plain http is allowed only to a Vault at a loopback address") {
			t.Errorf("%s: %v, want plain http refused", addr, err)
		}
	}
	// A loopback IP gets as far as trying to reach it.
	for _, addr := range []string{"http://127.0.0.1:1", "http://[::1]:1"} {
		_, err := NewVaultIssuer(ctx, VaultConfig{Address: addr, Mount: "pki-usa", Party: "USA", Auth: VaultAuthToken, Token: "hvs.x"})
		if err == nil || strings.Contains(err.Error(), "plain http") {
			t.Errorf("%s: %v, want it tried (and unreachable)", addr, err)
		}
	}
}

// TestVaultErrorsOnOneLine: Vault's several errors in one string read as
// one line.
func TestVaultErrorsOnOneLine(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"}, "permission denied; invalid token"},
		{[]string{"1 error occurred:\n\t* permission denied\n\n"}, "permission denied"},
		{[]string{"role \"node\" not found", " "}, `role "node" not found`},
		{nil, ""},
	} {
		if got := vaultErrors(c.in); got != c.want {
			t.Errorf("vaultErrors(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
