package policy

import (
	"strings"
	"testing"
	"time"
)

func hop(from, to string, basis Rule, authority string, sent time.Time) HopFact {
	return HopFact{From: from, To: to, Basis: basis, Authority: authority, Sent: sent}
}

func TestReceipt(t *testing.T) {
	t1, t2 := now.Add(-2*time.Hour), now.Add(-time.Hour)
	// base: CAN receives portion 1 from GBR, which had it from USA.
	base := func(t *testing.T, banner string, basis Rule, authority string, topics ...string) ReceiptInput {
		return ReceiptInput{
			Now: now, ReportID: "R1", Originator: "USA", Recipient: "CAN", Sender: "GBR",
			Agreement: agreement("GBR", "TOP SECRET"),
			Portion:   portion(t, 1, banner, topics...),
			Chain: []HopFact{
				hop("USA", "GBR", RuleOrigin, "", t1),
				hop("GBR", "CAN", basis, authority, t2),
			},
		}
	}
	const (
		orconIn  = "SECRET//REL TO CAN, GBR, USA//ORCON"
		orconOut = "SECRET//REL TO GBR, USA//ORCON"
		openIn   = "SECRET//REL TO CAN, GBR, USA"
		openOut  = "SECRET//REL TO GBR, USA"
	)
	tests := []struct {
		name      string
		in        func(t *testing.T) ReceiptInput
		rule      Rule
		allowed   bool
		authority string
		msg       string
		next      string
	}{
		// Input checks.
		{"bad input: sender is recipient", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Sender = "CAN"
			return in
		}, RuleBadInput, false, "", "sender is the recipient", "fix the caller"},
		{"bad input: marking", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Portion.Marking.RelTo = []string{"USA", "CAN"}
			return in
		}, RuleBadInput, false, "", "not valid", ""},
		{"bad input: sender code", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Sender = body
			return in
		}, RuleBadInput, false, "", "sender is not a valid party code", ""},
		{"bad input: no time", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Now = zeroTime
			return in
		}, RuleBadInput, false, "", "no decision time", ""},

		// 1. suspended and no-agreement, sender side.
		{"suspended sender wins over everything", func(t *testing.T) ReceiptInput {
			in := base(t, "TOP SECRET//NOFORN", "bogus", "")
			in.SenderSuspended = true
			in.Agreement = nil
			in.Chain = nil
			return in
		}, RuleSuspended, false, "", "GBR is suspended at CAN", "reinstate GBR"},
		{"no agreement with the sender", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//NOFORN", RuleRelTo, "")
			in.Agreement = nil
			return in
		}, RuleNoAgreement, false, "", "CAN has no sharing agreement with GBR", "agree a sharing agreement with GBR"},
		{"expired agreement with the sender", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Agreement.ValidUntil = now.Add(-time.Minute)
			return in
		}, RuleNoAgreement, false, "", "expired", "renew the sharing agreement with GBR"},
		{"agreement with another partner", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Agreement = agreement("USA", "TOP SECRET")
			return in
		}, RuleNoAgreement, false, "", "not with GBR", ""},

		// 2. agreement scope, recipient side.
		{"above the recipient's agreement", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Agreement.MaxClassification = "CONFIDENTIAL"
			return in
		}, RuleAgreementScope, false, "", "above CONFIDENTIAL", "widen the agreement with GBR to SECRET"},
		{"topic outside the recipient's agreement", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "", "nuclear")
			in.Agreement.Topics = []string{"cyber"}
			return in
		}, RuleAgreementScope, false, "", "topic nuclear", ""},

		// 3. NOFORN never arrives.
		{"noforn", func(t *testing.T) ReceiptInput {
			return base(t, "SECRET//NOFORN", RuleRelTo, "")
		}, RuleNoForn, false, "", "a NOFORN portion never leaves USA", "raise a security event naming GBR"},
		{"noforn even back at the originator", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//NOFORN", RuleRelTo, "")
			in.Recipient = "USA"
			in.Chain = []HopFact{hop("USA", "GBR", RuleOrigin, "", t1), hop("GBR", "USA", RuleRelTo, "", t2)}
			return in
		}, RuleNoForn, false, "", "", ""},
		{"noforn with a crisis", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//NOFORN", RuleCrisis, "C1", "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleNoForn, false, "", "", ""},

		// Allowed chains, one per basis of the last hop.
		{"origin: straight from the originator", func(t *testing.T) ReceiptInput {
			in := base(t, orconIn, RuleOrigin, "")
			in.Sender = "USA"
			in.Agreement = agreement("USA", "SECRET")
			in.Chain = []HopFact{hop("USA", "CAN", RuleOrigin, "", t2)}
			return in
		}, RuleOrigin, true, "", "CAN accepts it on a chain of 1 hop, the last on basis origin", ""},
		{"relay", func(t *testing.T) ReceiptInput {
			in := base(t, orconIn, RuleRelay, "")
			in.Route = []RouteEntry{{Via: "GBR", To: "CAN"}}
			return in
		}, RuleRelay, true, "", "chain of 2 hops, the last on basis relay", ""},
		{"consent outside REL TO", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			in.Consents = []Consent{grant("G0", "GBR", "AUS"), grant("G1", "GBR", "CAN", 1)}
			return in
		}, RuleConsent, true, "G1", "the last on basis consent G1", ""},
		{"consent that expired in transit", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			g := grant("G1", "GBR", "CAN")
			g.Expires = t2.Add(time.Second)
			in.Consents = []Consent{g}
			return in
		}, RuleConsent, true, "G1", "", ""},
		{"crisis", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleCrisis, "C1", "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleCrisis, true, "C1", "the last on basis crisis C1", ""},
		{"rel-to", func(t *testing.T) ReceiptInput {
			return base(t, openIn, RuleRelTo, "")
		}, RuleRelTo, true, "", "the last on basis rel-to", ""},
		{"hop sent just inside the clock skew", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain[1].Sent = now.Add(ClockSkew)
			return in
		}, RuleRelTo, true, "", "", ""},
		{"long chain of relay, consent and rel-to", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//REL TO AUS, CAN, GBR, USA//ORCON", RuleConsent, "G2")
			in.Route = []RouteEntry{{Via: "GBR", To: "AUS"}}
			in.Consents = []Consent{grant("G2", "AUS", "CAN")}
			in.Sender = "AUS"
			in.Agreement = agreement("AUS", "SECRET")
			in.Chain = []HopFact{
				hop("USA", "GBR", RuleOrigin, "", t1),
				hop("GBR", "AUS", RuleRelay, "", t1.Add(time.Minute)),
				hop("AUS", "CAN", RuleConsent, "G2", t2),
			}
			return in
		}, RuleConsent, true, "G2", "chain of 3 hops", ""},
		{"back to the originator outside REL TO", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//REL TO CAN, GBR", RuleRelTo, "")
			in.Recipient = "USA"
			in.Chain = []HopFact{hop("USA", "GBR", RuleOrigin, "", t1), hop("GBR", "USA", RuleRelTo, "", t2)}
			return in
		}, RuleBadChain, false, "", "hop 2 GBR → USA on basis rel-to: USA is not in REL TO", ""},

		// 4. the recipient may not hold the portion.
		{"third-party rule: ORCON outside REL TO without grant", func(t *testing.T) ReceiptInput {
			return base(t, orconOut, RuleRelTo, "")
		}, RuleThirdParty, false, "", "CAN is not in REL TO and holds no consent or crisis declaration of USA for it", "raise a security event naming GBR"},
		{"rel-to: non-ORCON outside REL TO", func(t *testing.T) ReceiptInput {
			return base(t, openOut, RuleRelTo, "")
		}, RuleRelTo, false, "", "CAN is not in REL TO", "raise a security event naming GBR"},
		{"withdrawn grant", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			g := grant("G1", "GBR", "CAN")
			g.Withdrawn = true
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "holds no consent or crisis declaration of USA for it; grant G1 of USA was withdrawn", ""},
		{"grant expired before the hop", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			g := grant("G1", "GBR", "CAN")
			g.Expires = t2
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "; grant G1 of USA expired at " + t2.UTC().Format(time.RFC3339) + "; the hop was sent at " + t2.UTC().Format(time.RFC3339), ""},
		{"grant forged by the sender", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			g := grant("G1", "GBR", "CAN")
			g.Originator = "GBR"
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"grant for another report", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			g := grant("G1", "GBR", "CAN")
			g.ReportID = "R2"
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"grant for another portion", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			in.Consents = []Consent{grant("G1", "GBR", "CAN", 2)}
			return in
		}, RuleThirdParty, false, "", "; grant G1 of USA does not cover portion 1", ""},
		{"crisis ended", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleCrisis, "C1", "cyber")
			c := crisis("C1")
			c.Ended = true
			in.Crises = []Crisis{c}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"crisis expired before the hop", func(t *testing.T) ReceiptInput {
			in := base(t, openOut, RuleCrisis, "C1", "cyber")
			c := crisis("C1")
			c.Expires = t2
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"relay outside REL TO", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleRelay, "")
			in.Route = []RouteEntry{{Via: "GBR", To: "CAN"}}
			return in
		}, RuleThirdParty, false, "", "", ""},

		// 5. bad chains.
		{"empty chain", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain = nil
			return in
		}, RuleBadChain, false, "", "it came with no hops", "raise a security event naming GBR; GBR must send it on a basis CAN can check"},
		{"chain not starting at the originator", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain = in.Chain[1:]
			return in
		}, RuleBadChain, false, "", "hop 1 GBR → CAN on basis rel-to does not start at the originator USA", ""},
		{"chain with a gap", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain[0].To = "AUS"
			return in
		}, RuleBadChain, false, "", "hop 2 GBR → CAN on basis rel-to does not continue from hop 1, which ended at AUS", ""},
		{"chain ending elsewhere", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//REL TO CAN, GBR, NZL, USA", RuleRelTo, "")
			in.Chain = append(in.Chain, hop("CAN", "NZL", RuleRelTo, "", t2))
			return in
		}, RuleBadChain, false, "", "the last hop CAN → NZL on basis rel-to is not GBR → CAN", ""},
		{"chain from another sender", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Sender = "AUS"
			in.Agreement = agreement("AUS", "SECRET")
			return in
		}, RuleBadChain, false, "", "the last hop GBR → CAN on basis rel-to is not AUS → CAN", "naming AUS"},
		{"hop to itself", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain = []HopFact{hop("USA", "USA", RuleOrigin, "", t1), in.Chain[0], in.Chain[1]}
			return in
		}, RuleBadChain, false, "", "hop 1 USA → USA on basis origin goes nowhere", ""},
		{"hop with a bad party code", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain[0].To = body
			return in
		}, RuleBadChain, false, "", "hop 1 names a party code that is not valid", ""},
		{"hop without a send time", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain[0].Sent = zeroTime
			return in
		}, RuleBadChain, false, "", "hop 1 USA → GBR on basis origin has no send time", ""},
		{"hop from the future", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain[1].Sent = now.Add(ClockSkew + time.Second)
			return in
		}, RuleBadChain, false, "", "hop 2 GBR → CAN on basis rel-to was sent more than 5m0s after the time of receipt", ""},
		{"origin hop from someone else", func(t *testing.T) ReceiptInput {
			return base(t, openIn, RuleOrigin, "")
		}, RuleBadChain, false, "", "hop 2 GBR → CAN on basis origin: GBR is not the originator", ""},
		{"laundering: origin hop outside REL TO", func(t *testing.T) ReceiptInput {
			in := base(t, openIn, RuleRelTo, "")
			in.Chain[0] = hop("USA", "GBR", RuleOrigin, "", t1)
			in.Portion = portion(t, 1, "SECRET//REL TO CAN, USA")
			return in
		}, RuleBadChain, false, "", "hop 1 USA → GBR on basis origin: GBR is not in REL TO", ""},
		{"laundering: rel-to re-share of an ORCON portion", func(t *testing.T) ReceiptInput {
			return base(t, orconIn, RuleRelTo, "")
		}, RuleBadChain, false, "", "hop 2 GBR → CAN on basis rel-to: the portion is ORCON", ""},
		{"relay not on the route", func(t *testing.T) ReceiptInput {
			in := base(t, orconIn, RuleRelay, "")
			in.Route = []RouteEntry{{Via: "AUS", To: "CAN"}}
			return in
		}, RuleBadChain, false, "", "USA's signed route does not name GBR as relay to CAN", ""},
		{"relay to a hop outside REL TO", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//REL TO CAN, USA", RuleRelTo, "")
			in.Route = []RouteEntry{{Via: "USA", To: "GBR"}}
			in.Chain[0].Basis = RuleRelay
			return in
		}, RuleBadChain, false, "", "hop 1 USA → GBR on basis relay: GBR is not in REL TO", ""},
		{"consent hop naming a grant for another holder", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G1")
			in.Consents = []Consent{grant("G1", "AUS", "CAN")}
			return in
		}, RuleBadChain, false, "", "no grant G1 of USA lets GBR pass portion 1 of report R1 to CAN at the time it was sent: grant G1 of USA lets another holder pass it, not GBR", ""},
		{"consent hop naming another grant", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, "G2")
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			return in
		}, RuleBadChain, false, "", "no grant G2", ""},
		{"consent hop naming no grant", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleConsent, body)
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			return in
		}, RuleBadChain, false, "", "no grant (an id that is not well formed)", ""},
		{"earlier consent hop with a withdrawn grant", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//REL TO CAN, USA", RuleRelTo, "")
			g := grant("G1", "USA", "GBR")
			g.Holder = "USA"
			g.Withdrawn = true
			in.Consents = []Consent{g}
			in.Chain[0] = hop("USA", "GBR", RuleConsent, "G1", t1)
			return in
		}, RuleBadChain, false, "", "hop 1 USA → GBR on basis consent: no grant G1 of USA lets USA pass portion 1 of report R1 to GBR at the time it was sent: grant G1 of USA was withdrawn", ""},
		{"crisis hop naming another declaration", func(t *testing.T) ReceiptInput {
			in := base(t, orconOut, RuleCrisis, "C2", "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleBadChain, false, "", "no crisis declaration C2 of USA covered it and CAN at the time it was sent", ""},
		{"crisis hop to a party it does not cover", func(t *testing.T) ReceiptInput {
			in := base(t, "SECRET//REL TO CAN, USA//ORCON", RuleRelTo, "", "cyber")
			in.Chain[0] = hop("USA", "GBR", RuleCrisis, "C1", t1)
			in.Crises = []Crisis{crisis("C1")} // AUS and CAN only
			return in
		}, RuleBadChain, false, "", "hop 1 USA → GBR on basis crisis", ""},
		{"unknown basis", func(t *testing.T) ReceiptInput {
			return base(t, openIn, RuleDeliver, "")
		}, RuleBadChain, false, "", "hop 2 GBR → CAN on basis (not a hop basis): that is not a basis of a hop", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(t)
			r := Receipt(in)
			if r.Rule != tt.rule || r.Allowed != tt.allowed || r.Authority != tt.authority {
				t.Fatalf("Receipt = %s %v %q, want %s %v %q\n%s", r.Rule, r.Allowed, r.Authority, tt.rule, tt.allowed, tt.authority, r)
			}
			if !strings.Contains(r.Message, tt.msg) {
				t.Errorf("Message = %q, want it to contain %q", r.Message, tt.msg)
			}
			if !strings.Contains(r.Next, tt.next) {
				t.Errorf("Next = %q, want it to contain %q", r.Next, tt.next)
			}
			if r.Rule != RuleBadInput {
				if r.Banner != in.Portion.Marking.Banner() || r.Party != in.Sender {
					t.Errorf("Banner, Party = %q, %q", r.Banner, r.Party)
				}
				want := "portion 1 is " + r.Banner + " from USA and came to " + in.Recipient + " from " + in.Sender + "; "
				if !strings.HasPrefix(r.Message, want) {
					t.Errorf("Message = %q, want prefix %q", r.Message, want)
				}
			}
			checkReason(t, r)
		})
	}
}
