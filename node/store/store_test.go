package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

func TestFeed(t *testing.T) {
	s := openTestStore(t)
	ids := []string{"r1", "r2", "r3", "r4", "r5"}
	for i, id := range ids {
		r := stored(id, "GBR")
		s.put(id, r)
		if r.GetFeedSeq() != uint64(i+1) {
			t.Errorf("PutReport(%s) set feed seq %d, want %d", id, r.GetFeedSeq(), i+1)
		}
		if !r.GetStored().AsTime().Equal(t0) {
			t.Errorf("PutReport(%s) set stored %v, want %v", id, r.GetStored().AsTime(), t0)
		}
	}

	if got := s.feedIDs(0); !slices.Equal(got, ids) {
		t.Errorf("Feed(0) = %v, want %v", got, ids)
	}
	es, err := s.Feed(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Seq != 3 || es[1].Seq != 4 || es[0].Report.GetFeedSeq() != 3 {
		t.Errorf("Feed(2, 2) = %v, want seqs 3, 4", es)
	}
	for _, after := range []uint64{5, 6, math.MaxUint64} {
		if es, err := s.Feed(after, 10); err != nil || len(es) != 0 {
			t.Errorf("Feed(%d) = %d entries, %v; want none", after, len(es), err)
		}
	}
	if es, err := s.Feed(0, 0); err != nil || len(es) != 0 {
		t.Errorf("Feed(0, 0) = %d entries, %v; want none", len(es), err)
	}

	latest, err := s.Latest(3)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range latest {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{5, 4, 3}) {
		t.Errorf("Latest(3) seqs = %v, want [5 4 3]", seqs)
	}
	if all, _ := s.Latest(100); len(all) != 5 || all[4].Seq != 1 {
		t.Errorf("Latest(100) = %d entries", len(all))
	}
	if n := s.count(); n != 5 {
		t.Errorf("Count = %d, want 5", n)
	}

	// Storing a held report again (with more portions) keeps its position,
	// whether the caller passes the value it read back or a fresh one.
	r2, err := s.Report("r2")
	if err != nil {
		t.Fatal(err)
	}
	r2.Envelope.Portions = append(r2.Envelope.Portions, &reportv1.Portion{Index: 2, Body: []byte("more")})
	s.put("r2", r2)
	fresh := stored("r4", "CAN")
	if err := s.Update(t0.Add(time.Hour), func(tx *Tx) error { return tx.PutReport("r4", fresh) }); err != nil {
		t.Fatal(err)
	}
	if fresh.GetFeedSeq() != 4 || !fresh.GetStored().AsTime().Equal(t0) {
		t.Errorf("re-put of r4 got feed seq %d, stored %v; want 4, %v", fresh.GetFeedSeq(), fresh.GetStored().AsTime(), t0)
	}
	if got := s.feedIDs(0); !slices.Equal(got, ids) {
		t.Errorf("Feed after re-puts = %v, want %v", got, ids)
	}
	if n := s.count(); n != 5 {
		t.Errorf("Count after re-puts = %d, want 5", n)
	}
	got, err := s.Report("r2")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetEnvelope().GetPortions()) != 2 || got.GetFeedSeq() != 2 {
		t.Errorf("Report(r2) after update = %v", got)
	}
	if got, _ := s.Report("r4"); got.GetReceivedFrom() != "CAN" {
		t.Errorf("Report(r4) was not replaced: %v", got)
	}

	// The next new report still gets the next position.
	r6 := stored("r6", "")
	s.put("r6", r6)
	if r6.GetFeedSeq() != 6 {
		t.Errorf("r6 feed seq = %d, want 6", r6.GetFeedSeq())
	}

	if _, err := s.Report("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Report(unknown) = %v, want ErrNotFound", err)
	}
	err = s.Update(t0, func(tx *Tx) error {
		if r, err := tx.Report("r1"); err != nil || r.GetFeedSeq() != 1 {
			return fmt.Errorf("Tx.Report(r1) = %v, %v", r, err)
		}
		if _, err := tx.Report("nope"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("Tx.Report(unknown) = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestPutReportAfterRollback stores, in a transaction that fails, a value
// that is then stored again: the retry must give it a feed position,
// although the failed attempt had already numbered it.
func TestPutReportAfterRollback(t *testing.T) {
	s := openTestStore(t)
	r := stored("r1", "")
	boom := errors.New("boom")
	err := s.Update(t0, func(tx *Tx) error {
		if err := tx.PutReport("r1", r); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	s.put("r1", r)
	if got := s.feedIDs(0); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("Feed = %v, want [r1]", got)
	}
}

func TestReceipts(t *testing.T) {
	s := openTestStore(t)
	d1 := bytes.Repeat([]byte{1}, 32)
	d2 := bytes.Repeat([]byte{2}, 32)
	seen := func(id string, d []byte) bool {
		t.Helper()
		var ok bool
		if err := s.Update(t0, func(tx *Tx) error { ok = tx.SeenReceipt(id, d); return nil }); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if seen("abc", d1) {
		t.Fatal("receipt seen before it was marked")
	}
	if err := s.Update(t0, func(tx *Tx) error { return tx.MarkReceipt("abc", d1) }); err != nil {
		t.Fatal(err)
	}
	if !seen("abc", d1) {
		t.Error("marked receipt not seen")
	}
	if seen("abc", d2) || seen("abcd", d1) || seen("ab", d1) {
		t.Error("a receipt of another hop or report is seen")
	}
	s.reopen()
	if !seen("abc", d1) {
		t.Error("receipt lost on reopen")
	}
}

func TestEvents(t *testing.T) {
	s := openTestStore(t)
	// Two reports whose ids share a prefix, their events interleaved.
	given := t0.Add(-time.Hour)
	add := []*storev1.Event{
		{ReportId: "abc", Kind: "published"},
		{ReportId: "abcd", Kind: "received", Party: "GBR"},
		{ReportId: "abc", Kind: "released", Party: "GBR", Time: timestamppb.New(given)},
		{ReportId: "abcd", Kind: "delivered"},
		{ReportId: "abc", Kind: "delivered"},
	}
	for i, e := range add {
		var err error
		if i%2 == 0 {
			err = s.AddEvent(t0, e)
		} else {
			err = s.Update(t0, func(tx *Tx) error { return tx.AddEvent(e) })
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.GetSeq() != uint64(i+1) {
			t.Errorf("event %d got seq %d, want %d", i, e.GetSeq(), i+1)
		}
	}
	check := func(id string, wantKinds ...string) {
		t.Helper()
		es, err := s.Events(id)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		var last uint64
		for _, e := range es {
			if e.GetReportId() != id {
				t.Errorf("Events(%s) returned an event of %s", id, e.GetReportId())
			}
			if e.GetSeq() <= last {
				t.Errorf("Events(%s) out of order: %d after %d", id, e.GetSeq(), last)
			}
			last = e.GetSeq()
			kinds = append(kinds, e.GetKind())
		}
		if !slices.Equal(kinds, wantKinds) {
			t.Errorf("Events(%s) = %v, want %v", id, kinds, wantKinds)
		}
	}
	check("abc", "published", "released", "delivered")
	check("abcd", "received", "delivered")
	check("ab")
	check("abcde")

	es, err := s.Events("abc")
	if err != nil {
		t.Fatal(err)
	}
	if !es[0].GetTime().AsTime().Equal(t0) || !es[1].GetTime().AsTime().Equal(given) {
		t.Errorf("event times = %v, %v; want %v (set) and %v (given)", es[0].GetTime().AsTime(), es[1].GetTime().AsTime(), t0, given)
	}
}

func TestOutbox(t *testing.T) {
	s := openTestStore(t)
	err := s.Update(t0, func(tx *Tx) error {
		for i := range 5 {
			if err := tx.Enqueue("GBR", &storev1.OutboxItem{ReportId: fmt.Sprintf("g%d", i+1)}); err != nil {
				return err
			}
			if i < 2 {
				if err := tx.Enqueue("CAN", &storev1.OutboxItem{ReportId: fmt.Sprintf("c%d", i+1)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	items := func(party string, after uint64, limit int) []string {
		t.Helper()
		es, err := s.Outbox(party, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.Item.GetReportId()))
			if !e.Item.GetQueued().AsTime().Equal(t0) {
				t.Errorf("item %d queued %v, want %v", e.Seq, e.Item.GetQueued().AsTime(), t0)
			}
		}
		return out
	}
	length := func(party string) int {
		t.Helper()
		n, err := s.OutboxLen(party)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := func(got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("outbox = %v, want %v", got, want)
		}
	}

	want(items("GBR", 0, 100), "1:g1", "2:g2", "3:g3", "4:g4", "5:g5")
	want(items("GBR", 0, 2), "1:g1", "2:g2")
	want(items("GBR", 2, 2), "3:g3", "4:g4")
	want(items("GBR", 4, 2), "5:g5")
	want(items("GBR", 5, 2))
	want(items("GBR", math.MaxUint64, 2))
	want(items("CAN", 0, 100), "1:c1", "2:c2")
	want(items("AUS", 0, 100))
	if n := length("GBR"); n != 5 {
		t.Errorf("OutboxLen(GBR) = %d, want 5", n)
	}
	if n := length("CAN"); n != 2 {
		t.Errorf("OutboxLen(CAN) = %d, want 2", n)
	}
	if n := length("AUS"); n != 0 {
		t.Errorf("OutboxLen(AUS) = %d, want 0", n)
	}

	// Ack removes exactly that item, and records the event.
	if err := s.Ack(t0, "GBR", Acked{3, &storev1.Event{ReportId: "g3", Kind: "delivered", Party: "GBR"}}); err != nil {
		t.Fatal(err)
	}
	want(items("GBR", 0, 100), "1:g1", "2:g2", "4:g4", "5:g5")
	want(items("CAN", 0, 100), "1:c1", "2:c2")
	if n := length("GBR"); n != 4 {
		t.Errorf("OutboxLen(GBR) after ack = %d, want 4", n)
	}
	if es, _ := s.Events("g3"); len(es) != 1 || es[0].GetKind() != "delivered" || es[0].GetParty() != "GBR" {
		t.Errorf("Events(g3) after ack = %v", es)
	}
	// Acks of another party's seq, of an unknown seq, or to an unknown
	// party remove nothing.
	for _, a := range []struct {
		party string
		seq   uint64
	}{{"CAN", 5}, {"GBR", 3}, {"GBR", 99}, {"AUS", 1}} {
		if err := s.Ack(t0, a.party, Acked{Seq: a.seq}); err != nil {
			t.Errorf("Ack(%s, %d): %v", a.party, a.seq, err)
		}
	}
	want(items("GBR", 0, 100), "1:g1", "2:g2", "4:g4", "5:g5")
	want(items("CAN", 0, 100), "1:c1", "2:c2")

	// The removal and the event are one commit: if the event cannot be
	// stored, the item stays.
	bad := &storev1.Event{ReportId: "g4", Kind: "delivered\xff"} // not UTF-8: does not marshal
	if err := s.Ack(t0, "GBR", Acked{4, bad}); err == nil {
		t.Fatal("Ack with an event that cannot be stored succeeded")
	}
	want(items("GBR", 0, 100), "1:g1", "2:g2", "4:g4", "5:g5")
	if es, _ := s.Events("g4"); len(es) != 0 {
		t.Errorf("failed ack recorded events: %v", es)
	}

	// Enqueued after acks, an item gets a new seq, never a reused one.
	if err := s.Update(t0, func(tx *Tx) error { return tx.Enqueue("GBR", &storev1.OutboxItem{ReportId: "g6"}) }); err != nil {
		t.Fatal(err)
	}
	want(items("GBR", 4, 100), "5:g5", "6:g6")
}

func TestCursor(t *testing.T) {
	s := openTestStore(t)
	if n, err := s.Cursor("svc-a"); err != nil || n != 0 {
		t.Fatalf("Cursor of a new subscriber = %d, %v", n, err)
	}
	if err := s.SaveCursor(t0, "svc-a", 42); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursor(t0, "svc-b", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursor(t0, "svc-a", 43); err != nil {
		t.Fatal(err)
	}
	s.reopen()
	for sub, want := range map[string]uint64{"svc-a": 43, "svc-b": 7, "svc": 0} {
		if n, err := s.Cursor(sub); err != nil || n != want {
			t.Errorf("Cursor(%s) = %d, %v; want %d", sub, n, err, want)
		}
	}
}

func TestQuarantine(t *testing.T) {
	s := openTestStore(t)
	for i, rule := range []string{"bad-signature", "bad-chain", "noforn"} {
		q := &storev1.QuarantineItem{Sender: "GBR", Rule: rule, Envelope: &reportv1.Envelope{Header: &reportv1.Signed{Payload: []byte{byte(i)}}}}
		if err := s.Update(t0, func(tx *Tx) error { return tx.Quarantine(q) }); err != nil {
			t.Fatal(err)
		}
		if q.GetSeq() != uint64(i+1) {
			t.Errorf("quarantine item %d seq = %d", i, q.GetSeq())
		}
	}
	s.reopen()
	qs, err := s.Quarantined()
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for i, q := range qs {
		rules = append(rules, q.GetRule())
		if q.GetSeq() != uint64(i+1) || !q.GetTime().AsTime().Equal(t0) || q.GetEnvelope().GetHeader().GetPayload()[0] != byte(i) {
			t.Errorf("quarantined item %d = %v", i, q)
		}
	}
	if !slices.Equal(rules, []string{"bad-signature", "bad-chain", "noforn"}) {
		t.Errorf("Quarantined rules = %v", rules)
	}
}

// TestUpdateIsAtomic: a transaction whose function fails leaves nothing
// behind, and does not wake feed readers.
func TestUpdateIsAtomic(t *testing.T) {
	s := openTestStore(t)
	ch := s.FeedChanged()
	boom := errors.New("boom")
	err := s.Update(t0, func(tx *Tx) error {
		steps := []error{
			tx.PutReport("r1", stored("r1", "GBR")),
			tx.MarkReceipt("r1", []byte("hop")),
			tx.AddEvent(&storev1.Event{ReportId: "r1", Kind: "received"}),
			tx.Enqueue("CAN", &storev1.OutboxItem{ReportId: "r1"}),
			tx.Quarantine(&storev1.QuarantineItem{Sender: "GBR"}),
		}
		for _, err := range steps {
			if err != nil {
				return err
			}
		}
		if _, err := tx.Report("r1"); err != nil || !tx.SeenReceipt("r1", []byte("hop")) {
			return fmt.Errorf("writes are not visible inside their transaction (%v)", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if isClosed(ch) {
		t.Error("a failed transaction woke feed readers")
	}
	checkEmpty := func() {
		t.Helper()
		if n := s.count(); n != 0 {
			t.Errorf("Count = %d", n)
		}
		if ids := s.feedIDs(0); len(ids) != 0 {
			t.Errorf("Feed = %v", ids)
		}
		if es, _ := s.Events("r1"); len(es) != 0 {
			t.Errorf("Events = %v", es)
		}
		if n, _ := s.OutboxLen("CAN"); n != 0 {
			t.Errorf("OutboxLen = %d", n)
		}
		if qs, _ := s.Quarantined(); len(qs) != 0 {
			t.Errorf("Quarantined = %v", qs)
		}
		var seen bool
		s.Update(t0, func(tx *Tx) error { seen = tx.SeenReceipt("r1", []byte("hop")); return nil })
		if seen {
			t.Error("receipt kept")
		}
	}
	checkEmpty()
	s.reopen()
	checkEmpty()

	// The sequences were rolled back too: the first real writes get 1.
	r := stored("r1", "GBR")
	e := &storev1.Event{ReportId: "r1"}
	if err := s.Update(t0, func(tx *Tx) error {
		if err := tx.PutReport("r1", r); err != nil {
			return err
		}
		return tx.AddEvent(e)
	}); err != nil {
		t.Fatal(err)
	}
	if r.GetFeedSeq() != 1 || e.GetSeq() != 1 {
		t.Errorf("after a rollback, feed seq %d and event seq %d; want 1 and 1", r.GetFeedSeq(), e.GetSeq())
	}
}

func TestFeedChanged(t *testing.T) {
	s := openTestStore(t)
	ch := s.FeedChanged()
	if isClosed(ch) {
		t.Fatal("FeedChanged closed before any write")
	}
	// Writes that do not add to the feed do not wake readers.
	if err := s.AddEvent(t0, &storev1.Event{ReportId: "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursor(t0, "svc", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t0, func(tx *Tx) error { return tx.Enqueue("GBR", &storev1.OutboxItem{}) }); err != nil {
		t.Fatal(err)
	}
	if isClosed(ch) {
		t.Fatal("FeedChanged closed by writes that did not add to the feed")
	}
	// A new report does.
	s.put("r1", stored("r1", ""))
	if !isClosed(ch) {
		t.Fatal("FeedChanged not closed after a report was added")
	}
	ch2 := s.FeedChanged()
	if isClosed(ch2) {
		t.Fatal("the next FeedChanged channel is already closed")
	}
	// Storing the same report again does not add to the feed.
	s.put("r1", stored("r1", "GBR"))
	if isClosed(ch2) {
		t.Fatal("FeedChanged closed by an update of a held report")
	}
	// A report added through Batch wakes readers too.
	if err := s.Batch(t0, func(tx *Tx) error { return tx.PutReport("r2", stored("r2", "")) }); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch2) {
		t.Fatal("FeedChanged not closed after Batch added a report")
	}
}

// TestBatchConcurrent writes from 50 goroutines with Batch, some of whose
// functions fail (which makes bbolt run the others again): every write of
// the successful ones is present exactly once.
func TestBatchConcurrent(t *testing.T) {
	s := openTestStore(t)
	const n = 50
	failing := func(i int) bool { return i%7 == 3 }
	var wg sync.WaitGroup
	errs := make([]error, n)
	reports := make([]*storev1.StoredReport, n)
	for i := range n {
		id := fmt.Sprintf("r%02d", i)
		// Built outside the function, as a caller holding a value does.
		r := stored(id, "GBR")
		reports[i] = r
		wg.Go(func() {
			errs[i] = s.Batch(t0, func(tx *Tx) error {
				if err := tx.PutReport(id, r); err != nil {
					return err
				}
				if err := tx.MarkReceipt(id, []byte{byte(i)}); err != nil {
					return err
				}
				if err := tx.AddEvent(&storev1.Event{ReportId: id, Kind: "received"}); err != nil {
					return err
				}
				if err := tx.Enqueue("CAN", &storev1.OutboxItem{ReportId: id}); err != nil {
					return err
				}
				if failing(i) {
					return fmt.Errorf("refused %s", id)
				}
				return nil
			})
		})
	}
	wg.Wait()

	var wantIDs []string
	for i, err := range errs {
		id := fmt.Sprintf("r%02d", i)
		if failing(i) {
			if err == nil || !strings.Contains(err.Error(), "refused "+id) {
				t.Errorf("Batch %s = %v, want its own error", id, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Batch %s: %v", id, err)
		}
		wantIDs = append(wantIDs, id)
	}

	es, err := s.Feed(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for i, e := range es {
		if e.Seq == 0 || i > 0 && e.Seq <= es[i-1].Seq {
			t.Errorf("feed seqs not increasing at %d: %d", i, e.Seq)
		}
		if e.Report.GetFeedSeq() != e.Seq {
			t.Errorf("report %s has feed seq %d but is at %d", e.Report.GetEnvelope().GetPortions()[0].GetTitle(), e.Report.GetFeedSeq(), e.Seq)
		}
		gotIDs = append(gotIDs, e.Report.GetEnvelope().GetPortions()[0].GetTitle())
	}
	slices.Sort(gotIDs)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("feed holds %v\nwant %v", gotIDs, wantIDs)
	}
	if c := s.count(); c != len(wantIDs) {
		t.Errorf("Count = %d, want %d", c, len(wantIDs))
	}
	if c, _ := s.OutboxLen("CAN"); c != len(wantIDs) {
		t.Errorf("OutboxLen = %d, want %d", c, len(wantIDs))
	}
	seqs := map[uint64]bool{}
	for i := range n {
		id := fmt.Sprintf("r%02d", i)
		evs, err := s.Events(id)
		if err != nil {
			t.Fatal(err)
		}
		var seen bool
		s.Update(t0, func(tx *Tx) error { seen = tx.SeenReceipt(id, []byte{byte(i)}); return nil })
		want := 1
		if failing(i) {
			want = 0
		}
		if len(evs) != want || seen != (want == 1) {
			t.Errorf("%s: %d events and receipt %v; want %d", id, len(evs), seen, want)
		}
		for _, e := range evs {
			if seqs[e.GetSeq()] {
				t.Errorf("event seq %d used twice", e.GetSeq())
			}
			seqs[e.GetSeq()] = true
		}
		if want == 1 {
			if r, err := s.Report(id); err != nil || r.GetFeedSeq() != reports[i].GetFeedSeq() {
				t.Errorf("%s: stored feed seq %d (%v), caller's value says %d", id, r.GetFeedSeq(), err, reports[i].GetFeedSeq())
			}
		}
	}
}

func TestDurability(t *testing.T) {
	s := openTestStore(t)
	r := stored("r1", "GBR")
	e := &storev1.Event{ReportId: "r1", Kind: "received", Party: "GBR", Decisions: []*reportv1.Decision{{Index: 1, Allowed: true, Rule: "origin"}}}
	it := &storev1.OutboxItem{ReportId: "r1", Envelope: r.GetEnvelope()}
	err := s.Update(t0, func(tx *Tx) error {
		return errors.Join(
			tx.PutReport("r1", r),
			tx.AddEvent(e),
			tx.Enqueue("CAN", it),
			tx.MarkReceipt("r1", []byte("hop")),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursor(t0, "svc", 1); err != nil {
		t.Fatal(err)
	}

	s.reopen()

	got, err := s.Report("r1")
	if err != nil || !proto.Equal(got, r) {
		t.Errorf("Report after reopen = %v, %v\nwant %v", got, err, r)
	}
	if es, err := s.Events("r1"); err != nil || len(es) != 1 || !proto.Equal(es[0], e) {
		t.Errorf("Events after reopen = %v, %v", es, err)
	}
	if ob, err := s.Outbox("CAN", 0, 10); err != nil || len(ob) != 1 || !proto.Equal(ob[0].Item, it) {
		t.Errorf("Outbox after reopen = %v, %v", ob, err)
	}
	if n, _ := s.Cursor("svc"); n != 1 {
		t.Errorf("Cursor after reopen = %d", n)
	}
	if ids := s.feedIDs(0); !slices.Equal(ids, []string{"r1"}) {
		t.Errorf("Feed after reopen = %v", ids)
	}
	// The next report continues the feed.
	r2 := stored("r2", "")
	s.put("r2", r2)
	if r2.GetFeedSeq() != 2 {
		t.Errorf("feed seq after reopen = %d, want 2", r2.GetFeedSeq())
	}
}

// TestValuesOutliveTransactions reads values, closes the store (unmapping
// the file) and uses them: they must be copies, not views of the map.
func TestValuesOutliveTransactions(t *testing.T) {
	s := openTestStore(t)
	s.put("r1", stored("r1", "GBR"))
	if err := s.Update(t0, func(tx *Tx) error { return tx.Enqueue("CAN", &storev1.OutboxItem{ReportId: "r1"}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvent(t0, &storev1.Event{ReportId: "r1", Kind: "published"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Report("r1")
	if err != nil {
		t.Fatal(err)
	}
	feed, _ := s.Feed(0, 10)
	latest, _ := s.Latest(10)
	ob, _ := s.Outbox("CAN", 0, 10)
	evs, _ := s.Events("r1")
	if err := s.Store.Close(); err != nil {
		t.Fatal(err)
	}
	body := r.GetEnvelope().GetPortions()[0].GetBody()
	if string(body) != "body of r1" || string(feed[0].Report.GetEnvelope().GetPortions()[0].GetBody()) != "body of r1" ||
		latest[0].Report.GetReceivedFrom() != "GBR" || ob[0].Item.GetReportId() != "r1" || evs[0].GetKind() != "published" {
		t.Errorf("values read before Close changed after it")
	}
	body[0] = 'B' // writable: not the read-only map
	s.reopen()
	if r, _ := s.Report("r1"); string(r.GetEnvelope().GetPortions()[0].GetBody()) != "body of r1" {
		t.Errorf("changing a returned value changed the store")
	}
}

func TestCorruptValue(t *testing.T) {
	s := openTestStore(t)
	s.put("r1", stored("r1", ""))
	err := s.rawUpdate(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReports).Put([]byte("r1"), []byte{0xff, 0xff, 0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The corruption is on disk, under the store: reopened, it holds no
	// decoded copy of r1 as it was written.
	s.reopen()
	if _, err := s.Report("r1"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Report of a corrupt value = %v, want ErrCorrupt", err)
	}
	if _, err := s.Feed(0, 10); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Feed over a corrupt value = %v, want ErrCorrupt", err)
	}
	if _, err := s.Latest(10); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Latest over a corrupt value = %v, want ErrCorrupt", err)
	}
	err = s.Update(t0, func(tx *Tx) error { return tx.PutReport("r1", stored("r1", "")) })
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("PutReport over a corrupt value = %v, want ErrCorrupt", err)
	}
}

func TestOpenRefusesOtherSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte("6"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path)
	if !errors.Is(err, ErrSchema) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a schema 6 file = %v, want ErrSchema", err)
	}
	if s != nil {
		t.Errorf("Open returned a store with an error")
	}
	if !strings.Contains(err.Error(), `"5"`) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the version and the file", err)
	}

	// The file was closed (its lock released) and left as it was.
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("reopen after a refused Open: %v", err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		var names []string
		tx.ForEach(func(name []byte, _ *bolt.Bucket) error { names = append(names, string(name)); return nil })
		if !slices.Equal(names, []string{"meta"}) {
			t.Errorf("buckets after a refused Open = %v, want [meta]", names)
		}
		return nil
	})
	checkFile(t, path)
}

func TestOpenRefusesGarbage(t *testing.T) {
	big := make([]byte, 64<<10)
	rand.Read(big)
	for name, content := range map[string][]byte{
		"text":       []byte("this is not a database\n"),
		"random 64K": big,
		"zero pages": make([]byte, 16<<10),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			var s *Store
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Open panicked on a garbage file: %v", p)
					}
				}()
				s, err = Open(path)
			}()
			if err == nil {
				s.Close()
				t.Fatal("Open of a garbage file succeeded")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if errors.Is(err, ErrSchema) {
				t.Errorf("garbage reported as a schema mismatch: %v", err)
			}
		})
	}
}

func TestOpenCreatesSchema(t *testing.T) {
	s := openTestStore(t)
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing", b)
			}
		}
		if v := tx.Bucket(bucketMeta).Get([]byte("schema")); string(v) != schemaVersion {
			t.Errorf("schema = %q, want %q", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != s.path {
		t.Errorf("Path = %s, want %s", s.Path(), s.path)
	}
	// Opening again keeps the file and its version.
	s.put("r1", stored("r1", ""))
	s.reopen()
	if n := s.count(); n != 1 {
		t.Errorf("Count after reopen = %d", n)
	}
}

// TestBatchGroupsWriters: writers that arrive while a commit is running
// share the next commit instead of one commit each.
func TestBatchGroupsWriters(t *testing.T) {
	s := openTestStore(t)
	const n = 100
	release := make(chan struct{})
	entered := make(chan struct{})
	var mu sync.Mutex
	txs := map[*bolt.Tx]int{}
	var wg sync.WaitGroup
	wg.Go(func() {
		// The first writer holds its commit open until the others wait.
		if err := s.Batch(t0, func(tx *Tx) error {
			close(entered)
			<-release
			return tx.AddEvent(&storev1.Event{ReportId: "first", Kind: "received"})
		}); err != nil {
			t.Error(err)
		}
	})
	<-entered
	for i := range n {
		wg.Go(func() {
			if err := s.Batch(t0, func(tx *Tx) error {
				mu.Lock()
				txs[tx.tx]++
				mu.Unlock()
				return tx.AddEvent(&storev1.Event{ReportId: fmt.Sprintf("r%03d", i), Kind: "received"})
			}); err != nil {
				t.Error(err)
			}
		})
	}
	for c, _ := s.waiting(); c < n; c, _ = s.waiting() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if len(txs) != 1 {
		t.Errorf("%d writers waiting during a commit took %d commits, want 1", n, len(txs))
	}
	for i := range n {
		if evs, err := s.Events(fmt.Sprintf("r%03d", i)); err != nil || len(evs) != 1 {
			t.Errorf("r%03d: %d events (%v), want 1", i, len(evs), err)
		}
	}
}

// TestCloseCommitsWaitingWriters: Close lets the writes already handed to
// Batch commit, and those handed to BatchLater that wait for company, and
// refuses later ones.
func TestCloseCommitsWaitingWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.laterWait = time.Hour // the BatchLater write waits for Close
	release, batchErr := holdCommit(s, "kept")
	laterErr := queueLater(s, "kept-later") // queued while the commit above runs
	closeErr := make(chan error, 1)
	go func() { closeErr <- s.Close() }()
	time.Sleep(20 * time.Millisecond) // Close is now waiting for the commit
	close(release)
	if err := <-batchErr; err != nil {
		t.Fatalf("write handed to Batch before Close: %v", err)
	}
	answered(t, laterErr, "a write handed to BatchLater before Close")
	if err := <-closeErr; err != nil {
		t.Fatal(err)
	}
	if err := s.Batch(t0, func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Batch after Close = %v, want ErrClosed", err)
	}
	if err := s.BatchLater(t0, func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("BatchLater after Close = %v, want ErrClosed", err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"kept", "kept-later"} {
		if evs, err := s.Events(id); err != nil || len(evs) != 1 {
			t.Errorf("%s after reopening: %d events (%v), want the one written before Close", id, len(evs), err)
		}
	}
}

// TestFeedSeesRewrites: Feed shares decoded reports between readers, but a
// report rewritten by a commit is read anew.
func TestFeedSeesRewrites(t *testing.T) {
	s := openTestStore(t)
	r := stored("r1", "GBR")
	if err := s.Update(t0, func(tx *Tx) error { return tx.PutReport("r1", r) }); err != nil {
		t.Fatal(err)
	}
	first, err := s.Feed(0, 10)
	if err != nil || len(first) != 1 {
		t.Fatalf("Feed = %v, %v", first, err)
	}
	again, _ := s.Feed(0, 10)
	if again[0].Report != first[0].Report {
		t.Error("a second reader decoded the report again instead of sharing it")
	}
	grown := stored("r1", "GBR")
	grown.Envelope.Portions = append(grown.Envelope.Portions, &reportv1.Portion{Index: 2, Title: "second"})
	for _, write := range []func(func(*Tx) error) error{
		func(fn func(*Tx) error) error { return s.Update(t0, fn) },
		func(fn func(*Tx) error) error { return s.Batch(t0, fn) },
	} {
		if err := write(func(tx *Tx) error { return tx.PutReport("r1", proto.CloneOf(grown)) }); err != nil {
			t.Fatal(err)
		}
		after, err := s.Feed(0, 10)
		if err != nil || len(after) != 1 {
			t.Fatalf("Feed = %v, %v", after, err)
		}
		if n, want := len(after[0].Report.GetEnvelope().GetPortions()), len(grown.Envelope.Portions); n != want {
			t.Errorf("after the rewrite Feed shows %d portions, want %d", n, want)
		}
		grown.Envelope.Portions = append(grown.Envelope.Portions, &reportv1.Portion{Index: uint32(len(grown.Envelope.Portions) + 1)})
	}
}

// TestFeedServesNewReportsAsWritten: a report new to the store is served to
// Feed's readers as written, not decoded again; one rewritten in the same
// commit, or written by a transaction that failed, is not.
func TestFeedServesNewReportsAsWritten(t *testing.T) {
	for _, write := range []struct {
		name string
		fn   func(*testStore, func(*Tx) error) error
	}{
		{"Update", func(s *testStore, fn func(*Tx) error) error { return s.Update(t0, fn) }},
		{"Batch", func(s *testStore, fn func(*Tx) error) error { return s.Batch(t0, fn) }},
	} {
		t.Run(write.name, func(t *testing.T) {
			s := openTestStore(t)
			written := stored("new", "GBR")
			rewritten := stored("twice", "CAN")
			err := write.fn(s, func(tx *Tx) error {
				if err := tx.PutReport("new", written); err != nil {
					return err
				}
				if err := tx.PutReport("twice", stored("twice", "GBR")); err != nil {
					return err
				}
				return tx.PutReport("twice", rewritten)
			})
			if err != nil {
				t.Fatal(err)
			}
			failed := stored("failed", "GBR")
			errFail := errors.New("the writer fails")
			if err := write.fn(s, func(tx *Tx) error {
				if err := tx.PutReport("failed", failed); err != nil {
					return err
				}
				return errFail
			}); !errors.Is(err, errFail) {
				t.Fatalf("failing writer: %v", err)
			}
			es, err := s.Feed(0, 10)
			if err != nil || len(es) != 2 {
				t.Fatalf("Feed = %d entries, %v; want new and twice", len(es), err)
			}
			if es[0].Report != written {
				t.Error("the new report was decoded again instead of served as written")
			}
			if es[1].Report == rewritten {
				t.Error("a report rewritten in its commit was served from the cache")
			}
			if !proto.Equal(es[1].Report, rewritten) {
				t.Errorf("twice: Feed shows %v, want the rewrite %v", es[1].Report, rewritten)
			}
			s.reopen()
			es, err = s.Feed(0, 10)
			if err != nil || len(es) != 2 || !proto.Equal(es[0].Report, written) {
				t.Errorf("after reopening, Feed = %v, %v; want the report as written", es, err)
			}
		})
	}
}

// TestDecodedCacheKeepsTheLatest: the reports written last stay cached
// when more than a generation's worth were written since (the cache used
// to empty itself when full, dropping the ones a lagging reader was about
// to read), and a rewrite drops a report from either generation.
func TestDecodedCacheKeepsTheLatest(t *testing.T) {
	s := openTestStore(t)
	const n = maxDecoded + 1
	written := make([]*storev1.StoredReport, n)
	if err := s.Update(t0, func(tx *Tx) error {
		for i := range written {
			id := fmt.Sprintf("r%05d", i)
			written[i] = stored(id, "GBR")
			if err := tx.PutReport(id, written[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	es, err := s.Feed(n-100, 100)
	if err != nil || len(es) != 100 {
		t.Fatalf("Feed = %d entries, %v", len(es), err)
	}
	for i, e := range es {
		if e.Report != written[n-100+i] {
			t.Fatalf("entry %d of the last 100 was decoded again: the cache dropped it", n-100+i)
		}
	}
	// r00100 is in the previous generation now; a rewrite drops it.
	if err := s.Update(t0, func(tx *Tx) error { return tx.PutReport("r00100", stored("r00100", "CAN")) }); err != nil {
		t.Fatal(err)
	}
	es, err = s.Feed(100, 1)
	if err != nil || len(es) != 1 || es[0].Report.GetReceivedFrom() != "CAN" {
		t.Fatalf("after the rewrite Feed = %v, %v; want the rewritten r00100", es, err)
	}
}

// TestSeedSkipsRewritten: a report new in one writer of a commit and
// rewritten by a later writer of the same commit is not put in the decoded
// cache as the first writer wrote it, with any number of rewrites (a list
// or a set is searched); the other new reports are.
func TestSeedSkipsRewritten(t *testing.T) {
	for _, others := range []int{0, 20} {
		c := newReportCache()
		first, kept := stored("x", "GBR"), stored("y", "GBR")
		changed := []string{"x"}
		for i := range others {
			changed = append(changed, fmt.Sprintf("z%d", i))
		}
		c.invalidate(changed)
		c.seed([]decodedReport{{"x", first}, {"y", kept}}, changed)
		if c.get("x") != nil {
			t.Errorf("%d rewrites: the first writer's version of a rewritten report was cached", len(changed))
		}
		if c.get("y") != kept {
			t.Errorf("%d rewrites: a new report that was not rewritten is not cached", len(changed))
		}
	}
}

// TestStats: each commit counts once, whether alone (Update) or shared by
// a group (Batch), and makes at least two writes (a page and the meta
// page); a failed write transaction counts nothing.
func TestStats(t *testing.T) {
	s := openTestStore(t)
	before := s.Stats()
	s.put("r1", stored("r1", ""))
	one := s.Stats()
	if one.Commits != before.Commits+1 || one.Writes < before.Writes+2 {
		t.Errorf("after one commit: %+v, before %+v; want one more commit and at least two more writes", one, before)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.Batch(t0, func(tx *Tx) error { return tx.PutReport(fmt.Sprint("b", i), stored("b", "")) }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	after := s.Stats()
	if n := after.Commits - one.Commits; n < 1 || n > 8 {
		t.Errorf("8 batched writers made %d commits, want 1 to 8", n)
	}
	if after.Writes < one.Writes+2*(after.Commits-one.Commits) {
		t.Errorf("writes %d → %d for %d commits", one.Writes, after.Writes, after.Commits-one.Commits)
	}
	// Each commit takes time, and its writes happen within it.
	for _, d := range [][2]Stats{{before, one}, {one, after}} {
		commit, write := d[1].CommitTime-d[0].CommitTime, d[1].WriteTime-d[0].WriteTime
		if write <= 0 || commit < write {
			t.Errorf("commit time %v, of which writing %v, from %+v to %+v", commit, write, d[0], d[1])
		}
	}
	if err := s.Update(t0, func(*Tx) error { return errors.New("no") }); err == nil {
		t.Fatal("a failing write committed")
	}
	if got := s.Stats(); got != after {
		t.Errorf("after a failed write: %+v, want %+v", got, after)
	}
}

// TestCommitHistogram: each commit is counted within the first bound its
// time does not exceed; a commit that takes over 20 ms is not counted
// within 20 ms.
func TestCommitHistogram(t *testing.T) {
	s := openTestStore(t)
	before := s.Stats()
	s.put("r1", stored("r1", ""))
	if err := s.Batch(t0, func(tx *Tx) error {
		time.Sleep(25 * time.Millisecond) // inside the transaction
		return tx.PutReport("slow", stored("slow", ""))
	}); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	last := len(CommitBounds) - 1
	if got := after.CommitsWithin[last] - before.CommitsWithin[last]; got != 2 || after.Commits-before.Commits != 2 {
		t.Fatalf("two commits well within %v: %d commits, %d of them counted (%+v)", CommitBounds[last], after.Commits-before.Commits, got, after)
	}
	i20, _ := slices.BinarySearch(CommitBounds[:], 20*time.Millisecond)
	if got := after.CommitsWithin[i20] - before.CommitsWithin[i20]; got > 1 {
		t.Errorf("%d commits counted within 20 ms; the one that slept 25 ms is among them (%v)", got, after.CommitsWithin)
	}
	for i := 1; i < len(CommitBounds); i++ {
		if after.CommitsWithin[i] < after.CommitsWithin[i-1] {
			t.Errorf("counts are not cumulative: %v", after.CommitsWithin)
		}
	}
}

// TestLatestListsAReportOnce: a report added to the feed again (as a
// withdrawal does) is listed once, at its newest position, and the limit
// counts reports, not feed entries.
func TestLatestListsAReportOnce(t *testing.T) {
	s := openTestStore(t)
	for _, id := range []string{"r1", "r2", "r3"} {
		s.put(id, stored(id, "GBR"))
	}
	if err := s.Update(t0, func(tx *Tx) error { return tx.AppendFeed("r1") }); err != nil {
		t.Fatal(err)
	}
	ids := func(limit int) []string {
		t.Helper()
		es, err := s.Latest(limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	if got, want := ids(10), []string{"r1", "r3", "r2"}; !slices.Equal(got, want) {
		t.Errorf("Latest(10) = %v, want %v", got, want)
	}
	if got, want := ids(2), []string{"r1", "r3"}; !slices.Equal(got, want) {
		t.Errorf("Latest(2) = %v, want %v", got, want)
	}
}
