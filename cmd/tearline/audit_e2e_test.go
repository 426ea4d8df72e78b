package main

// End-to-end test of the audit log with real node processes: a share, a
// consent, a denial, deliveries and a withdrawal, told back by provenance
// and who-saw; an export checked offline; a rewritten log caught by a
// partner.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/internal/audittamper"
	"github.com/tearline/tearline/pki"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

type timelineStep struct {
	What    string `json:"what"`
	Party   string `json:"party"`
	Subject string `json:"subject"`
	Signer  string `json:"signer"`
	Basis   []struct {
		Index int    `json:"index"`
		Basis string `json:"basis"`
	} `json:"basis"`
	Denied []struct {
		Index int    `json:"index"`
		Rule  string `json:"rule"`
	} `json:"denied"`
	Portions []int `json:"portions"`
}

func (s timelineStep) bases() string {
	var out []string
	for _, b := range s.Basis {
		out = append(out, strings.Join([]string{itoa(b.Index), b.Basis}, ":"))
	}
	for _, d := range s.Denied {
		out = append(out, itoa(d.Index)+":denied:"+d.Rule)
	}
	return strings.Join(out, " ")
}

func itoa(n int) string { return strconv.Itoa(n) }

type whoSaw struct {
	Portions []struct {
		Index      int `json:"index"`
		Recipients []struct {
			Kind         string  `json:"kind"`
			Name         string  `json:"name"`
			Basis        string  `json:"basis"`
			Via          *string `json:"via"`
			Acknowledged *string `json:"acknowledged"`
		} `json:"recipients"`
	} `json:"portions"`
}

