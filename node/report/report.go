// Package report builds, signs and verifies reports, hops and the envelopes
// that carry them (DESIGN §4).
//
// The originator signs the header: id, originator, creation time, topics,
// route and one salted digest per portion. A holder passes on only the
// portions a recipient may have; the recipient verifies the signature and
// the digests of what it got, and sees withheld portions only as digests.
// Every signed statement is the exact serialized bytes that were signed,
// with the signer's certificate chain, so any holder can re-verify it later
// and across certificate rotations.
//
// The package is pure: it takes a clock reading and a Verifier as values
// and does no I/O.
package report

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// Limits on what a report may hold. They are checked at publish and again at
// receipt, so a peer cannot make a node store more than a publisher could.
const (
	MaxPortions      = 64
	MaxReportBytes   = 4 << 20 // sum of portion bodies and titles
	MaxTitleBytes    = 1024
	MaxTopics        = 32
	MaxRelTo         = 512 // more parties than a banner of marking.MaxBannerLen bytes can name
	MaxContentType   = 128
	MaxHops          = 16
	MaxAuthorities   = 64
	MaxStatementSize = 64 << 10 // one serialized header, hop or grant
	SaltSize         = 32
)

// Errors. Every error this package returns wraps one of these.
var (
	ErrInvalid   = errors.New("report: invalid")
	ErrSignature = errors.New("report: bad signature")
	ErrDigest    = errors.New("report: portion does not match the signed header")
	ErrTooLarge  = errors.New("report: too large")
)

// Statement kinds, used for domain separation of signatures.
const (
	KindHeader          = "header"
	KindHop             = "hop"
	KindGrant           = "grant"
	KindCrisis          = "crisis"
	KindWithdrawal      = "withdrawal"
	KindWithdrawalAck   = "withdrawal-ack"
	KindAuditCheckpoint = "audit-checkpoint"
	KindAuditExport     = "audit-export"
)

// Signer signs with a node's current key and returns the certificate chain
// (leaf first, DER) that verifies the signature. pki.CertSource is one.
type Signer interface {
	Sign(msg []byte) (sig []byte, chain [][]byte)
}

// Verifier verifies a certificate chain carried in a message against the
// CA of the party it names, as this node knows it, at a given time.
// pki.Trust is one.
type Verifier interface {
	VerifyDER(chain [][]byte, at time.Time) (pki.Identity, []*x509.Certificate, error)
}

// signingInput separates the signatures of different statement kinds, so a
// signature over a hop can never be replayed as one over a header.
func signingInput(kind string, payload []byte) []byte {
	return appendSigningInput(make([]byte, 0, len("tearline/v1/")+len(kind)+1+len(payload)), kind, payload)
}

// appendSigningInput appends signingInput(kind, payload) to b.
func appendSigningInput(b []byte, kind string, payload []byte) []byte {
	b = append(b, "tearline/v1/"...)
	b = append(b, kind...)
	b = append(b, 0)
	return append(b, payload...)
}

// SignStatement serializes m deterministically and signs it as kind.
func SignStatement(kind string, m proto.Message, s Signer) (*reportv1.Signed, error) {
	st, err := NewStatement(kind, m)
	if err != nil {
		return nil, err
	}
	return SignTogether(s, st)[0], nil
}

// Statement is a statement to sign: its kind and its payload, the
// deterministic encoding of its message.
type Statement struct {
	Kind    string
	Payload []byte
}

// NewStatement encodes m deterministically as a statement of kind, within
// MaxStatementSize.
func NewStatement(kind string, m proto.Message) (Statement, error) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return Statement{}, fmt.Errorf("%w: marshal %s: %v", ErrInvalid, kind, err)
	}
	if len(payload) > MaxStatementSize {
		return Statement{}, fmt.Errorf("%w: %s is %d bytes; the limit is %d", ErrTooLarge, kind, len(payload), MaxStatementSize)
	}
	return Statement{Kind: kind, Payload: payload}, nil
}

// SignTogether signs sts, in order. A BatchSigner signs them in one batch
// (with whatever else is waiting, up to MaxBatch): one signature for them
// all, which a receiver verifies once (a report's header and its hops, at
// a rate too low for batches to form by themselves). Another Signer signs
// each alone.
func SignTogether(s Signer, sts ...Statement) []*reportv1.Signed {
	if b, ok := s.(*BatchSigner); ok {
		return b.signBatched(sts)
	}
	out := make([]*reportv1.Signed, len(sts))
	for i, st := range sts {
		out[i] = signAlone(s, st)
	}
	return out
}

