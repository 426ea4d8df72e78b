package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// rawEvents reads a report's provenance keys as stored, without expanding
// shared deliveries.
func rawEvents(t *testing.T, s *Store, reportID string) (events []*storev1.Event, inDeliveries []bool) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketProvenance).Cursor()
		prefix := append([]byte(reportID), 0)
		for k, v := c.Seek(prefix); k != nil && len(k) > len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			shared := len(v) == 0
			if shared {
				// The event is in bucketDeliveries under its seq.
				if v = tx.Bucket(bucketDeliveries).Get(k[len(k)-8:]); v == nil {
					return fmt.Errorf("provenance key %x has an empty value and no shared event", k)
				}
			}
			if seq, ok := refersToEntry(v); ok {
				// The event is its audit entry.
				e, err := entryEvent(tx, k, seq)
				if err != nil {
					return err
				}
				events, inDeliveries = append(events, e), append(inDeliveries, false)
				continue
			}
			e := &storev1.Event{}
			if err := proto.Unmarshal(v, e); err != nil {
				return err
			}
			events, inDeliveries = append(events, e), append(inDeliveries, shared)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return events, inDeliveries
}

// commitAll commits group as one transaction and fails tb if a writer's
// call failed.
func commitAll(tb testing.TB, s *Store, group []*groupCall) {
	tb.Helper()
	s.commitGroup(group)
	for _, c := range group {
		if err := <-c.done; err != nil {
			tb.Fatal(err)
		}
	}
}

// deliveryCall is one subscriber's record of deliveries, as the node's
// RecordDelivered writes it.
func deliveryCall(now time.Time, subject string, reports []string, portions []uint32) *groupCall {
	return &groupCall{now: now, done: make(chan error, 1), fn: func(tx *Tx) error {
		for _, id := range reports {
			if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "delivered", Subject: subject, Portions: portions}); err != nil {
				return err
			}
		}
		return nil
	}}
}

