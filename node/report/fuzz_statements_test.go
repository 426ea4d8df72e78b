package report_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// The decoders of signed statements other than headers and hops: consent
// grants, crisis declarations, withdrawals and their acknowledgements.
// Each has a fuzz target that feeds it arbitrary bytes as a Signed and
// checks, whatever the bytes: no panic; every error wraps a sentinel of
// the package; what opens was signed by a node of the party the statement
// names (the originator, or the holder for an acknowledgement); the opened
// statement is the payload as it parses; it still opens (twice the same);
// a signature with one bit flipped does not; and no other decoder opens it
// (the signature is domain-separated by kind).

// statementKind is one decoder under test.
type statementKind struct {
	kind string
	// open opens sd and returns the statement and the party it names as
	// its signer.
	open func(sd *reportv1.Signed, v report.Verifier) (proto.Message, string, error)
	// empty returns a new message of the statement's type.
	empty func() proto.Message
}

var statementKinds = []statementKind{
	{report.KindGrant, func(sd *reportv1.Signed, v report.Verifier) (proto.Message, string, error) {
		g, _, err := report.OpenGrant(sd, v)
		return g, g.GetOriginator(), err
	}, func() proto.Message { return &reportv1.ConsentGrant{} }},
	{report.KindCrisis, func(sd *reportv1.Signed, v report.Verifier) (proto.Message, string, error) {
		c, _, err := report.OpenCrisis(sd, v)
		return c, c.GetOriginator(), err
	}, func() proto.Message { return &reportv1.CrisisDeclaration{} }},
	{report.KindWithdrawal, func(sd *reportv1.Signed, v report.Verifier) (proto.Message, string, error) {
		w, err := report.OpenWithdrawal(sd, v)
		return w, w.GetOriginator(), err
	}, func() proto.Message { return &reportv1.Withdrawal{} }},
	{report.KindWithdrawalAck, func(sd *reportv1.Signed, v report.Verifier) (proto.Message, string, error) {
		a, err := report.OpenWithdrawalAck(sd, v)
		return a, a.GetHolder(), err
	}, func() proto.Message { return &reportv1.WithdrawalAck{} }},
}

func statementKindOf(kind string) statementKind {
	for _, k := range statementKinds {
		if k.kind == kind {
			return k
		}
	}
	panic("no statement kind " + kind)
}

