package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tearline/tearline/pki"
)

// devVaultTokenFile is where `tearline dev --pki vault` keeps the Vault
// token (0600) that its nodes log in with.
const devVaultTokenFile = "vault-token"

// devCRLInterval is how often a dev node fetches its party's CRL: short, so
// that `tearline pki revoke` shows within seconds.
const devCRLInterval = 2 * time.Second

func (o *DevOptions) validatePKI() error {
	switch o.PKI {
	case "", "dev":
		o.PKI = "dev"
	case "vault":
		var miss []string
		if o.VaultAddr == "" {
			miss = append(miss, "--vault-addr")
		}
		if o.VaultToken == "" {
			miss = append(miss, "--vault-token")
		}
		if len(miss) > 0 {
			return fmt.Errorf("%w: --pki vault needs %v", ErrConfig, miss)
		}
	default:
		return fmt.Errorf("%w: --pki %q: want dev or vault", ErrConfig, o.PKI)
	}
	return nil
}

// devIssuer is a party's issuer in a dev federation: its development CA, or
// its PKI mount in Vault, set up there if missing.
func (o *DevOptions) devIssuer(party string) (pki.Issuer, error) {
	if o.PKI != "vault" {
		return pki.OpenDevCA(filepath.Join(o.Dir, party, "ca"), party)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pki.BootstrapVaultPKI(ctx, o.VaultAddr, o.VaultToken, pki.VaultBootstrap{Party: party}, nil); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, devVaultTokenFile), []byte(o.VaultToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, party, "ca"), 0o700); err != nil {
		return nil, err
	}
	return pki.NewVaultIssuer(ctx, pki.VaultConfig{Address: o.VaultAddr, Mount: pki.DefaultVaultMount(party), Party: party,
		Auth: pki.VaultAuthToken, Token: o.VaultToken})
}

// devPKIConfig is the pki section of a dev node's config.
func (o *DevOptions) devPKIConfig(party string) PKIConfig {
	if o.PKI != "vault" {
		return PKIConfig{Mode: "dev", DevCADir: "ca", CertTTL: 24 * time.Hour}
	}
	return PKIConfig{Mode: "vault", CertTTL: 24 * time.Hour, Vault: &VaultConfig{
		Address: o.VaultAddr, Mount: pki.DefaultVaultMount(party), Auth: pki.VaultAuthToken,
		TokenFile: filepath.Join("..", devVaultTokenFile), CRLInterval: devCRLInterval,
	}}
}

func (o *DevOptions) pkiName() string {
	if o.PKI == "vault" {
		return "PKI mounts pki-<party> in Vault at " + o.VaultAddr
	}
	return "embedded development CA"
}

// devCRLURL is where a dev node fetches a partner's CRL: the partner's
// mount in the same Vault (none with development CAs).
func (o *DevOptions) devCRLURL(party string) string {
	if o.PKI != "vault" {
		return ""
	}
	return o.VaultAddr + "/v1/" + pki.DefaultVaultMount(party) + "/crl"
}
