package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/pki"
)

// configSeeds are node configs: the documented example, its vault form, a
// minimal one, and variants that are refused.
func configSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	example, err := os.ReadFile(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ex := string(example)
	dev := "  mode: dev\n  dev_ca_dir: /var/lib/tearline/ca\n"
	seeds := map[string][]byte{
		"example": example,
		"vault-approle": []byte(strings.Replace(ex, dev, "  mode: vault\n  vault:\n    address: https://vault.usa.example.org:8200\n    mount: pki-usa\n    role: node\n"+
			"    auth: approle\n    role_id: 5e1b7c0a\n    secret_id_file: /etc/tearline/vault-secret-id\n    crl_interval: 30s\n", 1)),
		"vault-token-crl": []byte(strings.Replace(strings.Replace(ex, dev, "  mode: vault\n  vault:\n    address: http://127.0.0.1:8200\n    mount: pki-usa\n    auth: token\n    token_file: t\n", 1),
			"    ca_file: /etc/tearline/partners/GBR-ca.pem\n", "    ca_file: /etc/tearline/partners/GBR-ca.pem\n    crl_url: https://vault.gbr.example.org:8200/v1/pki-gbr/crl\n", 1)),
		"minimal":          []byte("party: USA\nlisten: 127.0.0.1:7401\ndata_dir: data\npki: {mode: dev, dev_ca_dir: ca}\n"),
		"two-partners":     []byte("party: AUS\nlisten: :7401\ndata_dir: d\npki: {mode: dev, dev_ca_dir: ca}\npartners:\n- {party: NZL, address: 'nzl:1', ca_file: n.pem}\n- {party: CAN, address: 'can:1', ca_file: c.pem, agreement: {max_classification: TOP SECRET, valid_until: 2030-01-01T00:00:00+01:00}}\n"),
		"half-vault":       []byte(strings.Replace(ex, dev, "  mode: vault\n  vault:\n    address: https://v:8200\n", 1)),
		"dev-and-vault":    []byte(strings.Replace(ex, dev, dev+"  vault:\n    address: https://v:8200\n", 1)),
		"unknown-key":      []byte(ex + "\nlog_levle: debug\n"),
		"partner-twice":    []byte(strings.Replace(ex, "  - party: GBR", "  - party: USA", 1)),
		"agreement-no-end": []byte(strings.Replace(ex, "      valid_until: 2027-01-01T00:00:00Z\n", "", 1)),
		"short-ttl":        []byte(strings.Replace(ex, "cert_ttl: 24h", "cert_ttl: 1s", 1)),
		"alias-bomb":       []byte("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"),
		"two-documents":    []byte(string(example) + "\n---\nparty: GBR\n"),
		"empty":            nil,
		"not-a-map":        []byte("- party: USA\n"),
		"tabs":             []byte("party:\tUSA\n\tlisten: x\n"),
	}
	return seeds
}

// FuzzConfig parses arbitrary bytes as a node config file (LoadConfig
// without the file). Whatever the bytes: no panic, and every error is a
// config error. A config that loads has every field it claims: a party
// code, a node identity, a listen address, a data folder, one certificate
// source configured completely, partners with codes, addresses, CA files
// and well-formed agreements, subscribers with clearances; validating it
// again changes nothing; and written out and read back it is the same.
func FuzzConfig(f *testing.F) {
	for _, b := range configSeeds(f) {
		f.Add(b)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "node.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data, path)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error is not a config error: %v", err)
			}
			if c != nil {
				t.Fatal("a config and an error")
			}
			return
		}
		checkLoadedConfig(t, c)
		before := *c
		if err := c.Validate(); err != nil || !reflect.DeepEqual(before, *c) {
			t.Fatalf("validating a loaded config again: %v; changed %v", err, !reflect.DeepEqual(before, *c))
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("a loaded config does not marshal: %v", err)
		}
		back, err := parseConfig(out, path)
		if err != nil {
			t.Fatalf("a loaded config written out does not load: %v\n%s", err, out)
		}
		again, _ := yaml.Marshal(back)
		if !bytes.Equal(out, again) {
			t.Fatalf("a loaded config changes on a round trip:\n%s\n---\n%s", out, again)
		}
	})
}

