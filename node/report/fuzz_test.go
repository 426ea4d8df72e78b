package report_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// fuzzTrustDir holds the CA certificates (no keys) of the development CAs
// that signed the committed seeds under testdata/fuzz/FuzzEnvelope. Statements
// are verified at their own creation time, so those seeds keep verifying
// after the certificates have expired.
const fuzzTrustDir = "testdata/fuzz-trust"

// fuzzParties are the parties whose CAs the fuzz targets trust.
var fuzzParties = []string{"USA", "GBR"}

// fuzzFixture is a trust with fresh CAs for fuzzParties (plus the committed
// seed CAs) and signers of those fresh CAs.
type fuzzFixture struct {
	trust   *pki.Trust
	signers map[string]*pki.CertSource
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	f.Helper()
	fx := &fuzzFixture{trust: pki.NewTrust(), signers: make(map[string]*pki.CertSource)}
	for _, p := range fuzzParties {
		ca, err := pki.OpenDevCA(f.TempDir(), p)
		if err != nil {
			f.Fatal(err)
		}
		committed, err := pki.ReadCertificatesFile(filepath.Join(fuzzTrustDir, p+".pem"))
		if err != nil {
			f.Fatalf("committed seed CA of %s: %v", p, err)
		}
		fx.trust.Set(p, append([]*x509.Certificate{ca.Certificate()}, committed...))
		fx.signers[p] = newSource(f, ca, p, pki.KindNode, "n1")
	}
	return fx
}

