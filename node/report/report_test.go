package report_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

func TestSealOpenRoundTrip(t *testing.T) {
	f := newFederation(t, "USA", "GBR", "CAN")
	usa := f.node(t, "USA")
	created := time.Now().Truncate(time.Millisecond)
	d := draft("USA", created)
	r := seal(t, d, usa, f.trust)

	h := r.v.Header
	if r.v.Signer != usa.Identity() {
		t.Errorf("signer = %s, want %s", r.v.Signer, usa.Identity())
	}
	if h.GetOriginator() != "USA" {
		t.Errorf("originator = %q, want USA", h.GetOriginator())
	}
	if !h.GetCreated().AsTime().Equal(created) {
		t.Errorf("created = %s, want %s", h.GetCreated().AsTime(), created)
	}
	if id, err := uuid.Parse(h.GetId()); err != nil || id.Version() != 7 {
		t.Errorf("id %q is not a UUIDv7 (%v)", h.GetId(), err)
	}
	if got, want := strings.Join(h.GetTopics(), ","), "cyber,flood"; got != want {
		t.Errorf("topics = %s, want %s", got, want)
	}
	if len(h.GetRoute()) != 1 || h.GetRoute()[0].GetVia() != "GBR" || h.GetRoute()[0].GetTo() != "CAN" {
		t.Errorf("route = %v, want GBR -> CAN", h.GetRoute())
	}
	if sum := sha256.Sum256(r.header.GetPayload()); !bytes.Equal(r.v.Digest, sum[:]) {
		t.Errorf("Verified.Digest is not SHA-256 of the signed payload")
	}

	// One digest per portion, numbered 1..n, each the digest of the
	// returned portion; fresh salts; the draft itself is not changed.
	if len(h.GetPortions()) != len(d.Portions) || len(r.portions) != len(d.Portions) {
		t.Fatalf("header lists %d digests and Seal returned %d portions for %d drafted",
			len(h.GetPortions()), len(r.portions), len(d.Portions))
	}
	salts := map[string]bool{}
	for i, p := range r.portions {
		if p.GetIndex() != uint32(i+1) {
			t.Errorf("portion %d has index %d", i, p.GetIndex())
		}
		if pd := h.GetPortions()[i]; pd.GetIndex() != uint32(i+1) {
			t.Errorf("header digest %d has index %d", i, pd.GetIndex())
		}
		dg, err := report.Digest(p)
		if err != nil {
			t.Fatalf("Digest(portion %d): %v", p.GetIndex(), err)
		}
		if !bytes.Equal(report.DigestOf(h, p.GetIndex()), dg) {
			t.Errorf("header digest of portion %d does not match the portion", p.GetIndex())
		}
		if len(p.GetSalt()) != report.SaltSize {
			t.Errorf("portion %d salt is %d bytes", p.GetIndex(), len(p.GetSalt()))
		}
		salts[string(p.GetSalt())] = true
		if !bytes.Equal(p.GetBody(), d.Portions[i].GetBody()) || p.GetTitle() != d.Portions[i].GetTitle() ||
			p.GetContentType() != d.Portions[i].GetContentType() || !proto.Equal(p.GetMarking(), d.Portions[i].GetMarking()) {
			t.Errorf("portion %d content differs from the draft", p.GetIndex())
		}
		if d.Portions[i].GetIndex() != 0 || d.Portions[i].GetSalt() != nil {
			t.Errorf("Seal modified draft portion %d", i)
		}
	}
	if len(salts) != len(r.portions) {
		t.Errorf("%d distinct salts for %d portions", len(salts), len(r.portions))
	}
	if report.DigestOf(h, 4) != nil {
		t.Errorf("DigestOf a portion not in the header is not nil")
	}

	// Tearline release: every subset of the portions verifies on its own.
	n := len(r.portions)
	for mask := 1; mask < 1<<n; mask++ {
		var sub []*reportv1.Portion
		for i := range n {
			if mask&(1<<i) != 0 {
				sub = append(sub, r.portions[i])
			}
		}
		if err := report.CheckAgainstHeader(h, sub); err != nil {
			t.Errorf("CheckAgainstHeader(subset %03b): %v", mask, err)
		}
	}
	// Order does not matter either.
	rev := []*reportv1.Portion{r.portions[2], r.portions[0]}
	if err := report.CheckAgainstHeader(h, rev); err != nil {
		t.Errorf("CheckAgainstHeader(portions 3, 1): %v", err)
	}

	// Two seals of the same draft are two reports.
	r2 := seal(t, d, usa, f.trust)
	if r2.v.Header.GetId() == h.GetId() {
		t.Errorf("two seals share id %s", h.GetId())
	}
	if bytes.Equal(report.DigestOf(r2.v.Header, 2), report.DigestOf(h, 2)) {
		t.Errorf("two seals of the same portion share a digest: the salt is not fresh")
	}
}

