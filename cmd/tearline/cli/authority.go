package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().Format(time.RFC3339Nano)
}

func parsePortions(vals []string) ([]uint32, error) {
	var out []uint32
	for _, p := range vals {
		for _, s := range strings.Split(p, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil || n == 0 {
				return nil, usagef("--portions %q: want portion numbers like 1,2", p)
			}
			out = append(out, uint32(n))
		}
	}
	return out, nil
}

func consentJSON(c *clientv1.Consent) map[string]any {
	return map[string]any{
		"id": c.GetId(), "report_id": c.GetReportId(), "holder": c.GetHolder(), "to": c.GetTo(), "originator": c.GetOriginator(),
		"portions": c.GetPortions(), "purpose": c.GetPurpose(), "state": c.GetState(), "direction": c.GetDirection(),
		"reason": c.GetReason(), "requested": ts(c.GetRequested()), "decided": ts(c.GetDecided()), "expires": ts(c.GetExpires()),
	}
}

func printConsent(g *globals, c *clientv1.Consent) {
	textf(g.stdout, "%s  %-8s %-8s report %s: %s -> %s (originator %s)", c.GetId(), c.GetDirection(), c.GetState(), c.GetReportId(), c.GetHolder(), c.GetTo(), c.GetOriginator())
	if c.GetExpires() != nil {
		textf(g.stdout, ", expires %s", c.GetExpires().AsTime().Format(time.RFC3339))
	}
	if c.GetReason() != "" {
		textf(g.stdout, ", reason: %s", c.GetReason())
	}
	textf(g.stdout, "; purpose: %s\n", c.GetPurpose())
}

func newConsentCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "consent",
		Short: "Ask an originator for consent to pass on its report, and answer such requests",
		Long: `The third-party rule: what a partner gave you is passed on only with the
originator's consent. As the holder, 'consent request' asks the originator's
node; as the originator, 'consent list' shows what partners ask and 'consent
approve' or 'consent deny' answers. An approval is a grant signed by the
originator: the holder's 'share' then succeeds, and the grant travels with the
report so that the third party verifies it. An expired grant allows nothing.`,
	}
	var to, purpose string
	var portions []string
	req := &cobra.Command{
		Use:   "request ID --to PARTY --purpose TEXT [--portions 1,2]",
		Short: "Ask the originator of a held report for consent to pass it to PARTY",
		Long: `Ask the originator of report ID, which this node holds from a partner, for
consent to pass it (or only --portions) to PARTY, for --purpose. The request
goes to the originator's node; it prints the request id (REQ). Its answer
arrives later: 'tearline consent list' shows it, and once it is approved,
'tearline share ID --to PARTY' succeeds with the grant. A report its
originator has withdrawn cannot be asked about.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" || purpose == "" {
				return usagef("--to PARTY and --purpose TEXT are required")
			}
			ps, err := parsePortions(portions)
			if err != nil {
				return err
			}
			var resp *clientv1.RequestConsentResponse
			err = g.call(cmd.Context(), func(ctx context.Context, c clientv1.ClientServiceClient) error {
				resp, err = c.RequestConsent(ctx, &clientv1.RequestConsentRequest{Id: args[0], To: strings.ToUpper(to), Purpose: purpose, Portions: ps})
				return err
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(consentJSON(resp.GetConsent()))
			}
			textf(g.stdout, "%s\n", resp.GetConsent().GetId())
			textf(g.stderr, "asked %s for consent to pass %s to %s; see 'tearline consent list'\n", resp.GetConsent().GetOriginator(), args[0], resp.GetConsent().GetTo())
			return nil
		},
	}
	req.Flags().StringVar(&to, "to", "", "the third party")
	req.Flags().StringVar(&purpose, "purpose", "", "why (recorded in the grant)")
	req.Flags().StringArrayVar(&portions, "portions", nil, "only these portions, e.g. 1,2 (default: all held)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List consent requests: incoming (partners ask you) and outgoing (you asked)",
		Long: `List consent requests with their state: incoming ones, which partners sent
about your party's reports and which you decide (approve, deny, withdraw),
and outgoing ones, which this node sent and whose answer it shows. A state
is pending, approved (with the grant's expiry), denied or withdrawn, with
the reason given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := ask(cmd.Context(), g, func(ctx context.Context, c clientv1.ClientServiceClient) (*clientv1.ListConsentsResponse, error) {
				return c.ListConsents(ctx, &clientv1.ListConsentsRequest{})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, c := range resp.GetConsents() {
					out = append(out, consentJSON(c))
				}
				return g.printJSON(out)
			}
			if len(resp.GetConsents()) == 0 {
				fmt.Fprintln(g.stdout, "no consent requests")
			}
			for _, c := range resp.GetConsents() {
				printConsent(g, c)
			}
			return nil
		},
	}

	var ttl time.Duration
	approve := &cobra.Command{
		Use:   "approve REQ [--ttl 72h]",
		Short: "Approve an incoming request: sign a grant valid for --ttl and send it to the holder",
		Long: `Approve incoming request REQ, which must be pending: sign a grant that lets
its holder pass the report (its named portions) to the named party for --ttl
(default 72h, at most 720h), and send it to the holder. 'consent withdraw'
takes it back. A report your party has withdrawn gets no grant.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.decide(cmd, args[0], true, false, ttl, "")
		},
	}
	approve.Flags().DurationVar(&ttl, "ttl", 72*time.Hour, "how long the grant is valid (at most 720h)")
	var reason string
	deny := &cobra.Command{
		Use:   "deny REQ --reason TEXT",
		Short: "Deny an incoming request, saying why",
		Long: `Deny incoming request REQ, which must be pending; --reason is sent to the
holder. An approved request is not denied: withdraw it instead
('tearline consent withdraw REQ --reason TEXT').`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason TEXT is required")
			}
			return g.decide(cmd, args[0], false, false, 0, reason)
		},
	}
	deny.Flags().StringVar(&reason, "reason", "", "why (sent to the holder)")
	withdraw := &cobra.Command{
		Use:   "withdraw REQ --reason TEXT",
		Short: "Withdraw an approval you gave: the holder's grant no longer allows anything",
		Long: `Withdraw the approval of request REQ: its grant no longer allows anything,
and the holder is told, with --reason. Only an approved request can be
withdrawn; a pending one is denied ('tearline consent deny').`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason TEXT is required")
			}
			return g.decide(cmd, args[0], false, true, 0, reason)
		},
	}
	withdraw.Flags().StringVar(&reason, "reason", "", "why (sent to the holder)")
	c.AddCommand(req, list, approve, deny, withdraw)
	return c
}

// decide approves, denies or (withdraw) takes back the grant of consent
// request id.
func (g *globals) decide(cmd *cobra.Command, id string, approve, withdraw bool, ttl time.Duration, reason string) error {
	r := &clientv1.DecideConsentRequest{Id: id, Approve: approve, Withdraw: withdraw, Reason: reason}
	if approve {
		r.Ttl = durationpb.New(ttl)
	}
	resp, err := ask(cmd.Context(), g, func(ctx context.Context, c clientv1.ClientServiceClient) (*clientv1.DecideConsentResponse, error) {
		return c.DecideConsent(ctx, r)
	})
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(consentJSON(resp.GetConsent()))
	}
	printConsent(g, resp.GetConsent())
	return nil
}

func crisisJSON(c *adminv1.Crisis) map[string]any {
	return map[string]any{
		"id": c.GetId(), "originator": c.GetOriginator(), "topics": c.GetTopics(), "parties": c.GetParties(),
		"max": c.GetMaxClassification(), "issued": ts(c.GetIssued()), "expires": ts(c.GetExpires()), "reason": c.GetReason(),
		"state": c.GetState(), "ended": ts(c.GetEnded()),
	}
}

func printCrisis(g *globals, c *adminv1.Crisis) {
	until := "until " + c.GetExpires().AsTime().Format(time.RFC3339)
	if c.GetEnded() != nil {
		until = "ended " + c.GetEnded().AsTime().Format(time.RFC3339) + " (declared " + until + ")"
	}
	textf(g.stdout, "%s  %-7s %s's crisis: topics %s, parties %s, up to %s, %s; reason: %s\n", c.GetId(), c.GetState(), c.GetOriginator(),
		strings.Join(c.GetTopics(), ","), strings.Join(c.GetParties(), ","), c.GetMaxClassification(), until, c.GetReason())
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func newCrisisCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "crisis",
		Short: "Declare, end and review crisis sharing (pre-authorised expedited sharing)",
		Long: `A crisis declaration, signed by the originator, lets its reports on the named
topics, up to a classification, reach the named parties without a consent
request, for at most 72 hours: it acts as a blanket consent and REL TO
extension. 'crisis review' lists every release made under it and what the
normal rules would have decided.`,
	}
	var topics, parties, max, reason string
	var dur time.Duration
	declare := &cobra.Command{
		Use:   "declare --topics CT,CBRN --parties CAN,AUS --max SECRET --for 48h --reason TEXT",
		Short: "Sign a crisis declaration and send it to the parties and to holders of matching reports",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topics == "" || parties == "" || max == "" || !cmd.Flags().Changed("for") || reason == "" {
				return usagef("--topics, --parties, --max, --for and --reason are all required")
			}
			if dur <= 0 || dur > node.MaxCrisis {
				return usagef("--for %s: a crisis declaration lasts more than 0 and at most %s", dur, node.MaxCrisis)
			}
			ps := splitList(strings.ToUpper(parties))
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.DeclareCrisisResponse, error) {
				return c.DeclareCrisis(ctx, &adminv1.DeclareCrisisRequest{Topics: splitList(topics), Parties: ps, MaxClassification: strings.ToUpper(max), Duration: durationpb.New(dur), Reason: reason})
			})
			if err != nil {
				return err
			}
			if g.json {
				m := crisisJSON(resp.GetCrisis())
				m["sent_to"] = resp.GetSentTo()
				return g.printJSON(m)
			}
			textf(g.stdout, "%s\n", resp.GetCrisis().GetId())
			textf(g.stderr, "declared; sent to %s\n", strings.Join(resp.GetSentTo(), ", "))
			return nil
		},
	}
	declare.Flags().StringVar(&topics, "topics", "", "comma-separated topics it covers")
	declare.Flags().StringVar(&parties, "parties", "", "comma-separated parties it extends sharing to")
	declare.Flags().StringVar(&max, "max", "", "highest classification it covers")
	declare.Flags().DurationVar(&dur, "for", 0, "how long (at most 72h)")
	declare.Flags().StringVar(&reason, "reason", "", "why (recorded and sent)")

	end := &cobra.Command{
		Use:   "end ID",
		Short: "End one of your party's declarations now",
		Long: `End crisis declaration ID, which your party declared, now instead of at its
expiry: from then on it allows nothing, and a signed end notice goes to
everyone the declaration went to. Releases already made under it stay
recorded for 'crisis review'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.EndCrisisResponse, error) {
				return c.EndCrisis(ctx, &adminv1.EndCrisisRequest{Id: args[0]})
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(crisisJSON(resp.GetCrisis()))
			}
			printCrisis(g, resp.GetCrisis())
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the crisis declarations this node knows",
		Long: `List the crisis declarations this node knows, your party's and those
partners sent it: who declared each, its topics, parties and highest
classification, its reason, and its state: active, ended or expired.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListCrisesResponse, error) {
				return c.ListCrises(ctx, &adminv1.ListCrisesRequest{})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, c := range resp.GetCrises() {
					out = append(out, crisisJSON(c))
				}
				return g.printJSON(out)
			}
			if len(resp.GetCrises()) == 0 {
				fmt.Fprintln(g.stdout, "no crisis declarations")
			}
			for _, c := range resp.GetCrises() {
				printCrisis(g, c)
			}
			return nil
		},
	}
	review := &cobra.Command{
		Use:   "review ID",
		Short: "Post-crisis review: every release made under a declaration, and what the normal rules would have decided",
		Long: `After (or during) a crisis: list every release this node made under
declaration ID (report, portion, from, to, when) and what the normal release
rules would have decided for it without the declaration, so that each
release the crisis alone allowed can be reviewed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ReviewCrisisResponse, error) {
				return c.ReviewCrisis(ctx, &adminv1.ReviewCrisisRequest{Id: args[0]})
			})
			if err != nil {
				return err
			}
			if g.json {
				rels := []map[string]any{}
				for _, r := range resp.GetReleases() {
					rels = append(rels, map[string]any{
						"report": r.GetReportId(), "portion": r.GetPortion(), "from": r.GetFrom(), "to": r.GetTo(), "when": ts(r.GetTime()),
						"normal": map[string]any{"allowed": r.GetNormal().GetAllowed(), "rule": r.GetNormal().GetRule(), "message": r.GetNormal().GetMessage()},
					})
				}
				m := crisisJSON(resp.GetCrisis())
				m["releases"] = rels
				return g.printJSON(m)
			}
			printCrisis(g, resp.GetCrisis())
			if len(resp.GetReleases()) == 0 {
				fmt.Fprintln(g.stdout, "no release was made under it")
			}
			for _, r := range resp.GetReleases() {
				verdict := "denied"
				if r.GetNormal().GetAllowed() {
					verdict = "allowed"
				}
				textf(g.stdout, "  %s  report %s portion %d  %s -> %s; normally %s (%s)\n", r.GetTime().AsTime().Format(time.RFC3339), r.GetReportId(), r.GetPortion(), r.GetFrom(), r.GetTo(), verdict, r.GetNormal().GetRule())
			}
			return nil
		},
	}
	c.AddCommand(declare, end, list, review)
	return c
}

func newAgreementsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agreements",
		Short: "List the sharing agreement with each partner and its state",
		Long: `List the sharing agreement with each partner, from the node's
configuration: its state (active, not-yet-valid, expired, or none when
there is no agreement), whether its review date has passed, the highest
classification and the topics it covers, its purpose, and the date it ends.
Nothing is released to a partner outside its agreement (rules no-agreement
and agreement-scope).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListAgreementsResponse, error) {
				return c.ListAgreements(ctx, &adminv1.ListAgreementsRequest{})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, a := range resp.GetAgreements() {
					out = append(out, map[string]any{
						"partner": a.GetPartner(), "state": a.GetState(), "max_classification": a.GetMaxClassification(), "topics": a.GetTopics(),
						"purpose": a.GetPurpose(), "valid_from": ts(a.GetValidFrom()), "valid_until": ts(a.GetValidUntil()),
						"review": ts(a.GetReview()), "review_due": a.GetReviewDue(),
					})
				}
				return g.printJSON(out)
			}
			for _, a := range resp.GetAgreements() {
				topics := "any topic"
				if len(a.GetTopics()) > 0 {
					topics = strings.Join(a.GetTopics(), ",")
				}
				textf(g.stdout, "%-5s %-13s up to %s, %s, until %s; %s\n", a.GetPartner(), a.GetState(), a.GetMaxClassification(), topics, ts(a.GetValidUntil()), a.GetPurpose())
			}
			return nil
		},
	}
}

func newEventsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "List security events: refused envelopes and other evidence, naming the partner",
		Long: `List the node's security events, oldest first, each naming the partner (or
