package store

import (
	"os"
	"syscall"
)

// fdatasync makes f's data durable, and its size, without its times.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
