package cli

import (
	"bytes"
	"encoding/json"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/tearline/tearline/internal/bench"
)

// TestPrintBench: the table shows each figure with its ratio to the
// limits, and the latency phase's rows derived from the result: the
// cores' share and how busy each committer was.
func TestPrintBench(t *testing.T) {
	r := &bench.Result{
		Date: "2026-12-06T00:00:00Z", CPUs: 2, NodeMemoryLimitMiB: 224, NodeGCPercent: 400, MessageBytes: 2335,
		GRPCBaselineMsgsPerS: 200000, CryptoFloorReportsPerS: 25000,
		FederationReportsPerS: 5000,
		LatencyRatePerS:       500, LatencyP50Ms: 3, LatencyP99Ms: 16, LatencyP999Ms: 25,
		LatencyPublishP50Ms: 1.5, LatencyPublishP99Ms: 8, LatencyPublishP999Ms: 12,
		LatencyCPUMicrosA: 1000, LatencyCPUMicrosB: 1000, LatencyCPUMicrosBench: 400,
		LatencyDisk: bench.LatencyDisk{CommitsPerSA: 500, CommitsPerSB: 400, WritesPerCommitA: 15.6, WritesPerCommitB: 12.04,
			LogBytesPerCommitA: 5324.8, LogBytesPerCommitB: 4096,
			CommitMsA: 1.2, CommitWriteMsA: 0.1, LogMsA: 0.9, CommitMsB: 1.5, CommitWriteMsB: 0.12, LogMsB: 1.1,
			CheckpointsPerSA: 9.8, CheckpointMsA: 3.2, CheckpointsPerSB: 10, CheckpointMsB: 2.9,
			DurableWaitsPerSA: 12.5, DurableWaitMsA: 0.4, DurableWaitsPerSB: 3, DurableWaitMsB: 0.25,
			SlowCommitsA: 0, LongestCommitMsA: 5, SlowCommitsB: 3, LongestCommitMsB: -1},
		MachineIdle:        bench.Stalls{Wakeups: 5000, LateP99Ms: 0.25, LateP999Ms: 2.5, LateMaxMs: 4, Pinned: true},
		MachineIO:          bench.Stalls{Wakeups: 15000, LateP99Ms: 1.5, LateP999Ms: 3.25, LateMaxMs: 12, Over10Ms: 2},
		CatchupReportsPerS: 6000,
	}
	var out bytes.Buffer
	printBench(&globals{stdout: &out}, r)
	for _, want := range []string{
		`(?m)^federation throughput +5000 reports/s +>= 10000 and >= 40% of floor +20% of crypto floor, 2% of grpc$`,
		`(?m)^  \(of which publish to USA's answer: p50 / p99 / p99.9\) +1.50 / 8.00 / 12.00 ms`,
		// (1000 + 1000 + 400) µs x 500/s = 1.2 cores of 2.
		`(?m)^  \(CPU a report: USA / GBR / bench client\) +1000 / 1000 / 400 µs +60% of the cores at this rate$`,
		// 500/s x 1.2 ms and 400/s x 1.5 ms.
		`(?m)^  \(the phase's commits: USA / GBR\) +500/s of 15.6 writes, 5.2 KiB log / 400/s of 12.0, 4.0 KiB +$`,
		`(?m)^  \(a commit's mean time, of which pages \+ log: USA / GBR\) +1.20 \(0.10 \+ 0.90\) / 1.50 \(0.12 \+ 1.10\) ms +the committer busy 60% / 60% of the time$`,
		`(?m)^  \(its checkpoints, and their mean time: USA / GBR\) +9.8/s, 3.20 ms / 10.0/s, 2.90 ms +$`,
		`(?m)^  \(reads that waited for a durable commit, mean wait: USA / GBR\) +12.5/s, 0.40 ms / 3.0/s, 0.25 ms +$`,
		// A commit makes one durable write: its log record.
		`(?m)^disk: write \+ fdatasync +0.00 ms +limit \(a commit makes one\)$`,
		`(?m)^  \(its commits over 10 ms, and the longest: USA / GBR\) +0, <= 5 ms / 3, over 5000 ms +$`,
		`(?m)^catch-up \(0 reports\) +6000 reports/s +>= 80% of federation +120% of federation$`,
		// The machine's stalls, idle and beside the replay (unpinned there).
		`(?m)^  machine idle: a sleeping thread woken late by p99 / p99.9 / max +0.25 / 2.50 / 4.00 ms, 0 times over 10 ms \(5000 wake-ups, on 2 CPUs\) +limit \(the host's and kernel's scheduling\)$`,
		`(?m)^  machine beside the replay: a sleeping thread woken late by p99 / p99.9 / max +1.50 / 3.25 / 12.00 ms, 2 times over 10 ms \(15000 wake-ups, unpinned\) +limit \(the same, with the disk's I/O\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("the table does not match %s:\n%s", want, out.String())
		}
	}
}

// The table's heading names only the node settings the run set.
func TestPrintBenchHeading(t *testing.T) {
	for _, tc := range []struct {
		mem, gc int
		api     string
		want    string
	}{
		{224, 400, "PublishStream", "nodes with memory_limit_mib 224, gc_percent 400; published with PublishStream\n"},
		{224, 0, "Publish", "nodes with memory_limit_mib 224; published with Publish\n"},
		{0, 0, "PublishStream", "nodes with no memory_limit_mib; published with PublishStream\n"},
	} {
		var out bytes.Buffer
		printBench(&globals{stdout: &out}, &bench.Result{Date: "2026-12-06T00:00:00Z", CPUs: 2, NodeMemoryLimitMiB: tc.mem, NodeGCPercent: tc.gc, PublishAPI: tc.api})
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("memory limit %d, gc percent %d: the heading does not say %q:\n%s", tc.mem, tc.gc, tc.want, out.String())
		}
	}
}

// TestBenchWakeProbe: the hidden --wake-probe that the bench runs as its
// own child measures and prints its figures as JSON, and nothing else.
func TestBenchWakeProbe(t *testing.T) {
	code, stdout, stderr := run(t, "bench", "--wake-probe", "200ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var s bench.Stalls
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("printed %q: %v", stdout, err)
	}
	if s.Wakeups < 10 || s.LateMaxMs < s.LateP99Ms {
		t.Errorf("measured %+v", s)
	}
	if runtime.GOOS == "linux" && !s.Pinned {
		t.Error("the probe's threads were not pinned")
	}
	for _, bad := range []string{"0s", "-1s"} {
		code, stdout, stderr := run(t, "bench", "--wake-probe", bad)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "--wake-probe "+bad+": want a duration above 0") {
			t.Errorf("--wake-probe %s: exit %d, stdout %q, stderr %q; want a usage error", bad, code, stdout, stderr)
		}
	}
	code, stdout, _ = run(t, "bench", "--help")
	if code != 0 || !strings.Contains(stdout, "--perf-dir") || strings.Contains(stdout, "wake-probe") {
		t.Errorf("--help (exit %d) lists the flags without the bench's own: %s", code, stdout)
	}
}
