//go:build !linux

package store

import "os"

// fdatasync makes f's data durable: where the system has no fdatasync,
// with fsync (on macOS Go's F_FULLFSYNC), as bbolt does there.
func fdatasync(f *os.File) error { return f.Sync() }