// verifyStatement checks sd's signature with its leaf key, then the chain
// against the signer's party CA at time at. It returns the signer.
func verifyStatement(kind string, sd *reportv1.Signed, v Verifier, at time.Time) (pki.Identity, error) {
	if len(sd.GetCertChain()) == 0 {
		return pki.Identity{}, fmt.Errorf("%w: %s carries no certificate chain", ErrSignature, kind)
	}
	id, certs, err := v.VerifyDER(sd.GetCertChain(), at)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("%w: %s signer: %w", ErrSignature, kind, err)
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return pki.Identity{}, fmt.Errorf("%w: %s signer key is not ed25519", ErrSignature, kind)
	}
	msg, err := signedInput(kind, sd)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("%s: %w", kind, err)
	}
	if !verifySignature(pub, msg, sd.GetSignature(), sd.GetBatch() != nil) {
		return pki.Identity{}, fmt.Errorf("%w: %s signature does not verify", ErrSignature, kind)
	}
	return id, nil
}

// Digest returns SHA-256(salt ‖ marking ‖ content-type ‖ title ‖ body), each
// field length-prefixed so that no two different portions share an input.
func Digest(p *reportv1.Portion) ([]byte, error) {
	m, err := MarkingFromProto(p.GetMarking())
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	writeField(h, p.GetSalt())
	writeField(h, m.Canonical())
	writeField(h, []byte(p.GetContentType()))
	writeField(h, []byte(p.GetTitle()))
	writeField(h, p.GetBody())
	return h.Sum(nil), nil
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// MarkingFromProto converts and validates a wire marking.
func MarkingFromProto(pm *reportv1.Marking) (marking.Marking, error) {
	if pm == nil {
		return marking.Marking{}, fmt.Errorf("%w: portion has no marking", ErrInvalid)
	}
	if len(pm.GetRelTo()) > MaxRelTo {
		return marking.Marking{}, fmt.Errorf("%w: REL TO names %d parties; the limit is %d", ErrTooLarge, len(pm.GetRelTo()), MaxRelTo)
	}
	m := marking.Marking{
		Classification: pm.GetClassification(),
		RelTo:          pm.GetRelTo(),
		NoForn:         pm.GetNoforn(),
		OrCon:          pm.GetOrcon(),
		Topics:         pm.GetTopics(),
	}
	if err := m.Validate(marking.Default); err != nil {
		return marking.Marking{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m, nil
}

// MarkingToProto converts a marking for the wire.
func MarkingToProto(m marking.Marking) *reportv1.Marking {
	return &reportv1.Marking{
		Classification: m.Classification,
		RelTo:          append([]string(nil), m.RelTo...),
		Noforn:         m.NoForn,
		Orcon:          m.OrCon,
		Topics:         append([]string(nil), m.Topics...),
	}
}

// Draft is a report before signing.
type Draft struct {
	Originator string
	Created    time.Time
	Topics     []string
	Route      []*reportv1.RouteEntry
	Portions   []*reportv1.Portion // marking, content type, title, body; index and salt are set by Seal
}

// Seal numbers the draft's portions, salts them, checks the limits, and
// signs the header. It returns the signed header and the complete portions.
func Seal(d Draft, s Signer) (*reportv1.Signed, []*reportv1.Portion, error) {
	h, ps, err := Prepare(d)
	if err != nil {
		return nil, nil, err
	}
	sd, err := SignStatement(KindHeader, h, s)
	if err != nil {
		return nil, nil, err
	}
	return sd, ps, nil
}

// Prepare is Seal without the signature: the header to sign (as
// NewStatement(KindHeader, h)) and the complete portions. A caller signs
// the header with other statements (SignTogether) to need one signature
// for them all.
func Prepare(d Draft) (*reportv1.Header, []*reportv1.Portion, error) {
	if len(d.Portions) == 0 {
		return nil, nil, fmt.Errorf("%w: a report needs at least one portion", ErrInvalid)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, nil, fmt.Errorf("report: new id: %w", err)
	}
	h := &reportv1.Header{
		Id:         id.String(),
		Originator: d.Originator,
		Created:    timestamppb.New(d.Created),
		Topics:     d.Topics,
		Route:      d.Route,
	}
	ps := make([]*reportv1.Portion, len(d.Portions))
	for i, in := range d.Portions {
		p := proto.CloneOf(in)
		p.Index = uint32(i + 1)
		p.Salt = make([]byte, SaltSize)
		if _, err := rand.Read(p.Salt); err != nil {
			return nil, nil, fmt.Errorf("report: salt: %w", err)
		}
		ps[i] = p
	}
	if err := CheckPortions(ps); err != nil {
		return nil, nil, err
	}
	if err := checkHeader(h, len(ps)); err != nil {
		return nil, nil, err
	}
	for _, p := range ps {
		dg, err := Digest(p)
		if err != nil {
			return nil, nil, err
		}
		h.Portions = append(h.Portions, &reportv1.PortionDigest{Index: p.Index, Digest: dg})
	}
	return h, ps, nil
}

// CheckPortions checks the limits on a set of portions: count, sizes,
// unique indexes, valid markings.
func CheckPortions(ps []*reportv1.Portion) error {
	if len(ps) > MaxPortions {
		return fmt.Errorf("%w: %d portions; the limit is %d", ErrTooLarge, len(ps), MaxPortions)
	}
	total := 0
	seen := make(map[uint32]bool, len(ps))
	for _, p := range ps {
		if p.GetIndex() == 0 || p.GetIndex() > MaxPortions {
			return fmt.Errorf("%w: portion index %d is out of range", ErrInvalid, p.GetIndex())
		}
		if seen[p.GetIndex()] {
			return fmt.Errorf("%w: portion %d appears twice", ErrInvalid, p.GetIndex())
		}
		seen[p.GetIndex()] = true
		if len(p.GetTitle()) > MaxTitleBytes {
			return fmt.Errorf("%w: portion %d title is %d bytes; the limit is %d", ErrTooLarge, p.GetIndex(), len(p.GetTitle()), MaxTitleBytes)
		}
		if len(p.GetContentType()) > MaxContentType {
			return fmt.Errorf("%w: portion %d content type is too long", ErrInvalid, p.GetIndex())
		}
		if len(p.GetSalt()) != SaltSize {
			return fmt.Errorf("%w: portion %d salt is %d bytes, want %d", ErrInvalid, p.GetIndex(), len(p.GetSalt()), SaltSize)
		}
		if len(p.GetMarking().GetTopics()) > MaxTopics {
			return fmt.Errorf("%w: portion %d has %d topics; the limit is %d", ErrTooLarge, p.GetIndex(), len(p.GetMarking().GetTopics()), MaxTopics)
		}
		if _, err := MarkingFromProto(p.GetMarking()); err != nil {
			return fmt.Errorf("portion %d: %w", p.GetIndex(), err)
		}
		total += len(p.GetBody()) + len(p.GetTitle())
	}
	if total > MaxReportBytes {
		return fmt.Errorf("%w: report content is %d bytes; the limit is %d (%d MiB)", ErrTooLarge, total, MaxReportBytes, MaxReportBytes>>20)
	}
	return nil
}

func checkHeader(h *reportv1.Header, maxPortions int) error {
	if !IsUUID(h.GetId()) {
		return fmt.Errorf("%w: report id %s is not a UUID", ErrInvalid, marking.Quote(h.GetId()))
	}
	if !marking.ValidParty(h.GetOriginator()) {
		return fmt.Errorf("%w: originator %s is not a party code", ErrInvalid, marking.Quote(h.GetOriginator()))
	}
	if h.GetCreated() == nil || h.GetCreated().CheckValid() != nil {
		return fmt.Errorf("%w: report has no valid creation time", ErrInvalid)
	}
	if len(h.GetTopics()) > MaxTopics {
		return fmt.Errorf("%w: %d topics; the limit is %d", ErrTooLarge, len(h.GetTopics()), MaxTopics)
	}
	for _, t := range h.GetTopics() {
		if !marking.ValidTopic(t) {
			return fmt.Errorf("%w: topic %s is not valid", ErrInvalid, marking.Quote(t))
		}
	}
	if len(h.GetRoute()) > MaxHops {
		return fmt.Errorf("%w: route has %d entries; the limit is %d", ErrTooLarge, len(h.GetRoute()), MaxHops)
	}
	for _, r := range h.GetRoute() {
		if !marking.ValidParty(r.GetVia()) || !marking.ValidParty(r.GetTo()) {
			return fmt.Errorf("%w: route entry %s -> %s names an invalid party", ErrInvalid, marking.Quote(r.GetVia()), marking.Quote(r.GetTo()))
		}
	}
	if maxPortions >= 0 && len(h.GetPortions()) > MaxPortions {
		return fmt.Errorf("%w: header lists %d portions; the limit is %d", ErrTooLarge, len(h.GetPortions()), MaxPortions)
	}
	return nil
}

// Signer identity of a verified statement.
type Verified struct {
	Header *reportv1.Header
	Signer pki.Identity
	// Digest is SHA-256 of the signed header payload; hops name it.
	Digest []byte
}

// OpenHeader verifies a signed header: its payload parses and is within
// limits, the signer is a node of the originator's party whose chain
// verifies against that party's CA at the creation time, and the signature
// verifies.
func OpenHeader(sd *reportv1.Signed, v Verifier) (*Verified, error) {
	h, err := parseHeader(sd)
	if err != nil {
		return nil, err
	}
	id, err := verifyStatement(KindHeader, sd, v, h.GetCreated().AsTime())
	if err != nil {
		return nil, err
	}
	if id.Party != h.GetOriginator() || id.Kind != pki.KindNode {
		return nil, fmt.Errorf("%w: header names originator %s but is signed by %s", ErrSignature, h.GetOriginator(), id)
	}
	sum := sha256.Sum256(sd.GetPayload())
	return &Verified{Header: h, Signer: id, Digest: sum[:]}, nil
}

// OpenOwnHeader reads a header that this node has just sealed with its own
// signer, without checking the signature it has just made: every receiver
// checks it (OpenHeader). Use OpenHeader for a header from anywhere else.
func OpenOwnHeader(sd *reportv1.Signed) (*Verified, error) {
	h, err := parseHeader(sd)
	if err != nil {
		return nil, err
	}
	if len(sd.GetCertChain()) == 0 {
		return nil, fmt.Errorf("%w: header carries no certificate chain", ErrSignature)
	}
	id, err := ownSigner(sd.GetCertChain()[0])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(sd.GetPayload())
	return &Verified{Header: h, Signer: id, Digest: sum[:]}, nil
}

// lastOwn remembers the identity in the node's current certificate, which
// signs every header it seals until the next rotation.
var lastOwn struct {
	sync.Mutex
	der []byte
	id  pki.Identity
}

func ownSigner(der []byte) (pki.Identity, error) {
	lastOwn.Lock()
	defer lastOwn.Unlock()
	if bytes.Equal(der, lastOwn.der) {
		return lastOwn.id, nil
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("%w: header signer: %v", ErrSignature, err)
	}
	id, err := pki.IdentityFromCert(leaf)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("%w: header signer: %w", ErrSignature, err)
	}
	lastOwn.der, lastOwn.id = bytes.Clone(der), id
	return id, nil
}

// parseHeader parses a signed header's payload and checks it is well formed
// and within limits.
func parseHeader(sd *reportv1.Signed) (*reportv1.Header, error) {
	if sd == nil {
		return nil, fmt.Errorf("%w: no header", ErrInvalid)
	}
	if len(sd.GetPayload()) > MaxStatementSize {
		return nil, fmt.Errorf("%w: header is %d bytes", ErrTooLarge, len(sd.GetPayload()))
	}
	h := &reportv1.Header{}
	if err := proto.Unmarshal(sd.GetPayload(), h); err != nil {
		return nil, fmt.Errorf("%w: header does not parse: %v", ErrInvalid, err)
	}
	if err := checkHeader(h, MaxPortions); err != nil {
		return nil, err
	}
	seen := make(map[uint32]bool)
	for _, pd := range h.GetPortions() {
		if pd.GetIndex() == 0 || pd.GetIndex() > MaxPortions || seen[pd.GetIndex()] || len(pd.GetDigest()) != sha256.Size {
			return nil, fmt.Errorf("%w: header portion digest %d is malformed or repeated", ErrInvalid, pd.GetIndex())
		}
		seen[pd.GetIndex()] = true
	}
	if len(h.GetPortions()) == 0 {
		return nil, fmt.Errorf("%w: header lists no portions", ErrInvalid)
	}
	return h, nil
}

// DigestOf returns the header digest entry for index, or nil.
func DigestOf(h *reportv1.Header, index uint32) []byte {
	for _, pd := range h.GetPortions() {
		if pd.GetIndex() == index {
			return pd.GetDigest()
		}
	}
	return nil
}

// CheckAgainstHeader checks that every portion is listed in the header and
// matches its signed digest.
func CheckAgainstHeader(h *reportv1.Header, ps []*reportv1.Portion) error {
	if err := CheckPortions(ps); err != nil {
		return err
	}
	for _, p := range ps {
		want := DigestOf(h, p.GetIndex())
		if want == nil {
			return fmt.Errorf("%w: portion %d is not in the signed header", ErrDigest, p.GetIndex())
		}
		got, err := Digest(p)
		if err != nil {
			return err
		}
		if !equal(got, want) {
			return fmt.Errorf("%w: portion %d", ErrDigest, p.GetIndex())
		}
	}
	return nil
}

func equal(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := range a {
		d |= a[i] ^ b[i]
	}
	return d == 0
}

// SignHop signs a hop statement.
func SignHop(h *reportv1.Hop, s Signer) (*reportv1.Signed, error) {
	return SignStatement(KindHop, h, s)
}

// VerifiedHop is a hop whose signature verified.
type VerifiedHop struct {
	Hop    *reportv1.Hop
	Signer pki.Identity
}

// OpenHop verifies a signed hop: it parses, it is bound to the header with
// headerDigest, and it is signed by a node of the party it names as sender.
func OpenHop(sd *reportv1.Signed, headerDigest []byte, reportID string, v Verifier) (*VerifiedHop, error) {
	if len(sd.GetPayload()) > MaxStatementSize {
		return nil, fmt.Errorf("%w: hop is %d bytes", ErrTooLarge, len(sd.GetPayload()))
	}
	h := &reportv1.Hop{}
	if err := proto.Unmarshal(sd.GetPayload(), h); err != nil {
		return nil, fmt.Errorf("%w: hop does not parse: %v", ErrInvalid, err)
	}
	// The parties first: a hop's text is echoed in errors only once it is
	// known to be two party codes (a hostile sender chooses it).
	if !marking.ValidParty(h.GetFrom()) || !marking.ValidParty(h.GetTo()) || h.GetSent() == nil || h.GetSent().CheckValid() != nil {
		return nil, fmt.Errorf("%w: hop is malformed", ErrInvalid)
	}
	if h.GetReportId() != reportID || !equal(h.GetHeaderDigest(), headerDigest) {
		return nil, fmt.Errorf("%w: hop %s -> %s is for another report", ErrInvalid, h.GetFrom(), h.GetTo())
	}
	if len(h.GetPortions()) == 0 || len(h.GetPortions()) > MaxPortions {
		return nil, fmt.Errorf("%w: hop %s -> %s carries %d portions", ErrInvalid, h.GetFrom(), h.GetTo(), len(h.GetPortions()))
	}
	// Each portion once: a hop that lists one twice, on two bases, is
	// ambiguous about the basis it released it on.
	seen := make(map[uint32]bool, len(h.GetPortions()))
	for _, pr := range h.GetPortions() {
		if pr.GetIndex() == 0 || pr.GetIndex() > MaxPortions {
			return nil, fmt.Errorf("%w: hop %s -> %s lists portion %d, which is out of range", ErrInvalid, h.GetFrom(), h.GetTo(), pr.GetIndex())
		}
		if seen[pr.GetIndex()] {
			return nil, fmt.Errorf("%w: hop %s -> %s lists portion %d twice", ErrInvalid, h.GetFrom(), h.GetTo(), pr.GetIndex())
		}
		seen[pr.GetIndex()] = true
	}
	id, err := verifyStatement(KindHop, sd, v, h.GetSent().AsTime())
	if err != nil {
		return nil, err
	}
	if id.Party != h.GetFrom() || id.Kind != pki.KindNode {
		return nil, fmt.Errorf("%w: hop from %s is signed by %s", ErrSignature, h.GetFrom(), id)
	}
	return &VerifiedHop{Hop: h, Signer: id}, nil
}

// OpenGrant verifies a signed consent grant: it parses, and it is signed by
// a node of the originator it names, whose chain verifies at its issue time.
func OpenGrant(sd *reportv1.Signed, v Verifier) (*reportv1.ConsentGrant, pki.Identity, error) {
	g := &reportv1.ConsentGrant{}
	if len(sd.GetPayload()) > MaxStatementSize {
		return nil, pki.Identity{}, fmt.Errorf("%w: grant is %d bytes", ErrTooLarge, len(sd.GetPayload()))
	}
	if err := proto.Unmarshal(sd.GetPayload(), g); err != nil {
		return nil, pki.Identity{}, fmt.Errorf("%w: grant does not parse: %v", ErrInvalid, err)
	}
	if g.GetIssued().CheckValid() != nil || g.GetExpires().CheckValid() != nil || !marking.ValidParty(g.GetOriginator()) ||
		!marking.ValidParty(g.GetHolder()) || !marking.ValidParty(g.GetTo()) || len(g.GetPortions()) > MaxPortions {
		return nil, pki.Identity{}, fmt.Errorf("%w: grant is malformed", ErrInvalid)
	}
	id, err := verifyStatement(KindGrant, sd, v, g.GetIssued().AsTime())
	if err != nil {
		return nil, pki.Identity{}, err
	}
	if id.Party != g.GetOriginator() || id.Kind != pki.KindNode {
		return nil, pki.Identity{}, fmt.Errorf("%w: grant of %s is signed by %s", ErrSignature, g.GetOriginator(), id)
	}
	return g, id, nil
}

// OpenCrisis verifies a signed crisis declaration (or end notice) the same way.
func OpenCrisis(sd *reportv1.Signed, v Verifier) (*reportv1.CrisisDeclaration, pki.Identity, error) {
	c := &reportv1.CrisisDeclaration{}
	if len(sd.GetPayload()) > MaxStatementSize {
		return nil, pki.Identity{}, fmt.Errorf("%w: declaration is %d bytes", ErrTooLarge, len(sd.GetPayload()))
	}
	if err := proto.Unmarshal(sd.GetPayload(), c); err != nil {
		return nil, pki.Identity{}, fmt.Errorf("%w: declaration does not parse: %v", ErrInvalid, err)
	}
	if c.GetIssued().CheckValid() != nil || c.GetExpires().CheckValid() != nil || !marking.ValidParty(c.GetOriginator()) ||
		len(c.GetParties()) > 64 || len(c.GetTopics()) > MaxTopics {
		return nil, pki.Identity{}, fmt.Errorf("%w: declaration is malformed", ErrInvalid)
	}
	id, err := verifyStatement(KindCrisis, sd, v, c.GetIssued().AsTime())
	if err != nil {
		return nil, pki.Identity{}, err
	}
	if id.Party != c.GetOriginator() || id.Kind != pki.KindNode {
		return nil, pki.Identity{}, fmt.Errorf("%w: declaration of %s is signed by %s", ErrSignature, c.GetOriginator(), id)
	}
	return c, id, nil
}

// IsUUID reports whether s is a UUID in its 36-character form, as report,
// withdrawal and declaration ids are: ids a statement names become store
// keys, so nothing else is let through.
func IsUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// OpenWithdrawal verifies a signed withdrawal: signed by a node of the
// originator it names, whose chain verifies at its issue time, for a
// report id and with an id of its own that are UUIDs.
func OpenWithdrawal(sd *reportv1.Signed, v Verifier) (*reportv1.Withdrawal, error) {
	w := &reportv1.Withdrawal{}
	if len(sd.GetPayload()) > MaxStatementSize || proto.Unmarshal(sd.GetPayload(), w) != nil {
		return nil, fmt.Errorf("%w: withdrawal does not parse", ErrInvalid)
	}
	if w.GetIssued().CheckValid() != nil || !marking.ValidParty(w.GetOriginator()) || (w.GetAction() != "purge" && w.GetAction() != "quarantine") ||
		!IsUUID(w.GetReportId()) || !IsUUID(w.GetId()) {
		return nil, fmt.Errorf("%w: withdrawal is malformed", ErrInvalid)
	}
	id, err := verifyStatement(KindWithdrawal, sd, v, w.GetIssued().AsTime())
	if err != nil {
		return nil, err
	}
	if id.Party != w.GetOriginator() || id.Kind != pki.KindNode {
		return nil, fmt.Errorf("%w: withdrawal of %s is signed by %s", ErrSignature, w.GetOriginator(), id)
	}
	return w, nil
}

// OpenWithdrawalAck verifies a signed acknowledgement: signed by a node of
// the holder it names.
func OpenWithdrawalAck(sd *reportv1.Signed, v Verifier) (*reportv1.WithdrawalAck, error) {
	a := &reportv1.WithdrawalAck{}
	if len(sd.GetPayload()) > MaxStatementSize || proto.Unmarshal(sd.GetPayload(), a) != nil {
		return nil, fmt.Errorf("%w: withdrawal acknowledgement does not parse", ErrInvalid)
	}
	if a.GetApplied().CheckValid() != nil || !marking.ValidParty(a.GetHolder()) {
		return nil, fmt.Errorf("%w: withdrawal acknowledgement is malformed", ErrInvalid)
	}
	id, err := verifyStatement(KindWithdrawalAck, sd, v, a.GetApplied().AsTime())
	if err != nil {
		return nil, err
	}
	if id.Party != a.GetHolder() || id.Kind != pki.KindNode {
		return nil, fmt.Errorf("%w: acknowledgement of %s is signed by %s", ErrSignature, a.GetHolder(), id)
	}
	return a, nil
}

// OpenAuditCheckpoint verifies a signed audit checkpoint: it parses, its
// head is a SHA-256, and it is signed by a node of the party it names,
// whose chain verifies against that party's CA at the checkpoint's time.
func OpenAuditCheckpoint(sd *reportv1.Signed, v Verifier) (*reportv1.AuditCheckpoint, pki.Identity, error) {
	c := &reportv1.AuditCheckpoint{}
	if len(sd.GetPayload()) > MaxStatementSize || proto.Unmarshal(sd.GetPayload(), c) != nil {
		return nil, pki.Identity{}, fmt.Errorf("%w: audit checkpoint does not parse", ErrInvalid)
	}
	if c.GetTime().CheckValid() != nil || !marking.ValidParty(c.GetParty()) || c.GetSeq() == 0 || len(c.GetHead()) != sha256.Size {
		return nil, pki.Identity{}, fmt.Errorf("%w: audit checkpoint is malformed", ErrInvalid)
	}
	id, err := verifyStatement(KindAuditCheckpoint, sd, v, c.GetTime().AsTime())
	if err != nil {
		return nil, pki.Identity{}, err
	}
	if id.Party != c.GetParty() || id.Kind != pki.KindNode {
		return nil, pki.Identity{}, fmt.Errorf("%w: audit checkpoint of %s is signed by %s", ErrSignature, c.GetParty(), id)
	}
	return c, id, nil
}

// OpenAuditExport verifies a node's signed statement of an audit export: it
// parses, its sequence numbers and head are well formed, and it is signed
// (as kind "audit-export", so that no checkpoint or other statement opens
// as one) by a node of the party it names, whose chain verifies against
// that party's CA at the time of the export.
func OpenAuditExport(sd *reportv1.Signed, v Verifier) (*reportv1.AuditExport, pki.Identity, error) {
	x := &reportv1.AuditExport{}
	if len(sd.GetPayload()) > MaxStatementSize || proto.Unmarshal(sd.GetPayload(), x) != nil {
		return nil, pki.Identity{}, fmt.Errorf("%w: audit export statement does not parse", ErrInvalid)
	}
	if x.GetExported().CheckValid() != nil || (x.GetSince() != nil && x.GetSince().CheckValid() != nil) || !marking.ValidParty(x.GetParty()) ||
		x.GetLastSeq() == 0 || x.GetFirstSeq() == 0 || x.GetFirstSeq() > x.GetLastSeq()+1 || len(x.GetHead()) != sha256.Size {
		return nil, pki.Identity{}, fmt.Errorf("%w: audit export statement is malformed", ErrInvalid)
	}
	id, err := verifyStatement(KindAuditExport, sd, v, x.GetExported().AsTime())
	if err != nil {
		return nil, pki.Identity{}, err
	}
	if id.Party != x.GetParty() || id.Kind != pki.KindNode {
		return nil, pki.Identity{}, fmt.Errorf("%w: audit export statement of %s is signed by %s", ErrSignature, x.GetParty(), id)
	}
	return x, id, nil
}
