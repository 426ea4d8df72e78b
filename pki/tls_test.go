package pki

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"
)

// federation is two parties' CAs and a trust that knows both.
type federation struct {
	gbr, usa *DevCA
	trust    *Trust
}

func newFederation(t *testing.T) *federation {
	gbr, usa := newCA(t, "GBR"), newCA(t, "USA")
	return &federation{gbr: gbr, usa: usa, trust: trustOf(gbr, usa)}
}

func TestTLSConfigs(t *testing.T) {
	f := newFederation(t)
	src := staticSource(t, issue(t, f.gbr, mustID(t, "GBR", KindNode, "n1"), time.Hour))
	for name, cfg := range map[string]*tls.Config{
		"server": ServerTLS(src, f.trust, nil),
		"client": ClientTLS(src, f.trust, WantNode("USA"), nil),
	} {
		if cfg.MinVersion != tls.VersionTLS13 || cfg.MaxVersion != tls.VersionTLS13 {
			t.Errorf("%s: versions %x..%x, want TLS 1.3 only", name, cfg.MinVersion, cfg.MaxVersion)
		}
		if !cfg.SessionTicketsDisabled || cfg.ClientSessionCache != nil {
			t.Errorf("%s: session resumption enabled", name)
		}
		if len(cfg.Certificates) != 0 || cfg.RootCAs != nil || cfg.ClientCAs != nil {
			t.Errorf("%s: static certificates or pools set", name)
		}
		if cfg.VerifyConnection == nil {
			t.Errorf("%s: no VerifyConnection", name)
		}
	}
	if cfg := ServerTLS(src, f.trust, nil); cfg.ClientAuth != tls.RequireAnyClientCert || cfg.GetCertificate == nil {
		t.Errorf("server: ClientAuth %v", cfg.ClientAuth)
	}
	for name, fn := range map[string]func(){
		"server without trust": func() { ServerTLS(src, nil, nil) },
		"client without want":  func() { ClientTLS(src, f.trust, nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestHandshake(t *testing.T) {
	f := newFederation(t)
	serverID := mustID(t, "GBR", KindNode, "london")
	clientID := mustID(t, "USA", KindNode, "washington")
	server := staticSource(t, issue(t, f.gbr, serverID, time.Hour))
	client := staticSource(t, issue(t, f.usa, clientID, time.Hour))
	srv := startTLSServer(t, ServerTLS(server, f.trust, nil), f.trust, time.Now)

	conn, err := dial(t, srv.addr, ClientTLS(client, f.trust, WantNode("GBR"), nil))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := srv.result(t)
	if r.err != nil || r.id != clientID {
		t.Fatalf("server saw %v, %v; want %v", r.id, r.err, clientID)
	}
	cs := conn.ConnectionState()
	if cs.Version != tls.VersionTLS13 || cs.DidResume {
		t.Fatalf("version %x, resumed %v", cs.Version, cs.DidResume)
	}
	got, err := PeerIdentity(cs, f.trust, time.Now())
	if err != nil || got != serverID {
		t.Fatalf("client saw %v, %v; want %v", got, err, serverID)
	}
	// PeerIdentity re-verifies: at a later time the same state is refused.
	if _, err := PeerIdentity(cs, f.trust, time.Now().Add(2*time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("PeerIdentity after expiry: %v", err)
	}
	if _, err := PeerIdentity(tls.ConnectionState{}, f.trust, time.Now()); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("PeerIdentity of an incomplete handshake: %v", err)
	}

	// A service of the server's own party is accepted as well.
	svc := staticSource(t, issue(t, f.gbr, mustID(t, "GBR", KindService, "feed"), time.Hour))
	if _, err := dial(t, srv.addr, ClientTLS(svc, f.trust, WantIdentity(serverID), nil)); err != nil {
		t.Fatalf("dial as a service: %v", err)
	}
	if r := srv.result(t); r.err != nil || r.id != mustID(t, "GBR", KindService, "feed") {
		t.Fatalf("server saw %v, %v", r.id, r.err)
	}
}

// TestHandshakeRefusesClient: the server refuses every client certificate
// that Trust would refuse, and says why.
func TestHandshakeRefusesClient(t *testing.T) {
	f := newFederation(t)
	rogue := newCA(t, "USA")
	fra := newCA(t, "FRA")
	server := staticSource(t, issue(t, f.gbr, mustID(t, "GBR", KindNode, "london"), time.Hour))
	serverClock := newFakeClock()
	srv := startTLSServer(t, ServerTLS(server, f.trust, serverClock.Now), f.trust, serverClock.Now)
	usaNode := mustID(t, "USA", KindNode, "washington")

	tests := []struct {
		name    string
		cert    *Issued
		advance time.Duration
		want    string
	}{
		{"unknown CA", issue(t, rogue, usaNode, time.Hour), 0, "signed by an unknown CA"},
		{"party not trusted", issue(t, fra, mustID(t, "FRA", KindNode, "paris"), time.Hour), 0, "no CA is trusted for party FRA"},
		{"USA SAN signed by GBR's CA", forge(t, f.gbr, []string{usaNode.String()}, nil), 0, "signed by the CA of party GBR"},
		{"USA SAN in GBR's domain signed by GBR's CA", forge(t, f.gbr, []string{"spiffe://gbr.tearline.test/party/USA/node/washington"}, nil), 0,
			"signed by the CA of party GBR"},
		{"two URI SANs", forge(t, f.usa, []string{usaNode.String(), "spiffe://usa.tearline.test/party/USA/node/other"}, nil), 0, "2 URI SANs"},
		{"no URI SAN", forge(t, f.usa, nil, nil), 0, "no URI SAN"},
		{"expired", issue(t, f.usa, usaNode, time.Hour), 2 * time.Hour, "is expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serverClock.Add(tc.advance)
			defer serverClock.Add(-tc.advance)
			// The client itself trusts the server; it presents tc.cert as is
			// (StaticCertSource would refuse the malformed ones).
			cfg := ClientTLS(staticSource(t, issue(t, f.usa, usaNode, time.Hour)), f.trust, WantNode("GBR"), nil)
			tlsCert := tc.cert.TLSCertificate()
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tlsCert, nil }
			conn, err := dial(t, srv.addr, cfg)
			if err == nil {
				t.Fatalf("client connected as %v", conn.ConnectionState().PeerCertificates[0].URIs)
			}
			r := srv.result(t)
			if r.err == nil {
				t.Fatalf("server accepted %v", r.id)
			}
			if !errors.Is(r.err, ErrUntrusted) || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("server error %q, want ErrUntrusted saying %q", r.err, tc.want)
			}
			t.Logf("server: %v; client: %v", r.err, err)
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		cfg := ClientTLS(staticSource(t, issue(t, f.usa, usaNode, time.Hour)), f.trust, WantNode("GBR"), nil)
		cfg.GetClientCertificate = nil
		if _, err := dial(t, srv.addr, cfg); err == nil {
			t.Fatal("client without a certificate connected")
		}
		if r := srv.result(t); r.err == nil {
			t.Fatalf("server accepted %v", r.id)
		}
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		cfg := ClientTLS(staticSource(t, issue(t, f.usa, usaNode, time.Hour)), f.trust, WantNode("GBR"), nil)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		if _, err := dial(t, srv.addr, cfg); err == nil {
			t.Fatal("TLS 1.2 client connected")
		}
		if r := srv.result(t); r.err == nil {
			t.Fatalf("server accepted %v", r.id)
		}
	})
}

// TestHandshakeRefusesServer: the client refuses a server that Trust refuses
// or that is not the peer it wants.
func TestHandshakeRefusesServer(t *testing.T) {
	f := newFederation(t)
	rogue := newCA(t, "GBR")
	client := staticSource(t, issue(t, f.usa, mustID(t, "USA", KindNode, "washington"), time.Hour))
	gbrNode := mustID(t, "GBR", KindNode, "london")

	tests := []struct {
		name   string
		server *Issued
		want   func(Identity) error
		clock  func() time.Time
		err    string
	}{
		{"unknown CA", issue(t, rogue, gbrNode, time.Hour), WantNode("GBR"), nil, "signed by an unknown CA"},
		{"GBR SAN signed by USA's CA", forge(t, f.usa, []string{gbrNode.String()}, nil), WantNode("GBR"), nil, "signed by the CA of party USA"},
		{"not the wanted party", issue(t, f.usa, mustID(t, "USA", KindNode, "other"), time.Hour), WantNode("GBR"), nil, "want a node of party GBR"},
		{"a service, not a node", issue(t, f.gbr, mustID(t, "GBR", KindService, "feed"), time.Hour), WantNode("GBR"), nil, "want a node of party GBR"},
		{"not the wanted node", issue(t, f.gbr, mustID(t, "GBR", KindNode, "leeds"), time.Hour), WantIdentity(gbrNode), nil, "want " + gbrNode.String()},
		{"expired", issue(t, f.gbr, gbrNode, time.Hour), WantNode("GBR"), func() time.Time { return time.Now().Add(3 * time.Hour) }, "is expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server := staticSource(t, tc.server)
			srv := startTLSServer(t, ServerTLS(server, f.trust, nil), f.trust, time.Now)
			_, err := dial(t, srv.addr, ClientTLS(client, f.trust, tc.want, tc.clock))
			if err == nil {
				t.Fatal("client accepted the server")
			}
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("client error %q, want ErrUntrusted saying %q", err, tc.err)
			}
			if r := srv.result(t); r.err == nil {
				t.Fatal("server completed a connection the client refused")
			}
		})
	}
}
