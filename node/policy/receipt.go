package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/tearline/tearline/node/marking"
)

// HopFact is one verified hop of the chain that carried a portion: From sent
// it to To at Sent on the given basis (RuleOrigin, RuleRelay, RuleRelTo,
// RuleConsent or RuleCrisis). Authority is the grant id for RuleConsent and
// the declaration id for RuleCrisis. The caller has checked From's signature.
type HopFact struct {
	From, To  string
	Sent      time.Time
	Basis     Rule
	Authority string
}

// ReceiptInput is everything Receipt looks at to decide whether recipient X
// accepts one portion of report R (originator O) from sender H.
type ReceiptInput struct {
	Scheme *marking.Scheme // nil means marking.Default
	Now    time.Time

	ReportID   string // R
	Originator string // O
	Recipient  string // X, the deciding node's party
	Sender     string // H, the party of the TLS peer

	SenderSuspended bool       // H is suspended at X
	Agreement       *Agreement // X's agreement with H; nil means none

	Portion Portion

	Route    []RouteEntry // from O's signed header
	Chain    []HopFact    // the hops that carried this portion, origin first; the last is H → X
	Consents []Consent    // grants that came with the envelope, signature-checked
	Crises   []Crisis     // crisis declarations X knows of, signature-checked
}

// Receipt decides whether recipient X accepts portion p of report R from
// sender H (DESIGN §3, receipt), in this order:
//
//  1. H suspended at X → suspended; X has no active agreement with H →
//     no-agreement;
//  2. p above or outside X's agreement with H → agreement-scope;
//  3. p NOFORN → noforn (a NOFORN portion must not arrive anywhere);
//  4. X may not hold p (X is not O, not in REL TO(p), and no grant of O for
//     (R, p, any holder → X) nor crisis declaration of O covering p and X was
//     valid when the last hop was sent) → third-party-rule when p is ORCON,
//     rel-to otherwise;
//  5. the chain is empty, does not start at O, is not contiguous, does not
//     end H → X, has a hop sent more than ClockSkew after Now, or has a hop
//     whose basis X cannot check by itself → bad-chain. The bases:
//     origin (From is O and To in REL TO(p)), relay (O's route names From as
//     relay to To, and To in REL TO(p)), consent (the grant named by
//     Authority covers (R, p, From → To) at Sent), crisis (the declaration
//     named by Authority covers p and To at Sent), rel-to (p not ORCON and
//     To in REL TO(p)).
//
// When it allows, Rule and Authority are the basis of the last hop. A
// malformed input is denied first with RuleBadInput.
func Receipt(in ReceiptInput) Reason {
	s := schemeOrDefault(in.Scheme)
	p := in.Portion
	r := Reason{Index: p.Index}
	if marking.ValidParty(in.Sender) {
		r.Party = in.Sender
	}
	if what := checkReceiptInput(s, in); what != "" {
		return badInput(r, what)
	}
	r.Banner = p.Marking.Banner()
	o, x, h := in.Originator, in.Recipient, in.Sender
	m := p.Marking
	lead := head(p, o) + fmt.Sprintf(" and came to %s from %s", x, h)
	alarm := "quarantine it and raise a security event naming " + h

	// 1.
	if in.SenderSuspended {
		return r.deny(RuleSuspended,
			fmt.Sprintf("%s; %s is suspended at %s", lead, h, x),
			"reinstate "+h)
	}
	if msg, next := agreementProblem(in.Agreement, x, h, in.Now); msg != "" {
		return r.deny(RuleNoAgreement, lead+"; "+msg, next)
	}
	// 2.
	if msg, next := scopeProblem(s, in.Agreement, m, x, h); msg != "" {
		return r.deny(RuleAgreementScope, lead+"; "+msg, next)
	}
	// 3.
	if m.NoForn {
		return r.deny(RuleNoForn,
			fmt.Sprintf("%s; a NOFORN portion never leaves %s", lead, o),
			fmt.Sprintf("a NOFORN portion never leaves %s; %s", o, alarm))
	}
	// 4.
	at := in.Now
	if len(in.Chain) > 0 {
		at = in.Chain[len(in.Chain)-1].Sent
	}
	if !mayHold(s, in, at) {
		note := grantNote(in, at)
		if m.OrCon {
			return r.deny(RuleThirdParty,
				fmt.Sprintf("%s; %s is not in REL TO and holds no consent or crisis declaration of %s for it%s", lead, x, o, note),
				fmt.Sprintf("%s; %s may hold it only with %s's consent", alarm, x, o))
		}
		return r.deny(RuleRelTo,
			fmt.Sprintf("%s; %s is not in REL TO and holds no consent or crisis declaration of %s for it%s", lead, x, o, note),
			fmt.Sprintf("%s; %s may hold it only if %s adds %s to REL TO or consents", alarm, x, o, x))
	}
	// 5.
	if msg := chainProblem(s, in); msg != "" {
		return r.deny(RuleBadChain,
			fmt.Sprintf("%s; %s", lead, msg),
			fmt.Sprintf("%s; %s must send it on a basis %s can check", alarm, h, x))
	}
	last := in.Chain[len(in.Chain)-1]
	authority := ""
	what := ""
	if last.Basis == RuleConsent || last.Basis == RuleCrisis {
		authority = last.Authority
		what = " " + last.Authority
	}
	return r.allow(last.Basis, authority,
		fmt.Sprintf("%s; %s accepts it on a chain of %d %s, the last on basis %s%s",
			lead, x, len(in.Chain), plural(len(in.Chain), "hop", "hops"), last.Basis, what))
}

