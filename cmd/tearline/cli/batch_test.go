package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// batchReport is a checked report and its line.
type batchReport struct {
	line int
	req  *clientv1.PublishRequest
}

// readBatch checks a batch held in memory and pairs each report with its
// line.
func readBatch(r io.Reader) ([]batchReport, error) {
	b, err := checkBatch(r, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	out := make([]batchReport, len(b.lines))
	for i := range out {
		out[i] = batchReport{line: b.lines[i], req: b.held[i]}
	}
	return out, nil
}

func TestReadBatch(t *testing.T) {
	in := strings.Join([]string{
		`{"marking": "SECRET//REL TO USA, GBR", "title": "one", "body": "b1", "topics": ["CT"]}`,
		``,
		`   `,
		`{"marking": "SECRET//REL TO USA, GBR", "body": "b4", "portions": [{"marking": "UNCLASSIFIED", "title": "p2", "body": "b2"}], "route": [{"to": "can", "via": "gbr"}]}`,
	}, "\n") // no newline at the end
	rs, err := readBatch(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].line != 1 || rs[1].line != 4 {
		t.Fatalf("parsed %d reports: %+v", len(rs), rs)
	}
	r0, r1 := rs[0].req, rs[1].req
	if p := r0.GetPortions(); len(p) != 1 || p[0].GetBanner() != "SECRET//REL TO USA, GBR" || p[0].GetTitle() != "one" || string(p[0].GetBody()) != "b1" || r0.GetTopics()[0] != "CT" {
		t.Fatalf("line 1: %v", r0)
	}
	if p := r1.GetPortions(); len(p) != 2 || p[1].GetBanner() != "UNCLASSIFIED" || p[1].GetTitle() != "p2" || string(p[1].GetBody()) != "b2" {
		t.Fatalf("line 4 portions: %v", r1)
	}
	if rt := r1.GetRoute(); len(rt) != 1 || rt[0].GetTo() != "CAN" || rt[0].GetVia() != "GBR" {
		t.Fatalf("line 4 route: %v", r1.GetRoute())
	}

	bad := []struct{ line, says string }{
		{`{"marking": "S", "body": "x"} {"marking": "S", "body": "y"}`, "one report per line"},
		{`{"body": "x"}`, `"marking" is required`},
		{`{"marking": "S"}`, `"body" is required`},
		{`{"marking": "S", "body": "x", "portions": [{"marking": "S"}]}`, `portion 2 needs "marking" and "body"`},
		{`{"marking": "S", "body": "x", "route": [{"to": "CAN"}]}`, `"to" and "via"`},
		{`{"marking": "S", "body": 7}`, "not a report object"},
		{`{"marking": "S", "body": "x", "colour": "red"}`, `unknown key "colour"`},
		{`[1, 2]`, "not a report object"},
		{`{"marking": "S", "body": ""}`, `"body" is required`},
		{`{"marking": "S", "body": "x"}]]}`, "more after the report's object"},
		{`{"marking": "S", "body": "x", "Body": "y"}`, `unknown key "Body"`},
		{`{"marking": "S", "body": "x", "body": "y"}`, `key "body" twice`},
		{`{"marking": "S", "body": "x", "portions": [{"marking": "S", "body": "y", "body": "z"}]}`, `key "body" twice in portions`},
		{`{"marking": "S", "body": "x", "route": [{"to": "CAN", "via": "GBR", "by": "x"}]}`, `unknown key "by" in route`},
		{`{"marking": "S", "body": {"text": "x"}}`, "not a report object"},
		{"{\"marking\": \"S\", \"body\": \"\xff\xfe\"}", "not UTF-8"},
		{`[{"marking": "S", "body": "x"}]`, "not a report object"},
		{`{"marking": "S", "the agent in Vienna is codenamed RAVEN"}`, "not a report object"},
		{`{"marking": "S", "body": "x", "the agent in Vienna is codenamed RAVEN": 1}`, "unknown key of 38 characters (not shown)"},
		{`{"marking": "S", "body": "x", "topics": ` + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + `}`, "not a report object"},
	}
	for _, c := range bad {
		_, err := readBatch(strings.NewReader(`{"marking": "S", "body": "ok"}` + "\n" + c.line + "\n"))
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "line 2: ") || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "line 1:") || strings.Contains(err.Error(), "RAVEN") {
			t.Errorf("%.80s: %.300v", c.line, err)
		}
	}

	// Many bad lines: the first ten are named, the rest counted.
	var many []string
	for range 13 {
		many = append(many, `{}`)
	}
	_, err = readBatch(strings.NewReader(strings.Join(many, "\n")))
	if err == nil || !strings.Contains(err.Error(), "13 bad line(s)") || !strings.Contains(err.Error(), "line 10:") || strings.Contains(err.Error(), "line 11:") || !strings.Contains(err.Error(), "and 3 more") {
		t.Errorf("13 bad lines: %v", err)
	}
	// Nothing at all, and a line over the limit.
	if _, err := readBatch(strings.NewReader("\n\n")); err == nil || !strings.Contains(err.Error(), "holds no report") {
		t.Errorf("empty batch: %v", err)
	}
	// A line of exactly maxBatchLine bytes is read; one byte more is a bad
	// line, and the lines after it are still checked.
	head := `{"marking": "S", "body": "`
	exact := head + strings.Repeat("x", maxBatchLine-len(head)-2) + `"}`
	rs, err = readBatch(strings.NewReader(exact + "\n"))
	if err != nil || len(rs) != 1 || len(rs[0].req.GetPortions()[0].GetBody()) != maxBatchLine-len(head)-2 {
		t.Errorf("a line of exactly %d bytes: %v", maxBatchLine, err)
	}
	// A "\r\n" ending does not count toward the limit (a file written on
	// Windows), and a line one byte over is still refused with it.
	rs, err = readBatch(strings.NewReader(`{"marking": "S", "body": "a"}` + "\r\n" + exact + "\r\n"))
	if err != nil || len(rs) != 2 || rs[1].line != 2 || len(rs[1].req.GetPortions()[0].GetBody()) != maxBatchLine-len(head)-2 {
		t.Errorf("a line of exactly %d bytes ending in CRLF: %v", maxBatchLine, err)
	}
	over := head + strings.Repeat("x", maxBatchLine-len(head)-1) + `"}`
	if _, err := readBatch(strings.NewReader(over + "\r\n")); err == nil || !strings.Contains(err.Error(), "line 1: longer than") {
		t.Errorf("a line one byte over the limit, ending in CRLF: %v", err)
	}
	_, err = readBatch(strings.NewReader(`{"marking": "S", "body": "ok"}` + "\n" + over + "\n{}\n" + over))
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), fmt.Sprintf("line 2: longer than %d MiB", maxBatchLine>>20)) ||
		!strings.Contains(err.Error(), "line 3: ") || !strings.Contains(err.Error(), "line 4: longer") || !strings.Contains(err.Error(), "3 bad line(s)") {
		t.Errorf("long lines: %v", err)
	}
}