// statementSeeds returns, for kind, a valid statement signed by USA's node
// and variants that must be refused, marshalled.
func statementSeeds(t testing.TB, kind string, signers map[string]*pki.CertSource) map[string][]byte {
	t.Helper()
	usa, gbr := signers["USA"], signers["GBR"]
	now := time.Now().Add(-10 * time.Second)
	issued, expires := timestamppb.New(now), timestamppb.New(now.Add(time.Hour))
	const reportID = "01a20843-0a0e-79b7-b776-b47e8b61e622"
	var valid proto.Message
	var wrongParty, badTime proto.Message
	switch kind {
	case report.KindGrant:
		g := &reportv1.ConsentGrant{Id: "01a20843-0a0e-79b7-b776-000000000001", ReportId: reportID, Originator: "USA", Holder: "GBR", To: "CAN",
			Portions: []uint32{1, 3}, Purpose: "joint operation", Issued: issued, Expires: expires}
		valid = g
		w := proto.CloneOf(g)
		w.Originator = "GBR"
		wrongParty = w
		b := proto.CloneOf(g)
		b.Expires = &timestamppb.Timestamp{Seconds: 1, Nanos: -1}
		badTime = b
	case report.KindCrisis:
		c := &reportv1.CrisisDeclaration{Id: "01a20843-0a0e-79b7-b776-000000000002", Originator: "USA", Topics: []string{"cyber"}, Parties: []string{"CAN", "GBR"},
			MaxClassification: "SECRET", Issued: issued, Expires: timestamppb.New(now.Add(72 * time.Hour)), Reason: "flood"}
		valid = c
		w := proto.CloneOf(c)
		w.Originator = "GBR"
		wrongParty = w
		b := proto.CloneOf(c)
		b.Issued = nil
		badTime = b
	case report.KindWithdrawal:
		w := &reportv1.Withdrawal{Id: "01a20843-0a0e-79b7-b776-000000000003", ReportId: reportID, Originator: "USA", Action: "purge", Reason: "burned source", Issued: issued}
		valid = w
		x := proto.CloneOf(w)
		x.Originator = "GBR"
		wrongParty = x
		b := proto.CloneOf(w)
		b.Action = "shred"
		badTime = b
	case report.KindWithdrawalAck:
		a := &reportv1.WithdrawalAck{WithdrawalId: "01a20843-0a0e-79b7-b776-000000000003", ReportId: reportID, Holder: "USA", Held: true, Applied: issued}
		valid = a
		x := proto.CloneOf(a)
		x.Holder = "GBR"
		wrongParty = x
		b := proto.CloneOf(a)
		b.Applied = nil
		badTime = b
	}
	sign := func(m proto.Message, s report.Signer) *reportv1.Signed {
		sd, err := report.SignStatement(kind, m, s)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	seeds := map[string][]byte{}
	add := func(name string, sd *reportv1.Signed) { seeds[name] = marshal(t, sd) }
	good := sign(valid, usa)
	add("valid", good)
	add("signed-by-another-party", sign(wrongParty, usa))
	add("names-gbr-signed-by-gbr", sign(wrongParty, gbr))
	add("malformed", sign(badTime, usa))
	flipped := proto.CloneOf(good)
	flipped.Signature[0] ^= 1
	add("flipped-signature", flipped)
	noChain := proto.CloneOf(good)
	noChain.CertChain = nil
	add("no-chain", noChain)
	relabelled := proto.CloneOf(good)
	relabelled.Kind = report.KindHop
	add("relabelled", relabelled) // the kind field is informational: still valid
	for _, other := range statementKinds {
		if other.kind != kind {
			// The same payload signed as another kind.
			sd, err := report.SignStatement(other.kind, valid, usa)
			if err != nil {
				t.Fatal(err)
			}
			add("signed-as-"+other.kind, sd)
		}
	}
	b := seeds["valid"]
	seeds["truncated"] = b[:len(b)/2]
	seeds["empty"] = nil
	seeds["garbage"] = []byte("\x0a\xff\xff\xff\xff\x0f\x00\x12\x00")
	return seeds
}

// statementSeedsThatOpen are the seeds the decoder of their kind opens.
var statementSeedsThatOpen = map[string]bool{"valid": true, "names-gbr-signed-by-gbr": true, "relabelled": true}

// fuzzStatement is the fuzz body shared by the statement decoders.
func fuzzStatement(f *testing.F, kind string) {
	fx := newFuzzFixture(f)
	for _, b := range statementSeeds(f, kind, fx.signers) {
		f.Add(b)
	}
	sk := statementKindOf(kind)
	f.Fuzz(func(t *testing.T, data []byte) {
		sd := &reportv1.Signed{}
		if proto.Unmarshal(data, sd) != nil {
			return
		}
		checkStatement(t, sk, sd, fx.trust)
	})
}

func checkStatement(t *testing.T, sk statementKind, sd *reportv1.Signed, trust report.Verifier) {
	msg, named, err := sk.open(sd, trust)
	for _, other := range statementKinds {
		if other.kind == sk.kind {
			continue
		}
		if _, _, oerr := other.open(sd, trust); oerr == nil && err == nil {
			t.Fatalf("a %s that opens also opens as a %s", sk.kind, other.kind)
		} else if oerr != nil && !isSentinel(oerr) {
			t.Fatalf("open as %s: error wraps no sentinel: %v", other.kind, oerr)
		}
	}
	if err != nil {
		if !isSentinel(err) {
			t.Fatalf("open %s: error wraps no sentinel: %v", sk.kind, err)
		}
		return
	}
	leaf, perr := x509.ParseCertificate(sd.GetCertChain()[0])
	if perr != nil {
		t.Fatalf("a %s opened with a leaf that does not parse: %v", sk.kind, perr)
	}
	id, ierr := pki.IdentityFromCert(leaf)
	if ierr != nil || id.Party != named || id.Kind != pki.KindNode {
		t.Fatalf("a %s naming %s opened, signed by %s (%v)", sk.kind, named, id, ierr)
	}
	parsed := sk.empty()
	if perr := proto.Unmarshal(sd.GetPayload(), parsed); perr != nil || !proto.Equal(parsed, msg) {
		t.Fatalf("the opened %s is not its payload: %v", sk.kind, perr)
	}
	again, _, err := sk.open(proto.CloneOf(sd), trust)
	if err != nil || !proto.Equal(again, msg) {
		t.Fatalf("a %s that opened does not open again: %v", sk.kind, err)
	}
	for _, bit := range []int{0, len(sd.GetSignature())*8 - 1} {
		if len(sd.GetSignature()) == 0 {
			break
		}
		bad := proto.CloneOf(sd)
		bad.Signature[bit/8] ^= 1 << (bit % 8)
		if _, _, err := sk.open(bad, trust); err == nil {
			t.Fatalf("a %s opened with bit %d of its signature flipped", sk.kind, bit)
		}
	}
	if len(sd.GetPayload()) > 0 {
		bad := proto.CloneOf(sd)
		bad.Payload = append(bad.Payload, 0x08, 0x01) // field 1 varint again: parses, differs
		if _, _, err := sk.open(bad, trust); err == nil {
			t.Fatalf("a %s opened with bytes added to its payload", sk.kind)
		}
	}
}

// FuzzOpenGrant decodes consent grants (report.OpenGrant).
func FuzzOpenGrant(f *testing.F) { fuzzStatement(f, report.KindGrant) }

// FuzzOpenCrisis decodes crisis declarations and end notices (report.OpenCrisis).
func FuzzOpenCrisis(f *testing.F) { fuzzStatement(f, report.KindCrisis) }

// FuzzOpenWithdrawal decodes withdrawals (report.OpenWithdrawal).
func FuzzOpenWithdrawal(f *testing.F) { fuzzStatement(f, report.KindWithdrawal) }

// FuzzOpenWithdrawalAck decodes withdrawal acknowledgements (report.OpenWithdrawalAck).
func FuzzOpenWithdrawalAck(f *testing.F) { fuzzStatement(f, report.KindWithdrawalAck) }

// TestStatementSeeds checks that the seeds are what they are named, with
// fresh CAs and, for the committed corpus, with the committed CAs.
func TestStatementSeeds(t *testing.T) {
	f := newFederation(t, fuzzParties...)
	signers := map[string]*pki.CertSource{"USA": f.node(t, "USA"), "GBR": f.node(t, "GBR")}
	for _, sk := range statementKinds {
		for name, b := range statementSeeds(t, sk.kind, signers) {
			sd := &reportv1.Signed{}
			if err := proto.Unmarshal(b, sd); err != nil {
				if name != "truncated" && name != "garbage" {
					t.Errorf("%s seed %s does not unmarshal: %v", sk.kind, name, err)
				}
				continue
			}
			if _, _, err := sk.open(sd, f.trust); (err == nil) != statementSeedsThatOpen[name] {
				t.Errorf("%s seed %s: open = %v", sk.kind, name, err)
			}
		}
	}
	trust := committedTrust(t)
	for _, sk := range statementKinds {
		name := fuzzName(sk.kind)
		b := readCorpusFile(t, filepath.Join("testdata", "fuzz", name, "valid"))
		sd := &reportv1.Signed{}
		if err := proto.Unmarshal(b, sd); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sk.open(sd, trust); err != nil {
			t.Errorf("committed valid seed of %s: %v", name, err)
		}
	}
}

func fuzzName(kind string) string {
	return map[string]string{
		report.KindGrant: "FuzzOpenGrant", report.KindCrisis: "FuzzOpenCrisis",
		report.KindWithdrawal: "FuzzOpenWithdrawal", report.KindWithdrawalAck: "FuzzOpenWithdrawalAck",
	}[kind]
}

// committedTrust trusts only the committed seed CAs.
func committedTrust(t testing.TB) *pki.Trust {
	t.Helper()
	trust := pki.NewTrust()
	for _, p := range fuzzParties {
		cas, err := pki.ReadCertificatesFile(filepath.Join(fuzzTrustDir, p+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		trust.Set(p, cas)
	}
	return trust
}

// TestWriteFuzzCorpus rewrites the committed seed corpora of the statement
// decoders and of FuzzMutateEnvelope when TEARLINE_WRITE_FUZZ_CORPUS=1:
// statements signed by fresh development CAs, whose certificates (not
// keys) are added to testdata/fuzz-trust.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("TEARLINE_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set TEARLINE_WRITE_FUZZ_CORPUS=1 to rewrite the committed seed corpora")
	}
	f := newFederation(t, fuzzParties...)
	signers := map[string]*pki.CertSource{"USA": f.node(t, "USA"), "GBR": f.node(t, "GBR")}
	for _, sk := range statementKinds {
		dir := filepath.Join("testdata", "fuzz", fuzzName(sk.kind))
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		for name, b := range statementSeeds(t, sk.kind, signers) {
			writeCorpusFile(t, filepath.Join(dir, name), fmt.Sprintf("[]byte(%q)\n", b))
		}
	}
	for _, p := range fuzzParties {
		path := filepath.Join(fuzzTrustDir, p+".pem")
		cas, err := pki.ReadCertificatesFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(cas, f.cas[p].Certificate().Equal) {
			cas = append(cas, f.cas[p].Certificate())
		}
		if err := pki.WriteCertificatesFile(path, cas); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzMutateEnvelope")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for i, seed := range mutateSeeds(20000) {
		writeCorpusFile(t, filepath.Join(dir, fmt.Sprintf("seed-%02d", i+1)), fmt.Sprintf("uint(%d)\nbyte(%d)\n", seed.off, seed.x))
	}
}

func writeCorpusFile(t *testing.T, path, values string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(corpusHeader)
	b.WriteString(values)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
