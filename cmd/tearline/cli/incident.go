package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
)

func suspensionJSON(s *adminv1.Suspension) any {
	if s == nil {
		return nil
	}
	return map[string]any{"reason": s.GetReason(), "by": s.GetBy(), "since": ts(s.GetSince())}
}

func suspensionText(s *adminv1.Suspension) string {
	if s == nil {
		return "active"
	}
	return fmt.Sprintf("SUSPENDED since %s by %s: %s", ts(s.GetSince()), s.GetBy(), s.GetReason())
}

// newSuspendCmds builds the suspend / reinstate / list verbs of a kind;
// long is what suspend does, for its help and its parent's.
func newSuspendCmds(g *globals, noun, long string, suspend func(ctx context.Context, c adminv1.AdminServiceClient, name, reason string) error,
	reinstate func(ctx context.Context, c adminv1.AdminServiceClient, name string) error, list *cobra.Command) *cobra.Command {
	var reason string
	arg := "NAME"
	if noun == "partner" {
		arg = "PARTY"
	}
	s := &cobra.Command{
		Use:   "suspend " + arg + " --reason TEXT",
		Short: "Cut the " + noun + " off now; recorded with who asked and why, kept across restarts",
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason TEXT is required")
			}
			name := args[0]
			if noun == "partner" {
				name = strings.ToUpper(name)
			}
			if err := g.callAdmin(cmd.Context(), func(ctx context.Context, c adminv1.AdminServiceClient) error { return suspend(ctx, c, name, reason) }); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{noun: name, "suspended": true})
			}
			textf(g.stdout, "%s %s suspended\n", noun, name)
			return nil
		},
	}
	s.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	r := &cobra.Command{
		Use:   "reinstate " + arg,
		Short: "Lift the " + noun + "'s suspension",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if noun == "partner" {
				name = strings.ToUpper(name)
			}
			if err := g.callAdmin(cmd.Context(), func(ctx context.Context, c adminv1.AdminServiceClient) error { return reinstate(ctx, c, name) }); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{noun: name, "suspended": false})
			}
			textf(g.stdout, "%s %s reinstated\n", noun, name)
			return nil
		},
	}
	parent := &cobra.Command{Use: noun, Short: "Suspend, reinstate and list " + noun + "s (incident response)", Long: long}
	parent.AddCommand(s, r, list)
	return parent
}

func newPartnerCmd(g *globals) *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List partners: suspension, queued items, agreement",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListPartnersResponse, error) {
				return c.ListPartners(ctx, &adminv1.ListPartnersRequest{})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, p := range resp.GetPartners() {
					out = append(out, map[string]any{"party": p.GetParty(), "address": p.GetAddress(), "suspended": p.GetSuspension() != nil,
						"suspension": suspensionJSON(p.GetSuspension()), "queued": p.GetQueued(), "agreement": p.GetAgreement()})
				}
				return g.printJSON(out)
			}
			printPartners(g.stdout, resp.GetPartners())
			return nil
		},
	}
	c := newSuspendCmds(g, "partner", partnerSuspendHelp,
		func(ctx context.Context, c adminv1.AdminServiceClient, name, reason string) error {
			_, err := c.SuspendPartner(ctx, &adminv1.SuspendPartnerRequest{Party: name, Reason: reason})
			return err
		},
		func(ctx context.Context, c adminv1.AdminServiceClient, name string) error {
			_, err := c.ReinstatePartner(ctx, &adminv1.ReinstatePartnerRequest{Party: name})
			return err
		}, list)
	return c
}

const partnerSuspendHelp = `A security team cuts a partner off during an incident. 'partner suspend
PARTY --reason TEXT' records the suspension first (who asked, when and why;
it survives a restart of this node), and then, before it returns:
  - every live connection with PARTY's node closes, and its streams with it;
  - new TLS handshakes and calls from PARTY's node are refused, so it can
    send this node nothing: no reports, consent requests or answers,
    withdrawals (a Tearline node keeps what it could not send and retries);
  - 'share' to PARTY is refused (rule suspended);
  - what this node still sends PARTY (reports your party publishes that are
    releasable to it, relays an originator's route names, withdrawals,
    consent answers, crisis declarations) is queued and held, not dropped:
    'partner list' shows how much.
'partner reinstate PARTY' lifts the suspension: the held traffic is
delivered in order, and PARTY's node may connect again and send what it
kept.`

// printPartners lists partners one a line, with a suspension's reason
// (see textf).
func printPartners(w io.Writer, ps []*adminv1.Partner) {
	for _, p := range ps {
		textf(w, "%-5s %-21s queued %-6d agreement %-13s %s\n", p.GetParty(), p.GetAddress(), p.GetQueued(), p.GetAgreement(), suspensionText(p.GetSuspension()))
	}
}