// recipients renders who-saw as "portion: kind name basis [via]" lines, sorted.
func (w whoSaw) lines() []string {
	var out []string
	for _, p := range w.Portions {
		for _, r := range p.Recipients {
			l := itoa(p.Index) + ": " + r.Kind + " " + r.Name
			if r.Basis != "" {
				l += " " + r.Basis
			}
			if r.Via != nil {
				l += " via " + *r.Via
			}
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

type verifyJSON struct {
	OK       bool    `json:"ok"`
	Entries  uint64  `json:"entries"`
	FirstBad *uint64 `json:"first_bad"`
	Reason   string  `json:"reason"`
	Checks   uint64  `json:"checkpoints"`
	Mismatch *uint64 `json:"mismatch_checkpoint"`
}

func TestE2EAuditScenario(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	// USA checkpoints every second, so that GBR holds its evidence.
	cfg := filepath.Join(f.dir, "USA", "node.yaml")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(data, []byte("audit:\n  checkpoint_interval: 1s\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	f.startAll("USA", "GBR", "CAN")
	secrets := []string{"P1-BODY", "P2-BODY"}
	id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "CT", "--body", "P1-BODY",
		"--portion", "UNCLASSIFIED//REL TO USA, GBR, CAN=P2-BODY")
	f.waitHolds("GBR", id)

	// Deliveries: GBR's analyst receives both portions.
	out := f.mustCLI("GBR", "--profile", filepath.Join(f.dir, "GBR", "analyst"), "subscribe", "--json", "--count", "1")
	if !strings.Contains(out, id) || !strings.Contains(out, "P1-BODY") || !strings.Contains(out, "P2-BODY") {
		t.Fatalf("analyst's delivery: %s", out)
	}
	// A share (the non-ORCON portion inside REL TO) and a denial (the ORCON one).
	f.mustCLI("GBR", "share", id, "--to", "CAN", "--portions", "2")
	if e := f.denied("GBR", secrets, "share", id, "--to", "CAN", "--portions", "1"); e.Reason != "third-party-rule" {
		t.Fatalf("ORCON share: %+v", e)
	}
	// A consent, and the share it allows.
	var req struct {
		ID string `json:"id"`
	}
	f.jsonCLI(&req, "GBR", "consent", "request", id, "--to", "CAN", "--purpose", "joint operation", "--portions", "1")
	eventually(t, 15*time.Second, "USA to see the request", func() bool { return f.consentState("USA", req.ID) == "pending" })
	f.mustCLI("USA", "consent", "approve", req.ID, "--ttl", "1h")
	eventually(t, 15*time.Second, "GBR to get the grant", func() bool { return f.consentState("GBR", req.ID) == "approved" })
	f.mustCLI("GBR", "share", id, "--to", "CAN", "--portions", "1")
	eventually(t, 15*time.Second, "CAN to hold portion 1", func() bool {
		s := f.show("CAN", id)
		return len(s.Portions) == 2 && !s.Portions[0].Withheld
	})
	// Who saw it at GBR: exactly the analyst and CAN, each portion on its basis.
	analyst := "spiffe://gbr.tearline.test/party/GBR/svc/analyst"
	want := []string{
		"1: partner CAN consent:" + req.ID,
		"1: subscriber " + analyst,
		"2: partner CAN rel-to",
		"2: subscriber " + analyst,
	}
	var ws whoSaw
	eventually(t, 15*time.Second, "GBR's who-saw to list CAN's acknowledgements", func() bool {
		f.jsonCLI(&ws, "GBR", "audit", "who-saw", id)
		return slices.Equal(ws.lines(), want)
	})
	// The withdrawal.
	f.mustCLI("USA", "withdraw", id, "--reason", "source compromised")
	eventually(t, 15*time.Second, "GBR to apply the withdrawal", func() bool {
		var s struct {
			Withdrawn any `json:"withdrawn"`
		}
		f.jsonCLI(&s, "GBR", "show", id)
		return s.Withdrawn != nil
	})
	// who-saw is unchanged by the withdrawal (passed on to CAN, not a delivery).
	eventually(t, 15*time.Second, "CAN to acknowledge the withdrawal to GBR", func() bool {
		var prov struct {
			Events []struct{ Kind, Party, Detail string } `json:"events"`
		}
		f.jsonCLI(&prov, "GBR", "provenance", id)
		for _, e := range prov.Events {
			if e.Kind == "acknowledged" && e.Party == "CAN" && strings.HasPrefix(e.Detail, "withdrawal") {
				return true
			}
		}
		return false
	})
	f.jsonCLI(&ws, "GBR", "audit", "who-saw", id)
	if got := ws.lines(); !slices.Equal(got, want) {
		t.Fatalf("GBR's who-saw after the withdrawal:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// provenance --json at GBR lists every one of those events with its basis.
	var prov struct {
		Timeline []timelineStep `json:"timeline"`
	}
	f.jsonCLI(&prov, "GBR", "provenance", id)
	var steps []string
	for _, s := range prov.Timeline {
		line := s.What + " " + s.Party
		if s.What == "delivered" {
			line += " " + s.Subject + " " + strings.Trim(strings.Join(strings.Fields(jsonNumList(s.Portions)), ","), "[]")
		}
		if b := s.bases(); b != "" {
			line += " " + b
		}
		if s.What == "originated" || s.What == "hop" {
			line += " signed by " + s.Signer
		}
		steps = append(steps, line)
	}
	wantSteps := []string{
		"originated USA signed by spiffe://usa.tearline.test/party/USA/node/usa",
		"hop USA -> GBR 1:origin 2:origin signed by spiffe://usa.tearline.test/party/USA/node/usa",
		"received USA",
		"delivered  " + analyst + " 1,2",
		"released CAN 2:rel-to",
		"refused CAN 1:denied:third-party-rule",
		"consent-requested CAN",
		"consent-approved USA",
		"released CAN 1:consent:" + req.ID,
		"withdrawn USA",
	}
	for _, w := range wantSteps {
		if !slices.Contains(steps, w) {
			t.Errorf("GBR's provenance timeline lacks %q:\n%s", w, strings.Join(steps, "\n"))
		}
	}
	// At USA, the originator: GBR on origin, CAN on origin for portion 2 and
	// through GBR on USA's consent for portion 1.
	eventually(t, 15*time.Second, "USA's who-saw", func() bool {
		f.jsonCLI(&ws, "USA", "audit", "who-saw", id)
		return slices.Equal(ws.lines(), []string{
			"1: partner CAN consent:" + req.ID + " via GBR",
			"1: partner GBR origin",
			"2: partner CAN origin",
			"2: partner GBR origin",
		})
	})

	// Every node's log verifies; GBR's export verifies offline and fails
	// once edited.
	for _, p := range []string{"USA", "GBR", "CAN"} {
		var v verifyJSON
		f.jsonCLI(&v, p, "audit", "verify")
		if !v.OK || v.FirstBad != nil || v.Entries == 0 {
			t.Fatalf("%s's audit verify: %+v", p, v)
		}
	}
	export := f.mustCLI("GBR", "audit", "export", "--since", "1h")
	file := filepath.Join(t.TempDir(), "gbr-audit.jsonl")
	if err := os.WriteFile(file, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(f.dir, "GBR", "ca", "bundle.pem")
	var v verifyJSON
	f.jsonCLI(&v, "GBR", "audit", "verify", "--file", file, "--ca", ca)
	if !v.OK || v.Entries < 10 {
		t.Fatalf("offline verify of GBR's export: %+v", v)
	}
	edited := strings.Replace(export, `"kind":"refused"`, `"kind":"released"`, 1)
	if edited == export {
		t.Fatal("the export has no refusal")
	}
	if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := f.cli("GBR", "--json", "audit", "verify", "--file", file, "--ca", ca)
	if err == nil || json.Unmarshal([]byte(stdout), &v) != nil || v.OK || v.FirstBad == nil {
		t.Fatalf("offline verify of an edited export: %v %s", err, stdout)
	}
	// The summary: counts, no ids.
	var sum struct {
		Partners []struct {
			Party               string            `json:"party"`
			ReportsReleased     uint64            `json:"reports_released"`
			ReportsDenied       uint64            `json:"reports_denied"`
			DenialsByRule       map[string]uint64 `json:"denials_by_rule"`
			ReportsReceived     uint64            `json:"reports_received"`
			Asked               uint64            `json:"consents_asked"`
			Granted             uint64            `json:"consents_granted"`
			WithdrawalsReceived uint64            `json:"withdrawals_received"`
		} `json:"partners"`
	}
	sumOut := f.mustCLI("GBR", "--json", "audit", "summary", "--period", "30d")
	if strings.Contains(sumOut, id) || strings.Contains(sumOut, req.ID) {
		t.Fatalf("the summary names ids: %s", sumOut)
	}
	if err := json.Unmarshal([]byte(sumOut), &sum); err != nil || len(sum.Partners) != 2 {
		t.Fatalf("summary: %v %s", err, sumOut)
	}
	can, usa := sum.Partners[0], sum.Partners[1]
	if can.Party != "CAN" || can.ReportsReleased != 2 || can.ReportsDenied != 1 || can.DenialsByRule["third-party-rule"] != 1 {
		t.Errorf("GBR's summary for CAN: %s", sumOut)
	}
	if usa.Party != "USA" || usa.ReportsReceived != 1 || usa.Asked != 1 || usa.Granted != 1 || usa.WithdrawalsReceived != 1 {
		t.Errorf("GBR's summary for USA: %s", sumOut)
	}

	// GBR holds USA's checkpoints: they match now. Each export records
	// itself and signs a checkpoint that covers it, sent to GBR: two of
	// them, whether or not USA's one-second timer has signed any yet (the
	// steps above can take less than a second).
	f.mustCLI("USA", "audit", "export")
	usaExport := f.mustCLI("USA", "audit", "export")
	// That export verifies; cut after the checkpoint the first export
	// signed (a periodic checkpoint, as far as the file tells), with its
	// header's last_seq edited to match, it does not.
	usaFile := filepath.Join(t.TempDir(), "usa-audit.jsonl")
	usaCA := filepath.Join(f.dir, "USA", "ca", "bundle.pem")
	if err := os.WriteFile(usaFile, []byte(usaExport), 0o600); err != nil {
		t.Fatal(err)
	}
	f.jsonCLI(&v, "USA", "audit", "verify", "--file", usaFile, "--ca", usaCA)
	if !v.OK {
		t.Fatalf("offline verify of USA's export: %+v", v)
	}
	lines := strings.Split(strings.TrimSuffix(usaExport, "\n"), "\n")
	var header struct {
		LastSeq uint64 `json:"last_seq"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &header); err != nil {
		t.Fatal(err)
	}
	cut := -1
	var cutSeq uint64
	for i, l := range lines {
		var cp struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
		}
		if json.Unmarshal([]byte(l), &cp) == nil && cp.Type == "checkpoint" && cp.Seq < header.LastSeq {
			cut, cutSeq = i, cp.Seq
		}
	}
	if cut < 0 {
		t.Fatalf("USA's second export holds no checkpoint before its last entry:\n%s", usaExport)
	}
	lines[0] = strings.Replace(lines[0], `"last_seq":`+strconv.FormatUint(header.LastSeq, 10), `"last_seq":`+strconv.FormatUint(cutSeq, 10), 1)
	if err := os.WriteFile(usaFile, []byte(strings.Join(lines[:cut+1], "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = f.cli("USA", "--json", "audit", "verify", "--file", usaFile, "--ca", usaCA)
	if err == nil || json.Unmarshal([]byte(stdout), &v) != nil || v.OK || v.FirstBad == nil || *v.FirstBad != cutSeq+1 ||
		!strings.Contains(v.Reason, "no signed export end: it may have been cut") {
		t.Fatalf("offline verify of USA's export cut after entry %d: %v %s", cutSeq, err, stdout)
	}
	var pv verifyJSON
	eventually(t, 15*time.Second, "GBR to hold USA's checkpoints", func() bool {
		f.jsonCLI(&pv, "GBR", "audit", "verify", "--against", "USA")
		return pv.OK && pv.Checks >= 2
	})
	// An attacker with USA's files rewrites entry 3 with a consistent
	// chain and re-signed checkpoints.
	f.stop("USA")
	ca2, err := pki.OpenDevCA(filepath.Join(f.dir, "USA", "ca"), "USA")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := pki.NewIdentity("USA", pki.KindNode, "usa")
	forged, err := pki.NewCertSource(ca2, uid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	err = audittamper.Rewrite(filepath.Join(f.dir, "USA", "data", "tearline.db"), 3, func(e *storev1.AuditEntry) {
		e.Detail = "nothing to see here"
	}, forged)
	if err != nil {
		t.Fatal(err)
	}
	f.start("USA")
	f.jsonCLI(&v, "USA", "audit", "verify")
	if !v.OK {
		t.Fatalf("USA's own verify of the consistently rewritten log: %+v (it passes: only a partner's evidence can tell)", v)
	}
	stdout, _, err = f.cli("GBR", "--json", "audit", "verify", "--against", "USA")
	if err == nil || json.Unmarshal([]byte(stdout), &pv) != nil || pv.OK || pv.FirstBad == nil || *pv.FirstBad > 3 || pv.Mismatch == nil || *pv.Mismatch < 3 {
		t.Fatalf("GBR's verify --against USA after the rewrite: %v %s", err, stdout)
	}
	var events []struct{ Kind, Partner string }
	f.jsonCLI(&events, "GBR", "events")
	found := false
	for _, e := range events {
		found = found || (e.Kind == "partner-audit-mismatch" && e.Partner == "USA")
	}
	if !found {
		t.Fatalf("GBR's security events lack the mismatch: %+v", events)
	}
}

func jsonNumList(ns []int) string { b, _ := json.Marshal(ns); return string(b) }
