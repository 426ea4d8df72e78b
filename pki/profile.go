package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files of a profile directory.
const (
	// ProfileCertFile holds the leaf certificate then its intermediates.
	ProfileCertFile = "cert.pem"
	// ProfileKeyFile holds the leaf's PKCS#8 private key (mode 0600).
	ProfileKeyFile = "key.pem"
	// ProfileCAFile holds the CA bundle of the profile's own party.
	ProfileCAFile = "ca.pem"
)

// Profile is what a client (the CLI, a subscriber service) needs to reach a
// node of its own party: its certificate and key, and its party's CA bundle
// to verify the node with.
type Profile struct {
	// Identity is the identity of the profile's certificate.
	Identity Identity
	// Cert is the certificate chain and key, with Leaf set.
	Cert tls.Certificate
	// Bundle is the CA bundle of the profile's party.
	Bundle []*x509.Certificate
}

// Issued returns the profile's certificate chain and key, for
// StaticCertSource.
func (p *Profile) Issued() (*Issued, error) {
	key, ok := p.Cert.PrivateKey.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("pki: profile: key is not ed25519")
	}
	is := &Issued{Key: key}
	for _, der := range p.Cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: profile: %w", err)
		}
		is.Chain = append(is.Chain, c)
	}
	if _, err := is.check(); err != nil {
		return nil, fmt.Errorf("pki: profile: %w", err)
	}
	return is, nil
}

// WriteProfile writes is and the party's bundle into dir as cert.pem,
// key.pem (0600) and ca.pem. A reader finds no profile or a whole one in dir,
// never a mix of an old and a new one: if anything fails, dir keeps its old
// profile (or stays absent) and nothing temporary is left. A folder that also
// holds other files has its profile files replaced one by one instead, each
// atomically. See writeProfileFiles.
func WriteProfile(dir string, is *Issued, bundle []*x509.Certificate) error {
	if _, err := is.check(); err != nil {
		return fmt.Errorf("pki: write profile: %w", err)
	}
	if len(bundle) == 0 {
		return errors.New("pki: write profile: empty CA bundle")
	}
	keyPEM, err := encodeKeyPEM(is.Key)
	if err != nil {
		return fmt.Errorf("pki: write profile: %w", err)
	}
	files := []profileFile{
		{ProfileKeyFile, keyPEM, 0o600},
		{ProfileCertFile, encodeCertsPEM(is.Chain), 0o644},
		{ProfileCAFile, encodeCertsPEM(bundle), 0o644},
	}
	if err := writeProfileFiles(dir, files); err != nil {
		return fmt.Errorf("pki: write profile: %w", err)
	}
	return nil
}

// LoadProfile reads a profile written by WriteProfile and checks it: the key
// matches the certificate, the certificate names a valid identity, and it
// chains to the bundle. Expiry is not checked here: an expired certificate
// is refused by the node, which says so. Errors name the file at fault.
//
// Its files are read through one open folder, so that they all come from
// one profile even while WriteProfile swaps the folder; a profile replaced
// while it is read (the folder, or its entries, changed meanwhile) is read
// again, up to maxProfileReads times: each time needs another write.
func LoadProfile(dir string) (*Profile, error) {
	for tries := 1; ; tries++ {
		before, berr := os.Stat(dir)
		p, err := loadProfile(dir)
		after, aerr := os.Stat(dir)
		if tries < maxProfileReads && berr == nil && aerr == nil && (!os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime())) {
			continue
		}
		return p, err
	}
}

// maxProfileReads bounds LoadProfile's reads of a folder rewritten while
// it reads.
const maxProfileReads = 100

func loadProfile(dir string) (*Profile, error) {
	certPath := filepath.Join(dir, ProfileCertFile)
	keyPath := filepath.Join(dir, ProfileKeyFile)
	caPath := filepath.Join(dir, ProfileCAFile)
	// Every file is read through one open folder: a folder swapped in
	// meanwhile (WriteProfile) cannot give one file of each profile.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: load profile: %w", err)
	}
	defer root.Close()
	open := func(path string) (*os.File, error) {
		f, err := root.Open(filepath.Base(path))
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			return nil, &fs.PathError{Op: "open", Path: path, Err: pe.Err}
		}
		return f, err
	}
	chain, err := readCertsPEMWith(certPath, open)
	if err != nil {
		return nil, fmt.Errorf("pki: load profile: %w", err)
	}
	key, err := readKeyPEMWith(keyPath, open)
	if err != nil {
		return nil, fmt.Errorf("pki: load profile: %w", err)
	}
	bundle, err := readCertsPEMWith(caPath, open)
	if err != nil {
		return nil, fmt.Errorf("pki: load profile: %w", err)
	}
	leaf := chain[0]
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("pki: load profile: %s: %w", certPath, err)
	}
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(pub, key.Public().(ed25519.PublicKey)) {
		return nil, fmt.Errorf("pki: load profile: %s does not match the certificate in %s", keyPath, certPath)
	}
	is := &Issued{Chain: chain, Key: key}
	if _, err := is.check(); err != nil {
		return nil, fmt.Errorf("pki: load profile: %s: %w", certPath, err)
	}
	// Check issuance, not validity: verify at a time when the leaf was valid.
	tr := NewTrust()
	tr.Set(id.Party, bundle)
	if _, err := tr.Verify(chain, leaf.NotBefore); err != nil {
		return nil, fmt.Errorf("pki: load profile: %s is not issued by a CA in %s: %w", certPath, caPath, err)
	}
	return &Profile{Identity: id, Cert: is.TLSCertificate(), Bundle: bundle}, nil
}
