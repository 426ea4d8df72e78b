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
	cpus := runtime.NumCPU()
	s := wakeLateness(d, cpus)
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

func TestProbeMachineErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ exe, want string }{
		{"/bin/false", "the wake-up probe (/bin/false bench --wake-probe): exit status 1"},
		// echo prints its arguments: not the probe's JSON.
		{"/bin/echo", `the wake-up probe printed "bench --wake-probe 10ms\n"`},
		{filepath.Join(t.TempDir(), "missing"), "no such file"},
	} {
		if _, err := os.Stat(c.exe); err != nil && !strings.Contains(c.want, "no such") {
			t.Skipf("%s: %v", c.exe, err)
		}
		_, err := ProbeMachine(ctx, c.exe, 10*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ProbeMachine(%s): %v, want %q", c.exe, err, c.want)
		}
	}
}
