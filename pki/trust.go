package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tearline/tearline/internal/lru"
)

// ErrUntrusted is wrapped by every error refusing a certificate chain.
var ErrUntrusted = errors.New("pki: untrusted certificate")

// Bounds on certificate chains carried in messages (VerifyDER), also applied
// to chains presented in TLS handshakes (Verify).
const (
	// MaxChainLen is the most certificates a chain may hold, leaf included.
	MaxChainLen = 4
	// MaxCertSize is the largest DER certificate accepted, in bytes.
	MaxCertSize = 16 << 10
)

// Trust records which CA certificates vouch for which party. A party's CAs are
// trust anchors for that party's identities only: a partner's CA can never
// vouch for an identity of another party. It is safe for concurrent use;
// Set replaces a party's anchors atomically.
type Trust struct {
	mu      sync.RWMutex
	parties map[string]trustAnchors
	gen     uint64 // counts Set calls: a verdict cached under another gen is stale

	cache *lru.Map[[sha256.Size]byte, verdict]
}

// verdict is a chain that verified under anchors of generation gen, and the
// window in which every certificate of the chain used is valid.
type verdict struct {
	id                  Identity
	certs               []*x509.Certificate // the chain as presented, parsed
	gen                 uint64
	notBefore, notAfter time.Time
}

// maxVerdicts is how many verdicts a generation of the cache holds.
const maxVerdicts = 4096

type trustAnchors struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// NewTrust returns a Trust that trusts no one.
func NewTrust() *Trust {
	return &Trust{parties: make(map[string]trustAnchors), cache: lru.New[[sha256.Size]byte, verdict](maxVerdicts)}
}

// Set replaces the CA certificates trusted for party's identities. An empty
// cas removes the party, so its identities are refused from then on.
// Connections already established are not affected.
func (t *Trust) Set(party string, cas []*x509.Certificate) {
	var anchors trustAnchors
	for _, c := range cas {
		if c == nil {
			continue
		}
		if anchors.pool == nil {
			anchors.pool = x509.NewCertPool()
		}
		anchors.pool.AddCert(c)
		anchors.certs = append(anchors.certs, c)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	if anchors.pool == nil {
		delete(t.parties, party)
		return
	}
	t.parties[party] = anchors
}

// Parties returns the codes of the parties with trusted CAs, sorted.
func (t *Trust) Parties() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Sorted(maps.Keys(t.parties))
}

// CAs returns the CA certificates trusted for party, or nil.
func (t *Trust) CAs(party string) []*x509.Certificate {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.parties[party].certs)
}

// Verify checks a certificate chain (leaf first, then any intermediates) at
// time at (time.Now if zero) and returns the leaf's identity. The leaf must
// carry exactly one URI SAN naming a valid identity, must not be a CA, and
// must chain to a CA trusted for the identity's party — that party's anchors
// only. Errors wrap ErrUntrusted and say why the chain was refused.
func (t *Trust) Verify(chain []*x509.Certificate, at time.Time) (Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	if len(chain) > MaxChainLen {
		return Identity{}, fmt.Errorf("%w: chain of %d certificates, at most %d allowed", ErrUntrusted, len(chain), MaxChainLen)
	}
	leaf := chain[0]
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	if leaf.IsCA {
		return Identity{}, fmt.Errorf("%w: %s: the leaf certificate is a CA certificate", ErrUntrusted, id)
	}
	t.mu.RLock()
	anchors, ok := t.parties[id.Party]
	gen := t.gen
	t.mu.RUnlock()
	if !ok {
		return Identity{}, fmt.Errorf("%w: %s: no CA is trusted for party %s", ErrUntrusted, id, id.Party)
	}
	if at.IsZero() {
		at = time.Now()
	}
	key := chainKey(chain)
	if v, ok := t.cached(key, gen, at); ok {
		return v.id, nil
	}
	inter := x509.NewCertPool()
	for i, c := range chain[1:] {
		if c == nil {
			return Identity{}, fmt.Errorf("%w: %s: nil certificate at %d in the chain", ErrUntrusted, id, i+1)
		}
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         anchors.pool,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return Identity{}, t.explain(err, id, chain, at)
	}
	t.remember(key, id, gen, chain, chains[0])
	return id, nil
}

// chainKey identifies a presented chain by its certificates' bytes.
func chainKey(chain []*x509.Certificate) [sha256.Size]byte {
	der := make([][]byte, len(chain))
	for i, c := range chain {
		der[i] = c.Raw
	}
	return derKey(der)
}

