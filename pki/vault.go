package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Vault authentication methods.
const (
	VaultAuthToken   = "token"
	VaultAuthAppRole = "approle"
)

// Default Vault role names, one per kind of identity (see deploy/vault/).
var DefaultVaultRoles = map[Kind]string{
	KindNode:    "node",
	KindOfficer: "officer",
	KindService: "svc",
}

const (
	// DefaultVaultTimeout bounds one request to Vault.
	DefaultVaultTimeout = 10 * time.Second
	// vaultTokenMargin is how long before its expiry a login token is
	// replaced by a new login.
	vaultTokenMargin = 0.1
	maxSecretFile    = 4 << 10
)

// ErrVault wraps every error of the Vault issuer: Vault unreachable, a
// request refused, a malformed answer.
var ErrVault = errors.New("pki: vault")

// VaultConfig configures a VaultIssuer. Token and SecretID are secrets: its
// LogValue redacts them, and no error or log line of the issuer carries them.
type VaultConfig struct {
	// Address is Vault's address, e.g. https://vault.usa.example:8200.
	Address string
	// CAFile is a PEM bundle to verify Vault's TLS certificate with; empty
	// means the system roots. It plays no part with an http:// address.
	CAFile string
	// Mount is the path of the party's PKI secrets engine, e.g. pki-usa.
	Mount string
	// Party is the party the mount's CA issues for.
	Party string
	// Domain is the party's trust domain (default DefaultDomain(Party)).
	Domain string
	// Roles maps a kind of identity to the mount's role that issues it;
	// missing kinds take DefaultVaultRoles.
	Roles map[Kind]string

	// Auth is VaultAuthToken or VaultAuthAppRole.
	Auth string
	// Token is a Vault token (Auth token). TokenFile, if set instead, is
	// read at every login, so a token rotated on disk is picked up.
	Token     string
	TokenFile string
	// AppRoleMount is the AppRole auth mount (default "approle").
	AppRoleMount string
	// RoleID and SecretID (or SecretIDFile, read at every login) are the
	// AppRole credentials (Auth approle).
	RoleID       string
	SecretID     string
	SecretIDFile string

	// Timeout bounds one request (default DefaultVaultTimeout).
	Timeout time.Duration
	// Clock measures token lifetimes (default time.Now).
	Clock func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

const redacted = "[redacted]"

// LogValue shows the configuration with its secrets redacted.
func (c VaultConfig) LogValue() slog.Value {
	red := func(s string) string {
		if s == "" {
			return ""
		}
		return redacted
	}
	return slog.GroupValue(
		slog.String("address", c.Address),
		slog.String("ca_file", c.CAFile),
		slog.String("mount", c.Mount),
		slog.String("party", c.Party),
		slog.String("auth", c.Auth),
		slog.String("token", red(c.Token)),
		slog.String("token_file", c.TokenFile),
		slog.String("approle_mount", c.AppRoleMount),
		slog.String("role_id", c.RoleID),
		slog.String("secret_id", red(c.SecretID)),
		slog.String("secret_id_file", c.SecretIDFile),
	)
}

// String is the redacted form, so that %v never prints a secret.
func (c VaultConfig) String() string { return c.LogValue().String() }

// GoString is the redacted form, so that %#v never prints a secret.
func (c VaultConfig) GoString() string { return "pki.VaultConfig" + c.String() }

// Missing lists, by config key, what a Vault setup lacks; empty means it is
// complete. It does not contact Vault.
func (c *VaultConfig) Missing() []string {
	var miss []string
	if c.Address == "" {
		miss = append(miss, "address")
	}
	if c.Mount == "" {
		miss = append(miss, "mount")
	}
	if c.Party == "" {
		miss = append(miss, "party")
	}
	switch c.Auth {
	case VaultAuthToken:
		if c.Token == "" && c.TokenFile == "" {
			miss = append(miss, "token_file")
		}
	case VaultAuthAppRole:
		if c.RoleID == "" {
			miss = append(miss, "role_id")
		}
		if c.SecretID == "" && c.SecretIDFile == "" {
			miss = append(miss, "secret_id_file")
		}
	default:
		miss = append(miss, "auth (token or approle)")
	}
	return miss
}

// VaultIssuer issues a party's certificates from the party's PKI secrets
// engine in Vault: it logs in (token or AppRole, again when the login token
// expires or is refused), issues ed25519 certificates from the mount's role
// for the kind of identity, reads the mount's CA chain and CRL, and revokes.
// It implements Issuer and is safe for concurrent use.
type VaultIssuer struct {
	cfg    VaultConfig
	roles  map[Kind]string
	base   *vault.Client // no token; cloned per login
	log    *slog.Logger
	clock  func() time.Time
	mu     sync.Mutex
	client *vault.Client // logged in, or nil
	expiry time.Time     // when client's token must be replaced; zero: never
	logins int           // successful logins, for tests and metrics
}

var _ Issuer = (*VaultIssuer)(nil)

// NewVaultIssuer checks cfg and logs in to Vault; an unreachable Vault or a
// refused login is an error that says so. It does not fall back to anything.
func NewVaultIssuer(ctx context.Context, cfg VaultConfig) (*VaultIssuer, error) {
	if miss := cfg.Missing(); len(miss) > 0 {
		return nil, fmt.Errorf("%w: configuration is missing %s", ErrVault, strings.Join(miss, ", "))
	}
	if err := ValidateParty(cfg.Party); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVault, err)
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain(cfg.Party)
	}
	if cfg.AppRoleMount == "" {
		cfg.AppRoleMount = "approle"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultVaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if cfg.Mount == "" || strings.ContainsAny(cfg.Mount, "?#") {
		return nil, fmt.Errorf("%w: bad mount path %q", ErrVault, cfg.Mount)
	}
	roles := map[Kind]string{}
	for k, r := range DefaultVaultRoles {
		roles[k] = r
	}
	for k, r := range cfg.Roles {
		if !k.Valid() || r == "" || strings.ContainsAny(r, "/?#") {
			return nil, fmt.Errorf("%w: bad role %q for kind %q", ErrVault, r, k)
		}
		roles[k] = r
	}
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: address %q: want http(s)://host:port", ErrVault, cfg.Address)
	}
	if u.Scheme == "http" && !isLoopbackIP(u.Hostname()) {
		return nil, fmt.Errorf("%w: address %q: plain http is allowed only to a Vault at a loopback address (http://127.0.0.1:PORT or http://[::1]:PORT; a name such as localhost could resolve elsewhere); use https", ErrVault, cfg.Address)
	}
	hc, err := vaultHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	base, err := vault.NewClient(&vault.Config{Address: cfg.Address, HttpClient: hc, Timeout: cfg.Timeout, MaxRetries: 0})
	if err != nil {
		return nil, fmt.Errorf("%w: client: %w", ErrVault, err)
	}
	// NewClient reads VAULT_TOKEN and VAULT_NAMESPACE from the environment;
	// the configuration is the only source here.
	base.ClearToken()
	base.ClearNamespace()
	v := &VaultIssuer{cfg: cfg, roles: roles, base: base, clock: cfg.Clock,
		log: cfg.Logger.With(slog.String("vault", cfg.Address), slog.String("mount", cfg.Mount))}
	if _, err := v.login(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// isLoopbackIP reports whether h is a loopback IP address. A name is not:
// what it resolves to is decided outside the config (/etc/hosts, DNS), and
// plain http carries the Vault token.
func isLoopbackIP(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func vaultHTTPClient(cfg VaultConfig) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		cas, err := readCertsPEM(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %w", ErrVault, err)
		}
		if len(cas) == 0 {
			return nil, fmt.Errorf("%w: ca_file %s holds no certificate", ErrVault, cfg.CAFile)
		}
		tc.RootCAs = x509.NewCertPool()
		for _, c := range cas {
			tc.RootCAs.AddCert(c)
		}
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &http.Client{Transport: tr, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// Party returns the party the issuer issues for.
func (v *VaultIssuer) Party() string { return v.cfg.Party }

// Domain returns the party's trust domain.
func (v *VaultIssuer) Domain() string { return v.cfg.Domain }

// Mount returns the PKI mount path.
func (v *VaultIssuer) Mount() string { return v.cfg.Mount }

// Logins returns how many times the issuer has logged in.
func (v *VaultIssuer) Logins() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.logins
}

// readSecretFile reads a small secret file, trimmed of surrounding space.
// Like the development CA's key, a secret file readable by group or others
// is refused.
func readSecretFile(path, what string) (string, error) {
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrVault, what, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%w: %s %s is accessible by group or others (mode %#o); chmod 600 it", ErrVault, what, path, fi.Mode().Perm())
		}
	}
	data, err := readFileBounded(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrVault, what, err)
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("%w: %s %s is too large", ErrVault, what, path)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Errorf("%w: %s %s is empty", ErrVault, what, path)
	}
	return s, nil
}

