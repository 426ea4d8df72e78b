package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// DiskLimits is what a durable commit costs on the disk that holds the
// nodes' stores: one small write made durable, and the cost per page of
// making many pages durable at once, scattered through a file (as a bbolt
// commit rewrites the B+tree pages it touched, wherever they are) or side
// by side (as an append-only log would).
type DiskLimits struct {
	// SyncMs is one 16 KiB write followed by fdatasync. A store's commit
	// makes one (its log record, node/store/wal.go); bbolt's own syncs
	// made two (data, then meta).
	SyncMs float64 `json:"disk_sync_ms"`
	// ScatteredPageUs and ContiguousPageUs are the time per 16 KiB page of
	// writing 64 pages and one fdatasync, at random places in a 256 MiB
	// file or one after another.
	ScatteredPageUs  float64 `json:"disk_scattered_page_us"`
	ContiguousPageUs float64 `json:"disk_contiguous_page_us"`
	// MapFaultKiB is how much of a file in the page cache one read through
	// a map of it (bbolt reads its file so) brings into the resident set:
	// the kernel maps the cached pages around the page read too. A node's
	// mapped store file is that much per page it reads (0: not measured,
	// off Linux).
	MapFaultKiB float64 `json:"disk_map_fault_kib"`
}

// probeFileSize is the size of the probe's scratch file.
const probeFileSize = 256 << 20

// diskLimits measures DiskLimits in a scratch file in dir, rounds times.
func diskLimits(dir string, rounds int) (DiskLimits, error) {
	f, err := os.CreateTemp(dir, "disk-probe-*")
	if err != nil {
		return DiskLimits{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	d, err := probe(f, rounds)
	if err != nil {
		return d, err
	}
	d.MapFaultKiB, err = mapFaultKiB(dir)
	return d, err
}

// probe measures DiskLimits in the empty file f, which it fills to
// probeFileSize and writes inside only.
func probe(f *os.File, rounds int) (DiskLimits, error) {
	const page, pages, fileSize = 16 << 10, 64, probeFileSize
	// Fill the file, so that the writes below overwrite allocated blocks
	// as a store's commits mostly do.
	if err := fill(f, fileSize); err != nil {
		return DiskLimits{}, fmt.Errorf("disk probe %s: %w", filepath.Base(f.Name()), err)
	}
	buf := make([]byte, page)
	// run writes n pages at offset(base, i) and syncs them, rounds times,
	// with base a random page from which n pages fit in the file.
	run := func(offset func(base int64, i int) int64, n int) (time.Duration, error) {
		var total time.Duration
		for range rounds {
			base := rand.Int64N(fileSize/page-pages) * page
			start := time.Now()
			for i := range n {
				if _, err := f.WriteAt(buf, offset(base, i)); err != nil {
					return 0, err
				}
			}
			if err := fdatasync(f); err != nil {
				return 0, err
			}
			total += time.Since(start)
		}
		return total / time.Duration(rounds), nil
	}
	sideBySide := func(base int64, i int) int64 { return base + int64(i)*page }
	one, err := run(sideBySide, 1)
	if err != nil {
		return DiskLimits{}, err
	}
	scattered, err := run(func(int64, int) int64 { return rand.Int64N(fileSize/page) * page }, pages)
	if err != nil {
		return DiskLimits{}, err
	}
	contiguous, err := run(sideBySide, pages)
	if err != nil {
		return DiskLimits{}, err
	}
	return DiskLimits{
		SyncMs:           ms(one),
		ScatteredPageUs:  micros(scattered) / pages,
		ContiguousPageUs: micros(contiguous) / pages,
	}, nil
}
