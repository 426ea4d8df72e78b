// Package bench measures a Tearline federation on this machine against the
// machine's own limits (issue 7). Run it with `tearline bench` or
// `make bench`.
//
// Two real node processes, A (USA) and B (GBR), run from the dev layout on
// loopback mTLS with their own bbolt files. The benchmark is a client of
// both, as a liaison officer publishing at A and as subscriber services
// at B, and measures, in one run:
//
//   - limits: raw grpc-go server streaming over mTLS with the message a
//     subscriber at B receives (messages/s), and the ed25519 sign and verify
//     time on one core; the crypto floor is cores / (sign + verify); and
//     the disk's cost of a durable write, and per page of a durable batch
//     of pages scattered through a file or side by side;
//   - federation throughput: reports of one 2 KiB portion, releasable to B,
//     published at A as fast as A accepts them, counted at one subscriber
//     at B (signed, verified, policy-checked and committed at both ends);
//   - latency: publish at A to delivery at B's subscriber at a fixed rate;
//     then the phase's commits replayed on the disk alone (LatencyDisk),
//     and beside them how late the machine wakes a sleeping thread on
//     each CPU (Stalls);
//   - fan-out: every report delivered to many subscriber streams at B, and
//     B's peak resident set;
//   - catch-up: B stopped while A accepts many reports; the rate at which B
//     holds them all once it is back.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/node/store"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Options sets what the benchmark does. Zero values take the defaults.
type Options struct {
	// Exe is the tearline binary that runs the nodes (`Exe node --config
	// F`) and the machine's wake-up probe (`Exe bench --wake-probe D`).
	Exe string
	// Dir is where the federation is laid out; empty: a temporary
	// directory, removed at the end.
	Dir string
	// Duration is how long each timed phase (throughput, latency) runs.
	Duration time.Duration
	// Workers is how many reports the publisher keeps unanswered.
	Workers int
	// Unary publishes with one Publish call per report; otherwise the
	// publisher sends its reports over one PublishStream.
	Unary bool
	// LatencyRate is the fixed publish rate of the latency phase.
	LatencyRate int
	// Subscribers is the number of subscriber streams in the fan-out phase,
	// and FanoutReports how many reports each receives.
	Subscribers   int
	FanoutReports int
	// CatchUp is how many reports A accepts while B is offline.
	CatchUp int
	// NodeMemoryLimitMiB is each node's memory_limit_mib (0: none).
	NodeMemoryLimitMiB int
	// NodeGCPercent is each node's gc_percent (0: the runtime's default).
	NodeGCPercent int
	// Profiles, when set, is a folder where each node process writes a CPU
	// profile (PARTY-N.pprof, N counting its starts), and the benchmark
	// process its own (bench.pprof: the client's side of every phase, and
	// the limits it measures itself).
	Profiles string
	// PerfDir, when set, is a folder where `perf record -a -g` records the
	// whole machine during the throughput phase (federation.perf.data) and
	// the latency phase (latency.perf.data), and where each phase's
	// breakdown is written: each process's share of the samples and where
	// its own went (federation.txt, latency.txt). It needs perf, with the
	// right to record every CPU (root, CAP_PERFMON or
	// kernel.perf_event_paranoid <= 0).
	PerfDir string
	// Progress receives one line per phase; nil: none.
	Progress io.Writer
}

// DefaultNodeMemoryLimitMiB is the nodes' memory_limit_mib unless told
// otherwise. In the fan-out phase GBR holds ~140 MiB live while it serves
// the 1,000 streams, and with gc_percent 400 and no limit its heap grows to
// ~510 MiB anonymous (a peak RSS of ~540 MiB, over the 512 MiB target).
// With 320 it ends the phase at ~300 MiB anonymous (peak RSS ~335-345
// MiB) and collects far less often than under the 224 used before, which
// held it at ~210 MiB but spent about a quarter of its CPU collecting:
// fan-out 132,000-158,000 deliveries/s against 108,000-150,000 in runs
// alternating the two (BENCHMARKS.md, the eighteenth session).
const DefaultNodeMemoryLimitMiB = 320

// DefaultNodeGCPercent is the nodes' gc_percent unless told otherwise: 400
// lets a node's heap grow to five times what is live before a collection
// (the runtime's default, 100: twice), up to the memory limit above, which
// then triggers the collections instead (BENCHMARKS.md, the twelfth
// session, for what it changes).
const DefaultNodeGCPercent = 400

// DefaultWorkers is how many reports the publisher keeps unanswered unless
// told otherwise (as many as a node holds unanswered on one PublishStream,
// gateway.PublishWindow). With 64 calls in flight, A's single store writer
// sat idle between commits waiting for calls (groups of ~22 reports); 256
// keeps it busy.
const DefaultWorkers = 256

