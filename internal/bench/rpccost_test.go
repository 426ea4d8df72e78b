package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/tearline/tearline/pki"
)

// What a unary call costs against a message on a stream, over mutual TLS
// on loopback, with requests the size of the bench's (2,300 bytes), 256
// unanswered at a time, and a small answer: the reason the bench's
// publisher (and any system that feeds a node many reports) uses
// PublishStream. Client and server run in this process; cpu-µs/op is
// their CPU together, from getrusage.
//
//	go test -run '^$' -bench RPCCost -benchtime 100000x ./internal/bench/

type echoService struct {
	testpb.UnimplementedTestServiceServer
}

var smallAnswer = []byte("019af0e2-4c1d-7c3e-9a57-2f6c0d1e8b44")

func (echoService) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: smallAnswer}}, nil
}

func (echoService) FullDuplexCall(st testpb.TestService_FullDuplexCallServer) error {
	for {
		if _, err := st.Recv(); err != nil {
			return nil
		}
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: smallAnswer}}); err != nil {
			return err
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// echoClient serves echoService on loopback with the nodes' own mutual
// TLS (pki.ServerTLS and pki.ClientTLS, certificates from a development
// CA) and dials it as an officer.
func echoClient(b *testing.B) testpb.TestServiceClient {
	ctx := context.Background()
	ca, err := pki.OpenDevCA(b.TempDir(), "USA")
	if err != nil {
		b.Fatal(err)
	}
	bundle, err := ca.Bundle(ctx)
	if err != nil {
		b.Fatal(err)
	}
	trust := pki.NewTrust()
	trust.Set("USA", bundle)
	source := func(kind pki.Kind, name string) *pki.CertSource {
		id, err := pki.NewIdentity("USA", kind, name)
		if err != nil {
			b.Fatal(err)
		}
		src, err := pki.NewCertSource(ca, id, time.Hour, pki.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		return src
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(source(pki.KindNode, "echo"), trust, nil))))
	testpb.RegisterTestServiceServer(s, echoService{})
	go s.Serve(l)
	b.Cleanup(s.Stop)
	anyNode := func(pki.Identity) error { return nil }
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(source(pki.KindOfficer, "bench"), trust, anyNode, nil))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

const rpcCostUnanswered = 256

func BenchmarkRPCCostUnary(b *testing.B) {
	c := echoClient(b)
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 2300)}}
	if _, err := c.UnaryCall(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	cpu0 := processCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, rpcCostUnanswered)
	for w := range rpcCostUnanswered {
		wg.Go(func() {
			for i := w; i < b.N; i += rpcCostUnanswered {
				if _, err := c.UnaryCall(context.Background(), req); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func BenchmarkRPCCostStream(b *testing.B) {
	c := echoClient(b)
	st, err := c.FullDuplexCall(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	req := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 2300)}}
	slots := make(chan struct{}, rpcCostUnanswered)
	answered := make(chan error, 1)
	cpu0 := processCPU()
	b.ResetTimer()
	go func() {
		for range b.N {
			if _, err := st.Recv(); err != nil {
				answered <- err
				return
			}
			<-slots
		}
		answered <- nil
	}()
	for range b.N {
		slots <- struct{}{}
		if err := st.Send(req); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-answered; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if err := st.CloseSend(); err != nil {
		b.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		b.Fatalf("stream end: %v", err)
	}
}
