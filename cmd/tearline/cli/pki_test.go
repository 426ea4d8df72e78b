package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/internal/fsizelimit"
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
		{"pki", "revoke"}, // nothing named
	} {
		if code, _, stderr := run(t, append(args, vaultArgs...)...); code != 2 {
			t.Fatalf("%v: exit %d, want 2 (usage): %s", args, code, stderr)
		}
	}

	// Where the profile cannot be written, or would replace one, nothing is
	// issued: revoking by name then finds no certificate.
	nothingIssuedFor := func(name string) {
		t.Helper()
		if code, _, stderr := run(t, append([]string{"pki", "revoke", "--officer", name}, vaultArgs...)...); code != 1 || !strings.Contains(stderr, "no unexpired, unrevoked certificate") {
			t.Fatalf("a certificate was issued for %s: revoke said exit %d: %s", name, code, stderr)
		}
	}
	file := filepath.Join(t.TempDir(), "usa.yaml")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyIsDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(keyIsDir, pki.ProfileKeyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, out string
		code      int
		says      string
	}{
		{"carol", out, 2, "already holds a profile (key.pem): give another folder, or --force"},
		{"frank", file, 2, "is a file: give a folder for the profile"},
		{"gina", "/proc/nope/x", 1, "--out /proc/nope/x"},
		{"ivan", keyIsDir, 2, "key.pem is not a file, so no profile can be written there"},
	} {
		code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", c.name, "--out", c.out}, vaultArgs...)...)
		if code != c.code || !strings.Contains(stderr, c.says) {
			t.Fatalf("issue %s to %s: exit %d, %q; want exit %d saying %q", c.name, c.out, code, stderr, c.code, c.says)
		}
		nothingIssuedFor(c.name)
	}
	if _, err := os.Stat("/proc/nope"); err == nil {
		t.Fatal("/proc/nope exists")
	}
	// --force replaces the profile.
	if code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", "carol", "--out", out, "--force"}, vaultArgs...)...); code != 0 {
		t.Fatalf("issue --force: exit %d: %s", code, stderr)
	}
	if prof, err := pki.LoadProfile(out); err != nil || prof.Identity.Name != "carol" {
		t.Fatalf("after --force the profile is %v (%v), want carol's", prof, err)
	}

	// A node config decides party and mount: flags that say otherwise are
	// refused, not ignored.
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(v.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "usa.yaml")
	if err := os.WriteFile(cfg, []byte("party: USA\nlisten: 127.0.0.1:0\ndata_dir: data\npki: {mode: vault, vault: {address: '"+v.Addr+"', mount: pki-usa, role: node, auth: token, token_file: token}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ flag, value, says string }{
		{"--party", "GBR", "--party GBR, but " + cfg + " is USA's node config"},
		{"--mount", "pki-gbr", "--mount pki-gbr, but " + cfg + " names mount pki-usa"},
	} {
		code, _, stderr := run(t, "pki", "--config", cfg, c.flag, c.value, "issue", "--officer", "hank", "--out", filepath.Join(dir, "hank"))
		if code != 2 || !strings.Contains(stderr, c.says) {
			t.Fatalf("%s %s with --config: exit %d, %q; want a usage error saying %q", c.flag, c.value, code, stderr, c.says)
		}
		if _, err := os.Stat(filepath.Join(dir, "hank")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused issue left its --out folder: %v", err)
		}
	}
	nothingIssuedFor("hank")

	t.Setenv("VAULT_TOKEN", "")
	if code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", "bob", "--out", t.TempDir()}, vaultArgs...)...); code != 2 || !strings.Contains(stderr, "no Vault token") {
		t.Fatalf("no token: exit %d: %s", code, stderr)
	}
}

// readProfileDir reads every entry of dir: name, mode and contents.
func readProfileDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, de := range des {
		fi, err := os.Lstat(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, de.Name()))
		m[de.Name()] = fmt.Sprintf("%v %s", fi.Mode(), data)
	}
	return m
}

