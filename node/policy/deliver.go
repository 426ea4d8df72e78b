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
	return deliver(s, sub, p, true)
}

// MayDeliver decides as Deliver does, by the same code, for a caller that
// needs only the verdict of an allowed delivery: a denial comes with its
// full reason, but an allowed reason has no banner and no message. A
// fan-out asks for every subscriber and portion, and building the allowed
// message took most of the decision's time.
func MayDeliver(s *marking.Scheme, sub Subscriber, p Portion) Reason {
	return deliver(s, sub, p, false)
}

// deliver is Deliver; explain says whether an allowed reason gets its
// banner and message.
func deliver(s *marking.Scheme, sub Subscriber, p Portion, explain bool) Reason {
	s = schemeOrDefault(s)
	r := Reason{Index: p.Index, Party: sub.Name}
	if sub.Name == "" {
		return badInput(r, "the subscriber has no name")
	}
	if what := checkPortion(s, p); what != "" {
		return badInput(r, what)
	}
	m := p.Marking
	clearance, ranked := s.Rank(sub.Clearance)
	level, _ := s.Rank(m.Classification)
	var missing []string
	for _, t := range m.Topics {
		if !slices.Contains(sub.NeedToKnow, t) {
			missing = append(missing, t)
		}
	}
	if !explain && !sub.Suspended && ranked && level <= clearance && len(missing) == 0 {
		return r.allow(RuleDeliver, "", "")
	}

	r.Banner = m.Banner()
	name := "the subscriber"
	if validID(sub.Name) {
		name = "subscriber " + sub.Name
	}
	// Concatenated, not formatted: a fan-out asks this for every
	// subscriber and portion (fmt took 5 % of a node serving 1,000
	// subscribers).
	lead := "portion " + strconv.FormatUint(uint64(p.Index), 10) + " is " + r.Banner
	switch {
	case sub.Suspended:
		return r.deny(RuleSuspended,
			fmt.Sprintf("%s; %s is suspended", lead, name),
			"reinstate "+name)
	case !ranked:
		return r.deny(RuleClearance,
			fmt.Sprintf("%s; %s has no clearance that is a level of the scheme", lead, name),
			fmt.Sprintf("clear %s to %s", name, m.Classification))
	case level > clearance:
		return r.deny(RuleClearance,
			fmt.Sprintf("%s; %s is cleared only to %s", lead, name, sub.Clearance),
			fmt.Sprintf("clear %s to %s", name, m.Classification))
	case len(missing) > 0:
		topics := plural(len(missing), "topic", "topics") + " " + strings.Join(missing, ", ")
		return r.deny(RuleNeedToKnow,
			fmt.Sprintf("%s; its %s %s outside the need-to-know of %s", lead, topics, plural(len(missing), "is", "are"), name),
			fmt.Sprintf("add %s to the need-to-know of %s", topics, name))
	}
	return r.allow(RuleDeliver, "", lead+"; "+name+" is cleared for it and has the need-to-know")
}
