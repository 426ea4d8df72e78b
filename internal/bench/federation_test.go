package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/node/store"
)

// TestNodeExitingAtStart: a node process that exits at once is reported
// with its exit status and log, and closing the federation afterwards
// returns. (It waited forever: start had consumed the exit, and stop then
// waited for it again.)
func TestNodeExitingAtStart(t *testing.T) {
	f, err := newFederation(t.TempDir(), "/bin/false", 1, 0, 0)
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

// A node memory limit or GC percent the node would refuse is refused
// before anything is laid out or started, with the range it accepts.
func TestRunRefusesNodeSettingsTheNodeWouldRefuse(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{NodeMemoryLimitMiB: -1}, "node memory limit -1 MiB: want 0 (none) or at least 64"},
		{Options{NodeMemoryLimitMiB: 10}, "node memory limit 10 MiB: want 0 (none) or at least 64"},
		{Options{NodeGCPercent: -1}, "node GC percent -1: want 0 (the runtime's default) or 10 to 10000"},
		{Options{NodeGCPercent: 5}, "node GC percent 5: want 0 (the runtime's default) or 10 to 10000"},
		{Options{NodeGCPercent: 20_000}, "node GC percent 20000: want 0 (the runtime's default) or 10 to 10000"},
	} {
		dir := t.TempDir()
		tc.o.Exe, tc.o.Dir = "/bin/false", dir
		_, err := Run(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Run error %v, want one saying %q", err, tc.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%q: Run laid out %d entries before refusing", tc.want, len(entries))
		}
	}
}

// The memory limit and GC percent given reach both nodes' configs.
func TestFederationNodesGetTheMemorySettings(t *testing.T) {
	f, err := newFederation(t.TempDir(), "/bin/false", 1, 128, 250)
	if err != nil {
		t.Fatal(err)
	}
	for party, n := range f.nodes {
		c, err := gateway.LoadConfig(n.config)
		if err != nil {
			t.Fatal(err)
		}
		if c.MemoryLimitMiB != 128 || c.GCPercent != 250 {
			t.Errorf("%s: memory_limit_mib %d, gc_percent %d; want 128, 250", party, c.MemoryLimitMiB, c.GCPercent)
		}
	}
}

