package gateway

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
)

// vaultExample is the example config switched to pki.mode vault, with the
// pki section replaced by body.
func vaultExample(t *testing.T, body string) string {
	t.Helper()
	base, err := os.ReadFile(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	from := "  mode: dev\n  dev_ca_dir: /var/lib/tearline/ca\n"
	if !strings.Contains(string(base), from) {
		t.Fatalf("example no longer contains %q", from)
	}
	path := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(base), from, body, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The commented vault section of the example is valid as written.
func TestExampleVaultSectionValidates(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	for _, l := range strings.Split(string(base), "\n") {
		switch {
		case strings.HasPrefix(l, "  #   mode: vault"):
			in = true
		case in && !strings.HasPrefix(l, "  #  "):
			in = false
		}
		if in {
			l = "  " + strings.TrimPrefix(l, "  #   ")
			if strings.Contains(l, "# token_file") {
				continue
			}
			lines = append(lines, l)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("no vault section found in the example: %q", lines)
	}
	c, err := LoadConfig(vaultExample(t, strings.Join(lines, "\n")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := c.PKI.Vault
	if c.PKI.Mode != "vault" || v == nil || v.Auth != "approle" || v.Mount != "pki-usa" || v.CRLInterval != 30*time.Second {
		t.Fatalf("unexpected vault config: %+v", v)
	}
}

func TestVaultConfigErrorsNameWhatIsMissing(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"no vault section", "  mode: vault\n", []string{"needs a pki.vault section"}},
		{"empty vault section", "  mode: vault\n  vault: {}\n", []string{"half configured", "pki.vault.address", "pki.vault.mount", "pki.vault.auth"}},
		{"token without file", "  mode: vault\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: token}\n", []string{"pki.vault.token_file"}},
		{"approle without secret", "  mode: vault\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: approle, role_id: r1}\n", []string{"pki.vault.secret_id_file"}},
		{"approle without anything", "  mode: vault\n  vault: {address: http://127.0.0.1:8200, auth: approle}\n", []string{"pki.vault.mount", "pki.vault.role_id", "pki.vault.secret_id_file"}},
		{"unknown auth", "  mode: vault\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: ldap}\n", []string{"pki.vault.auth \"ldap\""}},
		{"mixed auth", "  mode: vault\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: token, token_file: t, secret_id_file: s}\n", []string{"auth is token"}},
		{"dev dir with vault", "  mode: vault\n  dev_ca_dir: ca\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: token, token_file: t}\n", []string{"no fallback"}},
		{"vault with dev", "  mode: dev\n  dev_ca_dir: ca\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: token, token_file: t}\n", []string{"pki.vault is set but pki.mode is dev"}},
		{"unknown vault key", "  mode: vault\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: token, token: hvs.inline}\n", []string{"token"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(vaultExample(t, tc.body))
			if err == nil || !errors.Is(err, ErrConfig) {
				t.Fatalf("LoadConfig error = %v, want ErrConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hvs.inline") {
				t.Fatalf("error shows a token: %v", err)
			}
		})
	}
}

// A node configured for Vault does not start when Vault is unreachable, and
// says so; it does not fall back to a development CA.
func TestVaultDownAtNodeStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("hvs.not-a-real-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Party: "USA", Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		PKI: PKIConfig{Mode: "vault", Vault: &VaultConfig{Address: addr, Mount: "pki-usa", Auth: "token", TokenFile: tokenFile}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{w: &strings.Builder{}}
	_, err = NewServer(cfg, newTestLogger(logs))
	if err == nil {
		t.Fatal("node started without its Vault")
	}
	if !errors.Is(err, pki.ErrVault) || !strings.Contains(err.Error(), "vault PKI") || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("error does not say Vault at %s is unreachable: %v", addr, err)
	}
	if strings.Contains(err.Error()+logs.String(), "not-a-real-token") {
		t.Fatal("the token appeared in an error or a log line")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "tearline.db")); err == nil {
		t.Fatal("the node opened its store before its PKI was up")
	}
}

// newTestLogger logs into a lockedWriter, read with its String method.
func newTestLogger(w *lockedWriter) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func TestPartnerCRLURL(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "deploy", "node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const caLine = "    ca_file: /etc/tearline/partners/GBR-ca.pem\n"
	vaultPKI := "  mode: vault\n  vault: {address: http://127.0.0.1:8200, mount: pki-usa, auth: token, token_file: t}\n"
	for _, tc := range []struct {
		name, pki, url, want string
	}{
		{"dev mode", "", "https://vault.gbr.example.org/v1/pki-gbr/crl", "pki.mode vault only"},
		{"not a URL", vaultPKI, "ftp://vault/crl", "want an http(s) URL"},
		{"valid", vaultPKI, "https://vault.gbr.example.org/v1/pki-gbr/crl", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := strings.Replace(string(base), caLine, caLine+"    crl_url: "+tc.url+"\n", 1)
			if tc.pki != "" {
				s = strings.Replace(s, "  mode: dev\n  dev_ca_dir: /var/lib/tearline/ca\n", tc.pki, 1)
			}
			path := filepath.Join(t.TempDir(), "node.yaml")
			if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if tc.want == "" {
				if err != nil || c.Partners[0].CRLURL != tc.url {
					t.Fatalf("LoadConfig = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "partners[0] (GBR) crl_url") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadConfig error = %v, want one about crl_url: %s", err, tc.want)
			}
		})
	}
}
