package store

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/audit"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// rawProvenance returns the provenance record of reportID's event seq.
func rawProvenance(t *testing.T, s *Store, reportID string, seq uint64) []byte {
	t.Helper()
	var v []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		v = append([]byte(nil), tx.Bucket(bucketProvenance).Get(provKey(reportID, seq))...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// fullEvent is an event with every field a provenance event audited on its
// own carries.
func fullEvent(reportID string) *storev1.Event {
	return &storev1.Event{
		ReportId: reportID, Kind: "released", Party: "GBR", Subject: "spiffe://usa.tearline.test/party/USA/officer/o",
		Decisions: []*reportv1.Decision{
			{Index: 1, Allowed: true, Rule: "origin", Banner: "SECRET//REL TO GBR, USA", Party: "GBR", Message: "released by its originator"},
			{Index: 2, Rule: "rel-to", Banner: "SECRET//NOFORN", Party: "GBR", Message: "NOFORN", Next: "ask the originator"},
		},
		Detail: "by the route", Portions: []uint32{1},
	}
}

// TestEventsReferToTheirAuditEntry: an event audited as one entry of its
// own is kept once, in that entry; its provenance record only refers to
// it, and Events hands out the event as it was added. A delivery, audited
// in a grouped entry, is kept whole as before.
func TestEventsReferToTheirAuditEntry(t *testing.T) {
	s := openTestStore(t)
	want := fullEvent("r1")
	if err := s.AddEvent(t0, want); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvent(t0, &storev1.Event{ReportId: "r1", Kind: "delivered", Subject: "GBR/svc", Portions: []uint32{1}}); err != nil {
		t.Fatal(err)
	}

	v := rawProvenance(t, s.Store, "r1", want.GetSeq())
	seq, ok := refersToEntry(v)
	if !ok {
		t.Fatalf("the released event's provenance record is %d bytes (%x), want a reference to its audit entry", len(v), v)
	}
	var entry *storev1.AuditEntry
	if err := s.ViewAudit(func(l AuditView) error {
		var err error
		canonical, err := audit.Canonical(l.Value(seq))
		if err == nil {
			entry, err = audit.Decode(canonical)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if entry.GetKind() != "released" || entry.GetEventSeq() != want.GetSeq() || len(entry.GetDecisions()) != 2 {
		t.Errorf("the referred audit entry is %v, want the released event's", entry)
	}
	if _, ok := refersToEntry(rawProvenance(t, s.Store, "r1", want.GetSeq()+1)); ok {
		t.Error("a delivery's provenance record refers to an audit entry; its entry is grouped, it must be kept whole")
	}

	evs, err := s.Events("r1")
	if err != nil || len(evs) != 2 {
		t.Fatalf("Events(r1) = %v, %v; want the two events", evs, err)
	}
	if !proto.Equal(want, evs[0]) {
		t.Errorf("the event read back differs from the one added:\n read %v\nadded %v", evs[0], want)
	}
	if evs[1].GetKind() != "delivered" || evs[1].GetSubject() != "GBR/svc" {
		t.Errorf("the delivery read back is %v", evs[1])
	}

	// The same after a reopen (the records are what the file holds).
	s.reopen()
	again, err := s.Events("r1")
	if err != nil || len(again) != 2 || !proto.Equal(again[0], want) {
		t.Errorf("after a reopen Events(r1) = %v, %v; want the released event as added first", again, err)
	}
}

// TestEventReferenceCorrupt: a provenance record that refers to an audit
// entry that is missing, or that records another event, is reported
// corrupt with its key; the store's other reports still read.
func TestEventReferenceCorrupt(t *testing.T) {
	for name, ref := range map[string]func(seq uint64) []byte{
		"missing entry": func(seq uint64) []byte { return eventRef(seq + 1000) },
		"another event": func(seq uint64) []byte { return eventRef(seq - 1) },
	} {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t)
			if err := s.AddEvent(t0, fullEvent("r0")); err != nil {
				t.Fatal(err)
			}
			e := fullEvent("r1")
			if err := s.AddEvent(t0, e); err != nil {
				t.Fatal(err)
			}
			seq, ok := refersToEntry(rawProvenance(t, s.Store, "r1", e.GetSeq()))
			if !ok {
				t.Fatal("no reference to corrupt")
			}
			if err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketProvenance).Put(provKey("r1", e.GetSeq()), ref(seq))
			}); err != nil {
				t.Fatal(err)
			}
			if evs, err := s.Events("r1"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Events of a record referring to the wrong entry = %v, %v; want ErrCorrupt", evs, err)
			}
			if evs, err := s.Events("r0"); err != nil || len(evs) != 1 {
				t.Errorf("Events(r0) beside the corrupt record = %v, %v", evs, err)
			}
		})
	}
}

// TestOpenMarksSchema4: a store of schema 4 holds its events whole; it
// opens, is marked 5, reads them as before, and the events it records
// then refer to their audit entries.
func TestOpenMarksSchema4(t *testing.T) {
	s := openTestStore(t)
	old := fullEvent("r1")
	old.Seq, old.Time = 1, timestamppb.New(t0)
	if err := s.Store.Close(); err != nil {
		t.Fatal(err)
	}
	// A version 4 build wrote the event whole.
	db, err := bolt.Open(s.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		v, err := proto.Marshal(old)
		if err != nil {
			return err
		}
		if _, err := tx.Bucket(bucketProvenance).NextSequence(); err != nil {
			return err
		}
		if err := tx.Bucket(bucketProvenance).Put(provKey("r1", 1), v); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("4"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Store, err = Open(s.path); err != nil {
		t.Fatalf("Open of a schema 4 file: %v", err)
	}
	if got := schemaOf(t, s.Store); got != schemaVersion {
		t.Errorf("schema = %q, want %q", got, schemaVersion)
	}
	added := fullEvent("r1")
	added.Kind = "acknowledged"
	if err := s.AddEvent(t0, added); err != nil {
		t.Fatal(err)
	}
	if _, ok := refersToEntry(rawProvenance(t, s.Store, "r1", added.GetSeq())); !ok {
		t.Error("an event recorded after the upgrade is kept whole, want a reference to its audit entry")
	}
	evs, err := s.Events("r1")
	if err != nil || len(evs) != 2 || !proto.Equal(evs[0], old) || !proto.Equal(evs[1], added) {
		t.Errorf("Events(r1) after the upgrade = %v, %v; want the old event whole, then the new one", evs, err)
	}
}

// TestEventsWithoutAudit: with the audit log off (a benchmark's setting)
// an event has no entry to refer to, and is kept whole.
func TestEventsWithoutAudit(t *testing.T) {
	s := openTestStore(t)
	s.DisableAuditForBenchmark()
	want := fullEvent("r1")
	if err := s.AddEvent(t0, want); err != nil {
		t.Fatal(err)
	}
	if _, ok := refersToEntry(rawProvenance(t, s.Store, "r1", want.GetSeq())); ok {
		t.Fatal("with the audit log off, the event refers to an entry that was not written")
	}
	if evs, err := s.Events("r1"); err != nil || len(evs) != 1 || !proto.Equal(evs[0], want) {
		t.Errorf("Events(r1) = %v, %v; want the event as added", evs, err)
	}
}
