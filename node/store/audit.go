package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/audit"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Provenance event kinds that are audited as one "deliveries" entry per
// subscriber and transaction rather than one entry each.
var deliveryKinds = map[string]bool{"delivered": true, "withdrawal-delivered": true, "withheld": true}

// txAudit is a write transaction's audit state.
type txAudit struct {
	loaded   bool
	dirty    bool
	bucket   wbucket
	seq      uint64
	head     []byte
	appended []*storev1.AuditEntry
	// deliveries grouped by subscriber, in order of first appearance, and
	// by subscriber
	batches []*storev1.AuditEntry
	batchOf map[string]*storev1.AuditEntry
}

func (t *Tx) loadHead() {
	if t.audit.loaded {
		return
	}
	t.audit.loaded = true
	t.audit.bucket = t.w(bucketAudit)
	t.audit.seq, t.audit.head = 0, audit.Zero
	if v := t.tx.Bucket(bucketMeta).Get(metaAuditHead); len(v) == 8+audit.HashSize {
		t.audit.seq = binary.BigEndian.Uint64(v[:8])
		t.audit.head = bytes.Clone(v[8:])
	}
}

// Audit appends an entry to the audit log in this transaction; its seq,
// prev and (when unset) time are set here.
func (t *Tx) Audit(e *storev1.AuditEntry) error {
	if t.st != nil && t.st.noAudit.Load() {
		return nil
	}
	t.loadHead()
	e.Seq = t.audit.seq + 1
	e.Prev = t.audit.head
	if e.Time == nil {
		e.Time = timestamppb.New(t.now)
	}
	canonical, err := audit.Encode(e)
	if err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	v := audit.Value(canonical)
	if err := t.audit.bucket.Put(u64(e.Seq), v); err != nil {
		return err
	}
	// The value starts with the entry's hash: the chain's new head.
	t.audit.seq, t.audit.head, t.audit.dirty = e.Seq, v[:audit.HashSize:audit.HashSize], true
	t.audit.appended = append(t.audit.appended, e)
	return nil
}

// auditing reports whether the transaction's entries are written (a
// benchmark may turn the audit log off).
func (t *Tx) auditing() bool { return t.st == nil || !t.st.noAudit.Load() }

// An event's provenance record that refers to its audit entry (schema 5)
// is eventRefMark followed by the entry's seq, big-endian. No encoded
// storev1.Event starts with that byte (its tags are one byte: fields 1 to
// 10), and a shared delivery's record is empty.
const eventRefMark = 0xff

func eventRef(entrySeq uint64) []byte {
	return append([]byte{eventRefMark}, u64(entrySeq)...)
}

// refersToEntry returns the audit entry seq that a provenance record v
// refers to, if it is such a reference.
func refersToEntry(v []byte) (uint64, bool) {
	if len(v) != 9 || v[0] != eventRefMark {
		return 0, false
	}
	return binary.BigEndian.Uint64(v[1:]), true
}

// entryEvent reads the provenance event with key k whose record refers to
// audit entry seq: the entry holds every field of the event.
func entryEvent(tx *bolt.Tx, k []byte, seq uint64) (*storev1.Event, error) {
	v := tx.Bucket(bucketAudit).Get(u64(seq))
	if v == nil {
		return nil, fmt.Errorf("%w: provenance key %x refers to audit entry %d, which is not held", ErrCorrupt, k, seq)
	}
	canonical, err := audit.Canonical(v)
	if err != nil {
		return nil, fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, seq, err)
	}
	e, err := audit.Decode(canonical)
	if err != nil {
		return nil, fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, seq, err)
	}
	if !bytes.Equal(k, provKey(e.GetReportId(), e.GetEventSeq())) {
		return nil, fmt.Errorf("%w: provenance key %x refers to audit entry %d, which records event %d of report %q", ErrCorrupt, k, seq, e.GetEventSeq(), e.GetReportId())
	}
	return audit.EventFromEntry(e), nil
}

