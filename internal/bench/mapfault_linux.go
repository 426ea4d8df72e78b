package bench

import (
	"fmt"
	"os"
	"syscall"
)

// mapFaultKiB measures how much of a file held in the page cache one read
// through a shared, read-only map (as bbolt maps its file, MADV_RANDOM)
// brings into this process's resident set: the kernel maps the cached
// pages around the one read too (fault-around). The file is written in
// 16 KiB writes, as a bbolt commit writes its pages; then one byte in
// every 256 KiB is read.
func mapFaultKiB(dir string) (float64, error) {
	const page, size, stride = 16 << 10, 16 << 20, 256 << 10
	f, err := os.CreateTemp(dir, "map-probe-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, page)
	for off := int64(0); off < size; off += page {
		if _, err := f.WriteAt(buf, off); err != nil {
			return 0, fmt.Errorf("map probe: %w", err)
		}
	}
	if err := fdatasync(f); err != nil {
		return 0, err
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("map probe: %w", err)
	}
	defer syscall.Munmap(m)
	if err := syscall.Madvise(m, syscall.MADV_RANDOM); err != nil {
		return 0, fmt.Errorf("map probe: %w", err)
	}
	before, err := rssFileKiB()
	if err != nil {
		return 0, err
	}
	var sum byte
	for off := 0; off < size; off += stride {
		sum += m[off]
	}
	mapProbeSink = sum // the reads must happen
	after, err := rssFileKiB()
	if err != nil {
		return 0, err
	}
	return (after - before) / (size / stride), nil
}

var mapProbeSink byte

// rssFileKiB is this process's resident mapped file pages (RssFile).
func rssFileKiB() (float64, error) {
	kib, err := procStatusKiB("self", "RssFile")
	if err != nil {
		return 0, err
	}
	return kib[0], nil
}
