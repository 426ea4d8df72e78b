//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package store

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

// lockFile refuses: on this system the store has no lock that keeps a
// second process from opening it (the node runs on Linux, macOS, the BSDs
// and Windows; the CLI's other commands need no store).
func lockFile(*os.File, time.Duration) error {
	return fmt.Errorf("a node's store cannot be locked on %s", runtime.GOOS)
}
