package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
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
// commit (no rate, no write, no log record) is refused.
func TestCommitFloor(t *testing.T) {
	dir := t.TempDir()
	sums, err := commitFloor(dir, commitShape{perS: 100, writes: 3, logBytes: 5000}, commitShape{perS: 50, writes: 1.4, logBytes: 10}, 300*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) < 5 || len(sums) > 16 {
		t.Errorf("%d pairs in 300 ms at 50 and 100 commits/s, want about 15", len(sums))
	}
	if !slices.IsSorted(sums) || sums[0] <= 0 {
		t.Errorf("sums not sorted and positive: %v", sums)
	}
	for _, c := range []struct {
		bad  commitShape
		want string
	}{
		{commitShape{perS: 0, writes: 3, logBytes: 100}, "want a rate above 0 commits/s"},
		{commitShape{perS: -1, writes: 3, logBytes: 100}, "want a rate above 0 commits/s"},
		{commitShape{perS: 10, writes: 0.5, logBytes: 100}, "want at least one write to the store file a commit"},
		{commitShape{perS: 10, writes: 3, logBytes: 0}, "want a log record of 1 byte to 64 MiB a commit"},
		{commitShape{perS: 10, writes: 3, logBytes: 65 << 20}, "want a log record of 1 byte to 64 MiB a commit"},
	} {
		if _, err := commitFloor(dir, c.bad, commitShape{perS: 10, writes: 3, logBytes: 100}, 100*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("shape %+v: error %v, want one saying %q", c.bad, err, c.want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("scratch files left: %v", left)
	}
}

// TestReplayCommits: one writer makes about rate x duration commits, each
// of which appends one record of the shape's size to the log, one after
// the other from the log's start, and writes the pages (the meta page at
// the start of the file) without growing the file; the checkpoints run
// beside the commits every checkpointEvery and write their slots.
func TestReplayCommits(t *testing.T) {
	f, err := newScratch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.remove()
	const d = 500 * time.Millisecond
	start := time.Now()
	r, err := replayCommits(f, commitShape{perS: 200, writes: 2.5, logBytes: 1000.4}, d)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start) // d, or more on a disk slower than the rate
	if n := len(r.commits); n < 80 || n > 100 {
		t.Errorf("%d commits in %v at 200/s, want about 100", n, d)
	}
	for i, c := range r.commits {
		if c <= 0 {
			t.Fatalf("commit %d took %v", i, c)
		}
	}
	if r.recordBytes != 1000 {
		t.Errorf("records of %d bytes, want 1000", r.recordBytes)
	}
	// The log holds the records side by side from its start, then zeros.
	log := make([]byte, 1<<20)
	if _, err := f.log.ReadAt(log, 0); err != nil {
		t.Fatal(err)
	}
	end := len(r.commits) * r.recordBytes
	if i := bytes.IndexFunc(log, func(c rune) bool { return c != 'L' }); i != end {
		t.Errorf("the log holds %d bytes of records, want %d (%d records of %d bytes)", i, end, len(r.commits), r.recordBytes)
	}
	if slices.ContainsFunc(log[end:], func(b byte) bool { return b != 0 }) {
		t.Error("the log holds bytes past its records")
	}
	// The meta page is written at each commit.
	page := make([]byte, commitFloorPage)
	if _, err := f.pages.ReadAt(page, 0); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(page, make([]byte, commitFloorPage)) {
		t.Error("the meta page is not the one written")
	}
	for _, c := range []struct {
		f    *os.File
		size int64
	}{{f.pages, commitFloorFileSize}, {f.log, commitFloorFileSize}, {f.checkpoint, 2 * checkpointSlot}} {
		if fi, err := c.f.Stat(); err != nil || fi.Size() != c.size {
			t.Errorf("%s after the replay: %v bytes, %v; want %d", filepath.Base(c.f.Name()), fi.Size(), err, c.size)
		}
	}
	// About one checkpoint every 100 ms, the last in the slot of its
	// number's parity.
	if lo, hi := int(d/checkpointEvery)-2, int(took/checkpointEvery); r.checkpoints < lo || r.checkpoints > hi {
		t.Errorf("%d checkpoints in %v, want %d to %d", r.checkpoints, took, lo, hi)
	}
	slots := make([]byte, 2*checkpointSlot)
	if _, err := f.checkpoint.ReadAt(slots, 0); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(slots[r.checkpoints%2*checkpointSlot:]); n != uint64(r.checkpoints) {
		t.Errorf("checkpoint slot %d holds checkpoint %d, want %d", r.checkpoints%2, n, r.checkpoints)
	}
}

// TestReplayCommitsWraps: a log that has no room for the next record
// takes it at its start again.
func TestReplayCommitsWraps(t *testing.T) {
	f, err := newScratch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.remove()
	// Four records of 20 MiB (at 0, 25, 50 and 75 ms): the fourth goes at
	// the start again, and the log's last 4 MiB keep their zeros.
	r, err := replayCommits(f, commitShape{perS: 40, writes: 1, logBytes: 20 << 20}, 90*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.commits) != 4 {
		t.Fatalf("%d commits in 90 ms at 40/s, want 4", len(r.commits))
	}
	if fi, err := f.log.Stat(); err != nil || fi.Size() != commitFloorFileSize {
		t.Errorf("log after the replay: %v bytes, %v; want %d", fi.Size(), err, commitFloorFileSize)
	}
	tail := make([]byte, 4<<20)
	if _, err := f.log.ReadAt(tail, commitFloorFileSize-int64(len(tail))); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(tail, func(b byte) bool { return b != 0 }) {
		t.Error("a record was written in the log's last 4 MiB, where none fits whole")
	}
}

// TestLogRecords: a record's mean bytes, and the log's time a commit,
// from two counts.
func TestLogRecords(t *testing.T) {
	before := store.Stats{Commits: 10, LogRecords: 8, LogBytes: 1000, LogTime: time.Second}
	after := store.Stats{Commits: 30, LogRecords: 26, LogBytes: 91000, LogTime: 1030 * time.Millisecond}
	if b, logMs := logRecords(before, after); b != 5000 || logMs != 1.5 {
		t.Errorf("logRecords = %v bytes, %v ms; want 5000, 1.5", b, logMs)
	}
	if b, logMs := logRecords(after, after); b != 0 || logMs != 0 {
		t.Errorf("no commits: %v, %v; want 0, 0", b, logMs)
	}
}

// TestCheckpointRate: checkpoints a second and their mean time from two
// counts.
func TestCheckpointRate(t *testing.T) {
	before := store.Stats{Checkpoints: 5, CheckpointTime: time.Second}
	after := store.Stats{Checkpoints: 25, CheckpointTime: 1060 * time.Millisecond}
	if perS, ckMs := checkpointRate(before, after, 2*time.Second); perS != 10 || ckMs != 3 {
		t.Errorf("checkpointRate = %v/s of %v ms; want 10/s of 3", perS, ckMs)
	}
	if perS, ckMs := checkpointRate(after, after, time.Second); perS != 0 || ckMs != 0 {
		t.Errorf("no checkpoints: %v/s of %v ms; want 0, 0", perS, ckMs)
	}
}

// TestParseStoreStats: the store's counts from a node's metrics page, the
// log's and the checkpoints' as the node prints them (%g: a million and
// more with an exponent).
func TestParseStoreStats(t *testing.T) {
	var page strings.Builder
	for i, le := range store.CommitBounds {
		fmt.Fprintf(&page, "tearline_store_commit_seconds_bucket{le=\"%g\"} %d\n", le.Seconds(), 100+i)
	}
	fmt.Fprintf(&page, "tearline_store_commit_seconds_bucket{le=\"+Inf\"} 200\n")
	fmt.Fprintf(&page, "tearline_store_commit_seconds_sum 0.5\ntearline_store_commit_seconds_count 200\n")
	fmt.Fprintf(&page, "tearline_store_writes_total 3000\ntearline_store_write_seconds_total 0.02\n")
	fmt.Fprintf(&page, "tearline_store_log_records_total %g\n", float64(190))
	fmt.Fprintf(&page, "tearline_store_log_bytes_total %g\n", float64(1234567))
	fmt.Fprintf(&page, "tearline_store_log_seconds_total %g\n", 0.25)
	fmt.Fprintf(&page, "tearline_store_checkpoints_total %g\n", float64(42))
	fmt.Fprintf(&page, "tearline_store_checkpoint_seconds_total %g\n", 0.125)
	fmt.Fprintf(&page, "tearline_store_durable_waits_total %d\n", 1234567)
	fmt.Fprintf(&page, "tearline_store_durable_wait_seconds_total %.6f\n", 0.5)
	st, err := parseStoreStats(page.String())
	if err != nil {
		t.Fatal(err)
	}
	want := store.Stats{Commits: 200, Writes: 3000, CommitTime: 500 * time.Millisecond, WriteTime: 20 * time.Millisecond,
		LogRecords: 190, LogBytes: 1234567, LogTime: 250 * time.Millisecond, Checkpoints: 42, CheckpointTime: 125 * time.Millisecond,
		DurableWaits: 1234567, DurableWaitTime: 500 * time.Millisecond}
	for i := range store.CommitBounds {
		want.CommitsWithin[i] = uint64(100 + i)
	}
	if st != want {
		t.Errorf("parseStoreStats = %+v, want %+v", st, want)
	}
	for _, c := range []struct{ from, to, want string }{
		{"tearline_store_checkpoints_total 42\n", "", "metric tearline_store_checkpoints_total: not on the page"},
		{"tearline_store_log_records_total 190\n", "tearline_store_log_records_total 1.5\n", "metric tearline_store_log_records_total: 1.5 is not a count"},
		{"tearline_store_log_seconds_total 0.25\n", "", "metric tearline_store_log_seconds_total: not on the page"},
	} {
		text := strings.Replace(page.String(), c.from, c.to, 1)
		if text == page.String() {
			t.Fatalf("%q is not on the page", c.from)
		}
		if _, err := parseStoreStats(text); err == nil || err.Error() != c.want {
			t.Errorf("without %q: error %v, want %q", c.from, err, c.want)
		}
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
