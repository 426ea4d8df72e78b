package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestUnmapDropsTheFileFromRSS: after a store's file has been read
// through its map, unmap takes it out of the process's resident set (the
// map's Rss in /proc/self/smaps), and the store reads the same values
// afterwards.
func TestUnmapDropsTheFileFromRSS(t *testing.T) {
	every := unmapEvery
	unmapEvery = time.Hour // only the test's own calls, and Open's
	t.Cleanup(func() { unmapEvery = every })
	s := openTestStore(t)
	body := bytes.Repeat([]byte("x"), 8<<10)
	err := s.Update(t0, func(tx *Tx) error {
		for i := range 512 {
			r := stored(fmt.Sprint("r", i), "")
			r.Envelope.Portions[0].Body = body
			if err := tx.PutReport(fmt.Sprint("r", i), r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.reopen() // a store freshly opened holds no decoded report
	if kib := mappedKiB(t, s.path); kib > 256 {
		t.Errorf("just opened, %d KiB of the file is mapped; Open should have dropped it", kib)
	}
	readAll := func() {
		t.Helper()
		err := s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketReports).ForEach(func(k, v []byte) error {
				if !bytes.Contains(v, body) {
					return fmt.Errorf("report %s lost its body", k)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll()
	before := mappedKiB(t, s.path)
	if before < 4<<10 {
		t.Fatalf("after reading 4 MiB of reports, %d KiB of the file is mapped", before)
	}
	s.unmap()
	if after := mappedKiB(t, s.path); after > 256 {
		t.Errorf("after unmap %d KiB of the file is mapped (before: %d KiB)", after, before)
	}
	readAll()
	if r, err := s.Report("r511"); err != nil || !bytes.Equal(r.GetEnvelope().GetPortions()[0].GetBody(), body) {
		t.Errorf("Report after unmap: %v", err)
	}
}

// mappedKiB is the resident size of the process's maps of path, from
// /proc/self/smaps.
func mappedKiB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in, found := 0, false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a map's first line
			in = fields[len(fields)-1] == path
			found = found || in
			continue
		}
		if in && fields[0] == "Rss:" {
			kib, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatalf("smaps: %q: %v", sc.Text(), err)
			}
			total += kib
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("%s is not mapped in /proc/self/smaps", path)
	}
	return total
}
