package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// VaultBootstrap describes the PKI of one party in Vault, as
// deploy/vault/bootstrap.sh lays it out: a PKI mount, a root CA whose name
// constraint permits only the party's trust domain in URI SANs, and one role
// per kind of identity that allows only that kind's SPIFFE URIs.
type VaultBootstrap struct {
	// Party and Domain (default DefaultDomain(Party)) name the identities.
	Party  string
	Domain string
	// Mount is the PKI mount path (default "pki-" + lower-case party).
	Mount string
	// CATTL is the root CA's lifetime (default 10 years); MaxTTL the
	// longest leaf lifetime (default 30 days).
	CATTL  time.Duration
	MaxTTL time.Duration
}

// DefaultVaultMount is the PKI mount path of a party's CA by convention.
func DefaultVaultMount(party string) string { return "pki-" + strings.ToLower(party) }

// BootstrapVaultPKI sets up (or completes) a party's PKI in the Vault at
// address with token, which must be allowed to mount engines and write to
// the mount (a root or admin token): it creates what is missing and keeps
// what exists, so it can run again. Intended for `tearline dev --pki vault`
// and tests; a real deployment uses deploy/vault/bootstrap.sh and reviews it.
func BootstrapVaultPKI(ctx context.Context, address, token string, b VaultBootstrap, log *slog.Logger) error {
	if err := ValidateParty(b.Party); err != nil {
		return fmt.Errorf("%w: bootstrap: %w", ErrVault, err)
	}
	if b.Domain == "" {
		b.Domain = DefaultDomain(b.Party)
	}
	if b.Mount == "" {
		b.Mount = DefaultVaultMount(b.Party)
	}
	if b.CATTL == 0 {
		b.CATTL = 10 * 365 * 24 * time.Hour
	}
	if b.MaxTTL == 0 {
		b.MaxTTL = 30 * 24 * time.Hour
	}
	if log == nil {
		log = slog.Default()
	}
	hc, err := vaultHTTPClient(VaultConfig{Timeout: DefaultVaultTimeout})
	if err != nil {
		return err
	}
	c, err := vault.NewClient(&vault.Config{Address: address, HttpClient: hc, MaxRetries: 0, Timeout: DefaultVaultTimeout})
	if err != nil {
		return fmt.Errorf("%w: bootstrap: %w", ErrVault, err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	fail := func(what string, err error) error {
		var re *vault.ResponseError
		if errors.As(err, &re) {
			return fmt.Errorf("%w: bootstrap %s: %s: refused (HTTP %d): %s", ErrVault, b.Mount, what, re.StatusCode, strings.Join(re.Errors, "; "))
		}
		return fmt.Errorf("%w: bootstrap %s at %s: %s: %w", ErrVault, b.Mount, address, what, err)
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }

	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fail("list mounts", err)
	}
	if m, ok := mounts[b.Mount+"/"]; ok {
		if m.Type != "pki" {
			return fail("mount", fmt.Errorf("%s is mounted as %q, not pki", b.Mount, m.Type))
		}
	} else {
		err := c.Sys().MountWithContext(ctx, b.Mount, &vault.MountInput{
			Type:        "pki",
			Description: "Tearline PKI of " + b.Party,
			Config:      vault.MountConfigInput{MaxLeaseTTL: secs(b.CATTL)},
		})
		if err != nil {
			return fail("enable pki", err)
		}
		log.Info("vault pki mount created", slog.String("mount", b.Mount))
	}

	resp, err := c.Logical().ReadRawWithContext(ctx, b.Mount+"/ca_chain")
	hasCA := false
	if resp != nil {
		body, _ := readBounded(resp.Body, maxPEMFile)
		resp.Body.Close()
		hasCA = err == nil && strings.Contains(string(body), "CERTIFICATE")
	}
	var re *vault.ResponseError
	if err != nil && !(errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || re.StatusCode == http.StatusNoContent)) {
		return fail("read CA", err)
	}
	if !hasCA {
		_, err := c.Logical().WriteWithContext(ctx, b.Mount+"/root/generate/internal", map[string]any{
			"common_name":           "Tearline CA " + b.Party,
			"organization":          "Tearline",
			"key_type":              "ed25519",
			"ttl":                   secs(b.CATTL),
			"issuer_name":           "root",
			"max_path_length":       0,
			"permitted_uri_domains": b.Domain,
			"exclude_cn_from_sans":  true,
			// Back-dated further than the leaves (60s), so that a leaf's
			// validity starts inside its CA's.
			"not_before_duration": "300s",
		})
		if err != nil {
			return fail("generate root CA", err)
		}
		log.Info("vault root CA generated", slog.String("mount", b.Mount), slog.String("permitted_uri_domain", b.Domain))
	}
	if _, err := c.Logical().WriteWithContext(ctx, b.Mount+"/config/urls", map[string]any{
		"issuing_certificates":    address + "/v1/" + b.Mount + "/ca",
		"crl_distribution_points": address + "/v1/" + b.Mount + "/crl",
	}); err != nil {
		return fail("config urls", err)
	}
	for kind, role := range DefaultVaultRoles {
		if _, err := c.Logical().WriteWithContext(ctx, b.Mount+"/roles/"+role, VaultRoleParams(b.Party, b.Domain, kind, b.MaxTTL)); err != nil {
			return fail("role "+role, err)
		}
	}
	return nil
}

// VaultRoleParams are the parameters of the PKI role that issues the
// certificates of kind for party: ed25519 keys, no common name, no DNS, IP or
// e-mail SANs, and URI SANs only under
// spiffe://<domain>/party/<PARTY>/<kind>/.
func VaultRoleParams(party, domain string, kind Kind, maxTTL time.Duration) map[string]any {
	return map[string]any{
		"key_type":                           "ed25519",
		"allowed_uri_sans":                   fmt.Sprintf("spiffe://%s/party/%s/%s/*", domain, party, kind),
		"require_cn":                         false,
		"allow_any_name":                     false,
		"allow_bare_domains":                 false,
		"allow_subdomains":                   false,
		"allow_glob_domains":                 false,
		"allow_localhost":                    false,
		"allow_ip_sans":                      false,
		"allowed_other_sans":                 "",
		"allowed_domains":                    "",
		"enforce_hostnames":                  true,
		"server_flag":                        true,
		"client_flag":                        true,
		"key_usage":                          "DigitalSignature",
		"basic_constraints_valid_for_non_ca": true,
		"max_ttl":                            fmt.Sprintf("%ds", int64(maxTTL/time.Second)),
		"ttl":                                "24h",
		"not_before_duration":                "60s",
		"no_store":                           false, // revocation needs the stored certificate
	}
}
