// Package fsizelimit makes a disk seem to fill up halfway through a write,
// for tests: it lowers this process's RLIMIT_FSIZE, so that every write
// that would take a regular file past a size fails (EFBIG; the Go runtime
// ignores SIGXFSZ). The limit is the whole process's: a test that sets it
// must not run in parallel with others that write files. Child processes
// started meanwhile inherit it.
package fsizelimit

import (
	"sync"
	"syscall"
	"testing"
)

// Set limits every file this process writes to n bytes until restore is
// called, or the test ends.
func Set(t testing.TB, n uint64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}
