//go:build unix

package freeport

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// locks holds the files whose locks reserve the ports this process took
// (mu guards it): an unreachable *os.File is closed by its finalizer,
// which would give its port back.
var locks = map[int]*os.File{}

// reserve takes port for this process, for as long as it lives, with a
// lock on a file named after it in a folder of the system's temporary
// folder; ok is false when another live process holds it. The lock goes
// with the process (the kernel drops it); the files stay, empty, one for
// each port ever reserved (removing one could let two processes lock two
// different files of one name).
// Where the file cannot be made, the port is not reserved, as before
// reservations: ok is true. release gives the port back. mu is held.
func reserve(port int) (release func(), ok bool) {
	dir := filepath.Join(os.TempDir(), "tearline-freeport")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}, true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return func() {}, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return func() {}, err != syscall.EWOULDBLOCK
	}
	locks[port] = f
	return func() {
		delete(locks, port)
		f.Close()
	}, true
}
