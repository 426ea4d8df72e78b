package audit

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tearline/tearline/node/report"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// StoredCheckpoint is a signed checkpoint as kept, under its sequence number.
type StoredCheckpoint struct {
	Seq    uint64
	Signed *reportv1.Signed
}

// Log is a consistent (one read transaction) view of a stored audit log.
type Log interface {
	// Scan calls fn for each stored entry from sequence number from on,
	// in key order; fn returning ErrStop ends the scan without error.
	Scan(from uint64, fn func(seq uint64, value []byte) error) error
	// Checkpoints returns the node's own signed checkpoints in order.
	Checkpoints() ([]StoredCheckpoint, error)
	// Head is the sequence number and hash the store recorded at its last
	// append (0 and Zero for an empty log).
	Head() (uint64, []byte)
}

// ErrStop ends a Scan early.
var ErrStop = errors.New("audit: stop scan")

// Verify checks a whole log: the chain of every entry, the head the store
// recorded, and every checkpoint's signature (by a node of party, against
// trust) and head. The result names the first bad sequence number; the
// error is non-nil only when the log could not be read.
func Verify(log Log, party string, trust report.Verifier) (Result, error) {
	cps, err := log.Checkpoints()
	if err != nil {
		return Result{}, err
	}
	opened := make([]*reportv1.AuditCheckpoint, len(cps))
	want := map[uint64]bool{}
	res := Result{OK: true}
	for i, sc := range cps {
		c, _, err := report.OpenAuditCheckpoint(sc.Signed, trust)
		switch {
		case err != nil:
			res.fail(&Fault{Seq: sc.Seq, Reason: fmt.Sprintf("the checkpoint kept at %d does not verify: %v", sc.Seq, err)})
		case c.GetParty() != party || c.GetSeq() != sc.Seq:
			res.fail(&Fault{Seq: sc.Seq, Reason: fmt.Sprintf("the checkpoint kept at %d is %s's checkpoint at %d", sc.Seq, c.GetParty(), c.GetSeq())})
		default:
			opened[i] = c
			want[c.GetSeq()] = true
		}
	}
	chain := NewChain()
	digests := map[uint64][]byte{}
	var fault *Fault
	var total uint64
	err = log.Scan(1, func(seq uint64, value []byte) error {
		total++
		if fault != nil {
			return nil // count the rest
		}
		if f := chain.AddValue(seq, value); f != nil {
			fault = f
			return nil
		}
		if want[seq] {
			digests[seq] = chain.Head()
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	res.Entries = total
	res.fail(fault)
	last := chain.Next() - 1
	if fault == nil {
		hseq, hhash := log.Head()
		switch {
		case hseq > last:
			res.fail(&Fault{Seq: last + 1, Reason: fmt.Sprintf("the store's head is entry %d but the log ends at %d: entries were removed from the end", hseq, last)})
		case hseq < last:
			res.fail(&Fault{Seq: hseq + 1, Reason: fmt.Sprintf("entries after the store's head (%d) were added outside the node", hseq)})
		case !bytes.Equal(hhash, chain.Head()):
			res.fail(&Fault{Seq: last, Reason: "the last entry is not the one the store recorded as its head (rewritten)"})
		}
	}
	res.matchCheckpoints(opened, digests, 0, last, fault, "the log")
	return res, nil
}

// matchCheckpoints checks signed checkpoints (nil ones are skipped)
// against the digests of the entries up to last: each must name an entry
// that exists and carry its hash. A checkpoint at or past a fault already
// found is not judged (the chain there is not known). what names the
// entries in messages. It returns the last checkpoint that matched (from
// before any) and whether one covers last.
func (res *Result) matchCheckpoints(cps []*reportv1.AuditCheckpoint, digests map[uint64][]byte, before, last uint64, fault *Fault, what string) (lastGood uint64, covered bool) {
	lastGood = before
	for _, c := range cps {
		if c == nil {
			continue
		}
		s := c.GetSeq()
		switch {
		case fault != nil && s >= fault.Seq:
		case s > last:
			res.fail(&Fault{Seq: last + 1, Reason: fmt.Sprintf("checkpoint %d (signed %s) is beyond the last of %s, %d: entries were removed", s, stamp(c), what, last)})
		case !bytes.Equal(digests[s], c.GetHead()):
			res.fail(&Fault{Seq: lastGood + 1, Reason: fmt.Sprintf("checkpoint %d (signed %s) does not match %s: an entry in %d..%d was rewritten", s, stamp(c), what, lastGood+1, s)})
		default:
			lastGood = s
			res.Checkpoints++
			res.CheckpointSeq = s
			covered = covered || s == last
		}
	}
	return lastGood, covered
}

func stamp(c *reportv1.AuditCheckpoint) string {
	return c.GetTime().AsTime().UTC().Format(time.RFC3339)
}

// VerifyTail checks the entries after a checkpoint the node signed (at
// from-1, with hash prev) up to the head: the check made before signing the
// next checkpoint. It returns the chain's head.
func VerifyTail(log Log, from uint64, prev []byte) (Result, uint64, []byte, error) {
	chain := ResumeChain(from, prev)
	var fault *Fault
	err := log.Scan(from, func(seq uint64, value []byte) error {
		if f := chain.AddValue(seq, value); f != nil {
			fault = f
			return ErrStop
		}
		return nil
	})
	if err != nil {
		return Result{}, 0, nil, err
	}
	res := Result{OK: true, Entries: chain.Next() - 1}
	res.fail(fault)
	if fault == nil {
		hseq, hhash := log.Head()
		if hseq != chain.Next()-1 || !bytes.Equal(hhash, chain.Head()) {
			res.fail(&Fault{Seq: min(hseq, chain.Next()-1) + 1, Reason: "the log's end is not the head the store recorded"})
		}
	}
	return res, chain.Next() - 1, chain.Head(), nil
}

// PartnerResult is the outcome of comparing a partner's log with the
// checkpoints it signed and sent here.
type PartnerResult struct {
	OK             bool
	Checkpoints    int
	PartnerEntries uint64
	// When not OK: the first sequence number that may have been rewritten
	// and the first checkpoint that no longer matches.
	FirstBad, Mismatch uint64
	// LastGood is the last checkpoint that matches (0: none).
	LastGood uint64
	Reason   string
}

// ComparePartner compares the partner's entry hashes now (digests, by
// sequence number; missing when it has no such entry) with the checkpoints
// of that partner held here.
func ComparePartner(party string, held []*reportv1.AuditCheckpoint, entries uint64, digests map[uint64][]byte) PartnerResult {
	cps := slices.Clone(held)
	slices.SortFunc(cps, func(a, b *reportv1.AuditCheckpoint) int { return cmpU64(a.GetSeq(), b.GetSeq()) })
	r := PartnerResult{OK: true, PartnerEntries: entries}
	for _, c := range cps {
		s := c.GetSeq()
		d, ok := digests[s]
		switch {
		case s > entries || !ok || len(d) == 0:
			r.OK, r.FirstBad, r.Mismatch = false, min(entries, r.LastGood)+1, s
			r.Reason = fmt.Sprintf("%s signed a checkpoint at entry %d on %s, but its log now has %d entries: entries were removed", party, s, stamp(c), entries)
		case !bytes.Equal(d, c.GetHead()):
			r.OK, r.FirstBad, r.Mismatch = false, r.LastGood+1, s
			r.Reason = fmt.Sprintf("%s's log no longer matches the checkpoint it signed at entry %d on %s: an entry in %d..%d was rewritten", party, s, stamp(c), r.LastGood+1, s)
		default:
			r.LastGood = s
			r.Checkpoints++
			continue
		}
		r.Checkpoints++
		return r
	}
	return r
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
