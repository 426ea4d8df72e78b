package store

import (
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// lockWithin calls try, one attempt at the store file's lock, until it
// is not busy (another process holds the lock) or timeout has passed,
// every 50 ms, as bbolt does; a store held that long is refused with
// bbolt's ErrTimeout.
func lockWithin(timeout time.Duration, try func() (busy bool, err error)) error {
	deadline := time.Now().Add(timeout)
	for {
		busy, err := try()
		if !busy {
			return err
		}
		if time.Now().After(deadline) {
			return bolterrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}
