package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/internal/freeport"
	"github.com/tearline/tearline/internal/syncbuf"
)

// TestDevFolderInUse: `tearline dev` (and --init-only) on a folder that a
// running `tearline dev` holds exits 1 with one sentence saying so and what
// to do, or, with --json, the error as every verb prints it.
func TestDevFolderInUse(t *testing.T) {
	dir := t.TempDir()
	first, err := freeport.Range(2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- gateway.RunDev(ctx, gateway.DevOptions{Dir: dir, Parties: []string{"USA", "GBR"}, BasePort: first}, slog.New(slog.DiscardHandler), out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunDev: %v", err)
		}
	}()
	for start := time.Now(); !strings.Contains(out.String(), "Press Ctrl-C"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the dev federation did not start:\n%s", out.String())
		}
	}
	second, err := freeport.Range(2)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"dev", "--dir", dir, "--parties", "USA,GBR", "--base-port", fmt.Sprint(second)}
	msg := fmt.Sprintf("%s is in use by another `tearline dev` (pid %d): stop it first, or pass --dir with another folder", dir, os.Getpid())
	for _, extra := range [][]string{nil, {"--init-only"}} {
		code, stdout, stderr := run(t, append(args, extra...)...)
		if code != 1 || stdout != "" || stderr != "tearline: "+msg+".\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", extra, code, stdout, stderr, "tearline: "+msg+".")
		}
		code, stdout, stderr = run(t, append(append([]string{"--json"}, args...), extra...)...)
		var got map[string]cliError
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("--json %v: stdout %q: %v", extra, stdout, err)
		}
		want := cliError{Code: "FailedPrecondition", Reason: "dev-dir-in-use", Message: msg}
		if code != 1 || stderr != "" || got["error"] != want {
			t.Errorf("--json %v: exit %d, stderr %q, error %+v; want exit 1 and %+v", extra, code, stderr, got["error"], want)
		}
	}
}
