package gateway

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// TestSubscribeLimitReadsNoFurther: a subscription with a limit reads the
// feed no further than its last delivery, so a report the subscriber may
// not see, lying after it, is recorded as withheld once, by the
// subscription that passes it, however many limited subscriptions resume
// before it.
func TestSubscribeLimitReadsNoFurther(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	ctx := ctxT(t)
	publishTitled(t, officer, 1) // r00
	hidden, err := officer.Publish(ctx, &clientv1.PublishRequest{
		Portions: []*clientv1.NewPortion{{Banner: "TOP SECRET//REL TO USA, GBR", Title: "hidden", Body: []byte("b")}},
		Topics:   []string{"CT"},
	})
	if err != nil {
		t.Fatal(err)
	}
	publishTitled(t, officer, 2) // r00 again, r01
	for i, want := range []string{"r00", "r00", "r01"} {
		stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.GetReport().GetPortions()[0].GetTitle(); got != want {
			t.Fatalf("subscription %d: got %s, want %s", i, got, want)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("subscription %d did not end after its limit: %v", i, err)
		}
	}
	evs, err := f.servers["USA"].node.Store().Events(hidden.GetId())
	if err != nil {
		t.Fatal(err)
	}
	withheld := 0
	for _, e := range evs {
		if e.GetKind() == "withheld" {
			withheld++
		}
	}
	if withheld != 1 {
		t.Fatalf("the hidden report is recorded as withheld from the analyst %d times, want 1 (events: %v)", withheld, evs)
	}
}

// TestSubscribeLimitStalledReader: a subscriber that asked for a limit and
// stops reading while its last deliveries are sent is disconnected after
// subscriber_stall, told that it stopped reading, with the cursor of the
// last report sent; a resumed subscription continues after the last one
// it received.
func TestSubscribeLimitStalledReader(t *testing.T) {
	f := startFedWith(t, func(c *Config) { c.SubscriberStall = 300 * time.Millisecond }, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	ctx := ctxT(t)
	// More than the transport's windows hold, fewer than the queue.
	const n = 400
	body := []byte(strings.Repeat("x", 16<<10))
	for i := range n {
		if _, err := officer.Publish(ctx, &clientv1.PublishRequest{
			Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: fmt.Sprintf("r%04d", i), Body: body}},
			Topics:   []string{"CT"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{Limit: n})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // reads nothing meanwhile
	got, end := readInOrder(t, stream)
	if st, _ := status.FromError(end); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "stopped reading: nothing could be sent to it for 300ms") {
		t.Fatalf("after %d reports the stream ended with %v, want ResourceExhausted saying it stopped reading", got, end)
	}
	if got == 0 || got == n {
		t.Fatalf("%d of %d reports arrived before the end: the test did not stall the sender", got, n)
	}
	resumed, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := resumed.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if title, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", got); title != want {
		t.Fatalf("resumed with %s, want %s (the first not received)", title, want)
	}
}