func TestOpenHeaderRefusesTamperedBytes(t *testing.T) {
	f := newFederation(t, "USA", "GBR")
	r := seal(t, draft("USA", time.Now()), f.node(t, "USA"), f.trust)

	// Every single-byte change of the payload is refused, as bad bytes or a
	// bad signature: never accepted, never another error.
	for i := range r.header.GetPayload() {
		sd := proto.CloneOf(r.header)
		sd.Payload[i] ^= 0x01
		_, err := report.OpenHeader(sd, f.trust)
		wantErr(t, "payload byte "+strconv.Itoa(i)+" flipped", err, report.ErrSignature, report.ErrInvalid)
	}
	for _, i := range []int{0, 31, 32, 63} {
		sd := proto.CloneOf(r.header)
		sd.Signature[i] ^= 0x80
		_, err := report.OpenHeader(sd, f.trust)
		wantErr(t, "signature byte "+strconv.Itoa(i)+" flipped", err, report.ErrSignature)
	}

	cases := []struct {
		name   string
		mutate func(*reportv1.Signed)
	}{
		{"truncated signature", func(sd *reportv1.Signed) { sd.Signature = sd.Signature[:63] }},
		{"no signature", func(sd *reportv1.Signed) { sd.Signature = nil }},
		{"no chain", func(sd *reportv1.Signed) { sd.CertChain = nil }},
		{"empty certificate", func(sd *reportv1.Signed) { sd.CertChain = [][]byte{{}} }},
		{"flipped certificate byte", func(sd *reportv1.Signed) { sd.CertChain[0][len(sd.CertChain[0])/2] ^= 1 }},
		{"chain of another USA node", func(sd *reportv1.Signed) {
			_, chain := f.source(t, "USA", pki.KindNode, "n2").Sign(nil)
			sd.CertChain = chain
		}},
	}
	for _, c := range cases {
		sd := proto.CloneOf(r.header)
		c.mutate(sd)
		_, err := report.OpenHeader(sd, f.trust)
		wantErr(t, c.name, err, report.ErrSignature)
	}

	if _, err := report.OpenHeader(nil, f.trust); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("OpenHeader(nil) = %v, want ErrInvalid", err)
	}
	big := &reportv1.Signed{Payload: make([]byte, report.MaxStatementSize+1), Signature: r.header.GetSignature(), CertChain: r.header.GetCertChain()}
	if _, err := report.OpenHeader(big, f.trust); !errors.Is(err, report.ErrTooLarge) {
		t.Errorf("OpenHeader(oversized payload) = %v, want ErrTooLarge", err)
	}
}

