package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevCAIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := OpenDevCA(dir, "GBR")
	if err != nil {
		t.Fatal(err)
	}
	root := ca.Certificate()
	if got, want := root.Subject.CommonName, "Tearline development CA GBR"; got != want {
		t.Errorf("CA CN = %q, want %q", got, want)
	}
	if !root.IsCA || !root.MaxPathLenZero || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA=%v MaxPathLenZero=%v KeyUsage=%v", root.IsCA, root.MaxPathLenZero, root.KeyUsage)
	}
	if got := root.PermittedURIDomains; len(got) != 1 || got[0] != "gbr.tearline.test" {
		t.Errorf("CA PermittedURIDomains = %q", got)
	}
	if life := root.NotAfter.Sub(root.NotBefore); life < 10*365*24*time.Hour {
		t.Errorf("CA lifetime %v, want 10 years", life)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, DevCACertFile: 0o600, DevCAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", name, got, want)
		}
	}

	id := mustID(t, "GBR", KindNode, "london")
	before := time.Now()
	is := issue(t, ca, id, 2*time.Hour)
	leaf := is.Chain[0]
	if len(is.Chain) != 1 {
		t.Errorf("chain has %d certificates, want the leaf only", len(is.Chain))
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf SANs: URIs %v DNS %v IP %v email %v", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf IsCA=%v KeyUsage=%v", leaf.IsCA, leaf.KeyUsage)
	}
	if eku := leaf.ExtKeyUsage; len(eku) != 2 || eku[0] != x509.ExtKeyUsageServerAuth || eku[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("leaf ExtKeyUsage = %v", eku)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", leaf.SerialNumber)
	}
	if nb := leaf.NotBefore; nb.After(before.Add(-time.Minute+time.Second)) || nb.Before(before.Add(-2*time.Minute)) {
		t.Errorf("NotBefore %v, want about a minute before %v", nb, before)
	}
	if life := leaf.NotAfter.Sub(before); life < 2*time.Hour-5*time.Second || life > 2*time.Hour+5*time.Second {
		t.Errorf("leaf valid for %v after issue, want 2h", life)
	}
	if got, err := trustOf(ca).Verify(is.Chain, time.Now()); err != nil || got != id {
		t.Fatalf("Verify = %v, %v", got, err)
	}
	if _, err := is.check(); err != nil {
		t.Fatal(err)
	}
	other := issue(t, ca, id, 0)
	if other.Chain[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two certificates with the same serial")
	}
	if life := other.Chain[0].NotAfter.Sub(time.Now()); life < DefaultLeafTTL-time.Minute {
		t.Errorf("default TTL gave %v", life)
	}
	bundle, err := ca.Bundle(context.Background())
	if err != nil || len(bundle) != 1 || !bundle[0].Equal(root) {
		t.Fatalf("Bundle = %v, %v", bundle, err)
	}
}

func TestDevCAReopen(t *testing.T) {
	dir := t.TempDir()
	ca1, err := OpenDevCA(dir, "USA")
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := OpenDevCA(dir, "USA")
	if err != nil {
		t.Fatal(err)
	}
	if !ca1.Certificate().Equal(ca2.Certificate()) || !bytes.Equal(ca1.key, ca2.key) {
		t.Fatal("reopening the directory gave another CA")
	}
	is := issue(t, ca2, mustID(t, "USA", KindService, "feed"), time.Hour)
	if _, err := trustOf(ca1).Verify(is.Chain, time.Now()); err != nil {
		t.Fatalf("certificate of the reopened CA not trusted under the first: %v", err)
	}
}

