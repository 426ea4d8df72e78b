package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type portionJSON struct {
	Index    int    `json:"index"`
	Banner   string `json:"banner"`
	Withheld bool   `json:"withheld"`
	Verified bool   `json:"verified"`
	Body     string `json:"body"`
}

type showJSON struct {
	ID                string        `json:"id"`
	Originator        string        `json:"originator"`
	SignatureVerified bool          `json:"signature_verified"`
	Portions          []portionJSON `json:"portions"`
}

// USA publishes a report with two portions; GBR receives both, verified;
// CAN receives only the second, sees the first as withheld, and still
// verifies USA's signature over what it got.
func TestE2ETearlineRelease(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR", "CAN")
	f.startAll("USA", "GBR", "CAN")
	secret := filepath.Join(t.TempDir(), "second.txt")
	if err := os.WriteFile(secret, []byte("open source summary"), 0o600); err != nil {
		t.Fatal(err)
	}
	var pub struct {
		ID string `json:"id"`
	}
	f.jsonCLI(&pub, "USA", "publish", "--marking", "SECRET//REL TO USA, GBR//ORCON", "--topic", "CT",
		"--title", "Convoy sighting", "--body", "convoy of 12 trucks at grid 123",
		"--portion", "UNCLASSIFIED//REL TO USA, GBR, CAN=@"+secret)
	if pub.ID == "" {
		t.Fatal("publish printed no id")
	}
	var gbr, can showJSON
	eventually(t, 20*time.Second, "GBR and CAN to hold the report", func() bool {
		_, _, e1 := f.cli("GBR", "show", pub.ID)
		_, _, e2 := f.cli("CAN", "show", pub.ID)
		return e1 == nil && e2 == nil
	})
	f.jsonCLI(&gbr, "GBR", "show", pub.ID)
	f.jsonCLI(&can, "CAN", "show", pub.ID)

	if !gbr.SignatureVerified || gbr.Originator != "USA" || len(gbr.Portions) != 2 {
		t.Fatalf("GBR view: %+v", gbr)
	}
	for _, p := range gbr.Portions {
		if p.Withheld || !p.Verified {
			t.Errorf("GBR portion %d: withheld=%v verified=%v", p.Index, p.Withheld, p.Verified)
		}
	}
	if gbr.Portions[0].Body != "convoy of 12 trucks at grid 123" || gbr.Portions[0].Banner != "SECRET//REL TO GBR, USA//ORCON" {
		t.Errorf("GBR portion 1 = %+v", gbr.Portions[0])
	}
	if !can.SignatureVerified || len(can.Portions) != 2 {
		t.Fatalf("CAN view: %+v", can)
	}
	if p := can.Portions[0]; !p.Withheld || p.Body != "" || p.Banner != "" {
		t.Errorf("CAN portion 1 should be withheld with no body or banner: %+v", p)
	}
	if p := can.Portions[1]; p.Withheld || !p.Verified || p.Body != "open source summary" {
		t.Errorf("CAN portion 2: %+v", p)
	}
	// CAN's raw output never contains the withheld content.
	out := f.mustCLI("CAN", "show", "--json", pub.ID)
	if strings.Contains(out, "convoy") {
		t.Errorf("CAN's view leaks the withheld portion: %s", out)
	}
}

