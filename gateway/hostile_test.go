package gateway

// The hostile-peer suite (issue 8): a partner node with a genuine node
// certificate of its party sends crafted items over a real mutual-TLS
// federation Deliver stream to a real in-process node. Each case asserts
// the refusal reason the node gives (the rule on the wire, in the
// quarantine item and in the security event), that only the evidence is
// stored (no report, feed entry, outbox item or "received" provenance),
// that the security event names the sending partner, and that the same
// link then carries an honest report of the same partner, which is
// accepted.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// The parties of the suite: USA is the node under attack, GBR the hostile
// partner, CAN a third party whose reports GBR holds.
const (
	victim   = "USA"
	attacker = "GBR"
	third    = "CAN"
)

// hostilePeer is GBR's node as an attacker would run it: its genuine node
// certificate, its signing key, and one Deliver stream to USA's node.
type hostilePeer struct {
	t      *testing.T
	f      *fed
	conn   *grpc.ClientConn
	stream federationv1.FederationService_DeliverClient
	seq    uint64
	// signers of node identities of each party (FRA's from a CA that USA
	// does not trust).
	signers map[string]*pki.CertSource
}

func newPeer(t *testing.T) *hostilePeer {
	t.Helper()
	// Each case counts the one security event its refusal raises; the
	// anomaly alert that many denials for one partner raise (issue 6) is
	// tested elsewhere, so its threshold is out of reach here.
	f := startFedWith(t, func(c *Config) { c.Audit.Anomalies.DenialsPerPartner = 1 << 30 }, victim, attacker, third)
	p := &hostilePeer{t: t, f: f, signers: map[string]*pki.CertSource{}}
	for _, party := range []string{victim, attacker, third} {
		p.signers[party] = issueSigner(t, f.ca(party), party, pki.KindNode, "hostile-"+strings.ToLower(party))
	}
	rogue, err := pki.OpenDevCA(t.TempDir(), "FRA")
	if err != nil {
		t.Fatal(err)
	}
	p.signers["FRA"] = issueSigner(t, rogue, "FRA", pki.KindNode, "fra")
	bundle, err := f.ca(victim).Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.conn = f.conn(victim, p.signers[attacker].Current(), bundle)
	p.open()
	return p
}

