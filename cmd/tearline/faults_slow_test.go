//go:build faults

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// faultSlowConsumer: USA's analyst opens a stream, reads a few reports and
// stops reading while USA publishes; an officer's stream at USA and GBR's
// node keep receiving everything meanwhile. The analyst's queue is bounded:
// once it has stayed full for subscriber_stall (1 s here) the stream ends
// with ResourceExhausted and the cursor, and the analyst resumes from it.
// Over all cycles the analyst must receive every report exactly once, in
// order, across its streams; so must the officer's stream and GBR.
func faultSlowConsumer(t *testing.T, r *faultResult) {
	const (
		cycles    = 3
		perCycle  = 800 // more than the queue (512) and the transport windows hold
		stall     = time.Second
		fastBound = 30 * time.Second
	)
	f := newFederation(t, "USA", "GBR")
	f.editConfig("USA", func(c *gateway.Config) { c.SubscriberStall = stall })
	f.startAll("USA", "GBR")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA", gateway.DevSubscriber))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := gateway.DevAddress(f.dir, "USA")
	if err != nil {
		t.Fatal(err)
	}
	// Fixed transport windows (64 KiB): a client that reads little is not
	// granted the large windows gRPC's bandwidth estimate would give a fast
	// one, so its unread reports back up into the node's queue.
	conn, err := gateway.Dial(addr, prof, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	analyst := clientv1.NewClientServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The officer's stream reads everything as it comes.
	var fastMu sync.Mutex
	var fastGot []string
	fast, err := usa.client.Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			m, err := fast.Recv()
			if err != nil {
				return
			}
			fastMu.Lock()
			fastGot = append(fastGot, m.GetReport().GetId())
			fastMu.Unlock()
		}
	}()

	var published, slowGot []string
	body := []byte(strings.Repeat("s", 2048))
	disconnects := 0
	for c := range cycles {
		stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true})
		if err != nil {
			t.Fatal(err)
		}
		reads := rand.IntN(50)
		began := len(published)
		for i := range perCycle {
			id, err := usa.publish("SECRET//REL TO USA, GBR", fmt.Sprintf("slow %d-%d", c, i), body)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			published = append(published, id)
			if i < reads {
				m, err := stream.Recv()
				if err != nil {
					t.Fatalf("cycle %d: the analyst's stream ended while it was reading: %v", c, err)
				}
				slowGot = append(slowGot, m.GetReport().GetId())
			}
		}
		// The reader that keeps up is not held up by the one that does not.
		eventually(t, fastBound, "the officer's stream to receive the cycle's reports", func() bool {
			fastMu.Lock()
			defer fastMu.Unlock()
			return len(fastGot) >= len(published)
		})
		r.checks += len(published) - began
		// The analyst stays idle a while longer (its queue is full), then
		// reads: what was sent arrives, then the status.
		time.Sleep(3 * stall)
		var end error
		for {
			rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
			m, err := recvCtx(rctx, stream)
			rcancel()
			if err != nil {
				end = err
				break
			}
			slowGot = append(slowGot, m.GetReport().GetId())
		}
		st, _ := status.FromError(end)
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "reading too slowly") {
			t.Fatalf("cycle %d: the idle stream ended with %v, want ResourceExhausted (reading too slowly)", c, end)
		}
		disconnects++
		r.cycles++
	}
	// The analyst catches up from its cursor.
	stream, err := analyst.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true})
	if err != nil {
		t.Fatal(err)
	}
	for len(slowGot) < len(published) {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := recvCtx(rctx, stream)
		rcancel()
		if err != nil {
			break // counted as lost below
		}
		slowGot = append(slowGot, m.GetReport().GetId())
	}
	fastMu.Lock()
	fastCopy := append([]string(nil), fastGot...)
	fastMu.Unlock()
	for who, got := range map[string][]string{"analyst (across its streams)": slowGot, "officer": fastCopy} {
		count := map[string]int{}
		for _, id := range got {
			count[id]++
		}
		lost, doubled := tally(count, published)
		r.lost += len(lost)
		r.doubled += len(doubled)
		r.disordered += outOfOrder(got, published)
		if len(lost)+len(doubled) > 0 {
			t.Errorf("%s: %d lost, %d doubled", who, len(lost), len(doubled))
		}
	}
	drain(t, usa, "GBR", time.Minute)
	missing := gbr.missing(published)
	r.lost += len(missing)
	r.reports = len(published)
	r.checks += 2 * len(published)
	r.note("%d reports published at USA in %d cycles; the analyst stopped reading each time and was disconnected %d times (ResourceExhausted, stall %s), resumed from its cursor", len(published), cycles, disconnects, stall)
	r.note("the officer's stream at USA and GBR's node received all %d while the analyst was stalled", len(published))
}

// recvCtx is stream.Recv bounded by ctx.
func recvCtx(ctx context.Context, s interface {
	Recv() (*clientv1.SubscribeResponse, error)
}) (*clientv1.SubscribeResponse, error) {
	type res struct {
		m   *clientv1.SubscribeResponse
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := s.Recv()
		ch <- res{m, err}
	}()
	select {
	case x := <-ch:
		return x.m, x.err
	case <-ctx.Done():
		return nil, errors.New("no report within the bound")
	}
}
