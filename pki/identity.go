package pki

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrIdentity is wrapped by every error about a malformed or missing identity.
var ErrIdentity = errors.New("pki: bad identity")

// Kind is the kind of principal an identity names.
type Kind string

// The kinds of principal.
const (
	// KindNode is a Tearline node (one per party).
	KindNode Kind = "node"
	// KindService is a subscriber service of a party.
	KindService Kind = "svc"
	// KindOfficer is a liaison officer of a party.
	KindOfficer Kind = "officer"
)

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindNode, KindService, KindOfficer:
		return true
	}
	return false
}

// Identity is a principal named by the URI SAN
// spiffe://<Domain>/party/<Party>/<Kind>/<Name>.
type Identity struct {
	// Domain is the SPIFFE trust domain of the party, by default
	// DefaultDomain(Party).
	Domain string
	// Party is the party code, [A-Z0-9-]{2,16}.
	Party string
	// Kind is the kind of principal.
	Kind Kind
	// Name is the principal's name within its party and kind,
	// [a-z0-9][a-z0-9._-]{0,62}.
	Name string
}

const (
	uriScheme      = "spiffe://"
	maxIdentityURI = 512 // longer than any valid identity URI
	maxDomainLen   = 253
	maxLabelLen    = 63
)

// DefaultDomain returns the default trust domain of a party:
// "<code in lower case>.tearline.test".
func DefaultDomain(party string) string {
	return strings.ToLower(party) + ".tearline.test"
}

// NewIdentity returns the identity of a principal of party in the party's
// default domain, or an error wrapping ErrIdentity if any part is invalid.
func NewIdentity(party string, kind Kind, name string) (Identity, error) {
	id := Identity{Domain: DefaultDomain(party), Party: party, Kind: kind, Name: name}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Validate reports, wrapped in ErrIdentity, why id is not a well-formed identity.
func (id Identity) Validate() error {
	if err := ValidateParty(id.Party); err != nil {
		return err
	}
	if !validDomain(id.Domain) {
		return fmt.Errorf("%w: invalid trust domain %q", ErrIdentity, id.Domain)
	}
	if !id.Kind.Valid() {
		return fmt.Errorf("%w: invalid kind %q (want node, svc or officer)", ErrIdentity, id.Kind)
	}
	if !validName(id.Name) {
		return fmt.Errorf("%w: invalid name %q (want [a-z0-9][a-z0-9._-]{0,62})", ErrIdentity, id.Name)
	}
	return nil
}

// ValidateParty reports, wrapped in ErrIdentity, whether party is not a valid
// party code ([A-Z0-9-]{2,16}).
func ValidateParty(party string) error {
	if len(party) < 2 || len(party) > 16 {
		return fmt.Errorf("%w: invalid party code %q (want [A-Z0-9-]{2,16})", ErrIdentity, party)
	}
	for i := 0; i < len(party); i++ {
		c := party[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: invalid party code %q (want [A-Z0-9-]{2,16})", ErrIdentity, party)
		}
	}
	return nil
}

// validName: [a-z0-9][a-z0-9._-]{0,62}.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return false
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validDomain accepts a SPIFFE trust domain: lower-case letters, digits, '.',
// '-' and '_', made of non-empty dot-separated labels of at most 63 bytes,
// at most 253 bytes in all.
func validDomain(s string) bool {
	if len(s) < 1 || len(s) > maxDomainLen {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) < 1 || len(label) > maxLabelLen {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ParseIdentity parses an identity URI strictly: the scheme is exactly
// "spiffe", the authority is a bare trust domain (no user info, no port), the
// path is exactly /party/<CODE>/<kind>/<name> with no percent-encoding, and
// there is no query or fragment. Errors wrap ErrIdentity.
func ParseIdentity(uri string) (Identity, error) {
	if len(uri) > maxIdentityURI {
		return Identity{}, fmt.Errorf("%w: identity URI longer than %d bytes", ErrIdentity, maxIdentityURI)
	}
	rest, ok := strings.CutPrefix(uri, uriScheme)
	if !ok {
		return Identity{}, fmt.Errorf("%w: %q does not start with %q", ErrIdentity, uri, uriScheme)
	}
	// Every valid component is drawn from [A-Za-z0-9._-], so any of
	// "?#@:%" or other bytes means a query, fragment, user info, port or
	// escape: refuse them all here, then split on '/'.
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == '/') {
			return Identity{}, fmt.Errorf("%w: %q: unexpected character %q", ErrIdentity, uri, c)
		}
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "party" {
		return Identity{}, fmt.Errorf("%w: %q: want spiffe://<domain>/party/<CODE>/<kind>/<name>", ErrIdentity, uri)
	}
	id := Identity{Domain: parts[0], Party: parts[2], Kind: Kind(parts[3]), Name: parts[4]}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("%q: %w", uri, err)
	}
	return id, nil
}

// URI returns the identity as a URL, as written into a certificate's URI SAN.
func (id Identity) URI() *url.URL {
	return &url.URL{
		Scheme: "spiffe",
		Host:   id.Domain,
		Path:   "/party/" + id.Party + "/" + string(id.Kind) + "/" + id.Name,
	}
}

// String returns the identity URI, spiffe://<domain>/party/<CODE>/<kind>/<name>.
func (id Identity) String() string {
	return uriScheme + id.Domain + "/party/" + id.Party + "/" + string(id.Kind) + "/" + id.Name
}

// IsZero reports whether id is the zero Identity.
func (id Identity) IsZero() bool { return id == Identity{} }

var oidExtensionSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// IdentityFromCert returns the identity named by the certificate's single URI
// SAN. A certificate with no URI SAN, more than one, or one that is not a
// well-formed identity is refused with an error wrapping ErrIdentity. The SAN
// is read from the raw extension, so no URL normalisation can turn a
// malformed name into an accepted one.
func IdentityFromCert(c *x509.Certificate) (Identity, error) {
	if c == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrIdentity)
	}
	uris, err := rawURISANs(c)
	if err != nil {
		return Identity{}, err
	}
	switch len(uris) {
	case 0:
		return Identity{}, fmt.Errorf("%w: certificate has no URI SAN", ErrIdentity)
	case 1:
	default:
		return Identity{}, fmt.Errorf("%w: certificate has %d URI SANs, want exactly one", ErrIdentity, len(uris))
	}
	if len(c.URIs) != 1 { // the x509 parser must agree
		return Identity{}, fmt.Errorf("%w: certificate URI SANs are inconsistent", ErrIdentity)
	}
	return ParseIdentity(uris[0])
}

// rawURISANs returns the uniformResourceIdentifier entries of the subject
// alternative name extension as they are encoded.
func rawURISANs(c *x509.Certificate) ([]string, error) {
	var uris []string
	seen := false
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidExtensionSubjectAltName) {
			continue
		}
		if seen {
			return nil, fmt.Errorf("%w: duplicate subject alternative name extension", ErrIdentity)
		}
		seen = true
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) != 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence || seq.Class != asn1.ClassUniversal {
			return nil, fmt.Errorf("%w: malformed subject alternative name extension", ErrIdentity)
		}
		for b := seq.Bytes; len(b) > 0; {
			var v asn1.RawValue
			b, err = asn1.Unmarshal(b, &v)
			if err != nil {
				return nil, fmt.Errorf("%w: malformed subject alternative name", ErrIdentity)
			}
			const tagURI = 6
			if v.Class == asn1.ClassContextSpecific && v.Tag == tagURI {
				uris = append(uris, string(v.Bytes))
			}
		}
	}
	return uris, nil
}
