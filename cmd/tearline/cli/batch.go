package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/gateway"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// batchLine is one report of a `publish --batch` file: the flags of one
// `publish`, as JSON.
type batchLine struct {
	Marking  string         `json:"marking"`
	Title    string         `json:"title"`
	Body     string         `json:"body"`
	Topics   []string       `json:"topics"`
	Portions []batchPortion `json:"portions"`
	Route    []batchRoute   `json:"route"`
}

type batchPortion struct {
	Marking string `json:"marking"`
	Title   string `json:"title"`
	Body    string `json:"body"`
}

type batchRoute struct {
	To  string `json:"to"`
	Via string `json:"via"`
}

// batchKeys are the keys a line's objects may have, exactly as written
// (encoding/json alone would take "Body" for "body", and the last of two
// "body" keys).
var batchKeys = keySchema{
	"marking": nil, "title": nil, "body": nil, "topics": nil,
	"portions": {"marking": nil, "title": nil, "body": nil},
	"route":    {"to": nil, "via": nil},
}

// keySchema names an object's keys; a key's schema is that of the objects
// in its value (an object, or an array of them), nil for any other value.
type keySchema map[string]keySchema

// shownKey quotes an unknown key for an error, unless it is long enough
// to be content put where a key belongs: that is not echoed.
func shownKey(k string) string {
	if len(k) > 32 {
		return fmt.Sprintf("of %d characters (not shown)", len(k))
	}
	return strconv.Quote(k)
}

// batch is a checked batch: the line of each report and a digest of
// that line's text, and the reports themselves when they are held in
// memory (standard input, a pipe, a small file). A larger file is not
// held: it is read again as it is sent, and each report's line must then
// be exactly as it was checked, so a batch of any size needs memory only
// for its answers.
type batch struct {
	lines []int
	sums  []uint64
	seed  maphash.Seed
	held  []*clientv1.PublishRequest // nil when file is read again
	file  *os.File
	info  os.FileInfo // file's, as it was checked
}

// batchHoldBytes is the size of the reports' lines up to which a batch
// file is held in memory, each line parsed once; a larger file is read
// again as it is sent, which parses each line twice (~40 µs more a 2 KiB
// report here) but bounds the memory: a held report costs about twice its
// line. A variable for tests.
var batchHoldBytes int64 = 16 << 20

// maxBatchLine bounds one line of a batch file, as readBody bounds a body.
const maxBatchLine = 64 << 20

var errLineTooLong = fmt.Errorf("longer than %d MiB", maxBatchLine>>20)

