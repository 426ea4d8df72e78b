package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/node/marking"
)

// body stands for portion content and other free text. Tests put it in every
// free-text field they can reach (purposes) and check that no message or
// next step ever carries it.
const body = "BODY PLACEHOLDER: secret content, do not echo"

var (
	now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day = 24 * time.Hour

	zeroTime time.Time
)

// portion returns portion idx with the banner's marking and the topics.
func portion(t testing.TB, idx uint32, banner string, topics ...string) Portion {
	t.Helper()
	m, err := marking.Parse(banner)
	if err != nil {
		t.Fatalf("bad test banner %q: %v", banner, err)
	}
	m.Topics, err = marking.NormalizeTopics(topics)
	if err != nil {
		t.Fatal(err)
	}
	return Portion{Index: idx, Marking: m}
}

// agreement returns an agreement with partner, active around now, with the
// given ceiling and topics.
func agreement(partner, ceiling string, topics ...string) *Agreement {
	return &Agreement{
		Partner:           partner,
		MaxClassification: ceiling,
		Topics:            topics,
		Purpose:           body,
		ValidFrom:         now.Add(-365 * day),
		ValidUntil:        now.Add(365 * day),
		ReviewDate:        now.Add(-day), // a past review date does not end it
	}
}

// grant returns a grant of USA for report R1 from holder to to, valid for a
// day.
func grant(id, holder, to string, portions ...uint32) Consent {
	return Consent{
		ID: id, ReportID: "R1", Originator: "USA", Holder: holder, To: to,
		Portions: portions, Purpose: body, Expires: now.Add(day),
	}
}

// crisis returns a declaration of USA for topic cyber, to CAN and AUS, up to
// SECRET, expiring in a day.
func crisis(id string) Crisis {
	return Crisis{
		ID: id, Originator: "USA", Topics: []string{"cyber", "flood"},
		Parties: []string{"AUS", "CAN"}, MaxClassification: "SECRET",
		Expires: now.Add(day),
	}
}

// checkReason checks the properties every reason has.
func checkReason(t testing.TB, r Reason) {
	t.Helper()
	if r.Allowed && r.Next != "" {
		t.Errorf("allowed reason has a next step: %q", r.Next)
	}
	if !r.Allowed && r.Next == "" {
		t.Errorf("denial has no next step: %s", r)
	}
	if r.Message == "" {
		t.Errorf("reason has no message: %+v", r)
	}
	if r.Allowed != (r.Rule == RuleOrigin || r.Rule == RuleRelay || r.Rule == RuleConsent ||
		r.Rule == RuleCrisis || r.Rule == RuleDeliver || (r.Rule == RuleRelTo && r.Allowed)) {
		t.Errorf("rule %s cannot %s", r.Rule, map[bool]string{true: "allow", false: "deny"}[r.Allowed])
	}
	if (r.Authority != "") != (r.Allowed && (r.Rule == RuleConsent || r.Rule == RuleCrisis)) {
		t.Errorf("authority %q with rule %s allowed=%v", r.Authority, r.Rule, r.Allowed)
	}
	for _, s := range []string{r.Message, r.Next} {
		if strings.Contains(s, body) || strings.Contains(s, "\n") {
			t.Errorf("reason text carries free text or a newline: %q", s)
		}
	}
}