// validEnvelope returns an envelope as GBR would send it to CAN: USA's
// header, the portions released to CAN (1 and 3 of 3), and the hops
// USA -> GBR and GBR -> CAN.
func validEnvelope(t testing.TB, usa, gbr report.Signer, trust report.Verifier) (*reportv1.Envelope, sealed) {
	t.Helper()
	created := time.Now()
	r := seal(t, draft("USA", created), usa, trust)
	return &reportv1.Envelope{
		Header:   r.header,
		Portions: []*reportv1.Portion{r.portions[0], r.portions[2]},
		Hops: []*reportv1.Signed{
			signHop(t, hop(r, "USA", "GBR", created.Add(time.Second), 1, 3), usa),
			signHop(t, hop(r, "GBR", "CAN", created.Add(2*time.Second), 1, 3), gbr),
		},
	}, r
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedsThatVerify are the seeds that pass every check of this package; each
// other seed is refused by at least one.
var seedsThatVerify = map[string]bool{"valid": true, "all-portions": true, "header-only": true, "hops-swapped": true}

// envelopeSeeds returns a valid envelope and variants of it, marshalled.
func envelopeSeeds(t testing.TB, fx map[string]*pki.CertSource, trust report.Verifier) map[string][]byte {
	t.Helper()
	usa, gbr := fx["USA"], fx["GBR"]
	env, r := validEnvelope(t, usa, gbr, trust)
	seeds := map[string][]byte{"valid": marshal(t, env)}
	variant := func(name string, mutate func(e *reportv1.Envelope)) {
		e := proto.CloneOf(env)
		mutate(e)
		seeds[name] = marshal(t, e)
	}
	variant("header-only", func(e *reportv1.Envelope) { e.Portions, e.Hops = nil, nil })
	variant("all-portions", func(e *reportv1.Envelope) { e.Portions = clonePortions(r.portions) })
	variant("changed-body", func(e *reportv1.Envelope) { e.Portions[0].Body = []byte("a botnet controller at 192.0.2.8") })
	variant("raised-marking", func(e *reportv1.Envelope) { e.Portions[1].Marking.Orcon = false })
	variant("duplicate-portion", func(e *reportv1.Envelope) { e.Portions = append(e.Portions, proto.CloneOf(e.Portions[0])) })
	variant("index-not-in-header", func(e *reportv1.Envelope) { e.Portions[1].Index = 9 })
	variant("flipped-signature", func(e *reportv1.Envelope) { e.Header.Signature[0] ^= 1 })
	variant("no-chain", func(e *reportv1.Envelope) { e.Header.CertChain = nil })
	variant("long-chain", func(e *reportv1.Envelope) {
		c := e.Header.CertChain[0]
		e.Header.CertChain = [][]byte{c, c, c, c, c}
	})
	variant("hop-as-header", func(e *reportv1.Envelope) { e.Header = e.Hops[0] })
	variant("header-as-hop", func(e *reportv1.Envelope) { e.Hops = append(e.Hops, e.Header) })
	variant("gbr-signs-usa-header", func(e *reportv1.Envelope) {
		sd, err := report.SignStatement(report.KindHeader, r.v.Header, gbr)
		if err != nil {
			t.Fatal(err)
		}
		e.Header = sd
	})
	variant("hop-from-lies", func(e *reportv1.Envelope) {
		e.Hops[1] = signHop(t, hop(r, "USA", "CAN", time.Now(), 1), gbr)
	})
	variant("hop-for-another-report", func(e *reportv1.Envelope) {
		other := seal(t, draft("USA", time.Now()), usa, trust)
		e.Hops[0] = signHop(t, hop(other, "USA", "GBR", time.Now(), 1), usa)
	})
	// Each hop verifies on its own; their order is for the release
	// policy to judge, so this one passes every check here.
	variant("hops-swapped", func(e *reportv1.Envelope) { e.Hops[0], e.Hops[1] = e.Hops[1], e.Hops[0] })
	valid := seeds["valid"]
	seeds["truncated"] = valid[:len(valid)/2]
	seeds["empty"] = nil
	seeds["garbage"] = []byte("\x0a\xff\xff\xff\xff\x0f\x00\x12\x00")
	return seeds
}

// checkEnvelope runs every check a receiving node runs on env and asserts
// the properties that must hold whatever env holds: no panic, every error
// wraps one of the package's sentinels, and whatever verifies was signed by
// a node of the party it names.
func checkEnvelope(t *testing.T, env *reportv1.Envelope, trust report.Verifier) {
	hdr := env.GetHeader()
	v, err := report.OpenHeader(hdr, trust)
	if err != nil {
		if !isSentinel(err) {
			t.Fatalf("OpenHeader error wraps no sentinel: %v", err)
		}
		if v != nil {
			t.Fatalf("OpenHeader returned a header with an error")
		}
		// Run the other checks against the unverified header too.
		h := &reportv1.Header{}
		if proto.Unmarshal(hdr.GetPayload(), h) != nil {
			h = nil
		}
		sum := sha256.Sum256(hdr.GetPayload())
		v = &report.Verified{Header: h, Digest: sum[:]}
	} else {
		if v.Signer.Party != v.Header.GetOriginator() || v.Signer.Kind != pki.KindNode {
			t.Fatalf("header of originator %s opened with signer %s", v.Header.GetOriginator(), v.Signer)
		}
		if sum := sha256.Sum256(hdr.GetPayload()); !bytes.Equal(v.Digest, sum[:]) {
			t.Fatalf("Verified.Digest is not the digest of the payload")
		}
	}
	if err := report.CheckAgainstHeader(v.Header, env.GetPortions()); err != nil {
		if !isSentinel(err) {
			t.Fatalf("CheckAgainstHeader error wraps no sentinel: %v", err)
		}
	} else {
		for _, p := range env.GetPortions() {
			dg, err := report.Digest(p)
			if err != nil || !bytes.Equal(dg, report.DigestOf(v.Header, p.GetIndex())) {
				t.Fatalf("CheckAgainstHeader accepted portion %d that does not match its digest (%v)", p.GetIndex(), err)
			}
		}
	}
	for i, sd := range env.GetHops() {
		vh, err := report.OpenHop(sd, v.Digest, v.Header.GetId(), trust)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("OpenHop %d error wraps no sentinel: %v", i, err)
			}
			continue
		}
		if vh.Signer.Party != vh.Hop.GetFrom() || vh.Signer.Kind != pki.KindNode {
			t.Fatalf("hop %d from %s opened with signer %s", i, vh.Hop.GetFrom(), vh.Signer)
		}
		if vh.Hop.GetReportId() != v.Header.GetId() || !bytes.Equal(vh.Hop.GetHeaderDigest(), v.Digest) {
			t.Fatalf("hop %d for another header opened", i)
		}
	}
}

// FuzzEnvelope decodes arbitrary bytes as an envelope and runs the
// receiving checks on it (see checkEnvelope).
func FuzzEnvelope(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, b := range envelopeSeeds(f, fx.signers, fx.trust) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env := &reportv1.Envelope{}
		if proto.Unmarshal(data, env) != nil {
			return
		}
		checkEnvelope(t, env, fx.trust)
	})
}

