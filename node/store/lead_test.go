package store

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// goroutineID is the running goroutine's number, from its stack's header
// ("goroutine 42 [running]:").
func goroutineID(t *testing.T) uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 || string(f[0]) != "goroutine" {
		t.Fatalf("unexpected stack header %q", buf)
	}
	id, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		t.Fatalf("stack header %q: %v", buf, err)
	}
	return id
}

// TestLoneWriterCommitsInItsOwnGoroutine: a Batch writer that finds no
// commit running commits its write itself, with no hand-over to another
// goroutine.
func TestLoneWriterCommitsInItsOwnGoroutine(t *testing.T) {
	s := openTestStore(t)
	caller := goroutineID(t)
	var ran uint64
	if err := s.Batch(t0, func(tx *Tx) error {
		ran = goroutineID(t)
		return tx.AddEvent(&storev1.Event{ReportId: "alone", Kind: "received"})
	}); err != nil {
		t.Fatal(err)
	}
	if ran != caller {
		t.Errorf("the write ran in goroutine %d, not in its caller's (%d)", ran, caller)
	}
	s.reopenHoldsOneEventEach("alone")
}

// TestLeadPassesOnAfterTheFirstCommit: the writers that arrive during a
// writer's commit are committed together, and not by that writer: it
// returns once its own write is on disk, without waiting for theirs.
func TestLeadPassesOnAfterTheFirstCommit(t *testing.T) {
	s := openTestStore(t)
	const n = 3
	entered, release1, release2 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	var first uint64
	go func() {
		firstDone <- s.Batch(t0, func(tx *Tx) error {
			first = goroutineID(t)
			close(entered)
			<-release1
			return tx.AddEvent(&storev1.Event{ReportId: "first", Kind: "received"})
		})
	}()
	<-entered
	var mu sync.Mutex
	ranIn := map[uint64]bool{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Batch(t0, func(tx *Tx) error {
				mu.Lock()
				ranIn[goroutineID(t)] = true
				mu.Unlock()
				<-release2
				return tx.AddEvent(&storev1.Event{ReportId: "waiting", Kind: "received", Detail: strconv.Itoa(i)})
			}); err != nil {
				t.Error(err)
			}
		})
	}
	for c, _ := s.waiting(); c < n; c, _ = s.waiting() {
		time.Sleep(time.Millisecond)
	}
	close(release1)
	answered(t, firstDone, "the first writer, while the next commit is held open")
	close(release2)
	wg.Wait()
	if len(ranIn) != 1 {
		t.Fatalf("the waiting writers' writes ran in %d goroutines, want 1 (one commit)", len(ranIn))
	}
	if ranIn[first] {
		t.Error("the first writer's goroutine committed the writers that came during its commit")
	}
	if evs, err := s.Events("waiting"); err != nil || len(evs) != n {
		t.Errorf("%d events (%v), want %d", len(evs), err, n)
	}
}

// TestBatchLaterWaitEndingDuringACommit: a BatchLater write that came
// during a commit, and whose wait ended before that commit did, is
// committed once its wait has run again, with no other writer coming.
func TestBatchLaterWaitEndingDuringACommit(t *testing.T) {
	s := openTestStore(t)
	s.laterWait = 20 * time.Millisecond
	release, batchErr := holdCommit(s.Store, "first")
	laterErr := queueLater(s.Store, "later")
	time.Sleep(5 * s.laterWait) // its wait ends while the commit runs
	close(release)
	if err := <-batchErr; err != nil {
		t.Fatal(err)
	}
	answered(t, laterErr, "a BatchLater write whose wait ended during a commit")
	if evs, err := s.Events("later"); err != nil || len(evs) != 1 {
		t.Errorf("%d events (%v), want 1", len(evs), err)
	}
}

// TestConcurrentWritersAndClose: many writers, Batch and BatchLater
// mixed, with Close arriving while they write. Every write that returned
// nil is in the file once, exactly; every other returned ErrClosed and is
// not; every writer was answered.
func TestConcurrentWritersAndClose(t *testing.T) {
	s := openTestStore(t)
	s.laterWait = 2 * time.Millisecond
	const writers = 32
	var (
		mu       sync.Mutex
		kept     []string
		refused  []string
		wg       sync.WaitGroup
		started  = make(chan struct{})
		startedN sync.Once
	)
	for g := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%02d-%04d", g, i)
				write := s.Batch
				if (g+i)%3 == 0 {
					write = s.BatchLater
				}
				err := write(t0, func(tx *Tx) error {
					return tx.AddEvent(&storev1.Event{ReportId: id, Kind: "received"})
				})
				mu.Lock()
				switch {
				case err == nil:
					kept = append(kept, id)
				case errors.Is(err, ErrClosed):
					refused = append(refused, id)
				default:
					t.Errorf("%s: %v", id, err)
				}
				n := len(kept)
				mu.Unlock()
				if n >= 500 {
					startedN.Do(func() { close(started) })
				}
				if err != nil {
					return
				}
			}
		})
	}
	<-started
	if err := s.Store.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every writer was answered
	if len(refused) != writers {
		t.Errorf("%d writes refused, want one a writer (%d)", len(refused), writers)
	}
	s.Store = mustOpen(t, s.path)
	for _, id := range kept {
		if evs, err := s.Events(id); err != nil || len(evs) != 1 {
			t.Fatalf("%s, acknowledged: %d events (%v), want 1", id, len(evs), err)
		}
	}
	for _, id := range refused {
		if evs, err := s.Events(id); err != nil || len(evs) != 0 {
			t.Errorf("%s, refused: %d events (%v), want none", id, len(evs), err)
		}
	}
	t.Logf("%d writes kept, %d refused at Close", len(kept), len(refused))
}

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
