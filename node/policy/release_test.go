package policy

import (
	"strings"
	"testing"

	"github.com/tearline/tearline/node/marking"
)

func TestRelease(t *testing.T) {
	// base: holder GBR (not the originator USA) passes portion 1 to CAN.
	base := func(t *testing.T, banner string, topics ...string) ReleaseInput {
		return ReleaseInput{
			Now: now, ReportID: "R1", Originator: "USA", Holder: "GBR", To: "CAN",
			Portion:   portion(t, 1, banner, topics...),
			Agreement: agreement("CAN", "TOP SECRET"),
		}
	}
	// atOrigin: the originator USA releases to CAN.
	atOrigin := func(t *testing.T, banner string, topics ...string) ReleaseInput {
		in := base(t, banner, topics...)
		in.Holder = "USA"
		return in
	}
	const (
		orconIn   = "SECRET//REL TO CAN, GBR, USA//ORCON"
		orconOut  = "SECRET//REL TO GBR, USA//ORCON"
		openIn    = "SECRET//REL TO CAN, GBR, USA"
		openOut   = "SECRET//REL TO GBR, USA"
		noforn    = "SECRET//NOFORN"
		tsOrconIn = "TOP SECRET//REL TO CAN, GBR, USA//ORCON"
	)
	tests := []struct {
		name      string
		in        func(t *testing.T) ReleaseInput
		rule      Rule
		allowed   bool
		authority string
		msg       string // substring of Message
		next      string // substring of Next
	}{
		// Input checks come before the rules.
		{"bad input: marking not valid", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.Portion.Marking.Classification = "SECRT"
			return in
		}, RuleBadInput, false, "", "marking is not valid", "fix the caller"},
		{"bad input: noforn with rel to", func(t *testing.T) ReleaseInput {
			in := base(t, noforn)
			in.Portion.Marking.RelTo = []string{"CAN"}
			return in
		}, RuleBadInput, false, "", "not valid", "fix the caller"},
		{"bad input: recipient is holder", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.To = "GBR"
			return in
		}, RuleBadInput, false, "", "holder itself", ""},
		{"bad input: party code", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.To = "can"
			return in
		}, RuleBadInput, false, "", "recipient is not a valid party code", ""},
		{"bad input: originator code", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.Originator = ""
			return in
		}, RuleBadInput, false, "", "originator is not a valid party code", ""},
		{"bad input: report id", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.ReportID = "R 1"
			return in
		}, RuleBadInput, false, "", "report id", ""},
		{"bad input: no time", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.Now = zeroTime
			return in
		}, RuleBadInput, false, "", "no decision time", ""},

		// Rule 1: suspended, then no-agreement; suspended wins over everything.
		{"suspended wins over everything", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, noforn)
			in.Suspended = true
			in.Agreement = nil
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleSuspended, false, "", "CAN is suspended at USA", "reinstate CAN"},
		{"suspended even inside REL TO", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Suspended = true
			return in
		}, RuleSuspended, false, "", "suspended", "reinstate CAN"},
		{"no agreement", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, noforn)
			in.Agreement = nil
			return in
		}, RuleNoAgreement, false, "", "USA has no sharing agreement with CAN", "agree a sharing agreement with CAN"},
		{"expired agreement", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.ValidUntil = now.Add(-day)
			return in
		}, RuleNoAgreement, false, "", "has expired", "renew the sharing agreement with CAN"},
		{"agreement ends exactly now", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.ValidUntil = now
			return in
		}, RuleNoAgreement, false, "", "has expired", ""},
		{"agreement without an end", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.ValidUntil = zeroTime
			return in
		}, RuleNoAgreement, false, "", "", "renew"},
		{"agreement not yet in force", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.ValidFrom = now.Add(day)
			return in
		}, RuleNoAgreement, false, "", "not in force yet", "come into force"},
		{"agreement starts exactly now", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.ValidFrom = now
			return in
		}, RuleOrigin, true, "", "", ""},
		{"agreement without a start", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.ValidFrom = zeroTime
			return in
		}, RuleOrigin, true, "", "", ""},
		{"agreement with another partner", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.Partner = "AUS"
			return in
		}, RuleNoAgreement, false, "", "not with CAN", "agree a sharing agreement with CAN"},
		{"no agreement wins over scope and noforn", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, "TOP SECRET//NOFORN")
			in.Agreement.MaxClassification = "RESTRICTED"
			in.Agreement.ValidUntil = now.Add(-1)
			return in
		}, RuleNoAgreement, false, "", "", ""},

		// Rule 2: agreement scope.
		{"above the ceiling", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, tsOrconIn)
			in.Agreement.MaxClassification = "SECRET"
			return in
		}, RuleAgreementScope, false, "", "above SECRET, the ceiling of USA's agreement with CAN", "widen the agreement with CAN to TOP SECRET"},
		{"at the ceiling", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.MaxClassification = "SECRET"
			return in
		}, RuleOrigin, true, "", "", ""},
		{"scope wins over noforn", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, "TOP SECRET//NOFORN")
			in.Agreement.MaxClassification = "SECRET"
			return in
		}, RuleAgreementScope, false, "", "", ""},
		{"ceiling not a level", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, "UNCLASSIFIED//REL TO CAN")
			in.Agreement.MaxClassification = "secret"
			return in
		}, RuleAgreementScope, false, "", "not a level", "set the ceiling"},
		{"topic outside the agreement", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn, "cyber", "nuclear", "space")
			in.Agreement.Topics = []string{"cyber"}
			return in
		}, RuleAgreementScope, false, "", "its topics nuclear, space are outside USA's agreement with CAN", "widen the agreement with CAN to cover topics nuclear, space"},
		{"topics inside the agreement", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn, "cyber")
			in.Agreement.Topics = []string{"cyber", "flood"}
			return in
		}, RuleOrigin, true, "", "", ""},
		{"untopiced portion inside a topical agreement", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn)
			in.Agreement.Topics = []string{"cyber"}
			return in
		}, RuleOrigin, true, "", "", ""},
		{"agreement without topics admits any", func(t *testing.T) ReleaseInput {
			return atOrigin(t, orconIn, "anything", "else")
		}, RuleOrigin, true, "", "", ""},

		// Rule 3: NOFORN, whoever the holder is.
		{"noforn at the originator, even with a crisis", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, noforn, "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleNoForn, false, "", "a NOFORN portion never leaves USA", "a NOFORN portion never leaves USA"},
		{"noforn at a holder, even with consent and a route", func(t *testing.T) ReleaseInput {
			in := base(t, noforn, "cyber")
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			in.Crises = []Crisis{crisis("C1")}
			in.Route = []RouteEntry{{Via: "GBR", To: "CAN"}}
			return in
		}, RuleNoForn, false, "", "so GBR should not hold it", "never leaves USA"},

		// Rule 4: at the originator.
		{"origin inside REL TO", func(t *testing.T) ReleaseInput {
			return atOrigin(t, orconIn)
		}, RuleOrigin, true, "", "USA releases it to CAN, which is in REL TO", ""},
		{"origin inside REL TO wins over crisis", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconIn, "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleOrigin, true, "", "", ""},
		{"origin outside REL TO", func(t *testing.T) ReleaseInput {
			return atOrigin(t, orconOut)
		}, RuleRelTo, false, "", "CAN is not in REL TO and no crisis declaration of USA covers it", "re-mark portion 1 to add CAN to REL TO"},
		{"origin outside REL TO, a grant does not help the originator", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut)
			in.Consents = []Consent{grant("G1", "USA", "CAN")}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleCrisis, true, "C1", "crisis declaration C1 of USA covers it and CAN", ""},
		{"origin crisis at its ceiling with several topics", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber", "flood")
			c := crisis("C1")
			c.Topics = []string{"a", "cyber", "flood"}
			in.Crises = []Crisis{c}
			return in
		}, RuleCrisis, true, "C1", "", ""},
		{"origin crisis expired", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			c := crisis("C1")
			c.Expires = now
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis ended", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			c := crisis("C1")
			c.Ended = true
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis of other topics", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber", "nuclear")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis over its max", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, "TOP SECRET//REL TO GBR, USA", "cyber")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis max not a level", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, "UNCLASSIFIED//REL TO GBR, USA", "cyber")
			c := crisis("C1")
			c.MaxClassification = ""
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis for other parties", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			c := crisis("C1")
			c.Parties = []string{"AUS", "NZL"}
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis and an untopiced portion", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut)
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis of another originator", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			c := crisis("C1")
			c.Originator = "GBR"
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis without a well-formed id", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			in.Crises = []Crisis{crisis("")}
			return in
		}, RuleRelTo, false, "", "", ""},
		{"origin crisis: the first covering declaration is the authority", func(t *testing.T) ReleaseInput {
			in := atOrigin(t, orconOut, "cyber")
			ended := crisis("C0")
			ended.Ended = true
			in.Crises = []Crisis{ended, crisis("C1"), crisis("C2")}
			return in
		}, RuleCrisis, true, "C1", "", ""},

		// Rule 5: relay.
		{"relay", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.Route = []RouteEntry{{Via: "AUS", To: "NZL"}, {Via: "GBR", To: "CAN"}}
			return in
		}, RuleRelay, true, "", "USA's signed route names GBR as relay to CAN, which is in REL TO", ""},
		{"relay wins over consent", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.Route = []RouteEntry{{Via: "GBR", To: "CAN"}}
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			return in
		}, RuleRelay, true, "", "", ""},
		{"relay requires the recipient in REL TO", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Route = []RouteEntry{{Via: "GBR", To: "CAN"}}
			return in
		}, RuleThirdParty, false, "", "the route names GBR as relay to CAN, but CAN is not in REL TO", "request consent from USA for CAN"},
		{"relay for another hub", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.Route = []RouteEntry{{Via: "AUS", To: "CAN"}, {Via: "GBR", To: "NZL"}}
			return in
		}, RuleThirdParty, false, "", "", ""},

		// Rule 5: consent.
		{"consent outside REL TO", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G1", "GBR", "CAN", 1)}
			return in
		}, RuleConsent, true, "G1", "grant G1 from USA lets GBR pass it to CAN", ""},
		{"consent for all portions", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			return in
		}, RuleConsent, true, "G1", "", ""},
		{"consent listing several portions", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G1", "GBR", "CAN", 0, 1, 2)}
			return in
		}, RuleConsent, true, "G1", "", ""},
		{"consent wins over crisis", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut, "cyber")
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleConsent, true, "G1", "", ""},
		{"consent: the first covering grant is the authority", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G0", "GBR", "AUS"), grant("G1", "GBR", "CAN"), grant("G2", "GBR", "CAN")}
			return in
		}, RuleConsent, true, "G1", "", ""},
		{"consent withdrawn", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			g := grant("G1", "GBR", "CAN")
			g.Withdrawn = true
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "grant G1 was withdrawn", "request consent from USA for CAN (tearline consent request R1 --to CAN --purpose TEXT)"},
		{"consent expired", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			g := grant("G1", "GBR", "CAN")
			g.Expires = now
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "grant G1 has expired", ""},
		{"consent for another holder", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G1", "AUS", "CAN")}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"consent for another recipient", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G1", "GBR", "NZL")}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"consent for another report", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			g := grant("G1", "GBR", "CAN")
			g.ReportID = "R2"
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"consent for another portion", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G1", "GBR", "CAN", 0, 2)}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"consent signed by someone else", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			g := grant("G1", "GBR", "CAN")
			g.Originator = "GBR"
			in.Consents = []Consent{g}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"consent without a well-formed id", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut)
			in.Consents = []Consent{grant("G 1", "GBR", "CAN")}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"consent for a non-ORCON portion outside REL TO", func(t *testing.T) ReleaseInput {
			in := base(t, openOut)
			in.Consents = []Consent{grant("G1", "GBR", "CAN")}
			return in
		}, RuleConsent, true, "G1", "", ""},

		// Rule 5: crisis.
		{"crisis at a holder", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut, "flood")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleCrisis, true, "C1", "crisis declaration C1 of USA covers it and CAN", ""},
		{"crisis at a holder expired", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut, "flood")
			c := crisis("C1")
			c.Expires = now.Add(-1)
			in.Crises = []Crisis{c}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"crisis at a holder ended", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut, "flood")
			c := crisis("C1")
			c.Ended = true
			in.Crises = []Crisis{c}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"crisis at a holder of other topics", func(t *testing.T) ReleaseInput {
			in := base(t, orconOut, "nuclear")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"crisis at a holder over its max", func(t *testing.T) ReleaseInput {
			in := base(t, "TOP SECRET//REL TO GBR, USA//ORCON", "flood")
			in.Crises = []Crisis{crisis("C1")}
			return in
		}, RuleThirdParty, false, "", "", ""},
		{"crisis at a holder of another originator", func(t *testing.T) ReleaseInput {
			in := base(t, openOut, "flood")
			c := crisis("C1")
			c.Originator = "GBR"
			in.Crises = []Crisis{c}
			return in
		}, RuleRelTo, false, "", "", ""},

		// Rule 5: rel-to and the final denials.
		{"rel-to re-share of a non-ORCON portion", func(t *testing.T) ReleaseInput {
			return base(t, openIn)
		}, RuleRelTo, true, "", "it is not ORCON and CAN is in REL TO, so GBR may pass it on", ""},
		{"third-party rule: ORCON inside REL TO", func(t *testing.T) ReleaseInput {
			return base(t, orconIn)
		}, RuleThirdParty, false, "", "portion 1 is SECRET//REL TO CAN, GBR, USA//ORCON from USA; GBR may pass it to CAN only with USA's consent", "request consent from USA for CAN (tearline consent request R1 --to CAN --purpose TEXT)"},
		{"third-party rule: ORCON outside REL TO", func(t *testing.T) ReleaseInput {
			return base(t, orconOut)
		}, RuleThirdParty, false, "", "portion 1 is SECRET//REL TO GBR, USA//ORCON from USA; GBR may pass it to CAN only with USA's consent", "request consent from USA for CAN"},
		{"rel-to: non-ORCON outside REL TO", func(t *testing.T) ReleaseInput {
			return base(t, openOut)
		}, RuleRelTo, false, "", "CAN is not in REL TO and GBR holds no consent or crisis declaration of USA for it", "ask USA to add CAN to REL TO"},
		{"rel-to: untopiced non-ORCON portion without REL TO", func(t *testing.T) ReleaseInput {
			return base(t, "UNCLASSIFIED")
		}, RuleRelTo, false, "", "", "ask USA to add CAN to REL TO"},
		{"holder passes back to the originator inside REL TO", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.To = "USA"
			in.Agreement = agreement("USA", "TOP SECRET")
			in.Portion.Marking.OrCon = false
			return in
		}, RuleRelTo, true, "", "", ""},
		{"holder passes an ORCON portion back to the originator", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.To = "USA"
			in.Agreement = agreement("USA", "TOP SECRET")
			return in
		}, RuleOriginatorHolds, false, "", "portion 1 is SECRET//REL TO CAN, GBR, USA//ORCON from USA; USA is its originator and already holds it, so GBR need not pass it back", "none: USA is the report's originator and already holds it"},
		{"holder passes a portion back to the originator outside REL TO", func(t *testing.T) ReleaseInput {
			in := base(t, "SECRET//REL TO CAN, GBR")
			in.To = "USA"
			in.Agreement = agreement("USA", "TOP SECRET")
			return in
		}, RuleOriginatorHolds, false, "", "portion 1 is SECRET//REL TO CAN, GBR from USA; USA is its originator and already holds it, so GBR need not pass it back", "none: USA is the report's originator and already holds it"},
		{"holder passes back to the originator with a route that names it", func(t *testing.T) ReleaseInput {
			in := base(t, orconIn)
			in.To = "USA"
			in.Agreement = agreement("USA", "TOP SECRET")
			in.Route = []RouteEntry{{Via: "GBR", To: "USA"}}
			return in
		}, RuleRelay, true, "", "", ""},
		{"custom scheme", func(t *testing.T) ReleaseInput {
			s, err := marking.NewScheme([]string{"OFFICIAL", "SECRET"})
			if err != nil {
				t.Fatal(err)
			}
			in := atOrigin(t, "UNCLASSIFIED//REL TO CAN")
			in.Scheme = s
			in.Portion.Marking.Classification = "OFFICIAL"
			in.Agreement.MaxClassification = "OFFICIAL"
			return in
		}, RuleOrigin, true, "", "portion 1 is OFFICIAL//REL TO CAN from USA", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(t)
			r := Release(in)
			if r.Rule != tt.rule || r.Allowed != tt.allowed || r.Authority != tt.authority {
				t.Fatalf("Release = %s %v %q, want %s %v %q\n%s", r.Rule, r.Allowed, r.Authority, tt.rule, tt.allowed, tt.authority, r)
			}
			if !strings.Contains(r.Message, tt.msg) {
				t.Errorf("Message = %q, want it to contain %q", r.Message, tt.msg)
			}
			if !strings.Contains(r.Next, tt.next) {
				t.Errorf("Next = %q, want it to contain %q", r.Next, tt.next)
			}
			if r.Index != in.Portion.Index {
				t.Errorf("Index = %d", r.Index)
			}
			if r.Rule != RuleBadInput {
				if r.Banner != in.Portion.Marking.Banner() || r.Party != in.To {
					t.Errorf("Banner, Party = %q, %q", r.Banner, r.Party)
				}
				if !strings.HasPrefix(r.Message, "portion 1 is "+r.Banner+" from USA; ") {
					t.Errorf("Message does not name the portion: %q", r.Message)
				}
			}
			checkReason(t, r)
		})
	}
}

