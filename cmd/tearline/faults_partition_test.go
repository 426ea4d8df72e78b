//go:build faults

package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/internal/faultproxy"
)

// partitionCycles is how many times each link is cut.
const partitionCycles = 12

// recoveryBound is how long a link may take to deliver again after a cut
// heals. It covers a connection that a silent drop left dead, which the
// link must notice by itself (keepalive) before it reconnects.
const recoveryBound = 45 * time.Second

// longCut: a stall longer than this outlasts the link's keepalive (10 s
// of silence, then 5 s for an answer), so the link drops the connection
// while its bytes are still held, and they reach GBR after the heal, when
// the link is already resending them on a new connection.
const longCut = 16 * time.Second

type partitionCut struct {
	mode   faultproxy.Mode
	period time.Duration
	silent bool // a Drop whose connections are not reset when it heals
}

// partitionPlan is one link's cuts in random order: a third each stall,
// drop and reset, for random periods, with one stall longer than longCut
// and one drop left silent.
func partitionPlan() []partitionCut {
	var plan []partitionCut
	for i := range partitionCycles {
		c := partitionCut{mode: []faultproxy.Mode{faultproxy.Stall, faultproxy.Drop, faultproxy.Reset}[i%3], period: randDuration(200*time.Millisecond, 3*time.Second)}
		switch i {
		case 0:
			c.period = longCut + 2*time.Second
		case 1:
			c.silent = true
		}
		plan = append(plan, c)
	}
	rand.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	return plan
}

// faultPartition: USA and CAN both publish to GBR, each link through a
// fault proxy of its own (the sender's partner address for GBR is the
// proxy). Each link is cut partitionCycles times, independently, for a
// random period (partitionPlan): stalled (bytes held, then released; once
// for longer than the link's keepalive), dropped (bytes thrown away; the
// connections are reset when it heals, as a firewall that lost their state
// does, except once when they are left silent for the link to notice on
// its own) or reset. After each cut heals,
// the link must deliver what was published after the heal within
// recoveryBound. At the end both outboxes drain and GBR holds every report
// of each originator exactly once, in its publish order.
func faultPartition(t *testing.T, r *faultResult) {
	senders := []string{"USA", "CAN"}
	f := newFederation(t, "USA", "GBR", "CAN")
	gbrAddr, err := gateway.DevAddress(f.dir, "GBR")
	if err != nil {
		t.Fatal(err)
	}
	proxies := map[string]*faultproxy.Proxy{}
	for _, from := range senders {
		p, err := faultproxy.New("127.0.0.1:0", gbrAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies[from] = p
		f.editConfig(from, func(c *gateway.Config) {
			for i := range c.Partners {
				if c.Partners[i].Party == "GBR" {
					c.Partners[i].Address = p.Addr()
				}
			}
		})
	}
	f.startAll("GBR", "USA", "CAN")
	gbr := f.officer("GBR")
	officers := map[string]*officer{}
	pubs := map[string]*publisher{}
	for _, from := range senders {
		officers[from] = f.officer(from)
		pubs[from] = startPublisher(officers[from], "SECRET//REL TO "+from+", GBR", 512, 30*time.Millisecond)
		defer pubs[from].halt()
	}

	var (
		mu         sync.Mutex
		modes      = map[faultproxy.Mode]int{}
		silent     int
		longStalls int
		slowest    time.Duration
		failures   []string
	)
	var wg sync.WaitGroup
	for _, from := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, pub := proxies[from], pubs[from]
			for _, cut := range partitionPlan() {
				p.Set(cut.mode)
				time.Sleep(cut.period)
				p.Set(faultproxy.Pass)
				leftSilent := cut.mode == faultproxy.Drop && cut.silent
				if cut.mode == faultproxy.Drop && !cut.silent {
					p.ResetDropped()
				}
				healed := time.Now()
				// Wait for a report published after the heal to arrive.
				var after string
				for after == "" && time.Since(healed) < 5*time.Second {
					time.Sleep(50 * time.Millisecond)
					if ids := pub.published(); len(ids) > 0 {
						after = ids[len(ids)-1]
					}
				}
				ok := false
				for time.Since(healed) < recoveryBound {
					if len(gbr.missing([]string{after})) == 0 {
						ok = true
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				took := time.Since(healed)
				mu.Lock()
				r.cycles++
				modes[cut.mode]++
				if cut.period > longCut {
					longStalls++
				}
				if leftSilent {
					silent++
				}
				slowest = max(slowest, took)
				if !ok {
					failures = append(failures, fmt.Sprintf("%s's link to GBR did not deliver within %s after a %s cut of %s healed (left silent: %v)", from, recoveryBound, cut.mode, cut.period.Round(time.Millisecond), leftSilent))
				}
				mu.Unlock()
				if !ok {
					return
				}
				time.Sleep(randDuration(200*time.Millisecond, 1500*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		for _, from := range senders {
			t.Logf("%s proxy: %+v", from, proxies[from].Stats())
		}
		t.Fatal(strings.Join(failures, "; "))
	}
	published := map[string][]string{}
	for _, from := range senders {
		pubs[from].halt()
		published[from] = pubs[from].published()
	}
	for _, from := range senders {
		drain(t, officers[from], "GBR", 60*time.Second)
	}
	feed := newFeedReader(gbr)
	if err := feed.catchUp(); err != nil {
		t.Fatal(err)
	}
	var problems []string
	for _, from := range senders {
		var order []string
		for _, e := range feed.entries {
			if e.originator == from {
				order = append(order, e.id)
			}
		}
		lost, doubled := tally(feed.count, published[from])
		missing := gbr.missing(published[from])
		disordered := outOfOrder(order, published[from])
		pubSet := map[string]bool{}
		for _, id := range published[from] {
			pubSet[id] = true
		}
		extra := 0 // held reports of from that it never published (or whose publish failed)
		for _, id := range order {
			if !pubSet[id] {
				extra++
			}
		}
		r.reports += len(published[from])
		r.checks += 2 * len(published[from]) // in the feed, and read back
		r.lost += max(len(lost), len(missing))
		r.doubled += len(doubled)
		r.disordered += disordered
		if len(lost)+len(missing)+len(doubled)+disordered > 0 || extra != 0 {
			problems = append(problems, fmt.Sprintf("%s's %d reports at GBR: %d lost %v, %d unreadable, %d doubled %v, %d out of order, %d never published",
				from, len(published[from]), len(lost), lost, len(missing), len(doubled), doubled, disordered, extra))
		}
		acks, err := officers[from].acknowledged("GBR", published[from])
		if err != nil {
			t.Fatal(err)
		}
		if len(acks) != len(published[from]) {
			problems = append(problems, fmt.Sprintf("%s recorded GBR's acknowledgement of %d of its %d reports after its outbox drained", from, len(acks), len(published[from])))
		}
		s := proxies[from].Stats()
		r.note("%s -> GBR: %d reports, %d resent after a cut and recognised as duplicates; proxy accepted %d connections, reset %d, dropped %d (%d KiB thrown away)",
			from, len(published[from]), duplicates(acks), s.Accepted, s.Resets, s.Dropped, s.Discarded>>10)
	}
	r.note("cuts: %d stall (%d over %s, longer than keepalive), %d drop (%d left silent), %d reset; slowest recovery after a heal %s",
		modes[faultproxy.Stall], longStalls, longCut, modes[faultproxy.Drop], silent, modes[faultproxy.Reset], slowest.Round(100*time.Millisecond))
	if len(problems) > 0 {
		t.Error(strings.Join(problems, "\n"))
	}
}
