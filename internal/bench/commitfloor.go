package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyDisk is the disk's share of the latency path. A report crosses
// two commits in series (A's publish, B's receipt). A node's store commits
// as node/store/wal.go describes: bbolt writes the pages the commit
// rewrote and the meta page to the store file without syncing them; then
// the store appends one log record (the commit's changes, a few KiB) to a
// log file already allocated and zero-filled, and makes it durable with
// one fdatasync, which is what the commit waits for. Beside the commits, a
// checkpoint every 100 ms makes the store file durable (one fdatasync of
// every page written since the last) and writes a 512-byte slot of a
// checkpoint file, with an fdatasync of its own.
//
// Each node's commits in the latency phase are counted from its /metrics:
// commits, the page writes they made, the log records and their bytes,
// the checkpoints. After the phase the bench replays that shape on the
// same disk with no node running: two writers, one per node, each
// committing at its node's rate (its node's page writes, not synced, at
// random places among a few commits' worth scattered in a scratch file,
// as bbolt reuses pages; then a record of its node's mean size appended
// to a scratch log and synced), each with its own checkpoints
// beside it every 100 ms. The floor is the sum of the two writers' i-th
// commits, which ran at the same time: what two such commits in series
// cost on this disk with no CPU, network or queueing at all.
type LatencyDisk struct {
	CommitsPerSA     float64 `json:"latency_commits_per_s_a"`
	CommitsPerSB     float64 `json:"latency_commits_per_s_b"`
	WritesPerCommitA float64 `json:"latency_writes_per_commit_a"`
	WritesPerCommitB float64 `json:"latency_writes_per_commit_b"`
	// The mean size of their log records, header included (log bytes /
	// log records: a commit that changed nothing appends none).
	LogBytesPerCommitA float64 `json:"latency_log_bytes_per_commit_a"`
	LogBytesPerCommitB float64 `json:"latency_log_bytes_per_commit_b"`
	// The mean wall time of those commits; of its part spent writing the
	// pages and the meta page to the store file, not synced (bbolt's
	// count); and of its part spent writing the log record and making it
	// durable (the store's count). All three are divided by the commits,
	// so that the parts add up within the whole.
	CommitMsA      float64 `json:"latency_commit_ms_a"`
	CommitMsB      float64 `json:"latency_commit_ms_b"`
	CommitWriteMsA float64 `json:"latency_commit_write_ms_a"`
	CommitWriteMsB float64 `json:"latency_commit_write_ms_b"`
	LogMsA         float64 `json:"latency_log_ms_a"`
	LogMsB         float64 `json:"latency_log_ms_b"`
	// The checkpoints a second in the phase, and a checkpoint's mean time.
	CheckpointsPerSA float64 `json:"latency_checkpoints_per_s_a"`
	CheckpointsPerSB float64 `json:"latency_checkpoints_per_s_b"`
	CheckpointMsA    float64 `json:"latency_checkpoint_ms_a"`
	CheckpointMsB    float64 `json:"latency_checkpoint_ms_b"`
	// The reads a second that waited for a commit they read to become
	// durable before handing it on (a subscriber's feed, the link's
	// outbox), and a wait's mean time.
	DurableWaitsPerSA float64 `json:"latency_durable_waits_per_s_a"`
	DurableWaitsPerSB float64 `json:"latency_durable_waits_per_s_b"`
	DurableWaitMsA    float64 `json:"latency_durable_wait_ms_a"`
	DurableWaitMsB    float64 `json:"latency_durable_wait_ms_b"`
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

// commitShape is one node's commits: how many a second, how many writes
// each made to the store file (the meta page included), and the mean
// bytes of the log record each appended.
type commitShape struct {
	perS, writes, logBytes float64
}

const (
	// commitFloorFileSize is the size of each writer's scratch store file
	// and of its scratch log.
	commitFloorFileSize = 64 << 20
	// commitFloorPage is the size of a page write (the store's page).
	commitFloorPage = 16 << 10
	// minLogRecord is the least a replayed log record writes.
	minLogRecord = 64
	// checkpointEvery mirrors the store's checkpointEvery
	// (node/store/wal.go): how often a checkpoint runs beside the commits
	// when something was logged since the last.
	checkpointEvery = 100 * time.Millisecond
	// checkpointSlot is the bytes a checkpoint writes to its file; the
	// file has two slots, written in turn (as node/store/wal.go's).
	checkpointSlot = 512
)

// scratch is one writer's files: the store file's pages, the log and the
// checkpoint file.
type scratch struct {
	pages, log, checkpoint *os.File
}

// replay is what one writer did: each commit's time, from its start to
// its log record's fdatasync; the bytes each commit appended to the log;
// and the checkpoints made beside them.
type replay struct {
	commits     []time.Duration
	recordBytes int
	checkpoints int
}

// commitFloor replays the two shapes in dir for d and returns the sums of
// the writers' i-th commits, sorted. started, if not nil, is called once
// the scratch files are ready, as the replay itself begins.
func commitFloor(dir string, a, b commitShape, d time.Duration, started func()) ([]time.Duration, error) {
	shapes := []commitShape{a, b}
	for _, s := range shapes {
		if err := s.check(); err != nil {
			return nil, err
		}
	}
	files := make([]scratch, len(shapes))
	for i := range shapes {
		var err error
		if files[i], err = newScratch(dir); err != nil {
			return nil, err
		}
		defer files[i].remove()
	}
	replays := make([]replay, len(shapes))
	errs := make([]error, len(shapes))
	if started != nil {
		started()
	}
	var wg sync.WaitGroup
	for i, s := range shapes {
		wg.Go(func() { replays[i], errs[i] = replayCommits(files[i], s, d) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := min(len(replays[0].commits), len(replays[1].commits))
	sums := make([]time.Duration, n)
	for i := range n {
		sums[i] = replays[0].commits[i] + replays[1].commits[i]
	}
	slices.Sort(sums)
	return sums, nil
}

// check refuses a shape that is not one of a store's commits.
func (s commitShape) check() error {
	switch {
	case !(s.perS > 0):
		return fmt.Errorf("commit shape %+v: want a rate above 0 commits/s", s)
	case !(s.writes >= 1):
		return fmt.Errorf("commit shape %+v: want at least one write to the store file a commit (the meta page)", s)
	case !(s.logBytes > 0) || s.logBytes > commitFloorFileSize:
		return fmt.Errorf("commit shape %+v: want a log record of 1 byte to %d MiB a commit", s, commitFloorFileSize>>20)
	}
	return nil
}

// newScratch makes a writer's files in dir, each filled with zeros and
// made durable.
func newScratch(dir string) (s scratch, err error) {
	for _, f := range []struct {
		file **os.File
		name string
		size int64
	}{
		{&s.pages, "commit-probe-*", commitFloorFileSize},
		{&s.log, "commit-probe-log-*", commitFloorFileSize},
		{&s.checkpoint, "commit-probe-checkpoint-*", 2 * checkpointSlot},
	} {
		if *f.file, err = os.CreateTemp(dir, f.name); err != nil {
			s.remove()
			return s, err
		}
		if err = fill(*f.file, f.size); err != nil {
			s.remove()
			return s, err
		}
	}
	return s, nil
}

// remove closes and removes the files made.
func (s scratch) remove() {
	for _, f := range []*os.File{s.pages, s.log, s.checkpoint} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

// fill writes size zero bytes to f and makes them durable, so that the
// commits overwrite allocated blocks, as a store's mostly do (its log
// files are allocated and zero-filled before records go in them).
func fill(f *os.File, size int64) error {
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk[:min(int64(len(chunk)), size-off)], off); err != nil {
			return err
		}
	}
	return fdatasync(f)
}

// reusedCommits is how many commits' worth of pages a store's page writes
// fall on between two checkpoints: bbolt writes a commit's pages where it
// freed pages two commits before (no reader holds them), so a node keeps
// rewriting about three commits' worth of places. (Drawn from the whole
// file instead, a checkpoint at 500 commits/s synced ~750 scattered pages
// where the nodes' own took 3.0-3.4 ms, about 40 pages on that disk.)
const reusedCommits = 3

// replayCommits makes commits of shape s in f for d, at s's rate, with
// checkpoints beside them, and returns what it did. A commit writes its
// pages, not synced, at random places among reusedCommits commits' worth
// of places scattered in f.pages (the meta page at the file's start),
// then appends one record to f.log, from the log's start again when it
// is full, and makes it durable with one fdatasync.
func replayCommits(f scratch, s commitShape, d time.Duration) (replay, error) {
	if err := s.check(); err != nil {
		return replay{}, err
	}
	page := make([]byte, commitFloorPage)
	pages := int64(commitFloorFileSize / commitFloorPage)
	places := make([]int64, max(1, int(math.Round(reusedCommits*(s.writes-1)))))
	for i := range places {
		places[i] = (1 + rand.Int64N(pages-1)) * commitFloorPage
	}
	record := make([]byte, max(minLogRecord, int(math.Round(s.logBytes))))
	for i := range record {
		record[i] = 'L'
	}
	period := time.Duration(float64(time.Second) / s.perS)
	out := replay{recordBytes: len(record)}

	var logged atomic.Uint64 // commits made, for the checkpoints
	stop := make(chan struct{})
	type done struct {
		n   int
		err error
	}
	ckpt := make(chan done, 1)
	go func() {
		n, err := checkpoints(f, &logged, stop)
		ckpt <- done{n, err}
	}()
	finish := func(err error) (replay, error) {
		close(stop)
		c := <-ckpt
		out.checkpoints = c.n
		if err := errors.Join(err, c.err); err != nil {
			return replay{}, err
		}
		return out, nil
	}

	var off int64 // where the next record goes in the log
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * period)
		if at.Sub(start) >= d {
			return finish(nil)
		}
		time.Sleep(time.Until(at))
		t0 := time.Now()
		// Commit i makes round((i+1)w) - round(iw) writes, so that the
		// commits make w a commit on average: its pages, then the meta page.
		writes := int(math.Round(float64(i+1)*s.writes) - math.Round(float64(i)*s.writes))
		for range writes - 1 {
			if _, err := f.pages.WriteAt(page, places[rand.IntN(len(places))]); err != nil {
				return finish(err)
			}
		}
		if _, err := f.pages.WriteAt(page, 0); err != nil { // the meta page
			return finish(err)
		}
		if off+int64(len(record)) > commitFloorFileSize {
			off = 0
		}
		if _, err := f.log.WriteAt(record, off); err != nil {
			return finish(err)
		}
		off += int64(len(record))
		if err := fdatasync(f.log); err != nil {
			return finish(err)
		}
		out.commits = append(out.commits, time.Since(t0))
		logged.Add(1)
	}
}

// checkpoints makes a checkpoint every checkpointEvery, if a commit was
// made since the last, until stop is closed, and returns how many it made.
// A checkpoint, as the store's, makes f.pages durable (one fdatasync of
// every page written since the last) and writes a slot of f.checkpoint,
// the two slots in turn, and makes it durable.
func checkpoints(f scratch, logged *atomic.Uint64, stop <-chan struct{}) (int, error) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	slot := make([]byte, checkpointSlot)
	n := 0
	var seen uint64
	for {
		select {
		case <-stop:
			return n, nil
		case <-t.C:
		}
		c := logged.Load()
		if c == seen {
			continue // nothing logged since the last
		}
		seen = c
		if err := fdatasync(f.pages); err != nil {
			return n, err
		}
		seq := n + 1
		binary.LittleEndian.PutUint64(slot, uint64(seq))
		if _, err := f.checkpoint.WriteAt(slot, int64(seq%2)*checkpointSlot); err != nil {
			return n, err
		}
		if err := fdatasync(f.checkpoint); err != nil {
			return n, err
		}
		n = seq
	}
}
