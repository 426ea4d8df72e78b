package gateway

import (
	"context"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tearline/tearline/pki"
)

// countingConn counts the writes made to a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestQuietConnectionCarriesOnlyItsCalls: calls a few milliseconds apart
// on a client's connection to a node each cost the client one write, the
// call itself. With grpc-go's dynamic windows each call also made the
// client answer the node's bandwidth PING and send one of its own (two
// more writes, and as many wake-ups at each end: BENCHMARKS.md, issue 7).
func TestQuietConnectionCarriesOnlyItsCalls(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA"))
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	counting := grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: &writes}, nil
	})
	conn, err := Dial(f.servers["USA"].Addr(), prof, counting)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	check := func() {
		t.Helper()
		if _, err := h.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	check() // the handshake and the settings
	time.Sleep(50 * time.Millisecond)
	const calls = 40
	before := writes.Load()
	for range calls {
		check()
		time.Sleep(3 * time.Millisecond)
	}
	// A call is one write, or two when a busy machine has the client
	// flush its headers before its message. With dynamic windows it was
	// 2.0-2.6 (80-103 writes here, under -race and with other tests
	// running as well), with fixed ones 1.0-1.33.
	got := writes.Load() - before
	t.Logf("%d calls, %d writes", calls, got)
	if got >= calls*3/2 {
		t.Errorf("%d calls made the client write %d times, want about one write a call", calls, got)
	}
}
