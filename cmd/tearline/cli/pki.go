package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/pki"
)

// vaultFlags say which Vault and PKI mount the pki verbs work on.
type vaultFlags struct {
	config    string
	addr      string
	caFile    string
	mount     string
	party     string
	tokenFile string
}

func (f *vaultFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "a node config with pki.mode vault: take the Vault address, mount and party from it")
	fs.StringVar(&f.addr, "vault-addr", os.Getenv("VAULT_ADDR"), "Vault's address; env VAULT_ADDR")
	fs.StringVar(&f.caFile, "vault-ca-file", os.Getenv("VAULT_CACERT"), "PEM bundle verifying Vault's TLS; env VAULT_CACERT")
	fs.StringVar(&f.mount, "mount", "", "the party's PKI mount (default pki-<party>)")
	fs.StringVar(&f.party, "party", "", "the party code, e.g. USA")
	fs.StringVar(&f.tokenFile, "vault-token-file", "", "file holding a Vault token with the party's PKI admin policy (default: env VAULT_TOKEN)")
}

// issuer logs in to the party's Vault as the PKI administrator.
func (f *vaultFlags) issuer(ctx context.Context, g *globals) (*pki.VaultIssuer, error) {
	vc := pki.VaultConfig{Address: f.addr, CAFile: f.caFile, Mount: f.mount, Party: f.party, Auth: pki.VaultAuthToken,
		TokenFile: f.tokenFile, Logger: newLogger(g.stderr, "warn")}
	config := f.config
	if config == "" && g.dev != "" && g.as != "" {
		config = gateway.DevConfigPath(g.dev, g.as)
	}
	if config != "" {
		cfg, err := gateway.LoadConfig(config)
		if err != nil {
			return nil, err
		}
		v := cfg.PKI.Vault
		if cfg.PKI.Mode != "vault" || v == nil {
			return nil, usagef("%s: pki.mode is %s, not vault: its certificates do not come from Vault", config, cfg.PKI.Mode)
		}
		// The config decides the party and mount: a flag that says
		// otherwise is a mistake, not an override.
		if f.party != "" && !strings.EqualFold(f.party, cfg.Party) {
			return nil, usagef("--party %s, but %s is %s's node config: drop --party, or give %s's config", f.party, config, cfg.Party, strings.ToUpper(f.party))
		}
		if f.mount != "" && f.mount != v.Mount {
			return nil, usagef("--mount %s, but %s names mount %s: drop --mount, or give another config", f.mount, config, v.Mount)
		}
		vc.Address, vc.Mount, vc.Party, vc.Domain = v.Address, v.Mount, cfg.Party, cfg.Domain
		if v.CAFile != "" {
			vc.CAFile = cfg.Path(v.CAFile)
		}
		// A development federation's node uses a token file that may
		// also administer its PKI; a real node's AppRole may not.
		if vc.TokenFile == "" && os.Getenv("VAULT_TOKEN") == "" && v.Auth == pki.VaultAuthToken {
			vc.TokenFile = cfg.Path(v.TokenFile)
		}
	}
	if vc.Mount == "" && vc.Party != "" {
		vc.Mount = pki.DefaultVaultMount(vc.Party)
	}
	if vc.TokenFile == "" {
		vc.Token = os.Getenv("VAULT_TOKEN")
	}
	switch {
	case vc.Party == "":
		return nil, usagef("say which party: --party CODE, --config FILE, or --dev DIR --as PARTY")
	case vc.Address == "":
		return nil, usagef("say which Vault: --vault-addr ADDR (or VAULT_ADDR), or --config FILE")
	case vc.Token == "" && vc.TokenFile == "":
		return nil, usagef("no Vault token: set VAULT_TOKEN or --vault-token-file FILE")
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	return pki.NewVaultIssuer(ctx, vc)
}

func newPKICmd(g *globals) *cobra.Command {
	f := &vaultFlags{}
	c := &cobra.Command{
		Use:   "pki",
		Short: "Certificates from the party's Vault: issue officer and service profiles, revoke",
		Long: `Work on the party's PKI mount in Vault (see deploy/vault/README.md) with a
token of the party's PKI administrator (policy tearline-pki-admin-<party>),
from VAULT_TOKEN or --vault-token-file. The Vault, mount and party come from
--config (a node config with pki.mode vault), from --dev DIR --as PARTY, or
from --vault-addr, --party and --mount.`,
	}
	f.register(c.PersistentFlags())
	c.AddCommand(newPKIIssueCmd(g, f), newPKIRevokeCmd(g, f))
	return c
}

func identityFlag(party, officer, svc string) (pki.Identity, error) {
	switch {
	case officer != "" && svc != "":
		return pki.Identity{}, usagef("give --officer or --svc, not both")
	case officer != "":
		return pki.NewIdentity(party, pki.KindOfficer, officer)
	case svc != "":
		return pki.NewIdentity(party, pki.KindService, svc)
	}
	return pki.Identity{}, usagef("give --officer NAME or --svc NAME")
}

func newPKIIssueCmd(g *globals, f *vaultFlags) *cobra.Command {
	var officer, svc, out string
	var ttl time.Duration
	var force bool
	c := &cobra.Command{
		Use:   "issue (--officer NAME | --svc NAME) --out DIR",
		Short: "Issue an officer or subscriber-service certificate from Vault into a profile folder",
		Long: `Issue a certificate for spiffe://<domain>/party/<PARTY>/officer/NAME (or
.../svc/NAME) from the party's Vault, with a fresh ed25519 key, and write it
as a profile: DIR/cert.pem, DIR/key.pem (0600) and DIR/ca.pem (the party's CA
bundle), for --profile DIR. The key is generated by Vault and sent to this
command only; it is not kept in Vault.

With --force, the profile in DIR is replaced at once: DIR holds the whole old
profile or the whole new one, never a mix, and keeps the old one if writing
fails. (A DIR that also holds other files has its profile files replaced one
by one.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out DIR is required")
			}
			// The folder is checked before Vault issues anything: a
			// certificate issued for a profile that cannot be written
			// would stay valid in Vault with its key lost.
			created, err := profileDir(out, force)
			if err != nil {
				return err
			}
			issued := false
			defer func() {
				if !issued && created {
					_ = os.Remove(out) // only if nothing was written in it
				}
			}()
			iss, err := f.issuer(cmd.Context(), g)
			if err != nil {
				return err
			}
			id, err := identityFlag(iss.Party(), officer, svc)
			if err != nil {
				return err
			}
			id.Domain = f.domain(iss, id)
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			bundle, err := iss.Bundle(ctx)
			if err != nil {
				return err
			}
			is, err := iss.Issue(ctx, pki.IssueRequest{Identity: id, TTL: ttl})
			if err != nil {
				return err
			}
			if err := pki.WriteProfile(out, is, bundle); err != nil {
				serial := pki.VaultSerial(is.Leaf().SerialNumber)
				return fmt.Errorf("certificate %s was issued for %s, but its profile could not be written, so its key is lost: revoke it (tearline pki revoke %s): %w", serial, id, serial, err)
			}
			issued = true
			leaf := is.Leaf()
			fmt.Fprintf(g.stdout, "issued %s\n  serial     %s\n  not after  %s\n  profile    %s\n",
				id, pki.VaultSerial(leaf.SerialNumber), leaf.NotAfter.UTC().Format(time.RFC3339), out)
			return nil
		},
	}
	c.Flags().StringVar(&officer, "officer", "", "an officer's name")
	c.Flags().StringVar(&svc, "svc", "", "a subscriber service's name")
	c.Flags().StringVar(&out, "out", "", "profile folder to write (created 0700)")
	c.Flags().BoolVar(&force, "force", false, "replace the profile already in --out (its old certificate stays valid until revoked)")
	c.Flags().DurationVar(&ttl, "ttl", 7*24*time.Hour, "certificate lifetime (at most the role's max_ttl)")
	return c
}

// profileDir makes sure a profile can be written to dir before anything is
// issued: dir is a folder (created 0700 if missing; created says so) that
// holds no profile, unless force. It writes and removes a probe file, so a
// folder it may not write to is refused here too.
func profileDir(dir string, force bool) (created bool, err error) {
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		return false, usagef("--out %s is a file: give a folder for the profile", dir)
	case err == nil:
		for _, name := range []string{pki.ProfileKeyFile, pki.ProfileCertFile, pki.ProfileCAFile} {
			fi, err := os.Stat(filepath.Join(dir, name))
			switch {
			case err != nil:
			case !fi.Mode().IsRegular():
				return false, usagef("--out %s: %s is not a file, so no profile can be written there: give another folder", dir, name)
			case !force && name != pki.ProfileCAFile:
				return false, usagef("--out %s already holds a profile (%s): give another folder, or --force to replace it (its certificate stays valid until revoked: tearline pki revoke)", dir, name)
			}
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("--out %s: %w", dir, err)
		}
		created = true
	default:
		return false, fmt.Errorf("--out %s: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		if created {
			_ = os.Remove(dir)
		}
		return false, fmt.Errorf("--out %s cannot be written: %w", dir, err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	return created, nil
}

// domain is the identity's trust domain: the issuer's (from a node config)
// or the party's default.
func (f *vaultFlags) domain(iss *pki.VaultIssuer, id pki.Identity) string {
	if d := iss.Domain(); d != "" {
		return d
	}
	return id.Domain
}

func newPKIRevokeCmd(g *globals, f *vaultFlags) *cobra.Command {
	var officer, svc string
	c := &cobra.Command{
		Use:   "revoke (SERIAL | --officer NAME | --svc NAME)",
		Short: "Revoke a certificate in Vault, by serial or by the officer or service it names",
		Long: `Revoke a certificate of the party in Vault and have Vault rebuild the
party's CRL. By --officer or --svc, every unexpired certificate naming that
identity is revoked. SERIAL is hex, with or without ':' (as 'pki issue' prints
it).

The party's nodes refuse the certificate at the next handshake and close its
live connections when they next fetch the CRL: every pki.vault.crl_interval
(default 30s), or at once on SIGHUP (kill -HUP <node pid>).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && (officer != "" || svc != "") {
				return usagef("give a SERIAL or --officer/--svc, not both")
			}
			if len(args) == 0 && officer == "" && svc == "" {
				return usagef("say what to revoke: a SERIAL, --officer NAME or --svc NAME")
			}
			if len(args) == 1 {
				if _, err := pki.ParseSerial(args[0]); err != nil {
					return usagef("%v", err)
				}
			}
			iss, err := f.issuer(cmd.Context(), g)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
			defer cancel()
			serials := args
			if len(args) == 0 {
				id, err := identityFlag(iss.Party(), officer, svc)
				if err != nil {
					return err
				}
				id.Domain = f.domain(iss, id)
				if serials, err = iss.Serials(ctx, id); err != nil {
					return err
				}
				if len(serials) == 0 {
					return fmt.Errorf("no unexpired, unrevoked certificate of %s in %s", id, iss.Mount())
				}
			}
			var errs []error
			for _, s := range serials {
				if err := iss.Revoke(ctx, s); err != nil {
					errs = append(errs, err)
					continue
				}
				n, _ := pki.ParseSerial(s)
				fmt.Fprintf(g.stdout, "revoked %s\n", pki.VaultSerial(n))
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().StringVar(&officer, "officer", "", "revoke every certificate of this officer")
	c.Flags().StringVar(&svc, "svc", "", "revoke every certificate of this subscriber service")
	return c
}
