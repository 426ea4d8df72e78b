package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
)

// TestNodeExitingAtStart: a node process that exits at once is reported
// with its exit status and log, and closing the federation afterwards
// returns. (It waited forever: start had consumed the exit, and stop then
// waited for it again.)
func TestNodeExitingAtStart(t *testing.T) {
	f, err := newFederation(t.TempDir(), "/bin/false", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = f.start(context.Background(), partyA)
	if err == nil || !strings.Contains(err.Error(), "exited at start (exit status 1)") {
		t.Fatalf("start with an exiting node: %v; want it to say the node exited at start", err)
	}
	closed := make(chan struct{})
	go func() { f.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return within 10 s after a node exited at start")
	}
}

// TestDiskLimits: the disk probe measures positive times and leaves no
// file behind.
func TestDiskLimits(t *testing.T) {
	dir := t.TempDir()
	d, err := diskLimits(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if d.SyncMs <= 0 || d.ScatteredPageUs <= 0 || d.ContiguousPageUs <= 0 {
		t.Errorf("disk limits %+v: want every time positive", d)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the probe left %d files in %s", len(left), dir)
	}
}

// The probe writes inside its 256 MiB scratch file only (writes past its
// end would measure allocating new blocks instead).
func TestDiskLimitsStayInsideTheFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := probe(f, 50); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != probeFileSize {
		t.Errorf("scratch file after the probe: %v, %v; want %d bytes", fi.Size(), err, probeFileSize)
	}
}

// A node memory limit the node would refuse is refused before anything is
// laid out or started, with the smallest it accepts.
func TestRunRefusesASmallNodeMemoryLimit(t *testing.T) {
	for _, limit := range []int{-1, 10} {
		dir := t.TempDir()
		_, err := Run(context.Background(), Options{Exe: "/bin/false", Dir: dir, NodeMemoryLimitMiB: limit})
		if err == nil || !strings.Contains(err.Error(), "want 0 (none) or at least 64") {
			t.Fatalf("limit %d: Run error %v, want one naming the smallest limit", limit, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("limit %d: Run laid out %d entries before refusing", limit, len(entries))
		}
	}
}

// The limit given reaches both nodes' configs.
func TestFederationNodesGetTheMemoryLimit(t *testing.T) {
	f, err := newFederation(t.TempDir(), "/bin/false", 1, 128)
	if err != nil {
		t.Fatal(err)
	}
	for party, n := range f.nodes {
		c, err := gateway.LoadConfig(n.config)
		if err != nil {
			t.Fatal(err)
		}
		if c.MemoryLimitMiB != 128 {
			t.Errorf("%s: memory_limit_mib %d, want 128", party, c.MemoryLimitMiB)
		}
	}
}
