//go:build linux

package bench

import (
	"strings"
	"testing"
)

// One read through the map brings at least the 4 KiB page read into the
// resident set, and no more than the 256 KiB between two reads (else the
// probe counted something else).
func TestMapFaultKiB(t *testing.T) {
	kib, err := mapFaultKiB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if kib < 4 || kib > 256 {
		t.Fatalf("one read maps %.1f KiB, want 4 to 256", kib)
	}
	t.Logf("one read through the map brings %.0f KiB into the resident set", kib)
}

// procStatusKiB reads the fields asked for, and names the file and the
// fields when one is missing.
func TestProcStatusKiB(t *testing.T) {
	kib, err := procStatusKiB("self", "VmRSS", "RssFile")
	if err != nil {
		t.Fatal(err)
	}
	if kib[0] <= 0 || kib[1] < 0 || kib[1] > kib[0] {
		t.Fatalf("VmRSS %v kB, RssFile %v kB: want a positive resident set holding the file part", kib[0], kib[1])
	}
	if _, err := procStatusKiB("self", "VmRSS", "NoSuchField"); err == nil || !strings.Contains(err.Error(), "/proc/self/status lacks one of VmRSS, NoSuchField") {
		t.Fatalf("a missing field: %v, want an error naming the file and fields", err)
	}
}