// checkReceiptInput returns what is malformed in in, or "".
func checkReceiptInput(s *marking.Scheme, in ReceiptInput) string {
	if what := checkParties([]string{"originator", "recipient", "sender"}, in.Originator, in.Recipient, in.Sender); what != "" {
		return what
	}
	switch {
	case in.Sender == in.Recipient:
		return "the sender is the recipient itself"
	case !validID(in.ReportID):
		return "the report id is not well formed"
	case in.Now.IsZero():
		return "no decision time was given"
	}
	return checkPortion(s, in.Portion)
}

// mayHold reports whether the recipient may hold the portion at time at: it
// is the originator, or in REL TO (the caller has ruled out NOFORN), or a
// grant of the originator for the report and portion names it as recipient,
// or a crisis declaration of the originator covers the portion and it.
func mayHold(s *marking.Scheme, in ReceiptInput, at time.Time) bool {
	o, x, m := in.Originator, in.Recipient, in.Portion.Marking
	if x == o || m.RelToContains(x) {
		return true
	}
	for _, c := range in.Consents {
		if c.grants(o, in.ReportID, x, in.Portion.Index, at) {
			return true
		}
	}
	_, ok := findCrisis(s, in.Crises, o, m, x, at)
	return ok
}

// chainProblem returns what is wrong with the chain, naming the offending
// hop, or "".
func chainProblem(s *marking.Scheme, in ReceiptInput) string {
	o := in.Originator
	if len(in.Chain) == 0 {
		return "it came with no hops"
	}
	for i, hop := range in.Chain {
		n := i + 1
		if !marking.ValidParty(hop.From) || !marking.ValidParty(hop.To) {
			return fmt.Sprintf("hop %d names a party code that is not valid", n)
		}
		name := fmt.Sprintf("hop %d %s → %s on basis %s", n, hop.From, hop.To, showBasis(hop.Basis))
		switch {
		case hop.From == hop.To:
			return name + " goes nowhere"
		case i == 0 && hop.From != o:
			return fmt.Sprintf("%s does not start at the originator %s", name, o)
		case i > 0 && hop.From != in.Chain[i-1].To:
			return fmt.Sprintf("%s does not continue from hop %d, which ended at %s", name, i, in.Chain[i-1].To)
		case hop.Sent.IsZero():
			return name + " has no send time"
		case hop.Sent.After(in.Now.Add(ClockSkew)):
			return fmt.Sprintf("%s was sent more than %s after the time of receipt", name, ClockSkew)
		}
	}
	last := in.Chain[len(in.Chain)-1]
	if last.From != in.Sender || last.To != in.Recipient {
		return fmt.Sprintf("the last hop %s → %s on basis %s is not %s → %s", last.From, last.To, showBasis(last.Basis), in.Sender, in.Recipient)
	}
	for i, hop := range in.Chain {
		if why := basisProblem(s, in, hop); why != "" {
			return fmt.Sprintf("hop %d %s → %s on basis %s: %s", i+1, hop.From, hop.To, showBasis(hop.Basis), why)
		}
	}
	return ""
}