func (o *Options) defaults() error {
	if o.Exe == "" {
		return errors.New("bench: no tearline binary to run the nodes")
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.LatencyRate <= 0 {
		o.LatencyRate = 500
	}
	if o.Subscribers <= 0 {
		o.Subscribers = 1000
	}
	if o.FanoutReports <= 0 {
		o.FanoutReports = 500
	}
	if o.CatchUp <= 0 {
		o.CatchUp = 100_000
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.NodeMemoryLimitMiB < 0 || (o.NodeMemoryLimitMiB > 0 && o.NodeMemoryLimitMiB < gateway.MinMemoryLimitMiB) {
		return fmt.Errorf("bench: node memory limit %d MiB: want 0 (none) or at least %d", o.NodeMemoryLimitMiB, gateway.MinMemoryLimitMiB)
	}
	if !gateway.ValidGCPercent(o.NodeGCPercent) {
		return fmt.Errorf("bench: node GC percent %d: want 0 (the runtime's default) or %d to %d", o.NodeGCPercent, gateway.MinGCPercent, gateway.MaxGCPercent)
	}
	return nil
}

// Result is one run's figures. The JSON keys are the ones issue 7 names.
type Result struct {
	Date                 string  `json:"date"`
	CPUs                 int     `json:"cpus"`
	NodeMemoryLimitMiB   int     `json:"node_memory_limit_mib"`
	NodeGCPercent        int     `json:"node_gc_percent"`
	PublishAPI           string  `json:"publish_api"` // "PublishStream" (one stream, Workers reports unanswered) or "Publish" (Workers calls in flight)
	MessageBytes         int     `json:"message_bytes"`
	GRPCBaselineMsgsPerS float64 `json:"grpc_baseline_msgs_per_s"`
	DiskLimits
	SignMicros             float64 `json:"sign_us"`
	VerifyMicros           float64 `json:"verify_us"`
	CryptoFloorReportsPerS float64 `json:"crypto_floor_reports_per_s"`
	PublishReportsPerS     float64 `json:"publish_reports_per_s"`
	FederationReports      int     `json:"federation_reports"`
	FederationReportsPerS  float64 `json:"federation_reports_per_s"`
	// CPU time (user and system) that A, B and the benchmark process
	// used in the throughput phase, per report published.
	FederationCPUMicrosA     float64 `json:"federation_cpu_us_per_report_a"`
	FederationCPUMicrosB     float64 `json:"federation_cpu_us_per_report_b"`
	FederationCPUMicrosBench float64 `json:"federation_cpu_us_per_report_bench"`
	LatencyRatePerS          int     `json:"latency_rate_per_s"`
	LatencyReports           int     `json:"latency_reports"`
	LatencyP50Ms             float64 `json:"latency_p50_ms"`
	LatencyP99Ms             float64 `json:"latency_p99_ms"`
	LatencyP999Ms            float64 `json:"latency_p999_ms"`
	// The latency path's first part: publish to A's acknowledgement
	// (signed, checked and committed at A).
	LatencyPublishP50Ms  float64 `json:"latency_publish_p50_ms"`
	LatencyPublishP99Ms  float64 `json:"latency_publish_p99_ms"`
	LatencyPublishP999Ms float64 `json:"latency_publish_p999_ms"`
	// CPU time that A, B and the benchmark process used in the latency
	// phase, per report: at a fixed low rate few reports share a commit.
	LatencyCPUMicrosA     float64 `json:"latency_cpu_us_per_report_a"`
	LatencyCPUMicrosB     float64 `json:"latency_cpu_us_per_report_b"`
	LatencyCPUMicrosBench float64 `json:"latency_cpu_us_per_report_bench"`
	LatencyDisk
	// How late the machine wakes a sleeping thread on each CPU, idle
	// before the nodes start and beside the disk's replay (see Stalls).
	MachineIdle          Stalls  `json:"machine_idle"`
	MachineIO            Stalls  `json:"machine_beside_replay"`
	FanoutSubscribers    int     `json:"fanout_subscribers"`
	FanoutReports        int     `json:"fanout_reports"`
	FanoutDeliveriesPerS float64 `json:"fanout_deliveries_per_s"`
	FanoutStartRSSMiB    float64 `json:"fanout_start_rss_mib"`
	FanoutPeakRSSMiB     float64 `json:"fanout_peak_rss_mib"`
	FanoutAnonRSSMiB     float64 `json:"fanout_rss_anon_mib"`
	FanoutFileRSSMiB     float64 `json:"fanout_rss_file_mib"`
	CatchupReports       int     `json:"catchup_reports"`
	CatchupReportsPerS   float64 `json:"catchup_reports_per_s"`
}

// Run runs every phase and returns the figures.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.PerfDir != "" {
		if err := perfAvailable(); err != nil {
			return nil, fmt.Errorf("bench: --perf-dir: %w", err)
		}
		if err := os.MkdirAll(o.PerfDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: --perf-dir: %w", err)
		}
	}
	dir := o.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("bench: --dir: %w", err)
		}
	} else {
		d, err := os.MkdirTemp("", "tearline-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	r := &Result{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), NodeMemoryLimitMiB: o.NodeMemoryLimitMiB, NodeGCPercent: o.NodeGCPercent, PublishAPI: "PublishStream"}
	if o.Unary {
		r.PublishAPI = "Publish"
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Progress, format+"\n", args...) }

	// The machine idle, then the disk, before the nodes start, so that
	// neither the nodes nor the disk's scratch files disturb them.
	idle := min(o.Duration, 3*time.Second)
	say("limits: the machine idle (a thread on each CPU sleeping %s at a time, for %s)...", stallTick, idle)
	var err error
	if r.MachineIdle, err = ProbeMachine(ctx, o.Exe, idle); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	sayStalls(say, "idle", r.MachineIdle, r.CPUs)
	say("limits: the disk (durable writes in %s)...", dir)
	disk, err := diskLimits(dir, 20)
	if err != nil {
		return nil, fmt.Errorf("bench: disk: %w", err)
	}
	r.DiskLimits = disk
	say("  a write made durable %.2f ms; per 16 KiB page made durable in a batch of 64: %.0f µs scattered, %.0f µs contiguous; a read through a map of a cached file maps %.0f KiB", r.SyncMs, r.ScatteredPageUs, r.ContiguousPageUs, r.MapFaultKiB)

	fanoutIDs := (o.Subscribers + streamsPerSubscriber - 1) / streamsPerSubscriber
	f, err := newFederation(dir, o.Exe, fanoutIDs, o.NodeMemoryLimitMiB, o.NodeGCPercent)
	if err != nil {
		return nil, fmt.Errorf("bench: lay out the federation: %w", err)
	}
	if o.Profiles != "" {
		if err := os.MkdirAll(o.Profiles, 0o755); err != nil {
			return nil, fmt.Errorf("bench: profiles folder: %w", err)
		}
		stop, err := profileSelf(filepath.Join(o.Profiles, "bench.pprof"))
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer stop()
	}
	f.profiles = o.Profiles
	defer f.close()
	for _, p := range []string{partyA, partyB} {
		if err := f.start(ctx, p); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	pub, err := f.officer(partyA)
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, f: f, pub: pub, body: body(2048)}

	say("federation throughput: publishing at %s for %s with %s, %d reports unanswered...", partyA, o.Duration, r.PublishAPI, o.Workers)
	if err := b.perf("federation", func() error { return b.throughput(ctx, r) }); err != nil {
		return nil, fmt.Errorf("bench: throughput: %w", err)
	}
	say("  %.0f reports/s end to end (%d reports; %s accepted %.0f/s); CPU a report: %s %.0f µs, %s %.0f µs, this process %.0f µs", r.FederationReportsPerS, r.FederationReports, partyA, r.PublishReportsPerS, partyA, r.FederationCPUMicrosA, partyB, r.FederationCPUMicrosB, r.FederationCPUMicrosBench)

	say("limits: grpc-go streaming over mTLS (%d-byte messages) and ed25519...", r.MessageBytes)
	if r.GRPCBaselineMsgsPerS, err = grpcBaseline(ctx, dir, b.sample, min(o.Duration, 3*time.Second)); err != nil {
		return nil, fmt.Errorf("bench: grpc baseline: %w", err)
	}
	sign, verify, err := cryptoRates(512, time.Second)
	if err != nil {
		return nil, fmt.Errorf("bench: crypto: %w", err)
	}
	r.SignMicros, r.VerifyMicros = micros(sign), micros(verify)
	r.CryptoFloorReportsPerS = float64(r.CPUs) / (sign + verify).Seconds()
	say("  grpc %.0f msgs/s; sign %.1f µs, verify %.1f µs: crypto floor %.0f reports/s", r.GRPCBaselineMsgsPerS, r.SignMicros, r.VerifyMicros, r.CryptoFloorReportsPerS)

	say("latency: %d reports/s for %s...", o.LatencyRate, o.Duration)
	if err := b.perf("latency", func() error { return b.latency(ctx, r) }); err != nil {
		return nil, fmt.Errorf("bench: latency: %w", err)
	}
	say("  p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms over %d reports", r.LatencyP50Ms, r.LatencyP99Ms, r.LatencyP999Ms, r.LatencyReports)
	say("limits: the latency phase's commits replayed on the disk (%s %.0f/s of %.1f writes and a %.1f KiB log record, %s %.0f/s of %.1f and %.1f KiB; checkpoints every %s) for %s...",
		partyA, r.CommitsPerSA, r.WritesPerCommitA, r.LogBytesPerCommitA/1024, partyB, r.CommitsPerSB, r.WritesPerCommitB, r.LogBytesPerCommitB/1024, checkpointEvery, o.Duration)
	// The machine's own stalls, measured beside the replay, when no node
	// is busy, by a process of its own (see Stalls), from the moment the
	// replay's scratch files are ready.
	var probeErr error
	probed := make(chan struct{})
	probeCtx, stopProbe := context.WithCancel(ctx)
	err = b.latencyDisk(dir, r, o.Duration, func() {
		go func() {
			defer close(probed)
			r.MachineIO, probeErr = ProbeMachine(probeCtx, o.Exe, o.Duration)
		}()
	})
	if err != nil {
		stopProbe()
		return nil, fmt.Errorf("bench: latency disk floor: %w", err)
	}
	<-probed
	stopProbe()
	if probeErr != nil {
		return nil, fmt.Errorf("bench: %w", probeErr)
	}
	say("  two commits in series: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms over %d pairs", r.DiskFloorP50Ms, r.DiskFloorP99Ms, r.DiskFloorP999Ms, r.DiskFloorCommits)
	sayStalls(say, "beside the replay", r.MachineIO, r.CPUs)

	say("fan-out: %d reports to %d subscriber streams at %s...", o.FanoutReports, o.Subscribers, partyB)
	if err := b.fanout(ctx, r, fanoutIDs); err != nil {
		return nil, fmt.Errorf("bench: fan-out: %w", err)
	}
	say("  %.0f deliveries/s; %s peak RSS %.0f MiB in the phase, from %.0f MiB at its start (at the end %.0f MiB anonymous, %.0f MiB of mapped store file)", r.FanoutDeliveriesPerS, partyB, r.FanoutPeakRSSMiB, r.FanoutStartRSSMiB, r.FanoutAnonRSSMiB, r.FanoutFileRSSMiB)

	say("catch-up: %s offline while %s accepts %d reports...", partyB, partyA, o.CatchUp)
	if err := b.catchUp(ctx, r); err != nil {
		return nil, fmt.Errorf("bench: catch-up: %w", err)
	}
	say("  %.0f reports/s", r.CatchupReportsPerS)
	return r, nil
}

