package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/internal/freeport"
	"github.com/tearline/tearline/internal/scrape"
	"github.com/tearline/tearline/node/store"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// The two parties of the benchmark: A publishes, B receives and serves
// its subscribers.
const (
	partyA = "USA"
	partyB = "GBR"
	banner = "SECRET//REL TO USA, GBR"
	topic  = "CT"
	// streamsPerSubscriber is how many streams each subscriber identity
	// opens in the fan-out phase; each stream is its own subscription.
	streamsPerSubscriber = 10
)

// federation is two node processes, A and B, made with the dev layout in
// dir, and the client connections the benchmark opened to them.
type federation struct {
	dir   string
	exe   string
	nodes map[string]*nodeProc
	// profiles, when set, is where each node process writes a CPU profile.
	profiles string
	started  map[string]int

	mu    sync.Mutex
	conns []*grpc.ClientConn
}

type nodeProc struct {
	party, config, addr string
	metrics             string // its /metrics listen address
	cmd                 *exec.Cmd
	exited              chan struct{} // closed when the process has exited
	exitErr             error         // its exit status, once exited is closed
}

// subscriberName is the name of fan-out subscriber i at B.
func subscriberName(i int) string { return fmt.Sprintf("bench%04d", i) }

// newFederation lays out A and B in dir with subscribers subscriber
// identities at B (SECRET, need-to-know CT), each with a profile, and
// each node's memory_limit_mib set to memLimitMiB and gc_percent to
// gcPercent.
func newFederation(dir, exe string, subscribers, memLimitMiB, gcPercent int) (*federation, error) {
	base, err := freeport.Range(4) // two nodes' listen ports, then their metrics
	if err != nil {
		return nil, err
	}
	paths, err := gateway.DevInit(gateway.DevOptions{Dir: dir, Parties: []string{partyA, partyB}, BasePort: base})
	if err != nil {
		return nil, err
	}
	f := &federation{dir: dir, exe: exe, nodes: map[string]*nodeProc{}, started: map[string]int{}}
	for _, p := range paths {
		cfg, err := gateway.LoadConfig(p)
		if err != nil {
			return nil, err
		}
		cfg.LogLevel = "warn"
		cfg.MemoryLimitMiB = memLimitMiB
		cfg.GCPercent = gcPercent
		cfg.MetricsListen = fmt.Sprintf("127.0.0.1:%d", base+2+len(f.nodes))
		if cfg.Party == partyB {
			for i := range subscribers {
				cfg.Subscribers = append(cfg.Subscribers, gateway.SubscriberConfig{Name: subscriberName(i), Clearance: "SECRET", NeedToKnow: []string{topic}})
			}
		}
		if err := gateway.WriteConfig(p, cfg); err != nil {
			return nil, err
		}
		f.nodes[cfg.Party] = &nodeProc{party: cfg.Party, config: p, addr: cfg.Listen, metrics: cfg.MetricsListen}
	}
	ca, err := pki.OpenDevCA(filepath.Join(dir, partyB, "ca"), partyB)
	if err != nil {
		return nil, err
	}
	bundle, err := ca.Bundle(context.Background())
	if err != nil {
		return nil, err
	}
	for i := range subscribers {
		id := pki.Identity{Domain: pki.DefaultDomain(partyB), Party: partyB, Kind: pki.KindService, Name: subscriberName(i)}
		is, err := ca.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		if err := pki.WriteProfile(f.subscriberDir(i), is, bundle); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *federation) subscriberDir(i int) string {
	return filepath.Join(f.dir, partyB, "subscribers", subscriberName(i))
}

// start starts party's node process and waits until it answers.
func (f *federation) start(ctx context.Context, party string) error {
	n := f.nodes[party]
	logf, err := os.OpenFile(filepath.Join(f.dir, party, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"node", "--config", n.config}
	if f.profiles != "" {
		f.started[party]++
		args = append(args, "--cpuprofile", filepath.Join(f.profiles, fmt.Sprintf("%s-%d.pprof", party, f.started[party])))
	}
	n.cmd = exec.Command(f.exe, args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s node: %w", party, err)
	}
	n.exited = make(chan struct{})
	go func() { n.exitErr = n.cmd.Wait(); logf.Close(); close(n.exited) }()
	c, err := f.officer(party)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.ListReports(cctx, &clientv1.ListReportsRequest{Limit: 1})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("%s node exited at start (%v); see %s", party, n.exitErr, filepath.Join(f.dir, party, "node.log"))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s node did not answer within 30 s: %w", party, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops party's node with SIGTERM and waits for it.
func (f *federation) stop(party string) error {
	n := f.nodes[party]
	if n.cmd == nil {
		return nil
	}
	defer func() { n.cmd = nil }()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		if n.exitErr != nil {
			return fmt.Errorf("%s node: %w", party, n.exitErr)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("%s node did not stop within 30 s of SIGTERM", party)
	}
}

// close stops both nodes and closes every connection.
func (f *federation) close() {
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	for p := range f.nodes {
		_ = f.stop(p)
	}
}

// resetPeak starts party's node process's peak resident set (VmHWM) again
// from its resident set now (Linux: 5 written to /proc/PID/clear_refs), so
// that a phase measures its own peak, not the earlier phases'.
func (f *federation) resetPeak(party string) error {
	n := f.nodes[party]
	if n.cmd == nil {
		return fmt.Errorf("%s node is not running", party)
	}
	path := fmt.Sprintf("/proc/%d/clear_refs", n.cmd.Process.Pid)
	if err := os.WriteFile(path, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset the peak RSS of %s: %w", party, err)
	}
	return nil
}

// memory is party's node process's peak resident set (VmHWM) and, now,
// how much of its resident set is anonymous memory (heap, stacks) and how
// much is mapped file (the bbolt file's pages), in MiB.
func (f *federation) memory(party string) (peak, anon, file float64, err error) {
	n := f.nodes[party]
	if n.cmd == nil {
		return 0, 0, 0, fmt.Errorf("%s node is not running", party)
	}
	kib, err := procStatusKiB(strconv.Itoa(n.cmd.Process.Pid), "VmHWM", "RssAnon", "RssFile")
	if err != nil {
		return 0, 0, 0, err
	}
	return kib[0] / 1024, kib[1] / 1024, kib[2] / 1024, nil
}

// procStatusKiB reads the named fields (in kB) of /proc/PID/status, pid
// being a process id or "self".
func procStatusKiB(pid string, names ...string) ([]float64, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(names))
	found := 0
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		i := slices.Index(names, name)
		if !ok || i < 0 {
			continue
		}
		if out[i], err = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64); err != nil {
			return nil, fmt.Errorf("/proc/%s/status %s: %w", pid, name, err)
		}
		found++
	}
	if found != len(names) {
		return nil, fmt.Errorf("/proc/%s/status lacks one of %s", pid, strings.Join(names, ", "))
	}
	return out, nil
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// Linux whatever the kernel's own tick).
const userHZ = 100

// procCPU is the CPU time, user and system, that process pid ("self" or a
// number) has used, from /proc/PID/stat.
func procCPU(pid string) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	d, err := statCPU(string(data))
	if err != nil {
		return 0, fmt.Errorf("/proc/%s/stat: %w", pid, err)
	}
	return d, nil
}