func TestDevCARefuses(t *testing.T) {
	ca := newCA(t, "GBR")
	ctx := context.Background()
	tests := []struct {
		name string
		req  IssueRequest
		want string
	}{
		{"other party", IssueRequest{Identity: mustID(t, "USA", KindNode, "n1"), TTL: time.Hour}, "refuses to issue"},
		{"own party in other domain", IssueRequest{Identity: Identity{"usa.tearline.test", "GBR", KindNode, "n1"}, TTL: time.Hour}, "domain is not gbr.tearline.test"},
		{"invalid identity", IssueRequest{Identity: Identity{"gbr.tearline.test", "GBR", KindNode, "N1"}, TTL: time.Hour}, "invalid name"},
		{"zero identity", IssueRequest{TTL: time.Hour}, "invalid party"},
		{"negative TTL", IssueRequest{Identity: mustID(t, "GBR", KindNode, "n1"), TTL: -time.Second}, "negative TTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is, err := ca.Issue(ctx, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue = %v, %v; want error containing %q", is, err, tc.want)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ca.Issue(cctx, IssueRequest{Identity: mustID(t, "GBR", KindNode, "n1")}); err == nil {
		t.Fatal("Issue with a cancelled context succeeded")
	}
	if _, err := OpenDevCA(t.TempDir(), "gbr"); err == nil {
		t.Fatal("OpenDevCA accepted an invalid party code")
	}
}

func TestDevCATTLCappedAtCAExpiry(t *testing.T) {
	clock := newFakeClock()
	ca := newCA(t, "GBR", WithDevCAClock(clock.Now))
	clock.Add(10*365*24*time.Hour - time.Hour)
	is := issue(t, ca, mustID(t, "GBR", KindNode, "n1"), 24*time.Hour)
	if !is.Chain[0].NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Fatalf("leaf NotAfter %v, want the CA's %v", is.Chain[0].NotAfter, ca.Certificate().NotAfter)
	}
	clock.Add(2 * time.Hour)
	if _, err := ca.Issue(context.Background(), IssueRequest{Identity: mustID(t, "GBR", KindNode, "n1")}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired CA issued: %v", err)
	}
}

func TestDevCABadFiles(t *testing.T) {
	// A second CA whose files are swapped in.
	otherDir := t.TempDir()
	if _, err := OpenDevCA(otherDir, "GBR"); err != nil {
		t.Fatal(err)
	}
	readOther := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(otherDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	leafPEM := encodeCertsPEM(issue(t, newCA(t, "GBR"), mustID(t, "GBR", KindNode, "n1"), time.Hour).Chain)

	tests := []struct {
		name  string
		party string
		setup func(dir string) error
		want  []string
	}{
		{"cert missing", "GBR", func(dir string) error { return os.Remove(filepath.Join(dir, DevCACertFile)) },
			[]string{DevCACertFile, "is missing"}},
		{"key missing", "GBR", func(dir string) error { return os.Remove(filepath.Join(dir, DevCAKeyFile)) },
			[]string{DevCAKeyFile, "is missing"}},
		{"cert corrupt", "GBR", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, DevCACertFile), []byte("not a certificate"), 0o600)
		}, []string{DevCACertFile, "not PEM"}},
		{"cert truncated", "GBR", func(dir string) error {
			b, _ := os.ReadFile(filepath.Join(dir, DevCACertFile))
			return os.WriteFile(filepath.Join(dir, DevCACertFile), b[:len(b)/2], 0o600)
		}, []string{DevCACertFile}},
		{"key corrupt", "GBR", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, DevCAKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, []string{DevCAKeyFile}},
		{"key of another CA", "GBR", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, DevCAKeyFile), readOther(DevCAKeyFile), 0o600)
		}, []string{DevCAKeyFile, "does not match", DevCACertFile}},
		{"cert of another CA", "GBR", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, DevCACertFile), readOther(DevCACertFile), 0o600)
		}, []string{DevCAKeyFile, "does not match"}},
		{"leaf instead of CA", "GBR", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, DevCACertFile), leafPEM, 0o600)
		}, []string{DevCACertFile, "not a CA"}},
		{"CA of another party", "USA", func(string) error { return nil },
			[]string{DevCACertFile, "not the CA of party USA"}},
		{"key readable by others", "GBR", func(dir string) error { return os.Chmod(filepath.Join(dir, DevCAKeyFile), 0o644) },
			[]string{DevCAKeyFile, "group or others"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := OpenDevCA(dir, "GBR"); err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(dir); err != nil {
				t.Fatal(err)
			}
			ca, err := OpenDevCA(dir, tc.party)
			if err == nil {
				t.Fatalf("OpenDevCA succeeded (CA %q)", ca.Certificate().Subject.CommonName)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			t.Log(err)
		})
	}

	t.Run("expired CA", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := OpenDevCA(dir, "GBR"); err != nil {
			t.Fatal(err)
		}
		later := func() time.Time { return time.Now().Add(11 * 365 * 24 * time.Hour) }
		if _, err := OpenDevCA(dir, "GBR", WithDevCAClock(later)); err == nil || !strings.Contains(err.Error(), "valid only") {
			t.Fatalf("OpenDevCA of an expired CA: %v", err)
		}
	})
}
