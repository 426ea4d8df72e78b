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

	"github.com/tearline/tearline/pki"
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

// publishOne publishes one report over a new PublishStream of c, as seq,
// and gives the stream's answers and how it ended.
func publishOne(t *testing.T, c clientv1.ClientServiceClient, seq uint64, req *clientv1.PublishRequest) (map[uint64]*clientv1.PublishStreamResponse, error) {
	t.Helper()
	st, err := c.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: seq, Report: req}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	return drainPublishStream(t, st)
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
// as it fails a Publish call, with requests still in flight: every report
// answered before the end is stored, and the node serves the next stream.
func TestPublishStreamOversizedMessageEndsIt(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	usa := f.officer("USA")
	ok := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}}
	over := badPublishes()[len(badPublishes())-1]
	st, err := usa.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: ok}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: 200, Report: over.req}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	got, err := drainPublishStream(t, st)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream ended with %v, want ResourceExhausted", err)
	}
	for seq, a := range got {
		if _, err := usa.GetReport(ctxT(t), &clientv1.GetReportRequest{Id: a.GetPublished().GetId()}); err != nil {
			t.Fatalf("answered seq %d (%v) is not stored: %v", seq, a, err)
		}
	}
	stored, err := f.servers["USA"].Node().Store().Count()
	if err != nil || stored < len(got) || stored > 200 {
		t.Fatalf("USA stored %d reports (%v); %d were answered, 200 sent", stored, err, len(got))
	}
	if got, err := publishOne(t, usa, 3, ok); err != nil || len(got) != 1 || PublishStreamErr(got[3]) != nil {
		t.Fatalf("the next stream: %v, %v", got, err)
	}
}

// A client that stops reading answers stops the node reading its
// requests (the window is only freed as answers are sent): the node stops
// publishing, well short of what was sent, until the client reads again;
// then every request is answered. A client that then goes away leaves no
// goroutine behind (TestMain checks).
func TestPublishStreamClientStopsReading(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	usa := f.officer("USA")
	store := f.servers["USA"].Node().Store()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	st, err := usa.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const sent = 6000
	req := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}}
	sendErr := make(chan error, 1)
	go func() {
		for i := range sent {
			if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: req}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	// Wait until the node's count holds still for half a second.
	stored, since := -1, time.Now()
	for time.Since(since) < 500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
		n, err := store.Count()
		if err != nil {
			t.Fatal(err)
		}
		if n != stored {
			stored, since = n, time.Now()
		}
	}
	if stored == 0 || stored >= sent {
		t.Fatalf("with no answer read, USA stored %d of %d reports; want it to stop short", stored, sent)
	}
	t.Logf("with no answer read, USA stopped at %d of %d reports", stored, sent)
	got, err := drainPublishStream(t, st)
	if err != nil || len(got) != sent {
		t.Fatalf("once read: %d answers, %v", len(got), err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	// And one that goes away with requests in flight and answers unread.
	st, err = usa.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 * PublishWindow {
		if err := st.Send(&clientv1.PublishStreamRequest{Seq: uint64(i), Report: req}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if _, err := usa.Publish(ctxT(t), req); err != nil {
		t.Fatalf("publish after a cancelled stream: %v", err)
	}
}

// The caller's certificate is checked again before each request: once it
// expires, the stream ends with Unauthenticated, as a unary call would
// fail, after answering what was read before.
func TestPublishStreamEndsWhenTheCertificateExpires(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	id, err := pki.NewIdentity("USA", pki.KindOfficer, "shortlived")
	if err != nil {
		t.Fatal(err)
	}
	is, err := f.ca("USA").Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := f.ca("USA").Bundle(context.Background())
	c := f.clientWith("USA", is, bundle)
	st, err := c.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	req := &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO USA, GBR", Body: []byte("x")}}}
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: 1, Report: req}); err != nil {
		t.Fatal(err)
	}
	if a, err := st.Recv(); err != nil || PublishStreamErr(a) != nil {
		t.Fatalf("before expiry: %v, %v", a, err)
	}
	time.Sleep(time.Until(is.Leaf().NotAfter) + time.Second)
	if err := st.Send(&clientv1.PublishStreamRequest{Seq: 2, Report: req}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if got, err := drainPublishStream(t, st); status.Code(err) != codes.Unauthenticated || len(got) != 0 {
		t.Fatalf("after expiry: %v answers, %v; want none and Unauthenticated", got, err)
	}
	if n, _ := f.servers["USA"].Node().Store().Count(); n != 1 {
		t.Fatalf("USA holds %d reports, want 1", n)
	}
}
