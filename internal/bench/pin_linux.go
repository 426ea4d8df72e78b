package bench

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// probeCPUs is the CPUs this process may run on, to put a probe thread
// on each.
func probeCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return allCPUs()
	}
	var cpus []int
	for id := 0; id < len(set)*64 && len(cpus) < set.Count(); id++ {
		if set.IsSet(id) {
			cpus = append(cpus, id)
		}
	}
	return cpus
}

// pinThread keeps the calling OS thread on cpu (the caller has locked its
// goroutine to the thread).
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if set.Count() == 0 {
		return errors.New("bench: no such CPU")
	}
	return unix.SchedSetaffinity(0, &set)
}

// sleepThread sleeps d in the kernel, on the calling thread: the thread
// itself is woken, not a goroutine that Go's scheduler must then place.
func sleepThread(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, &ts) == unix.EINTR {
	}
}
