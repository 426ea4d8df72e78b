//go:build !linux

package bench

import "errors"

// pinThread: threads are not pinned here; the probe runs unpinned.
func pinThread(int) error {
	return errors.New("bench: pinning a thread to a CPU is not supported here")
}
