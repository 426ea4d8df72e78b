package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tearline/tearline/internal/safetext"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// readBody reads TEXT, @FILE or @- (standard input).
func (g *globals) readBody(v string) ([]byte, error) {
	if !strings.HasPrefix(v, "@") {
		return []byte(v), nil
	}
	name := v[1:]
	if name == "-" {
		return io.ReadAll(io.LimitReader(g.stdin, 64<<20))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

func newPublishCmd(g *globals) *cobra.Command {
	var (
		banner, title, body string
		topics, extra       []string
		to, via             []string
		batch               string
	)
	c := &cobra.Command{
		Use:   "publish --marking BANNER --body TEXT|@FILE [--title TEXT] [--topic T]... [--portion 'BANNER=@FILE']... | --batch FILE|-",
		Short: "Publish a report originated by your party",
		Long: `Publish a report originated by your party. The first portion is --body
(text, or @FILE, or @- for standard input) with --title, marked --marking in
banner form, e.g. 'SECRET//REL TO USA, GBR//ORCON', 'UNCLASSIFIED//REL TO USA, GBR, CAN',
'CONFIDENTIAL//NOFORN'. ORCON is set only when written. --portion 'BANNER=@FILE'
(or 'BANNER=TEXT') adds a portion; repeat it for more. --topic sets the
need-to-know topics of every portion.

The node signs the report and sends each partner only the portions it may
have. It prints the report id (with --json: {"id": "..."}), and on stderr
what each partner was sent, or that it is held (a suspended partner).

--to X --via H names H as relay to X in the signed route: H may then forward
to X, without asking for consent, each portion whose REL TO names both H and
X (and that is not NOFORN); a route no portion can take is refused. H tells
the originator that it relayed, so 'audit who-saw' lists X (via H).

--batch FILE (or - for standard input) publishes many reports over one
stream, far faster than one call each. The file holds one report a line,
as JSON with the flags above:
  {"marking": "SECRET//REL TO USA, GBR", "title": "T", "body": "B", "topics": ["CT"],
   "portions": [{"marking": "CONFIDENTIAL//REL TO USA, GBR", "body": "B2"}],
   "route": [{"to": "CAN", "via": "GBR"}]}
Only "marking" and "body" are required. Every line's form is checked first
(UTF-8, one JSON object with known fields, a marking and a body for each
portion, "to" and "via" for each route entry); if one is malformed nothing
is published. The node then checks each report as it publishes it (its
markings under the node's scheme, the release rules), exactly as a single
publish: one it refuses is not published, and the others still are.
Standard input, and a FILE whose reports come to at most 16 MiB, are held in
memory; a larger FILE is read again as it is sent, so a batch of any size
needs little memory, and a line that is no longer as it was checked stops
the batch there (exit 1). Each report is
answered on its own: stdout gets "LINE ID" for each published (with --json
one object a line: {"line", "id", "releases"} or {"line", "error"}), in the
file's order, and stderr the reason for each not published. The exit
status is 1 if any was not published. Bodies are UTF-8 text; publish binary
content with --body @FILE. The node publishes a batch's reports side by
side, so partners may receive them in another order than the file's.
--timeout bounds the wait for each answer, not the whole batch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("batch") {
				if batch == "" {
					return usagef("--batch needs FILE, or - for standard input")
				}
				if banner != "" || body != "" || title != "" || len(topics) > 0 || len(extra) > 0 || len(to) > 0 || len(via) > 0 {
					return usagef("--batch takes every report from the file: give no --marking, --body, --title, --topic, --portion, --to or --via with it")
				}
				conn, err := g.dialConn() // a missing profile is told before the file is read
				if err != nil {
					return err
				}
				defer conn.Close()
				b, err := g.readBatchFrom(cmd.Context(), batch)
				if err != nil {
					return err
				}
				defer b.close()
				return g.publishBatch(cmd.Context(), conn, b)
			}
			if banner == "" {
				return usagef("--marking BANNER is required")
			}
			if body == "" {
				return usagef("--body TEXT|@FILE is required: a report needs content")
			}
			if len(to) != len(via) {
				return usagef("give --to and --via in pairs")
			}
			b, err := g.readBody(body)
			if err != nil {
				return err
			}
			req := &clientv1.PublishRequest{Topics: topics}
			req.Portions = append(req.Portions, &clientv1.NewPortion{Banner: banner, Title: title, Body: b})
			for _, p := range extra {
				i := strings.Index(p, "=")
				if i <= 0 {
					return usagef("--portion %q: want 'BANNER=@FILE' or 'BANNER=TEXT'", p)
				}
				pb, err := g.readBody(p[i+1:])
				if err != nil {
					return err
				}
				req.Portions = append(req.Portions, &clientv1.NewPortion{Banner: p[:i], Body: pb})
			}
			for i := range to {
				req.Route = append(req.Route, &reportv1.RouteEntry{To: strings.ToUpper(to[i]), Via: strings.ToUpper(via[i])})
			}
			var resp *clientv1.PublishResponse
			err = g.call(cmd.Context(), func(ctx context.Context, c clientv1.ClientServiceClient) error {
				var err error
				resp, err = c.Publish(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"id": resp.GetId(), "releases": releasesJSON(resp.GetReleases())})
			}
			textf(g.stdout, "%s\n", resp.GetId())
			for _, r := range resp.GetReleases() {
				if h := r.GetHeld(); h != "" {
					textf(g.stderr, "%s: held, not sent: %s (%s)\n", r.GetParty(), h, summarizeAs(r.GetDecisions(), "allowed"))
					continue
				}
				textf(g.stderr, "%s: %s\n", r.GetParty(), summarize(r.GetDecisions()))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&banner, "marking", "", "banner of the first portion, e.g. 'SECRET//REL TO USA, GBR//ORCON'")
	f.StringVar(&title, "title", "", "title of the report (part of the first portion)")
	f.StringVar(&body, "body", "", "content of the first portion: TEXT, @FILE or @-")
	f.StringArrayVar(&topics, "topic", nil, "need-to-know topic (repeatable)")
	f.StringArrayVar(&extra, "portion", nil, "another portion, 'BANNER=@FILE' or 'BANNER=TEXT' (repeatable)")
	f.StringArrayVar(&to, "to", nil, "with --via: destination of a relay route (repeatable)")
	f.StringArrayVar(&via, "via", nil, "with --to: the partner that relays (repeatable)")
	f.StringVar(&batch, "batch", "", "publish every report of FILE (one JSON object a line; - for standard input) over one stream")
	return c
}

func summarize(ds []*reportv1.Decision) string { return summarizeAs(ds, "sent") }

// summarizeAs sums decisions up, saying verb of the allowed portions.
func summarizeAs(ds []*reportv1.Decision, verb string) string {
	var sent, held []string
	for _, d := range ds {
		if d.GetAllowed() {
			sent = append(sent, fmt.Sprintf("%d (%s)", d.GetIndex(), d.GetRule()))
		} else {
			held = append(held, fmt.Sprintf("%d (%s)", d.GetIndex(), d.GetRule()))
		}
	}
	s := verb + " nothing"
	if len(sent) > 0 {
		s = verb + " portion " + strings.Join(sent, ", ")
	}
	if len(held) > 0 {
		s += "; withheld portion " + strings.Join(held, ", ")
	}
	return s
}

type decisionJSON struct {
	Index     uint32 `json:"index"`
	Allowed   bool   `json:"allowed"`
	Rule      string `json:"rule"`
	Banner    string `json:"banner,omitempty"`
	Party     string `json:"party,omitempty"`
	Message   string `json:"message,omitempty"`
	Next      string `json:"next,omitempty"`
	Authority string `json:"authority,omitempty"`
}

func decisionsJSON(ds []*reportv1.Decision) []decisionJSON {
	out := make([]decisionJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, decisionJSON{d.GetIndex(), d.GetAllowed(), d.GetRule(), d.GetBanner(), d.GetParty(), d.GetMessage(), d.GetNext(), d.GetAuthority()})
	}
	return out
}

func releasesJSON(rs []*clientv1.Release) []map[string]any {
	out := []map[string]any{}
	for _, r := range rs {
		m := map[string]any{"party": r.GetParty(), "decisions": decisionsJSON(r.GetDecisions())}
		if h := r.GetHeld(); h != "" {
			m["held"] = h
		}
		out = append(out, m)
	}
	return out
}

func newReportsCmd(g *globals) *cobra.Command {
	var limit uint32
	c := &cobra.Command{
		Use:   "reports",
		Short: "List the reports this node holds, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := ask(cmd.Context(), g, func(ctx context.Context, c clientv1.ClientServiceClient) (*clientv1.ListReportsResponse, error) {
				return c.ListReports(ctx, &clientv1.ListReportsRequest{Limit: limit})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, r := range resp.GetReports() {
					out = append(out, map[string]any{
						"id": r.GetId(), "originator": r.GetOriginator(), "banner": r.GetBanner(), "title": r.GetTitle(),
						"created": r.GetCreated().AsTime().Format(time.RFC3339Nano), "received_from": r.GetReceivedFrom(),
						"portions_held": r.GetPortionsHeld(), "portions_total": r.GetPortionsTotal(),
						"withdrawn": r.GetWithdrawn(),
					})
				}
				return g.printJSON(out)
			}
			printReports(g.stdout, resp.GetReports())
			return nil
		},
	}
	c.Flags().Uint32Var(&limit, "limit", 100, "at most this many (up to 1000)")
	return c
}

// printReports lists reports one a line, titles included (see textf).
func printReports(w io.Writer, rs []*clientv1.ReportSummary) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no reports held")
	}
	for _, r := range rs {
		from := "published here"
		if r.GetReceivedFrom() != "" {
			from = "from " + r.GetReceivedFrom()
		}
		title := r.GetTitle()
		if r.GetWithdrawn() {
			title = "WITHDRAWN by its originator"
		}
		textf(w, "%s  %-4s %-13s %d/%d portions  %-15s %s\n", r.GetId(), r.GetOriginator(), r.GetBanner(), r.GetPortionsHeld(), r.GetPortionsTotal(), from, title)
	}
}

func bodyJSON(p *clientv1.PortionView, m map[string]any) {
	if p.GetWithheld() {
		return
	}
	if strings.HasPrefix(p.GetContentType(), "text/") && utf8.Valid(p.GetBody()) {
		m["body"] = string(p.GetBody())
	} else {
		m["body_base64"] = base64.StdEncoding.EncodeToString(p.GetBody())
	}
}

func basisString(pr *reportv1.PortionRelease) string {
	b := strings.TrimPrefix(strings.ToLower(pr.GetBasis().String()), "basis_")
	b = strings.ReplaceAll(b, "_", "-")
	if pr.GetAuthorityId() != "" {
		b += ":" + pr.GetAuthorityId()
	}
	return b
}

func reportJSON(v *clientv1.ReportView) map[string]any {
	portions := []map[string]any{}
	for _, p := range v.GetPortions() {
		m := map[string]any{
			"index": p.GetIndex(), "banner": p.GetBanner(), "withheld": p.GetWithheld(), "verified": p.GetVerified(),
			"digest": fmt.Sprintf("%x", p.GetDigest()),
		}
		if !p.GetWithheld() {
			m["topics"] = p.GetTopics()
			m["title"] = p.GetTitle()
			m["content_type"] = p.GetContentType()
		}
		bodyJSON(p, m)
		portions = append(portions, m)
	}
	hops := []map[string]any{}
	for _, h := range v.GetHops() {
		ps := []map[string]any{}
		for _, pr := range h.GetPortions() {
			ps = append(ps, map[string]any{"index": pr.GetIndex(), "basis": basisString(pr)})
		}
		hops = append(hops, map[string]any{"from": h.GetFrom(), "to": h.GetTo(), "sent": h.GetSent().AsTime().Format(time.RFC3339Nano), "signer": h.GetSigner(), "portions": ps})
	}
	route := []map[string]string{}
	for _, r := range v.GetRoute() {
		route = append(route, map[string]string{"via": r.GetVia(), "to": r.GetTo()})
	}
	var withdrawal any
	if wd := v.GetWithdrawal(); wd != nil {
		withdrawal = map[string]any{"id": wd.GetId(), "action": wd.GetAction(), "reason": wd.GetReason(), "applied": wd.GetApplied().AsTime().Format(time.RFC3339Nano)}
	}
	return map[string]any{
		"withdrawn": withdrawal,
		"id":        v.GetId(), "originator": v.GetOriginator(), "created": v.GetCreated().AsTime().Format(time.RFC3339Nano),
		"topics": v.GetTopics(), "route": route, "signature_verified": v.GetSignatureVerified(), "signer": v.GetSigner(),
		"portions": portions, "hops": hops,
	}
}

func printReport(w io.Writer, v *clientv1.ReportView) {
	sig := "signature VERIFIED"
	if !v.GetSignatureVerified() {
		sig = "signature NOT VERIFIED"
	}
	textf(w, "report %s from %s, created %s; %s (%s)\n", v.GetId(), v.GetOriginator(), v.GetCreated().AsTime().Format(time.RFC3339), sig, v.GetSigner())
	if wd := v.GetWithdrawal(); wd != nil {
		textf(w, "WITHDRAWN by %s (%s): %s; content %s\n", v.GetOriginator(), wd.GetAction(), wd.GetReason(), map[string]string{"purge": "purged", "quarantine": "quarantined"}[wd.GetAction()])
	}
	if len(v.GetTopics()) > 0 {
		textf(w, "topics: %s\n", strings.Join(v.GetTopics(), ", "))
	}
	for _, p := range v.GetPortions() {
		if p.GetWithheld() && v.GetWithdrawal() != nil {
			textf(w, "\n(%d) WITHDRAWN by the originator; digest %x\n", p.GetIndex(), p.GetDigest())
			continue
		}
		if p.GetWithheld() {
			textf(w, "\n(%d) WITHHELD: not releasable to this party; digest %x\n", p.GetIndex(), p.GetDigest())
			continue
		}
		ok := "digest verified"
		if !p.GetVerified() {
			ok = "DIGEST MISMATCH"
		}
		textf(w, "\n(%d) %s  [%s]\n", p.GetIndex(), p.GetBanner(), ok)
		if p.GetTitle() != "" {
			textf(w, "    %s\n", p.GetTitle())
		}
		if strings.HasPrefix(p.GetContentType(), "text/") && utf8.Valid(p.GetBody()) {
			for _, line := range strings.Split(strings.TrimRight(string(p.GetBody()), "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", bodyLine(line))
			}
		} else {
			textf(w, "    (%s, %d bytes)\n", p.GetContentType(), len(p.GetBody()))
		}
	}
	for _, h := range v.GetHops() {
		var bs []string
		for _, pr := range h.GetPortions() {
			bs = append(bs, fmt.Sprintf("%d:%s", pr.GetIndex(), basisString(pr)))
		}
		textf(w, "\nhop %s -> %s at %s, portions %s\n", h.GetFrom(), h.GetTo(), h.GetSent().AsTime().Format(time.RFC3339), strings.Join(bs, " "))
	}
}

func newShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a held report: the portions you may see, withheld ones as digests, signatures re-verified",
		Long: `Show report ID as this node holds it, its signatures verified again: the
header (originator, created, topics, route), each portion you may see with
its marking, content and whether its digest verified, each one you may not
see (or this node does not hold) as its digest only, every hop by which it
came with its basis (origin, rel-to, relay, consent:ID, crisis:ID), and its
withdrawal if its originator withdrew it. An officer sees every portion the node holds; a
subscriber service sees what its clearance and need-to-know allow.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := ask(cmd.Context(), g, func(ctx context.Context, c clientv1.ClientServiceClient) (*clientv1.GetReportResponse, error) {
				return c.GetReport(ctx, &clientv1.GetReportRequest{Id: args[0]})
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(reportJSON(resp.GetReport()))
			}
			printReport(g.stdout, resp.GetReport())
			return nil
		},
	}
}

// step is one line of a report's timeline.
type step struct {
	Time      string         `json:"time"`
	What      string         `json:"what"`
	Party     string         `json:"party,omitempty"`
	Subject   string         `json:"subject,omitempty"`
	Signer    string         `json:"signer,omitempty"`
	Verified  *bool          `json:"signature_verified,omitempty"`
	Portions  []uint32       `json:"portions,omitempty"`
	Basis     []portionBasis `json:"basis,omitempty"`
	Denied    []portionBasis `json:"denied,omitempty"`
	Detail    string         `json:"detail,omitempty"`
	Event     uint64         `json:"event,omitempty"`
	sortTime  time.Time
	sortOrder int
}

// portionBasis is a portion and the basis it went on (or the rule that
// withheld it).
type portionBasis struct {
	Index uint32 `json:"index"`
	Basis string `json:"basis,omitempty"`
	Rule  string `json:"rule,omitempty"`
}

// timeline tells a report's story in time order: its origin and signature,
// every hop with its basis and signer, and every local event (receipts,
// releases and denials with their bases and rules, deliveries, consents,
// withdrawal).
func timeline(v *clientv1.ReportView, evs []*clientv1.ProvenanceEvent) []step {
	var out []step
	ok := v.GetSignatureVerified()
	out = append(out, step{Time: ts(v.GetCreated()), What: "originated", Party: v.GetOriginator(), Signer: v.GetSigner(), Verified: &ok,
		Detail: fmt.Sprintf("signed header of %d portions", len(v.GetPortions())), sortTime: v.GetCreated().AsTime()})
	for _, h := range v.GetHops() {
		st := step{Time: ts(h.GetSent()), What: "hop", Party: h.GetFrom() + " -> " + h.GetTo(), Signer: h.GetSigner(), sortTime: h.GetSent().AsTime(), sortOrder: 1}
		for _, pr := range h.GetPortions() {
			st.Basis = append(st.Basis, portionBasis{Index: pr.GetIndex(), Basis: basisString(pr)})
		}
		out = append(out, st)
	}
	for _, e := range evs {
		st := step{Time: ts(e.GetTime()), What: e.GetKind(), Party: e.GetParty(), Subject: e.GetSubject(), Portions: e.GetPortions(),
			Detail: e.GetDetail(), Event: e.GetSeq(), sortTime: e.GetTime().AsTime(), sortOrder: 2}
		for _, d := range e.GetDecisions() {
			if d.GetIndex() == 0 {
				// A decision about the whole envelope (a receipt).
				st.Detail = strings.TrimPrefix(st.Detail+"; "+d.GetRule()+": "+d.GetMessage(), "; ")
				continue
			}
			if d.GetAllowed() {
				b := d.GetRule()
				if d.GetAuthority() != "" {
					b += ":" + d.GetAuthority()
				}
				st.Basis = append(st.Basis, portionBasis{Index: d.GetIndex(), Basis: b})
			} else {
				st.Denied = append(st.Denied, portionBasis{Index: d.GetIndex(), Rule: d.GetRule()})
			}
		}
		out = append(out, st)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].sortTime.Equal(out[j].sortTime) {
			return out[i].sortTime.Before(out[j].sortTime)
		}
		return out[i].sortOrder < out[j].sortOrder
	})
	return out
}

