package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// grpcBaseline measures raw grpc-go server streaming over mTLS on loopback:
// a server that sends msg as fast as the client reads it, for d. It is the
// transport's limit for the deliveries a node makes, with the same message.
func grpcBaseline(ctx context.Context, dir string, msg *clientv1.SubscribeResponse, d time.Duration) (float64, error) {
	ca, err := pki.OpenDevCA(filepath.Join(dir, "baseline-ca"), partyB)
	if err != nil {
		return 0, err
	}
	bundle, err := ca.Bundle(ctx)
	if err != nil {
		return 0, err
	}
	issue := func(kind pki.Kind, name string) (*pki.CertSource, error) {
		is, err := ca.Issue(ctx, pki.IssueRequest{Identity: pki.Identity{Domain: pki.DefaultDomain(partyB), Party: partyB, Kind: kind, Name: name}, TTL: time.Hour})
		if err != nil {
			return nil, err
		}
		return pki.StaticCertSource(is)
	}
	serverSrc, err := issue(pki.KindNode, "baseline")
	if err != nil {
		return 0, err
	}
	clientSrc, err := issue(pki.KindService, "baseline")
	if err != nil {
		return 0, err
	}
	trust := pki.NewTrust()
	trust.Set(partyB, bundle)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(serverSrc, trust, nil))))
	clientv1.RegisterClientServiceServer(srv, &floodServer{msg: msg})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	want := func(pki.Identity) error { return nil }
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(clientSrc, trust, want, nil))))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := clientv1.NewClientServiceClient(conn).Subscribe(sctx, &clientv1.SubscribeRequest{})
	if err != nil {
		return 0, err
	}
	// Warm up, then count for d.
	for range 1000 {
		if _, err := stream.Recv(); err != nil {
			return 0, fmt.Errorf("baseline stream: %w", err)
		}
	}
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := stream.Recv(); err != nil {
			return 0, fmt.Errorf("baseline stream: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// floodServer streams one message over and over to each subscriber.
type floodServer struct {
	clientv1.UnimplementedClientServiceServer
	msg *clientv1.SubscribeResponse
}

func (s *floodServer) Subscribe(_ *clientv1.SubscribeRequest, stream grpc.ServerStreamingServer[clientv1.SubscribeResponse]) error {
	for {
		if err := stream.Send(s.msg); err != nil {
			return nil // the client went away
		}
	}
}

// cryptoRates measures ed25519 (the signature scheme of every statement)
// on one core: the time of one signature and one verification over a
// payload of the given size, run for about d each.
func cryptoRates(size int, d time.Duration) (sign, verify time.Duration, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return 0, 0, err
	}
	msg := make([]byte, size)
	if _, err := rand.Read(msg); err != nil {
		return 0, 0, err
	}
	var sig []byte
	n, start := 0, time.Now()
	for ; time.Since(start) < d; n++ {
		sig = ed25519.Sign(priv, msg)
	}
	sign = time.Since(start) / time.Duration(n)
	var ok atomic.Bool
	n, start = 0, time.Now()
	for ; time.Since(start) < d; n++ {
		ok.Store(ed25519.Verify(pub, msg, sig))
	}
	verify = time.Since(start) / time.Duration(n)
	if !ok.Load() {
		return 0, 0, errors.New("ed25519 self-check failed")
	}
	return sign, verify, nil
}

// messageSize is the encoded size of a message.
func messageSize(m proto.Message) int { return proto.Size(m) }