// statCPU reads utime and stime (fields 14 and 15) from a /proc/PID/stat
// line. The command name, in parentheses, may hold spaces and
// parentheses: the fields from the state (the third) on follow the last
// ')'.
func statCPU(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("%q is not a stat line", line)
	}
	fields := strings.Fields(line[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("%q is not a stat line", line)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpu returns the CPU time used so far by A, B and the benchmark itself.
func (f *federation) cpu() ([3]time.Duration, error) {
	var out [3]time.Duration
	for i, pid := range []string{strconv.Itoa(f.nodes[partyA].cmd.Process.Pid), strconv.Itoa(f.nodes[partyB].cmd.Process.Pid), "self"} {
		d, err := procCPU(pid)
		if err != nil {
			return out, err
		}
		out[i] = d
	}
	return out, nil
}

func (f *federation) dial(party, profileDir string) (clientv1.ClientServiceClient, error) {
	prof, err := pki.LoadProfile(profileDir)
	if err != nil {
		return nil, err
	}
	conn, err := gateway.Dial(f.nodes[party].addr, prof)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.conns = append(f.conns, conn)
	f.mu.Unlock()
	return clientv1.NewClientServiceClient(conn), nil
}

// officer is a new connection as party's liaison officer.
func (f *federation) officer(party string) (clientv1.ClientServiceClient, error) {
	return f.dial(party, filepath.Join(f.dir, party))
}

// pids names the node processes running now, and this one ("bench").
func (f *federation) pids() map[int]string {
	m := map[int]string{os.Getpid(): "bench"}
	for party, n := range f.nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			m[n.cmd.Process.Pid] = party
		}
	}
	return m
}

