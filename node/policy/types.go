package policy

import (
	"slices"
	"time"

	"github.com/tearline/tearline/node/marking"
)

// ClockSkew is how far ahead of the recipient's clock a hop's send time may
// be before Receipt refuses it.
const ClockSkew = 5 * time.Minute

// maxIDLen bounds report, grant and declaration ids.
const maxIDLen = 128

// Portion is the part of a portion that decisions look at: its index in the
// report and its marking. Content never reaches this package.
type Portion struct {
	Index   uint32
	Marking marking.Marking
}

// Agreement is a bilateral sharing agreement with a partner (DESIGN §2).
type Agreement struct {
	Partner           string   // the partner's party code
	MaxClassification string   // the highest level that may be shared
	Topics            []string // the topics that may be shared; empty means any topic
	Purpose           string   // recorded, not used in decisions
	ValidFrom         time.Time
	ValidUntil        time.Time
	ReviewDate        time.Time // recorded, not used in decisions
}

// Active reports whether the agreement is in force at now:
// ValidFrom <= now < ValidUntil. A zero ValidFrom has no lower bound; a zero
// ValidUntil is never in force (an agreement must have an end).
func (a Agreement) Active(now time.Time) bool {
	if !a.ValidFrom.IsZero() && now.Before(a.ValidFrom) {
		return false
	}
	return now.Before(a.ValidUntil)
}

// RouteEntry is one entry of the originator's signed route: Via may forward
// the report to To as a relay.
type RouteEntry struct{ Via, To string }

// Consent is a consent grant signed by the originator (DESIGN §2), whose
// signature the caller has already checked: Originator is the signer.
type Consent struct {
	ID         string
	ReportID   string
	Originator string
	Holder     string
	To         string
	Portions   []uint32 // the portions covered; empty means all portions
	Purpose    string   // recorded, not checked, never echoed
	Expires    time.Time
	Withdrawn  bool
}

// Covers reports whether the grant lets holder pass portion index of report
// reportID (of originator) to party to at time at: the grant has a
// well-formed ID, was signed by originator, names exactly that report,
// holder and recipient, lists the portion (or no portions, meaning all), is
// not withdrawn, and at is before Expires.
func (c Consent) Covers(originator, reportID, holder, to string, index uint32, at time.Time) bool {
	return c.Holder == holder && c.grants(originator, reportID, to, index, at)
}

// grants is Covers for any holder.
func (c Consent) grants(originator, reportID, to string, index uint32, at time.Time) bool {
	return validID(c.ID) &&
		c.Originator == originator &&
		c.ReportID == reportID &&
		c.To == to &&
		!c.Withdrawn &&
		at.Before(c.Expires) &&
		(len(c.Portions) == 0 || slices.Contains(c.Portions, index))
}

// Crisis is a crisis declaration signed by the originator (DESIGN §2), whose
// signature the caller has already checked: Originator is the signer.
type Crisis struct {
	ID                string
	Originator        string
	Topics            []string // the topics it covers
	Parties           []string // the parties it extends sharing to
	MaxClassification string   // the highest level it covers
	Expires           time.Time
	Ended             bool // ended early; an ended declaration covers nothing
}

// Covers reports whether the declaration covers a portion marked m, of
// originator, for party at time at under scheme s (Default when nil): it
// has a well-formed ID, was signed by originator, is not Ended, at is before
// Expires, party is in Parties, m is not NOFORN, m's classification is at or
// below MaxClassification, and m has at least one topic and every topic of m
// is in Topics.
func (c Crisis) Covers(s *marking.Scheme, originator string, m marking.Marking, party string, at time.Time) bool {
	s = schemeOrDefault(s)
	if !validID(c.ID) || c.Originator != originator || c.Ended || !at.Before(c.Expires) {
		return false
	}
	if m.NoForn || !slices.Contains(c.Parties, party) {
		return false
	}
	ceiling, ok := s.Rank(c.MaxClassification)
	if !ok {
		return false
	}
	level, ok := s.Rank(m.Classification)
	if !ok || level > ceiling {
		return false
	}
	if len(m.Topics) == 0 {
		return false
	}
	for _, t := range m.Topics {
		if !slices.Contains(c.Topics, t) {
			return false
		}
	}
	return true
}

func schemeOrDefault(s *marking.Scheme) *marking.Scheme {
	if s == nil {
		return marking.Default
	}
	return s
}

// validID reports whether id is a well-formed report, grant or declaration
// id: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-' (enough
// for UUIDs and ULIDs). Only well-formed ids are echoed in messages.
func validID(id string) bool {
	if len(id) < 1 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}