// With GBR's node stopped, USA publishes 100 reports; after GBR restarts it
// holds exactly those 100, in publish order, none twice.
func TestE2EPartnerOfflineCatchUp(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	f.stop("GBR")
	var ids []string
	for i := 0; i < 100; i++ {
		out := f.mustCLI("USA", "publish", "--marking", "CONFIDENTIAL//REL TO USA, GBR", "--title", fmt.Sprintf("report %d", i), "--body", fmt.Sprintf("body %d", i))
		ids = append(ids, strings.TrimSpace(out))
	}
	f.start("GBR")
	var rows []reportRow
	eventually(t, 60*time.Second, "GBR to hold 100 reports", func() bool {
		rows = f.reports("GBR")
		return len(rows) >= 100
	})
	time.Sleep(500 * time.Millisecond) // anything doubled would show now
	rows = f.reports("GBR")
	if len(rows) != 100 {
		t.Fatalf("GBR holds %d reports, want 100", len(rows))
	}
	var got []string
	for i := len(rows) - 1; i >= 0; i-- { // reports lists newest first
		got = append(got, rows[i].ID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("GBR's reports are not USA's 100 in publish order:\n got %v\nwant %v", got, ids)
	}
}

type eventJSON struct {
	Kind  string `json:"kind"`
	Party string `json:"party"`
}

// A node killed with SIGKILL while ingesting restarts with a store that
// opens and holds every report it acknowledged.
func TestE2EKillWhileIngesting(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	var (
		mu   sync.Mutex
		ids  []string
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				out, _, err := f.cli("USA", "publish", "--marking", "SECRET//REL TO USA, GBR", "--title", fmt.Sprintf("w%d-%d", w, i), "--body", strings.Repeat("x", 2048))
				if err != nil {
					continue
				}
				mu.Lock()
				ids = append(ids, strings.TrimSpace(out))
				mu.Unlock()
			}
		}()
	}
	// Let GBR ingest for a while, then kill it mid-stream.
	eventually(t, 60*time.Second, "GBR to ingest some reports", func() bool { return len(f.reports("GBR")) >= 30 })
	f.kill("GBR")
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	// Ask USA which reports GBR acknowledged (acknowledged only after GBR's
	// commit), then stop USA so that nothing is redelivered.
	var acked []string
	for _, id := range ids {
		var prov struct {
			Events []eventJSON `json:"events"`
		}
		f.jsonCLI(&prov, "USA", "provenance", id)
		for _, e := range prov.Events {
			if e.Kind == "acknowledged" && e.Party == "GBR" {
				acked = append(acked, id)
				break
			}
		}
	}
	f.stop("USA")
	if len(acked) == 0 {
		t.Fatal("GBR acknowledged nothing before it was killed")
	}
	f.start("GBR")
	held := map[string]bool{}
	for _, r := range f.reports("GBR") {
		held[r.ID] = true
	}
	for _, id := range acked {
		if !held[id] {
			t.Errorf("GBR acknowledged %s but does not hold it after SIGKILL", id)
		}
	}
	t.Logf("published %d, GBR acknowledged %d before SIGKILL and holds %d after restart", len(ids), len(acked), len(held))
}

