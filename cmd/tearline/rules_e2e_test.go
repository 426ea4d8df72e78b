package main

// End-to-end tests of the release rules (DESIGN §3) with real node
// processes: the third-party rule, consent, REL TO, NOFORN, relay, a
// cheating peer, subscribers, agreements and crisis sharing.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

type cliErr struct {
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Next    string `json:"next"`
}

// denied runs a CLI command that must fail and returns its JSON error. It
// checks what every denial must have: a rule id, a sentence, and none of
// the secret strings.
func (f *federation) denied(party string, secrets []string, args ...string) cliErr {
	f.t.Helper()
	out, _, err := f.cli(party, append([]string{"--json"}, args...)...)
	if err == nil {
		f.t.Fatalf("tearline %s as %s succeeded, want a denial: %s", strings.Join(args, " "), party, out)
	}
	var e struct {
		Error cliErr `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		f.t.Fatalf("decode %q: %v", out, err)
	}
	if e.Error.Reason == "" || len(e.Error.Message) < 20 {
		f.t.Fatalf("denial without a rule id or sentence: %+v", e.Error)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			f.t.Fatalf("denial leaks portion content %q: %s", s, out)
		}
	}
	return e.Error
}

type hopJSON struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Portions []struct {
		Index int    `json:"index"`
		Basis string `json:"basis"`
	} `json:"portions"`
}

type fullShow struct {
	showJSON
	Hops []hopJSON `json:"hops"`
}

func (f *federation) show(party, id string) fullShow {
	f.t.Helper()
	var s fullShow
	f.jsonCLI(&s, party, "show", id)
	return s
}

func (f *federation) waitHolds(party, id string) {
	f.t.Helper()
	eventually(f.t, 20*time.Second, party+" to hold "+id, func() bool {
		_, _, err := f.cli(party, "show", id)
		return err == nil
	})
}

func hasHop(s fullShow, from, to string, index int, basisPrefix string) bool {
	for _, h := range s.Hops {
		if h.From != from || h.To != to {
			continue
		}
		for _, p := range h.Portions {
			if p.Index == index && strings.HasPrefix(p.Basis, basisPrefix) {
				return true
			}
		}
	}
	return false
}

func publishID(f *federation, party string, args ...string) string {
	f.t.Helper()
	var pub struct {
		ID string `json:"id"`
	}
	f.jsonCLI(&pub, party, append([]string{"publish"}, args...)...)
	return pub.ID
}

// (a) third-party rule, (b) consent and its expiry, (c) REL TO re-share,
// (d) NOFORN never leaves USA.
func TestE2EThirdPartyConsentRelToNoforn(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	secrets := []string{"ORCON-BODY", "RELTO-BODY", "NOFORN-BODY", "NONORCON-BODY"}
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "CT", "--body", "ORCON-BODY",
		"--portion", "UNCLASSIFIED//REL TO USA, GBR, CAN=RELTO-BODY",
		"--portion", "CONFIDENTIAL//NOFORN=NOFORN-BODY",
		"--portion", "SECRET//REL TO USA, GBR=NONORCON-BODY")
	f.waitHolds("GBR", id)
	f.waitHolds("CAN", id)

	// (d) NOFORN: neither partner got portion 3, and no one can send it.
	for _, p := range []string{"GBR", "CAN"} {
		s := f.show(p, id)
		if !s.Portions[2].Withheld {
			t.Fatalf("%s holds the NOFORN portion", p)
		}
	}
	for _, to := range []string{"GBR", "CAN"} {
		if e := f.denied("USA", nil, "share", id, "--to", to, "--portions", "3"); e.Reason != "noforn" {
			t.Errorf("USA sharing NOFORN to %s: reason %q, want noforn", to, e.Reason)
		}
	}

	// (a) GBR may not pass the ORCON portion to CAN.
	e := f.denied("GBR", secrets, "share", id, "--to", "CAN", "--portions", "1")
	if e.Reason != "third-party-rule" || !strings.Contains(e.Next, "consent request") || e.Code != "FailedPrecondition" {
		t.Fatalf("ORCON share: %+v", e)
	}

	// (c) the non-ORCON portion inside REL TO goes; outside REL TO it does not.
	f.mustCLI("GBR", "share", id, "--to", "CAN", "--portions", "2")
	if e := f.denied("GBR", secrets, "share", id, "--to", "CAN", "--portions", "4"); e.Reason != "rel-to" {
		t.Fatalf("non-ORCON outside REL TO: %+v", e)
	}
	eventually(t, 10*time.Second, "CAN to get GBR's rel-to hop", func() bool { return hasHop(f.show("CAN", id), "GBR", "CAN", 2, "rel-to") })

	// (b) consent: request, approve with a short TTL, share, verify, expire.
	var req struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	f.jsonCLI(&req, "GBR", "consent", "request", id, "--to", "CAN", "--purpose", "joint operation", "--portions", "1")
	var incoming []struct {
		ID, State, Direction, Holder, To string
	}
	eventually(t, 10*time.Second, "USA to see the request", func() bool {
		f.jsonCLI(&incoming, "USA", "consent", "list")
		return len(incoming) == 1 && incoming[0].ID == req.ID && incoming[0].State == "pending"
	})
	if incoming[0].Direction != "incoming" || incoming[0].Holder != "GBR" || incoming[0].To != "CAN" {
		t.Fatalf("USA's view of the request: %+v", incoming[0])
	}
	f.mustCLI("USA", "consent", "approve", req.ID, "--ttl", "8s")
	eventually(t, 10*time.Second, "GBR to get the grant", func() bool {
		var cs []struct{ ID, State string }
		f.jsonCLI(&cs, "GBR", "consent", "list")
		return len(cs) == 1 && cs[0].State == "approved"
	})
	approvedAt := time.Now()
	var share struct {
		Decisions []struct {
			Allowed bool
			Rule    string
		}
	}
	f.jsonCLI(&share, "GBR", "share", id, "--to", "CAN", "--portions", "1")
	if len(share.Decisions) != 1 || !share.Decisions[0].Allowed || share.Decisions[0].Rule != "consent" {
		t.Fatalf("share with consent: %+v", share)
	}
	eventually(t, 10*time.Second, "CAN to receive portion 1 under consent", func() bool {
		s := f.show("CAN", id)
		return !s.Portions[0].Withheld && s.Portions[0].Verified && hasHop(s, "GBR", "CAN", 1, "consent:"+req.ID)
	})
	// After the grant expires a new share is denied.
	time.Sleep(time.Until(approvedAt.Add(9 * time.Second)))
	if e := f.denied("GBR", secrets, "share", id, "--to", "CAN", "--portions", "1"); e.Reason != "third-party-rule" || !strings.Contains(e.Message, "expired") {
		t.Fatalf("share after expiry: %+v", e)
	}
	// A withdrawn grant allows nothing either.
	var req2 struct {
		ID string `json:"id"`
	}
	f.jsonCLI(&req2, "GBR", "consent", "request", id, "--to", "CAN", "--purpose", "second look", "--portions", "1")
	eventually(t, 10*time.Second, "USA to see the second request", func() bool { return f.consentState("USA", req2.ID) == "pending" })
	f.mustCLI("USA", "consent", "approve", req2.ID, "--ttl", "1h")
	eventually(t, 10*time.Second, "GBR to get the second grant", func() bool { return f.consentState("GBR", req2.ID) == "approved" })
	f.mustCLI("USA", "consent", "withdraw", req2.ID, "--reason", "source at risk")
	eventually(t, 10*time.Second, "GBR to learn of the withdrawal", func() bool { return f.consentState("GBR", req2.ID) == "withdrawn" })
	if e := f.denied("GBR", secrets, "share", id, "--to", "CAN", "--portions", "1"); e.Reason != "third-party-rule" {
		t.Fatalf("share after withdrawal: %+v", e)
	}
	// The originator's provenance shows the onward release under its consent.
	var prov struct {
		Events []struct{ Kind, Party, Detail string } `json:"events"`
	}
	eventually(t, 10*time.Second, "USA's provenance to show GBR's onward release", func() bool {
		f.jsonCLI(&prov, "USA", "provenance", id)
		for _, e := range prov.Events {
			if e.Kind == "onward-release" && e.Party == "CAN" && strings.Contains(e.Detail, "consent:"+req.ID) {
				return true
			}
		}
		return false
	})
}

// (e) relay: USA names GBR as relay to CAN; GBR forwards on receipt without
// consent; without a route, GBR may not forward an ORCON portion.
func TestE2ERelay(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	routed := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN//ORCON", "--body", "ROUTED-BODY", "--to", "CAN", "--via", "GBR")
	f.waitHolds("CAN", routed)
	s := f.show("CAN", routed)
	if !hasHop(s, "GBR", "CAN", 1, "relay") || hasHop(s, "USA", "CAN", 1, "") || !s.SignatureVerified || !s.Portions[0].Verified {
		t.Fatalf("CAN's view of the routed report: %+v", s)
	}
	if s.Portions[0].Body != "ROUTED-BODY" {
		t.Fatalf("CAN got %q", s.Portions[0].Body)
	}
	// No route: USA sends to CAN itself, and GBR may not forward the ORCON portion.
	plain := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN//ORCON", "--body", "PLAIN-BODY")
	f.waitHolds("GBR", plain)
	if e := f.denied("GBR", []string{"PLAIN-BODY"}, "share", plain, "--to", "CAN"); e.Reason != "third-party-rule" {
		t.Fatalf("forward without a route: %+v", e)
	}
	// A relay named for another destination does not cover CAN.
	other := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN//ORCON", "--body", "OTHER-BODY", "--to", "GBR", "--via", "CAN")
	f.waitHolds("GBR", other)
	if e := f.denied("GBR", []string{"OTHER-BODY"}, "share", other, "--to", "CAN"); e.Reason != "third-party-rule" {
		t.Fatalf("GBR forwarding a report routed via CAN: %+v", e)
	}
}

// (f) a cheating peer with GBR's real node certificate forwards without a
// basis, or alters a portion: CAN refuses, quarantines, and names GBR.
func TestE2ECheatingPeerRefused(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--body", "CHEAT-BODY")
	inRelTo := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN//ORCON", "--body", "ORCON-BODY")
	f.waitHolds("GBR", id)
	f.waitHolds("GBR", inRelTo)
	f.waitHolds("CAN", inRelTo)
	f.stop("GBR") // release GBR's store so the cheater can read what GBR holds

	st, err := store.Open(filepath.Join(f.dir, "GBR", "data", "tearline.db"))
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.Report(id)
	if err != nil {
		t.Fatal(err)
	}
	held2, err := st.Report(inRelTo)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.OpenDevCA(filepath.Join(f.dir, "GBR", "ca"), "GBR")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := pki.NewIdentity("GBR", pki.KindNode, "gbr")
	src, err := pki.NewCertSource(ca, gid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	trust := pki.NewTrust()
	for _, p := range []string{"USA", "GBR", "CAN"} {
		b, err := pki.ReadCertificatesFile(filepath.Join(f.dir, p, "ca", "bundle.pem"))
		if err != nil {
			t.Fatal(err)
		}
		trust.Set(p, b)
	}
	v, err := report.OpenHeader(held.GetEnvelope().GetHeader(), trust)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := report.OpenHeader(held2.GetEnvelope().GetHeader(), trust)
	if err != nil {
		t.Fatal(err)
	}
	hopFor := func(v *report.Verified, basis reportv1.Basis) *reportv1.Signed {
		sh, err := report.SignHop(&reportv1.Hop{
			ReportId: v.Header.GetId(), HeaderDigest: v.Digest, From: "GBR", To: "CAN", Sent: timestamppb.Now(),
			Portions: []*reportv1.PortionRelease{{Index: 1, Basis: basis}},
		}, src)
		if err != nil {
			t.Fatal(err)
		}
		return sh
	}
	// 1: laundering: forward to a party outside REL TO, claiming rel-to.
	launder := proto.CloneOf(held.GetEnvelope())
	launder.Hops = append(launder.Hops, hopFor(v, reportv1.Basis_BASIS_REL_TO))
	// 2: an altered portion.
	altered := proto.CloneOf(held.GetEnvelope())
	altered.Portions[0].Body = []byte("CHEAT-BODY, altered")
	altered.Hops = append(altered.Hops, hopFor(v, reportv1.Basis_BASIS_RELAY))
	// 3: CAN is in REL TO, but the portion is ORCON: a rel-to hop has no basis.
	noBasis := proto.CloneOf(held2.GetEnvelope())
	noBasis.Hops = append(noBasis.Hops, hopFor(v2, reportv1.Basis_BASIS_REL_TO))

	addr, err := readListen(filepath.Join(f.dir, "CAN", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := func(id pki.Identity) error { return nil }
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(src, trust, want, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := federationv1.NewFederationServiceClient(conn).Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, env := range []*reportv1.Envelope{launder, altered, noBasis} {
		if err := stream.Send(&federationv1.DeliverRequest{Seq: uint64(i + 1), Item: &federationv1.DeliverRequest_Envelope{Envelope: env}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOutcome() != federationv1.Outcome_OUTCOME_REJECTED {
			t.Fatalf("cheat %d: outcome %v, want rejected", i+1, resp.GetOutcome())
		}
		wantRule := []string{"third-party-rule", "bad-signature", "bad-chain"}[i]
		if resp.GetReason() != wantRule {
			t.Errorf("cheat %d: reason %q (%s), want %s", i+1, resp.GetReason(), resp.GetMessage(), wantRule)
		}
	}
	stream.CloseSend()
	var events []struct {
		Kind, Partner, Rule, Message string
		QuarantineSeq                uint64 `json:"quarantine_seq"`
	}
	f.jsonCLI(&events, "CAN", "events")
	if len(events) != 3 {
		t.Fatalf("CAN's security events: %+v", events)
	}
	for _, e := range events {
		if e.Partner != "GBR" || e.Kind != "rejected-envelope" || e.QuarantineSeq == 0 || e.Message == "" {
			t.Errorf("security event does not name GBR with evidence: %+v", e)
		}
	}
	if _, _, err := f.cli("CAN", "show", id); err == nil {
		t.Fatal("CAN stored the laundered report")
	}
}

func readListen(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "listen: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", os.ErrNotExist
}

// (g) a subscriber without the clearance or the need-to-know gets nothing
// it should not, and the withheld portion is recorded; (h) a partner whose
// agreement has expired gets nothing, with reason no-agreement.
func TestE2ESubscriberAndExpiredAgreement(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	// USA's agreement with CAN ended yesterday.
	cfgPath := filepath.Join(f.dir, "USA", "node.yaml")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	i := strings.Index(cfg, "party: CAN")
	j := strings.Index(cfg[i:], "valid_until: ")
	if i < 0 || j < 0 {
		t.Fatalf("unexpected dev config:\n%s", cfg)
	}
	j += i + len("valid_until: ")
	k := j + strings.Index(cfg[j:], "\n")
	yesterday := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	cfg = cfg[:j] + yesterday + cfg[k:]
	j = i + strings.Index(cfg[i:], "valid_from: ") + len("valid_from: ")
	k = j + strings.Index(cfg[j:], "\n")
	cfg = cfg[:j] + time.Now().AddDate(-1, 0, 0).UTC().Format(time.RFC3339) + cfg[k:]
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.startAll("USA", "GBR", "CAN")

	var ags []struct{ Partner, State string }
	f.jsonCLI(&ags, "USA", "agreements")
	states := map[string]string{}
	for _, a := range ags {
		states[a.Partner] = a.State
	}
	if states["CAN"] != "expired" || states["GBR"] != "active" {
		t.Fatalf("agreements: %+v", ags)
	}

	top := publishID(f, "USA", "--marking", "TOP SECRET//REL TO USA, GBR, CAN", "--topic", "CT", "--body", "TOPSECRET-BODY")
	fin := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN", "--topic", "FINANCE", "--body", "FINANCE-BODY")
	ok := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR, CAN", "--topic", "CT", "--body", "CT-BODY")
	f.waitHolds("GBR", ok)

	// (h) CAN got nothing; the refusal is recorded with no-agreement.
	if rows := f.reports("CAN"); len(rows) != 0 {
		t.Fatalf("CAN holds %d reports under an expired agreement", len(rows))
	}
	var prov struct {
		Events []struct {
			Kind, Party string
			Decisions   []struct{ Rule string }
		} `json:"events"`
	}
	f.jsonCLI(&prov, "USA", "provenance", ok)
	refused := false
	for _, e := range prov.Events {
		if e.Kind == "refused" && e.Party == "CAN" && len(e.Decisions) == 1 && e.Decisions[0].Rule == "no-agreement" {
			refused = true
		}
	}
	if !refused {
		t.Fatalf("USA's provenance has no no-agreement refusal for CAN: %+v", prov.Events)
	}
	if e := f.denied("USA", []string{"CT-BODY"}, "share", ok, "--to", "CAN"); e.Reason != "no-agreement" {
		t.Fatalf("share to CAN: %+v", e)
	}

	// (g) GBR's analyst (SECRET; CBRN, CT, CYBER) gets only the CT SECRET report.
	out := f.mustCLI("GBR", "--profile", filepath.Join(f.dir, "GBR", "analyst"), "subscribe", "--json", "--count", "1")
	var got struct {
		ID       string        `json:"id"`
		Portions []portionJSON `json:"portions"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if got.ID != ok || got.Portions[0].Body != "CT-BODY" {
		t.Fatalf("analyst's first delivery: %s", out)
	}
	for _, s := range []string{"TOPSECRET-BODY", "FINANCE-BODY"} {
		if strings.Contains(out, s) {
			t.Fatalf("analyst received %s", s)
		}
	}
	var dprov struct {
		Events []struct{ Kind, Subject string } `json:"events"`
	}
	delivered := 0
	countDelivered := func() int {
		f.jsonCLI(&dprov, "GBR", "provenance", ok)
		n := 0
		for _, e := range dprov.Events {
			if e.Kind == "delivered" && strings.HasSuffix(e.Subject, "/svc/analyst") {
				n++
			}
		}
		return n
	}
	// Delivery events are written just after the send.
	eventually(t, 10*time.Second, "the delivery to be recorded", func() bool { delivered = countDelivered(); return delivered > 0 })
	time.Sleep(300 * time.Millisecond)
	if delivered = countDelivered(); delivered != 1 {
		t.Fatalf("GBR's provenance records %d deliveries of %s to the analyst, want 1: %+v", delivered, ok, dprov.Events)
	}
	for id, rule := range map[string]string{top: "clearance", fin: "need-to-know"} {
		f.jsonCLI(&prov, "GBR", "provenance", id)
		found := false
		for _, e := range prov.Events {
			if e.Kind == "withheld" && len(e.Decisions) == 1 && e.Decisions[0].Rule == rule {
				found = true
			}
		}
		if !found {
			t.Errorf("GBR's provenance of %s has no withheld event with rule %s: %+v", id, rule, prov.Events)
		}
	}
}

// (i) during a crisis declaration USA's ORCON CT reports reach CAN via GBR
// without consent under basis crisis:<id>; after the end the share is
// denied again; the review lists exactly the releases made under it.
func TestE2ECrisis(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "CT", "--body", "CRISIS-BODY")
	other := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "FINANCE", "--body", "FIN-BODY")
	f.waitHolds("GBR", id)
	f.waitHolds("GBR", other)
	if e := f.denied("GBR", []string{"CRISIS-BODY"}, "share", id, "--to", "CAN"); e.Reason != "third-party-rule" {
		t.Fatalf("before the crisis: %+v", e)
	}
	var decl struct {
		ID     string   `json:"id"`
		SentTo []string `json:"sent_to"`
	}
	f.jsonCLI(&decl, "USA", "crisis", "declare", "--topics", "CT,CBRN", "--parties", "CAN", "--max", "SECRET", "--for", "48h", "--reason", "imminent threat")
	if strings.Join(decl.SentTo, ",") != "CAN,GBR" {
		t.Fatalf("declaration sent to %v, want CAN (named) and GBR (holder)", decl.SentTo)
	}
	waitCrisis := func(state string) {
		eventually(t, 10*time.Second, "GBR to see the crisis "+state, func() bool {
			var cs []struct{ ID, State string }
			f.jsonCLI(&cs, "GBR", "crisis", "list")
			return len(cs) == 1 && cs[0].ID == decl.ID && cs[0].State == state
		})
	}
	waitCrisis("active")
	f.mustCLI("GBR", "share", id, "--to", "CAN")
	eventually(t, 10*time.Second, "CAN to hold it under crisis", func() bool {
		_, _, err := f.cli("CAN", "show", id)
		return err == nil && hasHop(f.show("CAN", id), "GBR", "CAN", 1, "crisis:"+decl.ID)
	})
	// A FINANCE report is outside the declaration.
	if e := f.denied("GBR", []string{"FIN-BODY"}, "share", other, "--to", "CAN"); e.Reason != "third-party-rule" {
		t.Fatalf("share outside the declaration's topics: %+v", e)
	}
	f.mustCLI("USA", "crisis", "end", decl.ID)
	waitCrisis("ended")
	// The text list says when it ended, not only until when it was declared.
	if out := f.mustCLI("USA", "crisis", "list"); !strings.Contains(out, decl.ID) || !regexp.MustCompile(`ended \d{4}-\d\d-\d\dT[^ ]+ \(declared until `).MatchString(out) {
		t.Fatalf("crisis list after the end does not say when it ended:\n%s", out)
	}
	if e := f.denied("GBR", []string{"CRISIS-BODY"}, "share", id, "--to", "CAN"); e.Reason != "third-party-rule" {
		t.Fatalf("after the crisis: %+v", e)
	}
	var review struct {
		State    string `json:"state"`
		Releases []struct {
			Report  string `json:"report"`
			Portion int    `json:"portion"`
			From    string `json:"from"`
			To      string `json:"to"`
			When    string `json:"when"`
			Normal  struct {
				Allowed bool   `json:"allowed"`
				Rule    string `json:"rule"`
			} `json:"normal"`
		} `json:"releases"`
	}
	eventually(t, 10*time.Second, "the review to list GBR's release", func() bool {
		f.jsonCLI(&review, "USA", "crisis", "review", decl.ID)
		return len(review.Releases) > 0
	})
	if review.State != "ended" || len(review.Releases) != 1 {
		t.Fatalf("review: %+v", review)
	}
	r := review.Releases[0]
	if r.Report != id || r.Portion != 1 || r.From != "GBR" || r.To != "CAN" || r.When == "" || r.Normal.Allowed || r.Normal.Rule != "third-party-rule" {
		t.Fatalf("review release: %+v", r)
	}
}
