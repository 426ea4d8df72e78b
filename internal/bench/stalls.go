package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Stalls is how late this machine wakes a thread that sleeps: a limit for
// the latency's tail that no node's work enters. On each CPU the process
// may use, one thread, pinned to it where the system allows (Linux),
// sleeps for stallTick in the kernel over and over, and each wake-up's
// lateness (the time slept past stallTick) is kept. A host that takes a
// virtual CPU away, or a kernel that holds one, shows here as it shows in
// any report handled on that CPU at the time: at 500 reports/s a stall of
// 20 ms holds about ten reports, and p99.9 of 5,000 is the sixth slowest.
//
// The bench measures it twice with no node busy: before the nodes start,
// the machine idle, and beside the disk's replay of the latency phase's
// commits (LatencyDisk). Each time the probe is a process of its own
// (`tearline bench --wake-probe D`, see ProbeMachine): its pinned threads
// never run the bench's own work, and the bench's runtime does not enter
// what it measures. The threads sleep in the kernel (clock_nanosleep on
// Linux), not in time.Sleep: a goroutine that sleeps is woken by Go's
// scheduler, and beside the replay, in the replay's process, goroutines
// on pinned threads in time.Sleep woke up to 20 ms late (p99.9 10-14 ms)
// where threads sleeping in the kernel woke within ~3 ms at p99.9
// (BENCHMARKS.md, issue 7).
type Stalls struct {
	// Wake-ups measured, over every CPU.
	Wakeups int `json:"wakeups"`
	// Their lateness: p50, p99, p99.9 and the largest.
	LateP50Ms  float64 `json:"late_p50_ms"`
	LateP99Ms  float64 `json:"late_p99_ms"`
	LateP999Ms float64 `json:"late_p999_ms"`
	LateMaxMs  float64 `json:"late_max_ms"`
	// Wake-ups later than stallOver, and the CPUs that had any.
	Over10Ms int `json:"stalls_over_10ms"`
	CPUsOver int `json:"cpus_with_stalls_over_10ms"`
	// Whether every probe thread was pinned to its CPU.
	Pinned bool `json:"pinned"`
}

const (
	// stallTick: each probe thread's sleep.
	stallTick = time.Millisecond
	// stallOver: what counts as a stall.
	stallOver = 10 * time.Millisecond
)

// WakeProbe measures Stalls for d (or until ctx ends) with one probe
// thread on each CPU this process may use (`tearline bench --wake-probe`).
func WakeProbe(ctx context.Context, d time.Duration) Stalls {
	return wakeLateness(ctx, d, probeCPUs())
}

// ProbeMachine runs WakeProbe for d in a process of its own, exe's
// `bench --wake-probe d`, and returns what it measured.
func ProbeMachine(ctx context.Context, exe string, d time.Duration) (Stalls, error) {
	var s Stalls
	ctx, cancel := context.WithTimeout(ctx, d+probeGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "bench", "--wake-probe", d.String())
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		what := fmt.Sprintf("the wake-up probe (%s bench --wake-probe %s)", exe, d)
		if ctx.Err() != nil {
			return s, fmt.Errorf("%s: %w (%v)", what, ctx.Err(), err)
		}
		if ee, ok := errors.AsType[*exec.ExitError](err); ok && len(bytes.TrimSpace(ee.Stderr)) > 0 {
			return s, fmt.Errorf("%s: %w: %s", what, err, bytes.TrimSpace(ee.Stderr))
		}
		return s, fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("the wake-up probe printed %q: %w", out, err)
	}
	if s.Wakeups == 0 {
		return s, fmt.Errorf("the wake-up probe measured no wake-up in %s", d)
	}
	return s, nil
}

// probeGrace is how long past its duration the probe's process may take
// to start and answer.
const probeGrace = 30 * time.Second

// allCPUs is 0 to NumCPU-1.
func allCPUs() []int {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus
}

// wakeLateness measures Stalls for d (or until ctx ends) with one probe
// thread on each of cpus. A thread that cannot be pinned still measures,
// unpinned (Stalls.Pinned says whether all were).
func wakeLateness(ctx context.Context, d time.Duration, cpus []int) Stalls {
	lates := make([][]time.Duration, len(cpus))
	pinned := make([]bool, len(cpus))
	var wg sync.WaitGroup
	for i, cpu := range cpus {
		wg.Go(func() {
			// Never unlocked: the thread, pinned, ends with the goroutine,
			// so that no other goroutine runs on it afterwards, nor does a
			// process started from it (a node) inherit its one CPU.
			runtime.LockOSThread()
			pinned[i] = pinThread(cpu) == nil
			lates[i] = sleepLoop(ctx, d, stallTick)
		})
	}
	wg.Wait()
	s := summarise(lates)
	s.Pinned = !slices.Contains(pinned, false)
	return s
}

// sleepLoop sleeps tick in the kernel over and over for d (or until ctx
// ends) and returns each wake-up's lateness.
func sleepLoop(ctx context.Context, d, tick time.Duration) []time.Duration {
	lates := make([]time.Duration, 0, min(int(d/tick)+1, 1<<16))
	end := time.Now().Add(d)
	for ctx.Err() == nil {
		t := time.Now()
		if !t.Before(end) {
			break
		}
		sleepThread(tick)
		lates = append(lates, max(0, time.Since(t)-tick))
	}
	return lates
}

// summarise gives the Stalls of each CPU's wake-ups' lateness.
func summarise(perCPU [][]time.Duration) Stalls {
	var all []time.Duration
	s := Stalls{}
	for _, lates := range perCPU {
		all = append(all, lates...)
		n := 0
		for _, l := range lates {
			if l > stallOver {
				n++
			}
		}
		s.Over10Ms += n
		if n > 0 {
			s.CPUsOver++
		}
	}
	slices.Sort(all)
	s.Wakeups = len(all)
	if len(all) == 0 {
		return s
	}
	s.LateP50Ms = ms(percentile(all, 0.50))
	s.LateP99Ms = ms(percentile(all, 0.99))
	s.LateP999Ms = ms(percentile(all, 0.999))
	s.LateMaxMs = ms(all[len(all)-1])
	return s
}
