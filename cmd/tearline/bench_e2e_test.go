package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/node/store"
)

// TestE2EBenchSmoke runs `tearline bench --json` with small figures, so
// that `make bench` keeps working: every phase runs against real node
// processes and every key of issue 7 comes back with a measured value.
// --dir and --cpuprofile-dir name folders that do not exist yet: the bench
// makes them, and each node process leaves its profile in the second.
func TestE2EBenchSmoke(t *testing.T) {
	t.Parallel()
	profiles := filepath.Join(t.TempDir(), "profiles", "run1")
	dir := filepath.Join(t.TempDir(), "federation")
	cmd := exec.Command(binary(t), "bench", "--json", "--duration", "1s", "--rate", "100",
		"--subscribers", "20", "--fanout-reports", "20", "--catchup", "300", "--dir", dir,
		"--cpuprofile-dir", profiles, "--node-memory-limit", "200", "--node-gc-percent", "300")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tearline bench: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	var r map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("bench --json printed %q: %v", stdout.String(), err)
	}
	for _, k := range []string{
		"grpc_baseline_msgs_per_s", "crypto_floor_reports_per_s", "federation_reports_per_s",
		"federation_cpu_us_per_report_a", "federation_cpu_us_per_report_b", "federation_cpu_us_per_report_bench",
		"disk_sync_ms", "disk_scattered_page_us", "disk_contiguous_page_us", "disk_map_fault_kib",
		"latency_p50_ms", "latency_p99_ms", "latency_p999_ms",
		"latency_publish_p50_ms", "latency_publish_p99_ms", "latency_publish_p999_ms",
		"latency_cpu_us_per_report_a", "latency_cpu_us_per_report_b", "latency_cpu_us_per_report_bench",
		"latency_commits_per_s_a", "latency_commits_per_s_b", "latency_writes_per_commit_a", "latency_writes_per_commit_b",
		"latency_commit_ms_a", "latency_commit_ms_b", "latency_commit_write_ms_a", "latency_commit_write_ms_b",
		"latency_log_bytes_per_commit_a", "latency_log_bytes_per_commit_b", "latency_log_ms_a", "latency_log_ms_b",
		"latency_checkpoints_per_s_a", "latency_checkpoints_per_s_b", "latency_checkpoint_ms_a", "latency_checkpoint_ms_b",
		"latency_disk_floor_p50_ms", "latency_disk_floor_p99_ms", "latency_disk_floor_p999_ms", "latency_disk_floor_commits",
		"fanout_deliveries_per_s", "fanout_peak_rss_mib", "fanout_start_rss_mib", "catchup_reports_per_s",
	} {
		v, ok := r[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a measured positive number", k, r[k])
		}
	}
	// How often a read waited for a durable commit depends on timing:
	// present, perhaps zero.
	for _, k := range []string{"latency_durable_waits_per_s_a", "latency_durable_waits_per_s_b", "latency_durable_wait_ms_a", "latency_durable_wait_ms_b"} {
		if v, ok := r[k].(float64); !ok || v < 0 {
			t.Errorf("%s = %v, want a count (perhaps zero)", k, r[k])
		}
	}
	if r["latency_p50_ms"].(float64) > r["latency_p999_ms"].(float64) {
		t.Errorf("p50 %v above p99.9 %v", r["latency_p50_ms"], r["latency_p999_ms"])
	}
	// USA answers a publish once it has committed the report, before GBR
	// can hold it: the median answer comes before the slowest deliveries.
	if p50, p999 := r["latency_publish_p50_ms"].(float64), r["latency_publish_p999_ms"].(float64); p50 > p999 || p50 > r["latency_p999_ms"].(float64) {
		t.Errorf("publish answered in p50 %v ms, p99.9 %v ms; delivered in p99.9 %v ms", p50, p999, r["latency_p999_ms"])
	}
	// A bbolt commit writes at least one page and the meta page; the floor
	// replays about as many commits as the phase made (1 s of each node's).
	for _, k := range []string{"latency_writes_per_commit_a", "latency_writes_per_commit_b"} {
		if w, _ := r[k].(float64); w < 2 {
			t.Errorf("%s = %v, want at least 2", k, r[k])
		}
	}
	// A commit's time holds its page writes and its log record's; the
	// nodes checkpoint every 100 ms while they commit.
	for _, p := range []string{"a", "b"} {
		c, w, l := r["latency_commit_ms_"+p].(float64), r["latency_commit_write_ms_"+p].(float64), r["latency_log_ms_"+p].(float64)
		if w+l > c+1e-3 {
			t.Errorf("node %s: a commit took %v ms, of which %v ms writing pages and %v ms its log record", p, c, w, l)
		}
		if b := r["latency_log_bytes_per_commit_"+p].(float64); b < 16 {
			t.Errorf("node %s: log records of %v bytes, want at least a header", p, b)
		}
		if n := r["latency_checkpoints_per_s_"+p].(float64); n > 20 {
			t.Errorf("node %s: %v checkpoints/s, want at most about one every 100 ms", p, n)
		}
	}
	if p50, p999 := r["latency_disk_floor_p50_ms"].(float64), r["latency_disk_floor_p999_ms"].(float64); p50 > p999 {
		t.Errorf("disk floor p50 %v above its p99.9 %v", p50, p999)
	}
	if n, a, b := r["latency_disk_floor_commits"].(float64), r["latency_commits_per_s_a"].(float64), r["latency_commits_per_s_b"].(float64); n < min(a, b)/2 || n > max(a, b)*2 {
		t.Errorf("the floor replayed %v commit pairs in 1 s, for %v and %v commits/s", n, a, b)
	}
	// The machine's stalls: a thread on each CPU sleeping 1 ms at a time,
	// idle for 1 s and beside the 1 s replay, wakes at most a thousand
	// times a CPU, and on any machine far more than ten; the percentiles
	// are in order; on Linux each thread is pinned to its CPU.
	for _, k := range []string{"machine_idle", "machine_beside_replay"} {
		s, ok := r[k].(map[string]any)
		if !ok {
			t.Errorf("%s = %v, want an object", k, r[k])
			continue
		}
		n, _ := s["wakeups"].(float64)
		if cpus := r["cpus"].(float64); n > 1000*cpus || n < 10*cpus {
			t.Errorf("%s: %v wake-ups on %v CPUs in 1 s", k, n, cpus)
		}
		p50, _ := s["late_p50_ms"].(float64)
		p99, _ := s["late_p99_ms"].(float64)
		p999, _ := s["late_p999_ms"].(float64)
		top, _ := s["late_max_ms"].(float64)
		if p50 > p99 || p99 > p999 || p999 > top || top <= 0 {
			t.Errorf("%s: woken late by p50 %v, p99 %v, p99.9 %v, at most %v ms", k, p50, p99, p999, top)
		}
		if over, ok := s["stalls_over_10ms"].(float64); !ok || over < 0 || over > n {
			t.Errorf("%s: stalls_over_10ms = %v", k, s["stalls_over_10ms"])
		}
		if pinned, _ := s["pinned"].(bool); runtime.GOOS == "linux" && !pinned {
			t.Errorf("%s: the probe's threads were not pinned to their CPUs", k)
		}
	}
	// The peak is the fan-out phase's own: reset as it starts, so it is at
	// least the resident set then.
	if peak, start := r["fanout_peak_rss_mib"].(float64), r["fanout_start_rss_mib"].(float64); peak < start {
		t.Errorf("fan-out peak RSS %v MiB below the RSS at the phase's start %v MiB", peak, start)
	}
	// Each node runs with the memory limit asked for.
	if n, g := r["node_memory_limit_mib"].(float64), r["node_gc_percent"].(float64); n != 200 || g != 300 {
		t.Errorf("node_memory_limit_mib %v, node_gc_percent %v; want 200, 300", n, g)
	}
	for _, party := range []string{"USA", "GBR"} {
		c, err := gateway.LoadConfig(filepath.Join(dir, party, "node.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if c.MemoryLimitMiB != 200 || c.GCPercent != 300 {
			t.Errorf("%s node.yaml: memory_limit_mib %d, gc_percent %d; want 200, 300", party, c.MemoryLimitMiB, c.GCPercent)
		}
	}
	if api := r["publish_api"]; api != "PublishStream" {
		t.Errorf("publish_api %v, want PublishStream (the default)", api)
	}
	if n := r["catchup_reports"].(float64); n != 300 {
		t.Errorf("catch-up counted %v reports, want 300", n)
	}
	if n := r["fanout_subscribers"].(float64); n != 20 {
		t.Errorf("fan-out ran %v streams, want 20", n)
	}
	// USA runs once; GBR is restarted for the catch-up; the bench
	// profiles itself.
	for _, name := range []string{"USA-1.pprof", "GBR-1.pprof", "GBR-2.pprof", "bench.pprof"} {
		if fi, err := os.Stat(filepath.Join(profiles, name)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v (want a non-empty file)", name, err)
		}
	}

	// The throughput phase delivers each report to one subscription at
	// GBR: GBR's provenance holds one delivery of each. (The warm-up's
	// subscription stayed open through the phase and doubled them.)
	st, err := store.Open(filepath.Join(dir, "GBR", "data", "tearline.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	feed, err := st.Feed(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range feed {
		ps := e.Report.GetEnvelope().GetPortions()
		if len(ps) == 0 || !strings.HasPrefix(ps[0].GetTitle(), "T-") {
			continue
		}
		evs, err := st.Events(e.ID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range evs {
			if ev.GetKind() == "delivered" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("throughput report %s (%s) was delivered %d times at GBR, want once", e.ID, ps[0].GetTitle(), n)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no throughput report found in GBR's feed")
	}
}

// TestE2EBenchPerf runs the bench with --perf-dir: perf records the
// throughput and latency phases, and each phase's breakdown names the two
// node processes and the bench with their samples. It is skipped where
// perf cannot record every CPU.
func TestE2EBenchPerf(t *testing.T) {
	t.Parallel()
	probe := exec.Command("perf", "record", "-a", "-o", filepath.Join(t.TempDir(), "probe.data"), "--", "true")
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("perf cannot record every CPU here: %v: %s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "perf")
	cmd := exec.Command(binary(t), "bench", "--duration", "1s", "--rate", "100",
		"--subscribers", "20", "--fanout-reports", "20", "--catchup", "300", "--perf-dir", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tearline bench: %v\nstderr: %s\nstdout: %s", err, stderr.String(), stdout.String())
	}
	for _, phase := range []string{"federation", "latency"} {
		b, err := os.ReadFile(filepath.Join(dir, phase+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if !strings.Contains(stderr.String(), "perf: "+filepath.Join(dir, phase+".txt")) {
			t.Errorf("the progress does not name %s's breakdown:\n%s", phase, stderr.String())
		}
		for _, who := range []string{"USA", "GBR", "bench"} {
			i := strings.Index(text, "\n"+who+" (pid ")
			if i < 0 {
				t.Errorf("%s: no section for %s:\n%s", phase, who, text)
				continue
			}
			if strings.HasPrefix(text[strings.Index(text[i:], "): ")+i:], "): 0 samples") {
				t.Errorf("%s: %s has no samples:\n%s", phase, who, text)
			}
		}
		// Both nodes commit ~100 times a second at full rate. (In the
		// latency phase's one second at 100/s they may not be sampled.)
		if n := strings.Count(text, "bbolt commit: writing and syncing pages"); phase == "federation" && n != 2 {
			t.Errorf("%s: the page writes appear %d times, want once for each node:\n%s", phase, n, text)
		}
		if _, err := os.Stat(filepath.Join(dir, phase+".perf.data")); err != nil {
			t.Errorf("%s: the recording is not kept: %v", phase, err)
		}
	}
}

// TestE2EBenchPerfNeedsPerf: without perf on the PATH, --perf-dir is
// refused before anything starts, and the error says how to get perf.
func TestE2EBenchPerfNeedsPerf(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "federation")
	cmd := exec.Command(binary(t), "bench", "--duration", "1s", "--dir", dir, "--perf-dir", filepath.Join(t.TempDir(), "perf"))
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("bench ran without perf:\n%s", out)
	}
	if !strings.Contains(string(out), "--perf-dir: perf is not installed (Debian: apt-get install linux-perf)") {
		t.Errorf("error does not say perf is missing:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the federation folder was laid out (%v): the bench started", err)
	}
}
