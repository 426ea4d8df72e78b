package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// AuditConfig is how a node checkpoints its audit log and what it takes
// for an anomaly.
type AuditConfig struct {
	// A checkpoint is signed when the log has grown since the last one and
	// CheckpointInterval has passed, or CheckpointEntries entries were
	// appended (defaults 30s and 1000), and on shutdown.
	CheckpointInterval time.Duration
	CheckpointEntries  uint64
	Thresholds         audit.Thresholds
}

// auditState is the node's audit machinery.
type auditState struct {
	cfg      AuditConfig
	detector *audit.Detector
	metrics  *audit.Metrics
	cpMu     sync.Mutex // one checkpoint at a time

	mu       sync.Mutex
	reported string // the last chain fault raised, so that it is raised once
}

func (n *Node) initAudit(cfg AuditConfig) {
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 30 * time.Second
	}
	if cfg.CheckpointEntries == 0 {
		cfg.CheckpointEntries = 1000
	}
	n.aud = &auditState{cfg: cfg, detector: audit.NewDetector(cfg.Thresholds), metrics: &audit.Metrics{}}
	n.st.OnAudit(n.observeAudit)
}

// AuditMetrics are the node's anomaly counters.
func (n *Node) AuditMetrics() *audit.Metrics { return n.aud.metrics }

// observeAudit runs after every commit with the entries it appended.
func (n *Node) observeAudit(entries []*storev1.AuditEntry) {
	for _, a := range n.aud.detector.Observe(n.clock(), entries) {
		n.raise(a)
	}
}

// raise records an anomaly as a security event and counts it.
func (n *Node) raise(a audit.Alert) {
	n.aud.metrics.Inc(a.Kind)
	if err := n.securityEvent(n.clock(), &storev1.SecurityEvent{Kind: a.Kind, Partner: a.Partner, Rule: a.Kind, Message: a.Message}); err != nil {
		n.log.Error("record anomaly", "kind", a.Kind, "error", err)
	}
}

// chainBroken raises a chain-verification failure of this node's own log,
// once per distinct fault.
func (n *Node) chainBroken(res audit.Result) {
	key := fmt.Sprintf("%d %s", res.FirstBad, res.Reason)
	n.aud.mu.Lock()
	again := n.aud.reported == key
	n.aud.reported = key
	n.aud.mu.Unlock()
	if again {
		return
	}
	n.raise(audit.Alert{Kind: audit.AnomalyChain, Partner: n.party, Message: fmt.Sprintf("the audit log fails verification at entry %d: %s", res.FirstBad, res.Reason)})
}

// RecordAudit appends an entry for a fact that has no other record here:
// the node starting, a certificate event, an administrative action.
func (n *Node) RecordAudit(kind, subject, detail string) error {
	if err := n.st.Audit(n.clock(), &storev1.AuditEntry{Kind: kind, Subject: subject, Detail: detail}); err != nil {
		return fmt.Errorf("%w: audit: %w", ErrInternal, err)
	}
	return nil
}

// ErrAuditBroken is returned when the node will not sign over a log that
// fails verification.
var ErrAuditBroken = errors.New("node: the audit log fails verification")

