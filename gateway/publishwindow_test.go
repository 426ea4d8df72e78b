package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// unreadStream is a PublishStream whose client sends `limit` requests at
// once and reads no answer until release is closed: Recv always has the
// next request ready, and Send blocks until then.
type unreadStream struct {
	noServerStream
	ctx        context.Context
	req        *clientv1.PublishRequest
	limit      int64
	read, sent atomic.Int64
	release    chan struct{}
}

func (u *unreadStream) Context() context.Context { return u.ctx }

// noServerStream is the rest of a grpc.ServerStream, which the handler does
// not use: each method fails.
type noServerStream struct{}

var errNotInTest = errors.New("not available in this test's stream")

func (noServerStream) SetHeader(metadata.MD) error  { return errNotInTest }
func (noServerStream) SendHeader(metadata.MD) error { return errNotInTest }
func (noServerStream) SetTrailer(metadata.MD)       {}
func (noServerStream) Context() context.Context     { return context.Background() }
func (noServerStream) SendMsg(any) error            { return errNotInTest }
func (noServerStream) RecvMsg(any) error            { return errNotInTest }

func (u *unreadStream) Recv() (*clientv1.PublishStreamRequest, error) {
	n := u.read.Add(1)
	if n > u.limit {
		u.read.Add(-1) // count requests, not the end
		return nil, io.EOF
	}
	return &clientv1.PublishStreamRequest{Seq: uint64(n), Report: u.req}, nil
}

func (u *unreadStream) Send(*clientv1.PublishStreamResponse) error {
	select {
	case <-u.release:
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
	u.sent.Add(1)
	return nil
}

// TestPublishWindowIsExact: a PublishStream whose client reads no answer
// gets exactly PublishWindow of its requests read and published, however
// many it sends; once it reads, the rest follow and the stream ends OK.
// The handler is called directly, with the officer's real certificate in
// the stream's context, so that no transport buffer stands between the
// window and what the test counts.
func TestPublishWindowIsExact(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	srv := f.servers["USA"]
	chain, err := pki.ReadCertificatesFile(filepath.Join(f.dir, "USA", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13, PeerCertificates: chain}
	id, err := pki.PeerIdentity(cs, srv.trust, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: cs}})
	ctx = context.WithValue(ctx, callerKey{}, id)

	before, err := srv.Node().Store().Count()
	if err != nil {
		t.Fatal(err)
	}
	const total = 4 * PublishWindow
	u := &unreadStream{ctx: ctx, limit: total, release: make(chan struct{}),
		req: &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET", Body: []byte("x")}}}}
	done := make(chan error, 1)
	go func() { done <- srv.client.PublishStream(u) }()
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(u.release) }) }
	t.Cleanup(func() { // a failed test still ends the handler before the node stops
		release()
		cancel()
		<-done
	})

	// Wait for the window's reports to be stored, then give the handler
	// time to read more if it would.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := srv.Node().Store().Count()
		if err != nil {
			t.Fatal(err)
		}
		if n-before >= PublishWindow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with no answer read, only %d reports stored in 30 s (%d requests read)", n-before, u.read.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	n, err := srv.Node().Store().Count()
	if err != nil {
		t.Fatal(err)
	}
	if got := u.read.Load(); got != PublishWindow || n-before != PublishWindow {
		t.Fatalf("with no answer read: %d requests read and %d reports stored; want exactly %d of each", got, n-before, PublishWindow)
	}
	release()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("the stream ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end after its answers were read")
	}
	n, err = srv.Node().Store().Count()
	if err != nil {
		t.Fatal(err)
	}
	if u.read.Load() != total || u.sent.Load() != total || n-before != total {
		t.Fatalf("once read: %d read, %d answered, %d stored; want %d of each", u.read.Load(), u.sent.Load(), n-before, total)
	}
}
