// Package fsizelimit makes a disk seem to fill up halfway through a write,
// for tests: it lowers this process's RLIMIT_FSIZE, so that every write
// that would take a regular file past a size fails (EFBIG; the Go runtime
// ignores SIGXFSZ). The limit is the whole process's: a test that sets it
// must not run in parallel with others that write files. Child processes
// started meanwhile inherit it.
package fsizelimit

import (
	"flag"
	"sync"
	"syscall"
	"testing"
)

// Set limits every file this process writes to n bytes until restore is
// called, or the test ends.
//
// A run of go test whose result may be cached (no -count=1) logs the
// test's file accesses to a file of its own as the test runs; the limit
// would fail those writes too ("testing: can't write testlog.txt: file too
// large"), so such a run skips the test. make test runs with -count=1.
func Set(t testing.TB, n uint64) (restore func()) {
	t.Helper()
	if f := flag.Lookup("test.testlogfile"); f != nil && f.Value.String() != "" {
		t.Skip("fsizelimit: go test logs this run's file accesses for its result cache, and the file size limit would stop that log too: run with -count=1 (as make test does)")
	}
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