func (s step) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-20s", s.Time, s.What)
	if s.Party != "" {
		b.WriteString(" " + s.Party)
	}
	if s.Subject != "" {
		b.WriteString(" " + s.Subject)
	}
	var parts []string
	for _, x := range s.Basis {
		parts = append(parts, fmt.Sprintf("portion %d on %s", x.Index, x.Basis))
	}
	for _, x := range s.Denied {
		parts = append(parts, fmt.Sprintf("portion %d denied (%s)", x.Index, x.Rule))
	}
	if len(s.Portions) > 0 && len(parts) == 0 {
		var ps []string
		for _, p := range s.Portions {
			ps = append(ps, strconv.Itoa(int(p)))
		}
		parts = append(parts, "portions "+strings.Join(ps, ", "))
	}
	if len(parts) > 0 {
		b.WriteString(": " + strings.Join(parts, "; "))
	}
	if s.Signer != "" {
		verified := ""
		if s.Verified != nil && !*s.Verified {
			verified = ", NOT VERIFIED"
		}
		fmt.Fprintf(&b, " (signed by %s%s)", s.Signer, verified)
	}
	if s.Detail != "" && s.What != "originated" {
		b.WriteString(" -- " + s.Detail)
	}
	// One line, whatever the node's event details hold (see textf).
	return safetext.Escape(b.String())
}

func newProvenanceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "provenance ID",
		Short: "Tell a report's whole story as a timeline: origin, signature, hops, releases, denials, deliveries, consents, withdrawal",
		Long: `Tell a held report's whole story as a timeline, oldest first: the originator
and its signature (re-verified now), each hop with the basis of every portion
and the node that signed it, and every event this node recorded: receipts,
each release and denial (with the basis or the rule of each portion), each
delivery to a subscriber (with the portions delivered), consent requests and
decisions, acknowledgements, and the withdrawal.

With --json: the report (as 'show --json', without content), its events, and
"timeline": the same steps as objects with time, what, party, subject,
signer, portions, basis and denied.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := ask(cmd.Context(), g, func(ctx context.Context, c clientv1.ClientServiceClient) (*clientv1.GetProvenanceResponse, error) {
				return c.GetProvenance(ctx, &clientv1.GetProvenanceRequest{Id: args[0]})
			})
			if err != nil {
				return err
			}
			steps := timeline(resp.GetReport(), resp.GetEvents())
			if g.json {
				evs := []map[string]any{}
				for _, e := range resp.GetEvents() {
					evs = append(evs, map[string]any{
						"seq": e.GetSeq(), "time": e.GetTime().AsTime().Format(time.RFC3339Nano), "kind": e.GetKind(),
						"party": e.GetParty(), "subject": e.GetSubject(), "detail": e.GetDetail(), "decisions": decisionsJSON(e.GetDecisions()),
						"portions": e.GetPortions(),
					})
				}
				out := reportJSON(resp.GetReport())
				for _, p := range out["portions"].([]map[string]any) {
					delete(p, "body")
					delete(p, "body_base64")
				}
				out["events"] = evs
				out["timeline"] = steps
				return g.printJSON(out)
			}
			v := resp.GetReport()
			textf(g.stdout, "report %s, originated by %s at %s, signed by %s (verified: %v)\n", v.GetId(), v.GetOriginator(), v.GetCreated().AsTime().Format(time.RFC3339), v.GetSigner(), v.GetSignatureVerified())
			if wd := v.GetWithdrawal(); wd != nil {
				textf(g.stdout, "WITHDRAWN (%s): %s\n", wd.GetAction(), wd.GetReason())
			}
			for _, st := range steps {
				fmt.Fprintln(g.stdout, "  "+st.text())
			}
			return nil
		},
	}
}

func newShareCmd(g *globals) *cobra.Command {
	var to string
	var portions []string
	c := &cobra.Command{
		Use:   "share ID --to PARTY [--portions 1,2]",
		Short: "Forward a held report to a partner, with the portions the rules allow",
		Long: `Forward a held report to a partner. Each portion is decided by the release
