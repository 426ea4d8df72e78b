package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/tearline/tearline/node/marking"
)

// ReleaseInput is everything Release looks at to decide whether holder H may
// release one portion of report R (originator O) to partner X.
type ReleaseInput struct {
	Scheme *marking.Scheme // nil means marking.Default
	Now    time.Time

	ReportID   string // R
	Originator string // O
	Holder     string // H, the deciding node's party
	To         string // X, the partner

	Portion Portion

	Suspended bool         // X is suspended at H
	Agreement *Agreement   // H's agreement with X; nil means none
	Route     []RouteEntry // from O's signed header
	Consents  []Consent    // grants H has (any report or party; Release picks the one that matches)
	Crises    []Crisis     // crisis declarations H knows of (any originator)
}

// Release decides whether holder H may release portion p of report R to
// partner X, applying rules 1-5 of DESIGN §3 in that order:
//
//  1. X suspended at H → suspended; no active agreement with X → no-agreement;
//  2. p above the agreement's ceiling or a topic of p outside it → agreement-scope;
//  3. p NOFORN → noforn, whoever H is;
//  4. H = O: X in REL TO(p) → origin; an active crisis declaration of O
//     covering p and X → crisis; else deny rel-to;
//  5. H ≠ O: O's route names H as relay to X and X in REL TO(p) → relay;
//     a grant of O for (R, p, H → X) → consent (X may be outside REL TO:
//     the originator decides); a crisis declaration of O covering p and X →
//     crisis; p not ORCON and X in REL TO(p) → rel-to; else deny:
//     originator-holds when X = O (O holds its report and cannot consent
//     to itself), otherwise third-party-rule when p is ORCON, rel-to when
//     it is not.
//
// A malformed input is denied first with RuleBadInput (see the package
// documentation).
func Release(in ReleaseInput) Reason {
	s := schemeOrDefault(in.Scheme)
	p := in.Portion
	r := Reason{Index: p.Index}
	if marking.ValidParty(in.To) {
		r.Party = in.To
	}
	if what := checkReleaseInput(s, in); what != "" {
		return badInput(r, what)
	}
	r.Banner = p.Marking.Banner()
	o, h, x := in.Originator, in.Holder, in.To
	m := p.Marking
	lead := head(p, o)

	// Rule 1.
	if in.Suspended {
		return r.deny(RuleSuspended,
			fmt.Sprintf("%s; %s is suspended at %s", lead, x, h),
			"reinstate "+x)
	}
	if msg, next := agreementProblem(in.Agreement, h, x, in.Now); msg != "" {
		return r.deny(RuleNoAgreement, lead+"; "+msg, next)
	}
	// Rule 2.
	if msg, next := scopeProblem(s, in.Agreement, m, h, x); msg != "" {
		return r.deny(RuleAgreementScope, lead+"; "+msg, next)
	}
	// Rule 3.
	if m.NoForn {
		msg := fmt.Sprintf("%s; a NOFORN portion never leaves %s", lead, o)
		if h != o {
			msg += fmt.Sprintf(", so %s should not hold it", h)
		}
		return r.deny(RuleNoForn, msg, "a NOFORN portion never leaves "+o)
	}
	// Rule 4.
	if h == o {
		if m.RelToContains(x) {
			return r.allow(RuleOrigin, "",
				fmt.Sprintf("%s; %s releases it to %s, which is in REL TO", lead, o, x))
		}
		if c, ok := findCrisis(s, in.Crises, o, m, x, in.Now); ok {
			return r.allow(RuleCrisis, c.ID,
				fmt.Sprintf("%s; crisis declaration %s of %s covers it and %s", lead, c.ID, o, x))
		}
		return r.deny(RuleRelTo,
			fmt.Sprintf("%s; %s is not in REL TO and no crisis declaration of %s covers it", lead, x, o),
			fmt.Sprintf("re-mark portion %d to add %s to REL TO", p.Index, x))
	}
	// Rule 5.
	routed := slices.Contains(in.Route, RouteEntry{Via: h, To: x})
	if routed && m.RelToContains(x) {
		return r.allow(RuleRelay, "",
			fmt.Sprintf("%s; %s's signed route names %s as relay to %s, which is in REL TO", lead, o, h, x))
	}
	for _, c := range in.Consents {
		if c.Covers(o, in.ReportID, h, x, p.Index, in.Now) {
			return r.allow(RuleConsent, c.ID,
				fmt.Sprintf("%s; grant %s from %s lets %s pass it to %s", lead, c.ID, o, h, x))
		}
	}
	if c, ok := findCrisis(s, in.Crises, o, m, x, in.Now); ok {
		return r.allow(RuleCrisis, c.ID,
			fmt.Sprintf("%s; crisis declaration %s of %s covers it and %s", lead, c.ID, o, x))
	}
	if !m.OrCon && m.RelToContains(x) {
		return r.allow(RuleRelTo, "",
			fmt.Sprintf("%s; it is not ORCON and %s is in REL TO, so %s may pass it on", lead, x, h))
	}
	if x == o {
		// Passing a report back to its originator is never needed, and
		// the originator cannot consent to itself: nothing would allow
		// it, so neither third-party-rule (whose next step is consent)
		// nor rel-to (a re-marking) decides it.
		return r.deny(RuleOriginatorHolds,
			fmt.Sprintf("%s; %s is its originator and already holds it, so %s need not pass it back", lead, o, h),
			originatorHoldsNext(o))
	}
	note := releaseNote(in, routed)
	if m.OrCon {
		return r.deny(RuleThirdParty,
			fmt.Sprintf("%s; %s may pass it to %s only with %s's consent%s", lead, h, x, o, note),
			consentCommand(o, in.ReportID, x))
	}
	return r.deny(RuleRelTo,
		fmt.Sprintf("%s; %s is not in REL TO and %s holds no consent or crisis declaration of %s for it%s", lead, x, h, o, note),
		fmt.Sprintf("ask %s to add %s to REL TO, or %s", o, x, consentCommand(o, in.ReportID, x)))
}

