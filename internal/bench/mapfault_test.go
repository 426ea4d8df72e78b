//go:build linux

package bench

import "testing"

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
