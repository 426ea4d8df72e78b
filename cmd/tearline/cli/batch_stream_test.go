package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// streamNode is a stand-in for a node's PublishStream, to end a batch's
// stream in ways a real node does rarely, at a chosen report. It answers
// each report with its title as the id. The CLI's handling of a real node
// is in cmd/tearline's end-to-end tests; this one needs no TLS.
type streamNode struct {
	clientv1.UnimplementedClientServiceServer
	// fail, if set, is the error the stream ends with on receiving seq.
	fail func(seq uint64) error
	// wrongSeq answers the first report with a seq never sent, then
	// reads nothing more.
	wrongSeq bool
	// failAtEnd, if set, is the error the stream ends with once the
	// client has sent all it will, nothing answered.
	failAtEnd error
}

func (n *streamNode) PublishStream(st grpc.BidiStreamingServer[clientv1.PublishStreamRequest, clientv1.PublishStreamResponse]) error {
	if n.failAtEnd != nil {
		for {
			if _, err := st.Recv(); err != nil {
				return n.failAtEnd
			}
		}
	}
	for {
		req, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n.fail != nil {
			if err := n.fail(req.GetSeq()); err != nil {
				return err
			}
		}
		if n.wrongSeq {
			_ = st.Send(&clientv1.PublishStreamResponse{Seq: 999})
			<-st.Context().Done()
			return nil
		}
		id := req.GetReport().GetPortions()[0].GetTitle()
		if err := st.Send(&clientv1.PublishStreamResponse{Seq: req.GetSeq(), Result: &clientv1.PublishStreamResponse_Published{Published: &clientv1.PublishResponse{Id: id}}}); err != nil {
			return err
		}
	}
}

// serveStreamNode serves n on loopback and returns a connection to it.
func serveStreamNode(t *testing.T, n *streamNode) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	clientv1.RegisterClientServiceServer(srv, n)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// reportLines are n reports titled r1 on, each with a body of size bytes.
func reportLines(n, size int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"marking": "S", "title": "r%d", "body": %q}`, i+1, strings.Repeat("x", size))
	}
	return lines
}

// writeLines writes a batch file of lines and returns its name.
func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "batch.jsonl")
	if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// overwrite writes text at off in the file and puts back its time of
// change: a size and time the same, as an edit within one tick of the
// file system's clock leaves them.
func overwrite(t *testing.T, name string, off int, text string) {
	t.Helper()
	info, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(text), int64(off)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(name, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// publishFile publishes the checked batch b to conn as the CLI does, and
// returns what it printed. It fails the test if publishing has not ended
// after 30 s.
func publishFile(t *testing.T, conn *grpc.ClientConn, b *batch, asJSON bool) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	g := &globals{timeout: 10 * time.Second, json: asJSON, stdout: &out, stderr: &errOut}
	done := make(chan error, 1)
	go func() { done <- g.publishBatch(context.Background(), conn, b) }()
	select {
	case err := <-done:
		return out.String(), errOut.String(), err
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("publishing has not ended in 30 s:\n%s", buf[:runtime.Stack(buf, true)])
		return "", "", nil
	}
}

// A line changed after the check stops the batch before it is sent; the
// node answers what it was sent, and the summary names the lines not sent.
func TestPublishBatchStopsAtAChangedLine(t *testing.T) {
	lines := reportLines(8, 10)
	offset := func(line int) int { // of line's title
		off := 0
		for _, l := range lines[:line-1] {
			off += len(l) + 1
		}
		return off + strings.Index(lines[line-1], `"r`) + 1
	}
	for _, asJSON := range []bool{false, true} {
		name := writeLines(t, lines)
		b := checkFile(t, name)
		overwrite(t, name, offset(6), "z")
		out, errOut, err := publishFile(t, serveStreamNode(t, &streamNode{}), b, asJSON)
		if err != (exitError{1}) {
			t.Fatalf("json %v: %v, want exit 1; stderr: %s", asJSON, err, errOut)
		}
		if !asJSON {
			want := "tearline: the batch stopped: the batch file changed after it was checked: line 6 is not as it was; 5 published, 0 not published, 0 unanswered; 3 not sent, so not published (line(s) 6, 7, 8).\n"
			if out != "1 r1\n2 r2\n3 r3\n4 r4\n5 r5\n" || errOut != want {
				t.Fatalf("stdout %q\nstderr %q\nwant   %q", out, errOut, want)
			}
			continue
		}
		outLines := strings.Split(strings.TrimSpace(out), "\n")
		if len(outLines) != 6 {
			t.Fatalf("%d lines of JSON: %s", len(outLines), out)
		}
		var sum struct {
			Error        cliError        `json:"error"`
			Published    int             `json:"published"`
			NotPublished int             `json:"not_published"`
			Unanswered   json.RawMessage `json:"unanswered"`
			NotSent      []int           `json:"not_sent"`
		}
		if err := json.Unmarshal([]byte(outLines[5]), &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Error.Code != "FailedPrecondition" || sum.Error.Reason != "batch-changed" || sum.Published != 5 || sum.NotPublished != 0 ||
			string(sum.Unanswered) != "[]" || !slices.Equal(sum.NotSent, []int{6, 7, 8}) {
			t.Fatalf("summary %s", outLines[5])
		}
	}
}

