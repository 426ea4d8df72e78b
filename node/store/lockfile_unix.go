//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package store

import (
	"os"
	"syscall"
	"time"
)

// lockFile takes bbolt's exclusive lock on its file before Open touches
// it (bbolt, given the same open file, takes it again at once). A store
// that another process holds is refused after timeout, as bbolt does.
func lockFile(f *os.File, timeout time.Duration) error {
	return lockWithin(timeout, func() (bool, error) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		return err == syscall.EWOULDBLOCK, err
	})
}
