package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// TestResumeRightAfterSuspension: a subscriber suspended mid-stream,
// reinstated and resumed at once continues exactly after the last report
// it received, every time, though its recorder writes the cursor after
// the stream has ended.
func TestResumeRightAfterSuspension(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA"))
	if err != nil {
		t.Fatal(err)
	}
	is, _ := prof.Issued()
	admin := adminv1.NewAdminServiceClient(f.conn("USA", is, prof.Bundle))
	ctx := ctxT(t)
	const n = 40
	publishTitled(t, officer, n)
	next := 0
	for round := 0; next < n; round++ {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := analyst.Subscribe(sctx, &clientv1.SubscribeRequest{ResumeSaved: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := admin.SuspendSubscriber(ctx, &adminv1.SuspendSubscriberRequest{Name: DevSubscriber, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		// Everything sent before the end arrives before the end.
		for err == nil {
			if got, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%02d", next); got != want {
				t.Fatalf("round %d: got %s, want %s", round, got, want)
			}
			next++
			m, err = stream.Recv()
		}
		cancel()
		if _, err := admin.ReinstateSubscriber(ctx, &adminv1.ReinstateSubscriberRequest{Name: DevSubscriber}); err != nil {
			t.Fatal(err)
		}
		if round > 3*n {
			t.Fatal("no progress")
		}
	}
}
