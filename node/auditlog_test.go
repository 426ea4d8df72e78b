package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/internal/audittamper"
	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

var officer = pki.Identity{Domain: "usa.tearline.test", Party: "USA", Kind: pki.KindOfficer, Name: "alice"}

func publishN(t *testing.T, n *Node, count int) []string {
	t.Helper()
	var ids []string
	for i := range count {
		id, _, err := n.Publish(context.Background(), officer, PublishInput{Portions: []NewPortion{
			{Banner: "SECRET//REL TO USA, GBR//ORCON", Body: []byte("body")},
			{Banner: "CONFIDENTIAL//NOFORN", Body: []byte("noforn")},
		}, Topics: []string{"CT"}})
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// export runs ExportAudit into JSON lines, as the CLI writes them.
func export(t *testing.T, n *Node, since time.Time) []byte {
	t.Helper()
	var b bytes.Buffer
	w := audit.NewExportWriter(&b)
	err := n.ExportAudit(context.Background(), officer, since, func(it ExportItem) error {
		switch {
		case it.Header != nil:
			return w.Header(*it.Header)
		case it.Checkpoint != nil:
			return w.Signed(it.Checkpoint)
		default:
			return w.Entry(it.Canonical)
		}
	})
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return b.Bytes()
}

// caOnly is a Verifier that knows only party's CA bundle.
func caOnly(t *testing.T, dir, party string) *pki.Trust {
	t.Helper()
	ca, err := pki.OpenDevCA(filepath.Join(dir, "ca-"+party), party)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ca.Bundle(context.Background())
	tr := pki.NewTrust()
	tr.Set(party, b)
	return tr
}

// The node records every decision and signs checkpoints; verify passes;
// an export verifies offline with only the party's CA bundle, and fails
// once edited: a changed field, a removed entry, two swapped entries, a
// removed final checkpoint.
func TestAuditCheckpointExportOffline(t *testing.T) {
	dir := t.TempDir()
	trust := pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR", "CAN"})
	start := time.Now()
	publishN(t, usa, 3)
	if _, err := usa.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := publishN(t, usa, 2)
	if _, err := usa.Share(context.Background(), officer, ids[0], "CAN", []uint32{1}); err == nil {
		t.Fatal("sharing an ORCON portion outside REL TO was allowed")
	}
	res, err := usa.VerifyAudit(context.Background(), officer)
	if err != nil || !res.OK || res.Checkpoints != 1 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	// Every release decision is an entry, allow and deny, with its rule.
	rules := map[string]int{}
	usa.Store().AuditEntries(1, func(e *storev1.AuditEntry, _ []byte) error {
		for _, d := range e.GetDecisions() {
			rules[e.GetKind()+"/"+d.GetRule()]++
		}
		return nil
	})
	if rules["released/origin"] != 5 || rules["released/noforn"] != 5 || rules["refused/noforn"] != 5 || rules["refused/rel-to"] != 6 {
		t.Fatalf("decisions audited: %v", rules)
	}

	file := export(t, usa, start)
	offline := caOnly(t, dir, "USA")
	res, h, err := audit.VerifyExport(bytes.NewReader(file), offline)
	if err != nil || !res.OK || h.FirstSeq != 1 || res.Entries != h.LastSeq || res.CheckpointSeq != h.LastSeq {
		t.Fatalf("offline verify of the export: %+v %+v %v\n%s", res, h, err, file)
	}
	// Another party's CA does not verify the checkpoints.
	if res, _, _ := audit.VerifyExport(bytes.NewReader(file), caOnly(t, dir, "GBR")); res.OK {
		t.Fatal("the export verified against GBR's CA")
	}
	lines := strings.Split(strings.TrimSuffix(string(file), "\n"), "\n")
	entryLine := func(seq int) int { // index in lines of entry seq
		for i, l := range lines {
			if strings.HasPrefix(l, `{"type":"entry","seq":`+strconv.Itoa(seq)+`,`) {
				return i
			}
		}
		t.Fatalf("no entry %d", seq)
		return 0
	}
	join := func(ls []string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }
	edits := map[string]struct {
		file []byte
		bad  uint64
	}{}
	{
		ls := append([]string(nil), lines...)
		i := entryLine(4)
		ls[i] = strings.Replace(ls[i], `"kind":"`, `"kind":"x`, 1)
		edits["a readable field"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 4}
	}
	{
		ls := append([]string(nil), lines...)
		i := entryLine(5)
		ls = append(ls[:i], ls[i+1:]...)
		edits["an entry removed"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 5}
	}
	{
		ls := append([]string(nil), lines...)
		i, j := entryLine(2), entryLine(3)
		ls[i], ls[j] = ls[j], ls[i]
		edits["two entries swapped"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 2}
	}
	{
		ls := append([]string(nil), lines[:len(lines)-2]...)
		ls = append(ls, lines[len(lines)-1])
		edits["the final checkpoint removed"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 0}
	}
	{
		ls := append([]string(nil), lines[:len(lines)-1]...)
		edits["the signed end removed"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 0}
	}
	{
		ls := append([]string(nil), lines...)
		ls[0] = strings.Replace(ls[0], `"exported":"`, `"exported":"1`, 1)
		edits["the header's time of export"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 1}
	}
	{
		ls := append([]string(nil), lines...)
		i := entryLine(6)
		// Flip one character of the canonical bytes.
		k := strings.Index(ls[i], `"canonical":"`) + len(`"canonical":"`) + 10
		b := []byte(ls[i])
		if b[k] == 'A' {
			b[k] = 'B'
		} else {
			b[k] = 'A'
		}
		ls[i] = string(b)
		edits["a canonical byte"] = struct {
			file []byte
			bad  uint64
		}{join(ls), 6}
	}
	for name, e := range edits {
		res, _, err := audit.VerifyExport(bytes.NewReader(e.file), offline)
		if err != nil || res.OK || (e.bad != 0 && res.FirstBad != e.bad) {
			t.Errorf("%s: %+v %v, want a failure at %d", name, res, err, e.bad)
		}
	}
}

// exportLines splits an export into its lines.
func exportLines(file []byte) []string {
	return strings.Split(strings.TrimSuffix(string(file), "\n"), "\n")
}

// lineOf is the index of the first line starting with prefix.
func lineOf(t *testing.T, lines []string, prefix string) int {
	t.Helper()
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	t.Fatalf("no line %s…", prefix)
	return 0
}

// An export cut at either end fails offline verification, even with its
// header edited to match the cut and the file ending (or starting) at a
// periodic checkpoint that still verifies: the export's signed end names
// where it starts and ends. The untouched export, whole and --since,
// verifies.
func TestAuditExportCutAtEitherEnd(t *testing.T) {
	dir := t.TempDir()
	trust := pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR", "CAN"})
	ctx := context.Background()
	publishN(t, usa, 2)
	mid, err := usa.Checkpoint(ctx) // a periodic checkpoint
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, usa, 2)
	offline := caOnly(t, dir, "USA")
	file := export(t, usa, time.Time{})
	res, h, err := audit.VerifyExport(bytes.NewReader(file), offline)
	if err != nil || !res.OK || h.FirstSeq != 1 || h.LastSeq <= mid+1 || res.Entries != h.LastSeq {
		t.Fatalf("offline verify of the whole export: %+v %+v %v\n%s", res, h, err, file)
	}
	last := h.LastSeq
	lines := exportLines(file)
	cp := lineOf(t, lines, fmt.Sprintf(`{"type":"checkpoint","seq":%d,`, mid))
	end := len(lines) - 1
	header := func(from, to string) string {
		if !strings.Contains(lines[0], from) {
			t.Fatalf("the header has no %s: %s", from, lines[0])
		}
		return strings.Replace(lines[0], from, to, 1)
	}
	cutEnd := header(fmt.Sprintf(`"last_seq":%d`, last), fmt.Sprintf(`"last_seq":%d`, mid))
	cutStart := header(`"first_seq":1,`, fmt.Sprintf(`"first_seq":%d,`, mid+1))
	asSince := strings.Replace(cutStart, `,"first_seq":`, `,"since":"`+h.Exported+`","first_seq":`, 1)
	cat := func(parts ...[]string) []byte {
		var ls []string
		for _, p := range parts {
			ls = append(ls, p...)
		}
		return []byte(strings.Join(ls, "\n") + "\n")
	}
	for _, tc := range []struct {
		name string
		file []byte
		bad  uint64
		want string
	}{
		{"cut after a periodic checkpoint", cat([]string{cutEnd}, lines[1:cp+1]), mid + 1,
			fmt.Sprintf("the file has no signed export end: it may have been cut after entry %d", mid)},
		{"cut after a periodic checkpoint, the signed end kept", cat([]string{cutEnd}, lines[1:cp+1], lines[end:]), mid + 1,
			fmt.Sprintf("the export ends at entry %d but its signed end says it ends at entry %d: entries %d..%d were cut from the end", mid, last, mid+1, last)},
		{"cut before the entries after a periodic checkpoint", cat([]string{cutStart}, lines[cp+1:]), 1,
			fmt.Sprintf("the export starts at entry %d but its signed end says it starts at entry 1: entries 1..%d were cut from the start", mid+1, mid)},
		{"cut at the start, posing as a --since export", cat([]string{asSince}, lines[cp+1:]), 1,
			fmt.Sprintf("the export starts at entry %d but its signed end says it starts at entry 1", mid+1)},
		{"cut at the start, the signed end dropped", cat([]string{cutStart}, lines[cp+1:end]), last + 1,
			fmt.Sprintf("the file has no signed export end: it may have been cut before entry %d or after entry %d", mid+1, last)},
	} {
		res, _, err := audit.VerifyExport(bytes.NewReader(tc.file), offline)
		if err != nil || res.OK || res.FirstBad != tc.bad || !strings.Contains(res.Reason, tc.want) {
			t.Errorf("%s: %+v %v; want a failure at %d: %q", tc.name, res, err, tc.bad, tc.want)
		}
	}

	// A --since export starts where its signed end says, and verifies;
	// without its first entry (the header edited to match) it does not.
	since := time.Now()
	publishN(t, usa, 1)
	file = export(t, usa, since)
	res, h, err = audit.VerifyExport(bytes.NewReader(file), offline)
	if err != nil || !res.OK || h.FirstSeq <= last || h.Since == "" || res.Entries != h.LastSeq-h.FirstSeq+1 {
		t.Fatalf("offline verify of the --since export: %+v %+v %v\n%s", res, h, err, file)
	}
	lines = exportLines(file)
	first := lineOf(t, lines, fmt.Sprintf(`{"type":"entry","seq":%d,`, h.FirstSeq))
	lines[0] = strings.Replace(lines[0], fmt.Sprintf(`"first_seq":%d,`, h.FirstSeq), fmt.Sprintf(`"first_seq":%d,`, h.FirstSeq+1), 1)
	cut := cat(lines[:first], lines[first+1:])
	res, _, err = audit.VerifyExport(bytes.NewReader(cut), offline)
	if err != nil || res.OK || res.FirstBad != h.FirstSeq || !strings.Contains(res.Reason, "cut from the start") {
		t.Errorf("the --since export without its first entry: %+v %v", res, err)
	}
}

// The export's signed end and a checkpoint are signed in separate
// domains: the same node's signature over one never verifies as the
// other, alone or in an export file.
func TestAuditExportEndNotReplayable(t *testing.T) {
	dir := t.TempDir()
	trust := pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR"})
	publishN(t, usa, 2)
	offline := caOnly(t, dir, "USA")
	file := export(t, usa, time.Time{})
	lines := exportLines(file)
	signed := func(line string) *reportv1.Signed {
		t.Helper()
		var in struct {
			Signed string `json:"signed"`
		}
		if err := json.Unmarshal([]byte(line), &in); err != nil {
			t.Fatalf("not a line of JSON: %s", line)
		}
		raw, err := base64.StdEncoding.DecodeString(in.Signed)
		sd := &reportv1.Signed{}
		if err != nil || proto.Unmarshal(raw, sd) != nil {
			t.Fatalf("not a signed line: %s", line)
		}
		return sd
	}
	end := len(lines) - 1
	cp := end - 1 // the export's final checkpoint
	x, _, err := report.OpenAuditExport(signed(lines[end]), offline)
	if err != nil {
		t.Fatalf("the signed end: %v", err)
	}
	c, _, err := report.OpenAuditCheckpoint(signed(lines[cp]), offline)
	if err != nil || c.GetSeq() != x.GetLastSeq() {
		t.Fatalf("the final checkpoint: %v %v", c, err)
	}
	// Each statement's payload signed by the node as the other kind, and
	// labelled as its own: the payload parses, only the domain differs.
	asCheckpoint, err := report.SignStatement(report.KindAuditCheckpoint, x, usa.signer)
	if err != nil {
		t.Fatal(err)
	}
	asCheckpoint.Kind = report.KindAuditExport
	asEnd, err := report.SignStatement(report.KindAuditExport, c, usa.signer)
	if err != nil {
		t.Fatal(err)
	}
	asEnd.Kind = report.KindAuditCheckpoint
	if _, _, err := report.OpenAuditExport(asCheckpoint, offline); !errors.Is(err, report.ErrSignature) {
		t.Errorf("an export statement signed as a checkpoint opened as the export's end: %v", err)
	}
	if _, _, err := report.OpenAuditCheckpoint(asEnd, offline); !errors.Is(err, report.ErrSignature) {
		t.Errorf("a checkpoint signed as an export statement opened as a checkpoint: %v", err)
	}
	if _, _, err := report.OpenAuditCheckpoint(signed(lines[end]), offline); err == nil {
		t.Error("the signed end opened as a checkpoint")
	}
	if _, _, err := report.OpenAuditExport(signed(lines[cp]), offline); err == nil {
		t.Error("a checkpoint opened as an export's end")
	}
	// In the file.
	endLine, err := audit.EndLine(asCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	cpLine, err := audit.CheckpointLine(asEnd)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   int
		line []byte
		want string
	}{
		{"the end signed as a checkpoint", end, endLine, "the export's signed end does not verify against the CA bundle"},
		{"the final checkpoint signed as an export's end", cp, cpLine, fmt.Sprintf("the checkpoint at %d does not verify against the CA bundle", c.GetSeq())},
	} {
		ls := append([]string(nil), lines...)
		ls[tc.at] = string(tc.line)
		res, _, err := audit.VerifyExport(strings.NewReader(strings.Join(ls, "\n")+"\n"), offline)
		if err != nil || res.OK || !strings.Contains(res.Reason, tc.want) {
			t.Errorf("%s: %+v %v; want %q", tc.name, res, err, tc.want)
		}
	}
}

// An export in the format written before exports were signed fails, and
// says why, though its entries and checkpoints check out.
func TestAuditExportV1NotPassed(t *testing.T) {
	dir := t.TempDir()
	trust := pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR"})
	publishN(t, usa, 2)
	lines := exportLines(export(t, usa, time.Time{}))
	// What an export was before: a v1 header, and no signed end.
	lines[0] = strings.Replace(lines[0], audit.ExportFormat, audit.ExportFormatV1, 1)
	old := strings.Join(lines[:len(lines)-1], "\n") + "\n"
	res, h, err := audit.VerifyExport(strings.NewReader(old), caOnly(t, dir, "USA"))
	if err != nil || res.OK || res.FirstBad != h.LastSeq+1 || res.Checkpoints == 0 || !strings.Contains(res.Reason, "written before exports were signed") {
		t.Fatalf("a v1 export: %+v %v", res, err)
	}
	// A v2 export with its header relabelled v1 fails too.
	lines = exportLines(export(t, usa, time.Time{}))
	lines[0] = strings.Replace(lines[0], audit.ExportFormat, audit.ExportFormatV1, 1)
	res, _, err = audit.VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), caOnly(t, dir, "USA"))
	if err != nil || res.OK || !strings.Contains(res.Reason, "the header was edited") {
		t.Fatalf("a signed export relabelled v1: %+v %v", res, err)
	}
}

