package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tearline/tearline/gateway"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// batchLine is one report of a `publish --batch` file: the flags of one
// `publish`, as JSON.
type batchLine struct {
	Marking  string         `json:"marking"`
	Title    string         `json:"title"`
	Body     *string        `json:"body"`
	Topics   []string       `json:"topics"`
	Portions []batchPortion `json:"portions"`
	Route    []batchRoute   `json:"route"`
}

type batchPortion struct {
	Marking string  `json:"marking"`
	Title   string  `json:"title"`
	Body    *string `json:"body"`
}

type batchRoute struct {
	To  string `json:"to"`
	Via string `json:"via"`
}

// batchReport is a parsed line and where it was.
type batchReport struct {
	line int
	req  *clientv1.PublishRequest
}

// maxBatchLine bounds one line of a batch file, as readBody bounds a body.
const maxBatchLine = 64 << 20

// readBatch parses a batch file: one JSON object per line, blank lines
// skipped. Every line is checked before anything is sent; the error names
// each bad line (up to ten).
func readBatch(r io.Reader) ([]batchReport, error) {
	br := bufio.NewReader(r)
	var out []batchReport
	var bad []string
	badLines := 0
	for n := 1; ; n++ {
		raw, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read the batch: line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			req, perr := parseBatchLine(raw)
			if perr != nil {
				badLines++
				if len(bad) < 10 {
					bad = append(bad, fmt.Sprintf("line %d: %v", n, perr))
				}
			} else {
				out = append(out, batchReport{line: n, req: req})
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	switch {
	case badLines > 0:
		more := ""
		if badLines > len(bad) {
			more = fmt.Sprintf("; and %d more", badLines-len(bad))
		}
		return nil, usagef("the batch has %d bad line(s), so nothing was published: %s%s", badLines, strings.Join(bad, "; "), more)
	case len(out) == 0:
		return nil, usagef("the batch holds no report: give one JSON object per line, e.g. {\"marking\": \"SECRET//REL TO USA, GBR\", \"title\": \"T\", \"body\": \"B\"}")
	}
	return out, nil
}

// readLine reads one line without its newline, refusing one longer than
// maxBatchLine.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxBatchLine {
			return nil, fmt.Errorf("longer than %d MiB", maxBatchLine>>20)
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(line, []byte("\n")), err
	}
}

func parseBatchLine(raw []byte) (*clientv1.PublishRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var l batchLine
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("not a report object: %v", err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value: give one report per line")
	}
	if l.Marking == "" {
		return nil, errors.New(`"marking" is required`)
	}
	if l.Body == nil {
		return nil, errors.New(`"body" is required: a report needs content`)
	}
	req := &clientv1.PublishRequest{Topics: l.Topics}
	req.Portions = append(req.Portions, &clientv1.NewPortion{Banner: l.Marking, Title: l.Title, Body: []byte(*l.Body)})
	for i, p := range l.Portions {
		if p.Marking == "" || p.Body == nil {
			return nil, fmt.Errorf(`portion %d needs "marking" and "body"`, i+2)
		}
		req.Portions = append(req.Portions, &clientv1.NewPortion{Banner: p.Marking, Title: p.Title, Body: []byte(*p.Body)})
	}
	for _, r := range l.Route {
		if r.To == "" || r.Via == "" {
			return nil, errors.New(`a route entry needs "to" and "via"`)
		}
		req.Route = append(req.Route, &reportv1.RouteEntry{To: strings.ToUpper(r.To), Via: strings.ToUpper(r.Via)})
	}
	return req, nil
}