// Checkpoint signs the head of the audit log, keeps the checkpoint and
// queues it for every partner, after checking the entries appended since
// the last checkpoint. Without new entries it signs nothing and returns
// the last checkpoint's seq. force signs even when too little time has
// passed (callers decide that); it returns the seq signed.
func (n *Node) Checkpoint(ctx context.Context) (uint64, error) {
	n.aud.cpMu.Lock()
	defer n.aud.cpMu.Unlock()
	now := n.clock()
	var last *audit.StoredCheckpoint
	var res audit.Result
	var seq uint64
	var head []byte
	err := n.st.ViewAudit(func(v store.AuditView) error {
		var err error
		if last, err = v.LastCheckpoint(); err != nil {
			return err
		}
		from, prev := uint64(1), audit.Zero
		if last != nil {
			c, _, err := report.OpenAuditCheckpoint(last.Signed, n.trust)
			if err != nil || c.GetSeq() != last.Seq {
				res = audit.Result{FirstBad: last.Seq, Reason: fmt.Sprintf("the checkpoint kept at %d does not verify", last.Seq)}
				return nil
			}
			from, prev = c.GetSeq()+1, c.GetHead()
		}
		res, seq, head, err = audit.VerifyTail(v, from, prev)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%w: read audit log: %w", ErrInternal, err)
	}
	if !res.OK {
		n.chainBroken(res)
		return 0, fmt.Errorf("%w at entry %d: %s", ErrAuditBroken, res.FirstBad, res.Reason)
	}
	if seq == 0 || (last != nil && last.Seq == seq) {
		if last != nil {
			return last.Seq, nil
		}
		return 0, nil
	}
	sd, err := report.SignStatement(report.KindAuditCheckpoint, &reportv1.AuditCheckpoint{Party: n.party, Seq: seq, Head: head, Time: timestamppb.New(now)}, n.signer)
	if err != nil {
		return 0, fmt.Errorf("%w: sign checkpoint: %w", ErrInternal, err)
	}
	// A suspended partner gets nothing, checkpoints included; the first
	// one after its reinstatement covers everything before it.
	var partners []string
	for _, p := range n.partnerList() {
		if !n.PartnerSuspended(p) {
			partners = append(partners, p)
		}
	}
	err = n.st.Update(now, func(t *store.Tx) error {
		if err := t.PutAuditCheckpoint(seq, sd); err != nil {
			return err
		}
		for _, p := range partners {
			if err := n.enqueueRequest(t, p, "", &federationv1.DeliverRequest{Item: &federationv1.DeliverRequest_AuditCheckpoint{AuditCheckpoint: sd}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: store checkpoint: %w", ErrInternal, err)
	}
	n.wake(partners)
	n.log.Debug("audit checkpoint", "seq", seq)
	return seq, nil
}

// RunAudit signs checkpoints as the configuration says until ctx ends. The
// final checkpoint is the server's to make, after its last writer stopped.
func (n *Node) RunAudit(ctx context.Context) error {
	tick := time.NewTicker(min(time.Second, n.aud.cfg.CheckpointInterval))
	defer tick.Stop()
	lastAt := n.clock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		head, _, err := n.st.AuditHead()
		if err != nil {
			n.log.Error("audit head", "error", err)
			continue
		}
		var signed uint64
		_ = n.st.ViewAudit(func(v store.AuditView) error {
			if c, err := v.LastCheckpoint(); err == nil && c != nil {
				signed = c.Seq
			}
			return nil
		})
		due := head > signed && (head-signed >= n.aud.cfg.CheckpointEntries || n.clock().Sub(lastAt) >= n.aud.cfg.CheckpointInterval)
		if !due {
			continue
		}
		if _, err := n.Checkpoint(ctx); err != nil {
			n.log.Error("audit checkpoint", "error", err)
		}
		lastAt = n.clock()
	}
}

// VerifyAudit checks the whole audit log and its checkpoints. A failure
// raises a security event; the verification itself is recorded.
func (n *Node) VerifyAudit(ctx context.Context, by pki.Identity) (audit.Result, error) {
	var res audit.Result
	err := n.st.ViewAudit(func(v store.AuditView) error {
		var err error
		res, err = audit.Verify(v, n.party, n.trust)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("%w: read audit log: %w", ErrInternal, err)
	}
	detail := fmt.Sprintf("ok: %d entries, %d checkpoints", res.Entries, res.Checkpoints)
	if !res.OK {
		n.chainBroken(res)
		detail = fmt.Sprintf("FAILED at entry %d: %s", res.FirstBad, res.Reason)
	}
	if err := n.RecordAudit("audit-verified", by.String(), detail); err != nil {
		return res, err
	}
	return res, nil
}

// ExportItem is one item of an export, in order: the export's signed end
// first (a Checkpoint of kind "audit-export"), then the header, then
// entries and checkpoints (see audit.ExportWriter, which writes them in the
// file's order).
type ExportItem struct {
	Header     *audit.Header
	Seq        uint64
	Canonical  []byte
	Checkpoint *reportv1.Signed
}

// ExportAudit records the export, signs a checkpoint of the head, and
// passes fn the export's signed end (an AuditExport statement of its
// party, time, since, first and last entry and the head at the last), the
// header, then the entries from since on (all when since is zero) with the
// checkpoints among them and that final checkpoint last.
func (n *Node) ExportAudit(ctx context.Context, by pki.Identity, since time.Time, fn func(ExportItem) error) error {
	now := n.clock()
	detail := "all entries"
	if !since.IsZero() {
		detail = "entries since " + since.UTC().Format(time.RFC3339)
	}
	if err := n.RecordAudit("audit-exported", by.String(), detail); err != nil {
		return err
	}
	last, err := n.Checkpoint(ctx)
	if err != nil {
		return err
	}
	var cps []audit.StoredCheckpoint
	first := uint64(0)
	err = n.st.ViewAudit(func(v store.AuditView) error {
		var err error
		if cps, err = v.Checkpoints(); err != nil {
			return err
		}
		return v.Scan(1, func(seq uint64, value []byte) error {
			if seq > last {
				return audit.ErrStop
			}
			c, err := audit.Canonical(value)
			if err != nil {
				return err
			}
			e, err := audit.Decode(c)
			if err != nil {
				return err
			}
			if !e.GetTime().AsTime().Before(since) {
				first = seq
				return audit.ErrStop
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("%w: read audit log: %w", ErrInternal, err)
	}
	h := &audit.Header{Type: "header", Format: audit.ExportFormat, Party: n.party, FirstSeq: first, LastSeq: last}
	if first == 0 {
		h.FirstSeq, h.LastSeq = last+1, last // nothing since then
	}
	// The end binds the export to its own parameters and to the head that
	// the checkpoint just signed (checked over the chain before signing).
	var head []byte
	for _, c := range cps {
		if c.Seq == last {
			if cp, _, err := report.OpenAuditCheckpoint(c.Signed, n.trust); err == nil {
				head = cp.GetHead()
			}
		}
	}
	if head == nil {
		return fmt.Errorf("%w: no verifiable checkpoint of audit entry %d to export up to", ErrInternal, last)
	}
	x := &reportv1.AuditExport{Party: n.party, Exported: timestamppb.New(now), FirstSeq: h.FirstSeq, LastSeq: last, Head: head}
	if !since.IsZero() {
		x.Since = timestamppb.New(since)
	}
	// The header's times are the signed end's, written as it writes them:
	// a verifier compares the two byte for byte.
	h.Exported, h.Since = audit.Stamp(x.GetExported()), audit.Stamp(x.GetSince())
	end, err := report.SignStatement(report.KindAuditExport, x, n.signer)
	if err != nil {
		return fmt.Errorf("%w: sign export: %w", ErrInternal, err)
	}
	_, id, err := report.OpenAuditExport(end, n.trust)
	if err != nil {
		return fmt.Errorf("%w: the export's signed end does not verify: %w", ErrInternal, err)
	}
	h.Node = id.String()
	if err := fn(ExportItem{Checkpoint: end}); err != nil {
		return err
	}
	if err := fn(ExportItem{Header: h}); err != nil {
		return err
	}
	ci := slices.IndexFunc(cps, func(c audit.StoredCheckpoint) bool { return c.Seq >= h.FirstSeq })
	if ci < 0 {
		ci = len(cps)
	}
	for from := h.FirstSeq; from <= last; {
		var batch []ExportItem
		err := n.st.ViewAudit(func(v store.AuditView) error {
			return v.Scan(from, func(seq uint64, value []byte) error {
				if seq > last || len(batch) >= 1000 {
					return audit.ErrStop
				}
				c, err := audit.Canonical(value)
				if err != nil {
					return err
				}
				batch = append(batch, ExportItem{Seq: seq, Canonical: bytes.Clone(c)})
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("%w: read audit log: %w", ErrInternal, err)
		}
		if len(batch) == 0 {
			break // the verifier names what is missing
		}
		for _, it := range batch {
			if err := fn(it); err != nil {
				return err
			}
			for ci < len(cps) && cps[ci].Seq <= it.Seq {
				if err := fn(ExportItem{Checkpoint: cps[ci].Signed}); err != nil {
					return err
				}
				ci++
			}
		}
		from = batch[len(batch)-1].Seq + 1
	}
	return ctx.Err()
}

// AuditDigests returns, for a partner, the hash of each entry asked for,
// computed now from the stored bytes, the number of entries and the latest
// checkpoint.
func (n *Node) AuditDigests(ctx context.Context, seqs []uint64) (uint64, [][]byte, *reportv1.Signed, error) {
	var entries uint64
	digests := make([][]byte, len(seqs))
	var latest *reportv1.Signed
	err := n.st.ViewAudit(func(v store.AuditView) error {
		// The head's seq is the last entry's: no walk of the whole log,
		// which a partner could ask for as often as it likes.
		entries, _ = v.Head()
		for i, s := range seqs {
			if c, err := audit.Canonical(v.Value(s)); err == nil {
				digests[i] = audit.Hash(c)
			}
		}
		c, err := v.LastCheckpoint()
		if c != nil {
			latest = c.Signed
		}
		return err
	})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: read audit log: %w", ErrInternal, err)
	}
	return entries, digests, latest, nil
}

// receiveCheckpoint keeps a partner's signed checkpoint. A second one for
// the same entry with another head is a fork of the partner's log: kept
// out, and raised.
func (n *Node) receiveCheckpoint(now time.Time, from string, sd *reportv1.Signed) (Outcome, error) {
	c, _, err := report.OpenAuditCheckpoint(sd, n.trust)
	if err != nil {
		return Rejected, err
	}
	if c.GetParty() != from {
		return Rejected, fmt.Errorf("a checkpoint of %s's log sent by %s", c.GetParty(), from)
	}
	var old *reportv1.Signed
	err = n.st.Batch(now, func(t *store.Tx) error {
		var err error
		old, err = t.PutPartnerCheckpoint(from, c.GetSeq(), sd)
		return err
	})
	if err != nil {
		return 0, err
	}
	if old == nil {
		return Accepted, nil
	}
	if oc, _, err := report.OpenAuditCheckpoint(old, n.trust); err == nil && !bytes.Equal(oc.GetHead(), c.GetHead()) {
		n.raise(audit.Alert{Kind: audit.AnomalyPartnerFork, Partner: from, Message: fmt.Sprintf("%s signed two different heads for its audit entry %d (on %s and %s): its log was rewritten",
			from, c.GetSeq(), oc.GetTime().AsTime().UTC().Format(time.RFC3339), c.GetTime().AsTime().UTC().Format(time.RFC3339))})
	}
	return Duplicate, nil
}

// DigestFetcher asks a partner's node for its entry hashes (AuditDigests).
type DigestFetcher func(ctx context.Context, party string, seqs []uint64) (entries uint64, digests [][]byte, latest *reportv1.Signed, err error)

// MaxDigestsPerCall bounds one AuditDigests request.
const MaxDigestsPerCall = 4096

// VerifyPartnerAudit compares a partner's log now with every checkpoint
// of it held here. A mismatch raises a security event naming the partner.
func (n *Node) VerifyPartnerAudit(ctx context.Context, by pki.Identity, party string, fetch DigestFetcher) (audit.PartnerResult, error) {
	if _, ok := n.partners[party]; !ok {
		return audit.PartnerResult{}, fmt.Errorf("%w: %q is not a partner of %s", ErrInvalid, party, n.party)
	}
	// A suspended partner is cut off both ways: this node does not call it
	// either, not even to compare logs.
	if n.PartnerSuspended(party) {
		return audit.PartnerResult{}, fmt.Errorf("%w: %s is suspended at this node, which makes no connection to it; reinstate it (tearline partner reinstate %s) to verify its log against the checkpoints held here", ErrSuspended, party, party)
	}
	held, err := n.st.PartnerCheckpoints(party)
	if err != nil {
		return audit.PartnerResult{}, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	var cps []*reportv1.AuditCheckpoint
	var seqs []uint64
	for _, sd := range held {
		c, _, err := report.OpenAuditCheckpoint(sd, n.trust)
		if err != nil || c.GetParty() != party {
			continue
		}
		cps = append(cps, c)
		seqs = append(seqs, c.GetSeq())
	}
	if len(cps) == 0 {
		return audit.PartnerResult{OK: true, Reason: fmt.Sprintf("no checkpoint of %s is held here yet: nothing to compare", party)}, nil
	}
	digests := map[uint64][]byte{}
	var entries uint64
	var latest *reportv1.Signed
	for i := 0; i < len(seqs); i += MaxDigestsPerCall {
		part := seqs[i:min(i+MaxDigestsPerCall, len(seqs))]
		e, ds, l, err := fetch(ctx, party, part)
		if err != nil {
			return audit.PartnerResult{}, fmt.Errorf("%w: %s's node did not answer: %w", ErrUnavailable, party, err)
		}
		if len(ds) != len(part) {
			return audit.PartnerResult{}, fmt.Errorf("%w: %s's node answered %d hashes for %d entries", ErrUnavailable, party, len(ds), len(part))
		}
		for j, s := range part {
			digests[s] = ds[j]
		}
		entries, latest = e, l
	}
	if latest != nil {
		// The latest checkpoint is evidence too (a fork shows here).
		if _, err := n.receiveCheckpoint(n.clock(), party, latest); err != nil {
			n.log.Warn("partner's latest checkpoint refused", "partner", party, "error", err)
		}
	}
	r := audit.ComparePartner(party, cps, entries, digests)
	detail := fmt.Sprintf("%s: ok, %d checkpoints match", party, r.Checkpoints)
	if !r.OK {
		n.raise(audit.Alert{Kind: audit.AnomalyPartnerChain, Partner: party, Message: r.Reason})
		detail = fmt.Sprintf("%s: FAILED: %s", party, r.Reason)
	}
	if err := n.st.Audit(n.clock(), &storev1.AuditEntry{Kind: "audit-partner-verified", Subject: by.String(), Party: party, Detail: detail}); err != nil {
		return r, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return r, nil
}

// ErrUnavailable is a partner that could not be reached.
var ErrUnavailable = errors.New("node: partner unavailable")

// AuditSummary counts what was shared with each partner over the period
// before now.
func (n *Node) AuditSummary(ctx context.Context, period time.Duration) ([]audit.PartnerSummary, time.Time, time.Time, error) {
	to := n.clock()
	from := to.Add(-period)
	var entries []*storev1.AuditEntry
	err := n.st.AuditEntries(1, func(e *storev1.AuditEntry, _ []byte) error {
		if !e.GetTime().AsTime().Before(from) {
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, from, to, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	consents, err := n.st.Consents()
	if err != nil {
		return nil, from, to, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	ws, err := n.st.Withdrawals()
	if err != nil {
		return nil, from, to, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return audit.Summarize(n.party, n.partnerList(), entries, consents, ws, from, to.Add(time.Nanosecond)), from, to, nil
}

// Recipient is one subscriber or partner that received a portion.
type Recipient struct {
	Kind         string // subscriber or partner
	Name         string
	Time         time.Time
	Acknowledged time.Time
	Basis        string
	Via          string
}

// WhoSaw lists, for each portion of a report, who received it from this
// node: each subscriber it was delivered to, each partner whose node
// acknowledged an envelope carrying it, and (at the originator) each party
// a holder reported releasing it to.
func (n *Node) WhoSaw(ctx context.Context, id string) (map[uint32][]Recipient, []uint32, error) {
	evs, err := n.st.Events(id)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	var indexes []uint32
	if held, err := n.st.Report(id); err == nil {
		if v, err := n.vcache.header(held.GetEnvelope().GetHeader(), n.trust); err == nil {
			for _, pd := range v.Header.GetPortions() {
				indexes = append(indexes, pd.GetIndex())
			}
		}
	} else if len(evs) == 0 {
		if err := notHeld(id); errors.Is(err, ErrInvalid) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: report %s is not held here and has no provenance", ErrNotFound, id)
	}
	out := map[uint32][]Recipient{}
	add := func(ix uint32, r Recipient) {
		for _, x := range out[ix] {
			if x.Kind == r.Kind && x.Name == r.Name && x.Via == r.Via {
				return // the first time counts
			}
		}
		out[ix] = append(out[ix], r)
		if !slices.Contains(indexes, ix) {
			indexes = append(indexes, ix)
		}
	}
	type release struct {
		at       time.Time
		portions []*reportv1.Decision
	}
	queued := map[string][]release{} // per partner, awaiting its acknowledgement
	for _, e := range evs {
		at := e.GetTime().AsTime()
		switch e.GetKind() {
		case "delivered":
			for _, ix := range e.GetPortions() {
				add(ix, Recipient{Kind: "subscriber", Name: e.GetSubject(), Time: at})
			}
		case "released", "held":
			var allowed []*reportv1.Decision
			for _, d := range e.GetDecisions() {
				if d.GetAllowed() {
					allowed = append(allowed, d)
				}
			}
			queued[e.GetParty()] = append(queued[e.GetParty()], release{at, allowed})
		case "acknowledged", "refused-by-partner":
			if d := e.GetDetail(); d != "" && d != "duplicate" {
				continue // an item other than an envelope (its kind leads the detail)
			}
			q := queued[e.GetParty()]
			if len(q) == 0 {
				continue
			}
			r := q[0]
			queued[e.GetParty()] = q[1:]
			if e.GetKind() != "acknowledged" {
				continue
			}
			for _, d := range r.portions {
				add(d.GetIndex(), Recipient{Kind: "partner", Name: e.GetParty(), Time: r.at, Acknowledged: at, Basis: basisName(d)})
			}
		case "onward-release":
			for _, d := range e.GetDecisions() {
				add(d.GetIndex(), Recipient{Kind: "partner", Name: e.GetParty(), Time: at, Basis: basisName(d), Via: e.GetSubject()})
			}
		}
	}
	slices.Sort(indexes)
	return out, indexes, nil
}

// basisName is a decision's basis as the CLI shows it: rule[:authority].
func basisName(d *reportv1.Decision) string {
	if d.GetAuthority() != "" {
		return d.GetRule() + ":" + d.GetAuthority()
	}
	return d.GetRule()
}

// AuditCertificate records a certificate event of this node.
func (n *Node) AuditCertificate(kind, detail string) {
	if err := n.RecordAudit(kind, "", detail); err != nil {
		n.log.Error("audit certificate event", "kind", kind, "error", err)
	}
}
