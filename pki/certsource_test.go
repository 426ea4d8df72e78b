package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// runSource runs src until the test ends and checks that Run then returns nil.
func runSource(t *testing.T, src *CertSource) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// waitForSerial waits until src serves a certificate whose serial is not old.
func waitForSerial(t *testing.T, src *CertSource, old *big.Int) *big.Int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := src.Current().Chain[0].SerialNumber; s.Cmp(old) != 0 {
			return s
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("certificate was not renewed")
	return nil
}

// TestRotationUnderLiveServer renews a live server's certificate by moving
// the clock: new handshakes get the new certificate, handshakes made while
// the certificate is swapped all succeed, and connections made before keep
// working (after etcd's TestTLSReloadAtomicReplace).
func TestRotationUnderLiveServer(t *testing.T) {
	clock := newFakeClock()
	gbr := newCA(t, "GBR", WithDevCAClock(clock.Now))
	usa := newCA(t, "USA", WithDevCAClock(clock.Now))
	trust := trustOf(gbr, usa)
	serverID := mustID(t, "GBR", KindNode, "london")
	src, err := NewCertSource(gbr, serverID, time.Hour,
		WithClock(clock.Now), WithJitter(0), WithCheckInterval(2*time.Millisecond), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	client := staticSource(t, issue(t, usa, mustID(t, "USA", KindNode, "washington"), 24*time.Hour))
	clientCfg := ClientTLS(client, trust, WantIdentity(serverID), clock.Now)
	srv := startTLSServer(t, ServerTLS(src, trust, clock.Now), trust, clock.Now)
	runSource(t, src)

	conn1, err := dial(t, srv.addr, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	serial1 := conn1.ConnectionState().PeerCertificates[0].SerialNumber
	if serial1.Cmp(src.Current().Chain[0].SerialNumber) != 0 {
		t.Fatal("server did not present the current certificate")
	}

	// Handshakes all through the rotations must succeed.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var handshakes, failures atomic.Int64
	var firstErr atomic.Value
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialRaw(srv.addr, clientCfg)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				handshakes.Add(1)
				c.Close()
			}
		})
	}

	// Renewal is due at two thirds of the lifetime (40 min), not before.
	clock.Add(30 * time.Minute)
	time.Sleep(50 * time.Millisecond)
	if s := src.Current().Chain[0].SerialNumber; s.Cmp(serial1) != 0 {
		t.Fatal("certificate renewed before its renewal time")
	}
	clock.Add(15 * time.Minute)
	serial2 := waitForSerial(t, src, serial1)

	conn2, err := dial(t, srv.addr, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := conn2.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serial2) != 0 {
		t.Fatalf("new handshake saw serial %x, want the renewed %x", got, serial2)
	}
	if err := echo(conn1, "still there"); err != nil {
		t.Fatalf("connection made before the rotation broke: %v", err)
	}

	// Again: now the first certificate has expired, yet its connection lives on.
	clock.Add(45 * time.Minute)
	serial3 := waitForSerial(t, src, serial2)
	if now := clock.Now(); !now.After(conn1.ConnectionState().PeerCertificates[0].NotAfter) {
		t.Fatal("test clock did not pass the first certificate's expiry")
	}
	conn3, err := dial(t, srv.addr, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := conn3.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serial3) != 0 {
		t.Fatalf("new handshake saw serial %x, want %x", got, serial3)
	}
	if err := echo(conn1, "and still"); err != nil {
		t.Fatalf("first connection broke: %v", err)
	}
	if err := echo(conn2, "and this one"); err != nil {
		t.Fatalf("second connection broke: %v", err)
	}

	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d handshakes during rotation failed, first: %v", n, n+handshakes.Load(), firstErr.Load())
	}
	if handshakes.Load() == 0 {
		t.Fatal("no handshakes during rotation")
	}
	t.Logf("%d handshakes during two rotations", handshakes.Load())
}

// flakyIssuer fails the next fails calls to Issue, like a sealed Vault, and
// otherwise issues through the real CA.
type flakyIssuer struct {
	Issuer
	mu    sync.Mutex
	fails int
	calls int
}

func (f *flakyIssuer) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	f.mu.Lock()
	f.calls++
	fail := f.fails > 0
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		return nil, errors.New("vault is sealed")
	}
	return f.Issuer.Issue(ctx, req)
}

func (f *flakyIssuer) failNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = n
}

func (f *flakyIssuer) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestCertSourceRetriesWithBackoff(t *testing.T) {
	clock := newFakeClock()
	iss := &flakyIssuer{Issuer: newCA(t, "GBR", WithDevCAClock(clock.Now))}
	src, err := NewCertSource(iss, mustID(t, "GBR", KindNode, "n1"), time.Hour,
		WithClock(clock.Now), WithCheckInterval(time.Millisecond), WithBackoff(time.Millisecond, 4*time.Millisecond),
		WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	old := src.Current()
	iss.failNext(3)
	runSource(t, src)
	clock.Add(50 * time.Minute)
	waitForSerial(t, src, old.Chain[0].SerialNumber)
	if got := iss.callCount(); got != 1+3+1 {
		t.Fatalf("Issue called %d times, want 5 (first, 3 failures, success)", got)
	}

	// A source whose first certificate cannot be had is an error.
	iss.failNext(1)
	if _, err := NewCertSource(iss, mustID(t, "GBR", KindNode, "n2"), time.Hour); err == nil || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("NewCertSource with a failing issuer: %v", err)
	}
}

