package marking

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxBannerLen is the longest banner, in bytes, that Parse accepts.
const MaxBannerLen = 1024

// ErrBanner is matched (errors.Is) by every *ParseError.
var ErrBanner = errors.New("marking: bad banner")

// ParseError describes a banner that could not be parsed. Offset is the byte
// offset in Banner of the offending piece and Part is that piece as written
// (Banner[Offset:Offset+len(Part)] == Part); Part is empty when the problem
// is a missing piece (an empty banner, segment or party code) or a banner
// that is too long (Offset is then MaxBannerLen).
type ParseError struct {
	Banner string // the input, as given
	Offset int    // byte offset of Part in Banner
	Part   string // the offending piece of Banner
	Msg    string // what is wrong with Part, as a predicate: "is not a classification (...)"
}

// Error returns, for example,
// `marking: "SECRT" at offset 0 is not a classification (want one of UNCLASSIFIED, ...)`.
func (e *ParseError) Error() string {
	return fmt.Sprintf("marking: %q at offset %d %s", e.Part, e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrBanner) true for every *ParseError.
func (e *ParseError) Is(target error) bool { return target == ErrBanner }

// Messages of ParseError, one per kind of error.
const (
	msgEmptyBanner  = "is an empty banner (want a classification such as SECRET)"
	msgEmptySegment = "is an empty segment between // separators"
	msgEmptyClass   = "is an empty segment where the classification belongs"
	msgUnknownCtl   = "is not a dissemination control (want REL TO, NOFORN or ORCON)"
	msgDupCtl       = "repeats a control already given"
	msgEmptyRelTo   = "is a REL TO without parties"
	msgEmptyParty   = "is an empty party code in REL TO"
	msgBadParty     = "is not a party code (want 2-16 of A-Z, 0-9, -)"
	msgDupParty     = "repeats a party already in REL TO"
	msgNoFornRelTo  = "combines NOFORN with REL TO (NOFORN never leaves the originator)"
)

// Parse parses a banner under the Default scheme.
func Parse(banner string) (Marking, error) { return Default.Parse(banner) }

// Parse parses a banner such as "SECRET//REL TO USA, GBR//ORCON" under
// scheme s (Default when s is nil). See the package documentation for the
// grammar. The result has its classification in canonical form, its REL TO
// sorted without repeats, and no topics. Every error is a *ParseError.
func (s *Scheme) Parse(banner string) (Marking, error) {
	if s == nil {
		s = Default
	}
	fail := func(off int, part, msg string) (Marking, error) {
		return Marking{}, &ParseError{Banner: banner, Offset: off, Part: part, Msg: msg}
	}
	if len(banner) > MaxBannerLen {
		return fail(MaxBannerLen, "", fmt.Sprintf("is past the limit of %d bytes for a banner (it is %d bytes)", MaxBannerLen, len(banner)))
	}
	if trimBlank(banner) == "" {
		return fail(0, banner, msgEmptyBanner)
	}

	var (
		m                      Marking
		relSeen, noforn, orcon bool
	)
	for segNo, start := 0, 0; ; segNo++ {
		end := len(banner)
		if i := strings.Index(banner[start:], "//"); i >= 0 {
			end = start + i
		}
		raw := banner[start:end]
		lead := len(raw) - len(strings.TrimLeft(raw, blanks))
		seg := trimBlank(raw)
		off := start + lead

		switch {
		case seg == "" && segNo == 0:
			return fail(start, raw, msgEmptyClass)
		case seg == "":
			return fail(start, raw, msgEmptySegment)
		case segNo == 0:
			level := collapseBlanks(asciiUpper(seg))
			if _, ok := s.rank[level]; !ok {
				return fail(off, seg, "is not a classification (want one of "+s.levelList()+")")
			}
			m.Classification = level
		default:
			up := asciiUpper(seg)
			switch {
			case up == "NOFORN":
				if noforn {
					return fail(off, seg, msgDupCtl)
				}
				if relSeen {
					return fail(off, seg, msgNoFornRelTo)
				}
				noforn = true
			case up == "ORCON":
				if orcon {
					return fail(off, seg, msgDupCtl)
				}
				orcon = true
			default:
				listAt, ok := relToPrefix(up)
				if !ok {
					return fail(off, seg, msgUnknownCtl)
				}
				if relSeen {
					return fail(off, seg, msgDupCtl)
				}
				if noforn {
					return fail(off, seg, msgNoFornRelTo)
				}
				relSeen = true
				rel, err := parseRelTo(banner, seg, off, listAt)
				if err != nil {
					return Marking{}, err
				}
				m.RelTo = rel
			}
		}
		if end == len(banner) {
			break
		}
		start = end + 2
	}
	m.NoForn = noforn
	m.OrCon = orcon
	return m, nil
}

// relToPrefix reports whether up (an upper-cased, trimmed segment) starts
// with "REL" blanks "TO" followed by a blank or the end, and where the list
// after "TO" begins.
func relToPrefix(up string) (int, bool) {
	if !strings.HasPrefix(up, "REL") || len(up) < 4 || !isBlank(up[3]) {
		return 0, false
	}
	i := 4
	for i < len(up) && isBlank(up[i]) {
		i++
	}
	if !strings.HasPrefix(up[i:], "TO") {
		return 0, false
	}
	i += 2
	if i < len(up) && !isBlank(up[i]) {
		return 0, false
	}
	return i, true
}

// parseRelTo parses the comma-separated list seg[listAt:], where seg starts
// at byte off of banner.
func parseRelTo(banner, seg string, off, listAt int) ([]string, error) {
	fail := func(o int, part, msg string) ([]string, error) {
		return nil, &ParseError{Banner: banner, Offset: o, Part: part, Msg: msg}
	}
	if trimBlank(seg[listAt:]) == "" {
		return fail(off, seg, msgEmptyRelTo)
	}
	var parties []string
	for i := listAt; ; {
		end := len(seg)
		if j := strings.IndexByte(seg[i:], ','); j >= 0 {
			end = i + j
		}
		raw := seg[i:end]
		lead := len(raw) - len(strings.TrimLeft(raw, blanks))
		item := trimBlank(raw)
		at := off + i + lead
		code := asciiUpper(item)
		switch {
		case item == "":
			return fail(at, "", msgEmptyParty)
		case !ValidParty(code):
			return fail(at, item, msgBadParty)
		case slices.Contains(parties, code):
			return fail(at, item, msgDupParty)
		}
		parties = append(parties, code)
		if end == len(seg) {
			break
		}
		i = end + 1
	}
	slices.Sort(parties)
	return parties, nil
}

const blanks = " \t"

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func trimBlank(s string) string { return strings.Trim(s, blanks) }

// asciiUpper upper-cases ASCII letters only, leaving every other byte (and
// so every offset) as it is.
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'a' && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// collapseBlanks replaces every run of blanks in a trimmed string by one
// space.
func collapseBlanks(s string) string {
	if !strings.ContainsAny(s, "\t") && !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	prev := false
	for i := 0; i < len(s); i++ {
		if isBlank(s[i]) {
			if !prev {
				b.WriteByte(' ')
			}
			prev = true
			continue
		}
		prev = false
		b.WriteByte(s[i])
	}
	return b.String()
}
