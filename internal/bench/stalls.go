package bench

import (
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
// the latency's tail that no node's work enters. On each CPU one thread,
// pinned to it where the system allows (Linux), sleeps for stallTick over
// and over, and each wake-up's lateness (the time slept past stallTick) is
// kept. A host that takes a virtual CPU away, or a kernel that holds one,
// shows here as it shows in any report handled on that CPU at the time: at
// 500 reports/s a stall of 20 ms holds about ten reports, and p99.9 of
// 5,000 is the fifth slowest.
//
// The bench measures it twice with no node busy: before the nodes start,
// the machine idle, and beside the disk's replay of the latency phase's
// commits (LatencyDisk). Each time the probe is a process of its own
// (`tearline bench --wake-probe D`, see ProbeMachine), so that it shares
// no Go runtime with the replay: in the replay's process, pinned threads
// that sleep woke up to 20 ms late, where a process of their own, on the
// same CPUs at the same time, woke within 5 ms (BENCHMARKS.md, issue 7).
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

// WakeProbe measures Stalls for d with one probe thread on each CPU, in
// this process (`tearline bench --wake-probe`).
func WakeProbe(d time.Duration) Stalls { return wakeLateness(d, runtime.NumCPU()) }

// ProbeMachine runs WakeProbe for d in a process of its own, exe's
// `bench --wake-probe d`, and returns what it measured.
func ProbeMachine(ctx context.Context, exe string, d time.Duration) (Stalls, error) {
	var s Stalls
	out, err := exec.CommandContext(ctx, exe, "bench", "--wake-probe", d.String()).Output()
	if err != nil {
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			return s, fmt.Errorf("the wake-up probe (%s bench --wake-probe): %w: %s", exe, err, ee.Stderr)
		}
		return s, fmt.Errorf("the wake-up probe (%s bench --wake-probe): %w", exe, err)
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("the wake-up probe printed %q: %w", out, err)
	}
	if s.Wakeups == 0 {
		return s, fmt.Errorf("the wake-up probe measured no wake-up in %s", d)
	}
	return s, nil
}

// wakeLateness measures Stalls for d with one probe thread on each of cpus
// CPUs. A thread that cannot be pinned still measures, unpinned
// (Stalls.Pinned says whether all were).
func wakeLateness(d time.Duration, cpus int) Stalls {
	lates := make([][]time.Duration, cpus)
	pinned := make([]bool, cpus)
	var wg sync.WaitGroup
	for cpu := range cpus {
		wg.Go(func() {
			// Never unlocked: the thread, pinned, ends with the goroutine,
			// so that no other goroutine runs on it afterwards, nor does a
			// process started from it (a node) inherit its one CPU.
			runtime.LockOSThread()
			pinned[cpu] = pinThread(cpu) == nil
			lates[cpu] = sleepLoop(d, stallTick)
		})
	}
	wg.Wait()
	s := summarise(lates)
	s.Pinned = !slices.Contains(pinned, false)
	return s
}

// sleepLoop sleeps tick over and over for d and returns each wake-up's
// lateness.
func sleepLoop(d, tick time.Duration) []time.Duration {
	lates := make([]time.Duration, 0, int(d/tick)+1)
	end := time.Now().Add(d)
	for {
		t := time.Now()
		if !t.Before(end) {
			return lates
		}
		time.Sleep(tick)
		lates = append(lates, max(0, time.Since(t)-tick))
	}
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
