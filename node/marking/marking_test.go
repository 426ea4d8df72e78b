package marking

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseGood(t *testing.T) {
	tests := []struct {
		in     string
		want   Marking
		banner string
	}{
		{"UNCLASSIFIED", Marking{Classification: "UNCLASSIFIED"}, "UNCLASSIFIED"},
		{"unclassified", Marking{Classification: "UNCLASSIFIED"}, "UNCLASSIFIED"},
		{"  Restricted  ", Marking{Classification: "RESTRICTED"}, "RESTRICTED"},
		{"CONFIDENTIAL//NOFORN", Marking{Classification: "CONFIDENTIAL", NoForn: true}, "CONFIDENTIAL//NOFORN"},
		{"SECRET//REL TO USA, GBR//ORCON", Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}, OrCon: true}, "SECRET//REL TO GBR, USA//ORCON"},
		{"TOP SECRET//REL TO GBR, USA", Marking{Classification: "TOP SECRET", RelTo: []string{"GBR", "USA"}}, "TOP SECRET//REL TO GBR, USA"},
		{"top   secret//rel to usa,gbr", Marking{Classification: "TOP SECRET", RelTo: []string{"GBR", "USA"}}, "TOP SECRET//REL TO GBR, USA"},
		{"TOP\tSECRET // ORCON // REL\tTO  NZL ,AUS, CAN ", Marking{Classification: "TOP SECRET", RelTo: []string{"AUS", "CAN", "NZL"}, OrCon: true}, "TOP SECRET//REL TO AUS, CAN, NZL//ORCON"},
		{"SECRET//ORCON//NOFORN", Marking{Classification: "SECRET", NoForn: true, OrCon: true}, "SECRET//NOFORN//ORCON"},
		{"SECRET//orcon", Marking{Classification: "SECRET", OrCon: true}, "SECRET//ORCON"},
		{"SECRET//REL TO USA", Marking{Classification: "SECRET", RelTo: []string{"USA"}}, "SECRET//REL TO USA"},
		{"SECRET//REL TO X-1, 5EYES, AB", Marking{Classification: "SECRET", RelTo: []string{"5EYES", "AB", "X-1"}}, "SECRET//REL TO 5EYES, AB, X-1"},
		{"SECRET//REL TO ABCDEFGHIJKLMNOP", Marking{Classification: "SECRET", RelTo: []string{"ABCDEFGHIJKLMNOP"}}, "SECRET//REL TO ABCDEFGHIJKLMNOP"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Fatalf("Parse = %#v, want %#v", m, tt.want)
			}
			if got := m.Banner(); got != tt.banner {
				t.Fatalf("Banner = %q, want %q", got, tt.banner)
			}
			if err := m.Validate(Default); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			again, err := Parse(m.Banner())
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("round trip: %#v, %v", again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := "SECRET//REL TO " + strings.Repeat("USA, ", 300)
	tests := []struct {
		name   string
		in     string
		offset int
		part   string
		msg    string // substring of Msg
	}{
		{"empty", "", 0, "", "empty banner"},
		{"blank", "  \t ", 0, "  \t ", "empty banner"},
		{"too long", long, MaxBannerLen, "", "limit of 1024 bytes"},
		{"unknown classification", "SECRT", 0, "SECRT", "is not a classification (want one of UNCLASSIFIED, RESTRICTED, CONFIDENTIAL, SECRET, TOP SECRET)"},
		{"unknown classification padded", "  SECRT //NOFORN", 2, "SECRT", "not a classification"},
		{"control first", "NOFORN//SECRET", 0, "NOFORN", "not a classification"},
		{"non-ascii fold", "\u017fECRET", 0, "\u017fECRET", "not a classification"},
		{"leading separator", "//SECRET", 0, "", "classification belongs"},
		{"empty segment", "SECRET////ORCON", 8, "", "empty segment"},
		{"blank segment", "SECRET// //ORCON", 8, " ", "empty segment"},
		{"trailing separator", "SECRET//", 8, "", "empty segment"},
		{"trailing separator after control", "SECRET//ORCON//", 15, "", "empty segment"},
		{"unknown control", "SECRET//FOUO", 8, "FOUO", "not a dissemination control"},
		{"triple slash", "SECRET///ORCON", 8, "/ORCON", "not a dissemination control"},
		{"rel without to", "SECRET//REL USA", 8, "REL USA", "not a dissemination control"},
		{"relto glued", "SECRET//RELTO USA", 8, "RELTO USA", "not a dissemination control"},
		{"duplicate orcon", "SECRET//ORCON//orcon", 15, "orcon", "repeats a control"},
		{"duplicate noforn", "SECRET//NOFORN// NOFORN", 17, "NOFORN", "repeats a control"},
		{"duplicate rel to", "SECRET//REL TO USA//REL TO GBR", 20, "REL TO GBR", "repeats a control"},
		{"empty rel to", "SECRET//REL TO", 8, "REL TO", "without parties"},
		{"blank rel to", "SECRET//REL TO   //ORCON", 8, "REL TO", "without parties"},
		{"empty party", "SECRET//REL TO USA,,GBR", 19, "", "empty party code"},
		{"trailing comma", "SECRET//REL TO USA, ", 19, "", "empty party code"},
		{"leading comma", "SECRET//REL TO ,USA", 15, "", "empty party code"},
		{"short party", "SECRET//REL TO USA, G", 20, "G", "not a party code"},
		{"long party", "SECRET//REL TO ABCDEFGHIJKLMNOPQ", 15, "ABCDEFGHIJKLMNOPQ", "not a party code"},
		{"party with space", "SECRET//REL TO USA GBR", 15, "USA GBR", "not a party code"},
		{"party punctuation", "SECRET//REL TO US_A", 15, "US_A", "not a party code"},
		{"duplicate party", "SECRET//REL TO USA, GBR, usa", 25, "usa", "repeats a party"},
		{"noforn after rel to", "SECRET//REL TO USA//NOFORN", 20, "NOFORN", "combines NOFORN with REL TO"},
		{"rel to after noforn", "SECRET//NOFORN//REL TO USA", 16, "REL TO USA", "combines NOFORN with REL TO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want an error", tt.in, m)
			}
			if !errors.Is(err, ErrBanner) {
				t.Fatalf("error %v does not match ErrBanner", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if pe.Banner != tt.in {
				t.Errorf("Banner = %q, want the input", pe.Banner)
			}
			if pe.Offset != tt.offset || pe.Part != tt.part {
				t.Errorf("Offset, Part = %d, %q; want %d, %q (%v)", pe.Offset, pe.Part, tt.offset, tt.part, err)
			}
			if pe.Offset < len(tt.in) && tt.in[pe.Offset:pe.Offset+len(pe.Part)] != pe.Part {
				t.Errorf("Part %q is not at offset %d of the input", pe.Part, pe.Offset)
			}
			if !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("Msg = %q, want it to contain %q", pe.Msg, tt.msg)
			}
			if !reflect.DeepEqual(m, Marking{}) {
				t.Errorf("Parse returned a marking with its error: %#v", m)
			}
		})
	}
}