// login authenticates afresh and makes the new token current.
func (v *VaultIssuer) login(ctx context.Context) (*vault.Client, error) {
	c, err := v.base.Clone()
	if err != nil {
		return nil, fmt.Errorf("%w: client: %w", ErrVault, err)
	}
	c.ClearNamespace()
	var expiry time.Time
	switch v.cfg.Auth {
	case VaultAuthToken:
		tok := v.cfg.Token
		if v.cfg.TokenFile != "" {
			if tok, err = readSecretFile(v.cfg.TokenFile, "token file"); err != nil {
				return nil, err
			}
		}
		c.SetToken(tok)
		// Check the token now, so that a bad one is refused at start.
		sec, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, v.wrap("token login (lookup-self)", err)
		}
		if ttl, err := sec.TokenTTL(); err == nil && ttl > 0 {
			expiry = v.clock().Add(ttl)
		}
	case VaultAuthAppRole:
		secretID := v.cfg.SecretID
		if v.cfg.SecretIDFile != "" {
			if secretID, err = readSecretFile(v.cfg.SecretIDFile, "secret_id_file"); err != nil {
				return nil, err
			}
		}
		c.ClearToken()
		sec, err := c.Logical().WriteWithContext(ctx, "auth/"+v.cfg.AppRoleMount+"/login",
			map[string]any{"role_id": v.cfg.RoleID, "secret_id": secretID})
		if err != nil {
			return nil, v.wrap("approle login", err)
		}
		if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
			return nil, fmt.Errorf("%w: approle login: no token in the answer", ErrVault)
		}
		c.SetToken(sec.Auth.ClientToken)
		if sec.Auth.LeaseDuration > 0 {
			ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
			expiry = v.clock().Add(ttl - time.Duration(vaultTokenMargin*float64(ttl)))
		}
	default:
		return nil, fmt.Errorf("%w: unknown auth %q", ErrVault, v.cfg.Auth)
	}
	v.mu.Lock()
	v.client, v.expiry = c, expiry
	v.logins++
	v.mu.Unlock()
	if expiry.IsZero() {
		v.log.Info("vault login", slog.String("auth", v.cfg.Auth), slog.String("token_expiry", "never"))
	} else {
		v.log.Info("vault login", slog.String("auth", v.cfg.Auth), slog.Time("token_expiry", expiry))
	}
	return c, nil
}