func issueSigner(t *testing.T, ca *pki.DevCA, party string, kind pki.Kind, name string) *pki.CertSource {
	t.Helper()
	id, err := pki.NewIdentity(party, kind, name)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pki.StaticCertSource(is)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// open starts a new Deliver stream on the peer's connection.
func (p *hostilePeer) open() {
	p.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p.t.Cleanup(cancel)
	s, err := federationv1.NewFederationServiceClient(p.conn).Deliver(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	p.stream = s
}

// send sends one item on the peer's stream and returns the answer.
func (p *hostilePeer) send(t *testing.T, req *federationv1.DeliverRequest) *federationv1.DeliverResponse {
	t.Helper()
	p.seq++
	req.Seq = p.seq
	if err := p.stream.Send(req); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err := p.recv()
	if err != nil {
		t.Fatalf("no answer to item %d: %v", req.Seq, err)
	}
	if resp.GetSeq() != req.Seq {
		t.Fatalf("answer for item %d, want %d", resp.GetSeq(), req.Seq)
	}
	return resp
}

// recv waits for the next answer, at most 20 s.
func (p *hostilePeer) recv() (*federationv1.DeliverResponse, error) {
	type answer struct {
		resp *federationv1.DeliverResponse
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		r, err := p.stream.Recv()
		ch <- answer{r, err}
	}()
	select {
	case a := <-ch:
		return a.resp, a.err
	case <-time.After(20 * time.Second):
		return nil, errors.New("timed out")
	}
}

func envelopeItem(env *reportv1.Envelope) *federationv1.DeliverRequest {
	return &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Envelope{Envelope: env}}
}

func (p *hostilePeer) node() *store.Store { return p.f.servers[victim].Node().Store() }

// sealed is a report as its originator signed it.
type sealed struct {
	header   *reportv1.Signed
	h        *reportv1.Header
	digest   []byte
	portions []*reportv1.Portion
}

func (s sealed) id() string { return s.h.GetId() }

// seal signs a report of originator with the given portion banners (each
// parsed as the node does).
func (p *hostilePeer) seal(t *testing.T, originator string, banners ...string) sealed {
	t.Helper()
	d := report.Draft{Originator: originator, Created: time.Now().Add(-10 * time.Second)}
	for i, b := range banners {
		m, err := marking.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		d.Portions = append(d.Portions, &reportv1.Portion{
			Marking: report.MarkingToProto(m), ContentType: "text/plain",
			Title: "portion " + string(rune('A'+i)), Body: []byte("hostile-suite content " + string(rune('A'+i))),
		})
	}
	hdr, ps, err := report.Seal(d, p.signers[originator])
	if err != nil {
		t.Fatal(err)
	}
	return opened(t, hdr, ps)
}

func opened(t *testing.T, hdr *reportv1.Signed, ps []*reportv1.Portion) sealed {
	t.Helper()
	h := &reportv1.Header{}
	if err := proto.Unmarshal(hdr.GetPayload(), h); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(hdr.GetPayload())
	return sealed{header: hdr, h: h, digest: sum[:], portions: ps}
}

// signHeader signs h as it stands, with portions whose digests it lists:
// what a hostile originator can do that Seal would refuse.
func (p *hostilePeer) signHeader(t *testing.T, signer string, h *reportv1.Header, ps []*reportv1.Portion) sealed {
	t.Helper()
	for _, pt := range ps {
		if pt.Salt == nil {
			pt.Salt = bytes.Repeat([]byte{7}, report.SaltSize)
		}
	}
	if h.Id == "" {
		h.Id = uuid.Must(uuid.NewV7()).String()
	}
	if h.Created == nil {
		h.Created = timestamppb.New(time.Now().Add(-10 * time.Second))
	}
	if h.Portions == nil {
		for _, pt := range ps {
			dg, err := report.Digest(pt)
			if err != nil {
				dg = rawDigest(pt)
			}
			h.Portions = append(h.Portions, &reportv1.PortionDigest{Index: pt.GetIndex(), Digest: dg})
		}
	}
	sd, err := report.SignStatement(report.KindHeader, h, p.signers[signer])
	if err != nil {
		t.Fatal(err)
	}
	return opened(t, sd, ps)
}

// rawDigest is report.Digest without the checks on the marking, so that a
// hostile originator can sign a digest over a marking no publisher could
// write (same construction: length-prefixed fields).
func rawDigest(pt *reportv1.Portion) []byte {
	m := pt.GetMarking()
	banner := m.GetClassification()
	if len(m.GetRelTo()) > 0 {
		banner += "//REL TO " + strings.Join(m.GetRelTo(), ", ")
	}
	if m.GetNoforn() {
		banner += "//NOFORN"
	}
	if m.GetOrcon() {
		banner += "//ORCON"
	}
	canonical := banner + "\n" + strings.Join(m.GetTopics(), ",")
	h := sha256.New()
	for _, f := range [][]byte{pt.GetSalt(), []byte(canonical), []byte(pt.GetContentType()), []byte(pt.GetTitle()), pt.GetBody()} {
		var n [8]byte
		for i := range 8 {
			n[7-i] = byte(uint64(len(f)) >> (8 * i))
		}
		h.Write(n[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

// release is one portion a hop carries: index, basis, authority.
type release struct {
	index     uint32
	basis     reportv1.Basis
	authority string
}

func origin(ix ...uint32) []release {
	var out []release
	for _, i := range ix {
		out = append(out, release{index: i, basis: reportv1.Basis_BASIS_ORIGIN})
	}
	return out
}

// hop signs a hop of r from -> to with signer's key.
func (p *hostilePeer) hop(t *testing.T, r sealed, signer, from, to string, rs []release) *reportv1.Signed {
	t.Helper()
	h := &reportv1.Hop{ReportId: r.id(), HeaderDigest: r.digest, From: from, To: to, Sent: timestamppb.New(time.Now().Add(-time.Second))}
	for _, x := range rs {
		h.Portions = append(h.Portions, &reportv1.PortionRelease{Index: x.index, Basis: x.basis, AuthorityId: x.authority})
	}
	sd, err := report.SignHop(h, p.signers[signer])
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// grant signs a consent grant of originator (holder GBR, recipient USA)
// for r with signer's key.
func (p *hostilePeer) grant(t *testing.T, r sealed, signer, originator string, issued, expires time.Time) (*reportv1.Signed, string) {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	g := &reportv1.ConsentGrant{
		Id: id, ReportId: r.id(), Originator: originator, Holder: attacker, To: victim, Purpose: "joint operation",
		Issued: timestamppb.New(issued), Expires: timestamppb.New(expires),
	}
	sd, err := report.SignStatement(report.KindGrant, g, p.signers[signer])
	if err != nil {
		t.Fatal(err)
	}
	return sd, id
}

// honest is a report GBR originates, releases to USA and sends as the
// link would.
func (p *hostilePeer) honest(t *testing.T) (*reportv1.Envelope, sealed) {
	t.Helper()
	r := p.seal(t, attacker, "SECRET//REL TO GBR, USA")
	return &reportv1.Envelope{Header: r.header, Portions: r.portions, Hops: []*reportv1.Signed{p.hop(t, r, attacker, attacker, victim, origin(1))}}, r
}

// thirdParty is a report CAN originated and released to GBR (the first
// hop, signed by CAN), which GBR then passes to USA on the given bases.
func (p *hostilePeer) thirdParty(t *testing.T, banner string, last []release, authorities ...*reportv1.Signed) (*reportv1.Envelope, sealed) {
	t.Helper()
	r := p.seal(t, third, banner)
	return &reportv1.Envelope{
		Header: r.header, Portions: r.portions,
		Hops: []*reportv1.Signed{
			p.hop(t, r, third, third, attacker, origin(1)),
			p.hop(t, r, attacker, attacker, victim, last),
		},
		Authorities: authorities,
	}, r
}

// evidence counts what the node under attack holds.
type evidence struct {
	reports, feed, outbox int
	quarantine            []*storev1.QuarantineItem
	security              []*storev1.SecurityEvent
}

func (p *hostilePeer) evidence(t *testing.T) evidence {
	t.Helper()
	st := p.node()
	var e evidence
	var err error
	if e.reports, err = st.Count(); err != nil {
		t.Fatal(err)
	}
	feed, err := st.Feed(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e.feed = len(feed)
	for _, party := range []string{attacker, third} {
		n, err := st.OutboxLen(party)
		if err != nil {
			t.Fatal(err)
		}
		e.outbox += n
	}
	if e.quarantine, err = st.Quarantined(); err != nil {
		t.Fatal(err)
	}
	if e.security, err = st.SecurityEvents(); err != nil {
		t.Fatal(err)
	}
	return e
}

// refusal is what a case expects: the rule, and a fragment of the message
// that says why.
type refusal struct {
	rule string
	says string
}

// refused sends req and checks the refusal and what was stored; reportID,
// when known, is the report the crafted envelope claims to carry. Then it
// checks that the link still carries an honest report.
func (p *hostilePeer) refused(t *testing.T, req *federationv1.DeliverRequest, reportID string, want refusal) {
	t.Helper()
	before := p.evidence(t)
	var heldBefore []*storev1.Event
	if reportID != "" {
		heldBefore, _ = p.node().Events(reportID)
	}
	resp := p.send(t, req)
	if resp.GetOutcome() != federationv1.Outcome_OUTCOME_REJECTED {
		t.Fatalf("outcome %v, want rejected (%s)", resp.GetOutcome(), want.rule)
	}
	if resp.GetReason() != want.rule || !strings.Contains(resp.GetMessage(), want.says) {
		t.Fatalf("refused with %s: %q\nwant %s saying %q", resp.GetReason(), resp.GetMessage(), want.rule, want.says)
	}
	if len(resp.GetMessage()) > 2048 {
		t.Errorf("the refusal is %d bytes long: a reason names what is wrong, it does not echo it", len(resp.GetMessage()))
	}
	after := p.evidence(t)
	p.onlyEvidence(t, before, after, want, reportID, len(heldBefore))
	p.stillHonest(t)
}

// onlyEvidence checks that exactly one quarantine item and one security
// event naming GBR were added, with the expected rule, and nothing else.
func (p *hostilePeer) onlyEvidence(t *testing.T, before, after evidence, want refusal, reportID string, eventsBefore int) {
	t.Helper()
	if after.reports != before.reports || after.feed != before.feed || after.outbox != before.outbox {
		t.Errorf("a refused envelope changed reports %d→%d, feed %d→%d, outbox %d→%d",
			before.reports, after.reports, before.feed, after.feed, before.outbox, after.outbox)
	}
	if len(after.quarantine) != len(before.quarantine)+1 {
		t.Fatalf("quarantine %d→%d items, want one more", len(before.quarantine), len(after.quarantine))
	}
	q := after.quarantine[len(after.quarantine)-1]
	if q.GetSender() != attacker || q.GetRule() != want.rule || !strings.Contains(q.GetMessage(), want.says) || q.GetEnvelope() == nil {
		t.Errorf("quarantine item: sender %s rule %s message %q envelope kept %v", q.GetSender(), q.GetRule(), q.GetMessage(), q.GetEnvelope() != nil)
	}
	if len(after.security) != len(before.security)+1 {
		t.Fatalf("security events %d→%d, want one more", len(before.security), len(after.security))
	}
	se := after.security[len(after.security)-1]
	if se.GetPartner() != attacker || se.GetRule() != want.rule || se.GetKind() != "rejected-envelope" || se.GetQuarantineSeq() != q.GetSeq() {
		t.Errorf("security event: kind %s partner %s rule %s quarantine %d (item %d)", se.GetKind(), se.GetPartner(), se.GetRule(), se.GetQuarantineSeq(), q.GetSeq())
	}
	if reportID == "" {
		return
	}
	if _, err := p.node().Report(reportID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused report %s is held (%v)", reportID, err)
	}
	evs, err := p.node().Events(reportID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs[eventsBefore:] {
		if e.GetKind() != "rejected" || e.GetParty() != attacker {
			t.Errorf("provenance of the refused report gained a %q event (party %s)", e.GetKind(), e.GetParty())
		}
	}
}

// itemRefused sends an item other than an envelope and checks the
// refusal: one security event of kind naming GBR with the rule, nothing
// else stored (an item is not quarantined: the event records it), and the
// link still carries an honest report.
func (p *hostilePeer) itemRefused(t *testing.T, req *federationv1.DeliverRequest, kind string, want refusal) {
	t.Helper()
	before := p.evidence(t)
	resp := p.send(t, req)
	if resp.GetOutcome() != federationv1.Outcome_OUTCOME_REJECTED || resp.GetReason() != want.rule || !strings.Contains(resp.GetMessage(), want.says) {
		t.Fatalf("answer %v %s: %q\nwant rejected, %s saying %q", resp.GetOutcome(), resp.GetReason(), resp.GetMessage(), want.rule, want.says)
	}
	after := p.evidence(t)
	if after.reports != before.reports || after.feed != before.feed || after.outbox != before.outbox || len(after.quarantine) != len(before.quarantine) {
		t.Errorf("a refused item changed the store: %+v → %+v", before, after)
	}
	if len(after.security) != len(before.security)+1 {
		t.Fatalf("security events %d→%d, want one more", len(before.security), len(after.security))
	}
	if se := after.security[len(after.security)-1]; se.GetKind() != kind || se.GetPartner() != attacker || se.GetRule() != want.rule || !strings.Contains(se.GetMessage(), want.says) {
		t.Errorf("security event: kind %s partner %s rule %s message %q", se.GetKind(), se.GetPartner(), se.GetRule(), se.GetMessage())
	}
	p.stillHonest(t)
}

// drained waits until USA's outboxes are empty (its links delivered to the
// real GBR and CAN nodes).
func (p *hostilePeer) drained(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for p.evidence(t).outbox != 0 {
		if time.Now().After(deadline) {
			t.Fatal("USA's outbox did not drain")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stillHonest sends an honest report of GBR on the same stream and checks
// that it is accepted and held.
func (p *hostilePeer) stillHonest(t *testing.T) {
	t.Helper()
	env, r := p.honest(t)
	if resp := p.send(t, envelopeItem(env)); resp.GetOutcome() != federationv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("after the refusal an honest report got %v: %s %s", resp.GetOutcome(), resp.GetReason(), resp.GetMessage())
	}
	if _, err := p.node().Report(r.id()); err != nil {
		t.Fatalf("the honest report is not held: %v", err)
	}
}

func TestHostilePeer(t *testing.T) {
	p := newPeer(t)
	p.stillHonest(t) // the link works before anything hostile

	t.Run("bad signature", func(t *testing.T) {
		env, r := p.honest(t)
		env.Header.Signature[0] ^= 1
		p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "header signature does not verify"})
	})

	t.Run("bad hop signature", func(t *testing.T) {
		env, r := p.honest(t)
		env.Hops[0].Signature[5] ^= 1
		p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "hop signature does not verify"})
	})

	t.Run("digest mismatch", func(t *testing.T) {
		env, r := p.honest(t)
		env.Portions[0].Body = []byte("altered after signing")
		p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "does not match the signed header: portion 1"})
	})

	t.Run("marking altered", func(t *testing.T) {
		env, r := p.honest(t)
		env.Portions[0].Marking.RelTo = []string{"CAN", "GBR", "USA"}
		p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "does not match the signed header: portion 1"})
	})

	t.Run("replayed hop", func(t *testing.T) {
		t.Run("same envelope again is a duplicate, stored once", func(t *testing.T) {
			env, r := p.honest(t)
			if resp := p.send(t, envelopeItem(env)); resp.GetOutcome() != federationv1.Outcome_OUTCOME_ACCEPTED {
				t.Fatalf("first delivery: %v %s", resp.GetOutcome(), resp.GetMessage())
			}
			before := p.evidence(t)
			if resp := p.send(t, envelopeItem(env)); resp.GetOutcome() != federationv1.Outcome_OUTCOME_DUPLICATE {
				t.Fatalf("the same hop again: %v %s, want duplicate (receipt is idempotent)", resp.GetOutcome(), resp.GetMessage())
			}
			after := p.evidence(t)
			if after.reports != before.reports || after.feed != before.feed || len(after.quarantine) != len(before.quarantine) || len(after.security) != len(before.security) {
				t.Fatalf("a resent hop changed the store: %+v → %+v", before, after)
			}
			evs, _ := p.node().Events(r.id())
			if n := countKind(evs, "received"); n != 1 {
				t.Fatalf("received recorded %d times", n)
			}
			p.stillHonest(t)
		})
		t.Run("onto another report", func(t *testing.T) {
			_, a := p.honest(t)
			env, b := p.honest(t)
			env.Hops = []*reportv1.Signed{p.hop(t, a, attacker, attacker, victim, origin(1))}
			p.refused(t, envelopeItem(env), b.id(), refusal{"bad-chain", "is for another report"})
		})
		t.Run("onto another link", func(t *testing.T) {
			// GBR's hop to CAN, replayed to USA.
			env, r := p.honest(t)
			env.Hops = []*reportv1.Signed{p.hop(t, r, attacker, attacker, third, origin(1))}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "the last hop is GBR -> CAN but the envelope came from GBR to USA"})
		})
		t.Run("another party's hop as the last hop", func(t *testing.T) {
			// CAN's genuine hop CAN -> USA of a CAN report, sent by GBR.
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA", origin(1))
			env.Hops = []*reportv1.Signed{p.hop(t, r, third, third, victim, origin(1))}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "the last hop is CAN -> USA but the envelope came from GBR to USA"})
		})
	})

	t.Run("hop lacking its basis", func(t *testing.T) {
		t.Run("consent with no grant", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA//ORCON",
				[]release{{index: 1, basis: reportv1.Basis_BASIS_CONSENT, authority: "0190c1a0-0000-7000-8000-000000000001"}})
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "no grant 0190c1a0-0000-7000-8000-000000000001 of CAN lets GBR pass portion 1"})
		})
		t.Run("rel-to for an ORCON portion", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA//ORCON", []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}})
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "hop 2 GBR → USA on basis rel-to: the portion is ORCON"})
		})
		t.Run("origin claimed by a holder", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA", origin(1))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "on basis origin: GBR is not the originator"})
		})
		t.Run("relay not on the route", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA", []release{{index: 1, basis: reportv1.Basis_BASIS_RELAY}})
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "CAN's signed route does not name GBR as relay to USA"})
		})
		t.Run("chain that skips the originator", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA", []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}})
			env.Hops = env.Hops[1:]
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "does not start at the originator CAN"})
		})
		t.Run("outside REL TO with no grant", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR//ORCON", []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}})
			p.refused(t, envelopeItem(env), r.id(), refusal{"third-party-rule", "USA is not in REL TO and holds no consent or crisis declaration of CAN"})
		})
	})

	t.Run("consent grant signed by the wrong party", func(t *testing.T) {
		t.Run("GBR signs CAN's grant", func(t *testing.T) {
			r := p.seal(t, third, "SECRET//REL TO CAN, GBR//ORCON")
			g, id := p.grant(t, r, attacker, third, time.Now().Add(-5*time.Second), time.Now().Add(time.Hour))
			env := p.consentEnvelope(t, r, id, g)
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "grant of CAN is signed by spiffe://gbr.tearline.test/party/GBR/node/hostile-gbr"})
		})
		t.Run("GBR grants for CAN's report", func(t *testing.T) {
			r := p.seal(t, third, "SECRET//REL TO CAN, GBR//ORCON")
			g, id := p.grant(t, r, attacker, attacker, time.Now().Add(-5*time.Second), time.Now().Add(time.Hour))
			env := p.consentEnvelope(t, r, id, g)
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "is a grant of GBR, not of the originator CAN"})
		})
	})

	t.Run("consent grant signed by the wrong party in a consent decision", func(t *testing.T) {
		// USA holds a report of GBR and asks GBR for consent to pass it to
		// CAN; the answer carries a grant that GBR did not sign as itself.
		env, r := p.honest(t)
		if resp := p.send(t, envelopeItem(env)); resp.GetOutcome() != federationv1.Outcome_OUTCOME_ACCEPTED {
			t.Fatalf("honest report: %v", resp.GetOutcome())
		}
		officer := pki.Identity{Domain: pki.DefaultDomain(victim), Party: victim, Kind: pki.KindOfficer, Name: "liaison"}
		rec, err := p.f.servers[victim].Node().RequestConsent(context.Background(), officer, r.id(), third, "joint analysis", nil)
		if err != nil {
			t.Fatal(err)
		}
		p.drained(t) // the request reached GBR's node
		for _, c := range []struct {
			name, signer, originator, says string
		}{
			{"GBR's grant signed by CAN", third, attacker, "grant of GBR is signed by spiffe://can.tearline.test/party/CAN/node/hostile-can"},
			{"CAN's grant", third, third, "sent a consent grant of CAN for request " + rec.GetId() + ": only the originator GBR grants it"},
		} {
			t.Run(c.name, func(t *testing.T) {
				g := &reportv1.ConsentGrant{Id: rec.GetId(), ReportId: r.id(), Originator: c.originator, Holder: victim, To: third,
					Issued: timestamppb.New(time.Now().Add(-5 * time.Second)), Expires: timestamppb.New(time.Now().Add(time.Hour))}
				sg, err := report.SignStatement(report.KindGrant, g, p.signers[c.signer])
				if err != nil {
					t.Fatal(err)
				}
				p.itemRefused(t, &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_ConsentDecision{ConsentDecision: &federationv1.ConsentDecision{
					RequestId: rec.GetId(), Approved: true, Grant: sg,
				}}}, "bad-consent", refusal{"bad-signature", c.says})
				cs, err := p.node().Consents()
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range cs {
					if x.GetId() == rec.GetId() && (x.GetState() != "pending" || x.GetGrant() != nil) {
						t.Fatalf("the request is now %s", x.GetState())
					}
				}
			})
		}
	})

	t.Run("crisis declaration signed by the wrong party", func(t *testing.T) {
		decl := func(signer, originator string) *reportv1.Signed {
			c := &reportv1.CrisisDeclaration{Id: uuid.Must(uuid.NewV7()).String(), Originator: originator, Topics: []string{"cyber"}, Parties: []string{victim},
				MaxClassification: "SECRET", Issued: timestamppb.New(time.Now().Add(-5 * time.Second)), Expires: timestamppb.New(time.Now().Add(time.Hour))}
			sd, err := report.SignStatement(report.KindCrisis, c, p.signers[signer])
			if err != nil {
				t.Fatal(err)
			}
			return sd
		}
		for _, c := range []struct {
			name, signer, originator, says string
		}{
			{"CAN's declaration signed by GBR", attacker, third, "declaration of CAN is signed by spiffe://gbr.tearline.test/party/GBR/node/hostile-gbr"},
			{"CAN's declaration sent by GBR", third, third, "sent a crisis declaration of CAN: only CAN's node declares it"},
		} {
			t.Run(c.name, func(t *testing.T) {
				before, err := p.node().Crises()
				if err != nil {
					t.Fatal(err)
				}
				p.itemRefused(t, &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_Crisis{Crisis: decl(c.signer, c.originator)}}, "bad-crisis", refusal{"bad-signature", c.says})
				if after, _ := p.node().Crises(); len(after) != len(before) {
					t.Fatalf("a refused declaration was stored")
				}
			})
		}
	})

	t.Run("expired grant", func(t *testing.T) {
		r := p.seal(t, third, "SECRET//REL TO CAN, GBR//ORCON")
		g, id := p.grant(t, r, third, third, time.Now().Add(-30*time.Second), time.Now().Add(-20*time.Second))
		env := p.consentEnvelope(t, r, id, g)
		p.refused(t, envelopeItem(env), r.id(), refusal{"third-party-rule", "grant " + id + " of CAN expired at"})
	})

	t.Run("expired grant inside REL TO", func(t *testing.T) {
		r := p.seal(t, third, "SECRET//REL TO CAN, GBR, USA//ORCON")
		g, id := p.grant(t, r, third, third, time.Now().Add(-30*time.Second), time.Now().Add(-20*time.Second))
		env := p.consentEnvelope(t, r, id, g)
		p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "grant " + id + " of CAN expired at"})
	})

	t.Run("oversized fields", func(t *testing.T) {
		gbrPortion := func(title string, body []byte, m *reportv1.Marking) *reportv1.Portion {
			if m == nil {
				m = &reportv1.Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}}
			}
			return &reportv1.Portion{Index: 1, Marking: m, ContentType: "text/plain", Title: title, Body: body}
		}
		signed := func(t *testing.T, ps ...*reportv1.Portion) (*reportv1.Envelope, sealed) {
			r := p.signHeader(t, attacker, &reportv1.Header{Originator: attacker}, ps)
			var ix []uint32
			for _, pt := range ps {
				ix = append(ix, pt.GetIndex())
			}
			return &reportv1.Envelope{Header: r.header, Portions: ps, Hops: []*reportv1.Signed{p.hop(t, r, attacker, attacker, victim, origin(ix[0]))}}, r
		}
		t.Run("title", func(t *testing.T) {
			env, r := signed(t, gbrPortion(strings.Repeat("T", 5000), []byte("x"), nil))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "portion 1 title is 5000 bytes; the limit is 1024"})
		})
		t.Run("content", func(t *testing.T) {
			env, r := signed(t, gbrPortion("", make([]byte, report.MaxReportBytes+1), nil))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "report content is 4194305 bytes; the limit is 4194304"})
		})
		t.Run("content type", func(t *testing.T) {
			pt := gbrPortion("", []byte("x"), nil)
			pt.ContentType = strings.Repeat("x", 4096)
			env, r := signed(t, pt)
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "portion 1 content type is too long"})
		})
		t.Run("REL TO of 20000 parties", func(t *testing.T) {
			m := &reportv1.Marking{Classification: "SECRET"}
			for i := range 20000 {
				m.RelTo = append(m.RelTo, fmt.Sprintf("P%05d", i))
			}
			m.RelTo = append(m.RelTo, "GBR", "USA")
			slices.Sort(m.RelTo)
			env, r := signed(t, gbrPortion("", []byte("x"), m))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "REL TO names 20002 parties; the limit is"})
		})
		t.Run("party code of 100 KB in REL TO", func(t *testing.T) {
			m := &reportv1.Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA", strings.Repeat("X", 100<<10)}}
			env, r := signed(t, gbrPortion("", []byte("x"), m))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", `REL TO entry "XXXX`})
		})
		t.Run("header over 64 KiB", func(t *testing.T) {
			pt := gbrPortion("", []byte("x"), nil)
			pt.Salt = bytes.Repeat([]byte{7}, report.SaltSize)
			h := &reportv1.Header{Originator: attacker, Portions: []*reportv1.PortionDigest{{Index: 1, Digest: rawDigest(pt)}}}
			for range 3000 {
				h.Route = append(h.Route, &reportv1.RouteEntry{Via: "GBR-RELAY-NODE-X", To: "USA-DESTINATION"})
			}
			h.Id, h.Created = uuid.Must(uuid.NewV7()).String(), timestamppb.Now()
			payload, _ := proto.Marshal(h)
			sig, chain := p.signers[attacker].Sign(append([]byte("tearline/v1/header\x00"), payload...))
			env := &reportv1.Envelope{Header: &reportv1.Signed{Payload: payload, Signature: sig, CertChain: chain, Kind: "header"}, Portions: []*reportv1.Portion{pt}}
			p.refused(t, envelopeItem(env), "", refusal{"bad-input", "header is " + strconv.Itoa(len(payload)) + " bytes"})
		})
		t.Run("65 portions in the header", func(t *testing.T) {
			var ps []*reportv1.Portion
			for i := range 65 {
				pt := gbrPortion("", []byte("x"), nil)
				pt.Index = uint32(i + 1)
				ps = append(ps, pt)
			}
			env, r := signed(t, ps...)
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "header lists 65 portions; the limit is 64"})
		})
		t.Run("too many hops", func(t *testing.T) {
			env, r := p.honest(t)
			for len(env.Hops) <= report.MaxHops*report.MaxPortions {
				env.Hops = append(env.Hops, env.Hops[0])
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "carries 1025 hops; the limit is 1024"})
		})
		t.Run("too many authorities", func(t *testing.T) {
			r := p.seal(t, third, "SECRET//REL TO CAN, GBR//ORCON")
			g, id := p.grant(t, r, third, third, time.Now().Add(-5*time.Second), time.Now().Add(time.Hour))
			env := p.consentEnvelope(t, r, id, g)
			for len(env.Authorities) <= report.MaxAuthorities {
				env.Authorities = append(env.Authorities, g)
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "carries 65 consent grants and crisis declarations; the limit is 64"})
		})
	})

	t.Run("huge repeated fields", func(t *testing.T) {
		// Within the message size limit, repeated fields far past any
		// limit: decoded by gRPC, refused by the node before any signature
		// work on them.
		t.Run("100000 portions", func(t *testing.T) {
			env, r := p.honest(t)
			for range 100000 {
				env.Portions = append(env.Portions, &reportv1.Portion{})
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "100001 portions; the limit is 64"})
		})
		t.Run("100000 hops", func(t *testing.T) {
			env, r := p.honest(t)
			for range 100000 {
				env.Hops = append(env.Hops, &reportv1.Signed{})
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "carries 100001 hops"})
		})
		t.Run("100000 authorities", func(t *testing.T) {
			env, r := p.honest(t)
			for range 100000 {
				env.Authorities = append(env.Authorities, &reportv1.Signed{Kind: report.KindGrant})
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "carries 100000 consent grants"})
		})
		t.Run("100000 certificates in a chain", func(t *testing.T) {
			env, r := p.honest(t)
			c := env.Header.CertChain[0]
			for range 10000 {
				env.Header.CertChain = append(env.Header.CertChain, c)
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "chain of 10001 certificates, at most 4 allowed"})
		})
	})

	t.Run("deep nesting", func(t *testing.T) {
		// Deeply nested groups in an unknown field of the envelope: bytes no
		// honest node sends. The protobuf decoder either skips them as
		// unknown fields (then the envelope is refused for what it lacks)
		// or refuses them; neither may take the node or the link down.
		for _, depth := range []int{100, 10000, 500000} {
			t.Run(strconv.Itoa(depth), func(t *testing.T) {
				p.deepNesting(t, depth)
			})
		}
	})

	t.Run("unknown party codes", func(t *testing.T) {
		t.Run("originator whose CA is not trusted", func(t *testing.T) {
			r := p.seal(t, "FRA", "SECRET//REL TO FRA, GBR, USA")
			env := &reportv1.Envelope{Header: r.header, Portions: r.portions, Hops: []*reportv1.Signed{
				p.hop(t, r, "FRA", "FRA", attacker, origin(1)), p.hop(t, r, attacker, attacker, victim, []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}}),
			}}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-signature", "no CA is trusted for party FRA"})
		})
		t.Run("hop from a party whose CA is not trusted", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, FRA, GBR, USA", []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}})
			env.Hops = []*reportv1.Signed{
				p.hop(t, r, third, third, "FRA", origin(1)),
				p.hop(t, r, "FRA", "FRA", attacker, []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}}),
				env.Hops[1],
			}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "no CA is trusted for party FRA"})
		})
		t.Run("not a party code in REL TO", func(t *testing.T) {
			m := &reportv1.Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA", "usa"}}
			pt := &reportv1.Portion{Index: 1, Marking: m, ContentType: "text/plain", Body: []byte("x")}
			r := p.signHeader(t, attacker, &reportv1.Header{Originator: attacker}, []*reportv1.Portion{pt})
			env := &reportv1.Envelope{Header: r.header, Portions: r.portions, Hops: []*reportv1.Signed{p.hop(t, r, attacker, attacker, victim, origin(1))}}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", `REL TO entry "usa" is not a party code`})
		})
		t.Run("not a party code as originator", func(t *testing.T) {
			pt := &reportv1.Portion{Index: 1, Marking: &reportv1.Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}}, ContentType: "text/plain", Body: []byte("x")}
			r := p.signHeader(t, attacker, &reportv1.Header{Originator: "G B R"}, []*reportv1.Portion{pt})
			env := &reportv1.Envelope{Header: r.header, Portions: r.portions}
			p.refused(t, envelopeItem(env), "", refusal{"bad-input", `originator "G B R" is not a party code`})
		})
		t.Run("not a party code in the route", func(t *testing.T) {
			pt := &reportv1.Portion{Index: 1, Marking: &reportv1.Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}}, ContentType: "text/plain", Body: []byte("x")}
			r := p.signHeader(t, attacker, &reportv1.Header{Originator: attacker, Route: []*reportv1.RouteEntry{{Via: "USA", To: "../etc"}}}, []*reportv1.Portion{pt})
			env := &reportv1.Envelope{Header: r.header, Portions: r.portions}
			p.refused(t, envelopeItem(env), "", refusal{"bad-input", `route entry "USA" -> "../etc" names an invalid party`})
		})
		t.Run("hop to a party code that is not valid", func(t *testing.T) {
			env, r := p.honest(t)
			env.Hops = append([]*reportv1.Signed{p.hop(t, r, attacker, attacker, "usa", origin(1))}, env.Hops...)
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "hop is malformed"})
		})
	})

	t.Run("duplicate portion indexes", func(t *testing.T) {
		t.Run("in the envelope", func(t *testing.T) {
			env, r := p.honest(t)
			env.Portions = append(env.Portions, proto.CloneOf(env.Portions[0]))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-input", "portion 1 appears twice"})
		})
		t.Run("in the signed header", func(t *testing.T) {
			pt := &reportv1.Portion{Index: 1, Marking: &reportv1.Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}}, ContentType: "text/plain", Body: []byte("x")}
			pt.Salt = bytes.Repeat([]byte{7}, report.SaltSize)
			dg := rawDigest(pt)
			r := p.signHeader(t, attacker, &reportv1.Header{Originator: attacker, Portions: []*reportv1.PortionDigest{{Index: 1, Digest: dg}, {Index: 1, Digest: dg}}}, []*reportv1.Portion{pt})
			env := &reportv1.Envelope{Header: r.header, Portions: r.portions, Hops: []*reportv1.Signed{p.hop(t, r, attacker, attacker, victim, origin(1))}}
			p.refused(t, envelopeItem(env), "", refusal{"bad-input", "header portion digest 1 is malformed or repeated"})
		})
		t.Run("in a hop", func(t *testing.T) {
			env, r := p.honest(t)
			env.Hops = []*reportv1.Signed{p.hop(t, r, attacker, attacker, victim, append(origin(1), release{index: 1, basis: reportv1.Basis_BASIS_REL_TO}))}
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "hop GBR -> USA lists portion 1 twice"})
		})
	})

	t.Run("originator differs from signer", func(t *testing.T) {
		t.Run("GBR signs a header of CAN", func(t *testing.T) {
			r := p.seal(t, third, "SECRET//REL TO CAN, GBR, USA")
			h := proto.CloneOf(r.h)
			forged := p.signHeader(t, attacker, h, r.portions)
			env := &reportv1.Envelope{Header: forged.header, Portions: r.portions, Hops: []*reportv1.Signed{
				p.hop(t, forged, attacker, attacker, victim, origin(1)),
			}}
			p.refused(t, envelopeItem(env), "", refusal{"bad-signature", "header names originator CAN but is signed by spiffe://gbr.tearline.test/party/GBR/node/hostile-gbr"})
		})
		t.Run("an officer of CAN signs a header of CAN", func(t *testing.T) {
			officer := issueSigner(t, p.f.ca(third), third, pki.KindOfficer, "mallory")
			p.signers["CAN-officer"] = officer
			r := p.seal(t, third, "SECRET//REL TO CAN, GBR, USA")
			h := proto.CloneOf(r.h)
			forged := p.signHeader(t, "CAN-officer", h, r.portions)
			env := &reportv1.Envelope{Header: forged.header, Portions: r.portions, Hops: []*reportv1.Signed{
				p.hop(t, forged, third, third, attacker, origin(1)), p.hop(t, forged, attacker, attacker, victim, []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}}),
			}}
			p.refused(t, envelopeItem(env), "", refusal{"bad-signature", "is signed by spiffe://can.tearline.test/party/CAN/officer/mallory"})
		})
		t.Run("GBR signs a hop from CAN", func(t *testing.T) {
			env, r := p.thirdParty(t, "SECRET//REL TO CAN, GBR, USA", []release{{index: 1, basis: reportv1.Basis_BASIS_REL_TO}})
			env.Hops[0] = p.hop(t, r, attacker, third, attacker, origin(1))
			p.refused(t, envelopeItem(env), r.id(), refusal{"bad-chain", "hop from CAN is signed by spiffe://gbr.tearline.test/party/GBR/node/hostile-gbr"})
		})
	})

	t.Run("batched signatures", func(t *testing.T) {
		// GBR signs its hops in a batch: one signature over a Merkle root,
		// an inclusion proof per hop (DESIGN §4). A proof moved to another
		// hop, altered or malformed is refused, and poisons nothing: the
		// honest hop is accepted after.
		type signedHop struct {
			r  sealed
			sh *reportv1.Signed
		}
		var batched []signedHop
		for try := 0; try < 5 && len(batched) < 2; try++ {
			batched = nil
			gate := &gatedSigner{Signer: p.signers[attacker], gate: make(chan struct{})}
			bs := report.NewBatchSigner(gate)
			rs := make([]sealed, 6)
			shs := make([]*reportv1.Signed, len(rs))
			for i := range rs {
				_, rs[i] = p.honest(t)
			}
			var wg sync.WaitGroup
			for i := range rs {
				wg.Go(func() {
					h := &reportv1.Hop{ReportId: rs[i].id(), HeaderDigest: rs[i].digest, From: attacker, To: victim, Sent: timestamppb.New(time.Now().Add(-time.Second)),
						Portions: []*reportv1.PortionRelease{{Index: 1, Basis: reportv1.Basis_BASIS_ORIGIN}}}
					sd, err := report.SignHop(h, bs)
					if err != nil {
						t.Error(err)
					}
					shs[i] = sd
				})
			}
			time.Sleep(200 * time.Millisecond) // the first signs alone; the rest queue into one batch
			close(gate.gate)
			wg.Wait()
			for i, sd := range shs {
				if sd.GetBatch() != nil {
					batched = append(batched, signedHop{rs[i], sd})
				}
			}
		}
		if len(batched) < 2 {
			t.Fatal("no batch formed")
		}
		a, b := batched[0], batched[1]
		env := func(x signedHop, sh *reportv1.Signed) *reportv1.Envelope {
			return &reportv1.Envelope{Header: x.r.header, Portions: x.r.portions, Hops: []*reportv1.Signed{sh}}
		}
		t.Run("proof of another hop", func(t *testing.T) {
			sh := proto.CloneOf(b.sh)
			sh.Batch = proto.CloneOf(a.sh.GetBatch())
			p.refused(t, envelopeItem(env(b, sh)), b.r.id(), refusal{"bad-chain", "hop signature does not verify"})
		})
		t.Run("altered proof", func(t *testing.T) {
			sh := proto.CloneOf(b.sh)
			sh.Batch.Path[0][3] ^= 1
			p.refused(t, envelopeItem(env(b, sh)), b.r.id(), refusal{"bad-chain", "hop signature does not verify"})
		})
		t.Run("malformed proof", func(t *testing.T) {
			sh := proto.CloneOf(b.sh)
			sh.Batch.Size = 5000
			p.refused(t, envelopeItem(env(b, sh)), b.r.id(), refusal{"bad-chain", "batch proof for leaf"})
		})
		t.Run("batch signature on a statement signed alone", func(t *testing.T) {
			sh := proto.CloneOf(b.sh)
			sh.Batch = nil
			p.refused(t, envelopeItem(env(b, sh)), b.r.id(), refusal{"bad-chain", "hop signature does not verify"})
		})
		for _, x := range []signedHop{a, b} {
			if resp := p.send(t, envelopeItem(env(x, x.sh))); resp.GetOutcome() != federationv1.Outcome_OUTCOME_ACCEPTED {
				t.Fatalf("an honest batched hop: %v %s %s", resp.GetOutcome(), resp.GetReason(), resp.GetMessage())
			}
		}
	})

	t.Run("message over the size limit", func(t *testing.T) {
		p.oversizedMessage(t)
	})

	// Every refusal above is on record, each naming GBR.
	evs, err := p.node().SecurityEvents()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.GetPartner() != attacker {
			t.Errorf("security event %s names %s", e.GetKind(), e.GetPartner())
		}
	}
}

// gatedSigner holds each signature until gate is closed, so that a
// batch forms behind the first.
type gatedSigner struct {
	report.Signer
	gate chan struct{}
}

func (g *gatedSigner) Sign(msg []byte) ([]byte, [][]byte) {
	<-g.gate
	return g.Signer.Sign(msg)
}

// consentEnvelope is CAN's report r passed by GBR to USA on basis
// consent:grantID, carrying grant g.
func (p *hostilePeer) consentEnvelope(t *testing.T, r sealed, grantID string, g *reportv1.Signed) *reportv1.Envelope {
	t.Helper()
	return &reportv1.Envelope{
		Header: r.header, Portions: r.portions,
		Hops: []*reportv1.Signed{
			p.hop(t, r, third, third, attacker, origin(1)),
			p.hop(t, r, attacker, attacker, victim, []release{{index: 1, basis: reportv1.Basis_BASIS_CONSENT, authority: grantID}}),
		},
		Authorities: []*reportv1.Signed{g},
	}
}

// rawCodec sends pre-encoded bytes as they are; it decodes answers as
// protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(rawBytes); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (rawCodec) Name() string                    { return "proto" }

type rawBytes []byte

// rawStream opens a Deliver stream on the peer's connection that sends
// bytes as given.
func (p *hostilePeer) rawStream(t *testing.T) grpc.ClientStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := p.conn.NewStream(ctx, &federationv1.FederationService_ServiceDesc.Streams[0], federationv1.FederationService_Deliver_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deepNesting sends a DeliverRequest whose envelope holds depth nested
// groups of an unknown field. Either the node decodes it (skipping the
// unknown field) and refuses the envelope for having no header, or grpc
// ends the stream (Internal: it does not decode) and the node records a
// security event naming GBR; in both cases a new stream on the same connection carries
// an honest report.
func (p *hostilePeer) deepNesting(t *testing.T, depth int) {
	var env []byte
	env = append(env, bytes.Repeat([]byte{0x7b}, depth)...) // field 15, start group
	env = append(env, bytes.Repeat([]byte{0x7c}, depth)...) // field 15, end group
	msg := protowire.AppendTag(nil, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 1)
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendBytes(msg, env)
	before := p.evidence(t)
	s := p.rawStream(t)
	if err := s.SendMsg(rawBytes(msg)); err != nil {
		t.Fatal(err)
	}
	resp := &federationv1.DeliverResponse{}
	err := s.RecvMsg(resp)
	after := p.evidence(t)
	if after.reports != before.reports || after.feed != before.feed || after.outbox != before.outbox {
		t.Errorf("nested input changed reports %d→%d, feed %d→%d, outbox %d→%d", before.reports, after.reports, before.feed, after.feed, before.outbox, after.outbox)
	}
	switch {
	case err == nil:
		if resp.GetOutcome() != federationv1.Outcome_OUTCOME_REJECTED || resp.GetReason() != "bad-input" || !strings.Contains(resp.GetMessage(), "no header") {
			t.Fatalf("nested groups of depth %d: %v %s %q", depth, resp.GetOutcome(), resp.GetReason(), resp.GetMessage())
		}
		if len(after.quarantine) != len(before.quarantine)+1 || len(after.security) != len(before.security)+1 {
			t.Fatalf("refused without its evidence")
		}
		s.CloseSend()
	default:
		if status.Code(err) != codes.Internal || !strings.Contains(status.Convert(err).Message(), "unmarshal") {
			t.Fatalf("nested groups of depth %d ended the stream with %v, want grpc's unmarshal error", depth, err)
		}
		if len(after.quarantine) != len(before.quarantine) {
			t.Errorf("undecodable bytes were quarantined as an envelope")
		}
		p.malformedEvent(t, before, "does not decode")
	}
	p.open()
	p.stillHonest(t)
}

// oversizedMessage sends one message over the node's 8 MiB limit: the
// stream ends with ResourceExhausted and a security event naming GBR; a
// new stream carries an honest report.
func (p *hostilePeer) oversizedMessage(t *testing.T) {
	before := p.evidence(t)
	s := p.rawStream(t)
	msg := protowire.AppendTag(nil, 2, protowire.BytesType)
	msg = protowire.AppendBytes(msg, make([]byte, 9<<20))
	if err := s.SendMsg(rawBytes(msg)); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	err := s.RecvMsg(&federationv1.DeliverResponse{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 9 MiB message: %v, want ResourceExhausted", err)
	}
	p.malformedEvent(t, before, "larger than")
	after := p.evidence(t)
	if after.reports != before.reports || after.feed != before.feed || len(after.quarantine) != len(before.quarantine) {
		t.Errorf("an oversized message changed the store")
	}
	p.open()
	p.stillHonest(t)
}

// malformedEvent waits for the security event that a stream ended for an
// unreadable message records.
func (p *hostilePeer) malformedEvent(t *testing.T, before evidence, says string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := p.node().SecurityEvents()
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > len(before.security) {
			e := evs[len(evs)-1]
			if e.GetKind() != "malformed-message" || e.GetPartner() != attacker || e.GetRule() != "bad-input" || !strings.Contains(e.GetMessage(), says) {
				t.Fatalf("security event: kind %s partner %s rule %s message %q", e.GetKind(), e.GetPartner(), e.GetRule(), e.GetMessage())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no security event for the unreadable message")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countKind(evs []*storev1.Event, kind string) int {
	n := 0
	for _, e := range evs {
		if e.GetKind() == kind {
			n++
		}
	}
	return n
}