func derKey(der [][]byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, c := range der {
		binary.BigEndian.PutUint64(n[:], uint64(len(c)))
		h.Write(n[:])
		h.Write(c)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// cached returns the verdict on a chain that verified before under the
// same anchors, if every certificate it was verified with is valid at at.
// A verification costs two signature checks and more; certificates are
// immutable, so an earlier verdict stands while the anchors do.
func (t *Trust) cached(key [sha256.Size]byte, gen uint64, at time.Time) (verdict, bool) {
	v, ok := t.cache.Get(key)
	if !ok || v.gen != gen || at.Before(v.notBefore) || at.After(v.notAfter) {
		return verdict{}, false
	}
	return v, true
}

func (t *Trust) remember(key [sha256.Size]byte, id Identity, gen uint64, presented, verified []*x509.Certificate) {
	v := verdict{id: id, certs: presented, gen: gen}
	for i, c := range verified {
		if i == 0 || c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	t.cache.Put(key, v)
}

// explain turns an x509 verification error into an ErrUntrusted error that
// names the reason.
func (t *Trust) explain(err error, id Identity, chain []*x509.Certificate, at time.Time) error {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		c := invalid.Cert
		what := "expired"
		if at.IsZero() {
			at = time.Now()
		}
		if at.Before(c.NotBefore) {
			what = "not yet valid"
		}
		return fmt.Errorf("%w: %s: certificate %s (serial %s) is %s at %s (valid %s to %s)",
			ErrUntrusted, id, certName(c), serialHex(c), what, at.UTC().Format(time.RFC3339),
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	case errors.As(err, &invalid) && invalid.Reason == x509.CANotAuthorizedForThisName:
		return fmt.Errorf("%w: %s: a CA in the chain is not permitted to name this identity (%v)", ErrUntrusted, id, err)
	case errors.As(err, &unknown):
		if other := t.signingParty(chain, id.Party); other != "" {
			return fmt.Errorf("%w: %s: signed by the CA of party %s, which is trusted only for %s identities",
				ErrUntrusted, id, other, other)
		}
		return fmt.Errorf("%w: %s: signed by an unknown CA, not one trusted for party %s", ErrUntrusted, id, id.Party)
	default:
		return fmt.Errorf("%w: %s: %v", ErrUntrusted, id, err)
	}
}

// signingParty returns the first other party (in sorted order) one of whose
// CAs signed a certificate of chain, or "". It runs only on the refusal path,
// to attribute a chain that an other party's CA vouches for.
func (t *Trust) signingParty(chain []*x509.Certificate, except string) string {
	t.mu.RLock()
	parties := maps.Clone(t.parties)
	t.mu.RUnlock()
	for _, p := range slices.Sorted(maps.Keys(parties)) {
		if p == except {
			continue
		}
		for _, ca := range parties[p].certs {
			for _, c := range chain {
				if c == nil {
					continue
				}
				if c.Equal(ca) || bytes.Equal(c.RawIssuer, ca.RawSubject) && c.CheckSignatureFrom(ca) == nil {
					return p
				}
			}
		}
	}
	return ""
}

// VerifyDER parses a DER certificate chain carried in a message (leaf first)
// and verifies it as Verify does. The chain may hold at most MaxChainLen
// certificates of at most MaxCertSize bytes each. It returns the identity and
// the parsed chain. Errors wrap ErrUntrusted.
func (t *Trust) VerifyDER(chain [][]byte, at time.Time) (Identity, []*x509.Certificate, error) {
	if len(chain) == 0 {
		return Identity{}, nil, fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	if len(chain) > MaxChainLen {
		return Identity{}, nil, fmt.Errorf("%w: chain of %d certificates, at most %d allowed", ErrUntrusted, len(chain), MaxChainLen)
	}
	// A chain verified before is neither parsed nor verified again.
	t.mu.RLock()
	gen := t.gen
	t.mu.RUnlock()
	if at.IsZero() {
		at = time.Now()
	}
	if v, ok := t.cached(derKey(chain), gen, at); ok {
		return v.id, v.certs, nil
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		if len(der) == 0 || len(der) > MaxCertSize {
			return Identity{}, nil, fmt.Errorf("%w: certificate %d is %d bytes, want 1 to %d", ErrUntrusted, i, len(der), MaxCertSize)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Identity{}, nil, fmt.Errorf("%w: certificate %d: %v", ErrUntrusted, i, err)
		}
		certs[i] = c
	}
	id, err := t.Verify(certs, at)
	if err != nil {
		return Identity{}, nil, err
	}
	return id, certs, nil
}

// certName names a certificate in messages: its subject, or its URI SAN.
func certName(c *x509.Certificate) string {
	if c == nil {
		return "<nil>"
	}
	if s := c.Subject.String(); s != "" {
		return fmt.Sprintf("%q", s)
	}
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return "<no subject>"
}

// serialHex renders a certificate's serial number in hex, as logs show it.
func serialHex(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}