func TestOpenHeaderRefusesWrongSigner(t *testing.T) {
	f := newFederation(t, "USA", "GBR", "CAN")
	usa := f.node(t, "USA")
	r := seal(t, draft("USA", time.Now()), usa, f.trust)
	h := r.v.Header

	// A rogue CA for USA that this node does not trust.
	rogueCA, err := pki.OpenDevCA(t.TempDir(), "USA")
	if err != nil {
		t.Fatal(err)
	}
	rogue := newSource(t, rogueCA, "USA", pki.KindNode, "n1")

	cases := []struct {
		name   string
		signer report.Signer
	}{
		{"GBR node signs a header naming USA", f.node(t, "GBR")},
		{"USA officer signs", f.source(t, "USA", pki.KindOfficer, "alice")},
		{"USA service signs", f.source(t, "USA", pki.KindService, "feed")},
		{"USA node from an untrusted CA signs", rogue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The same header, re-signed: the payload is valid, only
			// the signer is wrong.
			sd, err := report.SignStatement(report.KindHeader, h, c.signer)
			if err != nil {
				t.Fatal(err)
			}
			_, err = report.OpenHeader(sd, f.trust)
			wantErr(t, "OpenHeader", err, report.ErrSignature)
			// Seal with the wrong signer also yields a header that does
			// not open.
			hdr, _, err := report.Seal(draft("USA", time.Now()), c.signer)
			if err != nil {
				t.Fatal(err)
			}
			_, err = report.OpenHeader(hdr, f.trust)
			wantErr(t, "OpenHeader(Seal)", err, report.ErrSignature)
		})
	}

	// Control: the same payload re-signed by the right node opens.
	sd, err := report.SignStatement(report.KindHeader, h, usa)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.OpenHeader(sd, f.trust); err != nil {
		t.Errorf("re-signed by the USA node: %v", err)
	}

	// A party whose CA is no longer trusted is refused.
	gbr := f.node(t, "GBR")
	g := seal(t, draft("GBR", time.Now()), gbr, f.trust)
	f.trust.Set("GBR", nil)
	_, err = report.OpenHeader(g.header, f.trust)
	wantErr(t, "GBR header after GBR's CA is removed", err, report.ErrSignature)

	// Nor is a header naming GBR signed by a trusted CAN node.
	f.trust.Set("GBR", []*x509.Certificate{f.cas["GBR"].Certificate()})
	sd, err = report.SignStatement(report.KindHeader, g.v.Header, f.node(t, "CAN"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = report.OpenHeader(sd, f.trust)
	wantErr(t, "GBR header signed by CAN's node", err, report.ErrSignature)
	// Control: with GBR's CA trusted again, GBR's own header opens.
	if _, err := report.OpenHeader(g.header, f.trust); err != nil {
		t.Errorf("GBR header after GBR's CA is trusted again: %v", err)
	}
}

func TestOpenHeaderRefusesMalformedSignedHeaders(t *testing.T) {
	f := newFederation(t, "USA")
	usa := f.node(t, "USA")
	r := seal(t, draft("USA", time.Now()), usa, f.trust)

	cases := []struct {
		name   string
		mutate func(*reportv1.Header)
		want   error
	}{
		{"no portions", func(h *reportv1.Header) { h.Portions = nil }, report.ErrInvalid},
		{"repeated digest index", func(h *reportv1.Header) { h.Portions[1].Index = 1 }, report.ErrInvalid},
		{"digest index 0", func(h *reportv1.Header) { h.Portions[0].Index = 0 }, report.ErrInvalid},
		{"digest index over the limit", func(h *reportv1.Header) { h.Portions[0].Index = report.MaxPortions + 1 }, report.ErrInvalid},
		{"short digest", func(h *reportv1.Header) { h.Portions[0].Digest = h.Portions[0].Digest[:31] }, report.ErrInvalid},
		{"too many digests", func(h *reportv1.Header) {
			h.Portions = nil
			for i := range report.MaxPortions + 1 {
				h.Portions = append(h.Portions, &reportv1.PortionDigest{Index: uint32(i + 1), Digest: make([]byte, 32)})
			}
		}, report.ErrTooLarge},
		{"id not a UUID", func(h *reportv1.Header) { h.Id = "R1" }, report.ErrInvalid},
		{"originator not a party code", func(h *reportv1.Header) { h.Originator = "usa" }, report.ErrInvalid},
		{"no creation time", func(h *reportv1.Header) { h.Created = nil }, report.ErrInvalid},
		{"invalid creation time", func(h *reportv1.Header) { h.Created = &timestamppb.Timestamp{Seconds: 1, Nanos: -1} }, report.ErrInvalid},
		{"bad topic", func(h *reportv1.Header) { h.Topics = []string{"a,b"} }, report.ErrInvalid},
		{"bad route", func(h *reportv1.Header) { h.Route = []*reportv1.RouteEntry{{Via: "GBR", To: ""}} }, report.ErrInvalid},
		{"too long a route", func(h *reportv1.Header) {
			h.Route = nil
			for range report.MaxHops + 1 {
				h.Route = append(h.Route, &reportv1.RouteEntry{Via: "GBR", To: "CAN"})
			}
		}, report.ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := proto.CloneOf(r.v.Header)
			c.mutate(h)
			// Validly signed by the right node: only the content is wrong.
			sd, err := report.SignStatement(report.KindHeader, h, usa)
			if err != nil {
				t.Fatal(err)
			}
			_, err = report.OpenHeader(sd, f.trust)
			wantErr(t, "OpenHeader", err, c.want)
			_, err = report.OpenOwnHeader(sd)
			wantErr(t, "OpenOwnHeader", err, c.want)
		})
	}
}

// TestOpenOwnHeader: a header just sealed reads as OpenHeader reads it,
// without its signature being checked again.
func TestOpenOwnHeader(t *testing.T) {
	f := newFederation(t, "USA")
	usa := f.node(t, "USA")
	r := seal(t, draft("USA", time.Now()), usa, f.trust)
	got, err := report.OpenOwnHeader(r.header)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Header, r.v.Header) || got.Signer != r.v.Signer || !bytes.Equal(got.Digest, r.v.Digest) {
		t.Errorf("OpenOwnHeader = %v, %s, %x; OpenHeader gave %v, %s, %x", got.Header, got.Signer, got.Digest, r.v.Header, r.v.Signer, r.v.Digest)
	}
	noChain := proto.CloneOf(r.header)
	noChain.CertChain = nil
	_, err = report.OpenOwnHeader(noChain)
	wantErr(t, "OpenOwnHeader without a chain", err, report.ErrSignature)
}