// BackToOriginator is the denial, with [RuleOriginatorHolds], of holder's
// passing report reportID as a whole back to its originator: what a node
// answers before deciding any portion. The originator holds every portion
// a holder can have, since a holder can neither add a portion nor change
// one (the originator's signed header covers each by its digest). The
// reason names no portion (Index 0, no Banner).
func BackToOriginator(reportID, originator, holder string) Reason {
	r := Reason{}
	if marking.ValidParty(originator) {
		r.Party = originator
	}
	what := checkParties([]string{"originator", "holder"}, originator, holder)
	switch {
	case what != "":
	case originator == holder:
		what = "the holder is the originator itself"
	case !validID(reportID):
		what = "the report id is not well formed"
	}
	if what != "" {
		return r.deny(RuleBadInput, "the report cannot be decided: "+what, "fix the caller: "+what)
	}
	return r.deny(RuleOriginatorHolds,
		fmt.Sprintf("report %s is from %s; %s is its originator and already holds it, so %s need not pass it back", reportID, originator, originator, holder),
		originatorHoldsNext(originator))
}

// checkReleaseInput returns what is malformed in in, or "".
func checkReleaseInput(s *marking.Scheme, in ReleaseInput) string {
	if what := checkParties([]string{"originator", "holder", "recipient"}, in.Originator, in.Holder, in.To); what != "" {
		return what
	}
	switch {
	case in.To == in.Holder:
		return "the recipient is the holder itself"
	case !validID(in.ReportID):
		return "the report id is not well formed"
	case in.Now.IsZero():
		return "no decision time was given"
	}
	return checkPortion(s, in.Portion)
}

// findCrisis returns the first declaration of originator that covers m and
// party at time at.
func findCrisis(s *marking.Scheme, cs []Crisis, originator string, m marking.Marking, party string, at time.Time) (Crisis, bool) {
	for _, c := range cs {
		if c.Covers(s, originator, m, party, at) {
			return c, true
		}
	}
	return Crisis{}, false
}

// releaseNote explains a near miss of a denied release: a route that names
// the holder but not for a recipient in REL TO, or a grant for exactly this
// transfer that was withdrawn or has expired.
func releaseNote(in ReleaseInput, routed bool) string {
	o, h, x := in.Originator, in.Holder, in.To
	for _, c := range in.Consents {
		if !validID(c.ID) || c.Originator != o || c.ReportID != in.ReportID || c.Holder != h || c.To != x {
			continue
		}
		if len(c.Portions) > 0 && !slices.Contains(c.Portions, in.Portion.Index) {
			continue
		}
		if c.Withdrawn {
			return fmt.Sprintf(" (grant %s was withdrawn)", c.ID)
		}
		if !in.Now.Before(c.Expires) {
			return fmt.Sprintf(" (grant %s has expired)", c.ID)
		}
	}
	if routed {
		return fmt.Sprintf(" (the route names %s as relay to %s, but %s is not in REL TO)", h, x, x)
	}
	return ""
}
