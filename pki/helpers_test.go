package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newCA opens a development CA for party in a fresh temporary directory.
func newCA(t testing.TB, party string, opts ...DevCAOption) *DevCA {
	t.Helper()
	ca, err := OpenDevCA(t.TempDir(), party, opts...)
	if err != nil {
		t.Fatalf("OpenDevCA(%s): %v", party, err)
	}
	return ca
}

func mustID(t testing.TB, party string, kind Kind, name string) Identity {
	t.Helper()
	id, err := NewIdentity(party, kind, name)
	if err != nil {
		t.Fatalf("NewIdentity: %v", err)
	}
	return id
}

func issue(t testing.TB, ca *DevCA, id Identity, ttl time.Duration) *Issued {
	t.Helper()
	is, err := ca.Issue(context.Background(), IssueRequest{Identity: id, TTL: ttl})
	if err != nil {
		t.Fatalf("Issue(%s): %v", id, err)
	}
	return is
}

// trustOf trusts each CA for its own party.
func trustOf(cas ...*DevCA) *Trust {
	tr := NewTrust()
	for _, ca := range cas {
		tr.Set(ca.Party(), []*x509.Certificate{ca.Certificate()})
	}
	return tr
}

func staticSource(t testing.TB, is *Issued) *CertSource {
	t.Helper()
	s, err := StaticCertSource(is)
	if err != nil {
		t.Fatalf("StaticCertSource: %v", err)
	}
	return s
}

// forge has ca sign a leaf the CA itself would refuse to issue: any URI
// SANs, and whatever mutate changes. It uses the CA's key directly, as a
// compromised or misbehaving CA would.
func forge(t testing.TB, ca *DevCA, uris []string, mutate func(*x509.Certificate)) *Issued {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	now := ca.clock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	// The SAN extension is built by hand so that the URIs go into the
	// certificate byte for byte, unnormalised by net/url.
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	if len(uris) == 0 { // a SAN, but no URI SAN
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("node.example")})
	}
	san, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidExtensionSubjectAltName, Critical: true, Value: san}}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatalf("forge: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Issued{Chain: []*x509.Certificate{leaf}, Key: key}
}

// serverConn is what the test server learnt from one connection.
type serverConn struct {
	id  Identity
	err error
}

// tlsServer is a real TLS echo server on loopback.
type tlsServer struct {
	addr    string
	results chan serverConn
}

// startTLSServer serves cfg on 127.0.0.1: each connection is handshaken,
// its peer identity re-derived with PeerIdentity and reported on results,
// then echoed until it closes. Everything is stopped at cleanup.
func startTLSServer(t testing.TB, cfg *tls.Config, trust *Trust, clock func() time.Time) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String(), results: make(chan serverConn, 64)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	report := func(r serverConn) {
		select {
		case s.results <- r:
		default:
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					report(serverConn{err: err})
					return
				}
				id, err := PeerIdentity(tc.ConnectionState(), trust, clock())
				report(serverConn{id: id, err: err})
				if err != nil {
					return
				}
				_, _ = io.Copy(tc, tc)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// result waits for the server's report on the next connection.
func (s *tlsServer) result(t testing.TB) serverConn {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the server")
		return serverConn{}
	}
}

// dial connects to addr with cfg and completes the handshake. In TLS 1.3
// the server judges the client's certificate after the client's handshake
// ends, so dial also makes one echo round trip, which fails if the server
// refused the client.
func dial(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := dialRaw(addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// dialRaw is dial for goroutines other than the test's: the caller closes
// the connection.
func dialRaw(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if err := echo(tc, "hello"); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// echo sends msg and expects it back.
func echo(c *tls.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch")
	}
	return nil
}
