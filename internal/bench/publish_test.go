package bench

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// countingNode answers Publish and PublishStream like a node, without
// storing anything: it counts the titles it was sent, and refuses the one
// titled refuse.
type countingNode struct {
	clientv1.UnimplementedClientServiceServer
	refuse string
	mu     sync.Mutex
	titles map[string]int
	// unanswered is how many PublishStream requests are read and not yet
	// answered, and mostUnanswered the most at any time.
	unanswered, mostUnanswered int
}

func (c *countingNode) take(req *clientv1.PublishRequest) error {
	t := req.GetPortions()[0].GetTitle()
	c.mu.Lock()
	c.titles[t]++
	c.mu.Unlock()
	if t == c.refuse {
		return status.Error(codes.InvalidArgument, "refused "+t)
	}
	return nil
}

func (c *countingNode) Publish(_ context.Context, req *clientv1.PublishRequest) (*clientv1.PublishResponse, error) {
	if err := c.take(req); err != nil {
		return nil, err
	}
	return &clientv1.PublishResponse{Id: "id"}, nil
}

// PublishStream answers each request after a random pause of up to 2 ms,
// so that answers come out of order, and notes the most requests it held
// unanswered at once.
func (c *countingNode) PublishStream(st grpc.BidiStreamingServer[clientv1.PublishStreamRequest, clientv1.PublishStreamResponse]) error {
	var sendMu sync.Mutex
	var held sync.WaitGroup
	defer held.Wait()
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.unanswered++
		c.mostUnanswered = max(c.mostUnanswered, c.unanswered)
		c.mu.Unlock()
		held.Go(func() {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			a := &clientv1.PublishStreamResponse{Seq: req.GetSeq(), Result: &clientv1.PublishStreamResponse_Published{Published: &clientv1.PublishResponse{Id: "id"}}}
			if err := c.take(req.GetReport()); err != nil {
				s := status.Convert(err)
				a.Result = &clientv1.PublishStreamResponse_Error{Error: &clientv1.PublishError{Code: int32(s.Code()), Message: s.Message()}}
			}
			sendMu.Lock()
			defer sendMu.Unlock()
			c.mu.Lock()
			c.unanswered--
			c.mu.Unlock()
			_ = st.Send(a)
		})
	}
}

func benchAgainst(t *testing.T, node *countingNode, unary bool) *bench {
	l := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	clientv1.RegisterClientServiceServer(s, node)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient("passthrough:///node", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &bench{o: Options{Workers: 8, Unary: unary}, pub: clientv1.NewClientServiceClient(cc), body: []byte("x")}
}

// Both ways of publishing send every report once, note when each was sent
// and answered, keep to the due times, and stop at a deadline; a refused
// report is an error naming it.
func TestPublishReports(t *testing.T) {
	for _, unary := range []bool{false, true} {
		name := map[bool]string{false: "stream", true: "unary"}[unary]
		t.Run(name, func(t *testing.T) {
			node := &countingNode{titles: map[string]int{}}
			b := benchAgainst(t, node, unary)
			const n = 300
			sent, acked := make([]time.Time, n), make([]time.Time, n)
			start := time.Now()
			due := func(i int) time.Time { return start.Add(time.Duration(i) * 100 * time.Microsecond) }
			got, err := b.publishReports(context.Background(), publication{phase: "P", n: n, due: due, sent: sent, acked: acked})
			if err != nil || got != n {
				t.Fatalf("published %d, %v; want %d", got, err, n)
			}
			for i := range n {
				if c := node.titles[title("P", i)]; c != 1 {
					t.Fatalf("report %d sent %d times", i, c)
				}
				if sent[i].Before(due(i)) || acked[i].Before(sent[i]) {
					t.Fatalf("report %d: due %v, sent %v, answered %v", i, due(i), sent[i], acked[i])
				}
			}
			if len(node.titles) != n {
				t.Fatalf("the node saw %d titles, want %d", len(node.titles), n)
			}
			if !unary && (node.mostUnanswered > b.o.Workers || node.mostUnanswered < 2) {
				t.Fatalf("the node held up to %d requests unanswered; want 2 to %d", node.mostUnanswered, b.o.Workers)
			}

			got, err = b.publishReports(context.Background(), publication{phase: "D", until: time.Now().Add(50 * time.Millisecond)})
			if err != nil || got == 0 || node.titles[title("D", got-1)] != 1 || node.titles[title("D", got)] != 0 {
				t.Fatalf("until a deadline: %d published, %v", got, err)
			}

			node.refuse = title("R", 5)
			if _, err := b.publishReports(context.Background(), publication{phase: "R", n: 20}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "publish R-5") {
				t.Fatalf("a refused report: %v", err)
			}
		})
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
