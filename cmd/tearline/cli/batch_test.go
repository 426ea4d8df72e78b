package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

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
