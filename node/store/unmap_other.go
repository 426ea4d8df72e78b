//go:build !linux

package store

// dropMapped does nothing here (see the Linux version).
func dropMapped(addr, n uintptr) {}