func TestCheckAgainstHeaderRefusesChangedPortions(t *testing.T) {
	f := newFederation(t, "USA")
	r := seal(t, draft("USA", time.Now()), f.node(t, "USA"), f.trust)
	h := r.v.Header

	cases := []struct {
		name   string
		mutate func(ps []*reportv1.Portion) []*reportv1.Portion
		want   error
	}{
		{"body byte", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Body[0] ^= 1; return ps }, report.ErrDigest},
		{"body extended", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Body = append(ps[0].Body, '!'); return ps }, report.ErrDigest},
		{"body emptied", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[1].Body = nil; return ps }, report.ErrDigest},
		{"title", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Title = "Summary."; return ps }, report.ErrDigest},
		{"title added", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[2].Title = "x"; return ps }, report.ErrDigest},
		{"content type", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].ContentType = "text/html"; return ps }, report.ErrDigest},
		{"classification lowered", func(ps []*reportv1.Portion) []*reportv1.Portion {
			ps[1].Marking.Classification = "UNCLASSIFIED"
			return ps
		}, report.ErrDigest},
		{"REL TO widened", func(ps []*reportv1.Portion) []*reportv1.Portion {
			ps[0].Marking.RelTo = []string{"AUS", "CAN", "GBR", "USA"}
			return ps
		}, report.ErrDigest},
		{"NOFORN removed", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[1].Marking.Noforn = false; return ps }, report.ErrDigest},
		{"ORCON removed", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[2].Marking.Orcon = false; return ps }, report.ErrDigest},
		{"topic changed", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Marking.Topics = []string{"flood"}; return ps }, report.ErrDigest},
		{"topic removed", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Marking.Topics = nil; return ps }, report.ErrDigest},
		{"salt byte", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[2].Salt[31] ^= 0x40; return ps }, report.ErrDigest},
		{"portions swapped", func(ps []*reportv1.Portion) []*reportv1.Portion {
			ps[0].Index, ps[1].Index = ps[1].Index, ps[0].Index
			return ps
		}, report.ErrDigest},
		{"index not in the header", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[2].Index = 4; return ps }, report.ErrDigest},
		{"index 0", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Index = 0; return ps }, report.ErrInvalid},
		{"index over the limit", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Index = report.MaxPortions + 1; return ps }, report.ErrInvalid},
		{"duplicate index", func(ps []*reportv1.Portion) []*reportv1.Portion { return append(ps, proto.CloneOf(ps[0])) }, report.ErrInvalid},
		{"duplicate index, other content", func(ps []*reportv1.Portion) []*reportv1.Portion {
			p := proto.CloneOf(ps[1])
			p.Index = 1
			return append(ps, p)
		}, report.ErrInvalid},
		{"short salt", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Salt = ps[0].Salt[:16]; return ps }, report.ErrInvalid},
		{"no marking", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Marking = nil; return ps }, report.ErrInvalid},
		{"unknown classification", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Marking.Classification = "COSMIC"; return ps }, report.ErrInvalid},
		{"REL TO unsorted", func(ps []*reportv1.Portion) []*reportv1.Portion {
			ps[0].Marking.RelTo = []string{"USA", "GBR", "CAN"}
			return ps
		}, report.ErrInvalid},
		{"NOFORN with REL TO", func(ps []*reportv1.Portion) []*reportv1.Portion { ps[0].Marking.Noforn = true; return ps }, report.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := c.mutate(clonePortions(r.portions))
			err := report.CheckAgainstHeader(h, ps)
			wantErr(t, "CheckAgainstHeader", err, c.want)
			if c.want == report.ErrDigest && errors.Is(err, report.ErrInvalid) {
				t.Errorf("a well-formed changed portion is reported as invalid, not as a digest mismatch: %v", err)
			}
		})
	}
	// The original portions were not changed by the cases above.
	if err := report.CheckAgainstHeader(h, r.portions); err != nil {
		t.Fatalf("original portions: %v", err)
	}
}

