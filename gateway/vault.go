package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/tearline/tearline/pki"
)

// VaultConfig is pki.vault: where the node's certificates come from when
// pki.mode is vault. Secrets are never in the config file itself, only the
// paths of files that hold them (mode 0600).
type VaultConfig struct {
	// Address of Vault, https://host:8200 (plain http only to a loopback Vault).
	Address string `yaml:"address"`
	// CAFile verifies Vault's TLS certificate (optional: system roots).
	CAFile string `yaml:"ca_file,omitempty"`
	// Mount is the party's PKI mount, e.g. pki-usa.
	Mount string `yaml:"mount"`
	// Role issues the node's certificate (default node).
	Role string `yaml:"role,omitempty"`
	// Auth is token or approle.
	Auth string `yaml:"auth"`
	// TokenFile holds a Vault token (auth token); read at every login.
	TokenFile string `yaml:"token_file,omitempty"`
	// AppRoleMount is the AppRole auth mount (default approle).
	AppRoleMount string `yaml:"approle_mount,omitempty"`
	// RoleID and SecretIDFile are the AppRole credentials (auth approle);
	// the secret id file is read at every login.
	RoleID       string `yaml:"role_id,omitempty"`
	SecretIDFile string `yaml:"secret_id_file,omitempty"`
	// CRLInterval is how often the party's CRL is fetched from Vault
	// (default 30s); a revocation through `tearline pki revoke` is also
	// applied at once by a node that it reaches.
	CRLInterval time.Duration `yaml:"crl_interval,omitempty"`
}

// LogValue shows the Vault settings; the role id is shown only in part.
func (v VaultConfig) LogValue() slog.Value {
	rid := ""
	if v.RoleID != "" {
		rid = v.RoleID[:min(4, len(v.RoleID))] + "…"
	}
	return slog.GroupValue(slog.String("address", v.Address), slog.String("mount", v.Mount),
		slog.String("auth", v.Auth), slog.String("token_file", v.TokenFile),
		slog.String("role_id", rid), slog.String("secret_id_file", v.SecretIDFile))
}

// validateVault checks pki.vault for pki.mode vault and names every missing
// key at once.
func (p *PKIConfig) validateVault() error {
	v := p.Vault
	if v == nil {
		return errors.New("pki.mode vault needs a pki.vault section (address, mount, auth, and token_file or role_id + secret_id_file)")
	}
	if p.DevCADir != "" {
		return errors.New("pki.dev_ca_dir is set but pki.mode is vault: remove it (there is no fallback to the development CA)")
	}
	var miss []string
	need := func(val, key string) {
		if val == "" {
			miss = append(miss, "pki.vault."+key)
		}
	}
	need(v.Address, "address")
	need(v.Mount, "mount")
	switch v.Auth {
	case pki.VaultAuthToken:
		need(v.TokenFile, "token_file")
		if v.RoleID != "" || v.SecretIDFile != "" {
			return errors.New("pki.vault: role_id/secret_id_file are for auth approle, but auth is token")
		}
	case pki.VaultAuthAppRole:
		need(v.RoleID, "role_id")
		need(v.SecretIDFile, "secret_id_file")
		if v.TokenFile != "" {
			return errors.New("pki.vault: token_file is for auth token, but auth is approle")
		}
	case "":
		miss = append(miss, "pki.vault.auth (token or approle)")
	default:
		return fmt.Errorf("pki.vault.auth %q: want token or approle", v.Auth)
	}
	if len(miss) > 0 {
		return fmt.Errorf("pki.mode vault is half configured: missing %s", strings.Join(miss, ", "))
	}
	if v.CRLInterval == 0 {
		v.CRLInterval = pki.DefaultCRLInterval
	}
	if v.CRLInterval < time.Second {
		return fmt.Errorf("pki.vault.crl_interval %s is too short (at least 1s)", v.CRLInterval)
	}
	return nil
}

// validCRLURL checks a partner's crl_url: partner CRLs are fetched by the
// revocation machinery of pki.mode vault only.
func validCRLURL(u, mode string) error {
	if u == "" {
		return nil
	}
	if mode != "vault" {
		return errors.New("partner CRLs are checked with pki.mode vault only")
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return fmt.Errorf("%q: want an http(s) URL", u)
	}
	return nil
}