// TestVaultPKIIssueForce: `pki issue` writes a new profile folder whole;
// `--force` that fails halfway through writing (the disk fills up after the
// key) leaves the old profile byte for byte, leaves nothing temporary and
// names the serial to revoke; `--force` that succeeds replaces every file,
// with the profile's modes.
func TestVaultPKIIssueForce(t *testing.T) {
	v := testvault.Start(t)
	if err := pki.BootstrapVaultPKI(context.Background(), v.Addr, v.Token, pki.VaultBootstrap{Party: "USA"}, nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_TOKEN", v.Token)
	t.Setenv("VAULT_ADDR", "")
	vaultArgs := []string{"--vault-addr", v.Addr, "--party", "USA"}
	parent := t.TempDir()
	out := filepath.Join(parent, "bob")
	wantModes := func(what string) {
		t.Helper()
		for name, want := range map[string]os.FileMode{".": 0o700, pki.ProfileKeyFile: 0o600, pki.ProfileCertFile: 0o644, pki.ProfileCAFile: 0o644} {
			fi, err := os.Stat(filepath.Join(out, name))
			if err != nil || fi.Mode().Perm() != want {
				t.Fatalf("%s: %s: %v, %v; want mode %#o", what, name, fi, err, want)
			}
		}
		if des, err := os.ReadDir(parent); err != nil || len(des) != 1 {
			t.Fatalf("%s: beside the profile: %v, %v; want nothing", what, des, err)
		}
	}

	// First issue into a folder that does not exist yet.
	if code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", "bob", "--out", out}, vaultArgs...)...); code != 0 {
		t.Fatalf("pki issue: exit %d: %s", code, stderr)
	}
	wantModes("first issue")
	old := readProfileDir(t, out)
	if len(old) != 3 {
		t.Fatalf("the profile folder holds %d entries, want 3", len(old))
	}
	key, _ := os.ReadFile(filepath.Join(out, pki.ProfileKeyFile))
	cert, _ := os.ReadFile(filepath.Join(out, pki.ProfileCertFile))
	const limit = 400 // a new key fits, a new certificate does not
	if len(key) >= limit || len(cert) <= limit {
		t.Fatalf("key %d bytes, certificate %d: the limit %d does not fall between", len(key), len(cert), limit)
	}

	// --force where the disk fills up after the key.
	restore := fsizelimit.Set(t, limit)
	code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", "carol", "--out", out, "--force"}, vaultArgs...)...)
	restore()
	if code != 1 || !strings.Contains(stderr, "but its profile could not be written, so its key is lost: revoke it (tearline pki revoke ") || !strings.Contains(stderr, "file too large") {
		t.Fatalf("issue --force with the disk full: exit %d, %q; want exit 1 naming the serial to revoke", code, stderr)
	}
	if got := readProfileDir(t, out); !maps.Equal(got, old) {
		t.Fatalf("a failed --force changed the old profile: %v", slices.Sorted(maps.Keys(got)))
	}
	wantModes("failed --force")
	if prof, err := pki.LoadProfile(out); err != nil || prof.Identity.Name != "bob" {
		t.Fatalf("after a failed --force the profile is %v (%v), want bob's", prof, err)
	}

	// --force that succeeds replaces every file.
	if code, _, stderr := run(t, append([]string{"pki", "issue", "--officer", "carol", "--out", out, "--force"}, vaultArgs...)...); code != 0 {
		t.Fatalf("issue --force: exit %d: %s", code, stderr)
	}
	wantModes("--force")
	now := readProfileDir(t, out)
	for _, name := range []string{pki.ProfileKeyFile, pki.ProfileCertFile} {
		if now[name] == old[name] {
			t.Fatalf("--force left the old %s", name)
		}
	}
	if len(now) != 3 || now[pki.ProfileCAFile] != old[pki.ProfileCAFile] {
		t.Fatalf("--force wrote %v, want the three profile files with the same CA bundle", slices.Sorted(maps.Keys(now)))
	}
	if prof, err := pki.LoadProfile(out); err != nil || prof.Identity.Name != "carol" {
		t.Fatalf("after --force the profile is %v (%v), want carol's", prof, err)
	}
}
