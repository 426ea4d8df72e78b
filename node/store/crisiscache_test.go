package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

func crisisIDs(t *testing.T, s *Store) []string {
	t.Helper()
	crs, err := s.Crises()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range crs {
		ids = append(ids, string(c.GetDeclaration().GetPayload()))
	}
	return ids
}

func putCrisis(id string, ended bool) func(*Tx) error {
	return func(tx *Tx) error {
		c := &storev1.CrisisRecord{Declaration: &reportv1.Signed{Payload: []byte(id)}}
		if ended {
			c.End = &reportv1.Signed{Payload: []byte("end of " + id)}
		}
		return tx.PutCrisis(id, c)
	}
}

// TestCrisesCache: Crises answers from what it read until a commit writes
// a crisis record, and then reads again; a write that fails leaves it as
// it was; what a caller does to the slice it got is its own.
func TestCrisesCache(t *testing.T) {
	quietCheckpoints(t)
	s := openTestStore(t)
	if ids := crisisIDs(t, s.Store); len(ids) != 0 {
		t.Fatalf("a new store's crises: %v", ids)
	}

	if err := s.Update(t0, putCrisis("c1", false)); err != nil {
		t.Fatal(err)
	}
	if ids := crisisIDs(t, s.Store); !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("after a declaration, Crises = %v, want [c1]", ids)
	}

	// Answered from the cache: no read transaction each time.
	before := s.db.Stats().TxN
	for range 100 {
		crisisIDs(t, s.Store)
	}
	if n := s.db.Stats().TxN - before; n > 5 {
		t.Errorf("100 calls of Crises opened %d read transactions, want it to answer from what it read", n)
	}

	// A rewrite (the end) and a record written in a group with others.
	if err := s.Batch(t0, putCrisis("c1", true)); err != nil {
		t.Fatal(err)
	}
	crs, err := s.Crises()
	if err != nil || len(crs) != 1 || crs[0].GetEnd() == nil {
		t.Fatalf("after the end, Crises = %v, %v; want c1 ended", crs, err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.Batch(t0, putCrisis(fmt.Sprintf("c%d", i+2), false)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ids := crisisIDs(t, s.Store); len(ids) != 9 {
		t.Fatalf("after eight more, Crises = %v", ids)
	}

	// A write that fails after writing a record changes nothing.
	boom := errors.New("boom")
	if err := s.Update(t0, func(tx *Tx) error {
		if err := putCrisis("c99", false)(tx); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	if ids := crisisIDs(t, s.Store); len(ids) != 9 || slices.Contains(ids, "c99") {
		t.Fatalf("after a failed write, Crises = %v", ids)
	}

	// A caller's changes to its slice are not another's.
	crs, _ = s.Crises()
	crs[0] = nil
	_ = append(crs[:1], &storev1.CrisisRecord{})
	if ids := crisisIDs(t, s.Store); len(ids) != 9 || ids[0] != "c1" || ids[1] != "c2" {
		t.Fatalf("after a caller changed its slice, Crises = %v", ids)
	}
}

// TestCrisesCacheConcurrent: readers racing writers never miss a record
// whose write has returned.
func TestCrisesCacheConcurrent(t *testing.T) {
	s := openTestStore(t)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Crises(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range 25 {
				id := fmt.Sprintf("w%d-%02d", w, i)
				if err := s.Batch(t0, putCrisis(id, false)); err != nil {
					t.Error(err)
					return
				}
				crs, err := s.Crises()
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.ContainsFunc(crs, func(c *storev1.CrisisRecord) bool { return string(c.GetDeclaration().GetPayload()) == id }) {
					t.Errorf("Crises after %s's write returned does not hold it (%d records)", id, len(crs))
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if ids := crisisIDs(t, s.Store); len(ids) != 100 {
		t.Errorf("at the end Crises holds %d records, want 100", len(ids))
	}
}
