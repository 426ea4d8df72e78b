package pki

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProfileRoundTrip(t *testing.T) {
	f := newFederation(t)
	officer := mustID(t, "GBR", KindOfficer, "j.smith")
	is := issue(t, f.gbr, officer, time.Hour)
	bundle, err := f.gbr.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "profile")
	if err := WriteProfile(dir, is, bundle); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, ProfileKeyFile: 0o600, ProfileCertFile: 0o644, ProfileCAFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %#o, want %#o", name, got, want)
		}
	}
	p, err := LoadProfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Identity != officer || len(p.Bundle) != 1 || !p.Bundle[0].Equal(f.gbr.Certificate()) || !p.Cert.Leaf.Equal(is.Chain[0]) {
		t.Fatalf("loaded profile %+v", p)
	}

	// The profile reaches its party's node.
	node := mustID(t, "GBR", KindNode, "london")
	srv := startTLSServer(t, ServerTLS(staticSource(t, issue(t, f.gbr, node, time.Hour)), f.trust, nil), f.trust, time.Now)
	pis, err := p.Issued()
	if err != nil {
		t.Fatal(err)
	}
	own := NewTrust()
	own.Set(p.Identity.Party, p.Bundle)
	if _, err := dial(t, srv.addr, ClientTLS(staticSource(t, pis), own, WantIdentity(node), nil)); err != nil {
		t.Fatalf("dial with the profile: %v", err)
	}
	if r := srv.result(t); r.err != nil || r.id != officer {
		t.Fatalf("server saw %v, %v", r.id, r.err)
	}

	// Writing again replaces the files.
	is2 := issue(t, f.gbr, officer, time.Hour)
	if err := WriteProfile(dir, is2, bundle); err != nil {
		t.Fatal(err)
	}
	if p2, err := LoadProfile(dir); err != nil || !p2.Cert.Leaf.Equal(is2.Chain[0]) {
		t.Fatalf("rewritten profile: %v", err)
	}
	if err := WriteProfile(t.TempDir(), is, nil); err == nil {
		t.Fatal("WriteProfile accepted an empty bundle")
	}
}

func TestLoadProfileErrors(t *testing.T) {
	f := newFederation(t)
	id := mustID(t, "GBR", KindService, "feed")
	is := issue(t, f.gbr, id, time.Hour)
	other := issue(t, f.gbr, id, time.Hour)
	keyPEM, err := encodeKeyPEM(other.Key)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		spoil func(dir string) error
		want  []string
	}{
		{"cert missing", func(dir string) error { return os.Remove(filepath.Join(dir, ProfileCertFile)) }, []string{ProfileCertFile, "no such file"}},
		{"key missing", func(dir string) error { return os.Remove(filepath.Join(dir, ProfileKeyFile)) }, []string{ProfileKeyFile, "no such file"}},
		{"bundle missing", func(dir string) error { return os.Remove(filepath.Join(dir, ProfileCAFile)) }, []string{ProfileCAFile, "no such file"}},
		{"cert corrupt", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ProfileCertFile), []byte("garbage"), 0o644)
		}, []string{ProfileCertFile, "not PEM"}},
		{"key is a certificate", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ProfileKeyFile), encodeCertsPEM(is.Chain), 0o600)
		}, []string{ProfileKeyFile, "want PRIVATE KEY"}},
		{"key of another certificate", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ProfileKeyFile), keyPEM, 0o600)
		}, []string{ProfileKeyFile, "does not match", ProfileCertFile}},
		{"bundle of another party", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ProfileCAFile), encodeCertsPEM([]*x509.Certificate{f.usa.Certificate()}), 0o644)
		}, []string{ProfileCertFile, "is not issued by a CA in", ProfileCAFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteProfile(dir, is, []*x509.Certificate{f.gbr.Certificate()}); err != nil {
				t.Fatal(err)
			}
			if err := tc.spoil(dir); err != nil {
				t.Fatal(err)
			}
			_, err := LoadProfile(dir)
			if err == nil {
				t.Fatal("LoadProfile succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}

func TestCertificatesFile(t *testing.T) {
	f := newFederation(t)
	path := filepath.Join(t.TempDir(), "bundle.pem")
	want := []*x509.Certificate{f.gbr.Certificate(), f.usa.Certificate()}
	if err := WriteCertificatesFile(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCertificatesFile(path)
	if err != nil || len(got) != 2 || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Fatalf("ReadCertificatesFile = %v, %v", got, err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCertificatesFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("empty bundle file: %v", err)
	}
}