func TestCertSourceRenewalTime(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, "GBR", WithDevCAClock(clock.Now))
	id := mustID(t, "GBR", KindNode, "n1")
	for _, tc := range []struct{ fraction, jitter float64 }{{0.5, 0}, {0.5, 0.2}, {2.0 / 3, 0.1}} {
		src, err := NewCertSource(ca, id, time.Hour, WithClock(clock.Now),
			WithRenewFraction(tc.fraction), WithJitter(tc.jitter), WithLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		lo := time.Duration(tc.fraction * (1 - tc.jitter) * float64(time.Hour))
		hi := time.Duration(tc.fraction * (1 + tc.jitter) * float64(time.Hour))
		for range 50 {
			if err := src.renew(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Measured from receipt, not from the back-dated NotBefore;
			// NotAfter is encoded in whole seconds.
			d := src.cur.Load().renewAt.Sub(clock.Now())
			if d < lo-time.Second || d > hi+time.Second {
				t.Fatalf("fraction %v jitter %v: renewal after %v, want %v..%v", tc.fraction, tc.jitter, d, lo, hi)
			}
		}
	}
}

// wrongIssuer issues through the real CA, then spoils the result.
type wrongIssuer struct {
	*DevCA
	spoil func(*Issued) *Issued
}

func (w wrongIssuer) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	is, err := w.DevCA.Issue(ctx, req)
	if err != nil {
		return nil, err
	}
	return w.spoil(is), nil
}

func TestNewCertSourceErrors(t *testing.T) {
	ca := newCA(t, "GBR")
	id := mustID(t, "GBR", KindNode, "n1")
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		iss  Issuer
		id   Identity
		ttl  time.Duration
		opts []CertSourceOption
		want string
	}{
		{"nil issuer", nil, id, time.Hour, nil, "nil issuer"},
		{"other party", ca, mustID(t, "USA", KindNode, "n1"), time.Hour, nil, "not of the issuer's party"},
		{"invalid identity", ca, Identity{}, time.Hour, nil, "bad identity"},
		{"zero TTL", ca, id, 0, nil, "TTL must be positive"},
		{"fraction 1", ca, id, time.Hour, []CertSourceOption{WithRenewFraction(1)}, "renew fraction"},
		{"fraction 0", ca, id, time.Hour, []CertSourceOption{WithRenewFraction(0)}, "renew fraction"},
		{"jitter 1", ca, id, time.Hour, []CertSourceOption{WithJitter(1)}, "jitter"},
		{"negative jitter", ca, id, time.Hour, []CertSourceOption{WithJitter(-0.1)}, "jitter"},
		{"nil clock", ca, id, time.Hour, []CertSourceOption{WithClock(nil)}, "nil clock"},
		{"bad backoff", ca, id, time.Hour, []CertSourceOption{WithBackoff(time.Second, time.Millisecond)}, "backoff"},
		{"issuer certifies another identity", wrongIssuer{ca, func(*Issued) *Issued {
			return issue(t, ca, mustID(t, "GBR", KindNode, "someone-else"), time.Hour)
		}}, id, time.Hour, nil, "certified spiffe://gbr.tearline.test/party/GBR/node/someone-else instead"},
		{"issuer returns another key", wrongIssuer{ca, func(is *Issued) *Issued {
			return &Issued{Chain: is.Chain, Key: otherKey}
		}}, id, time.Hour, nil, "key does not match"},
		{"issuer returns no chain", wrongIssuer{ca, func(is *Issued) *Issued { return &Issued{Key: is.Key} }}, id, time.Hour, nil, "empty chain"},
		{"issuer returns an expired certificate", wrongIssuer{ca, func(*Issued) *Issued {
			return forge(t, ca, []string{id.String()}, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Second) })
		}}, id, time.Hour, nil, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewCertSource(tc.iss, tc.id, tc.ttl, append(tc.opts, WithLogger(testLogger(t)))...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCertSource = %v, %v; want error saying %q", src, err, tc.want)
			}
		})
	}
}

func TestCertSourceRun(t *testing.T) {
	ca := newCA(t, "GBR")
	src, err := NewCertSource(ca, mustID(t, "GBR", KindNode, "n1"), time.Hour, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, src)
	time.Sleep(10 * time.Millisecond)
	if err := src.Run(context.Background()); err == nil {
		t.Fatal("second concurrent Run did not fail")
	}

	static := staticSource(t, issue(t, ca, mustID(t, "GBR", KindOfficer, "j.smith"), time.Hour))
	if static.Identity() != mustID(t, "GBR", KindOfficer, "j.smith") {
		t.Fatalf("static identity %v", static.Identity())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := static.Run(ctx); err != nil {
		t.Fatalf("static Run: %v", err)
	}
	if _, err := StaticCertSource(&Issued{}); err == nil {
		t.Fatal("StaticCertSource accepted an empty Issued")
	}
}
