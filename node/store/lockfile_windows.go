package store

import (
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// lockFile takes an exclusive lock on the store's file before Open
// touches it, so that a store another process holds is refused after
// timeout. A Windows lock is a byte range of one handle and is not taken
// twice: this one is the byte before the one bbolt locks (the last of
// the file's range), which bbolt then takes on the same handle.
func lockFile(f *os.File, timeout time.Duration) error {
	const last = 1<<32 - 1
	return lockWithin(timeout, func() (bool, error) {
		err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0,
			&windows.Overlapped{Offset: last - 1, OffsetHigh: last})
		return err == windows.ERROR_LOCK_VIOLATION, err
	})
}
