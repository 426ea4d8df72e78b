package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// unmapEvery is how often a store drops its file's pages from the
// process's map (see unmapLoop); tests change it before Open.
var unmapEvery = time.Second

// unmapLoop drops the store file's pages from the process's map every
// unmapEvery until stop is closed (Open drops them once first).
//
// bbolt reads the file through a map of it, and every page a commit or a
// reader touches (64 KiB at a time on Linux, with the kernel's
// fault-around) stays mapped, so a node's resident set grows towards its
// store file's size: opening a store maps all of it at once (bbolt reads
// every page to rebuild the freelist). Those pages are the kernel's page
// cache, clean and shared; dropping them from the map leaves them cached
// (a later read maps them again without touching the disk) but no longer
// counted in the node's RSS, which then shows what the node itself holds.
func (s *Store) unmapLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(unmapEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.unmap()
		}
	}
}

// unmap drops the store file's pages from the process's map. It runs in a
// read transaction, which holds off bbolt's remapping of the file: the
// range it drops is the map that transaction reads.
func (s *Store) unmap() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		dropMapped(s.db.Info().Data, uintptr(tx.Size()))
		return nil
	})
}
