package bench

import "golang.org/x/sys/unix"

// pinThread keeps the calling OS thread on cpu (the caller has locked its
// goroutine to the thread).
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}
