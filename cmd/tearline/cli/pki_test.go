package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/internal/testvault"
	"github.com/tearline/tearline/pki"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestVaultPKIVerbs: `tearline pki issue` writes a working profile from
// Vault, `tearline pki revoke --officer` revokes it in Vault, and the
// command-line mistakes are usage errors.
func TestVaultPKIVerbs(t *testing.T) {
	v := testvault.Start(t)
	ctx := context.Background()
	if err := pki.BootstrapVaultPKI(ctx, v.Addr, v.Token, pki.VaultBootstrap{Party: "USA"}, nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_TOKEN", v.Token)
	t.Setenv("VAULT_ADDR", "")
	out := t.TempDir()
	vaultArgs := []string{"--vault-addr", v.Addr, "--party", "USA"}

	code, stdout, stderr := run(t, append([]string{"pki", "issue", "--officer", "bob", "--out", out}, vaultArgs...)...)
	if code != 0 {
		t.Fatalf("pki issue: exit %d: %s", code, stderr)
	}
	prof, err := pki.LoadProfile(out)
	if err != nil {
		t.Fatalf("the issued profile does not load: %v", err)
	}
	if prof.Identity.String() != "spiffe://usa.tearline.test/party/USA/officer/bob" {
		t.Fatalf("profile identity %s", prof.Identity)
	}
	serial := pki.VaultSerial(prof.Cert.Leaf.SerialNumber)
	if !strings.Contains(stdout, serial) {
		t.Fatalf("pki issue did not print the serial %s: %s", serial, stdout)
	}
	if life := time.Until(prof.Cert.Leaf.NotAfter); life < 6*24*time.Hour || life > 7*24*time.Hour+time.Minute {
		t.Fatalf("default lifetime %v, want 7 days", life)
	}
	if strings.Contains(stdout+stderr, v.Token) {
		t.Fatal("the token was printed")
	}

	code, stdout, stderr = run(t, append([]string{"pki", "revoke", "--officer", "bob"}, vaultArgs...)...)
	if code != 0 || !strings.Contains(stdout, "revoked "+serial) {
		t.Fatalf("pki revoke --officer bob: exit %d: %s %s", code, stdout, stderr)
	}
	iss, err := pki.NewVaultIssuer(ctx, pki.VaultConfig{Address: v.Addr, Mount: "pki-usa", Party: "USA", Auth: pki.VaultAuthToken, Token: v.Token})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := iss.Bundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := iss.CRL(ctx, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(prof.Cert.Leaf.SerialNumber) != 0 {
		t.Fatalf("Vault's CRL does not list bob's certificate: %d entries", len(crl.RevokedCertificateEntries))
	}
	// Nothing left to revoke for bob; a serial works too.
	if code, _, stderr = run(t, append([]string{"pki", "revoke", "--officer", "bob"}, vaultArgs...)...); code != 1 || !strings.Contains(stderr, "no unexpired, unrevoked certificate") {
		t.Fatalf("second revoke: exit %d: %s", code, stderr)
	}
	if code, stdout, stderr = run(t, append([]string{"pki", "revoke", strings.ReplaceAll(serial, ":", "")}, vaultArgs...)...); code != 0 || !strings.Contains(stdout, "revoked "+serial) {
		t.Fatalf("revoke by plain-hex serial: exit %d: %s %s", code, stdout, stderr)
	}

	for _, args := range [][]string{
		{"pki", "issue", "--officer", "bob"},                             // no --out
		{"pki", "issue", "--officer", "bob", "--svc", "x", "--out", out}, // both
		{"pki", "issue", "--out", out},                                   // neither
		{"pki", "revoke", "zz-not-hex"},
	} {
		if code, _, stderr := run(t, append(args, vaultArgs...)...); code != 2 {
			t.Fatalf("%v: exit %d, want 2 (usage): %s", args, code, stderr)
		}
	}
	t.Setenv("VAULT_TOKEN", "")
	if code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", "bob", "--out", out}, vaultArgs...)...); code != 2 || !strings.Contains(stderr, "no Vault token") {
		t.Fatalf("no token: exit %d: %s", code, stderr)
	}
}
