//go:build !linux

package bench

import (
	"errors"
	"time"
)

// probeCPUs: every CPU, unpinned.
func probeCPUs() []int { return allCPUs() }

// pinThread: threads are not pinned here; the probe runs unpinned.
func pinThread(int) error {
	return errors.New("bench: pinning a thread to a CPU is not supported here")
}

// sleepThread sleeps d.
func sleepThread(d time.Duration) { time.Sleep(d) }
