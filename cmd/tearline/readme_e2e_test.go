package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's walk-through works when typed as written: every shell block
// of its "five-minute walk-through" section runs, in order, against
// `tearline dev` with its defaults (the README names port 7402), and every
// command succeeds except the one the README says is denied.
func TestE2EReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "## A five-minute walk-through")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no walk-through section")
	}
	section := text[start : start+1+end]
	var cmds []string
	for _, block := range strings.Split(section, "```sh\n")[1:] {
		body := block[:strings.Index(block, "```")]
		body = strings.ReplaceAll(body, "\\\n", " ")
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case line == "", strings.HasPrefix(line, "#"),
				strings.HasPrefix(line, "go run ./cmd/tearline dev"), // started below
				strings.HasPrefix(line, "go build -o tearline"),      // the test's binary is used
				strings.HasPrefix(line, "alias tl="):
				continue
			}
			cmds = append(cmds, line)
		}
	}
	if len(cmds) < 20 {
		t.Fatalf("found only %d walk-through commands", len(cmds))
	}

	dir := t.TempDir()
	if err := os.Symlink(binary(t), filepath.Join(dir, "tearline")); err != nil {
		t.Fatal(err)
	}
	dev := exec.Command("./tearline", "dev")
	dev.Dir = dir
	var devOut bytes.Buffer
	dev.Stdout, dev.Stderr = &devOut, &devOut
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dev.Process.Signal(syscall.SIGTERM)
		dev.Wait()
		if t.Failed() {
			t.Logf("tearline dev output:\n%s", devOut.String())
		}
	}()
	eventually(t, 30*time.Second, "tearline dev to answer", func() bool {
		c := exec.Command("./tearline", "--dev", "tearline-dev", "--as", "GBR", "reports")
		c.Dir = dir
		return c.Run() == nil
	})

	var script strings.Builder
	script.WriteString("tl() { ./tearline --dev tearline-dev \"$@\"; }\n")
	for i, c := range cmds {
		fmt.Fprintf(&script, "%s\necho \"RC %d $?\"\nsleep 0.3\n", c, i)
	}
	sh := exec.Command("bash", "-c", script.String())
	sh.Dir = dir
	out, _ := sh.CombinedOutput()
	rcs := map[int]string{}
	for _, line := range strings.Split(string(out), "\n") {
		var i int
		var rc string
		if n, _ := fmt.Sscanf(line, "RC %d %s", &i, &rc); n == 2 {
			rcs[i] = rc
		}
	}
	denied := 0
	for i, c := range cmds {
		rc, ok := rcs[i]
		if !ok {
			t.Fatalf("command %d (%s) did not run; output:\n%s", i, c, out)
		}
		// The README shows one denial: GBR passing the ORCON portion to CAN
		// before USA's consent.
		if rc != "0" {
			if strings.Contains(c, "share $ID --to CAN --portions 1") && denied == 0 {
				denied++
				continue
			}
			t.Fatalf("walk-through command %q exited %s; output:\n%s", c, rc, out)
		}
	}
	if denied != 1 {
		t.Fatalf("the README's denial example was not denied; output:\n%s", out)
	}
}
