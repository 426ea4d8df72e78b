package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// BenchmarkPublishDeliverAudit measures publish→deliver throughput with the
// audit log on, and its cost as a ratio to the same run with the log off
// (a switch only a benchmark can turn: a node always audits). Two
// federations of USA and GBR run side by side on real mTLS loopback sockets
// and real bbolt files, identical but for the switch (off on both nodes of
// the second). Each round, 4 officers publish 300 reports of 2 KiB
// releasable to GBR on 4 connections; the round ends when each of USA's 4
// subscriber streams has received all of them and GBR has acknowledged
// every envelope. Rounds alternate between the two, so drift on a shared
// machine falls on both.
func BenchmarkPublishDeliverAudit(b *testing.B) {
	const (
		subscribers = 4
		publishers  = 4
		perRound    = 300
	)
	type rig struct {
		f        *fed
		officers []clientv1.ClientServiceClient
		got      []atomic.Int64
		total    time.Duration
		reports  int
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	setup := func(audit bool) *rig {
		f := startFedWith(b, func(c *Config) {
			if c.Party != "USA" {
				return
			}
			for i := 0; i < subscribers; i++ {
				c.Subscribers = append(c.Subscribers, SubscriberConfig{Name: fmt.Sprintf("sub%d", i), Clearance: "SECRET", NeedToKnow: []string{"CT"}})
			}
		}, "USA", "GBR")
		if !audit {
			for _, s := range f.servers {
				s.node.Store().DisableAuditForBenchmark()
			}
		}
		r := &rig{f: f, got: make([]atomic.Int64, subscribers)}
		for range publishers {
			r.officers = append(r.officers, f.officer("USA"))
		}
		usaCA := f.ca("USA")
		usaBundle, _ := usaCA.Bundle(context.Background())
		for i := 0; i < subscribers; i++ {
			id, _ := pki.NewIdentity("USA", pki.KindService, fmt.Sprintf("sub%d", i))
			is, err := usaCA.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			s, err := f.clientWith("USA", is, usaBundle).Subscribe(ctx, &clientv1.SubscribeRequest{})
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, err := s.Recv(); err != nil {
						return
					}
					r.got[i].Add(1)
				}
			}()
		}
		return r
	}
	round := func(r *rig) {
		target := int64(r.reports + perRound)
		start := time.Now()
		var pw sync.WaitGroup
		for _, o := range r.officers {
			pw.Add(1)
			go func() {
				defer pw.Done()
				for range perRound / publishers {
					_, err := o.Publish(ctx, &clientv1.PublishRequest{Topics: []string{"CT"}, Portions: []*clientv1.NewPortion{{Banner: "SECRET//REL TO GBR, USA", Body: make([]byte, 2048)}}})
					if err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		pw.Wait()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			done := true
			for i := range r.got {
				done = done && r.got[i].Load() >= target
			}
			if done {
				if n, err := r.f.servers["USA"].node.Store().OutboxLen("GBR"); err == nil && n == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("a round did not complete within 2 minutes")
			}
			time.Sleep(time.Millisecond)
		}
		r.total += time.Since(start)
		r.reports += perRound
	}
	on, off := setup(true), setup(false)
	round(on) // warm up both (connections, page cache)
	round(off)
	on.total, off.total = 0, 0
	onBase, offBase := on.reports, off.reports
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			round(on)
			round(off)
		} else {
			round(off)
			round(on)
		}
	}
	b.StopTimer()
	onRate := float64(on.reports-onBase) / on.total.Seconds()
	offRate := float64(off.reports-offBase) / off.total.Seconds()
	b.ReportMetric(onRate, "reports/s-audit-on")
	b.ReportMetric(offRate, "reports/s-audit-off")
	b.ReportMetric(onRate/offRate, "on/off")
	b.ReportMetric(0, "ns/op")
	b.Logf("audit on: %.0f reports/s (%d reports, each to %d subscriber streams and GBR); off: %.0f reports/s; on/off = %.3f",
		onRate, on.reports-onBase, subscribers, offRate, onRate/offRate)
	cancel()
	wg.Wait()
}
