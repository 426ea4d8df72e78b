package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/pki"
)

// TestE2ESubscribeCountThenResume: `subscribe --count 1` prints one report
// and `subscribe --resume --count 1` then prints the next, each time: the
// node sends only what --count asks for, so the cursor it saves is the
// last report printed. Before, the node sent several reports ahead of the
// CLI, saved the cursor of the last one sent, and --resume skipped the
// ones never printed.
func TestE2ESubscribeCountThenResume(t *testing.T) {
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	var ids []string
	for _, body := range []string{"first", "second", "third", "fourth"} {
		id := publishID(f, "USA", "--marking", "SECRET//REL TO USA, GBR", "--topic", "CT", "--body", body)
		f.waitHolds("GBR", id)
		ids = append(ids, id)
	}
	analyst := filepath.Join(f.dir, "GBR", "analyst")
	for i, id := range ids {
		args := []string{"--profile", analyst, "subscribe", "--json", "--count", "1"}
		if i > 0 {
			args = append(args, "--resume")
		}
		out := f.mustCLI("GBR", args...)
		var got struct {
			ID     string `json:"id"`
			Cursor uint64 `json:"cursor"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &got); err != nil {
			t.Fatalf("subscribe %d: %v in %q", i, err, out)
		}
		if got.ID != id {
			t.Fatalf("subscribe %d printed %s, want %s (the reports in order: %v)", i, got.ID, id, ids)
		}
	}

	// Bad input is refused before anything is asked of the node.
	for _, bad := range [][]string{
		{"--count", "-1"},
		{"--count", "4294967296"},
		{"--after", "1", "--resume"},
	} {
		_, errOut, err := f.cli("GBR", append([]string{"--profile", analyst, "subscribe"}, bad...)...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("subscribe %v: want a usage error (exit 2), got %v: %s", bad, err, errOut)
		}
		if !strings.Contains(errOut, "--count must") && !strings.Contains(errOut, "give one") {
			t.Fatalf("subscribe %v: unclear error %q", bad, errOut)
		}
	}
}

// TestE2EWrongNodeIsNamed: a profile pointed at another party's node is
// told the TLS handshake failed and what to check, not that the node is
// unreachable; an address that does not resolve is told so.
func TestE2EWrongNodeIsNamed(t *testing.T) {
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	usa, err := gateway.DevAddress(f.dir, "USA")
	if err != nil {
		t.Fatal(err)
	}
	// A USA officer's certificate from a CA USA's node does not trust.
	rogue, err := pki.OpenDevCA(filepath.Join(t.TempDir(), "rogue-ca"), "USA")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := pki.NewIdentity("USA", pki.KindOfficer, "mallory")
	is, err := rogue.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	usaProfile, err := pki.LoadProfile(filepath.Join(f.dir, "USA"))
	if err != nil {
		t.Fatal(err)
	}
	rogueBundle, err := rogue.Bundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// ca.pem holds both, so that the profile loads (its certificate is from
	// a CA in it) and the client accepts USA's node.
	mallory := filepath.Join(t.TempDir(), "mallory")
	if err := pki.WriteProfile(mallory, is, append(usaProfile.Bundle, rogueBundle...)); err != nil {
		t.Fatal(err)
	}
	// --node with --profile, as against a real deployment: --node with
	// --dev/--as is refused (TestE2EGlobalFlagsRefused).
	run := func(args ...string) (string, string, error) {
		var stdout, stderr strings.Builder
		cmd := exec.Command(f.bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	gbr := filepath.Join(f.dir, "GBR")
	for _, c := range []struct {
		node, profile, reason, text string
	}{
		{usa, gbr, "tls-handshake", "the TLS handshake with the node failed (is --node the node of this profile's party, and ca.pem its CA?)"},
		{"nohost.invalid:7400", gbr, "unresolved", "the node's address does not resolve (check --node HOST:PORT)"},
		{usa, mallory, "certificate-refused", "most likely it refused this profile's certificate"},
	} {
		args := []string{"--node", c.node, "--timeout", "5s", "--profile", c.profile}
		_, errOut, err := run(append(args, "reports")...)
		if err == nil || !strings.Contains(errOut, c.text) {
			t.Errorf("GBR's profile at %s: %v, stderr %q; want it to say %q", c.node, err, errOut, c.text)
		}
		out, _, _ := run(append(append([]string{"--json"}, args...), "reports")...)
		var e struct{ Error struct{ Reason string } }
		if json.Unmarshal([]byte(out), &e); e.Error.Reason != c.reason {
			t.Errorf("GBR's profile at %s with --json: %q, want reason %s", c.node, out, c.reason)
		}
	}
	// USA's node names who it refused.
	if l := f.log("USA"); !strings.Contains(l, "handshake refused") || !strings.Contains(l, "claimed_peer=spiffe://usa.tearline.test/party/USA/officer/mallory") {
		t.Errorf("USA's log does not name the refused handshake:\n%s", l)
	}
}

// TestE2ENodeSurvivesSIGHUP: a node with the development CA has nothing
// to reload on SIGHUP, and keeps serving (Go's default would end it, and
// a service manager's reload or a stray signal with it).
func TestE2ENodeSurvivesSIGHUP(t *testing.T) {
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA")
	if err := f.procs["USA"].Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := f.procs["USA"].Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("USA's node ended on SIGHUP: %v", err)
	}
	f.mustCLI("USA", "reports")
}

// TestE2EDevUnderNohupKeepsRunning: `tearline dev` stops on SIGHUP (its
// terminal closing), but not when it was started with SIGHUP ignored, as
// nohup does: asking for the signal would undo that.
func TestE2EDevUnderNohupKeepsRunning(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("no nohup here")
	}
	bin := binary(t)
	dir := t.TempDir()
	base := freeBasePort(t, 2)
	cmd := exec.Command(nohup, bin, "dev", "--dir", dir, "--parties", "USA,GBR", "--base-port", fmt.Sprint(base))
	cmd.Dir = dir // nohup.out lands here
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	answers := func() bool {
		return exec.Command(bin, "--dev", dir, "--as", "USA", "reports").Run() == nil
	}
	eventually(t, 20*time.Second, "the dev federation to answer", answers)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		t.Fatalf("tearline dev under nohup ended on SIGHUP: %v", err)
	case <-time.After(time.Second):
	}
	if !answers() {
		t.Fatal("tearline dev under nohup stopped answering after SIGHUP")
	}
}
