package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// batchAnswer is one line of `publish --batch --json`.
type batchAnswer struct {
	Line  int    `json:"line"`
	ID    string `json:"id"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeBatch writes lines to a file in the test's folder.
func writeBatch(t *testing.T, lines []string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "batch.jsonl")
	if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// USA publishes 300 reports from one batch file over one stream: each line
// is answered in the file's order, the two the node refuses with their
// reasons (exit 1), and GBR receives every other one. A file with a
// malformed line publishes nothing (exit 2), and --batch with a report's
// flags is a usage error.
func TestE2EPublishBatch(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")

	const n = 300
	refused := map[int]string{ // line → what the refusal names
		57:  "XYZ",
		200: "NOFORN",
	}
	var lines []string
	for i := 1; i <= n; i++ {
		marking := "SECRET//REL TO USA, GBR"
		switch refused[i] {
		case "XYZ":
			marking = "SECRET//REL TO USA, XYZ"
		case "NOFORN":
			marking = "SECRET//REL TO USA, GBR//NOFORN"
		}
		b, _ := json.Marshal(map[string]any{"marking": marking, "title": fmt.Sprintf("batch %03d", i), "body": strings.Repeat("x", 2048), "topics": []string{"CT"}})
		lines = append(lines, string(b))
	}
	file := writeBatch(t, lines)
	out, errOut, err := f.cli("USA", "--json", "publish", "--batch", file)
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit %d (%v), want 1 for a batch with refusals; stderr: %s", code, err, errOut)
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	line := 0
	for sc.Scan() {
		line++
		var a batchAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("answer %d: %q: %v", line, sc.Text(), err)
		}
		if a.Line != line {
			t.Fatalf("answer %d is for line %d: not in the file's order", line, a.Line)
		}
		if want, ok := refused[line]; ok {
			if a.Error == nil || a.ID != "" || a.Error.Code != "InvalidArgument" || !strings.Contains(a.Error.Message, want) {
				t.Fatalf("line %d: %s, want a refusal naming %s", line, sc.Text(), want)
			}
			continue
		}
		if a.Error != nil || a.ID == "" {
			t.Fatalf("line %d: %s, want an id", line, sc.Text())
		}
		ids = append(ids, a.ID)
	}
	if line != n || len(ids) != n-len(refused) {
		t.Fatalf("%d answers with %d ids, want %d with %d", line, len(ids), n, n-len(refused))
	}

	// GBR holds every published report (the node publishes a stream's
	// reports side by side, so not necessarily in the file's order).
	var rows []reportRow
	eventually(t, 60*time.Second, "GBR to hold the batch", func() bool {
		rows = f.reports("GBR")
		return len(rows) >= len(ids)
	})
	if len(rows) != len(ids) {
		t.Fatalf("GBR holds %d reports, want %d", len(rows), len(ids))
	}
	held := map[string]bool{}
	for _, r := range rows {
		held[r.ID] = true
	}
	for i, id := range ids {
		if !held[id] {
			t.Fatalf("GBR lacks published report %d (%s)", i, id)
		}
	}

	// Text form: "LINE ID" on stdout, the refusal on stderr.
	file = writeBatch(t, []string{
		`{"marking": "SECRET//REL TO USA, GBR", "title": "text 1", "body": "x"}`,
		``,
		`{"marking": "SECRET//REL TO USA, XYZ", "title": "text 2", "body": "x"}`,
	})
	out, errOut, err = f.cli("USA", "publish", "--batch", file)
	if code := exitCode(err); code != 1 || !strings.HasPrefix(out, "1 ") || strings.Count(out, "\n") != 1 ||
		!strings.Contains(errOut, "line 3: not published") || !strings.Contains(errOut, "XYZ") || !strings.Contains(errOut, "published 1 of 2") {
		t.Fatalf("text form: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// A malformed line: nothing is published.
	before := len(f.reports("USA"))
	file = writeBatch(t, []string{
		`{"marking": "SECRET//REL TO USA, GBR", "title": "never", "body": "x"}`,
		`{"marking": "SECRET//REL TO USA, GBR", "title": "no body"}`,
		`not json`,
		`{"marking": "SECRET//REL TO USA, GBR", "body": "x", "bodi": "typo"}`,
	})
	_, errOut, err = f.cli("USA", "publish", "--batch", file)
	if code := exitCode(err); code != 2 || !strings.Contains(errOut, "nothing was published") ||
		!strings.Contains(errOut, "line 2:") || !strings.Contains(errOut, "line 3:") || !strings.Contains(errOut, `unknown key "bodi"`) || strings.Contains(errOut, "line 1:") {
		t.Fatalf("malformed batch: exit %d, stderr: %s", code, errOut)
	}
	if after := len(f.reports("USA")); after != before {
		t.Fatalf("a malformed batch published %d reports", after-before)
	}
	// --batch takes no report flags.
	if _, errOut, err := f.cli("USA", "publish", "--batch", file, "--marking", "SECRET//REL TO USA"); exitCode(err) != 2 || !strings.Contains(errOut, "--batch takes every report from the file") {
		t.Fatalf("--batch with --marking: %v, %s", err, errOut)
	}
	// A caller the node does not let publish (its subscriber service):
	// the stream is refused, and nothing was published.
	file = writeBatch(t, []string{`{"marking": "SECRET//REL TO USA, GBR", "title": "not an officer", "body": "x"}`})
	_, errOut, err = f.cli("USA", "--profile", filepath.Join(f.dir, "USA", "analyst"), "publish", "--batch", file)
	if exitCode(err) != 1 || !strings.Contains(errOut, "PublishStream") || strings.Contains(errOut, "may have been published") {
		t.Fatalf("a subscriber's batch: exit %d, stderr: %s", exitCode(err), errOut)
	}
	if after := len(f.reports("USA")); after != before {
		t.Fatalf("a subscriber's batch published %d reports", after-before)
	}
}

// A node that goes away mid-batch: the CLI prints every answer it got,
// names the lines left unanswered as perhaps published and those never
// sent, and exits 1.
func TestE2EPublishBatchNodeGone(t *testing.T) {
	t.Parallel()
	const n = 30000
	f, b := batchUnderWay(t, n)
	f.kill("USA")
	err := b.wait(t, 60*time.Second, "of its node being killed")
	out, errOut := b.stdout.String(), b.stderr.String()
	if exitCode(err) != 1 || !strings.Contains(errOut, "the batch stopped") || !strings.Contains(errOut, "may have been published") {
		t.Fatalf("exit %d\nstderr: %s", exitCode(err), errOut)
	}
	printed := strings.Count(out, "\n")
	m := regexp.MustCompile(`; (\d+) published, (\d+) not published, (\d+) unanswered`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("no summary in %q", errOut)
	}
	published, _ := strconv.Atoi(m[1])
	notPublished, _ := strconv.Atoi(m[2])
	unanswered, _ := strconv.Atoi(m[3])
	// The file is sent as it is read again, so the lines not yet sent when
	// the node died are named apart: they were not published.
	notSent := 0
	if ns := regexp.MustCompile(`; (\d+) not sent, so not published`).FindStringSubmatch(errOut); ns != nil {
		notSent, _ = strconv.Atoi(ns[1])
	}
	if published != printed || notPublished != 0 || published+unanswered+notSent != n || printed == 0 || printed == n {
		t.Fatalf("printed %d ids; summary: %d published, %d not, %d unanswered, %d not sent (of %d)", printed, published, notPublished, unanswered, notSent, n)
	}
	t.Logf("%d of %d answered before the node was killed, %d not sent", printed, n, notSent)
}

// A batch file is read again as it is sent, not held in memory: a line
// changed after the check (in place, its size and time of change put
// back, as an edit within one tick of the clock would leave them) is
// found before it is sent. The CLI says which line, publishes nothing
// from there, and exits 1.
func TestE2EPublishBatchFileChanged(t *testing.T) {
	t.Parallel()
	const n = 30000
	_, b := batchUnderWay(t, n)
	// The sender is at most the stream's flow-control windows ahead of
	// the first answer: a few MiB, not the file's last line.
	fh, err := os.OpenFile(b.file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	last := batchLines(n, 1024)[n-1]
	edited := strings.Replace(last, fmt.Sprintf("r%05d", n), fmt.Sprintf("z%05d", n), 1)
	if _, err := fh.WriteAt([]byte(edited), info.Size()-int64(len(last))-1); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if err := os.Chtimes(b.file, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	err = b.wait(t, 2*time.Minute, "of its file changing")
	out, errOut := b.stdout.String(), b.stderr.String()
	want := fmt.Sprintf("the batch file changed after it was checked: line %d is not as it was; %d published, 0 not published, 0 unanswered; 1 not sent, so not published (line(s) %d)", n, n-1, n)
	if exitCode(err) != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d\nstderr: %s\nwant: %s", exitCode(err), errOut, want)
	}
	if printed := strings.Count(out, "\n"); printed != n-1 {
		t.Fatalf("%d ids printed, want %d", printed, n-1)
	}
}

// A node that stops answering (SIGSTOP) mid-batch: --timeout bounds the
// wait for each answer, and the CLI says so.
func TestE2EPublishBatchNodeSilent(t *testing.T) {
	t.Parallel()
	f, b := batchUnderWay(t, 30000, "--timeout", "2s")
	node := f.procs["USA"].Process
	if err := node.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer node.Signal(syscall.SIGCONT)
	err := b.wait(t, 30*time.Second, "of its node stopping to answer, with --timeout 2s")
	if errOut := b.stderr.String(); exitCode(err) != 1 || !strings.Contains(errOut, "did not answer for 2s") || !strings.Contains(errOut, "may have been published") {
		t.Fatalf("exit %d\nstderr: %s", exitCode(err), errOut)
	}
	if err := node.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// The CLI's own slow output is not the node's silence: with stdout not
// read for three times --timeout, the batch still completes.
func TestE2EPublishBatchSlowStdout(t *testing.T) {
	t.Parallel()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	const n = 20000 // ~1 MB of answers: far more than a pipe holds
	file := writeBatch(t, batchLines(n, 1))
	cmd := exec.Command(f.bin, "--dev", f.dir, "--as", "USA", "--timeout", "2s", "publish", "--batch", file)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	out, err := io.ReadAll(stdout)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || strings.Count(string(out), "\n") != n {
		t.Fatalf("exit %v, %d lines of %d\nstderr: %s", err, strings.Count(string(out), "\n"), n, stderr.String())
	}
}

// batchUnderWay starts USA and GBR and a batch of n reports at USA, with
// flags, and waits for its first answer.
func batchUnderWay(t *testing.T, n int, flags ...string) (*federation, *batchRun) {
	t.Helper()
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	b := startBatch(t, f, "USA", n, flags...)
	b.answered(t)
	return f, b
}

// batchLines are n reports for GBR, titled r00001 on, of size bytes each.
func batchLines(n, size int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"marking": "SECRET//REL TO USA, GBR", "title": "r%05d", "body": %q}`, i+1, strings.Repeat("x", size))
	}
	return lines
}

