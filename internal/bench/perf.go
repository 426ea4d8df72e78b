package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// perfRecord is `perf record -a -g` running over one phase: every CPU's
// samples, with call stacks, kernel and user, of every process. Go's own
// CPU profile (--cpuprofile-dir) puts a signal-driven sample at the end of
// a system call, and on this machine it gave bbolt's pwrite 14-22 % of a
// node's CPU where perf, sampling in the kernel, gives ~5 % (BENCHMARKS.md,
// the fifteenth session).
type perfRecord struct {
	cmd      *exec.Cmd
	data     string
	log      *os.File
	done     chan struct{} // closed once perf has exited
	exitErr  error         // set before done is closed
	stopOnce sync.Once
	stopErr  error
}

// perfStopWait bounds how long perf may take to write its file once told
// to stop.
const perfStopWait = 2 * time.Minute

// perfAvailable says why perf cannot record every CPU here, or nil. It
// tries: the rights perf needs (root, CAP_PERFMON or a low
// kernel.perf_event_paranoid) vary too much to be read off.
func perfAvailable() error {
	if _, err := exec.LookPath("perf"); err != nil {
		return errors.New("perf is not installed (Debian: apt-get install linux-perf)")
	}
	dir, err := os.MkdirTemp("", "tearline-perf-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("perf", "record", "-a", "-q", "-o", filepath.Join(dir, "probe.data"), "--", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("perf cannot record every CPU here (it needs root, CAP_PERFMON or kernel.perf_event_paranoid <= 0): %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startPerf starts recording into dir/phase.perf.data.
func startPerf(dir, phase string) (*perfRecord, error) {
	p := &perfRecord{data: filepath.Join(dir, phase+".perf.data"), done: make(chan struct{})}
	log, err := os.Create(filepath.Join(dir, phase+".perf.log"))
	if err != nil {
		return nil, err
	}
	p.log = log
	p.cmd = exec.Command("perf", "record", "-a", "-g", "-o", p.data)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("perf record: %w", err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	// perf needs a moment to open its events on every CPU; samples
	// before then are lost, not wrong. One that ends at once failed.
	select {
	case <-p.done:
		log.Close()
		return nil, fmt.Errorf("perf record ended at once: %v (see %s)", p.exitErr, log.Name())
	case <-time.After(200 * time.Millisecond):
	}
	return p, nil
}

// stop ends the recording (perf writes its file on SIGINT); the calls
// after the first return the first one's error.
func (p *perfRecord) stop() error {
	p.stopOnce.Do(func() {
		defer p.log.Close()
		p.cmd.Process.Signal(syscall.SIGINT) // it may have ended; done says
		select {
		case <-p.done:
		case <-time.After(perfStopWait):
			p.cmd.Process.Kill()
			<-p.done
			p.stopErr = fmt.Errorf("perf record did not end within %s of SIGINT (see %s)", perfStopWait, p.log.Name())
			return
		}
		err := p.exitErr
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			// perf ends by raising the SIGINT it handled, once its file is written.
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
				err = nil
			}
		}
		if err != nil {
			p.stopErr = fmt.Errorf("perf record: %w (see %s)", err, p.log.Name())
		}
	})
	return p.stopErr
}

// breakdown reads the recording's samples (`perf script`) and writes out,
// for each of procs (pid to name), its share of the machine's samples and
// where its own went, by category.
func (p *perfRecord) breakdown(out string, procs map[int]string) error {
	cmd := exec.Command("perf", "script", "-i", p.data, "-F", "pid,ip,sym")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("perf script: %w", err)
	}
	counts, total, readErr := countSamples(stdout, procs)
	if readErr != nil {
		cmd.Process.Kill() // nothing reads its output any more
		cmd.Wait()
		return fmt.Errorf("perf script: %w", readErr)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("perf script: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	writeBreakdown(f, counts, total, procs)
	return f.Close()
}

// perfCategories sort a sample by the frames of its stack: the first
// category with a frame containing one of its strings takes it. bbolt's
// DB.Update, View and Batch frames are left out: everything a transaction
// does runs under them.
var perfCategories = []struct {
	name string
	in   []string
}{
	{"stack growth", []string{"runtime.morestack"}},
	{"garbage collection", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge"}},
	{"bbolt commit: writing and syncing pages", []string{"bbolt.(*Tx).write", "bbolt.(*Tx).writeMeta"}},
	{"bbolt commit: the rest", []string{"bbolt.(*Tx).Commit"}},
	{"ed25519", []string{"ed25519"}},
	{"sha256", []string{"sha256"}},
	{"TLS and gRPC transport", []string{"crypto/tls", "grpc/internal/transport", "golang.org/x/net/http2"}},
	{"protobuf encoding", []string{"proto.MarshalOptions", "(*MessageInfo).marshal", "(*MessageInfo).size"}},
	{"protobuf decoding", []string{"proto.UnmarshalOptions"}},
	{"bbolt reads and puts", []string{"go.etcd.io/bbolt."}},
	{"allocation", []string{"runtime.mallocgc", "runtime.growslice", "runtime.makeslice", "runtime.newobject"}},
	{"scheduler and sysmon", []string{"runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.sysmon", "runtime.goready", "runtime.notesleep", "runtime.notewakeup", "runtime.stopm", "runtime.startm", "runtime.wakep"}},
	{"channels and locks", []string{"runtime.chan", "runtime.selectgo", "sync.(*Mutex)", "runtime.lock"}},
}

const otherCategory = "other"

func categorise(frames []string) string {
	for _, c := range perfCategories {
		for _, f := range frames {
			if strings.Contains(f, "bbolt.(*DB).") {
				continue
			}
			for _, s := range c.in {
				if strings.Contains(f, s) {
					return c.name
				}
			}
		}
	}
	return otherCategory
}

// countSamples reads `perf script -F pid,ip,sym`: a line with a sample's
// pid, then one line per frame, leaf first ("\taddr symbol"), then a blank
// line. A sample without a call chain has its one frame on the pid's line
// ("pid addr symbol"). It counts every sample (total) and, per process of procs, its
// samples by category.
func countSamples(r io.Reader, procs map[int]string) (map[int]map[string]int, int, error) {
	counts := map[int]map[string]int{}
	total := 0
	pid := -1
	var frames []string
	flush := func() {
		if pid < 0 {
			return
		}
		total++
		if _, ok := procs[pid]; ok {
			if counts[pid] == nil {
				counts[pid] = map[string]int{}
			}
			counts[pid][categorise(frames)]++
		}
		pid, frames = -1, frames[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == '\t':
			if _, sym, ok := strings.Cut(strings.TrimSpace(line), " "); ok && pid >= 0 {
				frames = append(frames, sym)
			}
		default: // the pid, padded with spaces, and perhaps the one frame
			fields := strings.Fields(line)
			n, err := strconv.Atoi(fields[0])
			if err != nil {
				return nil, 0, fmt.Errorf("unexpected line %q", line)
			}
			flush()
			pid = n
			if len(fields) > 2 {
				frames = append(frames, strings.Join(fields[2:], " "))
			}
		}
	}
	flush()
	return counts, total, sc.Err()
}

func writeBreakdown(w io.Writer, counts map[int]map[string]int, total int, procs map[int]string) {
	pids := make([]int, 0, len(procs))
	for pid := range procs {
		pids = append(pids, pid)
	}
	slices.SortFunc(pids, func(a, b int) int { return strings.Compare(procs[a], procs[b]) })
	fmt.Fprintf(w, "perf record -a -g: %d samples over every CPU (idle included)\n", total)
	for _, pid := range pids {
		c := counts[pid]
		n := 0
		for _, k := range c {
			n += k
		}
		fmt.Fprintf(w, "\n%s (pid %d): %d samples, %s of all\n", procs[pid], pid, n, pct(n, total))
		names := make([]string, 0, len(c))
		for name := range c {
			names = append(names, name)
		}
		slices.SortFunc(names, func(a, b string) int {
			if c[a] != c[b] {
				return c[b] - c[a]
			}
			return strings.Compare(a, b)
		})
		for _, name := range names {
			fmt.Fprintf(w, "  %7s  %s\n", pct(c[name], n), name)
		}
	}
}

func pct(n, of int) string {
	if of == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + " %"
}
