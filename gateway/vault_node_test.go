package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tearline/tearline/internal/testvault"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// bootstrapScript runs deploy/vault/bootstrap.sh against v for party and
// returns the pki section it prints.
func bootstrapScript(t *testing.T, v *testvault.Server, party, secretFile string) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join("..", "deploy", "vault", "bootstrap.sh"), "--party", party, "--secret-id-file", secretFile)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.Token)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bootstrap.sh: %v\n%s", err, stderr.String())
	}
	if strings.Contains(string(out)+stderr.String(), v.Token) {
		t.Fatal("bootstrap.sh printed the Vault token")
	}
	return string(out)
}

// TestVaultNode runs deploy/vault/bootstrap.sh against a fresh Vault (twice:
// it can run again), starts a node from the pki section it prints (AppRole),
// and revokes a subscriber's certificate under a live Subscribe stream: the
// node closes the stream within its CRL interval plus the fetch, and refuses
// the certificate at the next handshake.
func TestVaultNode(t *testing.T) {
	v := testvault.Start(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "vault-secret-id")
	bootstrapScript(t, v, "USA", secretFile)
	section := bootstrapScript(t, v, "USA", secretFile) // again: idempotent, a new secret id
	if fi, err := os.Stat(secretFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret id file: %v %v", fi, err)
	}
	const crlInterval = time.Second
	yaml := "party: USA\nlisten: 127.0.0.1:0\ndata_dir: data\nsubscribers:\n  - {name: analyst, clearance: SECRET, need_to_know: [CT]}\n" +
		section[strings.Index(section, "pki:"):] + "    crl_interval: 1s\n"
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("the config bootstrap.sh prints does not load: %v\n%s", err, yaml)
	}
	if cfg.PKI.Vault.Auth != "approle" || cfg.PKI.Vault.RoleID == "" {
		t.Fatalf("unexpected pki section: %+v", cfg.PKI.Vault)
	}
	logs := &lockedWriter{w: &strings.Builder{}}
	s, err := NewServer(cfg, newTestLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
		secret, _ := os.ReadFile(secretFile)
		if strings.Contains(logs.String(), strings.TrimSpace(string(secret))) || strings.Contains(logs.String(), v.Token) {
			t.Error("a Vault secret appeared in the node's log")
		}
	})
	node := s.certs.Current().Leaf()
	if node == nil || len(node.CRLDistributionPoints) == 0 {
		t.Fatal("the node has no certificate from Vault")
	}

	// The PKI administrator (policy tearline-pki-admin-usa) issues the
	// subscriber's certificate; that policy cannot mint a node.
	rc, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	rc.SetToken(v.Token)
	tok, err := rc.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"tearline-pki-admin-usa"}, NoDefaultPolicy: true, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pki.NewVaultIssuer(ctx, pki.VaultConfig{Address: v.Addr, Mount: "pki-usa", Party: "USA", Auth: pki.VaultAuthToken, Token: tok.Auth.ClientToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Issue(ctx, pki.IssueRequest{Identity: mustIdentity(t, pki.KindNode, "rogue")}); err == nil {
		t.Fatal("the PKI admin policy may issue node certificates")
	}
	analyst, err := admin.Issue(ctx, pki.IssueRequest{Identity: mustIdentity(t, pki.KindService, "analyst"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := admin.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) != 1 || len(bundle[0].PermittedURIDomains) != 1 || bundle[0].PermittedURIDomains[0] != "usa.tearline.test" {
		t.Fatal("bootstrap.sh's root CA does not limit URI SANs to usa.tearline.test")
	}
	dialAs := func(is *pki.Issued) clientv1.ClientServiceClient {
		src, err := pki.StaticCertSource(is)
		if err != nil {
			t.Fatal(err)
		}
		trust := pki.NewTrust()
		trust.Set("USA", bundle)
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(src, trust, pki.WantNode("USA"), nil))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return clientv1.NewClientServiceClient(conn)
	}
	stream, err := dialAs(analyst).Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		t.Fatalf("subscription ended before the revocation: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	serials, err := admin.Serials(ctx, mustIdentity(t, pki.KindService, "analyst"))
	if err != nil || len(serials) != 1 || serials[0] != pki.VaultSerial(analyst.Leaf().SerialNumber) {
		t.Fatalf("Serials(analyst) = %v, %v", serials, err)
	}
	start := time.Now()
	if err := admin.Revoke(ctx, serials[0]); err != nil {
		t.Fatal(err)
	}
	bound := crlInterval + 2*time.Second
	select {
	case err := <-ended:
		took := time.Since(start)
		t.Logf("revocation in Vault to subscription closed by the node: %v (bound: crl_interval %v + 2s), stream error: %v",
			took.Round(time.Millisecond), crlInterval, err)
		if took > bound {
			t.Fatalf("closed after %v, over the bound %v", took, bound)
		}
	case <-time.After(bound + 5*time.Second):
		t.Fatal("the revoked subscriber's stream is still open")
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	_, err = dialAs(analyst).ListReports(cctx, &clientv1.ListReportsRequest{})
	if err == nil {
		t.Fatal("the revoked certificate was accepted at a new handshake")
	}
	if !strings.Contains(logs.String(), "certificate revoked") || !errors.Is(s.vault.rev.Check(analyst.Chain), pki.ErrRevoked) {
		t.Fatal("the node does not hold the revocation")
	}
	// The refused handshake is in the node's log, naming who tried.
	if l := logs.String(); !strings.Contains(l, "handshake refused") || !strings.Contains(l, "claimed_peer=spiffe://usa.tearline.test/party/USA/svc/analyst") || !strings.Contains(l, "serial="+serials[0]) {
		t.Fatalf("the node's log does not name the refused handshake:\n%s", l)
	}
}

func mustIdentity(t *testing.T, kind pki.Kind, name string) pki.Identity {
	t.Helper()
	id, err := pki.NewIdentity("USA", kind, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestVaultDevFederation runs `tearline dev --pki vault`'s code path: three
// parties, one PKI mount each in one Vault (set up by the federation), and a
// report published at USA reaches GBR over links authenticated by
// Vault-issued certificates.
func TestVaultDevFederation(t *testing.T) {
	v := testvault.Start(t)
	dir := t.TempDir()
	o := DevOptions{Dir: dir, BasePort: freePorts(t, 3), PKI: "vault", VaultAddr: v.Addr, VaultToken: v.Token}
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lockedWriter{w: &strings.Builder{}}
	logs := &lockedWriter{w: &strings.Builder{}}
	done := make(chan error, 1)
	go func() { done <- RunDev(ctx, o, newTestLogger(logs), lw) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunDev: %v", err)
		}
		if strings.Contains(logs.String(), v.Token) {
			t.Error("the Vault token appeared in the federation's log")
		}
	})
	for start := time.Now(); !strings.Contains(lw.String(), "Press Ctrl-C"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the federation did not start:\n%s", lw.String())
		}
	}
	f := &fed{t: t, dir: dir, servers: map[string]*Server{}}
	for _, p := range []string{"USA", "GBR", "CAN"} {
		addr, err := DevAddress(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(DevConfigPath(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.PKI.Mode != "vault" || cfg.PKI.Vault.Mount != pki.DefaultVaultMount(p) {
			t.Fatalf("%s node config: pki %+v", p, cfg.PKI)
		}
		f.servers[p] = &Server{lis: fixedAddr(addr)}
	}
	bundle, err := pki.ReadCertificatesFile(filepath.Join(dir, "USA", "ca", "bundle.pem"))
	if err != nil || len(bundle) != 1 || bundle[0].Subject.CommonName != "Tearline CA USA" {
		t.Fatalf("USA bundle is not the Vault mount's CA: %v", err)
	}
	usa := f.officer("USA")
	gbr := f.officer("GBR")
	var id string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := usa.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{
			{Banner: "SECRET//REL TO USA, GBR", Topics: []string{"CT"}, Title: "t", Body: []byte("hello from vault pki")}}})
		if err == nil {
			id = resp.Id
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish at USA: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		resp, err := gbr.ListReports(ctxT(t), &clientv1.ListReportsRequest{})
		if err == nil {
			for _, r := range resp.Reports {
				if r.Id == id {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %s did not reach GBR (last error %v)\n%s", id, err, lw.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fixedAddr is a listener that only reports an address, so that the fed
// helpers can dial servers that RunDev owns.
type fixedAddr string

func (a fixedAddr) Accept() (net.Conn, error) { return nil, errors.New("not a listener") }
func (a fixedAddr) Close() error              { return nil }
func (a fixedAddr) Addr() net.Addr            { return addrString(a) }

type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

// TestVaultPartnerCRL: a USA node learns that GBR revoked one of its node
// certificates from GBR's CRL at its published address (partners[].crl_url),
// closes the live stream of that certificate within crl_interval plus the
// fetch, and refuses it at the next handshake.
func TestVaultPartnerCRL(t *testing.T) {
	v := testvault.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	for _, p := range []string{"USA", "GBR"} {
		if err := pki.BootstrapVaultPKI(ctx, v.Addr, v.Token, pki.VaultBootstrap{Party: p}, nil); err != nil {
			t.Fatal(err)
		}
	}
	gbr, err := pki.NewVaultIssuer(ctx, pki.VaultConfig{Address: v.Addr, Mount: "pki-gbr", Party: "GBR", Auth: pki.VaultAuthToken, Token: v.Token})
	if err != nil {
		t.Fatal(err)
	}
	gbrCA, err := gbr.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(v.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCertificatesFile(filepath.Join(dir, "gbr-ca.pem"), gbrCA); err != nil {
		t.Fatal(err)
	}
	const crlInterval = time.Second
	cfg := &Config{Party: "USA", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		PKI: PKIConfig{Mode: "vault", Vault: &VaultConfig{Address: v.Addr, Mount: "pki-usa", Auth: "token",
			TokenFile: filepath.Join(dir, "token"), CRLInterval: crlInterval}},
		Partners: []PartnerConfig{{Party: "GBR", Address: "127.0.0.1:1", CAFile: filepath.Join(dir, "gbr-ca.pem"),
			CRLURL: v.Addr + "/v1/pki-gbr/crl"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})

	gbrNode, err := gbr.Issue(ctx, pki.IssueRequest{Identity: pki.Identity{Domain: "gbr.tearline.test", Party: "GBR", Kind: pki.KindNode, Name: "london"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pki.StaticCertSource(gbrNode)
	if err != nil {
		t.Fatal(err)
	}
	trust := pki.NewTrust()
	trust.Set("USA", mustBundle(t, s))
	dialGBR := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(src, trust, pki.WantNode("USA"), nil))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	watch, err := healthpb.NewHealthClient(dialGBR()).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("GBR's stream before the revocation: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := watch.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	start := time.Now()
	if err := gbr.Revoke(ctx, pki.VaultSerial(gbrNode.Leaf().SerialNumber)); err != nil {
		t.Fatal(err)
	}
	bound := crlInterval + 2*time.Second
	select {
	case <-ended:
		took := time.Since(start)
		t.Logf("GBR's revocation to its stream closed at USA: %v (bound %v)", took.Round(time.Millisecond), bound)
		if took > bound {
			t.Fatalf("over the bound %v", bound)
		}
	case <-time.After(bound + 5*time.Second):
		t.Fatal("USA kept the stream of a certificate GBR revoked")
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if _, err := healthpb.NewHealthClient(dialGBR()).Check(cctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("USA accepted a certificate GBR revoked")
	}
}

func mustBundle(t *testing.T, s *Server) []*x509.Certificate {
	t.Helper()
	b, err := s.vault.iss.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
