package marking

import (
	"errors"
	"fmt"
	"strings"
)

// ErrScheme is matched (errors.Is) by every error NewScheme returns.
var ErrScheme = errors.New("marking: bad scheme")

// maxLevelLen bounds the length of one level name.
const maxLevelLen = 64

// Scheme is the federation's ordered list of classification levels, lowest
// first. A Scheme is immutable once made, and safe for concurrent use.
type Scheme struct {
	levels []string
	rank   map[string]int
}

// Default is the default scheme of DESIGN §2:
// UNCLASSIFIED < RESTRICTED < CONFIDENTIAL < SECRET < TOP SECRET.
// It must not be reassigned.
var Default = mustScheme("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET")

func mustScheme(levels ...string) *Scheme {
	s, err := NewScheme(levels)
	if err != nil {
		panic(err)
	}
	return s
}

// NewScheme returns a scheme with the given levels, lowest first. Each level
// name is 2 to 64 characters: upper-case ASCII letters, words separated by
// single spaces (for example "TOP SECRET"). The list must not be empty and
// must not repeat a level. Errors match [ErrScheme].
func NewScheme(levels []string) (*Scheme, error) {
	if len(levels) == 0 {
		return nil, fmt.Errorf("%w: no levels", ErrScheme)
	}
	s := &Scheme{
		levels: make([]string, len(levels)),
		rank:   make(map[string]int, len(levels)),
	}
	for i, l := range levels {
		if !validLevel(l) {
			return nil, fmt.Errorf("%w: level %q is not 2-%d upper-case letters in words separated by single spaces", ErrScheme, l, maxLevelLen)
		}
		if _, dup := s.rank[l]; dup {
			return nil, fmt.Errorf("%w: level %q is listed twice", ErrScheme, l)
		}
		s.levels[i] = l
		s.rank[l] = i
	}
	return s, nil
}

// validLevel reports whether l matches [A-Z]+( [A-Z]+)* and is 2-64 bytes.
func validLevel(l string) bool {
	if len(l) < 2 || len(l) > maxLevelLen {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'A' && c <= 'Z':
		case c == ' ':
			if i == 0 || i == len(l)-1 || l[i-1] == ' ' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Levels returns a copy of the levels, lowest first.
func (s *Scheme) Levels() []string {
	return append([]string(nil), s.levels...)
}

// Rank returns the index of classification among the levels (0 is the
// lowest) and whether it is a level of the scheme at all. The name must be
// canonical (as in Marking.Classification), not banner input.
func (s *Scheme) Rank(classification string) (int, bool) {
	r, ok := s.rank[classification]
	return r, ok
}

// Compare returns -1, 0 or +1 as level a is lower than, the same as, or
// higher than level b. A name that is not a level of the scheme ranks below
// every level (and two unknown names compare equal), so Compare never
// panics; but an unknown name is an error of the caller, who must check
// levels with Rank or Marking.Validate before deciding anything on them.
func (s *Scheme) Compare(a, b string) int {
	ra, ok := s.rank[a]
	if !ok {
		ra = -1
	}
	rb, ok := s.rank[b]
	if !ok {
		rb = -1
	}
	switch {
	case ra < rb:
		return -1
	case ra > rb:
		return 1
	}
	return 0
}

func (s *Scheme) levelList() string {
	return strings.Join(s.levels, ", ")
}
