package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tearline/tearline/internal/bench"
	"github.com/tearline/tearline/node/store"
)

func newBenchCmd(g *globals) *cobra.Command {
	var o bench.Options
	var probe time.Duration
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure a two-node federation on this machine against its limits",
		Long: `Start two real node processes (USA and GBR) from the dev layout in a
temporary folder, on loopback mTLS with their own bbolt files, and measure:

  limits       raw grpc-go streaming over mTLS with the same message, and the
               ed25519 sign and verify time (crypto floor = cores / (sign + verify)),
               and the disk: one durable write, and per page of a durable batch
               of pages scattered through a file or side by side; and how much
               of a cached file one read through a map of it makes resident
  federation   reports (one 2 KiB portion) published at USA, counted at a
               subscriber at GBR: reports/s end to end
  latency      publish at USA to delivery at GBR's subscriber at a fixed rate,
               and to USA's answer; each process's CPU, each node's commits
               (how long, how busy its committer) and checkpoints, and
               those commits replayed on the disk alone; and how late the
               machine wakes a thread sleeping 1 ms on each CPU, idle (before
               the nodes start) and beside that replay: a CPU the host or
               the kernel holds delays whatever runs on it
  fan-out      every report to --subscribers streams at GBR; GBR's peak RSS
               during the phase (Linux)
  catch-up     GBR stopped while USA accepts --catchup reports; reports/s
               for GBR to hold them all once it is back

The subscribers, in this process, receive every byte of every delivery but
decode only the cursor, report id and title they count by.

It prints a table with each figure, its target and its ratio to the limits;
with --json, one object. It takes a few minutes and both cores.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("wake-probe") {
				// The bench's own child (bench.ProbeMachine).
				if probe <= 0 {
					return usagef("--wake-probe %s: want a duration above 0", probe)
				}
				return json.NewEncoder(g.stdout).Encode(bench.WakeProbe(cmd.Context(), probe))
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the tearline binary: %w", err)
			}
			o.Exe = exe
			if !g.json {
				o.Progress = g.stderr
			}
			r, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(r)
			}
			printBench(g, r)
			return nil
		},
	}
	f := c.Flags()
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "how long the throughput and latency phases each run")
	f.IntVar(&o.Workers, "workers", bench.DefaultWorkers, "reports the publisher keeps unanswered")
	f.BoolVar(&o.Unary, "publish-unary", false, "publish with one Publish call per report (default: all over one PublishStream)")
	f.IntVar(&o.LatencyRate, "rate", 500, "publish rate of the latency phase, reports/s")
	f.IntVar(&o.Subscribers, "subscribers", 1000, "subscriber streams in the fan-out phase")
	f.IntVar(&o.FanoutReports, "fanout-reports", 500, "reports each fan-out stream receives")
	f.IntVar(&o.CatchUp, "catchup", 100_000, "reports accepted while the receiver is offline")
	f.IntVar(&o.NodeMemoryLimitMiB, "node-memory-limit", bench.DefaultNodeMemoryLimitMiB, "each node's memory_limit_mib (soft limit on its own memory, MiB; 0: none)")
	f.IntVar(&o.NodeGCPercent, "node-gc-percent", bench.DefaultNodeGCPercent, "each node's gc_percent (how far its heap grows over what is live before a collection, percent; 0: the runtime's default)")
	f.StringVar(&o.Profiles, "cpuprofile-dir", "", "write each node process's CPU profile (pprof) into this folder, and the bench's own (bench.pprof)")
	f.StringVar(&o.PerfDir, "perf-dir", "", "record the whole machine with perf (perf record -a -g) during the throughput and latency phases into this folder, and write each phase's breakdown there: each process's share and where its CPU went (needs perf, with the right to record every CPU: root, CAP_PERFMON or kernel.perf_event_paranoid <= 0)")
	f.StringVar(&o.Dir, "dir", "", "lay the federation out here and keep it (default: a temporary folder, removed)")
	f.DurationVar(&probe, "wake-probe", 0, "only measure, for this long, how late a thread sleeping 1 ms on each CPU wakes, and print it as JSON (the bench runs itself so)")
	_ = f.MarkHidden("wake-probe")
	return c
}

func printBench(g *globals, r *bench.Result) {
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	limit := "no memory_limit_mib"
	if r.NodeMemoryLimitMiB > 0 {
		limit = fmt.Sprintf("memory_limit_mib %d", r.NodeMemoryLimitMiB)
	}
	if r.NodeGCPercent > 0 {
		limit += fmt.Sprintf(", gc_percent %d", r.NodeGCPercent)
	}
	fmt.Fprintf(w, "Tearline bench, %s, %d CPUs; nodes with %s; published with %s\n\n", r.Date, r.CPUs, limit, r.PublishAPI)
	fmt.Fprintf(w, "figure\tvalue\ttarget\tratio to limit\n")
	fmt.Fprintf(w, "grpc baseline (%d-byte msgs, mTLS)\t%.0f msgs/s\t\tlimit\n", r.MessageBytes, r.GRPCBaselineMsgsPerS)
	fmt.Fprintf(w, "ed25519 sign / verify\t%.1f / %.1f µs\t\t\n", r.SignMicros, r.VerifyMicros)
	fmt.Fprintf(w, "crypto floor\t%.0f reports/s\t\tlimit\n", r.CryptoFloorReportsPerS)
	fmt.Fprintf(w, "disk: write + fdatasync\t%.2f ms\t\tlimit (a commit makes one)\n", r.SyncMs)
	fmt.Fprintf(w, "disk: per 16 KiB page synced in 64\t%.0f µs scattered, %.0f µs contiguous\t\tlimit\n", r.ScatteredPageUs, r.ContiguousPageUs)
	fmt.Fprintf(w, "memory: one read through a map of a cached file\t%.0f KiB mapped\t\tkernel (fault-around)\n", r.MapFaultKiB)
	fmt.Fprintf(w, "federation throughput\t%.0f reports/s\t>= 10000 and >= 40%% of floor\t%.0f%% of crypto floor, %.0f%% of grpc\n",
		r.FederationReportsPerS, 100*r.FederationReportsPerS/r.CryptoFloorReportsPerS, 100*r.FederationReportsPerS/r.GRPCBaselineMsgsPerS)
	fmt.Fprintf(w, "  (publish accepted at USA)\t%.0f reports/s\t\t\n", r.PublishReportsPerS)
	cpu := r.FederationCPUMicrosA + r.FederationCPUMicrosB + r.FederationCPUMicrosBench
	fmt.Fprintf(w, "  (CPU a report: USA / GBR / bench client)\t%.0f / %.0f / %.0f µs\t\t%.0f%% of the cores at this rate\n",
		r.FederationCPUMicrosA, r.FederationCPUMicrosB, r.FederationCPUMicrosBench, cpu*r.FederationReportsPerS/(1e4*float64(r.CPUs)))
	fmt.Fprintf(w, "latency p50 at %d/s\t%.2f ms\t\t\n", r.LatencyRatePerS, r.LatencyP50Ms)
	fmt.Fprintf(w, "latency p99\t%.2f ms\t<= 5 ms\t\n", r.LatencyP99Ms)
	fmt.Fprintf(w, "latency p99.9\t%.2f ms\t<= 20 ms\t\n", r.LatencyP999Ms)
	fmt.Fprintf(w, "  (of which publish to USA's answer: p50 / p99 / p99.9)\t%.2f / %.2f / %.2f ms\t\t\n", r.LatencyPublishP50Ms, r.LatencyPublishP99Ms, r.LatencyPublishP999Ms)
	lcpu := r.LatencyCPUMicrosA + r.LatencyCPUMicrosB + r.LatencyCPUMicrosBench
	fmt.Fprintf(w, "  (CPU a report: USA / GBR / bench client)\t%.0f / %.0f / %.0f µs\t\t%.0f%% of the cores at this rate\n",
		r.LatencyCPUMicrosA, r.LatencyCPUMicrosB, r.LatencyCPUMicrosBench, lcpu*float64(r.LatencyRatePerS)/(1e4*float64(r.CPUs)))
	fmt.Fprintf(w, "  disk alone: two commits in series, p50 / p99 / p99.9\t%.2f / %.2f / %.2f ms\t\tlimit (the phase's commits replayed)\n", r.DiskFloorP50Ms, r.DiskFloorP99Ms, r.DiskFloorP999Ms)
	stalls := func(when, limit string, s bench.Stalls) {
		where := fmt.Sprintf("on %d CPUs", r.CPUs)
		if !s.Pinned {
			where = "unpinned"
		}
		fmt.Fprintf(w, "  machine %s: a sleeping thread woken late by p99 / p99.9 / max\t%.2f / %.2f / %.2f ms, %d times over 10 ms (%d wake-ups, %s)\t\tlimit (%s)\n",
			when, s.LateP99Ms, s.LateP999Ms, s.LateMaxMs, s.Over10Ms, s.Wakeups, where, limit)
	}
	stalls("idle", "the host's and kernel's scheduling", r.MachineIdle)
	stalls("beside the replay", "the same, with the disk's I/O", r.MachineIO)
	fmt.Fprintf(w, "  (the phase's commits: USA / GBR)\t%.0f/s of %.1f writes, %.1f KiB log / %.0f/s of %.1f, %.1f KiB\t\t\n",
		r.CommitsPerSA, r.WritesPerCommitA, r.LogBytesPerCommitA/1024, r.CommitsPerSB, r.WritesPerCommitB, r.LogBytesPerCommitB/1024)
	fmt.Fprintf(w, "  (a commit's mean time, of which pages + log: USA / GBR)\t%.2f (%.2f + %.2f) / %.2f (%.2f + %.2f) ms\t\tthe committer busy %.0f%% / %.0f%% of the time\n",
		r.CommitMsA, r.CommitWriteMsA, r.LogMsA, r.CommitMsB, r.CommitWriteMsB, r.LogMsB, r.CommitsPerSA*r.CommitMsA/10, r.CommitsPerSB*r.CommitMsB/10)
	fmt.Fprintf(w, "  (its checkpoints, and their mean time: USA / GBR)\t%.1f/s, %.2f ms / %.1f/s, %.2f ms\t\t\n", r.CheckpointsPerSA, r.CheckpointMsA, r.CheckpointsPerSB, r.CheckpointMsB)
	fmt.Fprintf(w, "  (reads that waited for a durable commit, mean wait: USA / GBR)\t%.1f/s, %.2f ms / %.1f/s, %.2f ms\t\t\n", r.DurableWaitsPerSA, r.DurableWaitMsA, r.DurableWaitsPerSB, r.DurableWaitMsB)
	fmt.Fprintf(w, "  (its commits over 10 ms, and the longest: USA / GBR)\t%d, %s / %d, %s\t\t\n", r.SlowCommitsA, within(r.LongestCommitMsA), r.SlowCommitsB, within(r.LongestCommitMsB))
	fmt.Fprintf(w, "fan-out (%d streams x %d reports)\t%.0f deliveries/s\t>= 100000\t%.0f%% of grpc\n",
		r.FanoutSubscribers, r.FanoutReports, r.FanoutDeliveriesPerS, 100*r.FanoutDeliveriesPerS/r.GRPCBaselineMsgsPerS)
	fmt.Fprintf(w, "fan-out peak RSS (GBR node)\t%.0f MiB\t<= 512 MiB\t\n", r.FanoutPeakRSSMiB)
	fmt.Fprintf(w, "  (at the phase's start)\t%.0f MiB\t\t\n", r.FanoutStartRSSMiB)
	fmt.Fprintf(w, "  (at the end: anonymous / store file)\t%.0f / %.0f MiB\t\t\n", r.FanoutAnonRSSMiB, r.FanoutFileRSSMiB)
	fmt.Fprintf(w, "catch-up (%d reports)\t%.0f reports/s\t>= 80%% of federation\t%.0f%% of federation\n",
		r.CatchupReports, r.CatchupReportsPerS, 100*r.CatchupReportsPerS/r.FederationReportsPerS)
	w.Flush()
}

// within says how long the longest commit took, from the histogram
// bucket that held it (see bench.LatencyDisk).
func within(ms float64) string {
	if ms < 0 {
		return fmt.Sprintf("over %d ms", store.CommitBounds[len(store.CommitBounds)-1].Milliseconds())
	}
	return fmt.Sprintf("<= %g ms", ms)
}