// checkBatch reads a batch: one JSON object per line, blank lines
// skipped. Every line is checked before anything is sent; the error names
// each bad line (up to ten). It keeps the reports while their lines come
// to no more than holdBytes; past that it keeps none.
func checkBatch(r io.Reader, holdBytes int64) (*batch, error) {
	br := bufio.NewReader(r)
	b := &batch{seed: maphash.MakeSeed()}
	var held int64
	var bad []string
	badLines := 0
	for n := 1; ; n++ {
		raw, err := readLine(br)
		eof := errors.Is(err, io.EOF)
		var lineErr error
		switch {
		case errors.Is(err, errLineTooLong):
			lineErr = errLineTooLong
		case err != nil && !eof:
			return nil, fmt.Errorf("read the batch: line %d: %w", n, err)
		case len(bytes.TrimSpace(raw)) > 0:
			req, err := parseBatchLine(raw, false)
			switch {
			case err != nil:
				lineErr = err
			case badLines == 0: // once a line is bad, nothing will be sent
				b.lines = append(b.lines, n)
				b.sums = append(b.sums, maphash.Bytes(b.seed, raw))
				if held += int64(len(raw)); held <= holdBytes {
					b.held = append(b.held, req)
				} else {
					b.held = nil
				}
			}
		}
		if lineErr != nil {
			badLines++
			if len(bad) < 10 {
				bad = append(bad, fmt.Sprintf("line %d: %v", n, lineErr))
			}
		}
		if eof {
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
	case len(b.lines) == 0:
		return nil, usagef("the batch holds no report: give one JSON object per line, e.g. {\"marking\": \"SECRET//REL TO USA, GBR\", \"title\": \"T\", \"body\": \"B\"}")
	}
	return b, nil
}

// errBatchChanged is a batch file that is not, as it is sent, what was
// checked.
var errBatchChanged = errors.New("the batch file changed after it was checked")

// each calls send with each report of the batch, in order, until send
// reports false. A held report is dropped once sent. A file is read again
// from its start: it must be as it was checked, each report's line the
// same text at the same line number, or each stops at the first that is
// not, before sending it (errBatchChanged).
func (b *batch) each(send func(i int, req *clientv1.PublishRequest) bool) error {
	if b.file == nil {
		for i, req := range b.held {
			b.held[i] = nil
			if !send(i, req) {
				return nil
			}
		}
		return nil
	}
	changed := func(what string) error { return fmt.Errorf("%w: %s", errBatchChanged, what) }
	if info, err := b.file.Stat(); err != nil {
		return fmt.Errorf("read the batch again: %w", err)
	} else if info.Size() != b.info.Size() || !info.ModTime().Equal(b.info.ModTime()) {
		return changed("its size or time of change is not the same")
	}
	if _, err := b.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read the batch again: %w", err)
	}
	br := bufio.NewReader(b.file)
	i := 0
	for n := 1; ; n++ {
		raw, err := readLine(br)
		eof := errors.Is(err, io.EOF)
		switch {
		case errors.Is(err, errLineTooLong):
			return changed(fmt.Sprintf("line %d is not as it was", n))
		case err != nil && !eof:
			return fmt.Errorf("read the batch again: line %d: %w", n, err)
		case len(bytes.TrimSpace(raw)) == 0:
			// (Nothing at all after the last line ending is no line.)
			if (!eof || len(raw) > 0) && i < len(b.lines) && b.lines[i] == n {
				return changed(fmt.Sprintf("line %d no longer holds its report", n))
			}
		default:
			if i == len(b.lines) || b.lines[i] != n || maphash.Bytes(b.seed, raw) != b.sums[i] {
				return changed(fmt.Sprintf("line %d is not as it was", n))
			}
			req, err := parseBatchLine(raw, true)
			if err != nil { // the same text parses the same
				return changed(fmt.Sprintf("line %d: %v", n, err))
			}
			if !send(i, req) {
				return nil
			}
			i++
		}
		if eof {
			break
		}
	}
	if i < len(b.lines) {
		return changed(fmt.Sprintf("it ends before line %d", b.lines[i]))
	}
	return nil
}

// close releases the batch's file.
func (b *batch) close() {
	if b.file != nil {
		b.file.Close()
	}
}

// readLine reads one line without its line ending ("\n" or "\r\n"). A
// line longer than maxBatchLine, not counting its ending, is read to its
// end and dropped: errLineTooLong.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		// One byte over the limit is held until the ending is known: it
		// may be the "\r" of a "\r\n".
		if !tooLong {
			if len(line)+len(bytes.TrimSuffix(chunk, []byte("\n"))) > maxBatchLine+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if bytes.HasSuffix(chunk, []byte("\n")) {
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if tooLong || len(line) > maxBatchLine {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: %w", errLineTooLong, io.EOF)
			}
			return nil, errLineTooLong
		}
		return line, err
	}
}

