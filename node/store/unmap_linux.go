package store

import "syscall"

// dropMapped advises the kernel that the n mapped bytes at addr are not
// needed: for a shared map of a file this removes the pages from the
// process's page tables and leaves them in the page cache.
func dropMapped(addr, n uintptr) {
	if addr == 0 || n == 0 {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, addr, n, syscall.MADV_DONTNEED)
}
