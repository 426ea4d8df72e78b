package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
)

// BenchmarkSuspendCutoff measures how fast a suspension cuts streams off
// (issue 5): USA's node with three linked partners under a steady publish
// load and 1,000 live subscriber streams (100 subscriber services x 10
// streams); in each trial a security officer suspends a subscriber (10
// streams affected) or a partner (its real link plus 10 more streams with
// its node identity), and the time from the suspend call returning to the
// last affected stream seeing its end is recorded. It reports p50 and p99
// over the trials (at least 50 of each kind) and ignores b.N: run it with
// -benchtime=1x.
//
//	go test -run '^$' -bench BenchmarkSuspendCutoff -benchtime 1x ./gateway/
func BenchmarkSuspendCutoff(b *testing.B) {
	const (
		subscribers   = 100
		perSubscriber = 10
		probes        = 10
		trials        = 60
	)
	f := startFedWith(b, func(c *Config) {
		if c.Party != "USA" {
			return
		}
		for i := 0; i < subscribers; i++ {
			c.Subscribers = append(c.Subscribers, SubscriberConfig{Name: fmt.Sprintf("sub%03d", i), Clearance: "SECRET", NeedToKnow: []string{"CT"}})
		}
	}, "USA", "GBR", "CAN", "AUS")
	usaCA := f.ca("USA")
	usaBundle, _ := usaCA.Bundle(context.Background())
	officer := f.officer("USA")
	adminConn := func() adminv1.AdminServiceClient {
		prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA"))
		if err != nil {
			b.Fatal(err)
		}
		is, _ := prof.Issued()
		return adminv1.NewAdminServiceClient(f.conn("USA", is, usaBundle))
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Steady publish load: TEARLINE_BENCH_RATE reports/s (default 5) of
	// 2 KiB, releasable to every partner, each delivered to the 1,000 streams.
	rate := 5
	if v, err := strconv.Atoi(os.Getenv("TEARLINE_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := officer.Publish(ctx, &clientv1.PublishRequest{Topics: []string{"CT"}, Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO AUS, CAN, GBR, USA", Body: make([]byte, 2048)}}})
			if err == nil {
				published.Add(1)
			}
		}
	}()

	// openStreams opens n subscriptions as one subscriber; each reports on
	// its channel when it ends.
	subClient := func(name string) clientv1.ClientServiceClient {
		id, _ := pki.NewIdentity("USA", pki.KindService, name)
		is, err := usaCA.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		return f.clientWith("USA", is, usaBundle)
	}
	type live struct{ ended chan time.Time }
	open := func(start func(context.Context) (func() error, error), n int) []live {
		var ls []live
		for i := 0; i < n; i++ {
			recv, err := start(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l := live{ended: make(chan time.Time, 1)}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for recv() == nil {
				}
				l.ended <- time.Now()
			}()
			ls = append(ls, l)
		}
		return ls
	}
	subscribe := func(c clientv1.ClientServiceClient) func(context.Context) (func() error, error) {
		return func(ctx context.Context) (func() error, error) {
			s, err := c.Subscribe(ctx, &clientv1.SubscribeRequest{ResumeSaved: true})
			if err != nil {
				return nil, err
			}
			return func() error { _, err := s.Recv(); return err }, nil
		}
	}
	streams := map[string][]live{}
	for i := 0; i < subscribers; i++ {
		name := fmt.Sprintf("sub%03d", i)
		streams[name] = open(subscribe(subClient(name)), perSubscriber)
	}
	b.Logf("%d live subscriber streams", subscribers*perSubscriber)

	// Partner probes: streams with the partner's own node identity.
	partnerProbes := func(party string) []live {
		id, _ := pki.NewIdentity(party, pki.KindNode, "probe")
		is, err := f.ca(party).Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		fc := federationv1.NewFederationServiceClient(f.conn("USA", is, usaBundle))
		return open(func(ctx context.Context) (func() error, error) {
			s, err := fc.Deliver(ctx)
			if err != nil {
				return nil, err
			}
			return func() error { _, err := s.Recv(); return err }, nil
		}, probes)
	}

	measure := func(ls []live, suspend func() error) (fromReturn, fromCall time.Duration) {
		called := time.Now()
		if err := suspend(); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		var last time.Time
		for _, l := range ls {
			select {
			case t := <-l.ended:
				if t.After(last) {
					last = t
				}
			case <-time.After(10 * time.Second):
				b.Fatal("a stream did not end within 10s of the suspension")
			}
		}
		return max(0, last.Sub(returned)), last.Sub(called)
	}

	b.ResetTimer()
	began, publishedBefore := time.Now(), published.Load()
	var subRet, subCall, partRet, partCall []time.Duration
	for i := 0; i < trials; i++ {
		name := fmt.Sprintf("sub%03d", i%subscribers)
		r, c := measure(streams[name], func() error {
			_, err := adminConn.SuspendSubscriber(ctx, &adminv1.SuspendSubscriberRequest{Name: name, Reason: "bench"})
			return err
		})
		subRet, subCall = append(subRet, r), append(subCall, c)
		if _, err := adminConn.ReinstateSubscriber(ctx, &adminv1.ReinstateSubscriberRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		streams[name] = open(subscribe(subClient(name)), perSubscriber)

		party := []string{"GBR", "CAN", "AUS"}[i%3]
		ps := partnerProbes(party)
		time.Sleep(20 * time.Millisecond) // the probes are established
		r, c = measure(ps, func() error {
			_, err := adminConn.SuspendPartner(ctx, &adminv1.SuspendPartnerRequest{Party: party, Reason: "bench"})
			return err
		})
		partRet, partCall = append(partRet, r), append(partCall, c)
		if _, err := adminConn.ReinstatePartner(ctx, &adminv1.ReinstatePartnerRequest{Party: party}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	pct := func(ds []time.Duration, p float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(p*float64(len(s))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(subRet, 0.50), "sub-p50-ms")
	b.ReportMetric(pct(subRet, 0.99), "sub-p99-ms")
	b.ReportMetric(pct(partRet, 0.50), "partner-p50-ms")
	b.ReportMetric(pct(partRet, 0.99), "partner-p99-ms")
	b.ReportMetric(0, "ns/op")
	elapsed := time.Since(began)
	b.Logf("trials: %d subscriber, %d partner in %s; load %d reports/s asked, %.1f/s published during the trials",
		len(subRet), len(partRet), elapsed.Round(time.Millisecond), rate, float64(published.Load()-publishedBefore)/elapsed.Seconds())
	b.Logf("from the call's start (includes the call): subscriber p50 %.2f ms p99 %.2f ms; partner p50 %.2f ms p99 %.2f ms",
		pct(subCall, 0.5), pct(subCall, 0.99), pct(partCall, 0.5), pct(partCall, 0.99))
	cancel()
	wg.Wait()
}
