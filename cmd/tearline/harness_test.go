package main

// The end-to-end harness: it builds the real tearline binary once, lays out
// a dev federation with `tearline dev --init-only`, runs each node as its own
// process (`tearline node --config`), and drives them with the CLI the way
// a liaison officer would.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/internal/freeport"
	"github.com/tearline/tearline/pki"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds tearline once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tearline-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tearline")
		// The binary is built without -race: the same server code runs
		// under the race detector in the gateway package's in-process
		// tests, and a race-built binary makes every CLI call here slow.
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freeBasePort finds n consecutive free loopback ports (internal/freeport:
// below the ephemeral range, never handed out twice in this process).
func freeBasePort(t *testing.T, n int) int {
	t.Helper()
	base, err := freeport.Range(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

type federation struct {
	t     *testing.T
	bin   string
	dir   string
	procs map[string]*exec.Cmd
	logs  map[string]*bytes.Buffer
	mu    sync.Mutex
}

func newFederation(t *testing.T, parties ...string) *federation {
	t.Helper()
	f := &federation{t: t, bin: binary(t), dir: t.TempDir(), procs: map[string]*exec.Cmd{}, logs: map[string]*bytes.Buffer{}}
	base := freeBasePort(t, len(parties))
	out, err := exec.Command(f.bin, "dev", "--init-only", "--dir", f.dir, "--parties", strings.Join(parties, ","), "--base-port", fmt.Sprint(base)).CombinedOutput()
	if err != nil {
		t.Fatalf("dev --init-only: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for p := range f.procs {
			f.stop(p)
		}
		if t.Failed() {
			for p, b := range f.logs {
				t.Logf("--- %s node log:\n%s", p, b.String())
			}
		}
	})
	return f
}

// start runs a party's node as a process and waits until it answers.
func (f *federation) start(party string) {
	f.t.Helper()
	cmd := exec.Command(f.bin, "node", "--config", filepath.Join(f.dir, party, "node.yaml"))
	f.mu.Lock()
	buf, ok := f.logs[party]
	if !ok {
		buf = &bytes.Buffer{}
		f.logs[party] = buf
	}
	f.mu.Unlock()
	cmd.Stdout = &lockedWriter{mu: &f.mu, w: buf}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.procs[party] = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := f.cli(party, "reports", "--json", "--timeout", "2s"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s node did not come up; log:\n%s", party, buf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends a party's node with SIGTERM and waits for it.
func (f *federation) stop(party string) {
	cmd, ok := f.procs[party]
	if !ok {
		return
	}
	delete(f.procs, party)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			f.t.Errorf("%s node did not exit cleanly on SIGTERM: %v", party, err)
		}
	case <-time.After(15 * time.Second):
		// SIGQUIT makes the Go runtime write every goroutine's stack to
		// the node's log (printed when the test fails): where it hangs.
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		f.t.Errorf("%s node did not stop within 15s of SIGTERM (its log ends with its goroutines)", party)
	}
}

// kill ends a party's node with SIGKILL.
func (f *federation) kill(party string) {
	cmd := f.procs[party]
	delete(f.procs, party)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

func (f *federation) startAll(parties ...string) {
	for _, p := range parties {
		f.start(p)
	}
}

// cli runs the tearline binary as party's officer.
func (f *federation) cli(party string, args ...string) (string, string, error) {
	all := append([]string{"--dev", f.dir, "--as", party}, args...)
	cmd := exec.Command(f.bin, all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustCLI runs the CLI and fails the test on a non-zero exit.
func (f *federation) mustCLI(party string, args ...string) string {
	f.t.Helper()
	out, errOut, err := f.cli(party, args...)
	if err != nil {
		f.t.Fatalf("tearline %s as %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), party, err, out, errOut)
	}
	return out
}

// jsonCLI runs the CLI with --json and decodes its output into v.
func (f *federation) jsonCLI(v any, party string, args ...string) {
	f.t.Helper()
	out := f.mustCLI(party, append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		f.t.Fatalf("decode %q: %v", out, err)
	}
}

type reportRow struct {
	ID           string `json:"id"`
	Originator   string `json:"originator"`
	Banner       string `json:"banner"`
	Title        string `json:"title"`
	ReceivedFrom string `json:"received_from"`
	Withdrawn    bool   `json:"withdrawn"`
	PortionsHeld int    `json:"portions_held"`
}

func (f *federation) reports(party string) []reportRow {
	f.t.Helper()
	var rows []reportRow
	f.jsonCLI(&rows, party, "reports", "--limit", "1000")
	return rows
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// officerConn is a gRPC connection to party's node as its liaison officer
// (the dev profile the CLI uses), for tests that call the node more often
// than a CLI process per call allows. It is closed when the test ends.
func (f *federation) officerConn(party string) *grpc.ClientConn {
	f.t.Helper()
	prof, err := pki.LoadProfile(filepath.Join(f.dir, party))
	if err != nil {
		f.t.Fatal(err)
	}
	addr, err := gateway.DevAddress(f.dir, party)
	if err != nil {
		f.t.Fatal(err)
	}
	conn, err := gateway.Dial(addr, prof)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

// editConfig changes party's node config (before the node starts).
func (f *federation) editConfig(party string, edit func(*gateway.Config)) {
	f.t.Helper()
	path := gateway.DevConfigPath(f.dir, party)
	c, err := gateway.LoadConfig(path)
	if err != nil {
		f.t.Fatal(err)
	}
	edit(c)
	if err := gateway.WriteConfig(path, c); err != nil {
		f.t.Fatal(err)
	}
	if _, err := gateway.LoadConfig(path); err != nil {
		f.t.Fatalf("edited config of %s: %v", party, err)
	}
}

// log returns what party's node has written so far.
func (f *federation) log(party string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.logs[party]; ok {
		return b.String()
	}
	return ""
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// String returns what was written so far.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// consentState is the state party's node lists for consent request id
// ("" when it lists none).
func (f *federation) consentState(party, id string) string {
	f.t.Helper()
	var cs []struct{ ID, State string }
	f.jsonCLI(&cs, party, "consent", "list")
	for _, c := range cs {
		if c.ID == id {
			return c.State
		}
	}
	return ""
}
