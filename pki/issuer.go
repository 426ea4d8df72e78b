package pki

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Issuer issues certificates for one party. It is shaped after Vault's PKI
// "issue" endpoint: the issuer generates the key and returns it with the
// certificate and its chain. The development CA ([DevCA]) and Vault's PKI
// engine ([VaultIssuer]) implement it.
type Issuer interface {
	// Party returns the code of the party the issuer issues for.
	Party() string
	// Bundle returns the party's CA certificate(s): the trust anchors a
	// verifier of this party's identities needs.
	Bundle(ctx context.Context) ([]*x509.Certificate, error)
	// Issue generates a key and a certificate for req.Identity, which must
	// be an identity of the issuer's party.
	Issue(ctx context.Context, req IssueRequest) (*Issued, error)
}

// IssueRequest asks an Issuer for a certificate.
type IssueRequest struct {
	// Identity is the identity to certify; its party must be the issuer's.
	Identity Identity
	// TTL is the requested lifetime. Zero asks for the issuer's default;
	// an issuer may shorten it (for example to its CA's expiry).
	TTL time.Duration
}

// Issued is a certificate issued with its key.
type Issued struct {
	// Chain is the leaf certificate first, then any intermediates; it does
	// not include the root.
	Chain []*x509.Certificate
	// Key is the leaf's private key.
	Key ed25519.PrivateKey
}

// Leaf returns the leaf certificate (Chain[0]), or nil if there is none.
func (is *Issued) Leaf() *x509.Certificate {
	if is == nil || len(is.Chain) == 0 {
		return nil
	}
	return is.Chain[0]
}

// TLSCertificate returns the chain and key as a tls.Certificate with Leaf set.
func (is *Issued) TLSCertificate() tls.Certificate {
	der := make([][]byte, len(is.Chain))
	for i, c := range is.Chain {
		der[i] = c.Raw
	}
	return tls.Certificate{
		Certificate:                  der,
		PrivateKey:                   is.Key,
		Leaf:                         is.Leaf(),
		SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.Ed25519},
	}
}

// check verifies that is is usable: a non-empty chain whose leaf carries a
// valid identity (returned) and whose public key matches Key, and whose
// certificates each sign the one before.
func (is *Issued) check() (Identity, error) {
	if is == nil || len(is.Chain) == 0 {
		return Identity{}, errors.New("pki: issued certificate has an empty chain")
	}
	for i, c := range is.Chain {
		if c == nil {
			return Identity{}, fmt.Errorf("pki: issued chain has a nil certificate at %d", i)
		}
	}
	leaf := is.Chain[0]
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("pki: issued certificate: %w", err)
	}
	if len(is.Key) != ed25519.PrivateKeySize {
		return Identity{}, errors.New("pki: issued key is not an ed25519 private key")
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return Identity{}, errors.New("pki: issued certificate does not hold an ed25519 public key")
	}
	if !bytes.Equal(pub, is.Key.Public().(ed25519.PublicKey)) {
		return Identity{}, errors.New("pki: issued key does not match the certificate")
	}
	for i := 1; i < len(is.Chain); i++ {
		if err := is.Chain[i-1].CheckSignatureFrom(is.Chain[i]); err != nil {
			return Identity{}, fmt.Errorf("pki: issued chain is broken at %d: %w", i, err)
		}
	}
	return id, nil
}
