package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tearline/tearline/node/marking"
)

// This file holds the shared checks and the fixed wording of messages.

// head opens every message about a portion of a known originator.
func head(p Portion, originator string) string {
	return fmt.Sprintf("portion %d is %s from %s", p.Index, p.Marking.Banner(), originator)
}

// badInput is a denial for a malformed input; what names the fault without
// echoing any of the malformed values.
func badInput(r Reason, what string) Reason {
	return r.deny(RuleBadInput,
		fmt.Sprintf("portion %d cannot be decided: %s", r.Index, what),
		"fix the caller: "+what)
}

// checkPortion returns what is wrong with a portion's marking, or "".
func checkPortion(s *marking.Scheme, p Portion) string {
	if p.Marking.Validate(s) != nil {
		return "the portion's marking is not valid under the federation's scheme"
	}
	return ""
}

// checkParties returns what is wrong with the named party codes, or "".
func checkParties(roles []string, codes ...string) string {
	for i, c := range codes {
		if !marking.ValidParty(c) {
			return "the " + roles[i] + " is not a valid party code"
		}
	}
	return ""
}

// agreementProblem returns the message tail and next step when there is no
// active agreement between self and partner, or "", "".
func agreementProblem(a *Agreement, self, partner string, now time.Time) (string, string) {
	switch {
	case a == nil:
		return fmt.Sprintf("%s has no sharing agreement with %s", self, partner),
			"agree a sharing agreement with " + partner
	case a.Partner != partner:
		return fmt.Sprintf("the agreement %s was given is not with %s", self, partner),
			"agree a sharing agreement with " + partner
	case !a.ValidFrom.IsZero() && now.Before(a.ValidFrom):
		return fmt.Sprintf("%s's sharing agreement with %s is not in force yet", self, partner),
			"wait for the sharing agreement with " + partner + " to come into force, or bring it forward"
	case !a.Active(now):
		return fmt.Sprintf("%s's sharing agreement with %s has expired", self, partner),
			"renew the sharing agreement with " + partner
	}
	return "", ""
}

// scopeProblem returns the message tail and next step when m is above or
// outside the (active) agreement a between self and partner, or "", "".
func scopeProblem(s *marking.Scheme, a *Agreement, m marking.Marking, self, partner string) (string, string) {
	ceiling, ok := s.Rank(a.MaxClassification)
	if !ok {
		return fmt.Sprintf("the ceiling of %s's agreement with %s is not a level of the scheme", self, partner),
			"set the ceiling of the agreement with " + partner + " to a level of the scheme"
	}
	if level, _ := s.Rank(m.Classification); level > ceiling {
		return fmt.Sprintf("it is above %s, the ceiling of %s's agreement with %s", a.MaxClassification, self, partner),
			fmt.Sprintf("widen the agreement with %s to %s", partner, m.Classification)
	}
	if len(a.Topics) > 0 {
		var outside []string
		for _, t := range m.Topics {
			if !slices.Contains(a.Topics, t) {
				outside = append(outside, t)
			}
		}
		if len(outside) > 0 {
			return fmt.Sprintf("its %s %s %s outside %s's agreement with %s", plural(len(outside), "topic", "topics"), strings.Join(outside, ", "), plural(len(outside), "is", "are"), self, partner),
				fmt.Sprintf("widen the agreement with %s to cover %s %s", partner, plural(len(outside), "topic", "topics"), strings.Join(outside, ", "))
		}
	}
	return "", ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// consentCommand is the CLI step that asks originator for consent. The
// CLI requires a purpose, so the command shows its placeholder.
func consentCommand(originator, reportID, to string) string {
	return fmt.Sprintf("request consent from %s for %s (tearline consent request %s --to %s --purpose TEXT)", originator, to, reportID, to)
}

// originatorHoldsNext is the next step of a holder's denied release to the
// report's originator: the originator holds its own report, so there is
// nothing to ask for (and it cannot consent to itself).
func originatorHoldsNext(originator string) string {
	return "none: " + originator + " is the report's originator and already holds it"
}

// showID returns id for a message, or a stand-in when it is not well formed.
func showID(id string) string {
	if validID(id) {
		return id
	}
	return "(an id that is not well formed)"
}
