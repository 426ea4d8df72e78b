package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// ExportFormat names the export file format (the header's "format").
const ExportFormat = "tearline-audit-export/v2"

// ExportFormatV1 is the format of exports written before a node signed its
// exports: they had no signed end, so a cut at either end of one cannot be
// detected. VerifyExport checks what it can of one and fails it, saying so.
const ExportFormatV1 = "tearline-audit-export/v1"

// An export is JSON lines: one header, then the entries in order with the
// checkpoints among them and a checkpoint of the last entry, and last the
// export's signed end: the node's signed AuditExport statement (kind
// "audit-export") of this export's party, time, since, first and last
// sequence numbers and the hash of its last entry. Each entry, checkpoint
// and end line carries its canonical bytes (base64) beside a readable
// rendering of them; a verifier renders every line again from the bytes and
// refuses a line that differs in any byte, so editing either the bytes or
// the readable fields is detected. The header is checked field by field
// against the signed end, and the entries against its first and last
// sequence numbers and head: a file cut at either end, or whose header was
// edited to match the cut, fails, and so does a file with no signed end.

// Header is the first line of an export.
type Header struct {
	Type     string `json:"type"` // "header"
	Format   string `json:"format"`
	Party    string `json:"party"`
	Node     string `json:"node"`
	Exported string `json:"exported"`
	Since    string `json:"since,omitempty"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
}

// DecisionJSON is a portion decision in an entry line.
type DecisionJSON struct {
	Index     uint32 `json:"index"`
	Allowed   bool   `json:"allowed"`
	Rule      string `json:"rule"`
	Authority string `json:"authority,omitempty"`
	Banner    string `json:"banner,omitempty"`
	Party     string `json:"party,omitempty"`
	Message   string `json:"message,omitempty"`
	Next      string `json:"next,omitempty"`
}

// DeliveryJSON is one report of a delivery batch in an entry line.
type DeliveryJSON struct {
	ReportID  string         `json:"report_id"`
	Kind      string         `json:"kind"`
	Portions  []uint32       `json:"portions,omitempty"`
	Decisions []DecisionJSON `json:"decisions,omitempty"`
}

// EntryJSON is an entry line.
type EntryJSON struct {
	Type       string         `json:"type"` // "entry"
	Seq        uint64         `json:"seq"`
	Time       string         `json:"time"`
	Kind       string         `json:"kind"`
	Subject    string         `json:"subject,omitempty"`
	Party      string         `json:"party,omitempty"`
	ReportID   string         `json:"report_id,omitempty"`
	Portions   []uint32       `json:"portions,omitempty"`
	Decisions  []DecisionJSON `json:"decisions,omitempty"`
	Deliveries []DeliveryJSON `json:"deliveries,omitempty"`
	Detail     string         `json:"detail,omitempty"`
	Prev       string         `json:"prev"`
	Hash       string         `json:"hash"`
	Canonical  string         `json:"canonical"`
}

// CheckpointJSON is a checkpoint line.
type CheckpointJSON struct {
	Type   string `json:"type"` // "checkpoint"
	Seq    uint64 `json:"seq"`
	Head   string `json:"head"`
	Time   string `json:"time"`
	Party  string `json:"party"`
	Signed string `json:"signed"`
}

// EndJSON is the export's signed end, its last line.
type EndJSON struct {
	Type     string `json:"type"` // "end"
	Party    string `json:"party"`
	Exported string `json:"exported"`
	Since    string `json:"since,omitempty"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Head     string `json:"head"`
	Signed   string `json:"signed"`
}