// checkFile checks the batch in the file name as readBatchFrom does a
// file too large to hold.
func checkFile(t *testing.T, name string) *batch {
	t.Helper()
	defer func(was int64) { batchHoldBytes = was }(batchHoldBytes)
	batchHoldBytes = 0
	g := &globals{}
	b, err := g.readBatchFrom(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	return b
}

// sendAll runs each and returns the titles of what it would send.
func sendAll(b *batch) ([]string, error) {
	var titles []string
	err := b.each(func(i int, req *clientv1.PublishRequest) bool {
		if i != len(titles) {
			panic(fmt.Sprintf("report %d sent as %d", len(titles), i))
		}
		titles = append(titles, req.GetPortions()[0].GetTitle())
		return true
	})
	return titles, err
}

// A regular file is checked without holding its reports, then read again
// as it is sent; it must be exactly what was checked.
func TestBatchFileReadAgain(t *testing.T) {
	line := func(title string) string {
		return fmt.Sprintf(`{"marking": "SECRET//REL TO USA, GBR", "title": %q, "body": "b"}`, title)
	}
	content := line("one") + "\n\n" + line("two") + "\r\n" + line("six") + "\n   \n"
	write := func(t *testing.T) string {
		name := filepath.Join(t.TempDir(), "batch.jsonl")
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}

	t.Run("as checked", func(t *testing.T) {
		b := checkFile(t, write(t))
		if b.held != nil || b.file == nil || !slices.Equal(b.lines, []int{1, 3, 4}) {
			t.Fatalf("held %d reports, file %v, lines %v", len(b.held), b.file != nil, b.lines)
		}
		titles, err := sendAll(b)
		if err != nil || !slices.Equal(titles, []string{"one", "two", "six"}) {
			t.Fatalf("sent %v: %v", titles, err)
		}
		// Sending stops when send says so.
		n := 0
		if err := b.each(func(int, *clientv1.PublishRequest) bool { n++; return n < 2 }); err != nil || n != 2 {
			t.Fatalf("stopped after %d: %v", n, err)
		}
	})
	changed := []struct {
		name, to, says string
		sent           []string
	}{
		{"a line's text", strings.Replace(content, `"two"`, `"TWO"`, 1), "line 3 is not as it was", []string{"one"}},
		{"a report on another line", strings.Replace(content, "\n\n", "\n", 1) + "\n", "line 2 is not as it was", []string{"one"}},
		{"a blank line filled", strings.Replace(content, "   \n", "{}\n\n", 1), "line 5 is not as it was", []string{"one", "two", "six"}},
		{"the last report blanked", strings.Replace(content, line("six"), strings.Repeat(" ", len(line("six"))), 1), "line 4 no longer holds its report", []string{"one", "two"}},
		{"a report blanked", strings.Replace(content, line("two"), strings.Repeat(" ", len(line("two"))), 1), "line 3 no longer holds its report", []string{"one"}},
	}
	for _, c := range changed {
		t.Run(c.name, func(t *testing.T) {
			if len(c.to) != len(content) {
				t.Fatalf("the edit changes the size: %d, not %d", len(c.to), len(content))
			}
			name := write(t)
			b := checkFile(t, name)
			overwrite(t, name, 0, c.to) // the same size: all of it
			titles, err := sendAll(b)
			if !errors.Is(err, errBatchChanged) || !strings.Contains(err.Error(), c.says) || !slices.Equal(titles, c.sent) {
				t.Fatalf("sent %v, then %v; want %v, then %q", titles, err, c.sent, c.says)
			}
		})
	}
	// A file cut while it is sent: what was read is sent, then it stops.
	t.Run("cut while sent", func(t *testing.T) {
		long := func(title string) string { // longer than a read's buffer
			return fmt.Sprintf(`{"marking": "S", "title": %q, "body": %q}`, title, strings.Repeat("x", 10<<10))
		}
		name := filepath.Join(t.TempDir(), "batch.jsonl")
		if err := os.WriteFile(name, []byte(long("a")+"\n"+long("b")+"\n"+long("c")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b := checkFile(t, name)
		var titles []string
		err := b.each(func(i int, req *clientv1.PublishRequest) bool {
			if i == 0 {
				if err := os.Truncate(name, int64(2*(len(long("a"))+1))); err != nil {
					t.Fatal(err)
				}
			}
			titles = append(titles, req.GetPortions()[0].GetTitle())
			return true
		})
		if !errors.Is(err, errBatchChanged) || !strings.Contains(err.Error(), "it ends before line 3") || !slices.Equal(titles, []string{"a", "b"}) {
			t.Fatalf("sent %v, then %v", titles, err)
		}
	})
	// A file whose size or time of change moved is refused before
	// anything is sent.
	t.Run("grown", func(t *testing.T) {
		name := write(t)
		b := checkFile(t, name)
		if err := os.WriteFile(name, []byte(content+line("ten")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		titles, err := sendAll(b)
		if !errors.Is(err, errBatchChanged) || !strings.Contains(err.Error(), "size or time of change") || len(titles) != 0 {
			t.Fatalf("sent %v, then %v", titles, err)
		}
	})
}

// A file whose reports' lines come to batchHoldBytes is held; one byte
// more, and it is read again as it is sent.
func TestBatchFileHeldUpToALimit(t *testing.T) {
	name := filepath.Join(t.TempDir(), "batch.jsonl")
	one, two := `{"marking": "S", "title": "a", "body": "b"}`, `{"marking": "S", "title": "c", "body": "d"}`
	if err := os.WriteFile(name, []byte(one+"\n\n"+two+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer func(was int64) { batchHoldBytes = was }(batchHoldBytes)
	for _, c := range []struct {
		limit int64
		held  bool
	}{{int64(len(one) + len(two)), true}, {int64(len(one) + len(two) - 1), false}, {0, false}} {
		batchHoldBytes = c.limit
		b, err := (&globals{}).readBatchFrom(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if held := b.file == nil && len(b.held) == 2; held != c.held || (!held && b.held != nil) {
			t.Errorf("limit %d: %d held, file open %v; want held %v", c.limit, len(b.held), b.file != nil, c.held)
		}
		titles, err := sendAll(b)
		if err != nil || !slices.Equal(titles, []string{"a", "c"}) {
			t.Errorf("limit %d: sent %v: %v", c.limit, titles, err)
		}
		b.close()
	}
}

// A batch from standard input is held, and each report is dropped once
// sent.
func TestBatchHeld(t *testing.T) {
	g := &globals{stdin: strings.NewReader(`{"marking": "S", "title": "a", "body": "b"}` + "\n" + `{"marking": "S", "title": "c", "body": "d"}`)}
	b, err := g.readBatchFrom(context.Background(), "-")
	if err != nil {
		t.Fatal(err)
	}
	if b.file != nil || len(b.held) != 2 {
		t.Fatalf("file %v, %d held", b.file != nil, len(b.held))
	}
	titles, err := sendAll(b)
	if err != nil || !slices.Equal(titles, []string{"a", "c"}) || b.held[0] != nil || b.held[1] != nil {
		t.Fatalf("sent %v (%v); held after: %v", titles, err, b.held)
	}
}
