package marking

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every error of Marking.Validate and
// NormalizeTopics.
var ErrInvalid = errors.New("marking: invalid marking")

// Marking is the marking of one portion. The zero value is not valid (it has
// no classification); check a marking built by hand with Validate.
type Marking struct {
	// Classification is the canonical name of a level of the scheme, for
	// example "TOP SECRET".
	Classification string
	// RelTo lists the party codes the originator authorises, sorted
	// ascending, without repeats. Empty means no REL TO control.
	RelTo []string
	// NoForn is the NOFORN control: the portion never leaves the originator.
	NoForn bool
	// OrCon is the ORCON control (the third-party rule).
	OrCon bool
	// Topics are the need-to-know topics, sorted ascending, without repeats
	// (see NormalizeTopics). They are not part of the banner; Parse leaves
	// them empty.
	Topics []string
}

// Banner returns the canonical banner:
// CLASS[//REL TO A, B][//NOFORN][//ORCON], with the REL TO parties sorted.
// The banner of a valid marking parses back to the same marking (apart from
// Topics, which banners do not carry).
func (m Marking) Banner() string {
	var b strings.Builder
	b.WriteString(m.Classification)
	if len(m.RelTo) > 0 {
		rel := slices.Clone(m.RelTo)
		slices.Sort(rel)
		b.WriteString("//REL TO ")
		b.WriteString(strings.Join(rel, ", "))
	}
	if m.NoForn {
		b.WriteString("//NOFORN")
	}
	if m.OrCon {
		b.WriteString("//ORCON")
	}
	return b.String()
}

// String returns the banner.
func (m Marking) String() string { return m.Banner() }

// Canonical returns the deterministic bytes that stand for the marking in
// digests and signatures: Banner() + "\n" + the topics, sorted, joined by
// ",". Two markings that mean the same have the same canonical bytes.
func (m Marking) Canonical() []byte {
	topics := slices.Clone(m.Topics)
	slices.Sort(topics)
	b := m.Banner()
	out := make([]byte, 0, len(b)+1+len(topics)*8)
	out = append(out, b...)
	out = append(out, '\n')
	out = append(out, strings.Join(topics, ",")...)
	return out
}

// RelToContains reports whether party is named in REL TO.
func (m Marking) RelToContains(party string) bool {
	return slices.Contains(m.RelTo, party)
}

// HasTopic reports whether topic is one of the marking's topics.
func (m Marking) HasTopic(topic string) bool {
	return slices.Contains(m.Topics, topic)
}

// Validate checks that the marking is well formed under scheme s (Default
// when s is nil): the classification is a level of s, every REL TO entry is a
// valid party code and the list is sorted without repeats, NOFORN is not
// combined with REL TO, and every topic is valid and the topics are sorted
// without repeats. Errors match [ErrInvalid].
func (m Marking) Validate(s *Scheme) error {
	if s == nil {
		s = Default
	}
	if _, ok := s.Rank(m.Classification); !ok {
		return fmt.Errorf("%w: classification %s is not one of %s", ErrInvalid, Quote(m.Classification), s.levelList())
	}
	for i, p := range m.RelTo {
		if !ValidParty(p) {
			return fmt.Errorf("%w: REL TO entry %s is not a party code (want 2-16 of A-Z, 0-9, -)", ErrInvalid, Quote(p))
		}
		if i > 0 && m.RelTo[i-1] >= p {
			return fmt.Errorf("%w: REL TO is not sorted without repeats at %q", ErrInvalid, p)
		}
	}
	if m.NoForn && len(m.RelTo) > 0 {
		return fmt.Errorf("%w: NOFORN cannot be combined with REL TO", ErrInvalid)
	}
	for i, t := range m.Topics {
		if !ValidTopic(t) {
			return fmt.Errorf("%w: topic %s is not 1-64 of A-Z a-z 0-9 . _ -", ErrInvalid, Quote(t))
		}
		if i > 0 && m.Topics[i-1] >= t {
			return fmt.Errorf("%w: topics are not sorted without repeats at %q", ErrInvalid, t)
		}
	}
	return nil
}

// ValidParty reports whether code is a party code: 2 to 16 characters of
// A-Z, 0-9 and '-'.
func ValidParty(code string) bool {
	if len(code) < 2 || len(code) > 16 {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidTopic reports whether t is a need-to-know topic: 1 to 64 characters
// of A-Z, a-z, 0-9, '.', '_' and '-'. Topics are case-sensitive ("Cyber" and
// "cyber" are different topics) and are compared byte for byte.
func ValidTopic(t string) bool {
	if len(t) < 1 || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NormalizeTopics trims blanks around each topic, checks it with ValidTopic,
// and returns the topics sorted without repeats (nil when there are none).
// The error, matching [ErrInvalid], names the first bad topic.
func NormalizeTopics(ts []string) ([]string, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		t = strings.Trim(t, " \t")
		if !ValidTopic(t) {
			return nil, topicError("topic " + Quote(t) + " is not 1-64 of A-Z a-z 0-9 . _ -")
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// topicError is a bad topic: it matches [ErrInvalid], but a topic is not
// part of a marking, so its text does not say "invalid marking".
type topicError string

func (e topicError) Error() string        { return string(e) }
func (e topicError) Is(target error) bool { return target == ErrInvalid }

// maxQuoted is the most bytes of a value Quote shows.
const maxQuoted = 64

// Quote quotes a value for an error message, cut to 64 bytes: a malformed
// value (from a peer, perhaps megabytes long) is named, not echoed whole.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + fmt.Sprintf("... (%d bytes)", len(s))
}