// sayStalls reports how late the probe's threads woke.
func sayStalls(say func(string, ...any), when string, s Stalls, cpus int) {
	say("  %s, a thread sleeping %s woke late by p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, at most %.2f ms (%d wake-ups); over %s late %d times, on %d of %d CPUs",
		when, stallTick, s.LateP50Ms, s.LateP99Ms, s.LateP999Ms, s.LateMaxMs, s.Wakeups, stallOver, s.Over10Ms, s.CPUsOver, cpus)
}

// perf runs phase, recorded by perf when Options.PerfDir is set, and
// writes the recording's breakdown (see perfRecord).
func (b *bench) perf(phase string, run func() error) error {
	if b.o.PerfDir == "" {
		return run()
	}
	p, err := startPerf(b.o.PerfDir, phase)
	if err != nil {
		return err
	}
	defer p.stop() // if run panics: perf must not outlive the bench
	err = run()
	if stopErr := p.stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return err
	}
	out := filepath.Join(b.o.PerfDir, phase+".txt")
	if err := p.breakdown(out, b.f.pids()); err != nil {
		return err
	}
	fmt.Fprintf(b.o.Progress, "  perf: %s\n", out)
	return nil
}

// perReport is process i's CPU time between before and after (see
// federation.cpu), per report of n.
func perReport(before, after [3]time.Duration, i, n int) float64 {
	return micros(after[i]-before[i]) / float64(max(n, 1))
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// bench is one run's shared state.
type bench struct {
	o    Options
	f    *federation
	pub  clientv1.ClientServiceClient
	body []byte
	// feed is B's feed position after the last phase: new subscriptions
	// start after it.
	feed atomic.Uint64
	// sample is one message as B's subscriber received it.
	sample *clientv1.SubscribeResponse
}

// publication says what publishReports sends: reports phase-0.. until n
// are answered (n > 0) or, n == 0, until the deadline.
type publication struct {
	phase string
	n     int
	until time.Time
	// due, when given, is when report i is to be sent: the sender waits
	// for it (open loop, as long as fewer than o.Workers are unanswered).
	due func(i int) time.Time
	// sent[i] and acked[i], when given, note when report i was sent and
	// when its answer arrived.
	sent, acked []time.Time
}

func (b *bench) request(phase string, i int) *clientv1.PublishRequest {
	return &clientv1.PublishRequest{
		Portions: []*clientv1.NewPortion{{Banner: banner, Title: title(phase, i), Body: b.body}},
		Topics:   []string{topic},
	}
}

// publishReports publishes what p says at A, with at most o.Workers
// reports unanswered, and returns how many were published. It publishes
// over one PublishStream, or with one Publish call per report when
// o.Unary is set.
func (b *bench) publishReports(ctx context.Context, p publication) (int, error) {
	if b.o.Unary {
		return b.publishUnary(ctx, p)
	}
	return b.publishStream(ctx, p)
}

// next reports whether report i is to be sent, and waits until it is due.
// It notes the send time before the caller waits for room among the
// unanswered reports, so that in the latency phase a wait for room counts
// in the report's latency (the loop stays open).
func (p publication) next(i int) bool {
	if (p.n > 0 && i >= p.n) || (p.n == 0 && time.Now().After(p.until)) {
		return false
	}
	if p.due != nil {
		if d := time.Until(p.due(i)); d > 0 {
			time.Sleep(d)
		}
	}
	if p.sent != nil {
		p.sent[i] = time.Now()
	}
	return true
}

// room takes a slot among the unanswered reports, or gives up when ctx
// ends.
func room(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *bench) publishUnary(ctx context.Context, p publication) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, b.o.Workers)
	var calls sync.WaitGroup
	n := 0
	for ctx.Err() == nil && p.next(n) && room(ctx, slots) {
		i := n
		n++
		calls.Go(func() {
			defer func() { <-slots }()
			if _, err := b.pub.Publish(ctx, b.request(p.phase, i)); err != nil {
				cancel(fmt.Errorf("publish %s: %w", title(p.phase, i), err))
				return
			}
			if p.acked != nil {
				p.acked[i] = time.Now()
			}
		})
	}
	calls.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return n, nil
}