func TestParseErrorText(t *testing.T) {
	_, err := Parse("SECRT")
	want := `marking: "SECRT" at offset 0 is not a classification (want one of UNCLASSIFIED, RESTRICTED, CONFIDENTIAL, SECRET, TOP SECRET)`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
	if errors.Is(err, ErrInvalid) {
		t.Fatalf("a parse error must not match ErrInvalid")
	}
}

func TestBannerLimit(t *testing.T) {
	// Exactly MaxBannerLen bytes is accepted.
	b := "SECRET//REL TO AA"
	for i := 1; len(b) < MaxBannerLen-4; i++ {
		b += ", " + string(rune('A'+i/26%26)) + string(rune('A'+i%26))
	}
	b += strings.Repeat(" ", MaxBannerLen-len(b))
	if len(b) != MaxBannerLen {
		t.Fatalf("test banner is %d bytes", len(b))
	}
	if _, err := Parse(b); err != nil {
		t.Fatalf("Parse of a %d-byte banner: %v", len(b), err)
	}
	if _, err := Parse(b + " "); err == nil {
		t.Fatal("Parse accepted a banner longer than MaxBannerLen")
	}
}

func TestCustomScheme(t *testing.T) {
	s, err := NewScheme([]string{"OFFICIAL", "OFFICIAL SENSITIVE", "SECRET", "TOP SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Parse("official   sensitive//REL TO GBR")
	if err != nil {
		t.Fatal(err)
	}
	if m.Classification != "OFFICIAL SENSITIVE" {
		t.Fatalf("Classification = %q", m.Classification)
	}
	if err := m.Validate(s); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(Default); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate(Default) = %v, want ErrInvalid", err)
	}
	if _, err := s.Parse("CONFIDENTIAL"); !errors.Is(err, ErrBanner) {
		t.Fatalf("custom scheme accepted a Default level: %v", err)
	}
	var nilScheme *Scheme
	if m, err := nilScheme.Parse("secret"); err != nil || m.Classification != "SECRET" {
		t.Fatalf("nil scheme Parse = %v, %v", m, err)
	}
}

func TestNewScheme(t *testing.T) {
	bad := [][]string{
		nil,
		{},
		{"SECRET", "SECRET"},
		{"secret"},
		{"S"},
		{" SECRET"},
		{"SECRET "},
		{"TOP  SECRET"},
		{"TOP\tSECRET"},
		{"SECRET1"},
		{"SECRET/X"},
		{strings.Repeat("A", 65)},
	}
	for _, levels := range bad {
		if _, err := NewScheme(levels); !errors.Is(err, ErrScheme) {
			t.Errorf("NewScheme(%q) = %v, want ErrScheme", levels, err)
		}
	}
	in := []string{"LOW", "HIGH"}
	s, err := NewScheme(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = "CHANGED"
	if got := s.Levels(); !reflect.DeepEqual(got, []string{"LOW", "HIGH"}) {
		t.Fatalf("scheme shares the caller's slice: %q", got)
	}
	s.Levels()[0] = "CHANGED"
	if got := s.Levels(); got[0] != "LOW" {
		t.Fatalf("Levels exposes the scheme's slice")
	}
}

func TestRankCompare(t *testing.T) {
	want := []string{"UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET"}
	if got := Default.Levels(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Default.Levels() = %q", got)
	}
	for i, l := range want {
		if r, ok := Default.Rank(l); !ok || r != i {
			t.Errorf("Rank(%q) = %d, %v", l, r, ok)
		}
		for j, k := range want {
			c := Default.Compare(l, k)
			switch {
			case i < j && c != -1, i == j && c != 0, i > j && c != 1:
				t.Errorf("Compare(%q, %q) = %d", l, k, c)
			}
		}
		if Default.Compare("BOGUS", l) != -1 || Default.Compare(l, "BOGUS") != 1 {
			t.Errorf("an unknown level does not rank below %q", l)
		}
	}
	if _, ok := Default.Rank("secret"); ok {
		t.Error("Rank accepted a non-canonical name")
	}
	if Default.Compare("BOGUS", "OTHER") != 0 {
		t.Error("two unknown levels do not compare equal")
	}
}

func TestCanonical(t *testing.T) {
	m := Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}, OrCon: true, Topics: []string{"cyber", "ransomware"}}
	if got, want := string(m.Canonical()), "SECRET//REL TO GBR, USA//ORCON\ncyber,ransomware"; got != want {
		t.Fatalf("Canonical = %q, want %q", got, want)
	}
	shuffled := Marking{Classification: "SECRET", RelTo: []string{"USA", "GBR"}, OrCon: true, Topics: []string{"ransomware", "cyber"}}
	if string(shuffled.Canonical()) != string(m.Canonical()) {
		t.Fatalf("Canonical depends on order: %q", shuffled.Canonical())
	}
	if shuffled.RelTo[0] != "USA" || shuffled.Topics[0] != "ransomware" {
		t.Fatal("Banner/Canonical sorted the caller's slices in place")
	}
	if got := string(Marking{Classification: "UNCLASSIFIED"}.Canonical()); got != "UNCLASSIFIED\n" {
		t.Fatalf("Canonical = %q", got)
	}
	if m.String() != m.Banner() {
		t.Fatal("String differs from Banner")
	}
	if !m.RelToContains("GBR") || m.RelToContains("CAN") || m.RelToContains("gbr") {
		t.Fatal("RelToContains")
	}
	if !m.HasTopic("cyber") || m.HasTopic("Cyber") {
		t.Fatal("HasTopic")
	}
}