// Stamp is how an export writes a time.
func Stamp(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

// Decisions renders portion decisions.
func Decisions(ds []*reportv1.Decision) []DecisionJSON {
	var out []DecisionJSON
	for _, d := range ds {
		out = append(out, DecisionJSON{d.GetIndex(), d.GetAllowed(), d.GetRule(), d.GetAuthority(), d.GetBanner(), d.GetParty(), d.GetMessage(), d.GetNext()})
	}
	return out
}

// RenderEntry renders an entry from its canonical bytes.
func RenderEntry(canonical []byte) (EntryJSON, error) {
	e, err := Decode(canonical)
	if err != nil {
		return EntryJSON{}, err
	}
	out := EntryJSON{
		Type: "entry", Seq: e.GetSeq(), Time: e.GetTime().AsTime().UTC().Format(time.RFC3339Nano), Kind: e.GetKind(),
		Subject: e.GetSubject(), Party: e.GetParty(), ReportID: e.GetReportId(), Portions: e.GetPortions(),
		Decisions: Decisions(e.GetDecisions()), Detail: e.GetDetail(),
		Prev: hex.EncodeToString(e.GetPrev()), Hash: hex.EncodeToString(Hash(canonical)),
		Canonical: base64.StdEncoding.EncodeToString(canonical),
	}
	for _, d := range e.GetDeliveries() {
		out.Deliveries = append(out.Deliveries, DeliveryJSON{d.GetReportId(), d.GetKind(), d.GetPortions(), Decisions(d.GetDecisions())})
	}
	return out, nil
}

// RenderCheckpoint renders a signed checkpoint (it is not verified here).
func RenderCheckpoint(sd *reportv1.Signed) (CheckpointJSON, error) {
	c := &reportv1.AuditCheckpoint{}
	if err := proto.Unmarshal(sd.GetPayload(), c); err != nil {
		return CheckpointJSON{}, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(sd)
	if err != nil {
		return CheckpointJSON{}, err
	}
	return CheckpointJSON{
		Type: "checkpoint", Seq: c.GetSeq(), Head: hex.EncodeToString(c.GetHead()),
		Time: c.GetTime().AsTime().UTC().Format(time.RFC3339Nano), Party: c.GetParty(),
		Signed: base64.StdEncoding.EncodeToString(raw),
	}, nil
}

// RenderEnd renders an export's signed end (it is not verified here).
func RenderEnd(sd *reportv1.Signed) (EndJSON, error) {
	x := &reportv1.AuditExport{}
	if err := proto.Unmarshal(sd.GetPayload(), x); err != nil {
		return EndJSON{}, fmt.Errorf("%w: export end: %v", ErrCorrupt, err)
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(sd)
	if err != nil {
		return EndJSON{}, err
	}
	return EndJSON{
		Type: "end", Party: x.GetParty(), Exported: Stamp(x.GetExported()), Since: Stamp(x.GetSince()),
		FirstSeq: x.GetFirstSeq(), LastSeq: x.GetLastSeq(), Head: hex.EncodeToString(x.GetHead()),
		Signed: base64.StdEncoding.EncodeToString(raw),
	}, nil
}

// Line marshals a line (without its newline).
func Line(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// VerifyExport checks an exported file offline: every line is exactly the
// rendering of its canonical bytes, the entries follow each other without a
// gap from the header's first sequence number to its last, each chained to
// the one before, every checkpoint is signed by a node of the header's
// party (checked against trust, which needs only that party's CA bundle)
// and matches the entry it names, and the last entry is covered by a
// checkpoint. The file must end with the export's signed end (signed by a
// node of that party, as kind "audit-export"): the header must say what it
// says, and the entries must start at its first sequence number and end at
// its last, with its head. A file with no signed end fails (it may have
// been cut), and so does a v1 file, which had none. The result names the
// first bad sequence number. An export that starts after entry 1 (--since)
// takes its first entry's prev hash as given: the chain and the checkpoints
// are checked from there on, and the signed end says where it must start.
func VerifyExport(r io.Reader, trust report.Verifier) (Result, Header, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var h Header
	res := Result{OK: true}
	lineNo := 0
	var chain *Chain
	digests := map[uint64][]byte{}
	var cps []*reportv1.AuditCheckpoint
	var end *reportv1.AuditExport
	var endBy string
	endLine := 0
	var fault *Fault
	bad := func(seq uint64, format string, args ...any) {
		if fault == nil {
			fault = &Fault{Seq: seq, Reason: fmt.Sprintf("line %d: ", lineNo) + fmt.Sprintf(format, args...)}
		}
	}
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		var kind struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &kind); err != nil {
			if lineNo == 1 {
				return Result{}, h, fmt.Errorf("line 1: not an audit export: %v", err)
			}
			bad(nextSeq(chain, h), "not JSON (edited)")
			continue
		}
		if lineNo == 1 {
			if kind.Type != "header" || json.Unmarshal(line, &h) != nil || (h.Format != ExportFormat && h.Format != ExportFormatV1) {
				return Result{}, h, fmt.Errorf("line 1: not a %s header", ExportFormat)
			}
			if h.FirstSeq == 0 {
				h.FirstSeq = 1
			}
			if h.FirstSeq == 1 {
				chain = NewChain()
			} else {
				chain = AnchoredChain(h.FirstSeq)
			}
			continue
		}
		if endLine != 0 {
			bad(nextSeq(chain, h), "a line after the export's signed end (added)")
			continue
		}
		switch kind.Type {
		case "entry":
			var in EntryJSON
			if err := json.Unmarshal(line, &in); err != nil {
				bad(chain.Next(), "the entry line does not parse (edited)")
				continue
			}
			canonical, err := base64.StdEncoding.DecodeString(in.Canonical)
			if err != nil {
				bad(chain.Next(), "the entry's canonical bytes are not base64 (edited)")
				continue
			}
			if fault != nil {
				continue
			}
			if in.Seq != chain.Next() {
				f := chain.gap(in.Seq)
				bad(f.Seq, "%s", f.Reason)
				continue
			}
			again, err := RenderEntry(canonical)
			if err != nil {
				bad(in.Seq, "entry %d does not decode (edited)", in.Seq)
				continue
			}
			if want, _ := Line(again); !bytes.Equal(want, line) {
				bad(in.Seq, "entry %d was edited: the line is not what its canonical bytes say", in.Seq)
				continue
			}
			if f := chain.Add(in.Seq, canonical); f != nil {
				bad(f.Seq, "%s", f.Reason)
				continue
			}
			digests[in.Seq] = chain.Head()
		case "checkpoint":
			var in CheckpointJSON
			if err := json.Unmarshal(line, &in); err != nil {
				bad(nextSeq(chain, h), "the checkpoint line does not parse (edited)")
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(in.Signed)
			sd := &reportv1.Signed{}
			if err != nil || proto.Unmarshal(raw, sd) != nil {
				bad(in.Seq, "the checkpoint at %d is not a signed statement (edited)", in.Seq)
				continue
			}
			if again, err := RenderCheckpoint(sd); err != nil {
				bad(in.Seq, "the checkpoint at %d does not parse (edited)", in.Seq)
				continue
			} else if want, _ := Line(again); !bytes.Equal(want, line) {
				bad(in.Seq, "the checkpoint at %d was edited: the line is not what its signed bytes say", in.Seq)
				continue
			}
			c, _, err := report.OpenAuditCheckpoint(sd, trust)
			if err != nil {
				bad(in.Seq, "the checkpoint at %d does not verify against the CA bundle: %v", in.Seq, err)
				continue
			}
			if c.GetParty() != h.Party {
				bad(in.Seq, "the checkpoint at %d is %s's, not %s's", in.Seq, c.GetParty(), h.Party)
				continue
			}
			cps = append(cps, c)
		case "end":
			endLine = lineNo
			var in EndJSON
			if err := json.Unmarshal(line, &in); err != nil {
				bad(nextSeq(chain, h), "the export's signed end does not parse (edited)")
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(in.Signed)
			sd := &reportv1.Signed{}
			if err != nil || proto.Unmarshal(raw, sd) != nil {
				bad(nextSeq(chain, h), "the export's end is not a signed statement (edited)")
				continue
			}
			if again, err := RenderEnd(sd); err != nil {
				bad(nextSeq(chain, h), "the export's signed end does not parse (edited)")
				continue
			} else if want, _ := Line(again); !bytes.Equal(want, line) {
				bad(nextSeq(chain, h), "the export's end was edited: the line is not what its signed bytes say")
				continue
			}
			x, id, err := report.OpenAuditExport(sd, trust)
			if err != nil {
				bad(nextSeq(chain, h), "the export's signed end does not verify against the CA bundle: %v", err)
				continue
			}
			if x.GetParty() != h.Party {
				bad(nextSeq(chain, h), "the export's signed end is %s's, not %s's", x.GetParty(), h.Party)
				continue
			}
			end, endBy = x, id.String()
		default:
			bad(nextSeq(chain, h), "unknown line type %q (edited)", kind.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return Result{}, h, err
	}
	if chain == nil {
		return Result{}, h, fmt.Errorf("empty file: not an audit export")
	}
	res.Entries = chain.Entries()
	res.fail(fault)
	last := chain.Next() - 1
	if fault == nil && last != h.LastSeq {
		res.fail(&Fault{Seq: last + 1, Reason: fmt.Sprintf("the header says the export ends at entry %d but the last entry is %d: entries were removed", h.LastSeq, last)})
	}
	var inRange []*reportv1.AuditCheckpoint
	for _, c := range cps {
		if c.GetSeq() >= h.FirstSeq {
			inRange = append(inRange, c)
		}
	}
	lastGood, covered := res.matchCheckpoints(inRange, digests, h.FirstSeq-1, last, fault, "the entries")
	if res.OK && last >= h.FirstSeq && !covered {
		res.fail(&Fault{Seq: lastGood + 1, Reason: fmt.Sprintf("entries %d..%d are not covered by a signed checkpoint (the export's final checkpoint is missing)", lastGood+1, last)})
	}
	switch {
	case end != nil:
		res.End = end
		res.checkEnd(end, endBy, h, last, chain.Head(), fault)
	case endLine != 0:
		// The end line was there but bad: the fault says why.
	case h.Format == ExportFormatV1:
		res.fail(&Fault{Seq: last + 1, Reason: fmt.Sprintf("the file is a %s export, written before exports were signed: its entries and checkpoints check out, "+
			"but it has no signed export end, so a cut at either end cannot be detected; export the log again to verify it", ExportFormatV1)})
	case h.FirstSeq == 1:
		res.fail(&Fault{Seq: last + 1, Reason: fmt.Sprintf("the file has no signed export end: it may have been cut after entry %d", last)})
	default:
		res.fail(&Fault{Seq: last + 1, Reason: fmt.Sprintf("the file has no signed export end: it may have been cut before entry %d or after entry %d", h.FirstSeq, last)})
	}
	return res, h, nil
}

// checkEnd checks an export against its signed end x (signed by node by):
// the entries (first h.FirstSeq to last, whose hash is head, checked
// already up to any fault) must start and end where x says, with x's head,
// and the header must say what x says. A cut is named as such, rather than
// by the header fields edited to hide it.
func (res *Result) checkEnd(x *reportv1.AuditExport, by string, h Header, last uint64, head []byte, fault *Fault) {
	if f := cut(x, h.FirstSeq, last, head, fault); f != nil {
		res.fail(f)
		return
	}
	if h.Format != ExportFormat {
		res.fail(&Fault{Seq: x.GetFirstSeq(), Reason: fmt.Sprintf("the header says the format is %s but the file has a signed export end (%s): the header was edited", h.Format, ExportFormat)})
	}
	for _, f := range []struct{ name, file, signed string }{
		{"first_seq", strconv.FormatUint(h.FirstSeq, 10), strconv.FormatUint(x.GetFirstSeq(), 10)},
		{"last_seq", strconv.FormatUint(h.LastSeq, 10), strconv.FormatUint(x.GetLastSeq(), 10)},
		{"since", h.Since, Stamp(x.GetSince())},
		{"exported", h.Exported, Stamp(x.GetExported())},
		{"node", h.Node, by},
	} {
		if f.file != f.signed {
			res.fail(&Fault{Seq: x.GetFirstSeq(), Reason: fmt.Sprintf("the header's %s is %q but the export's signed end says %q: the header was edited", f.name, f.file, f.signed)})
		}
	}
}

// cut compares where the entries start (first) and end (last, with hash
// head) with the signed end x. It judges nothing after a fault (the chain
// there is not known).
func cut(x *reportv1.AuditExport, first, last uint64, head []byte, fault *Fault) *Fault {
	switch {
	case fault != nil:
		return nil
	case first > x.GetFirstSeq():
		return &Fault{Seq: x.GetFirstSeq(), Reason: fmt.Sprintf("the export starts at entry %d but its signed end says it starts at entry %d: %s cut from the start",
			first, x.GetFirstSeq(), entriesWere(x.GetFirstSeq(), first-1))}
	case first < x.GetFirstSeq():
		return &Fault{Seq: first, Reason: fmt.Sprintf("the export starts at entry %d but its signed end says it starts at entry %d: entries were added before it",
			first, x.GetFirstSeq())}
	case last < x.GetLastSeq():
		return &Fault{Seq: last + 1, Reason: fmt.Sprintf("the export ends at entry %d but its signed end says it ends at entry %d: %s cut from the end",
			last, x.GetLastSeq(), entriesWere(last+1, x.GetLastSeq()))}
	case last > x.GetLastSeq():
		return &Fault{Seq: x.GetLastSeq() + 1, Reason: fmt.Sprintf("the export ends at entry %d but its signed end says it ends at entry %d: entries were added after it",
			last, x.GetLastSeq())}
	case last >= first && !bytes.Equal(head, x.GetHead()):
		return &Fault{Seq: last, Reason: fmt.Sprintf("entry %d is not the one the export's signed end names (rewritten)", last)}
	}
	return nil
}

// entriesWere names the entries a..b: "entry 9 was", "entries 1..8 were".
func entriesWere(a, b uint64) string {
	if a == b {
		return fmt.Sprintf("entry %d was", a)
	}
	return fmt.Sprintf("entries %d..%d were", a, b)
}

func nextSeq(c *Chain, h Header) uint64 {
	if c == nil {
		return h.FirstSeq
	}
	return c.Next()
}

// EntryFromEvent turns a provenance event into an audit entry.
func EntryFromEvent(e *storev1.Event) *storev1.AuditEntry {
	return &storev1.AuditEntry{
		Time: e.GetTime(), Kind: e.GetKind(), Subject: e.GetSubject(), Party: e.GetParty(), ReportId: e.GetReportId(),
		Decisions: e.GetDecisions(), Detail: e.GetDetail(), EventSeq: e.GetSeq(), Portions: e.GetPortions(),
	}
}

// EventFromEntry is the provenance event an entry made by EntryFromEvent
// records (the store keeps such an event only in its entry).
func EventFromEntry(e *storev1.AuditEntry) *storev1.Event {
	return &storev1.Event{
		Time: e.GetTime(), Kind: e.GetKind(), Subject: e.GetSubject(), Party: e.GetParty(), ReportId: e.GetReportId(),
		Decisions: e.GetDecisions(), Detail: e.GetDetail(), Seq: e.GetEventSeq(), Portions: e.GetPortions(),
	}
}

// EntryLine is the export line of an entry.
func EntryLine(canonical []byte) ([]byte, error) {
	r, err := RenderEntry(canonical)
	if err != nil {
		return nil, err
	}
	return Line(r)
}

// CheckpointLine is the export line of a signed checkpoint.
func CheckpointLine(sd *reportv1.Signed) ([]byte, error) {
	r, err := RenderCheckpoint(sd)
	if err != nil {
		return nil, err
	}
	return Line(r)
}

// EndLine is the export line of an export's signed end.
func EndLine(sd *reportv1.Signed) ([]byte, error) {
	r, err := RenderEnd(sd)
	if err != nil {
		return nil, err
	}
	return Line(r)
}

// ExportWriter writes an export file from the items of an export in the
// order a node sends them: its signed end first (a Signed of kind
// "audit-export"), then the header, then the entries with the checkpoints
// among them. The file has the header first, with the time of export the
// end signs, and the end last, written by Close: a writer not closed (an
// export that broke off) leaves a file with no signed end, which fails.
type ExportWriter struct {
	w      io.Writer
	header bool
	end    []byte
	endAt  string
}

// NewExportWriter writes an export file to w.
func NewExportWriter(w io.Writer) *ExportWriter { return &ExportWriter{w: w} }

func (x *ExportWriter) line(b []byte, err error) error {
	if err != nil {
		return err
	}
	if _, err := x.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return nil
}

// Header writes the header line, stamped with the signed end's time of
// export when the end came first.
func (x *ExportWriter) Header(h Header) error {
	if x.header {
		return fmt.Errorf("%w: a second export header", ErrCorrupt)
	}
	x.header = true
	if x.endAt != "" {
		h.Exported = x.endAt
	}
	return x.line(Line(h))
}

// Entry writes an entry line.
func (x *ExportWriter) Entry(canonical []byte) error {
	if !x.header {
		return fmt.Errorf("%w: an entry before the export header", ErrCorrupt)
	}
	return x.line(EntryLine(canonical))
}

// Signed writes a checkpoint line, or keeps the export's signed end for
// Close (by its kind, which its signature covers: the verifier opens it as
// that kind only).
func (x *ExportWriter) Signed(sd *reportv1.Signed) error {
	if sd.GetKind() != report.KindAuditExport {
		if !x.header {
			return fmt.Errorf("%w: a checkpoint before the export header", ErrCorrupt)
		}
		return x.line(CheckpointLine(sd))
	}
	if x.end != nil {
		return fmt.Errorf("%w: a second export end", ErrCorrupt)
	}
	r, err := RenderEnd(sd)
	if err != nil {
		return err
	}
	if x.end, err = Line(r); err != nil {
		return err
	}
	x.endAt = r.Exported
	return nil
}

// Close writes the signed end, last.
func (x *ExportWriter) Close() error {
	if x.end == nil {
		return fmt.Errorf("%w: the export has no signed end", ErrCorrupt)
	}
	return x.line(x.end, nil)
}
