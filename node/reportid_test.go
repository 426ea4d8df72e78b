package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tearline/tearline/pki"
)

// TestMalformedReportID: a mistyped report id is told as not a report id
// (invalid), quoted; a well-formed one that names nothing held here is
// not found. Each verb that takes a report id says so.
func TestMalformedReportID(t *testing.T) {
	n := testNode(t, t.TempDir(), pki.NewTrust(), "USA", []string{"USA", "GBR"})
	ctx := context.Background()
	calls := map[string]func(id string) error{
		"show":            func(id string) error { _, err := n.Get(ctx, id); return err },
		"share":           func(id string) error { _, err := n.Share(ctx, officer, id, "GBR", nil); return err },
		"consent request": func(id string) error { _, err := n.RequestConsent(ctx, officer, id, "GBR", "ops", nil); return err },
		"who-saw":         func(id string) error { _, _, err := n.WhoSaw(ctx, id); return err },
	}
	for name, call := range calls {
		err := call("not-an-id\x1b")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"not-an-id\x1b" is not a report id`) {
			t.Errorf("%s of a malformed id: %v, want ErrInvalid saying it is not a report id", name, err)
		}
		err = call("01a24ebb-96d3-760a-9fb5-3b3c4e6038a0")
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an unknown report: %v, want ErrNotFound", name, err)
		}
	}
}