// TestCommitFloor: the replay makes about rate x duration commits on each
// writer, pairs them, and returns the sums sorted; a shape that is not a
// commit (no rate, fewer than two writes) is refused.
func TestCommitFloor(t *testing.T) {
	dir := t.TempDir()
	sums, err := commitFloor(dir, commitShape{perS: 100, writes: 3}, commitShape{perS: 50, writes: 2.4}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) < 5 || len(sums) > 16 {
		t.Errorf("%d pairs in 300 ms at 50 and 100 commits/s, want about 15", len(sums))
	}
	if !slices.IsSorted(sums) || sums[0] <= 0 {
		t.Errorf("sums not sorted and positive: %v", sums)
	}
	for _, bad := range []commitShape{{perS: 0, writes: 3}, {perS: 10, writes: 1}} {
		if _, err := commitFloor(dir, bad, commitShape{perS: 10, writes: 3}, 100*time.Millisecond); err == nil {
			t.Errorf("shape %+v accepted", bad)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("scratch files left: %v", left)
	}
}

// TestCommitRate: commits a second and writes a commit from two counts.
func TestCommitRate(t *testing.T) {
	perS, writes := commitRate(store.Stats{Commits: 10, Writes: 100}, store.Stats{Commits: 30, Writes: 420}, 2*time.Second)
	if perS != 10 || writes != 16 {
		t.Errorf("commitRate = %v/s of %v writes, want 10/s of 16", perS, writes)
	}
	if perS, writes := commitRate(store.Stats{Commits: 5}, store.Stats{Commits: 5}, time.Second); perS != 0 || writes != 0 {
		t.Errorf("no commits: %v/s of %v writes, want 0, 0", perS, writes)
	}
}

// TestCommitTime: a commit's mean time and writing time from two counts.
func TestCommitTime(t *testing.T) {
	before := store.Stats{Commits: 10, CommitTime: time.Second, WriteTime: 500 * time.Millisecond}
	after := store.Stats{Commits: 30, CommitTime: 1100 * time.Millisecond, WriteTime: 540 * time.Millisecond}
	if commit, write := commitTime(before, after); commit != 5 || write != 2 {
		t.Errorf("commitTime = %v ms, of which %v writing; want 5, 2", commit, write)
	}
	if commit, write := commitTime(after, after); commit != 0 || write != 0 {
		t.Errorf("no commits: %v, %v; want 0, 0", commit, write)
	}
}

// TestStatCPU: utime + stime from a stat line whose command name holds
// spaces and parentheses; a line that is not one is an error.
func TestStatCPU(t *testing.T) {
	line := "4242 (tl (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 1 2 3\n"
	d, err := statCPU(line)
	if err != nil || d != 2870*time.Millisecond {
		t.Errorf("statCPU = %v, %v; want 2.87s (287 ticks)", d, err)
	}
	for _, bad := range []string{"", "4242 tl S 1", "4242 (tl) S 1 2 3", "4242 (tl) S 1 4242 4242 0 -1 4194560 100 0 0 0 x 37 0"} {
		if _, err := statCPU(bad); err == nil {
			t.Errorf("statCPU(%q) gave no error", bad)
		}
	}
}

// TestProcCPUCounts: the benchmark's own CPU time grows while it spins,
// and by no more than the wall time the spinning took (one goroutine).
func TestProcCPUCounts(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	before, err := procCPU("self")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	x := 0
	for time.Since(start) < 20*time.Second {
		for range 1 << 20 {
			x++
		}
		now, err := procCPU("self")
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 200*time.Millisecond {
			// Ticks of 10 ms; the test's other goroutines are idle.
			if wall := time.Since(start); now-before > wall+100*time.Millisecond {
				t.Errorf("%v of CPU time in %v of spinning", now-before, wall)
			}
			return
		}
	}
	t.Errorf("20 s of spinning (%d turns) added under 200 ms of CPU time", x)
}

// TestSlowCommits: the commits over 10 ms and the bucket of the longest,
// from two readings of the commit histogram.
func TestSlowCommits(t *testing.T) {
	if _, ok := slices.BinarySearch(store.CommitBounds[:], slowCommit); !ok {
		t.Fatalf("slowCommit %v is not a bound of the commit histogram %v", slowCommit, store.CommitBounds)
	}
	// within is a reading of total commits, counts[le] of them in the
	// bucket whose bound is le.
	within := func(total uint64, counts map[time.Duration]uint64) store.Stats {
		st := store.Stats{Commits: total}
		var sum uint64
		for i, le := range store.CommitBounds {
			sum += counts[le]
			st.CommitsWithin[i] = sum
		}
		return st
	}
	before := within(100, map[time.Duration]uint64{time.Millisecond: 90, 2 * time.Millisecond: 10})
	for _, c := range []struct {
		name    string
		after   store.Stats
		n       uint64
		longest float64
	}{
		{"none", before, 0, 0},
		{"all fast", within(150, map[time.Duration]uint64{time.Millisecond: 130, 2 * time.Millisecond: 20}), 0, 2},
		{"a stall", within(160, map[time.Duration]uint64{time.Millisecond: 130, 2 * time.Millisecond: 20, 20 * time.Millisecond: 9, 500 * time.Millisecond: 1}), 10, 500},
		{"exactly 10 ms is not over", within(110, map[time.Duration]uint64{time.Millisecond: 90, 2 * time.Millisecond: 10, 10 * time.Millisecond: 10}), 0, 10},
		{"over every bound", within(102, map[time.Duration]uint64{time.Millisecond: 90, 2 * time.Millisecond: 11}), 1, -1},
	} {
		n, longest := slowCommits(before, c.after, slowCommit)
		if n != c.n || longest != c.longest {
			t.Errorf("%s: slowCommits = %d, %v; want %d, %v", c.name, n, longest, c.n, c.longest)
		}
	}
}