// A partner holds USA's checkpoints: when USA's log is rewritten with a
// consistent chain and re-signed checkpoints (as an attacker with the file
// and the CA would), USA's own verification passes and GBR's comparison
// names where it no longer matches.
func TestAuditPartnerDetectsRewrite(t *testing.T) {
	dir := t.TempDir()
	trust := pki.NewTrust()
	all := []string{"USA", "GBR"}
	usa := testNode(t, dir, trust, "USA", all)
	gbr := testNode(t, dir, trust, "GBR", all)
	ctx := context.Background()
	var cps []uint64
	for range 3 {
		publishN(t, usa, 2)
		seq, err := usa.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, seq)
		deliver(t, usa, "GBR", gbr, true)
	}
	fetch := func(ctx context.Context, party string, seqs []uint64) (uint64, [][]byte, *reportv1.Signed, error) {
		return usa.AuditDigests(ctx, seqs)
	}
	if r, err := gbr.VerifyPartnerAudit(ctx, nodeID("GBR"), "USA", fetch); err != nil || !r.OK || r.Checkpoints != 3 {
		t.Fatalf("before the rewrite: %+v %v", r, err)
	}
	// While USA is suspended at GBR, GBR does not call it, even to compare.
	goff := pki.Identity{Party: "GBR", Kind: pki.KindOfficer, Name: "g"}
	if _, err := gbr.Suspend(ctx, goff, SuspendPartner, "USA", "incident"); err != nil {
		t.Fatal(err)
	}
	called := false
	if _, err := gbr.VerifyPartnerAudit(ctx, nodeID("GBR"), "USA", func(context.Context, string, []uint64) (uint64, [][]byte, *reportv1.Signed, error) {
		called = true
		return 0, nil, nil, errors.New("not reached")
	}); !errors.Is(err, ErrSuspended) || called {
		t.Fatalf("verify against a suspended partner: %v (called it: %v), want refused without a call", err, called)
	}
	if err := gbr.Reinstate(ctx, goff, SuspendPartner, "USA"); err != nil {
		t.Fatal(err)
	}

	// The attacker edits entry cps[0]+2 (between the first and second
	// checkpoints), with USA's node stopped.
	target := cps[0] + 2
	path := usa.Store().Path()
	usa.Store().Close()
	ca, err := pki.OpenDevCA(filepath.Join(dir, "ca-USA"), "USA")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := pki.NewCertSource(ca, pki.Identity{Domain: pki.DefaultDomain("USA"), Party: "USA", Kind: pki.KindNode, Name: "n"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	err = audittamper.Rewrite(path, target, func(e *storev1.AuditEntry) {
		e.Kind, e.Decisions = "refused", nil
	}, forged)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	usa2, err := New(Config{Party: "USA", Store: st, Signer: forged, Trust: trust,
		Partners: []Partner{{Party: "GBR", Agreement: &policy.Agreement{Partner: "GBR", MaxClassification: "TOP SECRET", ValidUntil: time.Now().Add(time.Hour)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := usa2.VerifyAudit(ctx, officer); err != nil || !res.OK || res.Checkpoints != 3 {
		t.Fatalf("USA's own verification of the rewritten log: %+v %v (it should pass: the rewrite is consistent)", res, err)
	}
	fetch = func(ctx context.Context, party string, seqs []uint64) (uint64, [][]byte, *reportv1.Signed, error) {
		return usa2.AuditDigests(ctx, seqs)
	}
	r, err := gbr.VerifyPartnerAudit(ctx, nodeID("GBR"), "USA", fetch)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || r.LastGood != cps[0] || r.Mismatch != cps[1] || r.FirstBad != cps[0]+1 || !strings.Contains(r.Reason, "rewritten") {
		t.Fatalf("GBR's comparison: %+v, want a mismatch at checkpoint %d after %d", r, cps[1], cps[0])
	}
	evs, _ := gbr.SecurityEvents(ctx)
	found := false
	for _, e := range evs {
		found = found || (e.GetKind() == audit.AnomalyPartnerChain && e.GetPartner() == "USA")
	}
	if !found || gbr.AuditMetrics().Counts()[audit.AnomalyPartnerChain] != 1 {
		t.Fatalf("GBR raised no security event for the mismatch: %v", evs)
	}
	// USA's re-signed checkpoint for the same entry, sent now, is a fork.
	if _, err := usa2.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, latest, _ := usa2.AuditDigests(ctx, nil)
	if out, err := gbr.receiveCheckpoint(time.Now(), "USA", latest); err != nil || out != Accepted {
		t.Fatalf("a new checkpoint: %v %v", out, err)
	}
}

// A broken chain raises one security event, counted, and no checkpoint is
// signed over it.
func TestAuditChainFailureRaised(t *testing.T) {
	dir := t.TempDir()
	trust := pki.NewTrust()
	usa := testNode(t, dir, trust, "USA", []string{"USA", "GBR"})
	publishN(t, usa, 2)
	ctx := context.Background()
	if _, err := usa.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	publishN(t, usa, 1) // entries 5 and 6
	// Swap entries 5 and 6 in the file, with the node stopped.
	path := usa.Store().Path()
	usa.Store().Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k5, k6 := []byte{0, 0, 0, 0, 0, 0, 0, 5}, []byte{0, 0, 0, 0, 0, 0, 0, 6}
		v5, v6 := bytes.Clone(b.Get(k5)), bytes.Clone(b.Get(k6))
		b.Put(k5, v6)
		return b.Put(k6, v5)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	usa, err = New(Config{Party: "USA", Store: st, Signer: usa.signer, Trust: trust, Partners: usa.Partners()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := usa.Checkpoint(ctx); err == nil {
		t.Fatal("a checkpoint was signed over a broken chain")
	}
	res, err := usa.VerifyAudit(ctx, officer)
	if err != nil || res.OK || res.FirstBad != 5 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	evs, _ := usa.SecurityEvents(ctx)
	n := 0
	for _, e := range evs {
		if e.GetKind() == audit.AnomalyChain {
			n++
		}
	}
	if n != 1 || usa.AuditMetrics().Counts()[audit.AnomalyChain] != 1 {
		t.Fatalf("chain failures raised %d times (metric %d), want once", n, usa.AuditMetrics().Counts()[audit.AnomalyChain])
	}
}