// vaultIssuer logs in to the party's Vault for the node.
func vaultIssuer(ctx context.Context, cfg *Config, log *slog.Logger) (*pki.VaultIssuer, error) {
	v := cfg.PKI.Vault
	pc := pki.VaultConfig{
		Address: v.Address, CAFile: cfg.Path(v.CAFile), Mount: v.Mount, Party: cfg.Party, Domain: cfg.Domain,
		Auth: v.Auth, TokenFile: cfg.Path(v.TokenFile),
		AppRoleMount: v.AppRoleMount, RoleID: v.RoleID, SecretIDFile: cfg.Path(v.SecretIDFile),
		Logger: log,
	}
	if v.Role != "" {
		pc.Roles = map[pki.Kind]string{pki.KindNode: v.Role}
	}
	log.Info("vault pki", slog.Any("vault", pc))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return pki.NewVaultIssuer(ctx, pc)
}

// vaultPKI is what pki.mode vault adds to a server: the Vault issuer, and
// the party's CRL from Vault, refreshed every crl_interval and on SIGHUP,
// against which every handshake is checked and every live connection is
// tracked, so that a revoked certificate's connections close as soon as the
// CRL that revokes it arrives. A nil *vaultPKI (mode dev) does nothing.
type vaultPKI struct {
	iss      *pki.VaultIssuer
	rev      *pki.Revocations
	crl      *pki.CRLWatcher
	partners []*pki.CRLWatcher // partners' CRLs from their crl_url
	log      *slog.Logger
}

func newVaultPKI(cfg *Config, log *slog.Logger) (*vaultPKI, error) {
	iss, err := vaultIssuer(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bundle, err := iss.Bundle(ctx)
	if err != nil {
		return nil, err
	}
	v := &vaultPKI{iss: iss, rev: pki.NewRevocations(log), log: log}
	v.crl = pki.NewCRLWatcher(cfg.Party, func(ctx context.Context) (*x509.RevocationList, error) {
		return iss.CRL(ctx, bundle)
	}, v.rev, cfg.PKI.Vault.CRLInterval, log)
	// The first CRL before serving: a node must not start by accepting a
	// certificate its party has revoked.
	if err := v.crl.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("party CRL: %w", err)
	}
	for _, p := range cfg.Partners {
		if p.CRLURL == "" {
			continue
		}
		cas, err := readCAFile(cfg.Path(p.CAFile))
		if err != nil {
			return nil, fmt.Errorf("%w: partner %s ca_file: %w", ErrConfig, p.Party, err)
		}
		w := pki.NewCRLWatcher(p.Party, pki.HTTPCRLFetcher(nil, p.CRLURL, cas), v.rev, cfg.PKI.Vault.CRLInterval, log)
		// A partner's CRL server being down must not stop this node: the
		// watcher retries every interval.
		if err := w.Refresh(ctx); err != nil {
			log.Warn("partner crl unavailable at start", slog.String("partner", p.Party), slog.Any("error", err))
		}
		v.partners = append(v.partners, w)
	}
	return v, nil
}

// tls makes cfg refuse a revoked peer certificate at the handshake.
func (v *vaultPKI) tls(cfg *tls.Config) {
	if v != nil {
		cfg.VerifyConnection = v.rev.VerifyConnection(cfg.VerifyConnection)
	}
}

// creds tracks connections so that revocation closes them.
func (v *vaultPKI) creds(c credentials.TransportCredentials) credentials.TransportCredentials {
	if v == nil {
		return c
	}
	return pki.RevocationCreds(c, v.rev)
}

// run refreshes the CRL on schedule and on SIGHUP until ctx ends. With
// mode dev there is nothing to refresh: it takes SIGHUP (which would
// otherwise end the process) and waits, since runAll stops everything
// when a task returns.
func (v *vaultPKI) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if v == nil {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
			}
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				v.log.Info("sighup: refreshing the crls")
				v.crl.Kick()
				for _, w := range v.partners {
					w.Kick()
				}
			}
		}
	}()
	tasks := []func(context.Context) error{v.crl.Run}
	for _, w := range v.partners {
		tasks = append(tasks, w.Run)
	}
	return runAll(ctx, tasks...)
}
