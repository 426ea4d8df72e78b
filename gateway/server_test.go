package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/internal/freeport"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// A fuzzing run's own goroutines outlive the tests: checking for
	// leaks would only hold every fuzz worker open while goleak retries.
	f, w := flag.Lookup("test.fuzz"), flag.Lookup("test.fuzzworker")
	if f != nil && f.Value.String() != "" || w != nil && w.Value.String() == "true" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// fed is an in-process federation of real servers on loopback mTLS.
type fed struct {
	t       testing.TB
	dir     string
	servers map[string]*Server
}

func freePorts(t testing.TB, n int) int {
	t.Helper()
	base, err := freeport.Range(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

func startFed(t testing.TB, parties ...string) *fed {
	return startFedWith(t, nil, parties...)
}

// startFedWith is startFed with a chance to change each node's config
// before it starts.
func startFedWith(t testing.TB, mutate func(*Config), parties ...string) *fed {
	t.Helper()
	f := &fed{t: t, dir: t.TempDir(), servers: map[string]*Server{}}
	paths, err := DevInit(DevOptions{Dir: f.dir, Parties: parties, BasePort: freePorts(t, len(parties))})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		for _, p := range paths {
			cfg, err := LoadConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			mutate(cfg)
			if err := WriteConfig(p, cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(paths))
	for _, p := range paths {
		s := loadServer(t, p)
		f.servers[s.cfg.Party] = s
		go func() { done <- s.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range paths {
			if err := <-done; err != nil {
				t.Errorf("server run: %v", err)
			}
		}
	})
	return f
}

// loadServer makes the node whose config is at path, listening already
// and logging nowhere; nothing runs until its Run.
func loadServer(t testing.TB, path string) *Server {
	t.Helper()
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// client connects as the profile in dir to party's node.
func (f *fed) client(party, profileDir string) clientv1.ClientServiceClient {
	f.t.Helper()
	prof, err := pki.LoadProfile(profileDir)
	if err != nil {
		f.t.Fatal(err)
	}
	is, err := prof.Issued()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.clientWith(party, is, prof.Bundle)
}

func (f *fed) clientWith(party string, is *pki.Issued, serverCAs []*x509.Certificate) clientv1.ClientServiceClient {
	f.t.Helper()
	conn := f.conn(party, is, serverCAs)
	return clientv1.NewClientServiceClient(conn)
}

func (f *fed) conn(party string, is *pki.Issued, serverCAs []*x509.Certificate) *grpc.ClientConn {
	f.t.Helper()
	src, err := pki.StaticCertSource(is)
	if err != nil {
		f.t.Fatal(err)
	}
	trust := pki.NewTrust()
	trust.Set(party, serverCAs)
	want := func(id pki.Identity) error {
		if id.Party != party || id.Kind != pki.KindNode {
			return errors.New("not the node")
		}
		return nil
	}
	conn, err := grpc.NewClient(f.servers[party].Addr(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(src, trust, want, nil))))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

func (f *fed) officer(party string) clientv1.ClientServiceClient {
	return f.client(party, filepath.Join(f.dir, party))
}

func (f *fed) ca(party string) *pki.DevCA {
	f.t.Helper()
	ca, err := pki.OpenDevCA(filepath.Join(f.dir, party, "ca"), party)
	if err != nil {
		f.t.Fatal(err)
	}
	return ca
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// publishToGBR publishes at USA (through usa, an officer's client) a
// report of one portion releasable to GBR, and returns its id.
func publishToGBR(t testing.TB, usa clientv1.ClientServiceClient) string {
	t.Helper()
	resp, err := usa.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetId()
}

// arrives reports whether report id can be read through c (a client of
// the receiving node) within the given time.
func arrives(t testing.TB, c clientv1.ClientServiceClient, id string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := c.GetReport(ctxT(t), &clientv1.GetReportRequest{Id: id}); err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// awaitCount waits up to 10 s until c's node lists want reports.
func awaitCount(t *testing.T, c clientv1.ClientServiceClient, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n := count(t, c); n != want; n = count(t, c) {
		if time.Now().After(deadline) {
			t.Fatalf("the node lists %d reports after 10 s, want %d", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(t *testing.T, c clientv1.ClientServiceClient) int {
	t.Helper()
	resp, err := c.ListReports(ctxT(t), &clientv1.ListReportsRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetReports())
}

// badPublish is a publish request the node refuses, what it answers,
// and a phrase its message holds.
type badPublish struct {
	name string
	req  *clientv1.PublishRequest
	code codes.Code
	want string
}

// badPublishes are the bad inputs of TestPublishBadInput and
// TestPublishStreamAnswersEachRequest. All but the last fit in a message.
func badPublishes() []badPublish {
	ok := &clientv1.NewPortion{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}
	return []badPublish{
		{"malformed banner", &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRT//REL TO GBR", Body: []byte("x")}}}, codes.InvalidArgument, `"SECRT"`},
		{"bad control", &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//NOFRON", Body: []byte("x")}}}, codes.InvalidArgument, "NOFRON"},
		{"unknown party in REL TO", &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, FRA", Body: []byte("x")}}}, codes.InvalidArgument, "FRA"},
		{"empty report", &clientv1.PublishRequest{}, codes.InvalidArgument, "at least one portion"},
		{"empty portion", &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA"}}}, codes.InvalidArgument, "empty"},
		{"content over 4 MiB", &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA", Body: make([]byte, 4<<20+1)}}}, codes.InvalidArgument, "the limit is"},
		{"bad topic", &clientv1.PublishRequest{Topics: []string{"no spaces allowed"}, Portions: []*clientv1.NewPortion{ok}}, codes.InvalidArgument, "topic"},
		{"route via non-partner", &clientv1.PublishRequest{Route: []*reportv1.RouteEntry{{Via: "CAN", To: "GBR"}}, Portions: []*clientv1.NewPortion{ok}}, codes.InvalidArgument, "CAN"},
		{"message over 8 MiB", &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA", Body: make([]byte, 9<<20)}}}, codes.ResourceExhausted, ""},
	}
}

// Bad publish input gets InvalidArgument with a sentence that says what is
// wrong, and stores nothing.
func TestPublishBadInput(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	usa := f.officer("USA")
	ok := &clientv1.NewPortion{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}
	cases := badPublishes()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := usa.Publish(ctxT(t), tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("Publish = %v (%s), want %s mentioning %q", st.Code(), st.Message(), tc.code, tc.want)
			}
		})
	}
	if n := count(t, usa); n != 0 {
		t.Fatalf("bad input stored %d reports", n)
	}
	// A good one still works after all that.
	if _, err := usa.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{ok}}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, usa); n != 1 {
		t.Fatalf("after one good publish the node holds %d", n)
	}
}

// A client certificate from a CA the node does not trust is refused at the
// handshake.
func TestUntrustedClientCARefused(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	rogue, err := pki.OpenDevCA(t.TempDir(), "USA")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := pki.NewIdentity("USA", pki.KindOfficer, "mallory")
	is, err := rogue.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := f.ca("USA").Bundle(context.Background())
	c := f.clientWith("USA", is, bundle)
	_, err = c.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA", Body: []byte("x")}}})
	if code := status.Code(err); code != codes.Unavailable && code != codes.Unauthenticated {
		t.Fatalf("rogue client got %v, want the handshake refused", err)
	}
	if n := count(t, f.officer("USA")); n != 0 {
		t.Fatalf("rogue publish stored %d reports", n)
	}
}

// forge issues, with partyCA's key read from its files, a certificate for
// an identity of another party: what a rogue or compromised partner CA
// could do.
func (f *fed) forge(caParty string, id pki.Identity) *pki.Issued {
	f.t.Helper()
	dir := filepath.Join(f.dir, caParty, "ca")
	caCert := f.ca(caParty).Certificate()
	keyPEM, err := os.ReadFile(filepath.Join(dir, pki.DevCAKeyFile))
	if err != nil {
		f.t.Fatal(err)
	}
	blk, _ := pem.Decode(keyPEM)
	caKey, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		f.t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs:        []*url.URL{id.URI()},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, pub, caKey)
	if err != nil {
		f.t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &pki.Issued{Chain: []*x509.Certificate{leaf}, Key: priv}
}

// GBR's CA is trusted, but only for GBR: a certificate it issued claiming a
// USA node identity is refused by CAN's node, and nothing is received.
func TestPartnerCAVouchingForAnotherPartyRefused(t *testing.T) {
	f := startFed(t, "USA", "GBR", "CAN")
	id, _ := pki.NewIdentity("USA", pki.KindNode, "usa")
	if _, err := f.ca("GBR").Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour}); err == nil {
		t.Fatal("GBR's development CA issued a USA identity")
	}
	forged := f.forge("GBR", id)
	canBundle, _ := f.ca("CAN").Bundle(context.Background())
	stream, err := federationv1.NewFederationServiceClient(f.conn("CAN", forged, canBundle)).Deliver(ctxT(t))
	if err == nil {
		_, err = stream.Recv()
	}
	if code := status.Code(err); code != codes.Unavailable && code != codes.Unauthenticated {
		t.Fatalf("forged USA node got %v, want the handshake refused", err)
	}
	// The same forged identity as a client of CAN's officers' service.
	c := f.clientWith("CAN", forged, canBundle)
	if _, err := c.ListReports(ctxT(t), &clientv1.ListReportsRequest{}); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Unauthenticated {
		t.Fatalf("forged identity listing at CAN: %v", err)
	}
	// A genuine GBR node certificate from the same CA is accepted at the
	// handshake (the refusal above is about the party, not the CA).
	gid, _ := pki.NewIdentity("GBR", pki.KindNode, "gbr2")
	genuine, err := f.ca("GBR").Issue(context.Background(), pki.IssueRequest{Identity: gid, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c = f.clientWith("CAN", genuine, canBundle)
	if _, err := c.ListReports(ctxT(t), &clientv1.ListReportsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GBR node at CAN's client service: %v, want PermissionDenied (authenticated, not authorised)", err)
	}
}

// Identities of the right CA but the wrong kind or party are refused by the
// authorisation table: a partner's officer may not deliver, a partner's
// node may not publish, an officer of another party may not read.
func TestAuthorisationTable(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	gbrCA := f.ca("GBR")
	usaBundle, _ := f.ca("USA").Bundle(context.Background())
	issue := func(kind pki.Kind, name string) *pki.Issued {
		id, _ := pki.NewIdentity("GBR", kind, name)
		is, err := gbrCA.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return is
	}
	// A GBR officer at USA's node: trusted CA, but not USA's officer.
	c := f.clientWith("USA", issue(pki.KindOfficer, "liaison"), usaBundle)
	if _, err := c.ListReports(ctxT(t), &clientv1.ListReportsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GBR officer listing USA's reports: %v, want PermissionDenied", err)
	} else if want := "may not call ListReports: only officers of USA may"; !strings.Contains(err.Error(), want) {
		t.Fatalf("GBR officer listing USA's reports: %v, want it to say %q", err, want)
	}
	// A GBR officer may not use the federation service either.
	stream, err := federationv1.NewFederationServiceClient(f.conn("USA", issue(pki.KindOfficer, "liaison"), usaBundle)).Deliver(ctxT(t))
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GBR officer delivering to USA: %v, want PermissionDenied", err)
	}
	// GBR's node may deliver but not publish at USA.
	c = f.clientWith("USA", issue(pki.KindNode, "gbr"), usaBundle)
	if _, err := c.Publish(ctxT(t), &clientv1.PublishRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GBR node publishing at USA: %v, want PermissionDenied", err)
	}
	if authz["/tearline.client.v1.ClientService/PublishStream"] != authz["/tearline.client.v1.ClientService/Publish"] {
		t.Fatal("PublishStream is open to other callers than Publish")
	}
	ps, err := c.PublishStream(ctxT(t))
	if err == nil {
		_, err = ps.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GBR node publishing at USA over a stream: %v, want PermissionDenied", err)
	}
}

// A share that releases nothing is a denial with the rule id, the next
// step and no portion content.
func TestShareDenialDetails(t *testing.T) {
	f := startFed(t, "USA", "GBR", "CAN")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	body := "the asset's name is BLUEBIRD"
	resp, err := usa.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR//ORCON", Body: []byte(body)}}})
	if err != nil {
		t.Fatal(err)
	}
	awaitCount(t, gbr, 1)
	_, err = gbr.Share(ctxT(t), &clientv1.ShareRequest{Id: resp.GetId(), To: "CAN"})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("share = %v, want FailedPrecondition", err)
	}
	var info *errdetails.ErrorInfo
	var pf *errdetails.PreconditionFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.PreconditionFailure:
			pf = d
		}
	}
	if info == nil || info.GetReason() != "third-party-rule" || info.GetMetadata()["report"] != resp.GetId() || info.GetMetadata()["next"] == "" {
		t.Fatalf("ErrorInfo = %v", info)
	}
	if pf == nil || len(pf.GetViolations()) != 1 {
		t.Fatalf("PreconditionFailure = %v", pf)
	}
	if strings.Contains(st.Message(), "BLUEBIRD") || strings.Contains(fmt.Sprint(st.Proto()), "BLUEBIRD") {
		t.Fatal("the denial leaks portion content")
	}
	if !strings.Contains(st.Message(), "consent") {
		t.Fatalf("denial message %q does not say what would allow it", st.Message())
	}
	// Unknown report and unknown partner are clear errors too.
	if _, err := gbr.Share(ctxT(t), &clientv1.ShareRequest{Id: "01234567-0000-7000-8000-000000000000", To: "CAN"}); status.Code(err) != codes.NotFound {
		t.Fatalf("share of unknown report: %v", err)
	}
	if _, err := gbr.Share(ctxT(t), &clientv1.ShareRequest{Id: resp.GetId(), To: "FRA"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("share to unknown partner: %v", err)
	}
}
