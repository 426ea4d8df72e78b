package gateway

import (
	"context"
	"testing"
	"time"
)

// TestLinkRetriesAtOnceWhenThePartnerReturns: a partner node that comes
// back gets what was queued for it at once, not after the link's backoff.
// USA's link to GBR waits a minute between attempts here; GBR's own link
// connecting to USA as GBR starts wakes it.
func TestLinkRetriesAtOnceWhenThePartnerReturns(t *testing.T) {
	dir := t.TempDir()
	paths, err := DevInit(DevOptions{Dir: dir, Parties: []string{"USA", "GBR"}, BasePort: freePorts(t, 2)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fed{t: t, dir: dir, servers: map[string]*Server{}}
	// newServer makes a node (listening already); run serves until stop.
	newServer := func(path string) *Server {
		t.Helper()
		s := loadServer(t, path)
		for _, l := range s.links {
			l.MinBackoff, l.MaxBackoff = time.Minute, time.Minute
		}
		f.servers[s.cfg.Party] = s
		return s
	}
	run := func(s *Server) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	// Both listen before either links to the other: the first deliveries
	// need no retry.
	usaServer, gbrServer := newServer(paths[0]), newServer(paths[1])
	stopUSA := run(usaServer)
	defer stopUSA()
	stopGBR := run(gbrServer)
	usa := f.officer("USA")
	if !arrives(t, f.officer("GBR"), publishToGBR(t, usa), 10*time.Second) {
		t.Fatal("the link never delivered")
	}

	t0 := time.Now()
	stopGBR()
	t.Logf("GBR stopped in %s", time.Since(t0).Round(10*time.Millisecond))
	queued := publishToGBR(t, usa) // USA's link cannot reach GBR: it waits its minute
	began := time.Now()
	stopGBR = run(newServer(paths[1]))
	defer stopGBR()
	if !arrives(t, f.officer("GBR"), queued, 20*time.Second) {
		t.Fatal("a report queued while GBR was down did not reach GBR within 20 s of its return: the link waited out its backoff")
	}
	t.Logf("delivered %s after GBR's restart began", time.Since(began).Round(10*time.Millisecond))
}