// The CLI's errors: a non-zero exit and one plain sentence on stderr, or
// {"error": {...}} on stdout with --json; nothing is stored.
func TestE2ECLIErrors(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.start("USA")
	big := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(big, make([]byte, 5<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"malformed banner", []string{"publish", "--marking", "SECRET//REL TO USA, GBR//ORKON", "--body", "x"}, "ORKON"},
		{"unknown party", []string{"publish", "--marking", "SECRET//REL TO USA, XYZ", "--body", "x"}, "XYZ"},
		{"empty report", []string{"publish", "--marking", "SECRET//REL TO USA"}, "--body"},
		{"too large", []string{"publish", "--marking", "SECRET//REL TO USA", "--body", "@" + big}, "limit"},
		{"unknown report", []string{"show", "01234567-0000-7000-8000-000000000000"}, "not held"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := f.cli("USA", tc.args...)
			if err == nil {
				t.Fatalf("exit 0; stdout %q", out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.Contains(errOut, tc.want) || out != "" {
				t.Fatalf("stderr %q (stdout %q): want one sentence mentioning %q", errOut, out, tc.want)
			}
			out, _, err = f.cli("USA", append([]string{"--json"}, tc.args...)...)
			var e struct {
				Error struct {
					Code, Reason, Message string
				} `json:"error"`
			}
			if err == nil || json.Unmarshal([]byte(out), &e) != nil || e.Error.Code == "" || e.Error.Reason == "" || !strings.Contains(e.Error.Message, tc.want) {
				t.Fatalf("--json: err=%v stdout %q", err, out)
			}
		})
	}
	if n := len(f.reports("USA")); n != 0 {
		t.Fatalf("bad input stored %d reports", n)
	}
	// A profile from an untrusted CA cannot reach the node.
	rogue := t.TempDir()
	out, errOut, err := f.cli("USA", "--profile", rogue, "reports")
	if err == nil || !strings.Contains(errOut, "profile") {
		t.Fatalf("empty profile dir: err=%v stdout=%q stderr=%q", err, out, errOut)
	}
}

// `tearline dev` starts a federation, prints where the nodes listen, logs
// each node's lines with its party named once, stops cleanly on SIGTERM,
// and a second start with the same folder keeps the data (and stops on
// SIGHUP, its terminal closing).
func TestE2EDevRestartKeepsData(t *testing.T) {
	t.Parallel()
	if signal.Ignored(syscall.SIGHUP) {
		// Run under nohup: the dev process would start with SIGHUP
		// ignored too, and then rightly go on after it. Handled here
		// meanwhile, it starts with the default.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		t.Cleanup(func() { signal.Stop(hup) })
	}
	bin := binary(t)
	dir := t.TempDir()
	base := freeBasePort(t, 3)
	logs := &lockedWriter{mu: &sync.Mutex{}, w: &bytes.Buffer{}}
	run := func() (*exec.Cmd, *lockedWriter) {
		cmd := exec.Command(bin, "dev", "--dir", dir, "--base-port", fmt.Sprint(base))
		out := &lockedWriter{mu: &sync.Mutex{}, w: &bytes.Buffer{}}
		cmd.Stdout = out
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, out
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"--dev", dir}, args...)...).Output()
		return string(out), err
	}
	stop := func(cmd *exec.Cmd, sig syscall.Signal) {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("tearline dev exited with %v on %v", err, sig)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("tearline dev did not stop within 15s of %v", sig)
		}
	}
	cmd, out := run()
	eventually(t, 20*time.Second, "the dev federation to answer", func() bool { _, err := cli("--as", "GBR", "reports"); return err == nil })
	for _, p := range []string{"USA", "GBR", "CAN"} {
		if !strings.Contains(out.String(), p) || !strings.Contains(out.String(), fmt.Sprintf("127.0.0.1:%d", base)) {
			t.Fatalf("tearline dev did not say where %s listens:\n%s", p, out.String())
		}
	}
	id, err := cli("--as", "USA", "publish", "--marking", "SECRET//REL TO USA, GBR", "--body", "kept")
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(id)
	eventually(t, 20*time.Second, "GBR to hold it", func() bool { _, err := cli("--as", "GBR", "show", id); return err == nil })
	stop(cmd, syscall.SIGTERM)
	// Each node's lines name its party once (it was named twice in the
	// lines saying a node serves and stopped: a log reader keeping one of
	// two equal keys is not told which).
	served := 0
	for line := range strings.Lines(logs.String()) {
		if n := strings.Count(line, "party="); n != 1 {
			t.Errorf("a log line names a party %d times, want once: %s", n, line)
		}
		if strings.Contains(line, `msg="node serving"`) {
			served++
		}
	}
	if served != 3 {
		t.Errorf("%d nodes logged that they serve, want 3:\n%s", served, logs.String())
	}
	cmd, _ = run()
	defer stop(cmd, syscall.SIGHUP)
	eventually(t, 20*time.Second, "the restarted federation to answer", func() bool { _, err := cli("--as", "GBR", "reports"); return err == nil })
	for _, p := range []string{"USA", "GBR"} {
		if o, err := cli("--as", p, "show", id); err != nil || !strings.Contains(o, "kept") {
			t.Fatalf("%s lost the report across a restart: %v %s", p, err, o)
		}
	}
}