rules (the originator's markings, the agreement with the partner, and the
third-party rule); only the allowed ones are sent. If nothing may be sent, the
command fails and says why and what would allow it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usagef("--to PARTY is required")
			}
			req := &clientv1.ShareRequest{Id: args[0], To: strings.ToUpper(to)}
			for _, p := range portions {
				for _, s := range strings.Split(p, ",") {
					n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
					if err != nil || n == 0 {
						return usagef("--portions %q: want portion numbers like 1,2", p)
					}
					req.Portions = append(req.Portions, uint32(n))
				}
			}
			resp, err := ask(cmd.Context(), g, func(ctx context.Context, c clientv1.ClientServiceClient) (*clientv1.ShareResponse, error) {
				return c.Share(ctx, req)
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"id": req.GetId(), "to": req.GetTo(), "decisions": decisionsJSON(resp.GetDecisions())})
			}
			textf(g.stdout, "shared %s with %s: %s\n", req.GetId(), req.GetTo(), summarize(resp.GetDecisions()))
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "partner party code")
	c.Flags().StringArrayVar(&portions, "portions", nil, "only these portion numbers, e.g. 1,2")
	return c
}

func newSubscribeCmd(g *globals) *cobra.Command {
	var (
		after  uint64
		resume bool
		topics []string
		count  int
	)
	c := &cobra.Command{
		Use:   "subscribe",
		Short: "Stream the reports this node holds, with only the portions you may see",
		Long: `Stream the reports this node holds, from a cursor on, and keep streaming as
new ones arrive. A subscriber service sees only the portions its clearance and
need-to-know allow; an officer sees all that the node holds. Each report comes
with its cursor: --after CURSOR resumes after it, --resume resumes from the
cursor the node saved for you. With --json, one JSON object per line.

--count N asks the node for N reports and stops after them; a later --resume
continues with the next. The node saves each report's cursor as it sends
it, so a subscription stopped without --count (interrupted) may have been
sent reports it never printed, and --resume starts after those: to continue
after the last report printed, pass its cursor with --after. A consumer that
must lose nothing across crashes keeps the cursor of each report it has
processed and restarts with --after it. The node keeps one saved cursor per
subscriber identity, moved by each of its streams (whatever their --topic or
--after): give each independent consumer its own identity. A cursor past the
end of the node's feed is refused (OutOfRange), saying where the feed ends.

The --timeout flag does not apply here. If the node, or the network to it,
goes silent without closing the connection, the stream ends (exit 1,
Unavailable) within about 30 s; a supervisor may then run it again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 0 || count > math.MaxUint32 {
				return usagef("--count must be a number of reports from 0 (no limit) to %d, not %d", uint32(math.MaxUint32), count)
			}
			if resume && cmd.Flags().Changed("after") {
				return usagef("--after and --resume both say where to start: give one")
			}
			cl, closeFn, err := g.dial()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			// The node sends no more than --count: it saves each report's
			// cursor as it sends it, so a report sent beyond what is read
			// here would be skipped by a later --resume.
			stream, err := cl.Subscribe(ctx, &clientv1.SubscribeRequest{After: after, ResumeSaved: resume, Topics: topics, Limit: uint32(count)})
			if err != nil {
				return err
			}
			for n := 0; count == 0 || n < count; n++ {
				msg, err := stream.Recv()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if g.json {
					m := reportJSON(msg.GetReport())
					m["cursor"] = msg.GetCursor()
					enc := jsonLine(g.stdout)
					if err := enc.Encode(m); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(g.stdout, "--- cursor %d\n", msg.GetCursor())
				printReport(g.stdout, msg.GetReport())
			}
			return nil
		},
	}
	c.Flags().Uint64Var(&after, "after", 0, "resume after this cursor")
	c.Flags().BoolVar(&resume, "resume", false, "resume from the cursor the node saved for you")
	c.Flags().StringArrayVar(&topics, "topic", nil, "only reports with this topic (repeatable)")
	c.Flags().IntVar(&count, "count", 0, "stop after this many reports (0: run until interrupted)")
	return c
}