// printSubscribers lists subscribers one a line, with a suspension's
// reason (see textf).
func printSubscribers(w io.Writer, ss []*adminv1.Subscriber) {
	for _, s := range ss {
		textf(w, "%-12s %-13s need-to-know %-16s cursor %-6d %s\n", s.GetName(), s.GetClearance(), strings.Join(s.GetNeedToKnow(), ","), s.GetCursor(), suspensionText(s.GetSuspension()))
	}
}

func newSubscriberCmd(g *globals) *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List subscribers: clearance, need-to-know, suspension, saved cursor",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListSubscribersResponse, error) {
				return c.ListSubscribers(ctx, &adminv1.ListSubscribersRequest{})
			})
			if err != nil {
				return err
			}
			if g.json {
				out := []map[string]any{}
				for _, s := range resp.GetSubscribers() {
					out = append(out, map[string]any{"name": s.GetName(), "clearance": s.GetClearance(), "need_to_know": s.GetNeedToKnow(),
						"suspended": s.GetSuspension() != nil, "suspension": suspensionJSON(s.GetSuspension()), "cursor": s.GetCursor()})
				}
				return g.printJSON(out)
			}
			printSubscribers(g.stdout, resp.GetSubscribers())
			return nil
		},
	}
	c := newSuspendCmds(g, "subscriber", subscriberSuspendHelp,
		func(ctx context.Context, c adminv1.AdminServiceClient, name, reason string) error {
			_, err := c.SuspendSubscriber(ctx, &adminv1.SuspendSubscriberRequest{Name: name, Reason: reason})
			return err
		},
		func(ctx context.Context, c adminv1.AdminServiceClient, name string) error {
			_, err := c.ReinstateSubscriber(ctx, &adminv1.ReinstateSubscriberRequest{Name: name})
			return err
		}, list)
	return c
}

const subscriberSuspendHelp = `A security team cuts a subscriber service of this party off. 'subscriber
suspend NAME --reason TEXT' records the suspension first (who asked, when and
why; it survives a restart of this node); then its live streams end at once
with a status that says it is suspended, new subscriptions are refused, and
its saved cursor is kept. After 'subscriber reinstate NAME', 'subscribe
--resume' continues after the last report recorded as delivered to it.`

func withdrawJSON(s *adminv1.WithdrawStatusResponse) map[string]any {
	parties := []map[string]any{}
	for _, p := range s.GetParties() {
		parties = append(parties, map[string]any{"party": p.GetParty(), "acknowledged": p.GetAcknowledged(), "time": ts(p.GetTime()), "held": p.GetHeld()})
	}
	return map[string]any{"withdrawal_id": s.GetWithdrawalId(), "report_id": s.GetReportId(), "action": s.GetAction(), "reason": s.GetReason(),
		"by": s.GetBy(), "issued": ts(s.GetIssued()), "parties": parties, "complete": s.GetComplete()}
}

func printWithdraw(g *globals, s *adminv1.WithdrawStatusResponse) {
	state := "pending"
	if s.GetComplete() {
		state = "complete"
	}
	textf(g.stdout, "withdrawal %s of report %s (%s: %s): %s\n", s.GetWithdrawalId(), s.GetReportId(), s.GetAction(), s.GetReason(), state)
	for _, p := range s.GetParties() {
		ack := "pending"
		if p.GetAcknowledged() {
			ack = "acknowledged " + ts(p.GetTime())
		}
		textf(g.stdout, "  %-5s %s\n", p.GetParty(), ack)
	}
}

func newWithdrawCmd(g *globals) *cobra.Command {
	var reason, action string
	c := &cobra.Command{
		Use:   "withdraw ID --reason TEXT [--action purge|quarantine]",
		Short: "Withdraw one of your party's reports from everyone it reached",
		Long: `Withdraw one of your party's reports: a withdrawal signed by your node goes to
every party the report was released to. Each holder purges the content (or
quarantines it: kept, never shown or passed on), keeps the tombstone and the
provenance, tells its subscribers, passes the withdrawal on to every party it
forwarded the report to, and acknowledges it. Delivery is retried until all
have acknowledged, including parties that are suspended or offline now.
'withdraw status ID' shows who has.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason TEXT is required")
			}
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.WithdrawResponse, error) {
				return c.Withdraw(ctx, &adminv1.WithdrawRequest{Id: args[0], Reason: reason, Action: action})
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(withdrawJSON(resp.GetStatus()))
			}
			printWithdraw(g, resp.GetStatus())
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (sent to every holder)")
	c.Flags().StringVar(&action, "action", "purge", "purge (delete the content) or quarantine (keep it, never show or pass it on)")
	status := &cobra.Command{
		Use:   "status ID",
		Short: "Who has acknowledged the withdrawal of a report, and who has not",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := askAdmin(cmd.Context(), g, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.WithdrawStatusResponse, error) {
				return c.WithdrawStatus(ctx, &adminv1.WithdrawStatusRequest{Id: args[0]})
			})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(withdrawJSON(resp))
			}
			printWithdraw(g, resp)
			return nil
		},
	}
	c.AddCommand(status)
	return c
}
