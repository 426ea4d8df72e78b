package gateway

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// deliverHandlers counts the Deliver handlers running in this process.
func deliverHandlers() int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return strings.Count(b.String(), "(*federationService).Deliver(")
}

// Regression (issue 8, partition suite): a Deliver stream cancelled just
// after the server read an item from it left its handler waiting forever
// for a receive error that its reader goroutine never sent (the reader
// stopped on the cancelled context without saying so). Each such stream
// leaked a handler, and the node then never stopped on SIGTERM: graceful
// stop waits for every handler (so, if this regresses, the test's cleanup
// hangs too after the failure is reported).
func TestDeliverEndsWhenCancelled(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	id, _ := pki.NewIdentity("USA", pki.KindNode, "usa")
	is, err := f.ca("USA").Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	gbrBundle, _ := f.ca("GBR").Bundle(context.Background())
	client := federationv1.NewFederationServiceClient(f.conn("GBR", is, gbrBundle))
	// Each node's link to the other holds a Deliver stream open: wait for
	// both, so that they are not taken for leaks.
	for deadline := time.Now().Add(10 * time.Second); deliverHandlers() < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	before := deliverHandlers()
	// An envelope that fails its checks: refused and quarantined, quickly.
	junk := func(seq uint64) *federationv1.DeliverRequest {
		return &federationv1.DeliverRequest{Seq: seq, Item: &federationv1.DeliverRequest_Envelope{Envelope: &reportv1.Envelope{
			Header: &reportv1.Signed{Payload: []byte("not a header")},
		}}}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				ctx, cancel := context.WithCancel(context.Background())
				stream, err := client.Deliver(ctx)
				if err != nil {
					cancel()
					continue
				}
				for j := 0; j <= (w+i)%3; j++ {
					_ = stream.Send(junk(uint64(j + 1)))
				}
				if (w+i)%2 == 0 {
					_, _ = stream.Recv() // cancel mid-stream, after the server answered one
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for deliverHandlers() > before {
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
			var stuck []string
			for _, g := range strings.Split(b.String(), "\n\n") {
				if strings.Contains(g, "(*federationService).Deliver") {
					stuck = append(stuck, g)
				}
			}
			t.Fatalf("%d Deliver handlers still run 10s after their streams were cancelled:\n%s", deliverHandlers()-before, strings.Join(stuck, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
