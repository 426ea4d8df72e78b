package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// ExportFormat names the export file format (the header's "format").
const ExportFormat = "tearline-audit-export/v1"

// An export is JSON lines: one header, then the entries in order with the
// checkpoints among them, and last a checkpoint of the last entry. Each
// entry and checkpoint line carries its canonical bytes (base64) beside a
// readable rendering of them; a verifier renders every line again from the
// bytes and refuses a line that differs in any byte, so editing either the
// bytes or the readable fields is detected.

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
// checkpoint. The result names the first bad sequence number. An export
// that starts after entry 1 (--since) takes its first entry's prev hash as
// given: the chain and the checkpoints are checked from there on.
func VerifyExport(r io.Reader, trust report.Verifier) (Result, Header, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var h Header
	res := Result{OK: true}
	lineNo := 0
	var chain *Chain
	digests := map[uint64][]byte{}
	var cps []*reportv1.AuditCheckpoint
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
			if kind.Type != "header" || json.Unmarshal(line, &h) != nil || h.Format != ExportFormat {
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
	return res, h, nil
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