// TestReleaseDoesNotModifyInput checks that Release leaves its input as it was.
func TestReleaseDoesNotModifyInput(t *testing.T) {
	in := ReleaseInput{
		Now: now, ReportID: "R1", Originator: "USA", Holder: "GBR", To: "CAN",
		Portion:   portion(t, 1, "SECRET//REL TO GBR, USA//ORCON", "cyber"),
		Agreement: agreement("CAN", "SECRET", "cyber"),
		Consents:  []Consent{grant("G2", "GBR", "CAN", 2, 1)},
		Crises:    []Crisis{crisis("C1")},
	}
	before := Release(in)
	if in.Consents[0].Portions[0] != 2 || in.Portion.Marking.RelTo[0] != "GBR" {
		t.Fatal("Release modified its input")
	}
	if after := Release(in); after != before {
		t.Fatalf("Release is not deterministic: %s then %s", before, after)
	}
}

// TestReleaseNextSteps pins the whole text of the denials whose next step is
// a command or says that there is none: the command must work when
// followed (the CLI requires --purpose), and a holder is never told to ask
// the originator for consent to pass a report back to that originator.
func TestReleaseNextSteps(t *testing.T) {
	in := func(t *testing.T, banner, to string) ReleaseInput {
		return ReleaseInput{
			Now: now, ReportID: "R1", Originator: "USA", Holder: "GBR", To: to,
			Portion:   portion(t, 1, banner),
			Agreement: agreement(to, "TOP SECRET"),
		}
	}
	tests := []struct {
		name      string
		in        ReleaseInput
		rule      Rule
		msg, next string
	}{
		{"ORCON to a third party", in(t, "SECRET//REL TO CAN, GBR, USA//ORCON", "CAN"), RuleThirdParty,
			"portion 1 is SECRET//REL TO CAN, GBR, USA//ORCON from USA; GBR may pass it to CAN only with USA's consent",
			"request consent from USA for CAN (tearline consent request R1 --to CAN --purpose TEXT)"},
		{"outside REL TO to a third party", in(t, "SECRET//REL TO GBR, USA", "CAN"), RuleRelTo,
			"portion 1 is SECRET//REL TO GBR, USA from USA; CAN is not in REL TO and GBR holds no consent or crisis declaration of USA for it",
			"ask USA to add CAN to REL TO, or request consent from USA for CAN (tearline consent request R1 --to CAN --purpose TEXT)"},
		{"ORCON back to the originator", in(t, "SECRET//REL TO CAN, GBR, USA//ORCON", "USA"), RuleOriginatorHolds,
			"portion 1 is SECRET//REL TO CAN, GBR, USA//ORCON from USA; USA is its originator and already holds it, so GBR need not pass it back",
			"none: USA is the report's originator and already holds it"},
		{"outside REL TO back to the originator", in(t, "SECRET//REL TO CAN, GBR", "USA"), RuleOriginatorHolds,
			"portion 1 is SECRET//REL TO CAN, GBR from USA; USA is its originator and already holds it, so GBR need not pass it back",
			"none: USA is the report's originator and already holds it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Release(tt.in)
			if r.Allowed || r.Rule != tt.rule {
				t.Fatalf("Release = %s", r)
			}
			if r.Message != tt.msg {
				t.Errorf("Message = %q\nwant      %q", r.Message, tt.msg)
			}
			if r.Next != tt.next {
				t.Errorf("Next = %q\nwant   %q", r.Next, tt.next)
			}
			if tt.in.To == tt.in.Originator && strings.Contains(r.Next, "consent") {
				t.Errorf("Next advises consent for a release back to the originator: %q", r.Next)
			}
			checkReason(t, r)
		})
	}
}