func TestValidate(t *testing.T) {
	good := Marking{Classification: "SECRET", RelTo: []string{"GBR", "USA"}, OrCon: true, Topics: []string{"a", "b"}}
	if err := good.Validate(nil); err != nil {
		t.Fatalf("Validate(nil): %v", err)
	}
	bad := map[string]Marking{
		"no classification":      {},
		"lower-case class":       {Classification: "secret"},
		"unknown class":          {Classification: "SECRT"},
		"bad party":              {Classification: "SECRET", RelTo: []string{"usa"}},
		"unsorted rel to":        {Classification: "SECRET", RelTo: []string{"USA", "GBR"}},
		"repeated rel to":        {Classification: "SECRET", RelTo: []string{"USA", "USA"}},
		"noforn with rel to":     {Classification: "SECRET", RelTo: []string{"USA"}, NoForn: true},
		"bad topic":              {Classification: "SECRET", Topics: []string{"a b"}},
		"empty topic":            {Classification: "SECRET", Topics: []string{""}},
		"unsorted topics":        {Classification: "SECRET", Topics: []string{"b", "a"}},
		"repeated topics":        {Classification: "SECRET", Topics: []string{"a", "a"}},
		"case-distinct unsorted": {Classification: "SECRET", Topics: []string{"a", "B"}},
	}
	for name, m := range bad {
		if err := m.Validate(Default); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
}

func TestValidPartyTopic(t *testing.T) {
	for _, p := range []string{"US", "USA", "GBR", "5EYES", "X-1", "ABCDEFGHIJKLMNOP", "--"} {
		if !ValidParty(p) {
			t.Errorf("ValidParty(%q) = false", p)
		}
	}
	for _, p := range []string{"", "U", "usa", "US A", "US_A", "ABCDEFGHIJKLMNOPQ", "ÜSA", "USA,"} {
		if ValidParty(p) {
			t.Errorf("ValidParty(%q) = true", p)
		}
	}
	for _, tp := range []string{"a", "Cyber", "ransom-ware", "apt.28", "x_y", strings.Repeat("a", 64)} {
		if !ValidTopic(tp) {
			t.Errorf("ValidTopic(%q) = false", tp)
		}
	}
	for _, tp := range []string{"", " a", "a,b", "a/b", "é", strings.Repeat("a", 65)} {
		if ValidTopic(tp) {
			t.Errorf("ValidTopic(%q) = true", tp)
		}
	}
}

func TestNormalizeTopics(t *testing.T) {
	got, err := NormalizeTopics([]string{" cyber", "apt28 ", "cyber", "\tAPT28"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"APT28", "apt28", "cyber"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("NormalizeTopics = %q, want %q", got, want)
	}
	if got, err := NormalizeTopics(nil); err != nil || got != nil {
		t.Fatalf("NormalizeTopics(nil) = %q, %v", got, err)
	}
	_, err = NormalizeTopics([]string{"ok", "not ok"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"not ok"`) {
		t.Fatalf("error %v does not name the bad topic", err)
	}
	if want := `topic "not ok" is not 1-64 of A-Z a-z 0-9 . _ -`; err.Error() != want {
		t.Fatalf("error %q, want %q (a topic is not part of a marking)", err, want)
	}
	if _, err := NormalizeTopics([]string{"  "}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("blank topic accepted: %v", err)
	}
}

// FuzzParse checks that Parse never panics, that its errors point into the
// input, and that every marking it returns is valid and survives a round
// trip through its banner.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"UNCLASSIFIED",
		"SECRET//REL TO USA, GBR//ORCON",
		"CONFIDENTIAL//NOFORN",
		"TOP SECRET//REL TO GBR, USA",
		"top  secret // orcon // rel to nzl,aus",
		"SECRET////ORCON",
		"SECRET//",
		"SECRET//REL TO USA//NOFORN",
		"SECRET//REL TO USA,,GBR",
		"SECRET//REL TO USA, usa",
		"\u017fECRET",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := Parse(in)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrBanner) {
				t.Fatalf("Parse(%q) error %v is not a *ParseError matching ErrBanner", in, err)
			}
			if pe.Offset < 0 || pe.Offset > len(in) && pe.Offset != MaxBannerLen {
				t.Fatalf("Parse(%q): offset %d out of range", in, pe.Offset)
			}
			if len(in) <= MaxBannerLen && in[pe.Offset:pe.Offset+len(pe.Part)] != pe.Part {
				t.Fatalf("Parse(%q): Part %q is not at offset %d", in, pe.Part, pe.Offset)
			}
			return
		}
		if err := m.Validate(Default); err != nil {
			t.Fatalf("Parse(%q) = %#v, which does not validate: %v", in, m, err)
		}
		b := m.Banner()
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, but its banner %q does not parse: %v", in, m, b, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %q: %#v != %#v", in, again, m)
		}
		if again.Banner() != b {
			t.Fatalf("banner of %q is not stable: %q != %q", in, again.Banner(), b)
		}
	})
}

// A malformed value is named in an error, not echoed whole.
func TestValidateQuotesShort(t *testing.T) {
	long := strings.Repeat("x", 100000)
	for _, m := range []Marking{
		{Classification: long},
		{Classification: "SECRET", RelTo: []string{long}},
		{Classification: "SECRET", Topics: []string{long}},
	} {
		err := m.Validate(Default)
		if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "(100000 bytes)") {
			t.Errorf("Validate error of %d bytes: %.200v", len(fmt.Sprint(err)), err)
		}
	}
	if _, err := NormalizeTopics([]string{long}); err == nil || len(err.Error()) > 300 {
		t.Errorf("NormalizeTopics error of %d bytes", len(fmt.Sprint(err)))
	}
	if got := Quote("SECRET"); got != `"SECRET"` {
		t.Errorf("Quote(SECRET) = %s", got)
	}
}
