package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"
)

// LatencyDisk is the disk's share of the latency path. A report crosses
// two commits in series (A's publish, B's receipt); each node's commits in
// the latency phase are counted from its /metrics (commits, and the page
// writes they made). After the phase the bench replays that shape on the
// same disk with no node running: two writers, one per node, each
// committing at its node's rate with its node's writes per commit (pages
// at random places in a file, fdatasync, then the meta page, fdatasync, as
// bbolt does). The floor is the sum of the two writers' i-th commits, which
// ran at the same time: what two such commits in series cost on this disk
// with no CPU, network or queueing at all.
type LatencyDisk struct {
	CommitsPerSA     float64 `json:"latency_commits_per_s_a"`
	CommitsPerSB     float64 `json:"latency_commits_per_s_b"`
	WritesPerCommitA float64 `json:"latency_writes_per_commit_a"`
	WritesPerCommitB float64 `json:"latency_writes_per_commit_b"`
	// The mean wall time of those commits, and of its part spent writing
	// and syncing (bbolt's count).
	CommitMsA      float64 `json:"latency_commit_ms_a"`
	CommitMsB      float64 `json:"latency_commit_ms_b"`
	CommitWriteMsA float64 `json:"latency_commit_write_ms_a"`
	CommitWriteMsB float64 `json:"latency_commit_write_ms_b"`
	// How many of those commits took over 10 ms, and the bound of the
	// histogram bucket that holds the longest (-1: over the last bound,
	// store.CommitBounds): a disk that stalls shows here.
	SlowCommitsA     uint64  `json:"latency_commits_over_10ms_a"`
	SlowCommitsB     uint64  `json:"latency_commits_over_10ms_b"`
	LongestCommitMsA float64 `json:"latency_longest_commit_within_ms_a"`
	LongestCommitMsB float64 `json:"latency_longest_commit_within_ms_b"`
	DiskFloorP50Ms   float64 `json:"latency_disk_floor_p50_ms"`
	DiskFloorP99Ms   float64 `json:"latency_disk_floor_p99_ms"`
	DiskFloorP999Ms  float64 `json:"latency_disk_floor_p999_ms"`
	DiskFloorCommits int     `json:"latency_disk_floor_commits"`
}

// commitShape is one node's commits: how many a second, and how many
// writes each made (the meta page included).
type commitShape struct {
	perS, writes float64
}

// commitFloorFileSize is each writer's scratch file.
const commitFloorFileSize = 64 << 20

// commitFloor replays the two shapes in dir for d and returns the sums of
// the writers' i-th commits, sorted.
func commitFloor(dir string, a, b commitShape, d time.Duration) ([]time.Duration, error) {
	shapes := []commitShape{a, b}
	times := make([][]time.Duration, len(shapes))
	errs := make([]error, len(shapes))
	files := make([]*os.File, len(shapes))
	for i := range shapes {
		if shapes[i].perS <= 0 || shapes[i].writes < 2 {
			return nil, fmt.Errorf("commit shape %+v: want a rate and at least two writes a commit", shapes[i])
		}
		f, err := os.CreateTemp(dir, "commit-probe-*")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if err := fill(f, commitFloorFileSize); err != nil {
			return nil, err
		}
		files[i] = f
	}
	var wg sync.WaitGroup
	for i, s := range shapes {
		wg.Go(func() { times[i], errs[i] = replayCommits(files[i], s, d) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := min(len(times[0]), len(times[1]))
	sums := make([]time.Duration, n)
	for i := range n {
		sums[i] = times[0][i] + times[1][i]
	}
	slices.Sort(sums)
	return sums, nil
}

// fill writes size bytes to f and makes them durable, so that the commits
// overwrite allocated blocks, as a store's mostly do.
func fill(f *os.File, size int64) error {
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			return err
		}
	}
	return fdatasync(f)
}

// replayCommits makes commits of shape s in f for d, at s's rate, and
// returns how long each took.
func replayCommits(f *os.File, s commitShape, d time.Duration) ([]time.Duration, error) {
	const page = 16 << 10
	buf := make([]byte, page)
	pages := int64(commitFloorFileSize / page)
	writes := max(2, int(math.Round(s.writes)))
	period := time.Duration(float64(time.Second) / s.perS)
	var out []time.Duration
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * period)
		if at.Sub(start) >= d {
			return out, nil
		}
		time.Sleep(time.Until(at))
		t0 := time.Now()
		for range writes - 1 {
			if _, err := f.WriteAt(buf, (1+rand.Int64N(pages-1))*page); err != nil {
				return nil, err
			}
		}
		if err := fdatasync(f); err != nil {
			return nil, err
		}
		if _, err := f.WriteAt(buf, 0); err != nil { // the meta page
			return nil, err
		}
		if err := fdatasync(f); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
}