// do runs op with a logged-in client: it logs in first when there is no
// token or it has expired, and once more when Vault refuses the token.
func (v *VaultIssuer) do(ctx context.Context, what string, op func(*vault.Client) error) error {
	v.mu.Lock()
	c, exp := v.client, v.expiry
	v.mu.Unlock()
	var err error
	if c == nil || (!exp.IsZero() && !v.clock().Before(exp)) {
		if c, err = v.login(ctx); err != nil {
			return err
		}
	}
	err = op(c)
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		v.log.Info("vault refused the token; logging in again", slog.String("operation", what))
		if c, err = v.login(ctx); err != nil {
			return err
		}
		err = op(c)
	}
	if err != nil {
		return v.wrap(what, err)
	}
	return nil
}

// wrap turns a Vault client error into a short ErrVault error.
func (v *VaultIssuer) wrap(what string, err error) error {
	if errors.Is(err, ErrVault) {
		return err
	}
	var re *vault.ResponseError
	if errors.As(err, &re) {
		msg := vaultErrors(re.Errors)
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		if re.StatusCode == http.StatusForbidden {
			msg += fmt.Sprintf(" (check the node's Vault credentials, that mount %s exists, and that the policy allows this on it)", v.cfg.Mount)
		}
		return fmt.Errorf("%w: %s at %s: refused (HTTP %d): %s", ErrVault, what, v.cfg.Address, re.StatusCode, msg)
	}
	return fmt.Errorf("%w: %s at %s: unreachable or failed: %w", ErrVault, what, v.cfg.Address, err)
}

// vaultErrors joins Vault's error strings into one line. Vault sends
// errors as one string ("2 errors occurred:\n\t* a\n\t* b\n\n"):
// each is taken out of it.
func vaultErrors(errs []string) string {
	var out []string
	for _, e := range errs {
		if _, list, ok := strings.Cut(e, " occurred:"); ok && strings.Contains(e, "\t* ") {
			for _, line := range strings.Split(list, "\n") {
				if line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*")); line != "" {
					out = append(out, line)
				}
			}
			continue
		}
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return strings.Join(out, "; ")
}