// TestEnvelopeSeeds checks that the seeds are what they are named: the
// valid one passes every check, each variant fails at least one, and the
// committed valid seed still verifies against its committed CA.
func TestEnvelopeSeeds(t *testing.T) {
	f := newFederation(t, fuzzParties...)
	signers := map[string]*pki.CertSource{"USA": f.node(t, "USA"), "GBR": f.node(t, "GBR")}
	for name, b := range envelopeSeeds(t, signers, f.trust) {
		env := &reportv1.Envelope{}
		if err := proto.Unmarshal(b, env); err != nil {
			if name != "truncated" && name != "garbage" {
				t.Errorf("seed %s does not unmarshal: %v", name, err)
			}
			continue
		}
		if err := allChecks(env, f.trust); (err == nil) != seedsThatVerify[name] {
			t.Errorf("seed %s: checks = %v", name, err)
		}
	}

	trust := pki.NewTrust()
	for _, p := range fuzzParties {
		cas, err := pki.ReadCertificatesFile(filepath.Join(fuzzTrustDir, p+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		trust.Set(p, cas)
	}
	b := readCorpusFile(t, filepath.Join("testdata", "fuzz", "FuzzEnvelope", "valid"))
	env := &reportv1.Envelope{}
	if err := proto.Unmarshal(b, env); err != nil {
		t.Fatal(err)
	}
	if err := allChecks(env, trust); err != nil {
		t.Errorf("committed valid seed: %v", err)
	}
}

// allChecks returns the first error of the receiving checks on env.
func allChecks(env *reportv1.Envelope, trust report.Verifier) error {
	v, err := report.OpenHeader(env.GetHeader(), trust)
	if err != nil {
		return err
	}
	if err := report.CheckAgainstHeader(v.Header, env.GetPortions()); err != nil {
		return err
	}
	for _, sd := range env.GetHops() {
		if _, err := report.OpenHop(sd, v.Digest, v.Header.GetId(), trust); err != nil {
			return err
		}
	}
	return nil
}

// FuzzMutateEnvelope flips one byte of a valid marshalled envelope. If the
// result still passes every check, what was verified must be exactly what
// was signed: a mutation can never yield different verified content.
func FuzzMutateEnvelope(f *testing.F) {
	fx := newFuzzFixture(f)
	env, _ := validEnvelope(f, fx.signers["USA"], fx.signers["GBR"], fx.trust)
	orig := marshal(f, env)
	origPortions := make(map[uint32]*reportv1.Portion)
	for _, p := range env.GetPortions() {
		origPortions[p.GetIndex()] = p
	}
	origHops := make(map[string]bool)
	for _, sd := range env.GetHops() {
		origHops[string(sd.GetPayload())] = true
	}
	for _, seed := range mutateSeeds(len(orig)) {
		f.Add(seed.off, seed.x)
	}
	f.Fuzz(func(t *testing.T, off uint, x byte) {
		b := bytes.Clone(orig)
		b[off%uint(len(b))] ^= x
		got := &reportv1.Envelope{}
		if proto.Unmarshal(b, got) != nil {
			return
		}
		checkEnvelope(t, got, fx.trust)
		if allChecks(got, fx.trust) != nil {
			return
		}
		if !bytes.Equal(got.GetHeader().GetPayload(), env.GetHeader().GetPayload()) {
			t.Fatalf("a mutated header payload verified")
		}
		for _, p := range got.GetPortions() {
			o := origPortions[p.GetIndex()]
			if o == nil {
				t.Fatalf("portion %d verified but was not in the envelope", p.GetIndex())
			}
			if !bytes.Equal(p.GetBody(), o.GetBody()) || p.GetTitle() != o.GetTitle() ||
				p.GetContentType() != o.GetContentType() || !bytes.Equal(p.GetSalt(), o.GetSalt()) ||
				!bytes.Equal(canonical(t, p), canonical(t, o)) {
				t.Fatalf("portion %d verified with changed content:\n got %v\nwant %v", p.GetIndex(), p, o)
			}
		}
		for i, sd := range got.GetHops() {
			if !origHops[string(sd.GetPayload())] {
				t.Fatalf("hop %d verified with a changed payload", i)
			}
		}
	})
}

// mutateSeed is one input of FuzzMutateEnvelope: flip x at off.
type mutateSeed struct {
	off uint
	x   byte
}

// mutateSeeds are offsets across an envelope of n bytes, each with three
// flips.
func mutateSeeds(n int) []mutateSeed {
	var out []mutateSeed
	for _, off := range []uint{0, 1, 2, 10, 100, uint(n / 2), uint(n - 1)} {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			out = append(out, mutateSeed{off, x})
		}
	}
	return out
}

func canonical(t *testing.T, p *reportv1.Portion) []byte {
	m, err := report.MarkingFromProto(p.GetMarking())
	if err != nil {
		t.Fatalf("portion %d passed the checks with an invalid marking: %v", p.GetIndex(), err)
	}
	return m.Canonical()
}

const corpusHeader = "go test fuzz v1\n"

// readCorpusFile reads a corpus file of a fuzz target with one []byte
// argument.
func readCorpusFile(t testing.TB, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := strings.CutPrefix(string(raw), corpusHeader)
	if !ok {
		t.Fatalf("%s: not a fuzz corpus file", path)
	}
	s, ok = strings.CutPrefix(strings.TrimSpace(s), "[]byte(")
	if !ok || !strings.HasSuffix(s, ")") {
		t.Fatalf("%s: not a []byte value", path)
	}
	v, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(v)
}
