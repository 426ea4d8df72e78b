package bench

import (
	"context"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPinThread(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left pinned; ending the goroutine locked ends the
		// thread with it.
		cpus := probeCPUs()
		cpu := cpus[len(cpus)-1]
		if err := pinThread(cpu); err != nil {
			t.Errorf("pinThread(%d): %v", cpu, err)
			return
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			t.Errorf("SchedGetaffinity: %v", err)
			return
		}
		if set.Count() != 1 || !set.IsSet(cpu) {
			t.Errorf("thread's CPUs: %d of them, CPU %d in them: %v; want only CPU %d", set.Count(), cpu, set.IsSet(cpu), cpu)
		}
		// A CPU this process may not use (past the last it may), and one
		// past what a CPU set holds.
		if err := pinThread(cpu + 1); err == nil {
			t.Errorf("pinning to CPU %d, not among %v: no error", cpu+1, cpus)
		}
		if err := pinThread(1 << 20); err == nil {
			t.Error("pinning to CPU 1<<20: no error")
		}
	}()
	<-done
}

// TestWakeLatenessLeavesNoThreadPinned: after the probe, every thread the
// process runs on, and every process it starts, may use every CPU the
// process could before. A pinned thread returned to the runtime once ran
// a node started after the probe on one CPU.
func TestWakeLatenessLeavesNoThreadPinned(t *testing.T) {
	var want unix.CPUSet
	if err := unix.SchedGetaffinity(0, &want); err != nil {
		t.Fatal(err)
	}
	if want.Count() < 2 {
		t.Skip("one CPU: a thread pinned to it is not told apart")
	}
	wakeLateness(context.Background(), 20*time.Millisecond, probeCPUs())
	for i := range 50 {
		got := make(chan unix.CPUSet)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			_ = unix.SchedGetaffinity(0, &set)
			got <- set
		}()
		if set := <-got; set != want {
			t.Fatalf("thread %d after the probe may use %d CPUs, want %d", i, set.Count(), want.Count())
		}
		out, err := exec.Command("grep", "Cpus_allowed_list", "/proc/self/status").Output()
		if err != nil {
			t.Fatal(err)
		}
		if n := cpuListCount(t, strings.TrimSpace(strings.TrimPrefix(string(out), "Cpus_allowed_list:"))); n != want.Count() {
			t.Fatalf("a process started after the probe may use %d CPUs (%s), want %d", n, out, want.Count())
		}
	}
}

// cpuListCount counts the CPUs of a list such as "0-3,6".
func cpuListCount(t *testing.T, list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			t.Fatalf("CPU list %q: %v", list, err)
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				t.Fatalf("CPU list %q: %v", list, err)
			}
		}
		n += b - a + 1
	}
	return n
}

// TestProbeCPUsFollowsAffinity: the probe puts its threads on the CPUs the
// process may use, not on 0..N-1.
func TestProbeCPUsFollowsAffinity(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	last := -1
	for id := range 1024 {
		if all.IsSet(id) {
			last = id
		}
	}
	if last < 1 {
		t.Skip("one CPU")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // left with its own affinity, ended with the goroutine
		var only unix.CPUSet
		only.Set(last)
		if err := unix.SchedSetaffinity(0, &only); err != nil {
			t.Error(err)
			return
		}
		if got := probeCPUs(); len(got) != 1 || got[0] != last {
			t.Errorf("probe CPUs %v on a thread that may use only CPU %d", got, last)
		}
	}()
	<-done
	if got := probeCPUs(); len(got) != all.Count() {
		t.Errorf("probe CPUs %v, want the %d the process may use", got, all.Count())
	}
}
