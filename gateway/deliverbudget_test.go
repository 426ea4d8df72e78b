package gateway

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// A Deliver stream holds at most deliverBudget bytes of requests received
// and not answered: the reader waits for room (one request always fits),
// and a cancelled stream stops waiting.
func TestDeliverByteBudget(t *testing.T) {
	b := newByteBudget()
	if err := b.take(context.Background(), deliverBudget+1); err != nil {
		t.Fatalf("one request larger than the budget: %v, want taken", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.take(context.Background(), 10) }()
	select {
	case err := <-got:
		t.Fatalf("took more while the budget was spent: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.give(deliverBudget + 1)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("room given back did not wake the waiting reader")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { got <- b.take(ctx, deliverBudget) }()
	cancel()
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("a cancelled wait took the budget")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled stream kept waiting for room")
	}
}

// One partner may hold at most maxDeliverStreams Deliver streams open at a
// node: the next is refused with ResourceExhausted, and one closed makes
// room again.
func TestDeliverStreamsPerPartner(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	id, _ := pki.NewIdentity("GBR", pki.KindNode, "gbr")
	is, err := f.ca("GBR").Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	usaBundle, _ := f.ca("USA").Bundle(context.Background())
	client := federationv1.NewFederationServiceClient(f.conn("USA", is, usaBundle))
	junk := &federationv1.DeliverRequest{Seq: 1, Item: &federationv1.DeliverRequest_Envelope{Envelope: &reportv1.Envelope{
		Header: &reportv1.Signed{Payload: []byte("not a header")},
	}}}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	// Open streams until one is refused: GBR's own link holds one too.
	var cancels []context.CancelFunc
	refused := -1
	for i := range maxDeliverStreams + 1 {
		sctx, scancel := context.WithCancel(ctx)
		cancels = append(cancels, scancel)
		stream, err := client.Deliver(sctx)
		if err == nil {
			err = stream.Send(junk)
		}
		if err == nil {
			_, err = stream.Recv() // answered: its handler counts
		}
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("stream %d: %v, want answered or ResourceExhausted", i, err)
			}
			refused = i
			break
		}
	}
	if refused < 0 || refused > maxDeliverStreams {
		t.Fatalf("GBR opened %d Deliver streams at USA without a refusal, the most is %d", maxDeliverStreams+1, maxDeliverStreams)
	}
	// Closing one makes room for another.
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stream, err := client.Deliver(ctx)
		if err == nil {
			err = stream.Send(junk)
		}
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a stream closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
