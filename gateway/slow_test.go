package gateway

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// readInOrder reads a subscription to its end, checking that the reports
// come titled r0000, r0001, ... in order; it returns how many came and the
// error that ended the stream.
func readInOrder(t *testing.T, stream grpc.ServerStreamingClient[clientv1.SubscribeResponse]) (int, error) {
	t.Helper()
	n := 0
	for {
		m, err := stream.Recv()
		if err != nil {
			return n, err
		}
		if got, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", n); got != want {
			t.Fatalf("report %d: got %s, want %s", n, got, want)
		}
		n++
	}
}

// TestSlowSubscriberDisconnected (issue 8, slow consumer): a subscriber
// that stops reading does not hold up another subscriber or the node; its
// queue is bounded, and once it has stayed full for subscriber_stall the
// subscriber is disconnected with ResourceExhausted and its cursor; it
// then resumes from that cursor with nothing lost and nothing twice.
func TestSlowSubscriberDisconnected(t *testing.T) {
	f := startFedWith(t, func(c *Config) { c.SubscriberStall = 300 * time.Millisecond }, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	slow, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := officer.Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Enough to fill the slow stream's transport windows and its queue.
	const n = 1200
	body := []byte(strings.Repeat("x", 2048))
	published := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := officer.Publish(ctx, &clientv1.PublishRequest{
				Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: fmt.Sprintf("r%04d", i), Body: body}},
				Topics:   []string{"CT"},
			}); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	// The reading subscriber gets every report while the other reads nothing.
	for i := range n {
		m, err := fast.Recv()
		if err != nil {
			t.Fatalf("the reading subscriber's stream ended after %d reports: %v", i, err)
		}
		if got, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", i); got != want {
			t.Fatalf("reading subscriber got %s, want %s", got, want)
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	// The slow stream: what was sent arrives, then the status.
	next, end := readInOrder(t, slow)
	st, _ := status.FromError(end)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "reading too slowly") || !strings.Contains(st.Message(), "cursor") {
		t.Fatalf("slow stream ended with %v, want ResourceExhausted naming the cursor", end)
	}
	if next == 0 || next >= n {
		t.Fatalf("the slow subscriber got %d of %d reports before it was disconnected", next, n)
	}
	t.Logf("disconnected after %d reports were sent to it: %s", next, st.Message())
	// Resume from the saved cursor: exactly the rest.
	resumed, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true})
	if err != nil {
		t.Fatal(err)
	}
	for ; next < n; next++ {
		m, err := resumed.Recv()
		if err != nil {
			t.Fatalf("resumed stream: %v", err)
		}
		if got, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", next); got != want {
			t.Fatalf("resumed at %s, want %s", got, want)
		}
	}
}

// TestSlowRecorderKeepsAReadingSubscriber: a subscription whose recorder
// waits for a slow commit stops sending (it may run only recordBudget
// ahead of its records), and its queue then stays full, or, with a limit,
// its last deliveries wait; the subscriber, which reads all along, is not
// disconnected as a slow one however long the commit takes. Once the
// commit goes on, it receives the rest in order.
func TestSlowRecorderKeepsAReadingSubscriber(t *testing.T) {
	const stall = 300 * time.Millisecond
	f := startFedWith(t, func(c *Config) { c.SubscriberStall = stall }, "USA", "GBR")
	officer := f.officer("USA")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	st := f.servers["USA"].Node().Store()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Enough to fill what runs ahead of the records, then the queue.
	n := recordBudget + subscriberQueue + 300
	publishN(ctx, t, officer, n, "SECRET//REL TO USA, GBR", "r", 16)

	// Without a limit, the queue fills; with one that ends within the
	// queue, the handler waits for the last deliveries to be sent.
	for _, limit := range []int{0, recordBudget + subscriberQueue/2} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			n := n
			if limit > 0 {
				n = limit
			}
			release := holdCommits(t, st)
			subCtx, endSub := context.WithCancel(ctx)
			defer endSub()
			sub, err := analyst.Subscribe(subCtx, &clientv1.SubscribeRequest{Limit: uint32(limit)})
			if err != nil {
				t.Fatal(err)
			}
			type got struct {
				n   int
				err error
			}
			count := make(chan int, n)
			done := make(chan got, 1)
			go func() {
				for i := range n {
					m, err := sub.Recv()
					if err != nil {
						done <- got{i, err}
						return
					}
					if title, want := m.GetReport().GetPortions()[0].GetTitle(), fmt.Sprintf("r%04d", i); title != want {
						done <- got{i, fmt.Errorf("report %d is %s, want %s", i, title, want)}
						return
					}
					count <- i + 1
				}
				done <- got{n, nil}
			}()
			// The sender stops near recordBudget while the commit is held.
			deadline := time.After(20 * time.Second)
			for received := 0; received < recordBudget; {
				select {
				case received = <-count:
				case g := <-done:
					t.Fatalf("the stream ended after %d reports while the commit was held: %v", g.n, g.err)
				case <-deadline:
					t.Fatalf("the subscriber received %d reports, want %d before its records wait for the commit", received, recordBudget)
				}
			}
			// Hold the commit many times subscriber_stall while the
			// subscriber reads.
			select {
			case g := <-done:
				t.Fatalf("the reading subscriber was disconnected while the node's commit was held: after %d reports: %v", g.n, g.err)
			case <-time.After(10 * stall):
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			select {
			case g := <-done:
				if g.err != nil {
					t.Fatalf("after the commit went on, the stream ended after %d of %d reports: %v", g.n, n, g.err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the subscriber did not receive all %d reports once the commit went on", n)
			}
			if limit > 0 {
				if _, err := sub.Recv(); err != io.EOF {
					t.Fatalf("after its limit the stream ended with %v, want its end (OK)", err)
				}
			}
		})
	}
}