// BackToOriginator refuses a whole report back to its originator with the
// wording of Release's denial of a portion back to it, and never advises
// consent; a malformed input is a fault of the caller.
func TestBackToOriginator(t *testing.T) {
	r := BackToOriginator("R1", "USA", "GBR")
	if r.Allowed || r.Rule != RuleOriginatorHolds || r.Party != "USA" || r.Index != 0 || r.Banner != "" {
		t.Fatalf("BackToOriginator = %+v", r)
	}
	if want := "report R1 is from USA; USA is its originator and already holds it, so GBR need not pass it back"; r.Message != want {
		t.Errorf("Message = %q\nwant      %q", r.Message, want)
	}
	if want := "none: USA is the report's originator and already holds it"; r.Next != want {
		t.Errorf("Next = %q\nwant   %q", r.Next, want)
	}
	checkReason(t, r)
	for _, in := range [][3]string{{"R1", "USA", "USA"}, {"R 1", "USA", "GBR"}, {"R1", "usa", "GBR"}, {"R1", "USA", ""}} {
		r := BackToOriginator(in[0], in[1], in[2])
		if r.Allowed || r.Rule != RuleBadInput || strings.Contains(r.Message, "R 1") || strings.Contains(r.Message, "usa") {
			t.Errorf("BackToOriginator(%q) = %s", in, r)
		}
		checkReason(t, r)
	}
}
