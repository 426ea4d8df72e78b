package policy

import (
	"strings"
	"testing"
)

func TestDeliver(t *testing.T) {
	analyst := Subscriber{Name: "analysis", Clearance: "SECRET", NeedToKnow: []string{"cyber", "flood"}}
	tests := []struct {
		name    string
		sub     func(s Subscriber) Subscriber
		banner  string
		topics  []string
		rule    Rule
		allowed bool
		msg     string
		next    string
	}{
		{"cleared with need-to-know", nil, "SECRET//REL TO GBR, USA//ORCON", []string{"cyber"},
			RuleDeliver, true, "portion 3 is SECRET//REL TO GBR, USA//ORCON; subscriber analysis is cleared for it and has the need-to-know", ""},
		{"below the clearance, all topics known", nil, "RESTRICTED", []string{"cyber", "flood"},
			RuleDeliver, true, "", ""},
		{"untopiced portion needs no need-to-know", func(s Subscriber) Subscriber { s.NeedToKnow = nil; return s }, "UNCLASSIFIED", nil,
			RuleDeliver, true, "", ""},
		{"NOFORN delivers locally", nil, "CONFIDENTIAL//NOFORN", []string{"flood"},
			RuleDeliver, true, "", ""},
		{"suspended wins over everything", func(s Subscriber) Subscriber { s.Suspended = true; s.Clearance = "bogus"; s.NeedToKnow = nil; return s },
			"TOP SECRET", []string{"nuclear"}, RuleSuspended, false, "subscriber analysis is suspended", "reinstate subscriber analysis"},
		{"suspended even when cleared", func(s Subscriber) Subscriber { s.Suspended = true; return s },
			"UNCLASSIFIED", nil, RuleSuspended, false, "", "reinstate"},
		{"clearance below", nil, "TOP SECRET//REL TO USA", []string{"cyber"},
			RuleClearance, false, "subscriber analysis is cleared only to SECRET", "clear subscriber analysis to TOP SECRET"},
		{"clearance wins over need-to-know", nil, "TOP SECRET", []string{"nuclear"},
			RuleClearance, false, "", ""},
		{"clearance not a level", func(s Subscriber) Subscriber { s.Clearance = "secret"; return s }, "UNCLASSIFIED", nil,
			RuleClearance, false, "no clearance that is a level", "clear subscriber analysis to UNCLASSIFIED"},
		{"no clearance", func(s Subscriber) Subscriber { s.Clearance = ""; return s }, "UNCLASSIFIED", nil,
			RuleClearance, false, "", ""},
		{"need-to-know lacks a topic", nil, "SECRET", []string{"cyber", "nuclear", "space"},
			RuleNeedToKnow, false, "its topics nuclear, space are outside the need-to-know of subscriber analysis", "add topics nuclear, space to the need-to-know of subscriber analysis"},
		{"need-to-know lacks one topic", nil, "SECRET", []string{"nuclear"},
			RuleNeedToKnow, false, "its topic nuclear is outside", "add topic nuclear"},
		{"topics are case-sensitive", nil, "SECRET", []string{"Cyber"},
			RuleNeedToKnow, false, "", ""},
		{"name not echoed when not well formed", func(s Subscriber) Subscriber { s.Name = body + " x"; s.Suspended = true; return s },
			"SECRET", nil, RuleSuspended, false, "the subscriber is suspended", ""},
		{"no name", func(s Subscriber) Subscriber { s.Name = ""; return s }, "SECRET", nil,
			RuleBadInput, false, "no name", "fix the caller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := analyst
			if tt.sub != nil {
				sub = tt.sub(sub)
			}
			p := portion(t, 3, tt.banner, tt.topics...)
			r := Deliver(nil, sub, p)
			if r.Rule != tt.rule || r.Allowed != tt.allowed || r.Authority != "" {
				t.Fatalf("Deliver = %s %v %q, want %s %v\n%s", r.Rule, r.Allowed, r.Authority, tt.rule, tt.allowed, r)
			}
			if !strings.Contains(r.Message, tt.msg) || !strings.Contains(r.Next, tt.next) {
				t.Errorf("Deliver = %s; want message with %q and next with %q", r, tt.msg, tt.next)
			}
			if r.Index != 3 || r.Party != sub.Name {
				t.Errorf("Index, Party = %d, %q", r.Index, r.Party)
			}
			if r.Rule != RuleBadInput && r.Banner != p.Marking.Banner() {
				t.Errorf("Banner = %q", r.Banner)
			}
			checkReason(t, r)
			// MayDeliver decides the same: a denial with the same
			// reason, an allowed one without its banner and message.
			want := r
			if r.Allowed {
				want.Banner, want.Message = "", ""
			}
			if got := MayDeliver(nil, sub, p); got != want {
				t.Errorf("MayDeliver = %+v, want %+v", got, want)
			}
		})
	}

	// A marking that does not validate is refused before any rule.
	p := portion(t, 3, "SECRET")
	p.Marking.Topics = []string{"b", "a"}
	if r := Deliver(nil, analyst, p); r.Rule != RuleBadInput || r.Allowed || r.Banner != "" {
		t.Fatalf("Deliver of an unsorted marking = %s", r)
	}
	if r := MayDeliver(nil, analyst, p); r != Deliver(nil, analyst, p) {
		t.Fatalf("MayDeliver of an unsorted marking = %s", r)
	}
}

// BenchmarkDeliver is one allowed delivery decision: a fan-out asks it for
// every subscriber and portion.
func BenchmarkDeliver(b *testing.B) {
	sub := Subscriber{Name: "analysis", Clearance: "SECRET", NeedToKnow: []string{"cyber", "flood"}}
	p := portion(b, 3, "SECRET//REL TO GBR, USA", "cyber")
	for b.Loop() {
		if r := Deliver(nil, sub, p); !r.Allowed {
			b.Fatal(r)
		}
	}
}

// BenchmarkMayDeliver is the same decision when only its verdict is used,
// as a fan-out does.
func BenchmarkMayDeliver(b *testing.B) {
	sub := Subscriber{Name: "analysis", Clearance: "SECRET", NeedToKnow: []string{"cyber", "flood"}}
	p := portion(b, 3, "SECRET//REL TO GBR, USA", "cyber")
	for b.Loop() {
		if r := MayDeliver(nil, sub, p); !r.Allowed {
			b.Fatal(r)
		}
	}
}
