package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTrustVerify(t *testing.T) {
	gbr := newCA(t, "GBR")
	usa := newCA(t, "USA")
	rogue := newCA(t, "GBR") // a GBR CA nobody trusts
	fra := newCA(t, "FRA")   // a party nobody trusts
	tr := trustOf(gbr, usa)
	now := time.Now()
	gbrNode := mustID(t, "GBR", KindNode, "london")

	tests := []struct {
		name    string
		chain   []*x509.Certificate
		at      time.Time
		want    Identity
		wantErr []string
	}{
		{"node of GBR", issue(t, gbr, gbrNode, time.Hour).Chain, now, gbrNode, nil},
		{"service of USA", issue(t, usa, mustID(t, "USA", KindService, "feed"), time.Hour).Chain, now,
			mustID(t, "USA", KindService, "feed"), nil},
		{"leaf with the root appended", append(issue(t, gbr, gbrNode, time.Hour).Chain, gbr.Certificate()), now, gbrNode, nil},
		{"zero time means now", issue(t, gbr, gbrNode, time.Hour).Chain, time.Time{}, gbrNode, nil},
		{"empty chain", nil, now, Identity{}, []string{"no certificate"}},
		{"party with no trusted CA", issue(t, fra, mustID(t, "FRA", KindNode, "paris"), time.Hour).Chain, now, Identity{},
			[]string{"no CA is trusted for party FRA"}},
		{"unknown CA", issue(t, rogue, gbrNode, time.Hour).Chain, now, Identity{},
			[]string{"signed by an unknown CA", "party GBR"}},
		{"USA identity signed by GBR's CA", forge(t, gbr, []string{"spiffe://usa.tearline.test/party/USA/node/n1"}, nil).Chain, now, Identity{},
			[]string{"signed by the CA of party GBR", "trusted only for GBR"}},
		{"USA identity in GBR's domain signed by GBR's CA", forge(t, gbr, []string{"spiffe://gbr.tearline.test/party/USA/node/n1"}, nil).Chain, now, Identity{},
			[]string{"signed by the CA of party GBR"}},
		{"USA identity with GBR's CA in the chain", append(forge(t, gbr, []string{"spiffe://usa.tearline.test/party/USA/node/n1"}, nil).Chain, gbr.Certificate()), now, Identity{},
			[]string{"signed by the CA of party GBR"}},
		{"GBR identity outside GBR's name constraint", forge(t, gbr, []string{"spiffe://usa.tearline.test/party/GBR/node/n1"}, nil).Chain, now, Identity{},
			[]string{"not permitted to name"}},
		{"no URI SAN", forge(t, gbr, nil, nil).Chain, now, Identity{}, []string{"no URI SAN"}},
		{"two URI SANs", forge(t, gbr, []string{gbrNode.String(), "spiffe://gbr.tearline.test/party/GBR/node/n2"}, nil).Chain, now, Identity{},
			[]string{"2 URI SANs"}},
		{"expired", issue(t, gbr, gbrNode, time.Hour).Chain, now.Add(2 * time.Hour), Identity{}, []string{"is expired"}},
		{"not yet valid", issue(t, gbr, gbrNode, time.Hour).Chain, now.Add(-time.Hour), Identity{}, []string{"is not yet valid"}},
		{"leaf is a CA", forge(t, gbr, []string{gbrNode.String()}, func(c *x509.Certificate) {
			c.IsCA = true
			c.KeyUsage |= x509.KeyUsageCertSign
		}).Chain, now, Identity{}, []string{"is a CA certificate"}},
		{"chain too long", append(issue(t, gbr, gbrNode, time.Hour).Chain, gbr.Certificate(), gbr.Certificate(), gbr.Certificate(), gbr.Certificate()), now, Identity{},
			[]string{"chain of 5 certificates"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tr.Verify(tc.chain, tc.at)
			if tc.wantErr == nil {
				if err != nil || id != tc.want {
					t.Fatalf("Verify = %v, %v; want %v", id, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the chain as %v", id)
			}
			if !errors.Is(err, ErrUntrusted) {
				t.Errorf("error %v does not wrap ErrUntrusted", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}

func TestTrustSet(t *testing.T) {
	gbr1 := newCA(t, "GBR")
	gbr2 := newCA(t, "GBR")
	usa := newCA(t, "USA")
	tr := trustOf(gbr1, usa)
	id := mustID(t, "GBR", KindNode, "n1")
	old := issue(t, gbr1, id, time.Hour).Chain
	rotated := issue(t, gbr2, id, time.Hour).Chain
	if got := tr.Parties(); !slices.Equal(got, []string{"GBR", "USA"}) {
		t.Fatalf("Parties = %v", got)
	}
	if _, err := tr.Verify(rotated, time.Now()); err == nil {
		t.Fatal("certificate of an untrusted CA accepted")
	}
	// A CA rotation: both CAs for a while, then the new one only.
	tr.Set("GBR", []*x509.Certificate{gbr1.Certificate(), gbr2.Certificate()})
	for _, c := range [][]*x509.Certificate{old, rotated} {
		if _, err := tr.Verify(c, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tr.Set("GBR", []*x509.Certificate{gbr2.Certificate()})
	if _, err := tr.Verify(old, time.Now()); err == nil {
		t.Fatal("certificate of a replaced CA accepted")
	}
	if got := tr.CAs("GBR"); len(got) != 1 || !got[0].Equal(gbr2.Certificate()) {
		t.Fatalf("CAs(GBR) = %v", got)
	}
	tr.Set("GBR", nil)
	if got := tr.Parties(); !slices.Equal(got, []string{"USA"}) {
		t.Fatalf("Parties after removal = %v", got)
	}
	if _, err := tr.Verify(rotated, time.Now()); err == nil || !strings.Contains(err.Error(), "no CA is trusted") {
		t.Fatalf("removed party: %v", err)
	}
}

// TestTrustVerifyIntermediates checks a Vault-shaped hierarchy: root, then an
// intermediate that signs leaves, the chain carrying the intermediate.
func TestTrustVerifyIntermediates(t *testing.T) {
	rootPub, rootKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "NLD root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		PermittedURIDomains: []string{"nld.tearline.test"},
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootPub, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	intPub, intKey, _ := ed25519.GenerateKey(rand.Reader)
	intTmpl := &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "NLD issuing"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign,
	}
	intDER, err := x509.CreateCertificate(rand.Reader, intTmpl, root, intPub, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(intDER)
	ca := &DevCA{party: "NLD", cert: inter, key: intKey, clock: time.Now}
	is := issue(t, ca, mustID(t, "NLD", KindNode, "hague"), time.Hour)
	chain := []*x509.Certificate{is.Chain[0], inter}
	if _, err := (&Issued{Chain: chain, Key: is.Key}).check(); err != nil {
		t.Fatal(err)
	}

	tr := NewTrust()
	tr.Set("NLD", []*x509.Certificate{root})
	if _, err := tr.Verify(chain, now); err != nil {
		t.Fatalf("leaf + intermediate: %v", err)
	}
	if _, err := tr.Verify(chain[:1], now); err == nil {
		t.Fatal("leaf without its intermediate accepted")
	}
	// The root's name constraint binds leaves under the intermediate too.
	bad := forge(t, ca, []string{"spiffe://gbr.tearline.test/party/NLD/node/x"}, nil)
	if _, err := tr.Verify(append(bad.Chain, inter), now); err == nil {
		t.Fatal("name constraint of the root not enforced below the intermediate")
	}
}

func mustSerial(t *testing.T) *big.Int {
	t.Helper()
	s, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTrustVerifyDER(t *testing.T) {
	gbr := newCA(t, "GBR")
	tr := trustOf(gbr)
	id := mustID(t, "GBR", KindNode, "n1")
	der := [][]byte{issue(t, gbr, id, time.Hour).Chain[0].Raw}
	got, certs, err := tr.VerifyDER(der, time.Now())
	if err != nil || got != id || len(certs) != 1 {
		t.Fatalf("VerifyDER = %v, %d certs, %v", got, len(certs), err)
	}
	root := gbr.Certificate().Raw
	tests := []struct {
		name  string
		chain [][]byte
		want  string
	}{
		{"empty", nil, "no certificate"},
		{"too long", [][]byte{der[0], root, root, root, root}, "chain of 5"},
		{"empty certificate", [][]byte{{}}, "is 0 bytes"},
		{"oversized certificate", [][]byte{make([]byte, MaxCertSize+1)}, "16384"},
		{"garbage", [][]byte{[]byte("not DER")}, "certificate 0"},
		{"garbage intermediate", [][]byte{der[0], []byte("not DER")}, "certificate 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tr.VerifyDER(tc.chain, time.Now())
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyDER error = %v, want ErrUntrusted saying %q", err, tc.want)
			}
		})
	}
}

func TestSignVerifyDER(t *testing.T) {
	gbr := newCA(t, "GBR")
	tr := trustOf(gbr)
	id := mustID(t, "GBR", KindNode, "n1")
	src, err := NewCertSource(gbr, id, time.Hour, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("report header")
	sig, chain := src.Sign(msg)
	got, certs, err := tr.VerifyDER(chain, time.Now())
	if err != nil || got != id {
		t.Fatalf("VerifyDER = %v, %v", got, err)
	}
	if !ed25519.Verify(certs[0].PublicKey.(ed25519.PublicKey), msg, sig) {
		t.Fatal("signature does not verify with the returned chain's key")
	}
	if ed25519.Verify(certs[0].PublicKey.(ed25519.PublicKey), []byte("another header"), sig) {
		t.Fatal("signature verifies another message")
	}
	if !certs[0].Equal(src.Current().Chain[0]) {
		t.Fatal("Sign returned another chain than the current one")
	}
	before := certs[0].NotBefore.Add(-time.Second)
	if _, _, err := tr.VerifyDER(chain, before); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not yet valid") {
		t.Fatalf("VerifyDER before NotBefore: %v", err)
	}
}

// TestTrustVerdictCache: a chain verified once is not verified again while
// the anchors stand, but the cached verdict never outlives them or the
// certificates' validity.
func TestTrustVerdictCache(t *testing.T) {
	gbr := newCA(t, "GBR")
	other := newCA(t, "GBR")
	tr := trustOf(gbr)
	now := time.Now()
	id := mustID(t, "GBR", KindNode, "london")
	chain := issue(t, gbr, id, time.Hour).Chain
	if got, err := tr.Verify(chain, now); err != nil || got != id {
		t.Fatalf("first Verify = %v, %v", got, err)
	}
	if _, ok := tr.cached(chainKey(chain), tr.gen, now); !ok {
		t.Fatal("a verified chain was not remembered")
	}
	if got, err := tr.Verify(chain, now.Add(time.Minute)); err != nil || got != id {
		t.Errorf("cached Verify = %v, %v", got, err)
	}
	// Outside the leaf's validity the cache does not answer: full check.
	if _, err := tr.Verify(chain, now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "is expired") {
		t.Errorf("Verify after expiry = %v, want expired", err)
	}
	if _, err := tr.Verify(chain, now.Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "not yet valid") {
		t.Errorf("Verify before validity = %v, want not yet valid", err)
	}
	// New anchors: the verdict made under the old ones is void.
	tr.Set("GBR", []*x509.Certificate{other.Certificate()})
	if _, err := tr.Verify(chain, now); err == nil || !strings.Contains(err.Error(), "unknown CA") {
		t.Errorf("Verify after the anchors changed = %v, want refused", err)
	}
	tr.Set("GBR", nil)
	if _, err := tr.Verify(chain, now); err == nil {
		t.Error("Verify after the party's anchors were removed succeeded")
	}
}
