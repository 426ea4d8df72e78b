package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
)

// TestE2EBenchSmoke runs `tearline bench --json` with small figures, so
// that `make bench` keeps working: every phase runs against real node
// processes and every key of issue 7 comes back with a measured value.
func TestE2EBenchSmoke(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary(t), "bench", "--json", "--duration", "1s", "--rate", "100",
		"--subscribers", "20", "--fanout-reports", "20", "--catchup", "300", "--dir", t.TempDir())
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
		"latency_p50_ms", "latency_p99_ms", "latency_p999_ms",
		"fanout_deliveries_per_s", "fanout_peak_rss_mib", "catchup_reports_per_s",
	} {
		v, ok := r[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a measured positive number", k, r[k])
		}
	}
	if r["latency_p50_ms"].(float64) > r["latency_p999_ms"].(float64) {
		t.Errorf("p50 %v above p99.9 %v", r["latency_p50_ms"], r["latency_p999_ms"])
	}
	if n := r["catchup_reports"].(float64); n != 300 {
		t.Errorf("catch-up counted %v reports, want 300", n)
	}
	if n := r["fanout_subscribers"].(float64); n != 20 {
		t.Errorf("fan-out ran %v streams, want 20", n)
	}
}