// basisProblem returns why the recipient cannot check hop's basis, or "".
func basisProblem(s *marking.Scheme, in ReceiptInput, hop HopFact) string {
	o, m := in.Originator, in.Portion.Marking
	inRelTo := m.RelToContains(hop.To)
	switch hop.Basis {
	case RuleOrigin:
		if hop.From != o {
			return fmt.Sprintf("%s is not the originator", hop.From)
		}
		if !inRelTo {
			return fmt.Sprintf("%s is not in REL TO", hop.To)
		}
	case RuleRelay:
		if !slices.Contains(in.Route, RouteEntry{Via: hop.From, To: hop.To}) {
			return fmt.Sprintf("%s's signed route does not name %s as relay to %s", o, hop.From, hop.To)
		}
		if !inRelTo {
			return fmt.Sprintf("%s is not in REL TO", hop.To)
		}
	case RuleConsent:
		for _, c := range in.Consents {
			if c.ID == hop.Authority && c.Covers(o, in.ReportID, hop.From, hop.To, in.Portion.Index, hop.Sent) {
				return ""
			}
		}
		why := ""
		for _, c := range in.Consents {
			if validID(hop.Authority) && c.ID == hop.Authority {
				why = ": " + grantMismatch(c, o, in.ReportID, hop.From, hop.To, in.Portion.Index, hop.Sent)
				break
			}
		}
		return fmt.Sprintf("no grant %s of %s lets %s pass portion %d of report %s to %s at the time it was sent%s",
			showID(hop.Authority), o, hop.From, in.Portion.Index, in.ReportID, hop.To, why)
	case RuleCrisis:
		for _, c := range in.Crises {
			if c.ID == hop.Authority && c.Covers(s, o, m, hop.To, hop.Sent) {
				return ""
			}
		}
		return fmt.Sprintf("no crisis declaration %s of %s covered it and %s at the time it was sent",
			showID(hop.Authority), o, hop.To)
	case RuleRelTo:
		if m.OrCon {
			return "the portion is ORCON"
		}
		if !inRelTo {
			return fmt.Sprintf("%s is not in REL TO", hop.To)
		}
	default:
		return "that is not a basis of a hop"
	}
	return ""
}

// showBasis returns the basis for a message, or a stand-in when it is not
// one of the five bases of a hop.
func showBasis(b Rule) string {
	switch b {
	case RuleOrigin, RuleRelay, RuleConsent, RuleCrisis, RuleRelTo:
		return string(b)
	}
	return "(not a hop basis)"
}

// grantNote explains, for a recipient that may not hold a portion, why a
// grant of the originator for the report and the recipient does not let
// it (expired, withdrawn, another portion), or returns "" when none names
// it.
func grantNote(in ReceiptInput, at time.Time) string {
	for _, c := range in.Consents {
		if validID(c.ID) && c.Originator == in.Originator && c.ReportID == in.ReportID && c.To == in.Recipient {
			return "; " + grantMismatch(c, in.Originator, in.ReportID, c.Holder, in.Recipient, in.Portion.Index, at)
		}
	}
	return ""
}

// grantMismatch says why grant c (well formed) does not let holder pass
// portion ix of report reportID of originator to party to at time at. It
// names the grant and parties only, never content.
func grantMismatch(c Consent, originator, reportID, holder, to string, ix uint32, at time.Time) string {
	g := "grant " + c.ID
	switch {
	case c.Originator != originator:
		return fmt.Sprintf("%s is not a grant of %s", g, originator)
	case c.ReportID != reportID:
		return fmt.Sprintf("%s of %s is for another report", g, originator)
	case c.Holder != holder:
		return fmt.Sprintf("%s of %s lets another holder pass it, not %s", g, originator, holder)
	case c.To != to:
		return fmt.Sprintf("%s of %s lets it pass to another party, not %s", g, originator, to)
	case c.Withdrawn:
		return fmt.Sprintf("%s of %s was withdrawn", g, originator)
	case !at.Before(c.Expires):
		return fmt.Sprintf("%s of %s expired at %s; the hop was sent at %s", g, originator,
			c.Expires.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	case len(c.Portions) > 0 && !slices.Contains(c.Portions, ix):
		return fmt.Sprintf("%s of %s does not cover portion %d", g, originator, ix)
	}
	return fmt.Sprintf("%s of %s covers it", g, originator)
}
