package pki

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// Files of a development CA directory.
const (
	// DevCACertFile holds the development CA's self-signed certificate.
	DevCACertFile = "ca.pem"
	// DevCAKeyFile holds the development CA's PKCS#8 private key (mode 0600).
	DevCAKeyFile = "ca-key.pem"
)

const (
	devCALifetime = 10 * 365 * 24 * time.Hour
	// DefaultLeafTTL is the lifetime the development CA gives a certificate
	// when the request asks for none.
	DefaultLeafTTL = 24 * time.Hour
	leafBackdate   = time.Minute
)

// DevCA is the embedded development CA of one party: a self-signed ed25519
// root kept in a directory, issuing leaf certificates straight from the root.
// It implements Issuer and is safe for concurrent use.
type DevCA struct {
	party string
	cert  *x509.Certificate
	key   ed25519.PrivateKey
	clock func() time.Time
}

var _ Issuer = (*DevCA)(nil)

// DevCAOption configures OpenDevCA.
type DevCAOption func(*DevCA)

// WithDevCAClock sets the clock the CA uses for validity periods (for tests
// that drive time by hand). The default is time.Now.
func WithDevCAClock(clock func() time.Time) DevCAOption {
	return func(ca *DevCA) {
		if clock != nil {
			ca.clock = clock
		}
	}
}

// OpenDevCA opens the development CA of party kept in dir: it loads
// dir/ca.pem and dir/ca-key.pem if both exist and checks that they belong
// together, to this party, and are valid now; it creates both (directory
// 0700, files 0600) if neither exists. One of the two without the other, a
// corrupt file, a key readable by group or others, or a CA of another party is
// an error naming the file; OpenDevCA never overwrites an existing file.
func OpenDevCA(dir, party string, opts ...DevCAOption) (*DevCA, error) {
	if err := ValidateParty(party); err != nil {
		return nil, fmt.Errorf("pki: dev CA: %w", err)
	}
	ca := &DevCA{party: party, clock: time.Now}
	for _, o := range opts {
		o(ca)
	}
	certPath := filepath.Join(dir, DevCACertFile)
	keyPath := filepath.Join(dir, DevCAKeyFile)
	certExists, err := fileExists(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: dev CA: %w", err)
	}
	keyExists, err := fileExists(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: dev CA: %w", err)
	}
	switch {
	case certExists && keyExists:
		if err := ca.load(certPath, keyPath); err != nil {
			return nil, err
		}
	case !certExists && !keyExists:
		if err := ca.create(dir, certPath, keyPath); err != nil {
			return nil, err
		}
	case certExists:
		return nil, fmt.Errorf("pki: dev CA: %s exists but %s is missing; restore it or remove the directory", certPath, keyPath)
	default:
		return nil, fmt.Errorf("pki: dev CA: %s exists but %s is missing; restore it or remove the directory", keyPath, certPath)
	}
	return ca, nil
}

func devCAName(party string) string { return "Tearline development CA " + party }

func (ca *DevCA) create(dir, certPath, keyPath string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: dev CA: %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: dev CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := ca.clock()
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: devCAName(ca.party), Organization: []string{"Tearline"}},
		NotBefore:                   now.Add(-leafBackdate),
		NotAfter:                    now.Add(devCALifetime),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		PermittedURIDomains:         []string{DefaultDomain(ca.party)},
		PermittedDNSDomainsCritical: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return fmt.Errorf("pki: dev CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("pki: dev CA: parse certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: dev CA: marshal key: %w", err)
	}
	// Key first: a crash in between leaves a key without a certificate,
	// which the next start reports instead of silently replacing.
	if err := writeFileNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("pki: dev CA: %w", err)
	}
	if err := writeFileNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("pki: dev CA: %w", err)
	}
	ca.cert, ca.key = cert, key
	return nil
}

func (ca *DevCA) load(certPath, keyPath string) error {
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(keyPath)
		if err != nil {
			return fmt.Errorf("pki: dev CA: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("pki: dev CA: %s is accessible by group or others (mode %#o); chmod 600 it", keyPath, fi.Mode().Perm())
		}
	}
	certs, err := readCertsPEM(certPath)
	if err != nil {
		return fmt.Errorf("pki: dev CA: %w", err)
	}
	if len(certs) != 1 {
		return fmt.Errorf("pki: dev CA: %s: want exactly one certificate, found %d", certPath, len(certs))
	}
	cert := certs[0]
	key, err := readKeyPEM(keyPath)
	if err != nil {
		return fmt.Errorf("pki: dev CA: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return fmt.Errorf("pki: dev CA: %s is not a CA certificate", certPath)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("pki: dev CA: %s is not a self-signed root: %w", certPath, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("pki: dev CA: %s does not hold an ed25519 key", certPath)
	}
	if !bytes.Equal(pub, key.Public().(ed25519.PublicKey)) {
		return fmt.Errorf("pki: dev CA: %s does not match %s (they belong to different CAs)", keyPath, certPath)
	}
	if cn := cert.Subject.CommonName; cn != devCAName(ca.party) {
		return fmt.Errorf("pki: dev CA: %s is %q, not the CA of party %s", certPath, cn, ca.party)
	}
	now := ca.clock()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("pki: dev CA: %s is valid only from %s to %s; remove the directory to create a new CA",
			certPath, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	ca.cert, ca.key = cert, key
	return nil
}

// Party returns the party the CA issues for.
func (ca *DevCA) Party() string { return ca.party }

// Certificate returns the CA's root certificate.
func (ca *DevCA) Certificate() *x509.Certificate { return ca.cert }

// Bundle returns the CA's root certificate.
func (ca *DevCA) Bundle(context.Context) ([]*x509.Certificate, error) {
	return []*x509.Certificate{ca.cert}, nil
}

// Issue generates an ed25519 key and a leaf certificate for req.Identity,
// which must be an identity of the CA's party in the party's default domain.
// The leaf carries the identity as its only SAN, is valid for client and
// server authentication from one minute ago for req.TTL (DefaultLeafTTL if
// zero, cut at the CA's expiry), and has a random 128-bit serial.
func (ca *DevCA) Issue(ctx context.Context, req IssueRequest) (*Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := req.Identity
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("pki: dev CA: %w", err)
	}
	if id.Party != ca.party {
		return nil, fmt.Errorf("pki: dev CA of party %s refuses to issue for %s (party %s)", ca.party, id, id.Party)
	}
	if want := DefaultDomain(ca.party); id.Domain != want {
		return nil, fmt.Errorf("pki: dev CA of party %s refuses to issue for %s: domain is not %s", ca.party, id, want)
	}
	ttl := req.TTL
	switch {
	case ttl < 0:
		return nil, fmt.Errorf("pki: dev CA: negative TTL %v", ttl)
	case ttl == 0:
		ttl = DefaultLeafTTL
	}
	now := ca.clock()
	notAfter := now.Add(ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("pki: dev CA of party %s has expired", ca.party)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: dev CA: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
		// BasicConstraints CA:FALSE, so the leaf can never act as a CA.
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: dev CA: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: dev CA: parse certificate: %w", err)
	}
	return &Issued{Chain: []*x509.Certificate{leaf}, Key: key}, nil
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random positive serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("pki: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}
