package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// drainPublishStream reads a PublishStream's answers until it ends, and
// gives them by seq; a seq answered twice fails the test.
func drainPublishStream(t *testing.T, st clientv1.ClientService_PublishStreamClient) (map[uint64]*clientv1.PublishStreamResponse, error) {
	t.Helper()
	got := map[uint64]*clientv1.PublishStreamResponse{}
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if _, twice := got[a.GetSeq()]; twice {
			t.Fatalf("seq %d answered twice", a.GetSeq())
		}
		got[a.GetSeq()] = a
	}
}

// Every request on a PublishStream gets one answer with its seq: good ones
// are published (and reach the partner), bad ones get exactly the status
// Publish gives them, and the stream goes on past them. More requests than
// the node works on at once are sent, so the window is filled and freed.
func TestPublishStreamAnswersEachRequest(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	good := PublishWindow + 44
	bad := badPublishes()
	bad = bad[:len(bad)-1] // the last is over the message limit: it ends a stream (below)

	st, err := usa.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// seq 1..good are good; good+1.. are the bad ones, sent among them.
	sendErr := make(chan error, 1)
	go func() {
		b := 0
		for i := 1; i <= good; i++ {
			req := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Title: fmt.Sprint("stream-", i), Body: []byte("x")}}}
			if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: req}); err != nil {
				sendErr <- err
				return
			}
			if i%37 == 0 && b < len(bad) {
				if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(good + 1 + b), Report: bad[b].req}); err != nil {
					sendErr <- err
					return
				}
				b++
			}
		}
		if b != len(bad) {
			sendErr <- fmt.Errorf("sent %d of the %d bad requests", b, len(bad))
			return
		}
		sendErr <- st.CloseSend()
	}()
	got, err := drainPublishStream(t, st)
	if err != nil {
		t.Fatalf("stream ended with %v after %d answers", err, len(got))
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if len(got) != good+len(bad) {
		t.Fatalf("%d answers to %d requests", len(got), good+len(bad))
	}
	var ids []string
	for i := 1; i <= good; i++ {
		a := got[uint64(i)]
		if err := PublishStreamErr(a); err != nil || a.GetPublished().GetId() == "" {
			t.Fatalf("seq %d: %v (%v)", i, a, err)
		}
		if rs := a.GetPublished().GetReleases(); len(rs) != 1 || rs[0].GetParty() != "GBR" {
			t.Fatalf("seq %d: releases %v, want one to GBR", i, rs)
		}
		ids = append(ids, a.GetPublished().GetId())
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != good {
		t.Fatal("two answers name the same report")
	}
	for b, tc := range bad {
		a := got[uint64(good+1+b)]
		if a.GetPublished() != nil {
			t.Fatalf("%s: published (%v)", tc.name, a)
		}
		_, uerr := usa.Publish(ctxT(t), tc.req)
		want, have := status.Convert(uerr), status.Convert(PublishStreamErr(a))
		if have.Code() != tc.code || !proto.Equal(have.Proto(), want.Proto()) {
			t.Fatalf("%s: stream answered %v, Publish answers %v", tc.name, have.Proto(), want.Proto())
		}
	}
	if n := count(t, usa); n != good {
		t.Fatalf("USA holds %d reports, want %d", n, good)
	}
	deadline := time.Now().Add(20 * time.Second)
	for count(t, gbr) != good {
		if time.Now().After(deadline) {
			t.Fatalf("GBR holds %d of the %d reports", count(t, gbr), good)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A request over the message limit ends the stream with ResourceExhausted,
// as it fails a Publish call; what was answered before stays published,
// and the node serves the next stream.
func TestPublishStreamOversizedMessageEndsIt(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	usa := f.officer("USA")
	ok := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}}
	over := badPublishes()[len(badPublishes())-1]
	st, err := usa.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: 1, Report: ok}); err != nil {
		t.Fatal(err)
	}
	if a, err := st.Recv(); err != nil || PublishStreamErr(a) != nil || a.GetSeq() != 1 {
		t.Fatalf("first answer: %v, %v", a, err)
	}
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: 2, Report: over.req}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := drainPublishStream(t, st); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream ended with %v, want ResourceExhausted", err)
	}
	if n := count(t, usa); n != 1 {
		t.Fatalf("USA holds %d reports, want 1", n)
	}
	st, err = usa.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: 3, Report: ok}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if got, err := drainPublishStream(t, st); err != nil || len(got) != 1 || PublishStreamErr(got[3]) != nil {
		t.Fatalf("the next stream: %v, %v", got, err)
	}
}

// A client that goes away mid-stream, with requests in flight and answers
// unread, leaves no goroutine behind (TestMain checks) and the node
// serving; every report it stored is whole.
func TestPublishStreamClientCancels(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	usa := f.officer("USA")
	ctx, cancel := context.WithCancel(ctxT(t))
	st, err := usa.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}}
	for i := range 2 * PublishWindow {
		if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: req}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := usa.Publish(ctxT(t), req); err != nil {
		t.Fatalf("publish after a cancelled stream: %v", err)
	}
	resp, err := usa.ListReports(ctxT(t), &clientv1.ListReportsRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetReports() {
		if _, err := usa.GetReport(ctxT(t), &clientv1.GetReportRequest{Id: r.GetId()}); err != nil {
			t.Fatalf("report %s: %v", r.GetId(), err)
		}
	}
}
