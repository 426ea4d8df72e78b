package store

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Consent reads a consent record.
func (t *Tx) Consent(id string) (*storev1.ConsentRecord, error) {
	return get(t.tx.Bucket(bucketConsents), []byte(id), &storev1.ConsentRecord{})
}

// PutConsent writes a consent record.
func (t *Tx) PutConsent(c *storev1.ConsentRecord) error {
	return put(t.w(bucketConsents), []byte(c.GetId()), c)
}

// Crisis reads a crisis record.
func (t *Tx) Crisis(id string) (*storev1.CrisisRecord, error) {
	return get(t.tx.Bucket(bucketCrises), []byte(id), &storev1.CrisisRecord{})
}

// PutCrisis writes a crisis record.
func (t *Tx) PutCrisis(id string, c *storev1.CrisisRecord) error {
	if err := put(t.w(bucketCrises), []byte(id), c); err != nil {
		return err
	}
	e := &storev1.AuditEntry{Kind: "crisis-declared", Detail: "crisis declaration " + id}
	d := &reportv1.CrisisDeclaration{}
	if proto.Unmarshal(c.GetDeclaration().GetPayload(), d) == nil {
		e.Party = d.GetOriginator()
		e.Detail = fmt.Sprintf("crisis declaration %s of %s: topics %v, parties %v, up to %s, until %s", id, d.GetOriginator(), d.GetTopics(), d.GetParties(), d.GetMaxClassification(), d.GetExpires().AsTime().UTC().Format(time.RFC3339))
	}
	if c.GetEnd() != nil {
		e.Kind, e.Detail = "crisis-ended", "ended: "+e.Detail
	}
	return t.Audit(e)
}

// AddSecurityEvent appends a security event; seq and time are set here.
func (t *Tx) AddSecurityEvent(e *storev1.SecurityEvent) error {
	b := t.w(bucketSecurity)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if e.Time == nil {
		e.Time = timestamppb.New(t.now)
	}
	if err := put(b, u64(seq), e); err != nil {
		return err
	}
	return t.Audit(&storev1.AuditEntry{
		Kind: "security:" + e.GetKind(), Party: e.GetPartner(), ReportId: e.GetReportId(), Detail: e.GetMessage(),
		Decisions: []*reportv1.Decision{{Rule: e.GetRule(), Party: e.GetPartner(), Message: e.GetMessage()}},
	})
}

// AddCrisisRelease records a release made under a crisis declaration.
func (t *Tx) AddCrisisRelease(r *storev1.CrisisRelease) error {
	b := t.w(bucketCrisisReleases)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if r.Time == nil {
		r.Time = timestamppb.New(t.now)
	}
	return put(b, provKey(r.GetCrisisId(), seq), r)
}

// QuarantineSeq is the seq of the last quarantined item (after Quarantine).
func (t *Tx) QuarantineSeq() uint64 { return t.tx.Bucket(bucketQuarantine).Sequence() }

func list[T proto.Message](s *Store, bucket []byte, prefix []byte, mk func() T) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			m := mk()
			if err := proto.Unmarshal(v, m); err != nil {
				return fmt.Errorf("%w: %s %x: %v", ErrCorrupt, bucket, k, err)
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Consents returns every consent record, by id.
func (s *Store) Consents() ([]*storev1.ConsentRecord, error) {
	return list(s, bucketConsents, nil, func() *storev1.ConsentRecord { return &storev1.ConsentRecord{} })
}

// Crises returns every crisis record, by id. The records are shared with
// other callers: they must not be modified.
func (s *Store) Crises() ([]*storev1.CrisisRecord, error) {
	c := &s.crises
	gen := c.gen.Load()
	c.mu.Lock()
	if c.ok && c.at == gen {
		out := slices.Clone(c.list)
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	out, err := list(s, bucketCrises, nil, func() *storev1.CrisisRecord { return &storev1.CrisisRecord{} })
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	// Kept with the gen loaded before the read: a commit to the bucket
	// since then has moved gen on, so this list will not be answered.
	c.list, c.at, c.ok = out, gen, true
	c.mu.Unlock()
	return slices.Clone(out), nil
}

// crisisCache holds the crisis records as a read found them. gen moves on
// after every commit that wrote to bucketCrises (write, wal.go); a list
// read at an older gen is read again. A list is kept with the gen loaded
// before the read that found it, so a commit between the two leaves it
// stale by gen, never by content.
type crisisCache struct {
	gen  atomic.Uint64
	mu   sync.Mutex
	list []*storev1.CrisisRecord
	at   uint64
	ok   bool
}

// SecurityEvents returns the security events, oldest first.
func (s *Store) SecurityEvents() ([]*storev1.SecurityEvent, error) {
	return list(s, bucketSecurity, nil, func() *storev1.SecurityEvent { return &storev1.SecurityEvent{} })
}

// CrisisReleases returns the releases recorded under a declaration.
func (s *Store) CrisisReleases(crisisID string) ([]*storev1.CrisisRelease, error) {
	return list(s, bucketCrisisReleases, append([]byte(crisisID), 0), func() *storev1.CrisisRelease { return &storev1.CrisisRelease{} })
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx, now: time.Time{}}) })
}