func TestSignatureDomainSeparation(t *testing.T) {
	f := newFederation(t, "USA", "GBR")
	usa := f.node(t, "USA")
	r := seal(t, draft("USA", time.Now()), usa, f.trust)

	// A header payload signed as a hop (a hop signature replayed as a
	// header signature) does not open as a header.
	asHop, err := report.SignStatement(report.KindHop, r.v.Header, usa)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(asHop.GetPayload(), r.header.GetPayload()) {
		t.Fatalf("SignStatement is not deterministic: the payloads differ")
	}
	_, err = report.OpenHeader(asHop, f.trust)
	wantErr(t, "header signed as a hop", err, report.ErrSignature)

	// A real hop signature moved onto the header payload.
	hs := signHop(t, hop(r, "USA", "GBR", time.Now(), 1), usa)
	moved := proto.CloneOf(r.header)
	moved.Signature = hs.GetSignature()
	_, err = report.OpenHeader(moved, f.trust)
	wantErr(t, "hop signature on a header", err, report.ErrSignature)

	// And the other way: a hop payload signed as a header does not open as
	// a hop, though signed as a hop it does.
	hp := hop(r, "USA", "GBR", time.Now(), 1)
	asHeader, err := report.SignStatement(report.KindHeader, hp, usa)
	if err != nil {
		t.Fatal(err)
	}
	_, err = report.OpenHop(asHeader, r.v.Digest, r.v.Header.GetId(), f.trust)
	wantErr(t, "hop signed as a header", err, report.ErrSignature)
	if _, err := report.OpenHop(signHop(t, hp, usa), r.v.Digest, r.v.Header.GetId(), f.trust); err != nil {
		t.Errorf("the same hop signed as a hop: %v", err)
	}
}

func TestOpenHop(t *testing.T) {
	f := newFederation(t, "USA", "GBR", "CAN")
	usa, gbr := f.node(t, "USA"), f.node(t, "GBR")
	r := seal(t, draft("USA", time.Now()), usa, f.trust)
	other := seal(t, draft("USA", time.Now()), usa, f.trust)
	id, dg := r.v.Header.GetId(), r.v.Digest
	sent := time.Now()

	// Valid hops: originator to GBR, then GBR relaying to CAN.
	h1 := hop(r, "USA", "GBR", sent, 1, 3)
	vh, err := report.OpenHop(signHop(t, h1, usa), dg, id, f.trust)
	if err != nil {
		t.Fatalf("OpenHop(USA -> GBR): %v", err)
	}
	if vh.Signer != usa.Identity() || !proto.Equal(vh.Hop, h1) {
		t.Errorf("OpenHop = %s %v, want %s %v", vh.Signer, vh.Hop, usa.Identity(), h1)
	}
	h2 := hop(r, "GBR", "CAN", sent, 1)
	if vh, err := report.OpenHop(signHop(t, h2, gbr), dg, id, f.trust); err != nil || vh.Signer != gbr.Identity() {
		t.Errorf("OpenHop(GBR -> CAN) = %v, %v", vh, err)
	}

	rogueCA, err := pki.OpenDevCA(t.TempDir(), "USA")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		hop    func(h *reportv1.Hop)
		signer report.Signer
		want   error
	}{
		{"bound to another report id", func(h *reportv1.Hop) { h.ReportId = other.v.Header.GetId() }, usa, report.ErrInvalid},
		{"bound to another header digest", func(h *reportv1.Hop) { h.HeaderDigest = other.v.Digest }, usa, report.ErrInvalid},
		{"no header digest", func(h *reportv1.Hop) { h.HeaderDigest = nil }, usa, report.ErrInvalid},
		{"From is not the signer's party", func(h *reportv1.Hop) { h.From = "GBR" }, usa, report.ErrSignature},
		{"From USA signed by GBR", nil, gbr, report.ErrSignature},
		{"signed by a USA officer", nil, f.source(t, "USA", pki.KindOfficer, "alice"), report.ErrSignature},
		{"signed by an untrusted CA's node", nil, newSource(t, rogueCA, "USA", pki.KindNode, "n1"), report.ErrSignature},
		{"no portions", func(h *reportv1.Hop) { h.Portions = nil }, usa, report.ErrInvalid},
		{"too many portions", func(h *reportv1.Hop) {
			h.Portions = nil
			for i := range report.MaxPortions + 1 {
				h.Portions = append(h.Portions, &reportv1.PortionRelease{Index: uint32(i + 1)})
			}
		}, usa, report.ErrInvalid},
		{"a portion listed twice", func(h *reportv1.Hop) {
			h.Portions = append(h.Portions, &reportv1.PortionRelease{Index: 1, Basis: reportv1.Basis_BASIS_REL_TO})
		}, usa, report.ErrInvalid},
		{"portion index 0", func(h *reportv1.Hop) { h.Portions[0].Index = 0 }, usa, report.ErrInvalid},
		{"portion index past the limit", func(h *reportv1.Hop) { h.Portions[0].Index = report.MaxPortions + 1 }, usa, report.ErrInvalid},
		{"no sent time", func(h *reportv1.Hop) { h.Sent = nil }, usa, report.ErrInvalid},
		{"bad From", func(h *reportv1.Hop) { h.From = "u" }, usa, report.ErrInvalid},
		{"bad To", func(h *reportv1.Hop) { h.To = "" }, usa, report.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := proto.CloneOf(h1)
			if c.hop != nil {
				c.hop(h)
			}
			_, err := report.OpenHop(signHop(t, h, c.signer), dg, id, f.trust)
			wantErr(t, "OpenHop", err, c.want)
		})
	}

	// The hop's bytes and signature are covered.
	sd := signHop(t, h1, usa)
	for _, c := range []struct {
		name   string
		mutate func(*reportv1.Signed)
	}{
		{"signature flipped", func(sd *reportv1.Signed) { sd.Signature[5] ^= 1 }},
		{"no chain", func(sd *reportv1.Signed) { sd.CertChain = nil }},
		{"chain of GBR's node", func(sd *reportv1.Signed) { _, sd.CertChain = gbr.Sign(nil) }},
	} {
		s := proto.CloneOf(sd)
		c.mutate(s)
		_, err := report.OpenHop(s, dg, id, f.trust)
		wantErr(t, c.name, err, report.ErrSignature)
	}
	for i := range sd.GetPayload() {
		s := proto.CloneOf(sd)
		s.Payload[i] ^= 0x20
		_, err := report.OpenHop(s, dg, id, f.trust)
		wantErr(t, "hop payload byte "+strconv.Itoa(i)+" flipped", err, report.ErrInvalid, report.ErrSignature)
	}
	if _, err := report.OpenHop(nil, dg, id, f.trust); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("OpenHop(nil) = %v, want ErrInvalid", err)
	}
}