// subscriber is a new connection as B's fan-out subscriber i.
func (f *federation) subscriber(i int) (clientv1.ClientServiceClient, error) {
	return f.dial(partyB, f.subscriberDir(i))
}

// storeStats reads party's store counts from its /metrics (see
// parseStoreStats).
func (f *federation) storeStats(ctx context.Context, party string) (store.Stats, error) {
	text, err := scrape.Get(ctx, f.nodes[party].metrics)
	if err != nil {
		return store.Stats{}, fmt.Errorf("%s metrics: %w", party, err)
	}
	st, err := parseStoreStats(text)
	if err != nil {
		return st, fmt.Errorf("%s: %w", party, err)
	}
	return st, nil
}

// parseStoreStats reads a node's store counts from its metrics page:
// tearline_store_commit_seconds (a histogram), tearline_store_writes_total,
// the log's and the checkpoints' counters (gateway/audit.go), ...
func parseStoreStats(text string) (store.Stats, error) {
	var st store.Stats
	var err error
	if st.Commits, err = scrape.Uint(text, "tearline_store_commit_seconds_count"); err != nil {
		return st, err
	}
	if st.Writes, err = scrape.Uint(text, "tearline_store_writes_total"); err != nil {
		return st, err
	}
	// The log's and the checkpoints' counts are printed with %g, which
	// writes a million and more as 1.234567e+06: read as floats (exact
	// for whole numbers below 2^53).
	for name, n := range map[string]*uint64{
		"tearline_store_log_records_total":   &st.LogRecords,
		"tearline_store_log_bytes_total":     &st.LogBytes,
		"tearline_store_checkpoints_total":   &st.Checkpoints,
		"tearline_store_durable_waits_total": &st.DurableWaits,
	} {
		x, err := scrape.Float(text, name)
		if err != nil {
			return st, err
		}
		if x < 0 || x != math.Trunc(x) || x >= 1<<53 {
			return st, fmt.Errorf("metric %s: %g is not a count", name, x)
		}
		*n = uint64(x)
	}
	for name, d := range map[string]*time.Duration{
		"tearline_store_commit_seconds_sum":         &st.CommitTime,
		"tearline_store_write_seconds_total":        &st.WriteTime,
		"tearline_store_log_seconds_total":          &st.LogTime,
		"tearline_store_checkpoint_seconds_total":   &st.CheckpointTime,
		"tearline_store_durable_wait_seconds_total": &st.DurableWaitTime,
	} {
		secs, err := scrape.Float(text, name)
		if err != nil {
			return st, err
		}
		*d = time.Duration(secs * float64(time.Second))
	}
	buckets, err := scrape.Histogram(text, "tearline_store_commit_seconds")
	if err != nil {
		return st, err
	}
	if len(buckets) != len(store.CommitBounds)+1 {
		return st, fmt.Errorf("tearline_store_commit_seconds has %d buckets, want %d", len(buckets), len(store.CommitBounds)+1)
	}
	for i, le := range store.CommitBounds {
		if buckets[i].Le != le.Seconds() {
			return st, fmt.Errorf("tearline_store_commit_seconds bucket %d is le=%g, want %g", i, buckets[i].Le, le.Seconds())
		}
		st.CommitsWithin[i] = buckets[i].Count
	}
	return st, nil
}
