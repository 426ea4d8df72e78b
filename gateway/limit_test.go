package gateway

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// TestSubscribeLimit: a subscription with a limit gets exactly that many
// reports and then ends cleanly, and the cursor the node saves is the last
// one it sent, so --resume continues with the next report: none is skipped
// as it was when the client stopped reading after N while the node had
// sent more.
func TestSubscribeLimit(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	ctx := ctxT(t)
	const n = 10
	publishTitled(t, officer, n)
	next := 0
	for _, limit := range []uint32{1, 3, 1, 5} {
		stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		for range limit {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("limit %d, report %d: %v", limit, next, err)
			}
			if got, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%02d", next); got != want {
				t.Fatalf("limit %d: got %s, want %s", limit, got, want)
			}
			next++
		}
		if m, err := stream.Recv(); err != io.EOF {
			t.Fatalf("limit %d: after %d reports the stream should end cleanly, got %v (report %q)", limit, limit, err, m.GetReport().GetPortions())
		}
	}
	if next != n {
		t.Fatalf("%d reports read, want %d", next, n)
	}
	// With no limit, a subscription resumed now has nothing to send until
	// a new report comes: the saved cursor is past the last one.
	if _, err := officer.Publish(ctx, &clientv1.PublishRequest{
		Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: "last", Body: []byte("b")}},
		Topics:   []string{"CT"},
	}); err != nil {
		t.Fatal(err)
	}
	stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.GetReport().GetPortions()[0].GetTitle(); got != "last" {
		t.Fatalf("resumed after the limits: got %s, want last", got)
	}
}

// publishTitled publishes n one-portion CT reports titled r00, r01, ...
func publishTitled(t *testing.T, officer clientv1.ClientServiceClient, n int) {
	t.Helper()
	for i := range n {
		if _, err := officer.Publish(ctxT(t), &clientv1.PublishRequest{
			Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: fmt.Sprintf("r%02d", i), Body: []byte("b")}},
			Topics:   []string{"CT"},
		}); err != nil {
			t.Fatal(err)
		}
	}
}