// parseBatchLine checks a batch's line and makes its report. A line
// already checked, the same text, is only decoded.
func parseBatchLine(raw []byte, checked bool) (*clientv1.PublishRequest, error) {
	if !checked && !utf8.Valid(raw) {
		return nil, errors.New("not UTF-8 text: a batch's bodies are text; publish binary content with --body @FILE")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var l batchLine
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("not a report object: %v", err)
	}
	if len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		return nil, errors.New("more after the report's object: give one report per line")
	}
	// Only on valid JSON (whose nesting the decoder bounds): a string
	// where a key belongs is then a key the writer meant as one. The same
	// text checked before passed it.
	if !checked {
		if err := checkKeys(raw, batchKeys); err != nil {
			return nil, err
		}
	}
	if l.Marking == "" {
		return nil, errors.New(`"marking" is required`)
	}
	if l.Body == "" {
		return nil, errors.New(`"body" is required: a report needs content`)
	}
	req := &clientv1.PublishRequest{Topics: l.Topics}
	req.Portions = append(req.Portions, &clientv1.NewPortion{Banner: l.Marking, Title: l.Title, Body: []byte(l.Body)})
	for i, p := range l.Portions {
		if p.Marking == "" || p.Body == "" {
			return nil, fmt.Errorf(`portion %d needs "marking" and "body"`, i+2)
		}
		req.Portions = append(req.Portions, &clientv1.NewPortion{Banner: p.Marking, Title: p.Title, Body: []byte(p.Body)})
	}
	for _, r := range l.Route {
		if r.To == "" || r.Via == "" {
			return nil, errors.New(`a route entry needs "to" and "via"`)
		}
		req.Route = append(req.Route, &reportv1.RouteEntry{To: strings.ToUpper(r.To), Via: strings.ToUpper(r.Via)})
	}
	return req, nil
}

// checkKeys walks the JSON value in raw and refuses an object key that
// its schema does not name exactly, or that comes twice in one object.
// Other mistakes (types, syntax) are left to the decoder.
func checkKeys(raw []byte, schema keySchema) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	errDecoder := errors.New("left to the decoder")
	var walk func(schema keySchema, path string) error
	walk = func(schema keySchema, path string) error {
		tok, err := dec.Token()
		if err != nil {
			return errDecoder // syntax: the decoder names it
		}
		if tok == json.Delim('{') && schema == nil {
			return errDecoder // an object where none belongs: the decoder names it
		}
		switch tok {
		case json.Delim('['):
			for dec.More() {
				if err := walk(schema, path); err != nil {
					return err
				}
			}
			_, _ = dec.Token()
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return errDecoder
				}
				k, _ := kt.(string)
				sub, known := schema[k]
				switch {
				case !known:
					return fmt.Errorf("unknown key %s%s (keys: %s)", shownKey(k), path, strings.Join(slices.Sorted(maps.Keys(schema)), ", "))
				case seen[k]:
					return fmt.Errorf("key %q twice%s", k, path)
				}
				seen[k] = true
				inner := path
				if sub != nil {
					inner = " in " + k
				}
				if err := walk(sub, inner); err != nil {
					return err
				}
			}
			_, _ = dec.Token()
		}
		return nil
	}
	if err := walk(schema, ""); err != nil && err != errDecoder {
		return err
	}
	return nil
}

// readBatchFrom checks the batch FILE (or standard input for "-").
// Standard input, a pipe or a file of up to batchHoldBytes is held in
// memory; a larger regular file stays open, to be read again as it is
// sent (close the batch). An interrupt stops a read of standard input
// that waits for more.
func (g *globals) readBatchFrom(ctx context.Context, name string) (*batch, error) {
	var r io.Reader = g.stdin
	var f *os.File
	var info os.FileInfo
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, fmt.Errorf("read the batch: %w", err)
		}
		if info, err = f.Stat(); err != nil {
			f.Close()
			return nil, fmt.Errorf("read the batch: %w", err)
		}
		r = f
	}
	holdBytes := batchHoldBytes
	if f == nil || !info.Mode().IsRegular() {
		holdBytes = math.MaxInt64
	}
	type result struct {
		b   *batch
		err error
	}
	read := make(chan result, 1)
	go func() {
		b, err := checkBatch(r, holdBytes)
		read <- result{b, err}
	}()
	select {
	case res := <-read:
		if res.err != nil || len(res.b.held) == len(res.b.lines) {
			if f != nil {
				f.Close()
			}
			return res.b, res.err
		}
		res.b.file, res.b.info = f, info
		return res.b, nil
	case <-ctx.Done():
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("reading the batch: %w; nothing was published", context.Cause(ctx))
	}
}

