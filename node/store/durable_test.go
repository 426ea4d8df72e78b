package store

import (
	"errors"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// openHeld opens a test store whose commits' log syncs are held until
// release is called, which lets them go on (with err: fail instead).
// entered gets a value as each sync is held. Checkpoints are stopped:
// their own sync would make the held commits durable.
func openHeld(t *testing.T) (s *testStore, entered <-chan struct{}, release func(err error)) {
	quietCheckpoints(t)
	in := make(chan struct{}, 64)
	gate := make(chan struct{})
	var once sync.Once
	var fail error
	orig := syncLog
	syncLog = func(f *os.File) error {
		select {
		case in <- struct{}{}:
		default: // nobody counts them any more
		}
		<-gate
		if fail != nil {
			return fail
		}
		return orig(f)
	}
	t.Cleanup(func() { syncLog = orig })
	release = func(err error) {
		once.Do(func() {
			fail = err
			close(gate)
		})
	}
	s = openTestStore(t)
	t.Cleanup(func() { release(nil) }) // before the store's Close
	return s, in, release
}

// notYet fails the test if ch gives a value within a while.
func notYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s before the commit it read was durable (%v)", what, v)
	case <-time.After(200 * time.Millisecond):
	}
}

type feedResult struct {
	ids []string
	err error
}

func (ts *testStore) feedAsync() <-chan feedResult {
	ch := make(chan feedResult, 1)
	go func() {
		es, err := ts.Feed(0, 10)
		var ids []string
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		ch <- feedResult{ids, err}
	}()
	return ch
}

func (ts *testStore) updateAsync(fn func(*Tx) error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- ts.Update(t0, fn) }()
	return ch
}

// A report committed but not yet durable is seen by a plain read, but
// the feed, which hands reports to subscribers, waits until it is
// durable; so does a write that changed nothing and read it.
func TestFeedWaitsUntilDurable(t *testing.T) {
	s, entered, release := openHeld(t)
	done := s.updateAsync(func(tx *Tx) error { return tx.PutReport("r1", stored("r1", "GBR")) })
	<-entered // r1 is in bbolt; its log record is not durable
	if n := s.count(); n != 1 {
		t.Fatalf("a read sees %d reports, want 1 (r1, committed)", n)
	}
	fed := s.feedAsync()
	var seen bool
	empty := s.updateAsync(func(tx *Tx) error {
		_, err := tx.Report("r1")
		seen = err == nil
		return err
	})
	notYet(t, fed, "Feed returned")
	notYet(t, empty, "a write that changed nothing returned")
	select {
	case err := <-done:
		t.Fatalf("the write of r1 returned (%v) while its log sync was held", err)
	default:
	}
	release(nil)
	answered(t, done, "the write of r1")
	answered(t, empty, "the write that changed nothing")
	if !seen {
		t.Error("the write that changed nothing did not read r1")
	}
	r := <-fed
	if r.err != nil || !slices.Equal(r.ids, []string{"r1"}) {
		t.Fatalf("Feed gave %v, %v; want [r1]", r.ids, r.err)
	}
	// Durable now: the feed answers at once.
	waits := s.Stats().DurableWaits
	if got := s.feedIDs(0); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("Feed after the sync gave %v, want [r1]", got)
	}
	if st := s.Stats(); waits != 2 || st.DurableWaits != 2 || st.DurableWaitTime < 200*time.Millisecond {
		t.Errorf("durable waits %d then %d, %v; want the feed's and the empty write's, 2, of at least the 200 ms they were held, and none for the read after the sync", waits, st.DurableWaits, st.DurableWaitTime)
	}
}

// The outbox, which a link sends to its partner, waits the same way.
func TestOutboxWaitsUntilDurable(t *testing.T) {
	s, entered, release := openHeld(t)
	done := s.updateAsync(func(tx *Tx) error {
		return tx.Enqueue("GBR", &storev1.OutboxItem{ReportId: "r1", Envelope: &reportv1.Envelope{}})
	})
	<-entered
	type result struct {
		n   int
		err error
	}
	wire := make(chan result, 1)
	go func() {
		es, err := s.OutboxWire("GBR", 0, 10)
		wire <- result{len(es), err}
	}()
	notYet(t, wire, "OutboxWire returned")
	if es, err := s.OutboxWire("USA", 0, 10); err != nil || len(es) != 0 {
		t.Fatalf("an empty outbox gave %d items, %v; want none at once", len(es), err)
	}
	release(nil)
	answered(t, done, "the write of the item")
	if r := <-wire; r.err != nil || r.n != 1 {
		t.Fatalf("OutboxWire gave %d items, %v; want 1", r.n, r.err)
	}
}

// A log sync that fails stops the store's writes; a reader waiting for
// the commit gets the store's error, not the commit's reports.
func TestFailedSyncEndsTheWait(t *testing.T) {
	s, entered, release := openHeld(t)
	done := s.updateAsync(func(tx *Tx) error { return tx.PutReport("r1", stored("r1", "GBR")) })
	<-entered
	fed := s.feedAsync()
	notYet(t, fed, "Feed returned")
	release(syscall.EIO)
	if err := <-done; err == nil {
		t.Fatal("the write whose log sync failed succeeded")
	}
	r := <-fed
	if r.err == nil || len(r.ids) != 0 {
		t.Fatalf("Feed gave %v, %v; want the store's error and no report", r.ids, r.err)
	}
	if err := s.Update(t0, func(tx *Tx) error { return tx.PutReport("r2", stored("r2", "GBR")) }); err == nil {
		t.Fatal("a write after the failed sync succeeded")
	}
	// Close reports the failure; the test's cleanup must not.
	if err := s.Store.Close(); err == nil || errors.Is(err, ErrClosed) {
		t.Fatalf("Close after the failed sync: %v, want the log's failure", err)
	}
	reopened, err := Open(s.path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	s.Store = reopened
}