func (b *bench) publishStream(ctx context.Context, p publication) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st, err := b.pub.PublishStream(ctx)
	if err != nil {
		return 0, fmt.Errorf("publish stream: %w", err)
	}
	slots := make(chan struct{}, b.o.Workers)
	var sent atomic.Int64
	answered := make(chan error, 1)
	go func() {
		seen := map[uint64]bool{}
		fail := func(err error) {
			cancel(err)
			answered <- err
		}
		for {
			a, err := st.Recv()
			switch {
			case errors.Is(err, io.EOF):
				if len(seen) != int(sent.Load()) {
					fail(fmt.Errorf("publish stream: ended with %d of %d reports answered", len(seen), sent.Load()))
					return
				}
				answered <- nil
				return
			case err != nil:
				fail(fmt.Errorf("publish stream: %w", err))
				return
			case a.GetSeq() >= uint64(sent.Load()) || seen[a.GetSeq()]:
				fail(fmt.Errorf("publish stream: an answer to seq %d, which was not sent or is answered already", a.GetSeq()))
				return
			}
			if err := gateway.PublishStreamErr(a); err != nil {
				fail(fmt.Errorf("publish %s: %w", title(p.phase, int(a.GetSeq())), err))
				return
			}
			seen[a.GetSeq()] = true
			if p.acked != nil {
				p.acked[a.GetSeq()] = time.Now()
			}
			<-slots
		}
	}()
	n := 0
	for ctx.Err() == nil && p.next(n) && room(ctx, slots) {
		sent.Add(1)
		if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(n), Report: b.request(p.phase, n)}); err != nil {
			break // the receiver has the stream's status
		}
		n++
	}
	if ctx.Err() == nil {
		if err := st.CloseSend(); err != nil {
			return 0, fmt.Errorf("publish stream: %w", err)
		}
	}
	if err := <-answered; err != nil {
		return 0, err
	}
	return n, nil
}