// Issue has the mount's role for req.Identity's kind issue an ed25519
// certificate whose only SAN is the identity's URI.
func (v *VaultIssuer) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	id := req.Identity
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVault, err)
	}
	if id.Party != v.cfg.Party || id.Domain != v.cfg.Domain {
		return nil, fmt.Errorf("%w: mount %s issues for party %s in %s, not for %s", ErrVault, v.cfg.Mount, v.cfg.Party, v.cfg.Domain, id)
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("%w: negative TTL %v", ErrVault, req.TTL)
	}
	role := v.roles[id.Kind]
	data := map[string]any{
		"uri_sans":             id.URI().String(),
		"exclude_cn_from_sans": true,
		"private_key_format":   "pkcs8",
		"format":               "pem",
	}
	if req.TTL > 0 {
		data["ttl"] = fmt.Sprintf("%ds", int64(req.TTL/time.Second))
	}
	var sec *vault.Secret
	err := v.do(ctx, "issue "+id.String(), func(c *vault.Client) error {
		var err error
		sec, err = c.Logical().WriteWithContext(ctx, v.cfg.Mount+"/issue/"+role, data)
		return err
	})
	if err != nil {
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("%w: issue %s: empty answer", ErrVault, id)
	}
	str := func(k string) string { s, _ := sec.Data[k].(string); return s }
	leaves, err := parseCertsPEM([]byte(str("certificate")))
	if err != nil || len(leaves) != 1 {
		return nil, fmt.Errorf("%w: issue %s: bad certificate in the answer", ErrVault, id)
	}
	key, err := parseKeyPEM([]byte(str("private_key")))
	if err != nil {
		return nil, fmt.Errorf("%w: issue %s: private key in the answer: %w", ErrVault, id, err)
	}
	var chainPEM []byte
	if cc, ok := sec.Data["ca_chain"].([]any); ok {
		for _, c := range cc {
			if s, ok := c.(string); ok {
				chainPEM = append(append(chainPEM, s...), '\n')
			}
		}
	}
	if len(chainPEM) == 0 {
		chainPEM = []byte(str("issuing_ca"))
	}
	cas, err := parseCertsPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: issue %s: CA chain in the answer: %w", ErrVault, id, err)
	}
	is := &Issued{Chain: append(leaves, intermediates(cas)...), Key: key}
	got, err := is.check()
	if err != nil {
		return nil, fmt.Errorf("%w: issue %s: %w", ErrVault, id, err)
	}
	if got != id {
		return nil, fmt.Errorf("%w: issue %s: Vault certified %s instead", ErrVault, id, got)
	}
	v.log.Info("vault issued certificate", slog.String("identity", id.String()),
		slog.String("serial", VaultSerial(leaves[0].SerialNumber)), slog.Time("not_after", leaves[0].NotAfter))
	return is, nil
}

// intermediates returns the certificates of chain that are not self-signed.
func intermediates(chain []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range chain {
		if !selfSigned(c) {
			out = append(out, c)
		}
	}
	return out
}

func selfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// Bundle returns the trust anchors of the mount's CA chain: its self-signed
// roots, or the whole chain if it holds none (an intermediate imported
// without its root).
func (v *VaultIssuer) Bundle(ctx context.Context) ([]*x509.Certificate, error) {
	var body []byte
	err := v.do(ctx, "read CA chain", func(c *vault.Client) error {
		resp, err := c.Logical().ReadRawWithContext(ctx, v.cfg.Mount+"/ca_chain")
		if resp != nil {
			defer resp.Body.Close()
		}
		if err != nil {
			return err
		}
		body, err = readBounded(resp.Body, maxPEMFile)
		return err
	})
	if err != nil {
		return nil, err
	}
	chain, err := parseCertsPEM(body)
	if err != nil {
		return nil, fmt.Errorf("%w: CA chain of %s: %w", ErrVault, v.cfg.Mount, err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: mount %s has no CA (run deploy/vault/bootstrap.sh)", ErrVault, v.cfg.Mount)
	}
	var roots []*x509.Certificate
	for _, c := range chain {
		if selfSigned(c) {
			roots = append(roots, c)
		}
	}
	if len(roots) == 0 {
		roots = chain
	}
	return roots, nil
}

// CRL fetches the mount's current CRL (DER), and checks it is signed by one
// of the CA certificates of cas (typically Bundle's answer, or the chain of
// the issuing CA).
func (v *VaultIssuer) CRL(ctx context.Context, cas []*x509.Certificate) (*x509.RevocationList, error) {
	var body []byte
	err := v.do(ctx, "read CRL", func(c *vault.Client) error {
		resp, err := c.Logical().ReadRawWithContext(ctx, v.cfg.Mount+"/crl")
		if resp != nil {
			defer resp.Body.Close()
		}
		if err != nil {
			return err
		}
		body, err = readBounded(resp.Body, maxCRLSize)
		return err
	})
	if err != nil {
		return nil, err
	}
	crl, err := ParseCRL(body, cas)
	if err != nil {
		return nil, fmt.Errorf("%w: CRL of %s: %w", ErrVault, v.cfg.Mount, err)
	}
	return crl, nil
}

// Revoke revokes the certificate with serial in Vault and has Vault rebuild
// the mount's CRL. The serial is as VaultSerial formats it, or plain hex.
func (v *VaultIssuer) Revoke(ctx context.Context, serial string) error {
	n, err := ParseSerial(serial)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVault, err)
	}
	s := VaultSerial(n)
	err = v.do(ctx, "revoke "+s, func(c *vault.Client) error {
		_, err := c.Logical().WriteWithContext(ctx, v.cfg.Mount+"/revoke", map[string]any{"serial_number": s})
		return err
	})
	if err != nil {
		return err
	}
	v.log.Info("vault revoked certificate", slog.String("serial", s))
	return nil
}

// ParseSerial reads a certificate serial number in hex, with or without
// ':' or '-' between the bytes (as Vault and openssl print it).
func ParseSerial(s string) (*big.Int, error) {
	h := strings.NewReplacer(":", "", "-", "", " ", "").Replace(strings.TrimSpace(strings.ToLower(s)))
	h = strings.TrimPrefix(h, "0x")
	if h == "" || len(h) > 64 {
		return nil, fmt.Errorf("serial %q: want hex such as 1f:a2:...", s)
	}
	if len(h)%2 == 1 {
		h = "0" + h
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("serial %q: want hex such as 1f:a2:...", s)
	}
	n := new(big.Int).SetBytes(b)
	if n.Sign() == 0 {
		return nil, fmt.Errorf("serial %q is zero", s)
	}
	return n, nil
}

// VaultSerial formats a serial number as Vault does: lower-case hex bytes
// separated by ':'.
func VaultSerial(n *big.Int) string {
	if n == nil {
		return ""
	}
	b := n.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = hex.EncodeToString([]byte{x})
	}
	return strings.Join(parts, ":")
}

// parseKeyPEM parses an ed25519 PKCS#8 private key in PEM.
func parseKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS#8 private key")
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ed25519", k)
	}
	return key, nil
}

// Serials returns the serial numbers (VaultSerial form) of the mount's
// certificates for id that have not expired and are not revoked, for
// revoking by name. It lists and reads every stored certificate of the
// mount, so it suits a party's PKI administration, not a hot path.
func (v *VaultIssuer) Serials(ctx context.Context, id Identity) ([]string, error) {
	var keys []any
	err := v.do(ctx, "list certificates", func(c *vault.Client) error {
		sec, err := c.Logical().ListWithContext(ctx, v.cfg.Mount+"/certs")
		if err != nil {
			return err
		}
		if sec != nil && sec.Data != nil {
			keys, _ = sec.Data["keys"].([]any)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	want := id.URI().String()
	now := v.clock()
	var out []string
	for _, k := range keys {
		serial, _ := k.(string)
		if serial == "" {
			continue
		}
		var sec *vault.Secret
		err := v.do(ctx, "read certificate "+serial, func(c *vault.Client) error {
			var err error
			sec, err = c.Logical().ReadWithContext(ctx, v.cfg.Mount+"/cert/"+serial)
			return err
		})
		if err != nil {
			return nil, err
		}
		if sec == nil || sec.Data == nil {
			continue
		}
		if rt, ok := sec.Data["revocation_time"]; ok && fmt.Sprint(rt) != "0" {
			continue
		}
		pemStr, _ := sec.Data["certificate"].(string)
		certs, err := parseCertsPEM([]byte(pemStr))
		if err != nil || len(certs) != 1 || certs[0].IsCA || !now.Before(certs[0].NotAfter) {
			continue
		}
		if got, err := IdentityFromCert(certs[0]); err == nil && got.URI().String() == want {
			out = append(out, VaultSerial(certs[0].SerialNumber))
		}
	}
	return out, nil
}
