package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tearline/tearline/node/marking"
)

// Subscriber is a local subscriber of a node (same party as the node).
type Subscriber struct {
	Name       string
	Clearance  string   // a level of the scheme
	NeedToKnow []string // topics
	Suspended  bool
}

// Deliver decides whether a node may deliver portion p to its local
// subscriber sub (DESIGN §3, delivery), in this order: a suspended subscriber
// is denied (RuleSuspended); a clearance below p's classification, or one
// that is not a level of scheme s, is denied (RuleClearance); a topic of p
// outside sub's need-to-know is denied (RuleNeedToKnow; a portion with no
// topics needs none). Otherwise it allows with RuleDeliver. A nil scheme
// means marking.Default; a malformed portion or an empty subscriber name is
// denied first with RuleBadInput.
func Deliver(s *marking.Scheme, sub Subscriber, p Portion) Reason {
	s = schemeOrDefault(s)
	r := Reason{Index: p.Index, Party: sub.Name}
	if sub.Name == "" {
		return badInput(r, "the subscriber has no name")
	}
	if what := checkPortion(s, p); what != "" {
		return badInput(r, what)
	}
	r.Banner = p.Marking.Banner()
	m := p.Marking
	name := "the subscriber"
	if validID(sub.Name) {
		name = "subscriber " + sub.Name
	}
	// Concatenated, not formatted: a fan-out asks this for every
	// subscriber and portion (fmt took 5 % of a node serving 1,000
	// subscribers).
	lead := "portion " + strconv.FormatUint(uint64(p.Index), 10) + " is " + r.Banner

	if sub.Suspended {
		return r.deny(RuleSuspended,
			fmt.Sprintf("%s; %s is suspended", lead, name),
			"reinstate "+name)
	}
	clearance, ok := s.Rank(sub.Clearance)
	if !ok {
		return r.deny(RuleClearance,
			fmt.Sprintf("%s; %s has no clearance that is a level of the scheme", lead, name),
			fmt.Sprintf("clear %s to %s", name, m.Classification))
	}
	if level, _ := s.Rank(m.Classification); level > clearance {
		return r.deny(RuleClearance,
			fmt.Sprintf("%s; %s is cleared only to %s", lead, name, sub.Clearance),
			fmt.Sprintf("clear %s to %s", name, m.Classification))
	}
	var missing []string
	for _, t := range m.Topics {
		if !slices.Contains(sub.NeedToKnow, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		topics := plural(len(missing), "topic", "topics") + " " + strings.Join(missing, ", ")
		return r.deny(RuleNeedToKnow,
			fmt.Sprintf("%s; its %s %s outside the need-to-know of %s", lead, topics, plural(len(missing), "is", "are"), name),
			fmt.Sprintf("add %s to the need-to-know of %s", topics, name))
	}
	return r.allow(RuleDeliver, "", lead+"; "+name+" is cleared for it and has the need-to-know")
}
