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
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/audit"
	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
)

// exitError ends the command with a code after its output was printed (a
// verification that found a bad entry).
type exitError struct{ code int }

func (e exitError) Error() string { return "exit " + strconv.Itoa(e.code) }

func newAuditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Verify, export and query the node's hash-chained audit log",
		Long: `Every decision (allow and deny, with its rule), receipt, delivery to a
subscriber, share, consent request and decision, suspension, withdrawal,
certificate event and administrative action is an entry of the node's audit
log. Each entry carries the SHA-256 of the one before; the node signs a
checkpoint of the head at intervals, on shutdown and at each export, and
sends it to its partners, who keep it as evidence.`,
	}
	c.AddCommand(newAuditVerifyCmd(g), newAuditExportCmd(g), newWhoSawCmd(g), newAuditSummaryCmd(g))
	return c
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var file, caFile, against string
	c := &cobra.Command{
		Use:   "verify [--file FILE --ca CA_BUNDLE | --against PARTY]",
		Short: "Check the audit log's chain and signed checkpoints, naming the first bad entry",
		Long: `Check the audit log and name the first bad entry.

With no flag, the node checks its own log: every entry's hash and sequence
number, the chain from each entry to the next, and every signed checkpoint.
A failure raises a security event.

With --file FILE --ca CA_BUNDLE, check an export ('tearline audit export')
offline, with no node: only the exporting party's CA bundle is needed. Any
edit of the file (a changed field, a removed or reordered entry, a removed
checkpoint) fails. So does a file cut at either end, even with its header
edited to match: the export ends with a statement the node signed of the
export itself (its party, time, since, first and last entry and the hash of
the last), and the file must start and end where that says. A file with no
signed end fails ("it may have been cut"), and so does an export written
before exports were signed (format tearline-audit-export/v1): its entries
and checkpoints are checked, but a cut cannot be ruled out; export again.

With --against PARTY, ask PARTY's node for its entry hashes at every
checkpoint PARTY signed and sent here, and compare: a log PARTY rewrote
after sending a checkpoint no longer matches, even if PARTY's own 'audit
verify' passes. A mismatch raises a security event naming PARTY.

With --json: {"ok": bool, "entries": N, "first_bad": SEQ or null, "reason": "..."}
(and, for --against, the checkpoints compared). The exit code is 1 when the
check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case file != "" || caFile != "":
				if file == "" || caFile == "" {
					return usagef("--file and --ca go together: the export and the exporting party's CA bundle")
				}
				if against != "" {
					return usagef("--against checks a partner's live node; it does not go with --file")
				}
				return verifyFile(g, file, caFile)
			case against != "":
				return verifyAgainst(cmd.Context(), g, strings.ToUpper(against))
			}
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.VerifyAuditResponse, error) {
				return c.VerifyAudit(ctx, &adminv1.VerifyAuditRequest{})
			})
			if err != nil {
				return err
			}
			var firstBad *uint64
			if resp.FirstBad != nil {
				firstBad = resp.FirstBad
			}
			return g.verdict(resp.GetOk(), resp.GetEntries(), firstBad, resp.GetReason(), resp.GetCheckpoints(), resp.GetCheckpointSeq(), nil)
		},
	}
	c.Flags().StringVar(&file, "file", "", "an export file to check offline")
	c.Flags().StringVar(&caFile, "ca", "", "with --file: the exporting party's CA bundle (PEM)")
	c.Flags().StringVar(&against, "against", "", "a partner whose log to compare with the checkpoints it sent here")
	return c
}

// verdict prints the outcome of a verification and fails the command when
// it is not ok.
func (g *globals) verdict(ok bool, entries uint64, firstBad *uint64, reason string, checkpoints, cpSeq uint64, extra map[string]any) error {
	if g.json {
		out := map[string]any{"ok": ok, "entries": entries, "first_bad": firstBad, "reason": reason, "checkpoints": checkpoints, "checkpoint_seq": cpSeq}
		for k, v := range extra {
			out[k] = v
		}
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else if ok {
		fmt.Fprintf(g.stdout, "audit log OK: %s, %s verified (latest at entry %d)\n", plural(entries, "entry", "entries"), plural(checkpoints, "checkpoint", "checkpoints"), cpSeq)
	} else {
		textf(g.stdout, "audit log FAILED at entry %d: %s\n", *firstBad, reason)
	}
	if !ok {
		return exitError{1}
	}
	return nil
}

func verifyFile(g *globals, file, caFile string) error {
	bundle, err := pki.ReadCertificatesFile(caFile)
	if err != nil {
		return fmt.Errorf("read the CA bundle %s: %w", caFile, err)
	}
	if len(bundle) == 0 {
		return fmt.Errorf("%s holds no certificate", caFile)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	var h audit.Header
	first, _, _ := bytes.Cut(data, []byte("\n"))
	if json.Unmarshal(first, &h) != nil || (h.Format != audit.ExportFormat && h.Format != audit.ExportFormatV1) {
		return fmt.Errorf("%s is not a Tearline audit export (its first line is not a %s header)", file, audit.ExportFormat)
	}
	trust := pki.NewTrust()
	trust.Set(h.Party, bundle)
	res, _, err := audit.VerifyExport(bytes.NewReader(data), trust)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var firstBad *uint64
	if !res.OK {
		firstBad = &res.FirstBad
	}
	extra := map[string]any{"party": h.Party, "first_seq": h.FirstSeq, "last_seq": h.LastSeq, "signed_end": res.End != nil}
	if err := g.verdict(res.OK, res.Entries, firstBad, res.Reason, uint64(res.Checkpoints), res.CheckpointSeq, extra); err != nil {
		return err
	}
	if x := res.End; x != nil && !g.json {
		span := fmt.Sprintf("entries %d..%d", x.GetFirstSeq(), x.GetLastSeq())
		if x.GetFirstSeq() > x.GetLastSeq() {
			span = "no entry"
		}
		if x.GetSince() != nil {
			span += " (since " + ts(x.GetSince()) + ")"
		}
		textf(g.stdout, "signed export of %s's log at %s: %s\n", x.GetParty(), ts(x.GetExported()), span)
	}
	return nil
}

func verifyAgainst(ctx context.Context, g *globals, party string) error {
	var resp *adminv1.VerifyPartnerAuditResponse
	err := g.callAdmin(ctx, func(ctx context.Context, c adminv1.AdminServiceClient) error {
		var err error
		resp, err = c.VerifyPartnerAudit(ctx, &adminv1.VerifyPartnerAuditRequest{Party: party})
		return err
	})
	if err != nil {
		return err
	}
	if g.json {
		out := map[string]any{"ok": resp.GetOk(), "party": party, "entries": resp.GetPartnerEntries(), "first_bad": resp.FirstBad,
			"mismatch_checkpoint": resp.MismatchCheckpoint, "last_good": resp.GetLastGood(), "checkpoints": resp.GetCheckpoints(), "reason": resp.GetReason()}
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else if resp.GetOk() {
		msg := fmt.Sprintf("%s's audit log matches the %d checkpoints it signed and sent here (%d entries now)", party, resp.GetCheckpoints(), resp.GetPartnerEntries())
		if resp.GetReason() != "" {
			msg = resp.GetReason()
		}
		textf(g.stdout, "%s\n", msg)
	} else {
		textf(g.stdout, "%s's audit log FAILED from entry %d: %s\n", party, resp.GetFirstBad(), resp.GetReason())
	}
	if !resp.GetOk() {
		return exitError{1}
	}
	return nil
}

// parseSince reads a point in time: RFC 3339, a date (2006-01-02), or a
// duration before now (24h, 30d).
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := parsePeriod(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--since %q: want a time (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration before now (24h, 30d)", s)
}

// parsePeriod reads a duration, with d for days: 30d, 12h, 90m.
func parsePeriod(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("bad period %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad period %q", s)
	}
	return d, nil
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var since string
	c := &cobra.Command{
		Use:   "export [--since TIME] > FILE",
		Short: "Write the audit log as JSON lines, with signed checkpoints, for offline verification",
		Long: `Write the audit log to standard output as JSON lines: a header, then each
entry from --since on (a time, a date, or a duration before now such as 24h
or 30d; default: all) with its canonical bytes and a readable rendering of
them, the signed checkpoints among them, a checkpoint the node signs now of
the last entry, and last the export's signed end: a statement the node signs
of this export (its party, the time, --since, the first and last entry and
the hash of the last), so that a file cut at either end no longer verifies.
The export itself is recorded in the log first.

Check the file anywhere, with no node and only the party's CA bundle:
  tearline audit verify --file FILE --ca CA_BUNDLE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &adminv1.ExportAuditRequest{}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				req.Since = timestamppb.New(t)
			}
			conn, err := g.dialConn()
			if err != nil {
				return err
			}
			defer conn.Close()
			stream, err := adminv1.NewAdminServiceClient(conn).ExportAudit(cmd.Context(), req)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(g.stdout)
			defer w.Flush()
			out := audit.NewExportWriter(w)
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					// Without the node's signed end (a node older than
					// this CLI), the file written does not verify.
					if err := out.Close(); err != nil {
						return fmt.Errorf("the node sent no signed export end: the file will not verify: %w", err)
					}
					return nil
				}
				if err != nil {
					return err
				}
				switch it := msg.GetItem().(type) {
				case *adminv1.ExportAuditResponse_Header:
					h := it.Header
					err = out.Header(audit.Header{Type: "header", Format: audit.ExportFormat, Party: h.GetParty(), Node: h.GetNode(), Exported: ts(h.GetExported()),
						Since: ts(h.GetSince()), FirstSeq: h.GetFirstSeq(), LastSeq: h.GetLastSeq()})
				case *adminv1.ExportAuditResponse_Entry:
					err = out.Entry(it.Entry.GetCanonical())
				case *adminv1.ExportAuditResponse_Checkpoint:
					err = out.Signed(it.Checkpoint)
				default:
					continue
				}
				if err != nil {
					return fmt.Errorf("the node sent an item that does not render: %w", err)
				}
			}
		},
	}
	c.Flags().StringVar(&since, "since", "", "entries from this time on: RFC 3339, a date, or a duration before now (24h, 30d)")
	return c
}

func newWhoSawCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "who-saw ID",
		Short: "List every subscriber and partner that received each portion of a report, and when",
		Long: `List, per portion of a report, every subscriber it was delivered to and every
partner whose node acknowledged an envelope carrying it (with the basis of
the release), and when. At the originator, parties that a holder released it
to under the originator's consent, crisis declaration or signed route (a
relay) are listed too, with the holder as "via". A withdrawal delivered to a subscriber carries no
content and is not listed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.WhoSawResponse, error) {
				return c.WhoSaw(ctx, &adminv1.WhoSawRequest{Id: args[0]})
			})
			if err != nil {
				return err
			}
			if g.json {
				portions := []map[string]any{}
				for _, p := range resp.GetPortions() {
					rs := []map[string]any{}
					for _, r := range p.GetRecipients() {
						m := map[string]any{"kind": r.GetKind(), "name": r.GetName(), "time": ts(r.GetTime())}
						if r.GetKind() == "partner" {
							m["basis"], m["acknowledged"], m["via"] = r.GetBasis(), nilIfEmpty(ts(r.GetAcknowledged())), nilIfEmpty(r.GetVia())
						}
						rs = append(rs, m)
					}
					portions = append(portions, map[string]any{"index": p.GetIndex(), "recipients": rs})
				}
				return g.printJSON(map[string]any{"id": resp.GetId(), "portions": portions})
			}
			fmt.Fprintf(g.stdout, "report %s\n", resp.GetId())
			for _, p := range resp.GetPortions() {
				fmt.Fprintf(g.stdout, "portion %d:\n", p.GetIndex())
				if len(p.GetRecipients()) == 0 {
					fmt.Fprintln(g.stdout, "  nobody")
				}
				for _, r := range p.GetRecipients() {
					switch {
					case r.GetKind() == "subscriber":
						textf(g.stdout, "  %s  subscriber %s\n", ts(r.GetTime()), r.GetName())
					case r.GetVia() != "":
						textf(g.stdout, "  %s  partner %s, via %s on %s\n", ts(r.GetTime()), r.GetName(), r.GetVia(), r.GetBasis())
					default:
						textf(g.stdout, "  %s  partner %s on %s (acknowledged %s)\n", ts(r.GetTime()), r.GetName(), r.GetBasis(), ts(r.GetAcknowledged()))
					}
				}
			}
			return nil
		},
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func newAuditSummaryCmd(g *globals) *cobra.Command {
	var period string
	c := &cobra.Command{
		Use:   "summary [--period 30d]",
		Short: "Per partner: reports released and denied (by rule), received, consents, withdrawals; counts only",
		Long: `Count, per partner over the period before now (--period, e.g. 30d, 12h), the
