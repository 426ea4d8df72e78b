package node

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// FuzzHopChain decodes arbitrary bytes as an envelope that GBR's node sent
// to USA's and runs the whole receipt check on it (Node.check): header,
// portions, every hop, the grants and declarations carried, the chain of
// each portion and the release policy's receipt rules. Whatever the bytes:
// no panic; a refusal names one of the rules with a sentence; and an
// envelope that is accepted verifies (header, digests, every hop), gives
// every portion a chain from its originator that ends GBR -> USA, is
// accepted again after a round trip through its encoding, and is refused
// from any other sender.
func FuzzHopChain(f *testing.F) {
	fx := newChainFixture(f)
	for _, b := range chainSeeds(f, fx.signers) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env := &reportv1.Envelope{}
		if proto.Unmarshal(data, env) != nil {
			return
		}
		checkChain(t, fx.node, env)
	})
}

// chainFixture is USA's node (the recipient) trusting fresh CAs of every
// party and the committed seed CAs, with signers of the fresh CAs.
type chainFixture struct {
	node    *Node
	signers map[string]*pki.CertSource
}

var chainParties = []string{"USA", "GBR", "CAN"}

const chainTrustDir = "testdata/fuzz-trust"

func newChainFixture(t testing.TB) *chainFixture {
	t.Helper()
	dir := t.TempDir()
	trust := pki.NewTrust()
	fx := &chainFixture{signers: map[string]*pki.CertSource{}}
	for _, p := range chainParties {
		ca, err := pki.OpenDevCA(filepath.Join(dir, "ca-"+p), p)
		if err != nil {
			t.Fatal(err)
		}
		cas := []*x509.Certificate{ca.Certificate()}
		if committed, err := pki.ReadCertificatesFile(filepath.Join(chainTrustDir, p+".pem")); err == nil {
			cas = append(cas, committed...)
		} else if !os.IsNotExist(err) {
			t.Fatal(err)
		}
		trust.Set(p, cas)
		id := pki.Identity{Domain: pki.DefaultDomain(p), Party: p, Kind: pki.KindNode, Name: "n"}
		cs, err := pki.NewCertSource(ca, id, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		fx.signers[p] = cs
	}
	st, err := store.Open(filepath.Join(dir, "USA.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	forever := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	var ps []Partner
	for _, p := range chainParties[1:] {
		ps = append(ps, Partner{Party: p, Agreement: &policy.Agreement{Partner: p, MaxClassification: "TOP SECRET", ValidUntil: forever}})
	}
	fx.node, err = New(Config{Party: "USA", Store: st, Signer: fx.signers["USA"], Trust: trust, Partners: ps})
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

var knownRules = []policy.Rule{
	policy.RuleSuspended, policy.RuleNoAgreement, policy.RuleAgreementScope, policy.RuleNoForn,
	policy.RuleThirdParty, policy.RuleRelTo, policy.RuleBadSignature, policy.RuleBadChain, policy.RuleBadInput,
}

func checkChain(t *testing.T, n *Node, env *reportv1.Envelope) {
	now := time.Now()
	r, v, _, err := n.check(now, "GBR", env)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !r.Allowed {
		if !slices.Contains(knownRules, r.Rule) || r.Message == "" {
			t.Fatalf("refused with rule %q and message %q", r.Rule, r.Message)
		}
		return
	}
	if r.Rule != "receipt" || v == nil {
		t.Fatalf("accepted with rule %q", r.Rule)
	}
	o := v.Header.GetOriginator()
	if o == "USA" || len(env.GetPortions()) == 0 {
		t.Fatalf("accepted a report of USA's own or one with no portion")
	}
	if _, err := report.OpenHeader(env.GetHeader(), n.trust); err != nil {
		t.Fatalf("accepted a header that does not verify: %v", err)
	}
	if err := report.CheckAgainstHeader(v.Header, env.GetPortions()); err != nil {
		t.Fatalf("accepted portions that do not match: %v", err)
	}
	var facts []hopFact
	for i, sh := range env.GetHops() {
		h, err := report.OpenHop(sh, v.Digest, v.Header.GetId(), n.trust)
		if err != nil {
			t.Fatalf("accepted with hop %d that does not verify: %v", i, err)
		}
		facts = append(facts, hopFact{h.Hop})
	}
	for _, p := range env.GetPortions() {
		chain := chainFor(facts, p.GetIndex(), o)
		if len(chain) == 0 || chain[0].From != o {
			t.Fatalf("portion %d accepted on a chain that does not start at %s: %+v", p.GetIndex(), o, chain)
		}
		last := chain[len(chain)-1]
		if last.From != "GBR" || last.To != "USA" {
			t.Fatalf("portion %d accepted on a chain ending %s -> %s", p.GetIndex(), last.From, last.To)
		}
		for i := 1; i < len(chain); i++ {
			if chain[i].From != chain[i-1].To {
				t.Fatalf("portion %d accepted on a broken chain: %+v", p.GetIndex(), chain)
			}
		}
		for _, h := range chain {
			if h.Sent.After(now.Add(policy.ClockSkew)) || !slices.Contains([]policy.Rule{policy.RuleOrigin, policy.RuleRelay, policy.RuleRelTo, policy.RuleConsent, policy.RuleCrisis}, h.Basis) {
				t.Fatalf("portion %d accepted with hop %+v", p.GetIndex(), h)
			}
		}
		m, err := report.MarkingFromProto(p.GetMarking())
		if err != nil || m.NoForn {
			t.Fatalf("portion %d accepted with marking %v (%v)", p.GetIndex(), m, err)
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	again := &reportv1.Envelope{}
	if err := proto.Unmarshal(b, again); err != nil {
		t.Fatal(err)
	}
	if r2, _, _, _ := n.check(now, "GBR", again); !r2.Allowed {
		t.Fatalf("accepted, then refused after a round trip: %s", r2)
	}
	if r3, _, _, _ := n.check(now, "CAN", env); r3.Allowed {
		t.Fatalf("an envelope whose last hop is GBR -> USA was accepted from CAN")
	}
}

// chainSeeds are envelopes GBR might send USA: accepted ones on every
// basis and refused variants.
func chainSeeds(t testing.TB, s map[string]*pki.CertSource) map[string][]byte {
	t.Helper()
	now := time.Now().Add(-10 * time.Second)
	seal := func(originator string, route []*reportv1.RouteEntry, banners ...string) (*reportv1.Signed, []*reportv1.Portion, *report.Verified) {
		d := report.Draft{Originator: originator, Created: now, Topics: []string{"cyber"}, Route: route}
		for i, b := range banners {
			m, err := marking.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			m.Topics = []string{"cyber"}
			d.Portions = append(d.Portions, &reportv1.Portion{Marking: report.MarkingToProto(m), ContentType: "text/plain", Body: []byte("fuzz seed portion " + strconv.Itoa(i+1))})
		}
		hdr, ps, err := report.Seal(d, s[originator])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(hdr.GetPayload())
		h := &reportv1.Header{}
		if err := proto.Unmarshal(hdr.GetPayload(), h); err != nil {
			t.Fatal(err)
		}
		return hdr, ps, &report.Verified{Header: h, Digest: sum[:]}
	}
	hop := func(v *report.Verified, from, to string, sent time.Time, basis reportv1.Basis, authority string, ix ...uint32) *reportv1.Signed {
		h := &reportv1.Hop{ReportId: v.Header.GetId(), HeaderDigest: v.Digest, From: from, To: to, Sent: timestamppb.New(sent)}
		for _, i := range ix {
			h.Portions = append(h.Portions, &reportv1.PortionRelease{Index: i, Basis: basis, AuthorityId: authority})
		}
		sd, err := report.SignHop(h, s[from])
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	sign := func(kind string, m proto.Message, by string) *reportv1.Signed {
		sd, err := report.SignStatement(kind, m, s[by])
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	seeds := map[string][]byte{}
	add := func(name string, env *reportv1.Envelope) {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = b
	}
	t1, t2 := now.Add(time.Second), now.Add(2*time.Second)

	// GBR's own report, straight to USA.
	hdr, ps, v := seal("GBR", nil, "SECRET//REL TO GBR, USA", "SECRET//REL TO GBR")
	add("direct", &reportv1.Envelope{Header: hdr, Portions: ps[:1], Hops: []*reportv1.Signed{hop(v, "GBR", "USA", t1, reportv1.Basis_BASIS_ORIGIN, "", 1)}})
	add("direct-withheld-portion-sent", &reportv1.Envelope{Header: hdr, Portions: ps, Hops: []*reportv1.Signed{hop(v, "GBR", "USA", t1, reportv1.Basis_BASIS_ORIGIN, "", 1, 2)}})

	// CAN's report, re-shared by GBR inside REL TO.
	hdr, ps, v = seal("CAN", nil, "SECRET//REL TO CAN, GBR, USA")
	relTo := &reportv1.Envelope{Header: hdr, Portions: ps, Hops: []*reportv1.Signed{
		hop(v, "CAN", "GBR", t1, reportv1.Basis_BASIS_ORIGIN, "", 1), hop(v, "GBR", "USA", t2, reportv1.Basis_BASIS_REL_TO, "", 1),
	}}
	add("rel-to", relTo)
	e := proto.CloneOf(relTo)
	e.Hops[0], e.Hops[1] = e.Hops[1], e.Hops[0]
	add("rel-to-hops-swapped", e)
	e = proto.CloneOf(relTo)
	e.Hops = e.Hops[1:]
	add("rel-to-no-origin-hop", e)
	e = proto.CloneOf(relTo)
	e.Hops = e.Hops[:1]
	add("rel-to-no-last-hop", e)
	e = proto.CloneOf(relTo)
	e.Hops[1] = hop(v, "GBR", "USA", t2, reportv1.Basis_BASIS_ORIGIN, "", 1)
	add("holder-claims-origin", e)
	e = proto.CloneOf(relTo)
	e.Hops[1] = hop(v, "GBR", "USA", time.Now().Add(time.Hour), reportv1.Basis_BASIS_REL_TO, "", 1)
	add("hop-from-the-future", e)

	// CAN's ORCON report, relayed by GBR on CAN's route.
	hdr, ps, v = seal("CAN", []*reportv1.RouteEntry{{Via: "GBR", To: "USA"}}, "SECRET//REL TO CAN, GBR, USA//ORCON")
	relay := &reportv1.Envelope{Header: hdr, Portions: ps, Hops: []*reportv1.Signed{
		hop(v, "CAN", "GBR", t1, reportv1.Basis_BASIS_ORIGIN, "", 1), hop(v, "GBR", "USA", t2, reportv1.Basis_BASIS_RELAY, "", 1),
	}}
	add("relay", relay)
	e = proto.CloneOf(relay)
	e.Hops[1] = hop(v, "GBR", "USA", t2, reportv1.Basis_BASIS_REL_TO, "", 1)
	add("orcon-rel-to", e)

	// CAN's ORCON report outside REL TO, passed on CAN's consent.
	hdr, ps, v = seal("CAN", nil, "SECRET//REL TO CAN, GBR//ORCON")
	grant := func(expires time.Time, by, originator string) (*reportv1.Signed, string) {
		id := "01a20843-0a0e-79b7-b776-0000000000a1"
		return sign(report.KindGrant, &reportv1.ConsentGrant{Id: id, ReportId: v.Header.GetId(), Originator: originator, Holder: "GBR", To: "USA",
			Purpose: "fuzz", Issued: timestamppb.New(now), Expires: timestamppb.New(expires)}, by), id
	}
	g, gid := grant(now.Add(time.Hour), "CAN", "CAN")
	consent := &reportv1.Envelope{Header: hdr, Portions: ps, Hops: []*reportv1.Signed{
		hop(v, "CAN", "GBR", t1, reportv1.Basis_BASIS_ORIGIN, "", 1), hop(v, "GBR", "USA", t2, reportv1.Basis_BASIS_CONSENT, gid, 1),
	}, Authorities: []*reportv1.Signed{g}}
	add("consent", consent)
	e = proto.CloneOf(consent)
	e.Authorities = nil
	add("consent-no-grant", e)
	e = proto.CloneOf(consent)
	e.Authorities[0], _ = grant(t1, "CAN", "CAN")
	add("consent-expired-grant", e)
	e = proto.CloneOf(consent)
	e.Authorities[0], _ = grant(now.Add(time.Hour), "GBR", "CAN")
	add("consent-grant-signed-by-gbr", e)
	e = proto.CloneOf(consent)
	e.Authorities[0], _ = grant(now.Add(time.Hour), "GBR", "GBR")
	add("consent-grant-of-gbr", e)

	// The same report on CAN's crisis declaration.
	cid := "01a20843-0a0e-79b7-b776-0000000000c1"
	decl := sign(report.KindCrisis, &reportv1.CrisisDeclaration{Id: cid, Originator: "CAN", Topics: []string{"cyber"}, Parties: []string{"USA"},
		MaxClassification: "SECRET", Issued: timestamppb.New(now), Expires: timestamppb.New(now.Add(72 * time.Hour)), Reason: "fuzz"}, "CAN")
	add("crisis", &reportv1.Envelope{Header: hdr, Portions: ps, Hops: []*reportv1.Signed{
		hop(v, "CAN", "GBR", t1, reportv1.Basis_BASIS_ORIGIN, "", 1), hop(v, "GBR", "USA", t2, reportv1.Basis_BASIS_CRISIS, cid, 1),
	}, Authorities: []*reportv1.Signed{decl}})

	// A hop of another report, and a hop listing a portion twice.
	_, _, other := seal("CAN", nil, "SECRET//REL TO CAN, GBR, USA")
	e = proto.CloneOf(relTo)
	e.Hops[0] = hop(other, "CAN", "GBR", t1, reportv1.Basis_BASIS_ORIGIN, "", 1)
	add("hop-of-another-report", e)
	e = proto.CloneOf(relTo)
	h := &reportv1.Hop{}
	proto.Unmarshal(e.Hops[1].GetPayload(), h)
	h.Portions = append(h.Portions, &reportv1.PortionRelease{Index: 1, Basis: reportv1.Basis_BASIS_ORIGIN})
	e.Hops[1] = sign(report.KindHop, h, "GBR")
	add("hop-lists-portion-twice", e)
	return seeds
}

// chainSeedsAccepted are the seeds the fixture accepts.
var chainSeedsAccepted = map[string]bool{"direct": true, "rel-to": true, "relay": true, "consent": true, "crisis": true}

// TestHopChainSeeds checks that the seeds are what they are named, with
// fresh CAs, and that the committed corpus still holds accepted envelopes
// for the committed CAs.
func TestHopChainSeeds(t *testing.T) {
	fx := newChainFixture(t)
	for name, b := range chainSeeds(t, fx.signers) {
		env := &reportv1.Envelope{}
		if err := proto.Unmarshal(b, env); err != nil {
			t.Fatal(err)
		}
		r, _, _, err := fx.node.check(time.Now(), "GBR", env)
		if err != nil {
			t.Fatal(err)
		}
		if r.Allowed != chainSeedsAccepted[name] {
			t.Errorf("seed %s: %s", name, r)
		}
	}
	for name := range chainSeedsAccepted {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzHopChain", name))
		if err != nil {
			t.Fatal(err)
		}
		s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
		if !ok {
			t.Fatalf("committed seed %s is not a []byte corpus file", name)
		}
		raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(s), ")"))
		if err != nil {
			t.Fatal(err)
		}
		env := &reportv1.Envelope{}
		if err := proto.Unmarshal([]byte(raw), env); err != nil {
			t.Fatal(err)
		}
		if r, _, _, _ := fx.node.check(time.Now(), "GBR", env); !r.Allowed {
			t.Errorf("committed seed %s: %s", name, r)
		}
	}
}

// TestWriteHopChainCorpus rewrites testdata/fuzz/FuzzHopChain and the CA
// certificates (not keys) in testdata/fuzz-trust that its seeds verify
// against, when TEARLINE_WRITE_FUZZ_CORPUS=1.
func TestWriteHopChainCorpus(t *testing.T) {
	if os.Getenv("TEARLINE_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set TEARLINE_WRITE_FUZZ_CORPUS=1 to rewrite the committed seed corpus")
	}
	dir := t.TempDir()
	signers := map[string]*pki.CertSource{}
	if err := os.MkdirAll(chainTrustDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range chainParties {
		ca, err := pki.OpenDevCA(filepath.Join(dir, p), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteCertificatesFile(filepath.Join(chainTrustDir, p+".pem"), []*x509.Certificate{ca.Certificate()}); err != nil {
			t.Fatal(err)
		}
		cs, err := pki.NewCertSource(ca, pki.Identity{Domain: pki.DefaultDomain(p), Party: p, Kind: pki.KindNode, Name: "n"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		signers[p] = cs
	}
	out := filepath.Join("testdata", "fuzz", "FuzzHopChain")
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range chainSeeds(t, signers) {
		if err := os.WriteFile(filepath.Join(out, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