// batchRun is a `publish --batch` of n small reports running as party's
// officer in the background.
type batchRun struct {
	cmd       *exec.Cmd
	file      string          // the batch file
	stdout    strings.Builder // complete once done has answered
	stderr    strings.Builder
	answering chan struct{} // closed at the first answer printed
	done      chan error
}

func startBatch(t *testing.T, f *federation, party string, n int, flags ...string) *batchRun {
	t.Helper()
	file := writeBatch(t, batchLines(n, 1024))
	b := &batchRun{file: file, answering: make(chan struct{}), done: make(chan error, 1)}
	b.cmd = exec.Command(f.bin, append(append([]string{"--dev", f.dir, "--as", party}, flags...), "publish", "--batch", file)...)
	b.cmd.Stderr = &b.stderr
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for first := true; sc.Scan(); first = false {
			b.stdout.WriteString(sc.Text() + "\n")
			if first {
				close(b.answering)
			}
		}
		b.done <- b.cmd.Wait()
	}()
	return b
}

// answered waits for the first answer; it fails the test after a minute.
func (b *batchRun) answered(t *testing.T) {
	t.Helper()
	select {
	case <-b.answering:
	case <-time.After(time.Minute):
		_ = b.cmd.Process.Kill()
		t.Fatalf("no answer printed in a minute; stderr: %s", b.stderr.String())
	}
}

// wait waits up to limit for the CLI to end; it fails the test otherwise.
func (b *batchRun) wait(t *testing.T, limit time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-b.done:
		return err
	case <-time.After(limit):
		_ = b.cmd.Process.Kill()
		t.Fatalf("the CLI did not end within %s %s", limit, what)
		return nil
	}
}
