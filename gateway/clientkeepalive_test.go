package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/internal/faultproxy"
	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// TestSubscriberNoticesAVanishedNode: a subscription through a network
// that goes silent (a frozen host, a cut cable: no FIN, no RST) ends with
// Unavailable once the client's keepalive gets no answer, instead of
// waiting forever. The keepalive is shortened here (the node accepts a
// ping every 5 s).
func TestSubscriberNoticesAVanishedNode(t *testing.T) {
	old := clientKeepalive
	clientKeepalive = keepalive.ClientParameters{Time: 5 * time.Second, Timeout: 2 * time.Second}
	t.Cleanup(func() { clientKeepalive = old })
	f := startFed(t, "USA", "GBR")
	proxy, err := faultproxy.New("127.0.0.1:0", f.servers["USA"].Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA", DevSubscriber))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Dial(proxy.Addr(), prof)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	publishTitled(t, f.officer("USA"), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	sub, err := clientv1.NewClientServiceClient(conn).Subscribe(ctx, &clientv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil {
		t.Fatal(err)
	}
	proxy.Set(faultproxy.Stall)
	start := time.Now()
	_, err = sub.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream through a silent network ended with %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the silent network was noticed after %s", d)
	}
	t.Logf("noticed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
