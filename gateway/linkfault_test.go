package gateway

import (
	"testing"
	"time"

	"github.com/tearline/tearline/internal/faultproxy"
)

// Regression (issue 8, partition suite): a link whose connection went
// silent (every byte dropped, no reset: a partner host gone, a firewall
// that lost the flow) hung for good, waiting for acknowledgements that
// could not come, after the network healed. With keepalive the link
// notices the dead connection and reconnects. Takes about 15 s: gRPC does
// not ping more often than every 10 s.
func TestLinkRecoversFromSilentConnection(t *testing.T) {
	var proxy *faultproxy.Proxy
	f := startFedWith(t, func(c *Config) {
		if c.Party != "USA" {
			return
		}
		for i := range c.Partners {
			if c.Partners[i].Party == "GBR" {
				p, err := faultproxy.New("127.0.0.1:0", c.Partners[i].Address)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				proxy = p
				c.Partners[i].Address = p.Addr()
			}
		}
	}, "USA", "GBR")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	if !arrives(t, gbr, publishToGBR(t, usa), 10*time.Second) {
		t.Fatal("the link never delivered through the proxy")
	}
	proxy.Set(faultproxy.Drop)
	lost := publishToGBR(t, usa) // sent into the void on the open connection
	time.Sleep(300 * time.Millisecond)
	proxy.Set(faultproxy.Pass) // healed, but the dropped connection stays silent
	began := time.Now()
	if !arrives(t, gbr, lost, 40*time.Second) {
		t.Fatalf("the link did not recover from a silent connection within 40s (proxy %+v)", proxy.Stats())
	}
	t.Logf("recovered %s after the heal", time.Since(began).Round(100*time.Millisecond))
	// The acknowledgement (and any audit checkpoint queued meanwhile)
	// follows the report: the outbox drains.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := f.servers["USA"].Node().Store().OutboxLen("GBR")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("USA's outbox for GBR still holds %d 10s after recovery", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
