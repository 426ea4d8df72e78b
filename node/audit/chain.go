package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// HashSize is the size of an entry hash.
const HashSize = sha256.Size

// ErrCorrupt wraps a stored value that is not an entry.
var ErrCorrupt = errors.New("audit: corrupt entry")

// Zero is the prev hash of the first entry.
var Zero = make([]byte, HashSize)

// Encode returns e's canonical bytes.
func Encode(e *storev1.AuditEntry) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(e)
}

// Hash returns SHA-256 of an entry's canonical bytes.
func Hash(canonical []byte) []byte {
	h := sha256.Sum256(canonical)
	return h[:]
}

// Value is what the store keeps for an entry: its hash, then its bytes.
func Value(canonical []byte) []byte {
	v := make([]byte, 0, HashSize+len(canonical))
	v = append(v, Hash(canonical)...)
	return append(v, canonical...)
}

// Canonical returns the canonical bytes held in a stored value.
func Canonical(value []byte) ([]byte, error) {
	if len(value) < HashSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(value))
	}
	return value[HashSize:], nil
}

// Decode parses canonical bytes.
func Decode(canonical []byte) (*storev1.AuditEntry, error) {
	e := &storev1.AuditEntry{}
	if err := proto.Unmarshal(canonical, e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return e, nil
}

// Fault is the first bad entry found, and why.
type Fault struct {
	Seq    uint64
	Reason string
}

func (f *Fault) Error() string { return fmt.Sprintf("audit entry %d: %s", f.Seq, f.Reason) }

// Chain checks entries one by one, in key order: each must be the next
// sequence number, its stored hash must match its bytes, and it must name
// its own sequence number and the previous entry's hash.
type Chain struct {
	next uint64
	prev []byte
	n    uint64
	// Anchor: when set, the first entry's prev is taken as given (an
	// export that starts after entry 1).
	anchor bool
}

// NewChain starts a check at entry 1.
func NewChain() *Chain { return &Chain{next: 1, prev: Zero} }

// ResumeChain starts a check at entry from, whose prev must be prev.
func ResumeChain(from uint64, prev []byte) *Chain {
	return &Chain{next: from, prev: bytes.Clone(prev)}
}

// AnchoredChain starts a check at entry from, taking its prev as given.
func AnchoredChain(from uint64) *Chain { return &Chain{next: from, anchor: true} }

// Entries is how many entries passed.
func (c *Chain) Entries() uint64 { return c.n }

// Head is the hash of the last entry that passed (Zero before any).
func (c *Chain) Head() []byte { return c.prev }

// Next is the sequence number expected next.
func (c *Chain) Next() uint64 { return c.next }

// AddValue checks a stored value (hash ‖ canonical) kept under key seq.
func (c *Chain) AddValue(seq uint64, value []byte) *Fault {
	if seq != c.next {
		return c.gap(seq)
	}
	canonical, err := Canonical(value)
	if err != nil {
		return &Fault{Seq: seq, Reason: "the stored value is truncated"}
	}
	h := Hash(canonical)
	if !bytes.Equal(value[:HashSize], h) {
		return &Fault{Seq: seq, Reason: "the entry's bytes do not match its stored hash (altered)"}
	}
	return c.add(seq, canonical, h)
}

// Add checks canonical bytes of the entry at seq.
func (c *Chain) Add(seq uint64, canonical []byte) *Fault {
	return c.add(seq, canonical, Hash(canonical))
}

// add checks the entry at seq, whose canonical bytes hash to h. It reads
// only the entry's seq and prev, the chain's links: an entry altered in
// any other field no longer hashes to the next entry's prev (or, the last
// one, to the head the store and its checkpoints recorded), so decoding
// the rest (a delivery entry holds hundreds of deliveries) would find
// nothing more.
func (c *Chain) add(seq uint64, canonical, h []byte) *Fault {
	if seq != c.next {
		return c.gap(seq)
	}
	got, prev, ok := links(canonical)
	if !ok {
		return &Fault{Seq: seq, Reason: "the entry does not decode (altered)"}
	}
	if got != seq {
		return &Fault{Seq: seq, Reason: fmt.Sprintf("the entry kept at %d is entry %d (moved or reordered)", seq, got)}
	}
	if !c.anchor && !bytes.Equal(prev, c.prev) {
		return &Fault{Seq: seq, Reason: fmt.Sprintf("its prev hash is not the hash of entry %d (the chain was altered here)", seq-1)}
	}
	if c.anchor && len(prev) != HashSize {
		return &Fault{Seq: seq, Reason: "its prev hash is malformed"}
	}
	c.anchor = false
	c.prev = h
	c.next++
	c.n++
	return nil
}

// links reads an entry's seq (field 1) and prev (field 3) from its
// canonical bytes as proto.Unmarshal would (the last occurrence wins; a
// field of another wire type is skipped as unknown). ok is false when the
// bytes are not a well-formed message.
func links(canonical []byte) (seq uint64, prev []byte, ok bool) {
	for b := canonical; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			seq, n = protowire.ConsumeVarint(b)
		case num == 3 && typ == protowire.BytesType:
			prev, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return 0, nil, false
		}
		b = b[n:]
	}
	return seq, prev, true
}

func (c *Chain) gap(seq uint64) *Fault {
	if seq > c.next {
		if seq == c.next+1 {
			return &Fault{Seq: c.next, Reason: fmt.Sprintf("entry %d is missing (removed)", c.next)}
		}
		return &Fault{Seq: c.next, Reason: fmt.Sprintf("entries %d to %d are missing (removed)", c.next, seq-1)}
	}
	return &Fault{Seq: seq, Reason: fmt.Sprintf("entry %d appears again after entry %d", seq, c.next-1)}
}

// Result is the outcome of a verification.
type Result struct {
	OK      bool
	Entries uint64
	// FirstBad is the first bad sequence number (0 when OK).
	FirstBad uint64
	Reason   string
	// Checkpoints verified, and the sequence number of the latest.
	Checkpoints   int
	CheckpointSeq uint64
	// End is an export's signed end, when VerifyExport verified one.
	End *reportv1.AuditExport
}

// fail records f in r if it is the earliest fault so far.
func (r *Result) fail(f *Fault) {
	if f == nil {
		return
	}
	if r.OK || f.Seq < r.FirstBad {
		r.OK, r.FirstBad, r.Reason = false, f.Seq, f.Error()
	}
}