func title(phase string, i int) string { return phase + "-" + strconv.Itoa(i) }

// index is i for a report titled phase-i, or -1.
func index(v *clientv1.ReportView, phase string) int {
	ps := v.GetPortions()
	if len(ps) == 0 {
		return -1
	}
	rest, ok := strings.CutPrefix(ps[0].GetTitle(), phase+"-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(rest)
	if err != nil {
		return -1
	}
	return i
}

// stream is one subscription at B that notes when each report of a phase
// arrives.
type stream struct {
	phase string
	got   []time.Time // by report index; zero until it arrives
	mu    sync.Mutex
	count int
	want  int
	full  chan struct{} // closed once want reports of the phase arrived
	err   chan error
}

// subscribe opens a subscription at B as client c after B's feed position
// and records the arrivals of phase reports 0..capacity-1; the stream is
// full once want of them arrived. Its responses are decoded in part
// (arrivals, unless decode says otherwise): keep sees the cursor, the
// report's id and its first portion's title.
func (b *bench) subscribe(ctx context.Context, c clientv1.ClientServiceClient, phase string, capacity, want int, keep func(*clientv1.SubscribeResponse), decode ...grpc.CallOption) (*stream, error) {
	s := &stream{phase: phase, got: make([]time.Time, capacity), want: want, full: make(chan struct{}), err: make(chan error, 1)}
	if len(decode) == 0 {
		decode = []grpc.CallOption{arrivals}
	}
	st, err := c.Subscribe(ctx, &clientv1.SubscribeRequest{After: b.feed.Load()}, decode...)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				s.err <- err
				return
			}
			now := time.Now()
			if keep != nil {
				keep(m)
			}
			i := index(m.GetReport(), phase)
			if i < 0 || i >= len(s.got) {
				continue
			}
			s.mu.Lock()
			if s.got[i].IsZero() {
				s.got[i] = now
				s.count++
				if s.count == s.want {
					close(s.full)
				}
			}
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// wait waits until the stream is full or timeout passes.
func (s *stream) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-s.full:
		return nil
	case err := <-s.err:
		return fmt.Errorf("subscription ended: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		s.mu.Lock()
		defer s.mu.Unlock()
		return fmt.Errorf("only %d of %d %s reports arrived within %s", s.count, s.want, s.phase, timeout)
	}
}

