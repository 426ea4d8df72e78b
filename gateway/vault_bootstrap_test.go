package gateway

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/tearline/tearline/internal/testvault"
)

// runBootstrap runs deploy/vault/bootstrap.sh with token and args, and
// returns its exit code and stderr.
func runBootstrap(t *testing.T, v *testvault.Server, token string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "deploy", "vault", "bootstrap.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+token)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if strings.Contains(stderr.String(), v.Token) {
		t.Fatal("bootstrap.sh printed the Vault token")
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

// TestVaultBootstrapChecksFirst: bootstrap.sh with a token Vault refuses,
// or a secret id file it cannot write, says so and changes nothing in
// Vault (before, it created the mount, CA, roles and policies, and minted
// a secret id nobody received); and a run again names the role's other
// secret ids, which --destroy-other-secret-ids destroys.
func TestVaultBootstrapChecksFirst(t *testing.T) {
	v := testvault.Start(t)
	rc, err := vault.NewClient(&vault.Config{Address: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	rc.SetToken(v.Token)
	mounted := func() bool {
		t.Helper()
		ms, err := rc.Sys().ListMounts()
		if err != nil {
			t.Fatal(err)
		}
		_, ok := ms["pki-nzl/"]
		return ok
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "sid")
	if code, stderr := runBootstrap(t, v, "hvs.not-a-token", "--party", "NZL", "--secret-id-file", secretFile); code != 1 || !strings.Contains(stderr, "did not accept VAULT_TOKEN") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("a bad token: exit %d: %s", code, stderr)
	}
	if code, stderr := runBootstrap(t, v, v.Token, "--party", "NZL", "--secret-id-file", filepath.Join(dir, "nope", "sid")); code != 2 || !strings.Contains(stderr, "does not exist or cannot be written") {
		t.Fatalf("a secret id file in a missing folder: exit %d: %s", code, stderr)
	}
	if mounted() {
		t.Fatal("a refused bootstrap created the mount")
	}

	accessors := func() []string {
		t.Helper()
		s, err := rc.Logical().List("auth/approle/role/tearline-node-nzl/secret-id")
		if err != nil {
			t.Fatal(err)
		}
		if s == nil {
			return nil
		}
		var out []string
		for _, k := range s.Data["keys"].([]any) {
			out = append(out, k.(string))
		}
		return out
	}
	for i := range 2 {
		if code, stderr := runBootstrap(t, v, v.Token, "--party", "NZL", "--secret-id-file", secretFile); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, stderr)
		} else if i == 1 && !strings.Contains(stderr, "the role has 1 other secret id(s) still valid") {
			t.Fatalf("run again did not name the older secret id: %s", stderr)
		}
	}
	if !mounted() || len(accessors()) != 2 {
		t.Fatalf("after two runs: mounted %v, %d secret ids; want mounted, 2", mounted(), len(accessors()))
	}
	if code, stderr := runBootstrap(t, v, v.Token, "--party", "NZL", "--secret-id-file", secretFile, "--destroy-other-secret-ids"); code != 0 || !strings.Contains(stderr, "destroyed the role's 2 other secret id(s)") {
		t.Fatalf("--destroy-other-secret-ids: exit %d: %s", code, stderr)
	}
	if n := len(accessors()); n != 1 {
		t.Fatalf("%d secret ids after --destroy-other-secret-ids, want 1 (the new one)", n)
	}
	// The one left is the one in the file: it logs in.
	sid, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	roleID, err := rc.Logical().Read("auth/approle/role/tearline-node-nzl/role-id")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID.Data["role_id"], "secret_id": strings.TrimSpace(string(sid))}); err != nil {
		t.Fatalf("the secret id in the file does not log in: %v", err)
	}
}
