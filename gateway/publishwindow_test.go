package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// unreadStream is a PublishStream whose client sends `limit` requests at
// once and reads no answer until release is closed: Recv always has the
// next request ready, and Send blocks until then.
type unreadStream struct {
	grpc.ServerStream // not used by the handler beyond the methods below
	ctx               context.Context
	req               *clientv1.PublishRequest
	limit             int64
	read, sent        atomic.Int64
	release           chan struct{}
}

func (u *unreadStream) Context() context.Context { return u.ctx }

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
	ctx := peer.NewContext(ctxT(t), &peer.Peer{AuthInfo: credentials.TLSInfo{State: cs}})
	ctx = context.WithValue(ctx, callerKey{}, id)

	before, err := srv.Node().Store().Count()
	if err != nil {
		t.Fatal(err)
	}
	const sent = 4 * PublishWindow
	u := &unreadStream{ctx: ctx, limit: sent, release: make(chan struct{}),
		req: &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{{Banner: "SECRET", Body: []byte("x")}}}}
	done := make(chan error, 1)
	go func() { done <- srv.client.PublishStream(u) }()

	// Wait for the window's reports to be stored, then give the handler
	// time to read more if it would.
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := srv.Node().Store().Count()
		if err != nil {
			t.Fatal(err)
		}
		if n-before >= PublishWindow || time.Now().After(deadline) {
			break
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
	close(u.release)
	select {
	case err := <-done:
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
	if u.read.Load() != sent || u.sent.Load() != sent || n-before != sent {
		t.Fatalf("once read: %d read, %d answered, %d stored; want %d of each", u.read.Load(), u.sent.Load(), n-before, sent)
	}
}