// auditEvent audits a provenance event: deliveries are grouped per
// subscriber (written by finish), everything else is one entry.
func (t *Tx) auditEvent(e *storev1.Event) error {
	if !deliveryKinds[e.GetKind()] {
		return t.Audit(audit.EntryFromEvent(e))
	}
	b := t.audit.batchOf[e.GetSubject()]
	if b == nil {
		b = &storev1.AuditEntry{Kind: "deliveries", Subject: e.GetSubject()}
		if t.audit.batchOf == nil {
			t.audit.batchOf = map[string]*storev1.AuditEntry{}
		}
		t.audit.batches = append(t.audit.batches, b)
		t.audit.batchOf[b.Subject] = b
	}
	b.Deliveries = append(b.Deliveries, &storev1.AuditDelivery{
		ReportId: e.GetReportId(), Kind: e.GetKind(), Portions: e.GetPortions(), Decisions: e.GetDecisions(), EventSeq: e.GetSeq(),
	})
	return nil
}

// finish writes what the transaction's audit state holds back: the grouped
// delivery entries and the log's head. Update and Batch call it after fn.
func (t *Tx) finish() error {
	batches := t.audit.batches
	t.audit.batches, t.audit.batchOf = nil, nil
	for _, b := range batches {
		if err := t.Audit(b); err != nil {
			return err
		}
	}
	if !t.audit.dirty {
		return nil
	}
	v := make([]byte, 0, 8+audit.HashSize)
	v = append(v, u64(t.audit.seq)...)
	v = append(v, t.audit.head...)
	t.audit.dirty = false
	return t.w(bucketMeta).Put(metaAuditHead, v)
}

// Audit appends one entry in a transaction of its own.
func (s *Store) Audit(now time.Time, e *storev1.AuditEntry) error {
	return s.Batch(now, func(t *Tx) error { return t.Audit(proto.CloneOf(e)) })
}

// OnAudit registers fn to be called with the entries of every committed
// write transaction, after the commit (the node's anomaly detector). Call
// it once, before the store is used.
func (s *Store) OnAudit(fn func([]*storev1.AuditEntry)) { s.onAudit = fn }

// DisableAuditForBenchmark turns the audit log off, so that a benchmark can
// measure what it costs. It panics outside a test binary: a node always
// audits.
func (s *Store) DisableAuditForBenchmark() {
	if !testing.Testing() {
		panic("store: the audit log can be turned off only in a benchmark")
	}
	s.noAudit.Store(true)
}

// AuditView is a read transaction's view of the audit log; it implements
// audit.Log.
type AuditView struct{ tx *bolt.Tx }

// ViewAudit runs fn with a consistent view of the audit log.
func (s *Store) ViewAudit(fn func(AuditView) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(AuditView{tx}) })
}