// publishBatch publishes reports over one PublishStream on conn and
// prints each answer in the batch's order: with --json one object a line
// ({"line", "id", "releases"} or {"line", "error"}), else "LINE ID" on
// stdout and why a report was not published on stderr. --timeout bounds
// each wait for the node (opening the stream, then each answer), not the
// whole batch. It fails (exit 1) if any report was not published, or not
// answered, or if a file read again is not as it was checked.
func (g *globals) publishBatch(ctx context.Context, conn grpc.ClientConnInterface, bt *batch) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The node must answer within --timeout whenever the CLI waits for it;
	// the time the CLI itself takes (printing to a slow stdout) does not
	// count.
	idle := time.AfterFunc(g.timeout, func() { cancel(errNoAnswer) })
	defer idle.Stop()
	st, err := clientv1.NewClientServiceClient(conn).PublishStream(ctx)
	if err != nil {
		if errors.Is(context.Cause(ctx), errNoAnswer) {
			e := g.noAnswer()
			e.Message += "; nothing was published"
			printError(g, e)
			return exitError{1}
		}
		return err
	}
	idle.Stop()
	total := len(bt.lines)
	sending := make(chan struct{})
	var sent int      // reports sent, once sending is closed
	var sendErr error // why the batch's reports stopped before the last
	go func() {
		defer close(sending)
		streamOK := true
		sendErr = bt.each(func(i int, req *clientv1.PublishRequest) bool {
			if st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: req}) != nil {
				streamOK = false // Recv below has the stream's status
				return false
			}
			sent = i + 1
			return true
		})
		if streamOK {
			// After a stop the node still answers what it was sent.
			_ = st.CloseSend()
		}
	}()
	recv := func() (*clientv1.PublishStreamResponse, error) {
		idle.Reset(g.timeout)
		a, err := st.Recv()
		idle.Stop()
		if err != nil && errors.Is(context.Cause(ctx), errNoAnswer) {
			err = errNoAnswer
		}
		return a, err
	}

	b := &batchAnswers{g: g, lines: bt.lines, answers: make([]*clientv1.PublishStreamResponse, total), seen: make([]bool, total)}
	var streamErr error
	for b.answered < total {
		a, err := recv()
		if err == nil {
			err = b.take(a)
		}
		if err != nil {
			streamErr = err
			break
		}
	}
	if streamErr != nil {
		cancel(streamErr) // a Send that waits returns
		<-sending
		why := streamErr
		if sendErr != nil {
			why = sendErr
			if !errors.Is(streamErr, io.EOF) { // what left the sent unanswered
				e := describe(streamErr)
				if errors.Is(streamErr, errNoAnswer) {
					e = g.noAnswer()
				}
				why = fmt.Errorf("%w; then %s", sendErr, strings.TrimSuffix(e.Message, "."))
			}
		}
		return b.stopped(why, sent)
	}
	// Every report is answered: let the stream end as it should, within
	// --timeout (a node that stops reading could hold Send).
	idle.Reset(g.timeout)
	sendDone := false
	select {
	case <-sending:
		sendDone = true
	case <-ctx.Done():
	}
	_, _ = recv() // io.EOF; any other end changes nothing answered
	if sendDone && sendErr != nil {
		// Every report checked was sent and answered; the file then
		// had more.
		return b.stopped(sendErr, sent)
	}
	if len(b.failed) > 0 {
		if !g.json { // in JSON each is on its line
			fmt.Fprintf(g.stderr, "tearline: published %d of %d reports; not published: line(s) %s (see each reason above).\n", b.answered-len(b.failed), total, summarizeLines(b.failed))
		}
		return exitError{1}
	}
	if !g.json {
		fmt.Fprintf(g.stderr, "published %d reports\n", b.answered)
	}
	return nil
}

// batchAnswers are a batch's answers as they come, printed in the batch's
// order: answers[i] waits until every report before i is printed.
type batchAnswers struct {
	g        *globals
	lines    []int // the batch's line of each report
	answers  []*clientv1.PublishStreamResponse
	seen     []bool
	printed  int      // reports[:printed] are printed
	answered int      // how many are seen
	failed   []string // the lines not published
}

