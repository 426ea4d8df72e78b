package gateway

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// PublishWindow is how many of one PublishStream's requests a node holds
// unanswered: it reads the stream's next request only once the answer to
// one of them is sent (the proto comment states it).
const PublishWindow = 256

// PublishStream publishes each request as Publish would, and sends its
// answer with its seq as each finishes. One goroutine reads the stream,
// publishers publish (as many as requests are published at once, at most
// PublishWindow), and one goroutine sends the answers: grpc allows one
// Recv and one Send at a time. A slot of the window is taken before a
// request is read and given back once its answer is sent (or discarded,
// once sending has failed).
//
// A publisher lives as long as the stream and takes request after
// request: a goroutine started for each request grew its stack for each,
// copying it two or three times (3 % of a node's CPU at full rate,
// BENCHMARKS.md).
func (s *clientService) PublishStream(stream grpc.BidiStreamingServer[clientv1.PublishStreamRequest, clientv1.PublishStreamResponse]) error {
	by, err := mustCaller(stream.Context())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)

	slots := make(chan struct{}, PublishWindow)
	// answers holds at most PublishWindow answers (one per slot), so a
	// publisher never waits to hand its answer over.
	answers := make(chan *clientv1.PublishStreamResponse, PublishWindow)
	sent := make(chan error, 1)
	go func() {
		var err error
		for a := range answers {
			if err == nil {
				if err = stream.Send(a); err != nil {
					cancel(err)
				}
			}
			<-slots
		}
		sent <- err
	}()

	var publishers sync.WaitGroup
	work := make(chan *clientv1.PublishStreamRequest) // to an idle publisher
	started := 0
	publisher := func(req *clientv1.PublishStreamRequest) {
		for ok := true; ok; req, ok = <-work {
			answers <- s.publishAnswer(ctx, by, req)
		}
	}
	var readErr error
	for readErr == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			readErr = context.Cause(ctx)
			continue
		}
		req, err := stream.Recv()
		if err == nil {
			// As a unary call is: the certificate may have expired, or
			// its CA left this node's trust, since the stream opened.
			_, err = s.authn.identify(stream.Context(), clientv1.ClientService_PublishStream_FullMethodName)
		}
		if err != nil {
			<-slots
			readErr = err
			continue
		}
		select {
		case work <- req:
			continue
		default:
		}
		if started == PublishWindow {
			work <- req // every publisher is busy; one will be free
			continue
		}
		started++
		publishers.Go(func() { publisher(req) })
	}
	close(work)
	publishers.Wait()
	close(answers)
	sendErr := <-sent
	switch {
	case sendErr != nil:
		return sendErr
	case errors.Is(readErr, io.EOF):
		return nil
	}
	return readErr
}

// publishAnswer publishes one request of a PublishStream and gives its
// answer: the report's id and releases, or the status Publish would give.
func (s *clientService) publishAnswer(ctx context.Context, by pki.Identity, req *clientv1.PublishStreamRequest) *clientv1.PublishStreamResponse {
	resp, err := s.publish(ctx, "PublishStream", by, req.GetReport())
	if err != nil {
		st := grpcstatus.Convert(err).Proto()
		return &clientv1.PublishStreamResponse{Seq: req.GetSeq(), Result: &clientv1.PublishStreamResponse_Error{
			Error: &clientv1.PublishError{Code: st.GetCode(), Message: st.GetMessage(), Details: st.GetDetails()},
		}}
	}
	return &clientv1.PublishStreamResponse{Seq: req.GetSeq(), Result: &clientv1.PublishStreamResponse_Published{Published: resp}}
}

// PublishStreamErr is the error a PublishStream answer carries, as the
// status error Publish would have returned (codes, message and details
// intact), or nil when the report was published.
func PublishStreamErr(a *clientv1.PublishStreamResponse) error {
	e := a.GetError()
	if e == nil {
		return nil
	}
	code := e.GetCode()
	if code == int32(codes.OK) {
		code = int32(codes.Unknown) // an error answer is never OK
	}
	return grpcstatus.ErrorProto(&status.Status{Code: code, Message: e.GetMessage(), Details: e.GetDetails()})
}