// last is the latest arrival among the first n reports.
func (s *stream) last(n int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, g := range s.got[:n] {
		if g.After(t) {
			t = g
		}
	}
	return t
}

// warmUpReports go end to end before the throughput phase, so that
// connections and caches exist.
const warmUpReports = 500

func (b *bench) throughput(ctx context.Context, r *Result) error {
	sub, err := b.f.subscriber(0)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One subscription carries the warm-up and the phase: a warm-up
	// subscription of its own, even closed, could still be sent the
	// phase's first reports before the node noticed, a second delivery
	// the figure does not count. It also keeps its first delivery's bytes:
	// decoded in full, that is the message the grpc baseline sends.
	// Capacity: no more than 60,000 reports/s can be published in Duration.
	capacity := int(b.o.Duration.Seconds()*60_000) + 1
	var cursor atomic.Uint64
	var warmed atomic.Int64
	warm := make(chan struct{})
	var first atomic.Pointer[[]byte]
	s, err := b.subscribe(sctx, sub, "T", capacity, capacity, func(m *clientv1.SubscribeResponse) {
		cursor.Store(m.GetCursor())
		if index(m.GetReport(), "warm") >= 0 && warmed.Add(1) == warmUpReports {
			close(warm)
		}
	}, grpc.ForceCodecV2(partial.keepingFirst(&first)))
	if err != nil {
		return err
	}
	if _, err := b.publishReports(sctx, publication{phase: "warm", n: warmUpReports}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	select {
	case <-warm:
	case err := <-s.err:
		return fmt.Errorf("warm-up: subscription ended: %w", err)
	case <-time.After(time.Minute):
		return fmt.Errorf("warm-up: %d of %d reports arrived in a minute", warmed.Load(), warmUpReports)
	}
	b.sample = &clientv1.SubscribeResponse{}
	if err := proto.Unmarshal(*first.Load(), b.sample); err != nil {
		return fmt.Errorf("warm-up: decode a delivery in full: %w", err)
	}
	cpu0, err := b.f.cpu()
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := b.publishReports(sctx, publication{phase: "T", until: start.Add(b.o.Duration)})
	if err != nil {
		return err
	}
	published := time.Since(start)
	s.mu.Lock()
	s.want = n
	done := s.count >= n
	s.mu.Unlock()
	if done {
		close(s.full)
	}
	if err := s.wait(ctx, 2*time.Minute); err != nil {
		return err
	}
	cpu1, err := b.f.cpu()
	if err != nil {
		return err
	}
	r.FederationCPUMicrosA, r.FederationCPUMicrosB, r.FederationCPUMicrosBench = perReport(cpu0, cpu1, 0, n), perReport(cpu0, cpu1, 1, n), perReport(cpu0, cpu1, 2, n)
	r.FederationReports = n
	r.PublishReportsPerS = float64(n) / published.Seconds()
	r.FederationReportsPerS = float64(n) / s.last(n).Sub(start).Seconds()
	r.MessageBytes = messageSize(b.sample)
	b.feed.Store(cursor.Load())
	return nil
}

func (b *bench) latency(ctx context.Context, r *Result) error {
	sub, err := b.f.subscriber(0)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := int(float64(b.o.LatencyRate) * b.o.Duration.Seconds())
	var cursor atomic.Uint64
	s, err := b.subscribe(sctx, sub, "L", n, n, func(m *clientv1.SubscribeResponse) { cursor.Store(m.GetCursor()) })
	if err != nil {
		return err
	}
	before, err := b.storeStats(ctx)
	if err != nil {
		return err
	}
	cpu0, err := b.f.cpu()
	if err != nil {
		return err
	}
	sent := make([]time.Time, n)
	acked := make([]time.Time, n)
	period := time.Second / time.Duration(b.o.LatencyRate)
	start := time.Now()
	// Open loop: report i is due at start + i*period, and its latency
	// counts from then, even when it must wait for room among the
	// unanswered reports (o.Workers).
	due := func(i int) time.Time { return start.Add(time.Duration(i) * period) }
	if _, err := b.publishReports(sctx, publication{phase: "L", n: n, due: due, sent: sent, acked: acked}); err != nil {
		return err
	}
	if err := s.wait(ctx, time.Minute); err != nil {
		return err
	}
	elapsed := time.Since(start)
	cpu1, err := b.f.cpu()
	if err != nil {
		return err
	}
	after, err := b.storeStats(ctx)
	if err != nil {
		return err
	}
	r.LatencyCPUMicrosA, r.LatencyCPUMicrosB, r.LatencyCPUMicrosBench = perReport(cpu0, cpu1, 0, n), perReport(cpu0, cpu1, 1, n), perReport(cpu0, cpu1, 2, n)
	r.CommitsPerSA, r.WritesPerCommitA = commitRate(before[0], after[0], elapsed)
	r.CommitsPerSB, r.WritesPerCommitB = commitRate(before[1], after[1], elapsed)
	r.CommitMsA, r.CommitWriteMsA = commitTime(before[0], after[0])
	r.CommitMsB, r.CommitWriteMsB = commitTime(before[1], after[1])
	r.LogBytesPerCommitA, r.LogMsA = logRecords(before[0], after[0])
	r.LogBytesPerCommitB, r.LogMsB = logRecords(before[1], after[1])
	r.CheckpointsPerSA, r.CheckpointMsA = checkpointRate(before[0], after[0], elapsed)
	r.CheckpointsPerSB, r.CheckpointMsB = checkpointRate(before[1], after[1], elapsed)
	r.DurableWaitsPerSA, r.DurableWaitMsA = eventRate(after[0].DurableWaits-before[0].DurableWaits, after[0].DurableWaitTime-before[0].DurableWaitTime, elapsed)
	r.DurableWaitsPerSB, r.DurableWaitMsB = eventRate(after[1].DurableWaits-before[1].DurableWaits, after[1].DurableWaitTime-before[1].DurableWaitTime, elapsed)
	r.SlowCommitsA, r.LongestCommitMsA = slowCommits(before[0], after[0], slowCommit)
	r.SlowCommitsB, r.LongestCommitMsB = slowCommits(before[1], after[1], slowCommit)
	lat := make([]time.Duration, n)
	s.mu.Lock()
	for i := range n {
		lat[i] = s.got[i].Sub(sent[i])
	}
	s.mu.Unlock()
	slices.Sort(lat)
	r.LatencyRatePerS, r.LatencyReports = b.o.LatencyRate, n
	r.LatencyP50Ms = ms(percentile(lat, 0.50))
	r.LatencyP99Ms = ms(percentile(lat, 0.99))
	r.LatencyP999Ms = ms(percentile(lat, 0.999))
	for i := range n {
		lat[i] = acked[i].Sub(sent[i])
	}
	slices.Sort(lat)
	r.LatencyPublishP50Ms = ms(percentile(lat, 0.50))
	r.LatencyPublishP99Ms = ms(percentile(lat, 0.99))
	r.LatencyPublishP999Ms = ms(percentile(lat, 0.999))
	b.feed.Store(cursor.Load())
	return nil
}

// profileSelf writes this process's CPU profile to path until stop.
func profileSelf(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile of the benchmark: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// storeStats reads A's and B's store counts.
func (b *bench) storeStats(ctx context.Context) ([2]store.Stats, error) {
	var out [2]store.Stats
	for i, p := range []string{partyA, partyB} {
		st, err := b.f.storeStats(ctx, p)
		if err != nil {
			return out, err
		}
		out[i] = st
	}
	return out, nil
}

// commitRate is the commits a second, and the writes a commit, between
// two counts taken d apart.
func commitRate(before, after store.Stats, d time.Duration) (perS, writes float64) {
	commits := after.Commits - before.Commits
	if commits == 0 || d <= 0 {
		return 0, 0
	}
	return float64(commits) / d.Seconds(), float64(after.Writes-before.Writes) / float64(commits)
}

// commitTime is the mean wall time of a commit, and of its writes,
// between two counts, in ms.
func commitTime(before, after store.Stats) (commit, write float64) {
	n := after.Commits - before.Commits
	if n == 0 {
		return 0, 0
	}
	return ms(after.CommitTime-before.CommitTime) / float64(n), ms(after.WriteTime-before.WriteTime) / float64(n)
}

// logRecords is the mean bytes of a log record, and the mean time a
// commit spent writing its record and making it durable in ms (divided by
// the commits, as commitTime's parts are: a commit that changed nothing
// appends no record), between two counts.
func logRecords(before, after store.Stats) (recordBytes, logMs float64) {
	if n := after.LogRecords - before.LogRecords; n > 0 {
		recordBytes = float64(after.LogBytes-before.LogBytes) / float64(n)
	}
	if n := after.Commits - before.Commits; n > 0 {
		logMs = ms(after.LogTime-before.LogTime) / float64(n)
	}
	return recordBytes, logMs
}

// checkpointRate is the checkpoints a second between two counts taken d
// apart, and a checkpoint's mean time in ms.
func checkpointRate(before, after store.Stats, d time.Duration) (perS, checkpointMs float64) {
	return eventRate(after.Checkpoints-before.Checkpoints, after.CheckpointTime-before.CheckpointTime, d)
}

// eventRate is the events a second when n came in d, and an event's mean
// time in ms when together they took `took`.
func eventRate(n uint64, took, d time.Duration) (perS, meanMs float64) {
	if n == 0 || d <= 0 {
		return 0, 0
	}
	return float64(n) / d.Seconds(), ms(took) / float64(n)
}

// slowCommit is the commit time over which the latency phase counts a
// commit as slow: several times a commit's usual ~1 ms.
const slowCommit = 10 * time.Millisecond

// slowCommits is how many of the commits between two counts took over
// over (a bound of store.CommitBounds), and the bound of the histogram
// bucket holding the longest of them in ms: -1 if it took over the last
// bound, 0 if there were no commits.
func slowCommits(before, after store.Stats, over time.Duration) (n uint64, longestMs float64) {
	total := after.Commits - before.Commits
	if total == 0 {
		return 0, 0
	}
	longestMs = -1
	for i, le := range store.CommitBounds {
		within := after.CommitsWithin[i] - before.CommitsWithin[i]
		if le == over {
			n = total - within
		}
		if within == total && longestMs < 0 {
			longestMs = ms(le)
		}
	}
	return n, longestMs
}

// latencyDisk replays the latency phase's commits on the disk with no
// node busy, for d (see LatencyDisk), calling started as the replay
// begins.
func (b *bench) latencyDisk(dir string, r *Result, d time.Duration, started func()) error {
	sums, err := commitFloor(dir,
		commitShape{r.CommitsPerSA, r.WritesPerCommitA, r.LogBytesPerCommitA},
		commitShape{r.CommitsPerSB, r.WritesPerCommitB, r.LogBytesPerCommitB}, d, started)
	if err != nil {
		return err
	}
	r.DiskFloorCommits = len(sums)
	r.DiskFloorP50Ms = ms(percentile(sums, 0.50))
	r.DiskFloorP99Ms = ms(percentile(sums, 0.99))
	r.DiskFloorP999Ms = ms(percentile(sums, 0.999))
	return nil
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func (b *bench) fanout(ctx context.Context, r *Result, ids int) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The peak is this phase's: from the node's resident set as the
	// earlier phases left it (mostly the store file's pages they read,
	// kept as FanoutStartRSSMiB) to the most it held while the streams
	// were opened and served.
	if err := b.f.resetPeak(partyB); err != nil {
		return err
	}
	var err error
	if r.FanoutStartRSSMiB, _, _, err = b.f.memory(partyB); err != nil {
		return err
	}
	n := b.o.FanoutReports
	var streams []*stream
	var cursor atomic.Uint64
	for i := range ids {
		c, err := b.f.subscriber(i)
		if err != nil {
			return err
		}
		for j := 0; j < streamsPerSubscriber && len(streams) < b.o.Subscribers; j++ {
			// Each stream waits for one "ready" report first, so that
			// every subscription is live before the measured reports.
			s, err := b.subscribe(sctx, c, "F", n+1, n+1, func(m *clientv1.SubscribeResponse) { cursor.Store(m.GetCursor()) })
			if err != nil {
				return err
			}
			streams = append(streams, s)
		}
	}
	if _, err := b.pub.Publish(sctx, b.request("F", n)); err != nil {
		return err
	}
	for _, s := range streams {
		for {
			s.mu.Lock()
			ready := !s.got[n].IsZero()
			s.mu.Unlock()
			if ready {
				break
			}
			select {
			case err := <-s.err:
				return fmt.Errorf("subscription ended: %w", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	start := time.Now()
	if _, err := b.publishReports(sctx, publication{phase: "F", n: n}); err != nil {
		return err
	}
	var end time.Time
	for _, s := range streams {
		if err := s.wait(ctx, 5*time.Minute); err != nil {
			return err
		}
		if t := s.last(n); t.After(end) {
			end = t
		}
	}
	r.FanoutSubscribers, r.FanoutReports = len(streams), n
	r.FanoutDeliveriesPerS = float64(len(streams)*n) / end.Sub(start).Seconds()
	if r.FanoutPeakRSSMiB, r.FanoutAnonRSSMiB, r.FanoutFileRSSMiB, err = b.f.memory(partyB); err != nil {
		return err
	}
	b.feed.Store(cursor.Load())
	return nil
}

func (b *bench) catchUp(ctx context.Context, r *Result) error {
	if err := b.f.stop(partyB); err != nil {
		return err
	}
	n := b.o.CatchUp
	if _, err := b.publishReports(ctx, publication{phase: "C", n: n}); err != nil {
		return err
	}
	start := time.Now()
	if err := b.f.start(ctx, partyB); err != nil {
		return err
	}
	sub, err := b.f.subscriber(0)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := b.subscribe(sctx, sub, "C", n, n, nil)
	if err != nil {
		return err
	}
	if err := s.wait(ctx, 10*time.Minute); err != nil {
		return err
	}
	r.CatchupReports = n
	r.CatchupReportsPerS = float64(n) / s.last(n).Sub(start).Seconds()
	return nil
}
