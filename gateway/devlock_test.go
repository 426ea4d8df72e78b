package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// runningDev is a `tearline dev` started in this process by startDev.
type runningDev struct {
	t      testing.TB
	out    *lockedWriter
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startDev runs RunDev(o) until stop (or the test's end) and returns once
// the federation has said it serves.
func startDev(t testing.TB, o DevOptions) *runningDev {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDev{t: t, out: &lockedWriter{w: &strings.Builder{}}, cancel: cancel, done: make(chan error, 1)}
	logs := &lockedWriter{w: &strings.Builder{}}
	go func() { d.done <- RunDev(ctx, o, slog.New(slog.NewTextHandler(logs, nil)), d.out) }()
	t.Cleanup(d.stop)
	for start := time.Now(); !strings.Contains(d.out.String(), "Press Ctrl-C"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-d.done:
			d.once.Do(func() {})
			t.Fatalf("RunDev: %v\n%s\n%s", err, d.out.String(), logs.String())
		default:
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the dev federation did not start:\n%s\n%s", d.out.String(), logs.String())
		}
	}
	return d
}

// stop ends the federation and waits for RunDev to return.
func (d *runningDev) stop() {
	d.once.Do(func() {
		d.cancel()
		if err := <-d.done; err != nil {
			d.t.Errorf("RunDev: %v", err)
		}
	})
}

// snapshotDir describes every file and folder under dir (content hash,
// size, mode and time of change), leaving out folders named skip.
func snapshotDir(t testing.TB, dir, skip string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && skip != "" && e.Name() == skip {
			return filepath.SkipDir
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		rel, _ := filepath.Rel(dir, path)
		snap[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// sameSnapshot fails t with every difference between two snapshots.
func sameSnapshot(t testing.TB, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s was removed", p)
		} else if a != b {
			t.Errorf("%s changed: %s -> %s", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

// refusedInUse checks that err is a refusal of dir as in use, with want
// in its text.
func refusedInUse(t testing.TB, what string, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrDevInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s on a folder in use: %v, want ErrDevInUse with %q", what, err, want)
	}
}

// runDevRefused runs RunDev(o), which must be refused at once: a start
// that is not is stopped after a few seconds, and fails the test.
func runDevRefused(t testing.TB, o DevOptions, want string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := RunDev(ctx, o, slog.New(slog.DiscardHandler), &strings.Builder{})
	refusedInUse(t, "RunDev", err, want)
	return err
}

// TestDevSecondStartRefused: while `tearline dev` runs on a folder, a second
// start (and --init-only) on it is refused with a message naming the
// running one's pid and what to do, before it has rewritten any config,
// key or certificate; once the first has stopped, a start works again.
func TestDevSecondStartRefused(t *testing.T) {
	dir := t.TempDir()
	parties := []string{"USA", "GBR"}
	first := startDev(t, DevOptions{Dir: dir, Parties: parties, BasePort: freePorts(t, 2)})
	// The running nodes write their own stores; nothing else may change.
	before := snapshotDir(t, dir, "data")
	time.Sleep(20 * time.Millisecond) // so that a rewrite would show in the times too
	second := DevOptions{Dir: dir, Parties: parties, BasePort: freePorts(t, 2)}
	want := fmt.Sprintf("%s is in use by another `tearline dev` (pid %d): stop it first, or pass --dir with another folder", dir, os.Getpid())
	err := runDevRefused(t, second, want)
	if err.Error() != want {
		t.Errorf("RunDev: %q, want %q", err, want)
	}
	_, err = DevInit(second)
	refusedInUse(t, "DevInit", err, want)
	sameSnapshot(t, before, snapshotDir(t, dir, "data"))

	first.stop()
	startDev(t, second).stop()
}

// TestDevRefusalChangesNothing: a start refused because another holds the
// folder leaves every file in it as it was, the nodes' stores included,
// and the folder is usable again once the other lets go.
func TestDevRefusalChangesNothing(t *testing.T) {
	dir := t.TempDir()
	o := DevOptions{Dir: dir, Parties: []string{"USA", "GBR"}, BasePort: freePorts(t, 2)}
	startDev(t, o).stop()     // a folder with CAs, configs, profiles and stores
	held, err := lockDev(dir) // as a running `tearline dev` holds it
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir, "")
	for _, p := range o.Parties {
		if _, ok := before[filepath.Join(p, "data", "tearline.db")]; !ok {
			t.Fatalf("no store for %s in %v", p, before)
		}
	}
	time.Sleep(20 * time.Millisecond)
	want := fmt.Sprintf("(pid %d): stop it first, or pass --dir", os.Getpid())
	runDevRefused(t, o, want)
	_, err = DevInit(o)
	refusedInUse(t, "DevInit", err, want)
	sameSnapshot(t, before, snapshotDir(t, dir, ""))

	held.release()
	if _, err := DevInit(o); err != nil {
		t.Fatalf("DevInit once the folder is free: %v", err)
	}
}

// TestDevRefusedWhileNodesRun: a folder that --init-only wrote, whose nodes
// run one by one (`tearline node --config DIR/<PARTY>/node.yaml`), is
// refused while a node has its store open, also in a folder from before
// dev.lock, and left as it was.
func TestDevRefusedWhileNodesRun(t *testing.T) {
	dir := t.TempDir()
	o := DevOptions{Dir: dir, Parties: []string{"USA", "GBR"}, BasePort: freePorts(t, 2)}
	paths, err := DevInit(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var closeOnce sync.Once
	closeNode := func() { closeOnce.Do(func() { s.close(); s.grpc.Stop() }) } // a node that never ran
	defer closeNode()
	want := filepath.Join(dir, "USA", "data", "tearline.db") + " is open in another process"
	for _, c := range []struct {
		name string
		prep func()
	}{
		{"with dev.lock", func() {}},
		{"without dev.lock", func() {
			if err := os.Remove(filepath.Join(dir, devLockFile)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		c.prep()
		// The node's store makes a checkpoint of what it wrote as it
		// opened soon after: wait until its files stay as they are.
		before := snapshotDir(t, dir, "")
		for i := 0; ; i++ {
			time.Sleep(250 * time.Millisecond)
			now := snapshotDir(t, dir, "")
			if maps.Equal(before, now) {
				break
			}
			if i == 40 {
				t.Fatal("the node's files kept changing for 10 s")
			}
			before = now
		}
		_, err := DevInit(o)
		refusedInUse(t, "DevInit "+c.name, err, want)
		runDevRefused(t, o, want)
		sameSnapshot(t, before, snapshotDir(t, dir, ""))
	}
	closeNode()
	if _, err := DevInit(o); err != nil {
		t.Fatalf("DevInit once the node has stopped: %v", err)
	}
}

// TestDevLockFreedByCrash: the lock is another process's, which is then
// killed (no clean exit, its pid file left behind): a start refused while
// it lived names its pid, and the next start after its death succeeds.
func TestDevLockFreedByCrash(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDevLockHelperProcess$")
	cmd.Env = append(os.Environ(), "TEARLINE_DEVLOCK_HELPER_DIR="+dir)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	for start := time.Now(); readDevPID(dir) != cmd.Process.Pid; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatal("the helper process did not take the lock")
		}
	}
	o := DevOptions{Dir: dir, Parties: []string{"USA", "GBR"}, BasePort: freePorts(t, 2)}
	_, err := DevInit(o)
	refusedInUse(t, "DevInit", err, fmt.Sprintf("in use by another `tearline dev` (pid %d)", cmd.Process.Pid))

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	exited <- nil // for the deferred wait
	if _, err := os.Stat(filepath.Join(dir, devPIDFile)); err != nil {
		t.Fatalf("the killed process's pid file: %v", err)
	}
	if _, err := DevInit(o); err != nil {
		t.Fatalf("DevInit after the holder was killed: %v", err)
	}
}

// TestDevLockHelperProcess holds a dev folder's lock for
// TestDevLockFreedByCrash until it is killed.
func TestDevLockHelperProcess(t *testing.T) {
	dir := os.Getenv("TEARLINE_DEVLOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("a helper process for TestDevLockFreedByCrash")
	}
	if _, err := lockDev(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	time.Sleep(time.Minute)
	os.Exit(1)
}