// TestDeliveriesShareAnEvent: the deliveries of a report to many
// subscribers committed together are one stored event; readers see one
// event per subscriber, with its own time, and the audit log's delivery
// entries refer to the shared event's seq.
func TestDeliveriesShareAnEvent(t *testing.T) {
	s := openTestStore(t)
	if err := s.AddEvent(t0, &storev1.Event{ReportId: "r1", Kind: "received", Party: "USA"}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var group []*groupCall
	var subjects []string
	for i := range n {
		subjects = append(subjects, fmt.Sprintf("GBR/svc-%02d", i))
		group = append(group, deliveryCall(t0.Add(time.Duration(i)*time.Millisecond), subjects[i], []string{"r1", "r2"}, []uint32{0, 1}))
	}
	// One subscriber cleared for portion 0 only: its deliveries share an
	// event of their own.
	group = append(group, deliveryCall(t0, "GBR/low", []string{"r1"}, []uint32{0}))
	commitAll(t, s.Store, group)

	raw, inDeliveries := rawEvents(t, s.Store, "r1")
	if len(raw) != 3 {
		t.Fatalf("r1 is stored as %d events, want 3 (received, delivered to %d, delivered to 1)", len(raw), n)
	}
	// Only the event shared by several recipients is kept in the
	// deliveries bucket (its provenance key holding no value).
	if !slices.Equal(inDeliveries, []bool{false, true, false}) {
		t.Errorf("events kept in the deliveries bucket: %v, want only the shared one [false true false]", inDeliveries)
	}
	if got := len(raw[1].GetRecipients()); got != n || raw[1].GetSubject() != "" {
		t.Errorf("shared event has %d recipients and subject %q, want %d and none", got, raw[1].GetSubject(), n)
	}
	if raw[2].GetSubject() != "GBR/low" || len(raw[2].GetRecipients()) != 0 {
		t.Errorf("a delivery with no other recipient is stored as %v, want an ordinary event", raw[2])
	}

	evs, err := s.Events("r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1+n+1 {
		t.Fatalf("Events(r1) = %d events, want %d", len(evs), n+2)
	}
	for i := range n {
		e := evs[1+i]
		if e.GetKind() != "delivered" || e.GetSubject() != subjects[i] || e.GetSeq() != raw[1].GetSeq() ||
			!e.GetTime().AsTime().Equal(t0.Add(time.Duration(i)*time.Millisecond)) || !slices.Equal(e.GetPortions(), []uint32{0, 1}) {
			t.Errorf("event %d = %v, want %s's delivery at its own time with seq %d", i, e, subjects[i], raw[1].GetSeq())
		}
		if len(e.GetRecipients()) != 0 {
			t.Errorf("event %d is handed out with its recipients: %v", i, e)
		}
	}
	if r2, err := s.Events("r2"); err != nil || len(r2) != n {
		t.Errorf("Events(r2) = %d events (%v), want %d", len(r2), err, n)
	}

	// Each subscriber's audit entry names each of its deliveries with the
	// seq of the event that holds it.
	seqs := map[string]uint64{} // report/subject → seq of its event
	for _, id := range []string{"r1", "r2"} {
		evs, err := s.Events(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			seqs[id+"/"+e.GetSubject()] = e.GetSeq()
		}
	}
	audited := 0
	err = s.AuditEntries(1, func(e *storev1.AuditEntry, _ []byte) error {
		for _, d := range e.GetDeliveries() {
			audited++
			want, ok := seqs[d.GetReportId()+"/"+e.GetSubject()]
			if !ok || d.GetEventSeq() != want {
				t.Errorf("%s's delivery of %s is audited with event seq %d, want %d", e.GetSubject(), d.GetReportId(), d.GetEventSeq(), want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if audited != 2*n+1 {
		t.Errorf("%d deliveries audited, want %d", audited, 2*n+1)
	}
	if res := verifyStore(t, s.Store); !res.OK {
		t.Errorf("audit log: %+v", res)
	}
}

// TestSharedDeliveriesSeenInTheirTransaction: a writer reading a report's
// events sees the deliveries its transaction recorded before them, in
// order of seq, though they are written at its end.
func TestSharedDeliveriesSeenInTheirTransaction(t *testing.T) {
	s := openTestStore(t)
	err := s.Update(t0, func(tx *Tx) error {
		for _, e := range []*storev1.Event{
			{ReportId: "r1", Kind: "delivered", Subject: "GBR/a"},
			{ReportId: "r1", Kind: "released", Party: "CAN"},
			{ReportId: "r1", Kind: "delivered", Subject: "GBR/b"},
		} {
			if err := tx.AddEvent(e); err != nil {
				return err
			}
		}
		evs, err := tx.Events("r1")
		if err != nil {
			return err
		}
		var got []string
		for _, e := range evs {
			got = append(got, fmt.Sprintf("%d %s %s%s", e.GetSeq(), e.GetKind(), e.GetSubject(), e.GetParty()))
		}
		if want := []string{"1 delivered GBR/a", "1 delivered GBR/b", "2 released CAN"}; !slices.Equal(got, want) {
			t.Errorf("inside the transaction, Events = %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Events("r1"); err != nil || len(evs) != 3 {
		t.Errorf("after it, Events = %d events (%v), want 3", len(evs), err)
	}
}

// TestSharedDeliveriesAfterAFailedWriter: when one writer of a group fails,
// the others' deliveries are recorded all the same, and nothing of the
// failed one is.
func TestSharedDeliveriesAfterAFailedWriter(t *testing.T) {
	s := openTestStore(t)
	boom := errors.New("boom")
	failing := &groupCall{now: t0, done: make(chan error, 1), fn: func(tx *Tx) error {
		if err := tx.AddEvent(&storev1.Event{ReportId: "r1", Kind: "delivered", Subject: "GBR/failing"}); err != nil {
			return err
		}
		return boom
	}}
	group := []*groupCall{
		deliveryCall(t0, "GBR/a", []string{"r1"}, nil),
		failing,
		deliveryCall(t0, "GBR/b", []string{"r1"}, nil),
	}
	s.commitGroup(group)
	for i, c := range group {
		if err := <-c.done; (c == failing) != errors.Is(err, boom) {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	evs, err := s.Events("r1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.GetSubject())
	}
	if !slices.Equal(got, []string{"GBR/a", "GBR/b"}) {
		t.Errorf("recorded deliveries to %q, want GBR/a and GBR/b", got)
	}
}

// setSchema writes v as the schema version of the closed store at path.
func setSchema(t *testing.T, path, v string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte(v)) }); err != nil {
		t.Fatal(err)
	}
}

func schemaOf(t *testing.T, s *Store) string {
	t.Helper()
	var v string
	if err := s.db.View(func(tx *bolt.Tx) error { v = string(tx.Bucket(bucketMeta).Get([]byte("schema"))); return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

// makeOlder makes the store file at path look written by a build of
// schema v (2 or 3): that schema, and no deliveries bucket.
func makeOlder(t *testing.T, path, v string) {
	t.Helper()
	setSchema(t, path, v)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketDeliveries) }); err != nil {
		t.Fatal(err)
	}
}

// TestOpenMarksOlderSchemas: a store of schema 2 or 3 keeps what it holds,
// gains the deliveries bucket and is marked 4 when opened; the deliveries
// it then records are shared as in a new store.
func TestOpenMarksOlderSchemas(t *testing.T) {
	for _, v := range []string{"2", "3"} {
		t.Run("schema "+v, func(t *testing.T) {
			s := openTestStore(t)
			if err := s.AddEvent(t0, &storev1.Event{ReportId: "r1", Kind: "delivered", Subject: "GBR/a"}); err != nil {
				t.Fatal(err)
			}
			if err := s.Store.Close(); err != nil {
				t.Fatal(err)
			}
			makeOlder(t, s.path, v)
			var err error
			if s.Store, err = Open(s.path); err != nil {
				t.Fatalf("Open of a schema %s file: %v", v, err)
			}
			if got := schemaOf(t, s.Store); got != schemaVersion {
				t.Errorf("schema = %q, want %q", got, schemaVersion)
			}
			if evs, err := s.Events("r1"); err != nil || len(evs) != 1 || evs[0].GetSubject() != "GBR/a" {
				t.Errorf("Events after the upgrade = %v (%v), want GBR/a's delivery", evs, err)
			}
			group := []*groupCall{deliveryCall(t0, "GBR/b", []string{"r1"}, []uint32{0}), deliveryCall(t0, "GBR/c", []string{"r1"}, []uint32{0})}
			commitAll(t, s.Store, group)
			if _, shared := rawEvents(t, s.Store, "r1"); !slices.Equal(shared, []bool{false, true}) {
				t.Errorf("after the upgrade, events kept in the deliveries bucket: %v, want [false true]", shared)
			}
			evs, err := s.Events("r1")
			if err != nil || len(evs) != 3 || evs[1].GetSubject() != "GBR/b" || evs[2].GetSubject() != "GBR/c" {
				t.Errorf("Events = %v (%v), want GBR/a's, GBR/b's and GBR/c's deliveries", evs, err)
			}
		})
	}
}

// A provenance key with an empty value whose shared event is missing is
// reported as corruption, naming the key, not read as an empty event.
func TestMissingSharedEventIsCorrupt(t *testing.T) {
	s := openTestStore(t)
	group := []*groupCall{deliveryCall(t0, "GBR/b", []string{"r1"}, []uint32{0}), deliveryCall(t0, "GBR/c", []string{"r1"}, []uint32{0})}
	commitAll(t, s.Store, group)
	if evs, err := s.Events("r1"); err != nil || len(evs) != 2 {
		t.Fatalf("Events = %v (%v), want two deliveries", evs, err)
	}
	if err := s.rawUpdate(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		k, _ := b.Cursor().First()
		if k == nil {
			return errors.New("no shared event was written")
		}
		return b.Delete(k)
	}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Events("r1")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "shared delivery event that is not held") {
		t.Fatalf("Events with the shared event gone: %v, want ErrCorrupt saying so", err)
	}
}

// BenchmarkFanOutRecord measures recording a fan-out's deliveries as the
// node does: 1,000 subscribers' records of 8 reports each, one writer each,
// committed together; per delivery.
func BenchmarkFanOutRecord(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "node.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const subscribers, reports = 1000, 8
	b.ReportAllocs()
	for i := range b.N {
		ids := make([]string, reports)
		for j := range ids {
			ids[j] = fmt.Sprintf("r%06d-%d", i, j)
		}
		group := make([]*groupCall, subscribers)
		for k := range group {
			group[k] = deliveryCall(t0, fmt.Sprintf("GBR/svc-%04d", k), ids, []uint32{0})
		}
		commitAll(b, s, group)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers*reports), "ns/delivery")
}

// BenchmarkFanOutCommits measures a fan-out phase's delivery commits as
// the bench's fan-out makes them: the same 500 reports delivered, commit
// after commit, to 30 subscribers each (15,000 deliveries a commit, one
// writer a subscriber), so that each commit adds an event to every report
// the earlier ones wrote to. Besides the time per delivery it reports the
// pages each commit writes.
func BenchmarkFanOutCommits(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "node.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const reports, subscribers = 500, 30
	ids := make([]string, reports)
	for i := range ids {
		ids[i] = fmt.Sprintf("0190a000-0000-7000-8000-%012d", i)
	}
	writes := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	before := writes()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		group := make([]*groupCall, subscribers)
		for k := range group {
			group[k] = deliveryCall(t0, fmt.Sprintf("GBR/svc-%04d-%d", k, i), ids, []uint32{0})
		}
		commitAll(b, s, group)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*reports*subscribers), "ns/delivery")
	b.ReportMetric(float64(writes()-before)/float64(b.N), "pages/commit")
}