subscriber) concerned, the rule and what happened:
  rejected-envelope         a partner sent a report the rules or the
                            signatures refuse (kept in quarantine as evidence)
  malformed-message         a partner sent a message that could not be read
  bad-...                   a partner sent another item that was refused:
                            bad-consent-request, bad-consent, bad-crisis,
                            bad-hop-notice, bad-withdrawal, bad-withdrawal-ack,
                            bad-audit-checkpoint, bad-item
  anomaly-delivery-rate     a subscriber received far more than its baseline
  anomaly-repeated-denials  many denials for one partner in a short time
  audit-chain-broken        this node's audit log failed its check
  partner-audit-mismatch,   a partner's audit evidence does not match
  partner-audit-fork        what this node holds
Anomalies also count in tearline_audit_anomalies_total on /metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListSecurityEventsResponse, error) {
				return c.ListSecurityEvents(ctx, &adminv1.ListSecurityEventsRequest{})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, e := range resp.GetEvents() {
					out = append(out, map[string]any{
						"seq": e.GetSeq(), "time": ts(e.GetTime()), "kind": e.GetKind(), "partner": e.GetPartner(), "rule": e.GetRule(),
						"message": e.GetMessage(), "report_id": e.GetReportId(), "quarantine_seq": e.GetQuarantineSeq(),
					})
				}
				return g.printJSON(out)
			}
			printEvents(g.stdout, resp.GetEvents())
			return nil
		},
	}
}

// printEvents lists security events one a line; their messages quote what
// partners sent (see textf).
func printEvents(w io.Writer, es []*adminv1.SecurityEvent) {
	if len(es) == 0 {
		fmt.Fprintln(w, "no security events")
	}
	for _, e := range es {
		textf(w, "%s  %-18s partner %s  %s: %s\n", ts(e.GetTime()), e.GetKind(), e.GetPartner(), e.GetRule(), e.GetMessage())
	}
}