// openBatch opens FILE, or standard input for "-".
func (g *globals) openBatch(name string) (io.Reader, func(), error) {
	if name == "-" {
		return g.stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("read the batch: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// publishBatch publishes reports over one PublishStream and prints each
// answer in the batch's order: with --json one object a line ({"line",
// "id", "releases"} or {"line", "error"}), else "LINE ID" on stdout and a
// refusal on stderr. --timeout bounds the wait for each answer, not the
// whole batch. It fails (exit 1) if any report was refused or unanswered.
func (g *globals) publishBatch(ctx context.Context, reports []batchReport) error {
	conn, err := g.dialConn()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st, err := clientv1.NewClientServiceClient(conn).PublishStream(ctx)
	if err != nil {
		return err
	}
	go func() {
		for i, r := range reports {
			if st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: r.req}) != nil {
				return // Recv below has the stream's status
			}
		}
		_ = st.CloseSend()
	}()
	// No answer for --timeout: the node is not answering.
	idle := time.AfterFunc(g.timeout, func() { cancel(errNoAnswer) })
	defer idle.Stop()

	answers := make([]*clientv1.PublishStreamResponse, len(reports))
	seen := make([]bool, len(reports))
	printed, answered := 0, 0
	var refused, lost []string
	show := func(i int) {
		if g.printBatchAnswer(reports[i].line, answers[i]) {
			refused = append(refused, strconv.Itoa(reports[i].line))
		}
		answers[i] = nil
	}
	var streamErr error
	for answered < len(reports) {
		a, err := st.Recv()
		if err != nil {
			if errors.Is(context.Cause(ctx), errNoAnswer) {
				err = fmt.Errorf("the node did not answer for %s (raise --timeout)", g.timeout)
			}
			streamErr = err
			break
		}
		idle.Reset(g.timeout)
		seq := a.GetSeq()
		if seq >= uint64(len(reports)) || seen[seq] {
			streamErr = fmt.Errorf("the node answered seq %d, which was not sent or is answered already", seq)
			break
		}
		answers[seq], seen[seq] = a, true
		answered++
		for ; printed < len(reports) && seen[printed]; printed++ {
			show(printed)
		}
	}
	if streamErr != nil {
		// Print what was answered after a report left unanswered; what is
		// unanswered may or may not have been published.
		for i := printed; i < len(reports); i++ {
			if seen[i] {
				show(i)
			} else {
				lost = append(lost, strconv.Itoa(reports[i].line))
			}
		}
		e := describe(streamErr)
		e.Message = fmt.Sprintf("the batch stopped: %s. %d published, %d refused; no answer for line(s) %s: they may have been published; check with 'tearline reports' before sending them again",
			strings.TrimSuffix(e.Message, "."), answered-len(refused), len(refused), summarizeLines(lost))
		if g.json {
			_ = jsonLine(g.stdout).Encode(map[string]cliError{"error": e})
		} else {
			fmt.Fprintf(g.stderr, "tearline: %s.\n", e.Message)
		}
		return exitError{1}
	}
	if len(refused) > 0 {
		if g.json {
			return exitError{1} // each refusal is on its line
		}
		fmt.Fprintf(g.stderr, "tearline: published %d of %d reports; refused line(s) %s (see each reason above).\n", answered-len(refused), len(reports), summarizeLines(refused))
		return exitError{1}
	}
	if !g.json {
		fmt.Fprintf(g.stderr, "published %d reports\n", answered)
	}
	return nil
}

var errNoAnswer = errors.New("no answer in time")

// printBatchAnswer prints the answer to the report on line; it reports
// whether the report was refused.
func (g *globals) printBatchAnswer(line int, a *clientv1.PublishStreamResponse) bool {
	err := gateway.PublishStreamErr(a)
	if g.json {
		out := map[string]any{"line": line}
		if err != nil {
			out["error"] = describe(err)
		} else {
			out["id"] = a.GetPublished().GetId()
			out["releases"] = releasesJSON(a.GetPublished().GetReleases())
		}
		_ = jsonLine(g.stdout).Encode(out)
		return err != nil
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "line %d: refused: %s\n", line, strings.TrimSuffix(describe(err).Message, "."))
		return true
	}
	fmt.Fprintf(g.stdout, "%d %s\n", line, a.GetPublished().GetId())
	return false
}

// summarizeLines lists line numbers, the first twenty and a count of the rest.
func summarizeLines(ls []string) string {
	if len(ls) <= 20 {
		return strings.Join(ls, ", ")
	}
	return strings.Join(ls[:20], ", ") + fmt.Sprintf(" and %d more", len(ls)-20)
}
