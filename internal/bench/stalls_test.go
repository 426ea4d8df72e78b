package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestSummariseStalls(t *testing.T) {
	// CPU 0: 999 wake-ups 0.1 ms late and one 25 ms; CPU 1: 1,000 at
	// 0.2 ms but for one 11 ms and one exactly 10 ms (not over).
	cpu0 := make([]time.Duration, 1000)
	cpu1 := make([]time.Duration, 1000)
	for i := range cpu0 {
		cpu0[i] = 100 * time.Microsecond
		cpu1[i] = 200 * time.Microsecond
	}
	cpu0[500] = 25 * time.Millisecond
	cpu1[10] = 11 * time.Millisecond
	cpu1[20] = 10 * time.Millisecond
	s := summarise([][]time.Duration{cpu0, cpu1})
	if s.Wakeups != 2000 {
		t.Errorf("wake-ups %d, want 2000", s.Wakeups)
	}
	if s.Over10Ms != 2 || s.CPUsOver != 2 {
		t.Errorf("stalls over 10 ms %d on %d CPUs, want 2 on 2", s.Over10Ms, s.CPUsOver)
	}
	// Sorted: 999 x 0.1, 998 x 0.2, 10, 11, 25 ms. Nearest rank: p50 is
	// the 1,000th (the first 0.2), p99 the 1,980th (0.2), p99.9 the
	// 1,998th (10).
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.LateP50Ms, 0.2}, {"p99", s.LateP99Ms, 0.2}, {"p99.9", s.LateP999Ms, 10}, {"max", s.LateMaxMs, 25}} {
		if c.got != c.want {
			t.Errorf("%s %.3f ms, want %.3f", c.name, c.got, c.want)
		}
	}

	if s := summarise([][]time.Duration{nil, {}}); s != (Stalls{}) {
		t.Errorf("no wake-ups: %+v, want zero", s)
	}
}

func TestWakeLatenessMeasures(t *testing.T) {
	const d = 300 * time.Millisecond
	cpus := len(probeCPUs())
	s := wakeLateness(context.Background(), d, probeCPUs())
	// Each thread sleeps 1 ms at a time: at most d/1ms wake-ups each, and
	// on any machine that runs the tests, far more than a handful.
	if s.Wakeups > cpus*int(d/stallTick) || s.Wakeups < cpus*10 {
		t.Errorf("%d wake-ups over %s on %d CPUs", s.Wakeups, d, cpus)
	}
	if s.LateP50Ms > s.LateP99Ms || s.LateP99Ms > s.LateP999Ms || s.LateP999Ms > s.LateMaxMs {
		t.Errorf("percentiles out of order: %+v", s)
	}
	if s.Over10Ms > s.Wakeups || s.CPUsOver > cpus {
		t.Errorf("stalls %d on %d CPUs of %d wake-ups on %d", s.Over10Ms, s.CPUsOver, s.Wakeups, cpus)
	}
	if runtime.GOOS == "linux" && !s.Pinned {
		t.Error("the probe threads were not pinned to their CPUs")
	}
}

func TestProbeMachine(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake probes are shell scripts")
	}
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	good := script("good", `echo '{"wakeups": 1900, "late_p99_ms": 0.5, "late_max_ms": 3, "pinned": true}'`)
	s, err := ProbeMachine(ctx, good, time.Second)
	if err != nil || s.Wakeups != 1900 || s.LateMaxMs != 3 || !s.Pinned {
		t.Errorf("a probe that answers: %+v, %v", s, err)
	}
	for _, c := range []struct{ exe, want string }{
		{script("fails", "echo 'no such flag' >&2; exit 2"), "exit status 2: no such flag"},
		{script("silent", "exit 1"), "--wake-probe 10ms): exit status 1"},
		{script("args", `echo "$@"`), `the wake-up probe printed "bench --wake-probe 10ms\n"`},
		{script("empty", "echo '{}'"), "measured no wake-up in 10ms"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		_, err := ProbeMachine(ctx, c.exe, 10*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.HasSuffix(err.Error(), ": ") {
			t.Errorf("ProbeMachine(%s): %v, want %q", filepath.Base(c.exe), err, c.want)
		}
	}
	// One that hangs is stopped with the caller's context, and said so.
	hangs := script("hangs", "exec sleep 60")
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = ProbeMachine(cctx, hangs, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") || time.Since(start) > 5*time.Second {
		t.Errorf("a probe that hangs: %v after %s", err, time.Since(start))
	}
}

func TestSleepLoopStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	lates := sleepLoop(ctx, time.Hour, time.Millisecond)
	if took := time.Since(start); took > 2*time.Second || len(lates) == 0 {
		t.Errorf("a one-hour loop with a 50 ms context took %s for %d wake-ups", took, len(lates))
	}
}
