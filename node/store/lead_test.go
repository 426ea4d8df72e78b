package store

import (
	"bytes"
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
	s.reopen()
	if evs, err := s.Events("alone"); err != nil || len(evs) != 1 {
		t.Errorf("after reopening: %d events (%v), want 1", len(evs), err)
	}
}

// TestLeadPassesToAWaitingWriter: the writers that arrive during a commit
// are committed together, in the goroutine of one of them; the writer
// that led the first commit returns once its own write is on disk, without
// waiting for theirs.
func TestLeadPassesToAWaitingWriter(t *testing.T) {
	s := openTestStore(t)
	const n = 3
	entered, release1, release2 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.Batch(t0, func(tx *Tx) error {
			close(entered)
			<-release1
			return tx.AddEvent(&storev1.Event{ReportId: "first", Kind: "received"})
		})
	}()
	<-entered
	var mu sync.Mutex
	callers := map[uint64]bool{}
	ranIn := map[uint64]bool{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			mu.Lock()
			callers[goroutineID(t)] = true
			mu.Unlock()
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
	select {
	case err := <-firstDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first writer did not return while the next commit was held open")
	}
	close(release2)
	wg.Wait()
	if len(ranIn) != 1 {
		t.Fatalf("the waiting writers' writes ran in %d goroutines, want 1 (one commit)", len(ranIn))
	}
	for g := range ranIn {
		if !callers[g] {
			t.Errorf("the waiting writers' commit ran in goroutine %d, not one of theirs (%v)", g, callers)
		}
	}
	if evs, err := s.Events("waiting"); err != nil || len(evs) != n {
		t.Errorf("%d events (%v), want %d", len(evs), err, n)
	}
}
