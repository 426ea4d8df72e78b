package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// testStore is a Store in a test's temporary directory that can be closed
// and opened again.
type testStore struct {
	*Store
	t    testing.TB
	path string
}

// TestMain keeps the checkpoints' extension of the store file small
// (extendAhead), so that the crash images the tests copy stay small;
// TestCheckpointExtendsTheFile sets its own.
func TestMain(m *testing.M) {
	growAhead, growAt = 1<<20, 512<<10
	os.Exit(m.Run())
}

// openTestStore opens a store in t.TempDir(). On cleanup it closes the
// store and runs bbolt's consistency check on the file (as bbolt's
// internal/btesting does), failing the test on any error.
func openTestStore(t testing.TB) *testStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	ts := &testStore{Store: s, t: t, path: path}
	t.Cleanup(func() {
		if err := ts.Store.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkFile(t, path)
	})
	return ts
}

// reopen closes the store and opens its file again.
func (ts *testStore) reopen() {
	ts.t.Helper()
	if err := ts.Store.Close(); err != nil {
		ts.t.Fatalf("Close: %v", err)
	}
	s, err := Open(ts.path)
	if err != nil {
		ts.t.Fatalf("reopen %s: %v", ts.path, err)
	}
	ts.Store = s
}

// checkFile opens a closed bbolt file read-only and runs tx.Check on it.
func checkFile(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("check: open %s: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("check %s: %v", path, err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("check %s: %v", path, err)
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// stored returns a held report whose envelope names id.
func stored(id, from string) *storev1.StoredReport {
	return &storev1.StoredReport{
		ReceivedFrom: from,
		Envelope: &reportv1.Envelope{
			Header:   &reportv1.Signed{Payload: []byte("header of " + id)},
			Portions: []*reportv1.Portion{{Index: 1, Title: id, Body: []byte("body of " + id)}},
		},
	}
}

// put stores a report in a transaction of its own.
func (ts *testStore) put(id string, r *storev1.StoredReport) {
	ts.t.Helper()
	if err := ts.Update(t0, func(tx *Tx) error { return tx.PutReport(id, r) }); err != nil {
		ts.t.Fatalf("PutReport(%s): %v", id, err)
	}
}

// feedIDs returns the ids in the feed after `after`, in feed order.
func (ts *testStore) feedIDs(after uint64) []string {
	ts.t.Helper()
	es, err := ts.Feed(after, 1<<20)
	if err != nil {
		ts.t.Fatalf("Feed: %v", err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.Report.GetEnvelope().GetPortions()[0].GetTitle())
	}
	return ids
}

func (ts *testStore) count() int {
	ts.t.Helper()
	n, err := ts.Count()
	if err != nil {
		ts.t.Fatalf("Count: %v", err)
	}
	return n
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waiting is how many Batch and BatchLater writers wait for a commit.
func (s *Store) waiting() (calls, later int) {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return len(s.calls), len(s.later)
}

// answered waits up to 10 s for a writer's answer on ch and fails the
// test if none comes or it is an error; what names the writer.
func answered(t testing.TB, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer within 10 s", what)
	}
}

// holdCommit starts a Batch write of a "received" event for id whose
// commit stays open until release is closed. It returns once that commit
// is running; the write's answer comes on done.
func holdCommit(s *Store, id string) (release chan struct{}, done chan error) {
	release, done = make(chan struct{}), make(chan error, 1)
	entered := make(chan struct{})
	go func() {
		done <- s.Batch(t0, func(tx *Tx) error {
			close(entered)
			<-release
			return tx.AddEvent(&storev1.Event{ReportId: id, Kind: "received"})
		})
	}()
	<-entered
	return release, done
}

// queueLater starts a BatchLater write of an "acknowledged" event for id
// and returns once it waits in the store's queue; its answer comes on the
// channel returned.
func queueLater(s *Store, id string) chan error {
	done := make(chan error, 1)
	go func() {
		done <- s.BatchLater(t0, func(tx *Tx) error {
			return tx.AddEvent(&storev1.Event{ReportId: id, Kind: "acknowledged"})
		})
	}()
	for _, l := s.waiting(); l == 0; _, l = s.waiting() {
		time.Sleep(time.Millisecond)
	}
	return done
}

// reopenHoldsOneEventEach reopens s and checks that each report id has
// exactly one event on disk.
func (s *testStore) reopenHoldsOneEventEach(ids ...string) {
	s.t.Helper()
	s.reopen()
	for _, id := range ids {
		if evs, err := s.Events(id); err != nil || len(evs) != 1 {
			s.t.Errorf("%s after reopening: %d events (%v), want 1", id, len(evs), err)
		}
	}
}

// rawUpdate writes under the store, as a disk's corruption or an older
// build would, outside its log; wmu keeps a checkpoint from starting
// during it.
func (s *Store) rawUpdate(fn func(*bolt.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.db.Update(fn)
}