reports released to it and denied (by rule), the reports received from it
and rejected, the consent requests exchanged with it and those granted, and
the withdrawals sent to it and received from it. It shows no content and no
ids: the high-level summary a government could publish about its sharing.

"released" counts decisions that sent the partner at least one portion and
"denied" those that sent it nothing. "denials by rule" counts, for each rule,
the decisions in which it withheld a portion, whether or not others were
sent, and a report once per rule: so a report sent in part counts as
released and under the rule that withheld the rest, and one denied by two
rules counts once in "denied" and under each rule.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := parsePeriod(period)
			if err != nil {
				return usagef("--period %q: want a duration such as 30d, 12h or 90m", period)
			}
			var resp *adminv1.AuditSummaryResponse
			err = g.callAdmin(cmd.Context(), func(ctx context.Context, c adminv1.AdminServiceClient) error {
				var err error
				resp, err = c.AuditSummary(ctx, &adminv1.AuditSummaryRequest{Period: durationpb.New(d)})
				return err
			})
			if err != nil {
				return err
			}
			if g.json {
				partners := []map[string]any{}
				for _, p := range resp.GetPartners() {
					rules := p.GetDenialsByRule()
					if rules == nil {
						rules = map[string]uint64{}
					}
					partners = append(partners, map[string]any{
						"party": p.GetParty(), "reports_released": p.GetReportsReleased(), "reports_denied": p.GetReportsDenied(),
						"denials_by_rule": rules, "reports_received": p.GetReportsReceived(), "reports_rejected": p.GetReportsRejected(),
						"consents_asked": p.GetConsentsAsked(), "consents_granted": p.GetConsentsGranted(),
						"withdrawals_sent": p.GetWithdrawalsSent(), "withdrawals_received": p.GetWithdrawalsReceived(),
					})
				}
				return g.printJSON(map[string]any{"party": resp.GetParty(), "period": period, "from": ts(resp.GetFrom()), "to": ts(resp.GetTo()), "partners": partners})
			}
			fmt.Fprintf(g.stdout, "%s's sharing from %s to %s\n", resp.GetParty(), resp.GetFrom().AsTime().Format(time.RFC3339), resp.GetTo().AsTime().Format(time.RFC3339))
			fmt.Fprintf(g.stdout, "%-6s %9s %7s %9s %9s %7s %8s %9s %9s  %s\n", "party", "released", "denied", "received", "rejected", "asked", "granted", "wd-sent", "wd-recv", "denials by rule")
			for _, p := range resp.GetPartners() {
				var rules []string
				for r, n := range p.GetDenialsByRule() {
					rules = append(rules, fmt.Sprintf("%s %d", r, n))
				}
				sort.Strings(rules)
				textf(g.stdout, "%-6s %9d %7d %9d %9d %7d %8d %9d %9d  %s\n", p.GetParty(), p.GetReportsReleased(), p.GetReportsDenied(),
					p.GetReportsReceived(), p.GetReportsRejected(), p.GetConsentsAsked(), p.GetConsentsGranted(), p.GetWithdrawalsSent(), p.GetWithdrawalsReceived(), strings.Join(rules, ", "))
			}
			return nil
		},
	}
	c.Flags().StringVar(&period, "period", "30d", "the period before now: 30d, 12h, 90m")
	return c
}
