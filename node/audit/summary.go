package audit

import (
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// PartnerSummary is what a node shared with one partner over a period:
// counts only, no content and no ids.
type PartnerSummary struct {
	Party string
	// ReportsReleased counts releases to the partner that sent at least one
	// portion; ReportsDenied those that sent nothing.
	ReportsReleased, ReportsDenied uint64
	// DenialsByRule counts, per denying rule, the releases in which it
	// denied a portion (a release counts once per rule).
	DenialsByRule                    map[string]uint64
	ReportsReceived, ReportsRejected uint64
	// ConsentsAsked counts consent requests exchanged with the partner (it
	// asked this party as originator, or this party asked it);
	// ConsentsGranted those of them granted.
	ConsentsAsked, ConsentsGranted uint64
	// WithdrawalsSent counts withdrawals of this party's reports sent to
	// the partner; WithdrawalsReceived the partner's withdrawals applied
	// (or remembered) here.
	WithdrawalsSent, WithdrawalsReceived uint64
}

// Summarize counts, per partner, what the audit entries, consent records
// and withdrawal records say happened in [from, to). self is this node's
// party; partners are listed even with nothing to count.
func Summarize(self string, partners []string, entries []*storev1.AuditEntry, consents []*storev1.ConsentRecord, withdrawals []*storev1.WithdrawalRecord, from, to time.Time) []PartnerSummary {
	by := map[string]*PartnerSummary{}
	get := func(p string) *PartnerSummary {
		s, ok := by[p]
		if !ok {
			s = &PartnerSummary{Party: p, DenialsByRule: map[string]uint64{}}
			by[p] = s
		}
		return s
	}
	for _, p := range partners {
		get(p)
	}
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	for _, e := range entries {
		p := e.GetParty()
		if !in(e.GetTime().AsTime()) || p == "" || p == self {
			continue
		}
		switch e.GetKind() {
		case "released", "held", "refused":
			s := get(p)
			rules := map[string]bool{}
			for _, d := range e.GetDecisions() {
				if !d.GetAllowed() {
					rules[d.GetRule()] = true
				}
			}
			for r := range rules {
				s.DenialsByRule[r]++
			}
			if e.GetKind() == "refused" {
				s.ReportsDenied++
			} else {
				s.ReportsReleased++
			}
		case "received":
			get(p).ReportsReceived++
		case "rejected":
			get(p).ReportsRejected++
		case "withdrawn", "withdrawal-received":
			get(p).WithdrawalsReceived++
		}
	}
	for _, c := range consents {
		p := c.GetOriginator()
		if c.GetDirection() == "incoming" {
			p = c.GetHolder()
		}
		if p == "" || p == self {
			continue
		}
		if in(c.GetRequested().AsTime()) {
			get(p).ConsentsAsked++
		}
		if (c.GetState() == "approved" || c.GetState() == "withdrawn") && c.GetGrant() != nil && in(c.GetDecided().AsTime()) {
			get(p).ConsentsGranted++
		}
	}
	for _, w := range withdrawals {
		if w.GetBy() == "" {
			continue // a holder's record of another party's withdrawal
		}
		wd := &reportv1.Withdrawal{}
		if proto.Unmarshal(w.GetWithdrawal().GetPayload(), wd) != nil || !in(wd.GetIssued().AsTime()) {
			continue
		}
		for p := range w.GetParties() {
			if p != self {
				get(p).WithdrawalsSent++
			}
		}
	}
	out := make([]PartnerSummary, 0, len(by))
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b PartnerSummary) int { return strings.Compare(a.Party, b.Party) })
	return out
}