func checkLoadedConfig(t *testing.T, c *Config) {
	t.Helper()
	fail := func(format string, args ...any) { t.Fatalf("a loaded config "+format, args...) }
	if !marking.ValidParty(c.Party) {
		fail("has party %q", c.Party)
	}
	if id, err := c.NodeIdentity(); err != nil || id.Party != c.Party || id.Kind != pki.KindNode {
		fail("has node identity %v (%v)", id, err)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		fail("has listen %q", c.Listen)
	}
	if c.DataDir == "" {
		fail("has no data_dir")
	}
	switch c.PKI.Mode {
	case "dev":
		if c.PKI.DevCADir == "" || c.PKI.Vault != nil {
			fail("in pki mode dev has dev_ca_dir %q and vault %v", c.PKI.DevCADir, c.PKI.Vault)
		}
	case "vault":
		v := c.PKI.Vault
		if v == nil || c.PKI.DevCADir != "" || v.Address == "" || v.Mount == "" || v.CRLInterval <= 0 {
			fail("in pki mode vault has vault %+v and dev_ca_dir %q", v, c.PKI.DevCADir)
		}
		switch v.Auth {
		case pki.VaultAuthToken:
			if v.TokenFile == "" {
				fail("with vault auth token has no token_file")
			}
		case pki.VaultAuthAppRole:
			if v.RoleID == "" || v.SecretIDFile == "" {
				fail("with vault auth approle lacks role_id or secret_id_file")
			}
		default:
			fail("has vault auth %q", v.Auth)
		}
	default:
		fail("has pki mode %q", c.PKI.Mode)
	}
	if c.PKI.CertTTL.Minutes() < 1 || c.MaxMessageBytes < 1<<20 {
		fail("has cert_ttl %s and max_message_bytes %d", c.PKI.CertTTL, c.MaxMessageBytes)
	}
	seen := map[string]bool{c.Party: true}
	for i, p := range c.Partners {
		if !marking.ValidParty(p.Party) || seen[p.Party] {
			fail("has partner %d %q (own party or repeated)", i, p.Party)
		}
		seen[p.Party] = true
		if _, _, err := net.SplitHostPort(p.Address); err != nil || p.CAFile == "" {
			fail("has partner %s with address %q and ca_file %q", p.Party, p.Address, p.CAFile)
		}
		if p.CRLURL != "" && c.PKI.Mode != "vault" {
			fail("has a crl_url for %s outside pki mode vault", p.Party)
		}
		if a := p.Agreement; a != nil {
			if _, ok := marking.Default.Rank(a.MaxClassification); !ok || a.ValidUntil.IsZero() || !a.ValidFrom.IsZero() && !a.ValidFrom.Before(a.ValidUntil) {
				fail("has agreement with %s: %+v", p.Party, a)
			}
			if _, err := marking.NormalizeTopics(a.Topics); err != nil {
				fail("has agreement topics %q with %s", a.Topics, p.Party)
			}
		}
	}
	names := map[string]bool{}
	for _, s := range c.Subscribers {
		if _, err := pki.NewIdentity(c.Party, pki.KindService, s.Name); err != nil || names[s.Name] {
			fail("has subscriber %q (invalid or repeated)", s.Name)
		}
		names[s.Name] = true
		if _, ok := marking.Default.Rank(s.Clearance); !ok {
			fail("has subscriber %s with clearance %q", s.Name, s.Clearance)
		}
	}
}

// The config seeds are what they are named, and the committed corpus is
// the seeds.
func TestConfigSeeds(t *testing.T) {
	valid := map[string]bool{"example": true, "vault-approle": true, "vault-token-crl": true, "minimal": true, "two-partners": true, "two-documents": true}
	path := filepath.Join(t.TempDir(), "node.yaml")
	for name, b := range configSeeds(t) {
		if _, err := parseConfig(b, path); (err == nil) != valid[name] {
			t.Errorf("seed %s: %v", name, err)
		}
		got, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzConfig", name))
		if err != nil {
			t.Errorf("seed %s is not in the committed corpus: %v", name, err)
			continue
		}
		if want := corpusBytes(b); !bytes.Equal(got, want) {
			t.Errorf("committed seed %s differs from the seed (rewrite with TEARLINE_WRITE_FUZZ_CORPUS=1)", name)
		}
	}
}

func corpusBytes(b []byte) []byte { return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b) }

// TestWriteConfigCorpus rewrites testdata/fuzz/FuzzConfig when
// TEARLINE_WRITE_FUZZ_CORPUS=1.
func TestWriteConfigCorpus(t *testing.T) {
	if os.Getenv("TEARLINE_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set TEARLINE_WRITE_FUZZ_CORPUS=1 to rewrite the committed seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzConfig")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range configSeeds(t) {
		if err := os.WriteFile(filepath.Join(dir, name), corpusBytes(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