// A file changed midway, and then a node that fails: the summary says
// both, for the first is why lines were not sent and the second why the
// lines sent are unanswered.
func TestPublishBatchChangedThenNodeFails(t *testing.T) {
	lines := reportLines(8, 10)
	name := writeLines(t, lines)
	b := checkFile(t, name)
	overwrite(t, name, len(strings.Join(lines[:5], "\n"))+1, " ")
	node := &streamNode{failAtEnd: status.Error(codes.Unavailable, "going away")}
	out, errOut, err := publishFile(t, serveStreamNode(t, node), b, false)
	want := "tearline: the batch stopped: the batch file changed after it was checked: line 6 is not as it was; then the node is unreachable: going away; 0 published, 0 not published, 5 unanswered (line(s) 1, 2, 3, 4, 5): those may have been published; look for them with 'tearline reports' before sending them again; 3 not sent, so not published (line(s) 6, 7, 8).\n"
	if err != (exitError{1}) || out != "" || errOut != want {
		t.Fatalf("%v\nstdout %q\nstderr %q\nwant   %q", err, out, errOut, want)
	}
}

// A report added after the last one checked is not sent: every report
// checked is published, and the batch still fails, naming the line.
func TestPublishBatchAReportAdded(t *testing.T) {
	lines := append(reportLines(3, 10), "  ")
	name := writeLines(t, lines)
	b := checkFile(t, name)
	overwrite(t, name, len(strings.Join(lines[:3], "\n"))+1, "{}")
	out, errOut, err := publishFile(t, serveStreamNode(t, &streamNode{}), b, false)
	want := "tearline: the batch stopped: the batch file changed after it was checked: line 4 is not as it was; 3 published, 0 not published, 0 unanswered.\n"
	if err != (exitError{1}) || out != "1 r1\n2 r2\n3 r3\n" || errOut != want {
		t.Fatalf("%v\nstdout %q\nstderr %q\nwant   %q", err, out, errOut, want)
	}
}

// A node that fails mid-batch: the report it was reading is unanswered
// (it may have been published), and the lines the CLI never sent are
// named apart. Each line is larger than the stream's first flow-control
// window, so some are still unsent when the node fails.
func TestPublishBatchNodeFailsMidway(t *testing.T) {
	name := writeLines(t, reportLines(8, 200<<10))
	node := &streamNode{fail: func(seq uint64) error {
		if seq == 2 {
			return status.Error(codes.Unavailable, "going away")
		}
		return nil
	}}
	out, errOut, err := publishFile(t, serveStreamNode(t, node), checkFile(t, name), false)
	if err != (exitError{1}) || out != "1 r1\n2 r2\n" || !strings.Contains(errOut, "going away; 2 published, 0 not published, ") {
		t.Fatalf("%v\nstdout %q\nstderr %q", err, out, errOut)
	}
	m := regexp.MustCompile(`(\d+) unanswered \(line\(s\) 3[,)]`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("line 3, which the node received, is not named unanswered: %s", errOut)
	}
	unanswered, _ := strconv.Atoi(m[1])
	notSent := 0
	if ns := regexp.MustCompile(`; (\d+) not sent, so not published`).FindStringSubmatch(errOut); ns != nil {
		notSent, _ = strconv.Atoi(ns[1])
	}
	if unanswered+notSent != 6 {
		t.Fatalf("%d unanswered and %d not sent, want 6 in all: %s", unanswered, notSent, errOut)
	}
}

// A node that answers a report never sent while the CLI waits to send
// more: the CLI ends, naming the wrong answer, instead of waiting for room
// on a stream nobody reads.
func TestPublishBatchWrongAnswerWhileSending(t *testing.T) {
	name := writeLines(t, reportLines(40, 200<<10))
	out, errOut, err := publishFile(t, serveStreamNode(t, &streamNode{wrongSeq: true}), checkFile(t, name), false)
	if err != (exitError{1}) || out != "" || !strings.Contains(errOut, "the node answered seq 999, which was not sent") {
		t.Fatalf("%v\nstdout %q\nstderr %q", err, out, errOut)
	}
}

// A batch from a named pipe is held, whatever its size: a pipe cannot be
// read again.
func TestBatchFromAPipeIsHeld(t *testing.T) {
	name := filepath.Join(t.TempDir(), "batch.pipe")
	if err := syscall.Mkfifo(name, 0o600); err != nil {
		t.Skipf("no named pipe here: %v", err)
	}
	defer func(was int64) { batchHoldBytes = was }(batchHoldBytes)
	batchHoldBytes = 0
	go func() {
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			return // the test fails below: nothing to read
		}
		defer f.Close()
		f.WriteString(strings.Join(reportLines(2, 10), "\n"))
	}()
	b, err := (&globals{}).readBatchFrom(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if b.file != nil || len(b.held) != 2 {
		t.Fatalf("file open %v, %d held", b.file != nil, len(b.held))
	}
}