// Scan calls fn for every stored entry from seq from on, in order.
func (v AuditView) Scan(from uint64, fn func(seq uint64, value []byte) error) error {
	c := v.tx.Bucket(bucketAudit).Cursor()
	for k, val := c.Seek(u64(from)); k != nil; k, val = c.Next() {
		if len(k) != 8 {
			return fmt.Errorf("%w: audit key %x", ErrCorrupt, k)
		}
		if err := fn(binary.BigEndian.Uint64(k), val); err != nil {
			if errors.Is(err, audit.ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// Value returns the stored value of entry seq (nil if none). It is valid
// only inside the transaction.
func (v AuditView) Value(seq uint64) []byte { return v.tx.Bucket(bucketAudit).Get(u64(seq)) }

// Head is the head the store recorded at its last append.
func (v AuditView) Head() (uint64, []byte) {
	if b := v.tx.Bucket(bucketMeta).Get(metaAuditHead); len(b) == 8+audit.HashSize {
		return binary.BigEndian.Uint64(b[:8]), bytes.Clone(b[8:])
	}
	return 0, audit.Zero
}

// Checkpoints returns this node's signed checkpoints, oldest first.
func (v AuditView) Checkpoints() ([]audit.StoredCheckpoint, error) {
	var out []audit.StoredCheckpoint
	err := v.tx.Bucket(bucketAuditCheckpoints).ForEach(func(k, val []byte) error {
		sd := &reportv1.Signed{}
		if len(k) != 8 || proto.Unmarshal(val, sd) != nil {
			return fmt.Errorf("%w: audit checkpoint %x", ErrCorrupt, k)
		}
		out = append(out, audit.StoredCheckpoint{Seq: binary.BigEndian.Uint64(k), Signed: sd})
		return nil
	})
	return out, err
}

// LastCheckpoint returns the latest checkpoint (nil when none).
func (v AuditView) LastCheckpoint() (*audit.StoredCheckpoint, error) {
	k, val := v.tx.Bucket(bucketAuditCheckpoints).Cursor().Last()
	if k == nil {
		return nil, nil
	}
	sd := &reportv1.Signed{}
	if len(k) != 8 || proto.Unmarshal(val, sd) != nil {
		return nil, fmt.Errorf("%w: audit checkpoint %x", ErrCorrupt, k)
	}
	return &audit.StoredCheckpoint{Seq: binary.BigEndian.Uint64(k), Signed: sd}, nil
}

// AuditHead returns the audit log's head (0 and audit.Zero when empty).
func (s *Store) AuditHead() (uint64, []byte, error) {
	var seq uint64
	var head []byte
	err := s.ViewAudit(func(v AuditView) error {
		seq, head = v.Head()
		return nil
	})
	return seq, head, err
}

// PutAuditCheckpoint keeps a checkpoint this node signed of entry seq.
func (t *Tx) PutAuditCheckpoint(seq uint64, sd *reportv1.Signed) error {
	return put(t.w(bucketAuditCheckpoints), u64(seq), sd)
}

func partnerCheckpointKey(party string, seq uint64) []byte {
	k := make([]byte, 0, len(party)+9)
	k = append(k, party...)
	k = append(k, 0)
	return append(k, u64(seq)...)
}

// PutPartnerCheckpoint keeps a checkpoint that party signed of its entry
// seq. When one is already held for that seq it keeps the first and returns
// it (the caller compares: two different heads for one seq is a fork).
func (t *Tx) PutPartnerCheckpoint(party string, seq uint64, sd *reportv1.Signed) (*reportv1.Signed, error) {
	b := t.w(bucketPartnerCheckpoints)
	k := partnerCheckpointKey(party, seq)
	if v := b.Get(k); v != nil {
		old := &reportv1.Signed{}
		if err := proto.Unmarshal(v, old); err != nil {
			return nil, fmt.Errorf("%w: partner checkpoint %x: %v", ErrCorrupt, k, err)
		}
		return old, nil
	}
	return nil, put(b, k, sd)
}

// PartnerCheckpoints returns the checkpoints party signed and sent here,
// oldest first.
func (s *Store) PartnerCheckpoints(party string) ([]*reportv1.Signed, error) {
	return list(s, bucketPartnerCheckpoints, append([]byte(party), 0), func() *reportv1.Signed { return &reportv1.Signed{} })
}

// AuditEntries calls fn for every entry from seq from on, decoded, in
// order, in one read transaction. It does not verify the chain (the
// verifier does); an entry that does not decode is an error.
func (s *Store) AuditEntries(from uint64, fn func(e *storev1.AuditEntry, canonical []byte) error) error {
	return s.ViewAudit(func(v AuditView) error {
		return v.Scan(from, func(seq uint64, value []byte) error {
			canonical, err := audit.Canonical(value)
			if err != nil {
				return fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, seq, err)
			}
			e, err := audit.Decode(canonical)
			if err != nil {
				return fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, seq, err)
			}
			return fn(e, bytes.Clone(canonical))
		})
	})
}
