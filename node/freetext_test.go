package node

// Free text an officer types and another party's officer reads (a consent
// purpose, the reason of a decision, a crisis declaration, a suspension or
// a withdrawal) holds no control character or bidirectional override: a
// newline or an escape sequence in it would forge lines on the reader's
// terminal. A refusal names the field and the character, and changes
// nothing.

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFreeTextRefusesControlCharacters(t *testing.T) {
	bad := map[string]string{
		"newline": "\n", "tab": "\t", "escape": "\x1b", "NUL": "\x00", "DEL": "\x7f",
		"C1 CSI": "\u009b", "C1 NEL": "\u0085", "RLO": "\u202e", "LRE": "\u202a", "FSI": "\u2068", "PDI": "\u2069",
	}
	for name, ch := range bad {
		t.Run(name, func(t *testing.T) {
			text := "ok " + ch + "2J  FORGED ROW"
			w := newConsentWorld(t)
			req := w.requestFor(t)
			wantRefusal := func(what, field string, err error) {
				t.Helper()
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s with %q: %v, want ErrInvalid", what, text, err)
				}
				for _, want := range []string{field, "character 4 is U+"} {
					if !strings.Contains(err.Error(), want) {
						t.Fatalf("%s: error %q\nwant it to say %q", what, err, want)
					}
				}
			}

			before := stateOf(t, w.gbr, w.reportID, "USA")
			rec, err := w.gbr.RequestConsent(w.ctx, w.goff, w.reportID, "CAN", text, nil)
			if rec != nil {
				t.Fatalf("consent requested with purpose %q", text)
			}
			wantRefusal("RequestConsent", "the purpose (--purpose)", err)
			sameState(t, "a refused consent request", before, stateOf(t, w.gbr, w.reportID, "USA"))

			before = stateOf(t, w.usa, w.reportID, "GBR")
			for _, c := range []struct {
				name              string
				approve, withdraw bool
			}{{"deny", false, false}, {"approve", true, false}} {
				rec, err := w.usa.DecideConsent(w.ctx, w.off, req, c.approve, c.withdraw, time.Hour, text)
				if rec != nil {
					t.Fatalf("DecideConsent (%s) with reason %q: %v", c.name, text, rec)
				}
				wantRefusal("DecideConsent ("+c.name+")", "the reason (--reason)", err)
			}

			crises, err := w.usa.Crises(w.ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = w.usa.DeclareCrisis(w.ctx, w.off, CrisisInput{Topics: []string{"CT"}, Parties: []string{"CAN"}, Max: "SECRET", For: time.Hour, Reason: text})
			wantRefusal("DeclareCrisis", "the reason (--reason)", err)
			if after, err := w.usa.Crises(w.ctx); err != nil || len(after) != len(crises) {
				t.Fatalf("a refused declaration left %d declarations (%v), want %d", len(after), err, len(crises))
			}

			_, err = w.usa.Suspend(w.ctx, w.off, SuspendPartner, "GBR", text)
			wantRefusal("Suspend", "the reason (--reason)", err)
			if w.usa.Suspended(SuspendPartner, "GBR") {
				t.Fatal("GBR suspended by a refused call")
			}
			if ss, err := w.usa.Store().Suspensions(); err != nil || len(ss) != 0 {
				t.Fatalf("a refused suspension stored %v (%v)", ss, err)
			}

			_, err = w.usa.Withdraw(w.ctx, w.off, w.reportID, text, "purge")
			wantRefusal("Withdraw", "the reason (--reason)", err)
			if held, err := w.usa.Store().Report(w.reportID); err != nil || held.GetWithdrawn() != nil {
				t.Fatalf("a refused withdrawal applied: %v (%v)", held.GetWithdrawn(), err)
			}
			sameState(t, "refused decisions, declaration, suspension and withdrawal", before, stateOf(t, w.usa, w.reportID, "GBR"))
		})
	}
}

// Text in any script, with punctuation and the joiners some scripts need,
// is accepted.
func TestFreeTextAcceptsText(t *testing.T) {
	w := newConsentWorld(t)
	purpose := "opération conjointe — Ελλάδα, 日本, عملية\u200d (ref. 12/B)"
	rec, err := w.gbr.RequestConsent(w.ctx, w.goff, w.reportID, "CAN", purpose, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetPurpose() != purpose {
		t.Fatalf("purpose stored as %q", rec.GetPurpose())
	}
}
