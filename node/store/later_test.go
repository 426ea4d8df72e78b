package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// TestBatchLaterJoinsTheNextCommit: a BatchLater write starts no commit of
// its own; it is committed in the transaction of the next Batch.
func TestBatchLaterJoinsTheNextCommit(t *testing.T) {
	s := openTestStore(t)
	s.laterWait = time.Hour
	laterTx := make(chan *bolt.Tx, 1)
	laterErr := make(chan error, 1)
	go func() {
		laterErr <- s.BatchLater(t0, func(tx *Tx) error {
			laterTx <- tx.tx
			return tx.AddEvent(&storev1.Event{ReportId: "later", Kind: "acknowledged"})
		})
	}()
	select {
	case err := <-laterErr:
		t.Fatalf("BatchLater returned (%v) with no other commit, before its wait", err)
	case <-time.After(100 * time.Millisecond):
	}
	var batchTx *bolt.Tx
	if err := s.Batch(t0, func(tx *Tx) error {
		batchTx = tx.tx
		return tx.AddEvent(&storev1.Event{ReportId: "now", Kind: "received"})
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-laterErr; err != nil {
		t.Fatal(err)
	}
	if got := <-laterTx; got != batchTx {
		t.Error("the BatchLater write was committed in a transaction of its own, not in the next Batch's")
	}
	s.reopenHoldsOneEventEach("later", "now")
}

// TestBatchLaterAlone: with no other writer, a BatchLater write is
// committed once its wait is over, and is on disk when the call returns.
func TestBatchLaterAlone(t *testing.T) {
	s := openTestStore(t)
	start := time.Now()
	if err := s.BatchLater(t0, func(tx *Tx) error {
		return tx.AddEvent(&storev1.Event{ReportId: "alone", Kind: "acknowledged"})
	}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < laterDelay {
		t.Errorf("BatchLater alone returned after %v, before its wait of %v", took, laterDelay)
	}
	s.reopenHoldsOneEventEach("alone")
}

// TestBatchLaterManyWaiting: maxGroup BatchLater writes waiting start a
// commit without waiting out the delay.
func TestBatchLaterManyWaiting(t *testing.T) {
	s := openTestStore(t)
	s.laterWait = time.Hour
	errs := make(chan error, maxGroup)
	for i := range maxGroup {
		go func() {
			errs <- s.BatchLater(t0, func(tx *Tx) error {
				return tx.AddEvent(&storev1.Event{ReportId: "many", Kind: "acknowledged", Detail: string(rune('a' + i%26))})
			})
		}()
	}
	timeout := time.After(30 * time.Second)
	for range maxGroup {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatalf("%d BatchLater writes waiting were not committed", maxGroup)
		}
	}
	if evs, err := s.Events("many"); err != nil || len(evs) != maxGroup {
		t.Errorf("%d events (%v), want %d", len(evs), err, maxGroup)
	}
}