// take records an answer and prints what it completes.
func (b *batchAnswers) take(a *clientv1.PublishStreamResponse) error {
	seq := a.GetSeq()
	if seq >= uint64(len(b.lines)) || b.seen[seq] {
		return fmt.Errorf("the node answered seq %d, which was not sent or is answered already", seq)
	}
	b.answers[seq], b.seen[seq] = a, true
	b.answered++
	for ; b.printed < len(b.lines) && b.seen[b.printed]; b.printed++ {
		b.show(b.printed)
	}
	return nil
}

func (b *batchAnswers) show(i int) {
	if b.g.printBatchAnswer(b.lines[i], b.answers[i]) {
		b.failed = append(b.failed, strconv.Itoa(b.lines[i]))
	}
	b.answers[i] = nil
}

// stopped reports a batch that ended before every report was answered
// (why: the stream's error, or what stopped the sending). It prints the
// answers that came after one left unanswered, names the lines sent and
// left unanswered (perhaps published) and those never sent (not
// published); sent is how many reports were sent. If the node refused the
// stream itself (nothing answered, and a status that the node gives before
// it reads a report) nothing was published, and the status is the error.
func (b *batchAnswers) stopped(why error, sent int) error {
	g := b.g
	if b.answered == 0 {
		switch status.Code(why) {
		case codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
			return why
		}
	}
	unanswered, notSent := []int{}, []int{} // [] in JSON, not null
	var unansweredLines, notSentLines []string
	for i := b.printed; i < len(b.lines); i++ {
		switch {
		case b.seen[i]:
			b.show(i)
		case i < sent:
			unanswered = append(unanswered, b.lines[i])
			unansweredLines = append(unansweredLines, strconv.Itoa(b.lines[i]))
		default:
			notSent = append(notSent, b.lines[i])
			notSentLines = append(notSentLines, strconv.Itoa(b.lines[i]))
		}
	}
	e := describe(why)
	switch {
	case errors.Is(why, errNoAnswer):
		e = g.noAnswer()
	case errors.Is(why, errBatchChanged):
		e.Code, e.Reason = codes.FailedPrecondition.String(), "batch-changed"
	}
	published := b.answered - len(b.failed)
	msg := fmt.Sprintf("the batch stopped: %s; %d published, %d not published, %d unanswered", strings.TrimSuffix(e.Message, "."), published, len(b.failed), len(unanswered))
	if len(unanswered) > 0 {
		msg += fmt.Sprintf(" (line(s) %s): those may have been published; look for them with 'tearline reports' before sending them again", summarizeLines(unansweredLines))
	}
	if len(notSent) > 0 {
		msg += fmt.Sprintf("; %d not sent, so not published (line(s) %s)", len(notSent), summarizeLines(notSentLines))
	}
	e.Message = msg
	if g.json {
		_ = jsonLine(g.stdout).Encode(map[string]any{"error": e, "published": published, "not_published": len(b.failed), "unanswered": unanswered, "not_sent": notSent})
	} else {
		textf(g.stderr, "tearline: %s.\n", e.Message)
	}
	return exitError{1}
}

var errNoAnswer = errors.New("no answer in time")

// noAnswer is the error of a node silent for --timeout.
func (g *globals) noAnswer() cliError {
	return cliError{Code: codes.DeadlineExceeded.String(), Reason: "deadline-exceeded", Message: fmt.Sprintf("the node did not answer for %s (raise --timeout)", g.timeout)}
}

// printBatchAnswer prints the answer to the report on line; it reports
// whether the report was not published.
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
		textf(g.stderr, "line %d: not published: %s\n", line, strings.TrimSuffix(describe(err).Message, "."))
		return true
	}
	textf(g.stdout, "%d %s\n", line, a.GetPublished().GetId())
	return false
}

// summarizeLines lists line numbers, the first twenty and a count of the rest.
func summarizeLines(ls []string) string {
	if len(ls) <= 20 {
		return strings.Join(ls, ", ")
	}
	return strings.Join(ls[:20], ", ") + fmt.Sprintf(" and %d more", len(ls)-20)
}