func TestSealLimits(t *testing.T) {
	f := newFederation(t, "USA")
	usa := f.node(t, "USA")
	now := time.Now()

	plain := func(title string, body []byte) *reportv1.Portion {
		return &reportv1.Portion{Marking: wireMarking("UNCLASSIFIED", nil, false, false), ContentType: "text/plain", Title: title, Body: body}
	}
	withPortions := func(ps ...*reportv1.Portion) report.Draft {
		d := draft("USA", now)
		d.Portions = ps
		return d
	}
	many := func(n int) report.Draft {
		var ps []*reportv1.Portion
		for i := range n {
			ps = append(ps, plain("", []byte{byte(i)}))
		}
		return withPortions(ps...)
	}
	half := report.MaxReportBytes / 2

	cases := []struct {
		name string
		d    report.Draft
		want error // nil: Seal succeeds and the header opens
	}{
		{"no portions", withPortions(), report.ErrInvalid},
		{"MaxPortions portions", many(report.MaxPortions), nil},
		{"MaxPortions+1 portions", many(report.MaxPortions + 1), report.ErrTooLarge},
		{"MaxReportBytes of body", withPortions(plain("", make([]byte, report.MaxReportBytes))), nil},
		{"MaxReportBytes+1 of body", withPortions(plain("", make([]byte, report.MaxReportBytes+1))), report.ErrTooLarge},
		{"bodies summing over MaxReportBytes", withPortions(plain("", make([]byte, half)), plain("", make([]byte, half+1))), report.ErrTooLarge},
		{"titles count towards MaxReportBytes", withPortions(plain("", make([]byte, half)), plain("t", make([]byte, half))), report.ErrTooLarge},
		{"MaxTitleBytes title", withPortions(plain(strings.Repeat("t", report.MaxTitleBytes), nil)), nil},
		{"MaxTitleBytes+1 title", withPortions(plain(strings.Repeat("t", report.MaxTitleBytes+1), nil)), report.ErrTooLarge},
		{"content type too long", withPortions(&reportv1.Portion{
			Marking: wireMarking("UNCLASSIFIED", nil, false, false), ContentType: strings.Repeat("x", report.MaxContentType+1),
		}), report.ErrInvalid},
		{"invalid marking", withPortions(&reportv1.Portion{Marking: wireMarking("secret", nil, false, false)}), report.ErrInvalid},
		{"no marking", withPortions(&reportv1.Portion{Body: []byte("x")}), report.ErrInvalid},
		{"too many marking topics", withPortions(&reportv1.Portion{Marking: wireMarking("SECRET", nil, false, false, topics(report.MaxTopics+1)...)}), report.ErrTooLarge},
		{"too many header topics", func() report.Draft { d := draft("USA", now); d.Topics = topics(report.MaxTopics + 1); return d }(), report.ErrTooLarge},
		{"invalid header topic", func() report.Draft { d := draft("USA", now); d.Topics = []string{"no spaces"}; return d }(), report.ErrInvalid},
		{"invalid originator", draft("United States", now), report.ErrInvalid},
		{"invalid route", func() report.Draft {
			d := draft("USA", now)
			d.Route = []*reportv1.RouteEntry{{Via: "GBR", To: "can"}}
			return d
		}(), report.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr, ps, err := report.Seal(c.d, usa)
			if c.want != nil {
				wantErr(t, "Seal", err, c.want)
				if hdr != nil || ps != nil {
					t.Errorf("Seal returned a header or portions with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			v, err := report.OpenHeader(hdr, f.trust)
			if err != nil {
				t.Fatalf("OpenHeader: %v", err)
			}
			if err := report.CheckAgainstHeader(v.Header, ps); err != nil {
				t.Fatalf("CheckAgainstHeader: %v", err)
			}
		})
	}
}

// topics returns n distinct valid topics.
func topics(n int) []string {
	var ts []string
	for i := range n {
		ts = append(ts, "t"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	return ts
}

func TestDigest(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, report.SaltSize)
	base := &reportv1.Portion{
		Index:       1,
		Marking:     wireMarking("SECRET", []string{"GBR", "USA"}, false, false, "cyber"),
		ContentType: "text/plain",
		Title:       "ab",
		Body:        []byte("c"),
		Salt:        salt,
	}
	digest := func(p *reportv1.Portion) []byte {
		t.Helper()
		d, err := report.Digest(p)
		if err != nil {
			t.Fatalf("Digest: %v", err)
		}
		if len(d) != sha256.Size {
			t.Fatalf("digest is %d bytes", len(d))
		}
		return d
	}
	d0 := digest(base)
	if !bytes.Equal(d0, digest(proto.CloneOf(base))) {
		t.Fatalf("Digest is not deterministic")
	}

	variants := map[string]func(p *reportv1.Portion){
		"other salt":               func(p *reportv1.Portion) { p.Salt = bytes.Repeat([]byte{8}, report.SaltSize) },
		"title/body boundary":      func(p *reportv1.Portion) { p.Title, p.Body = "a", []byte("bc") },
		"all in the title":         func(p *reportv1.Portion) { p.Title, p.Body = "abc", nil },
		"all in the body":          func(p *reportv1.Portion) { p.Title, p.Body = "", []byte("abc") },
		"content type/title":       func(p *reportv1.Portion) { p.ContentType, p.Title = "text/plaina", "b" },
		"other classification":     func(p *reportv1.Portion) { p.Marking.Classification = "CONFIDENTIAL" },
		"other REL TO":             func(p *reportv1.Portion) { p.Marking.RelTo = []string{"USA"} },
		"ORCON":                    func(p *reportv1.Portion) { p.Marking.Orcon = true },
		"other topic":              func(p *reportv1.Portion) { p.Marking.Topics = []string{"flood"} },
		"two topics":               func(p *reportv1.Portion) { p.Marking.Topics = []string{"cyber", "flood"} },
		"NOFORN without REL TO":    func(p *reportv1.Portion) { p.Marking.RelTo, p.Marking.Noforn = nil, true },
		"no REL TO and no NOFORN":  func(p *reportv1.Portion) { p.Marking.RelTo = nil },
		"body with a trailing NUL": func(p *reportv1.Portion) { p.Body = []byte("c\x00") },
	}
	seen := map[string]string{string(d0): "base"}
	for name, mutate := range variants {
		p := proto.CloneOf(base)
		mutate(p)
		d := digest(p)
		if prev, ok := seen[string(d)]; ok {
			t.Errorf("%s has the same digest as %s", name, prev)
		}
		seen[string(d)] = name
	}

	if _, err := report.Digest(&reportv1.Portion{Body: []byte("x")}); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("Digest without a marking = %v, want ErrInvalid", err)
	}
}

func TestMarkingRoundTrip(t *testing.T) {
	pm := wireMarking("SECRET", []string{"CAN", "GBR"}, false, true, "cyber", "flood")
	m, err := report.MarkingFromProto(pm)
	if err != nil {
		t.Fatal(err)
	}
	if m.Banner() != "SECRET//REL TO CAN, GBR//ORCON" {
		t.Errorf("banner = %q", m.Banner())
	}
	back := report.MarkingToProto(m)
	if !proto.Equal(back, pm) {
		t.Errorf("MarkingToProto(MarkingFromProto(m)) = %v, want %v", back, pm)
	}
	// The wire copy does not share slices with the marking.
	back.RelTo[0] = "AUS"
	if m.RelTo[0] != "CAN" {
		t.Errorf("MarkingToProto shares the REL TO slice")
	}
}

// A wire marking may name no more parties than a banner can: the longest
// banner Parse accepts converts, a REL TO past MaxRelTo is too large.
func TestMarkingRelToLimit(t *testing.T) {
	var codes []string
	banner := "SECRET//REL TO "
	for i := 0; ; i++ {
		c := string(rune('A'+i/26%26)) + string(rune('A'+i%26))
		if len(banner)+len(c)+1 > marking.MaxBannerLen {
			break
		}
		if len(codes) > 0 {
			banner += ","
		}
		banner += c
		codes = append(codes, c)
	}
	m, err := marking.Parse(banner)
	if err != nil {
		t.Fatalf("Parse of a %d-byte banner naming %d parties: %v", len(banner), len(codes), err)
	}
	if _, err := report.MarkingFromProto(report.MarkingToProto(m)); err != nil {
		t.Errorf("the longest REL TO a banner can name (%d parties) is refused: %v", len(m.RelTo), err)
	}
	pm := wireMarking("SECRET", nil, false, false)
	for i := range report.MaxRelTo + 1 {
		pm.RelTo = append(pm.RelTo, fmt.Sprintf("P%04d", i))
	}
	if _, err := report.MarkingFromProto(pm); !errors.Is(err, report.ErrTooLarge) {
		t.Errorf("REL TO of %d parties: %v, want ErrTooLarge", len(pm.RelTo), err)
	}
}

// TestSignaturesSurviveRotation signs a header and a hop with a node's
// certificate, lets the node's certificate source renew it (the old one
// then expires), and checks that the old statements still verify: each
// carries the chain it was signed with and is checked at its own time.
func TestSignaturesSurviveRotation(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	ca, err := pki.OpenDevCA(t.TempDir(), "USA", pki.WithDevCAClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	gbrFed := newFederation(t, "GBR")
	trust := gbrFed.trust
	trust.Set("USA", []*x509.Certificate{ca.Certificate()})
	src := newSource(t, ca, "USA", pki.KindNode, "n1",
		pki.WithClock(clock.Now), pki.WithCheckInterval(time.Millisecond), pki.WithJitter(0))

	t0 := clock.Now()
	before := seal(t, draft("USA", t0), src, trust)
	hopBefore := signHop(t, hop(before, "USA", "GBR", t0, 1), src)
	oldIssued := src.Current()
	oldLeaf := oldIssued.Leaf()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = src.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	// Two hours later the one-hour certificate has long been renewed.
	clock.Add(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for src.Current().Leaf().Equal(oldLeaf) {
		if time.Now().After(deadline) {
			t.Fatal("the certificate source did not renew")
		}
		time.Sleep(time.Millisecond)
	}
	t1 := clock.Now()
	if !t1.After(oldLeaf.NotAfter) {
		t.Fatalf("test setup: old certificate still valid at %s", t1)
	}
	after := seal(t, draft("USA", t1), src, trust)
	if bytes.Equal(after.header.GetCertChain()[0], before.header.GetCertChain()[0]) {
		t.Fatalf("the header signed after rotation carries the old certificate")
	}

	// The old statements verify after the rotation.
	v, err := report.OpenHeader(before.header, trust)
	if err != nil {
		t.Fatalf("header signed before rotation: %v", err)
	}
	if v.Signer != src.Identity() {
		t.Errorf("signer = %s", v.Signer)
	}
	if err := report.CheckAgainstHeader(v.Header, before.portions); err != nil {
		t.Errorf("portions of the header signed before rotation: %v", err)
	}
	if _, err := report.OpenHop(hopBefore, before.v.Digest, before.v.Header.GetId(), trust); err != nil {
		t.Errorf("hop signed before rotation: %v", err)
	}
	// Each statement is checked with the chain it carries: another
	// certificate of the same node does not verify it.
	swapped := proto.CloneOf(before.header)
	swapped.CertChain = after.header.GetCertChain()
	_, err = report.OpenHeader(swapped, trust)
	wantErr(t, "new chain on the old header", err, report.ErrSignature)

	// The chain is checked at the statement's own time: the old key, now
	// expired, cannot sign a new statement.
	stale, err := pki.StaticCertSource(oldIssued)
	if err != nil {
		t.Fatal(err)
	}
	staleHdr, _, err := report.Seal(draft("USA", t1), stale)
	if err != nil {
		t.Fatal(err)
	}
	_, err = report.OpenHeader(staleHdr, trust)
	wantErr(t, "header signed at t1 with the certificate that expired at t0+1h", err, report.ErrSignature)
	if !errors.Is(err, pki.ErrUntrusted) {
		t.Errorf("stale signer refused for another reason than its chain: %v", err)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