func suspensionKey(kind, name string) []byte { return []byte(kind + "/" + name) }

// PutSuspension records a suspension.
func (t *Tx) PutSuspension(s *storev1.Suspension) error {
	if err := put(t.w(bucketSuspensions), suspensionKey(s.GetKind(), s.GetName()), s); err != nil {
		return err
	}
	return t.Audit(suspensionEntry("suspended", s.GetKind(), s.GetName(), s.GetBy(), s.GetReason()))
}

func suspensionEntry(kind, what, name, by, reason string) *storev1.AuditEntry {
	e := &storev1.AuditEntry{Kind: kind, Subject: by, Detail: what + " " + name}
	if what == "partner" {
		e.Party = name
	}
	if reason != "" {
		e.Detail += ": " + reason
	}
	return e
}

// DeleteSuspension removes a suspension, recording who lifted it; it
// reports whether there was one.
func (t *Tx) DeleteSuspension(kind, name, by string) (bool, error) {
	b := t.w(bucketSuspensions)
	k := suspensionKey(kind, name)
	if b.Get(k) == nil {
		return false, nil
	}
	if err := b.Delete(k); err != nil {
		return true, err
	}
	return true, t.Audit(suspensionEntry("reinstated", kind, name, by, ""))
}

// Suspensions returns every suspension in force.
func (s *Store) Suspensions() ([]*storev1.Suspension, error) {
	return list(s, bucketSuspensions, nil, func() *storev1.Suspension { return &storev1.Suspension{} })
}

// Withdrawal reads the withdrawal record of a report (at its originator).
func (t *Tx) Withdrawal(reportID string) (*storev1.WithdrawalRecord, error) {
	return get(t.tx.Bucket(bucketWithdrawals), []byte(reportID), &storev1.WithdrawalRecord{})
}

// PutWithdrawal writes a withdrawal record.
func (t *Tx) PutWithdrawal(w *storev1.WithdrawalRecord) error {
	return put(t.w(bucketWithdrawals), []byte(w.GetReportId()), w)
}

// AppendFeed adds a held report to the feed again (at the next position),
// so that subscribers see a change to it, such as its withdrawal.
func (t *Tx) AppendFeed(id string) error {
	feed := t.w(bucketFeed)
	seq, err := feed.NextSequence()
	if err != nil {
		return err
	}
	t.fedGrown = true
	return feed.Put(u64(seq), []byte(id))
}

// Events reads a report's provenance events inside the transaction.
func (t *Tx) Events(reportID string) ([]*storev1.Event, error) {
	var out []*storev1.Event
	prefix := append([]byte(reportID), 0)
	c := t.tx.Bucket(bucketProvenance).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) == 0 {
			e, err := sharedEvent(t.tx, k)
			if err != nil {
				return nil, err
			}
			out = expand(out, e)
			continue
		}
		if seq, ok := refersToEntry(v); ok {
			e, err := entryEvent(t.tx, k, seq)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
			continue
		}
		e := &storev1.Event{}
		if err := proto.Unmarshal(v, e); err != nil {
			return nil, fmt.Errorf("%w: event %x: %v", ErrCorrupt, k, err)
		}
		out = expand(out, e)
	}
	if t.group == nil || len(t.group.byReport[reportID]) == 0 {
		return out, nil
	}
	// Deliveries this transaction recorded, not yet written.
	for _, e := range t.group.byReport[reportID] {
		out = expand(out, e)
	}
	slices.SortStableFunc(out, func(a, b *storev1.Event) int { return cmp.Compare(a.GetSeq(), b.GetSeq()) })
	return out, nil
}

// DropQueuedEnvelopes removes from every partner's outbox the envelopes of
// a report not yet acknowledged (a withdrawal must not be overtaken by the
// content it withdraws). It returns the parties whose outbox it changed.
func (t *Tx) DropQueuedEnvelopes(reportID string) ([]string, error) {
	var parties []string
	ob := t.w(bucketOutbox)
	err := ob.ForEachBucket(func(party []byte) error {
		b := ob.Sub(party)
		var drop [][]byte
		err := b.ForEach(func(k, v []byte) error {
			it := &storev1.OutboxItem{}
			if err := proto.Unmarshal(v, it); err != nil {
				return fmt.Errorf("%w: outbox %s %x: %v", ErrCorrupt, party, k, err)
			}
			if it.GetReportId() == reportID && it.GetEnvelope() != nil {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if len(drop) > 0 {
			parties = append(parties, string(party))
		}
		return nil
	})
	return parties, err
}

// Withdrawals returns every withdrawal record, by report id.
func (s *Store) Withdrawals() ([]*storev1.WithdrawalRecord, error) {
	return list(s, bucketWithdrawals, nil, func() *storev1.WithdrawalRecord { return &storev1.WithdrawalRecord{} })
}
