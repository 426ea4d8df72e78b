//go:build faults

package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// crashCycles is how many times the receiving node is killed.
const crashCycles = 50

// faultCrash: USA publishes to GBR all along (a steady stream, and a burst
// before each kill) while GBR is killed with SIGKILL at a random moment and
// restarted, crashCycles times. After each restart every report GBR
// acknowledged so far (USA's "acknowledged" provenance events, which USA
// records only after GBR's commit) is in GBR's feed exactly once, and those
// acknowledged since the last restart (with a sample of the older ones)
// read back. At the end USA's outbox for GBR drains, and a fresh read of
// GBR's whole feed holds every report USA published exactly once, each
// readable, and nothing else.
func faultCrash(t *testing.T, r *faultResult) {
	f := newFederation(t, "USA", "GBR")
	f.startAll("USA", "GBR")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	// A steady stream, and before each kill a burst, so that kills land
	// both while GBR idles between reports and while it commits a backlog.
	pub := startPublisher(usa, "SECRET//REL TO USA, GBR", 512, 40*time.Millisecond)
	defer pub.halt()
	var (
		burstMu  sync.Mutex
		burstIDs []string
		bursts   sync.WaitGroup
	)
	defer bursts.Wait()
	burst := func(n int) {
		for w := range 4 {
			bursts.Add(1)
			go func() {
				defer bursts.Done()
				for i := w; i < n; i += 4 {
					id, err := usa.publish("SECRET//REL TO USA, GBR", fmt.Sprintf("burst report %d", i), pub.body)
					if err != nil {
						continue
					}
					burstMu.Lock()
					burstIDs = append(burstIDs, id)
					burstMu.Unlock()
				}
			}()
		}
	}
	published := func() []string {
		burstMu.Lock()
		defer burstMu.Unlock()
		return append(pub.published(), burstIDs...)
	}

	feed := newFeedReader(gbr)
	acked := map[string]bool{}
	var ackedList []string
	checkedUpTo := 0 // ackedList[:checkedUpTo] were read back at a check
	readBacks := 0
	dupAcks := 0 // committed by GBR, acknowledgement cut off by a kill, resent
	check := func(cycle int) {
		t.Helper()
		if err := feed.catchUp(); err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		// Every acknowledged report is in the feed exactly once. Every one
		// acknowledged since the last check, and a sample of the older
		// ones, reads back (the final check reads back all of them).
		lost, doubled := tally(feed.count, ackedList)
		sample := slices.Clone(ackedList[checkedUpTo:])
		older := ackedList[:checkedUpTo]
		for _, i := range rand.Perm(len(older))[:min(len(older), 200)] {
			sample = append(sample, older[i])
		}
		checkedUpTo = len(ackedList)
		missing := gbr.missing(sample)
		r.checks += len(ackedList)
		readBacks += len(sample)
		if len(lost) > 0 || len(doubled) > 0 || len(missing) > 0 {
			r.lost = max(r.lost, len(lost), len(missing))
			r.doubled = max(r.doubled, len(doubled))
			t.Fatalf("cycle %d: of %d reports GBR acknowledged, %d are not in its feed (%v), %d are in it twice (%v), %d do not read back (%v)",
				cycle, len(ackedList), len(lost), lost, len(doubled), doubled, len(missing), missing)
		}
	}
	gather := func() {
		t.Helper()
		var todo []string
		for _, id := range published() {
			if !acked[id] {
				todo = append(todo, id)
			}
		}
		got, err := usa.acknowledged("GBR", todo)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range todo {
			if d, ok := got[id]; ok {
				acked[id] = true
				ackedList = append(ackedList, id)
				if d == "duplicate" {
					dupAcks++
				}
			}
		}
	}
	killsWhileBehind := 0
	var checkTime time.Duration
	for cycle := 1; cycle <= crashCycles; cycle++ {
		if cycle > 1 {
			f.start("GBR")
		}
		began := time.Now()
		check(cycle)
		checkTime += time.Since(began)
		burst(50 + rand.IntN(200))
		time.Sleep(randDuration(0, 400*time.Millisecond))
		if n, err := usa.queued("GBR"); err == nil && n > 0 {
			killsWhileBehind++ // USA still had reports for GBR in flight or queued
		}
		f.kill("GBR")
		r.cycles++
		bursts.Wait()
		gather()
		if cycle%10 == 0 {
			t.Logf("crash cycle %d: %d published, %d acknowledged by GBR", cycle, len(published()), len(ackedList))
		}
	}
	f.start("GBR")
	check(crashCycles + 1)
	pub.halt()
	drain(t, usa, "GBR", 60*time.Second)
	all := published()
	gather()
	if err := feed.catchUp(); err != nil {
		t.Fatal(err)
	}
	// A fresh read of the whole feed, independent of the incremental one.
	final := newFeedReader(gbr)
	if err := final.catchUp(); err != nil {
		t.Fatal(err)
	}
	lost, doubled := tally(final.count, all)
	missing := gbr.missing(all)
	r.reports = len(all)
	r.checks += len(all)
	readBacks += len(all)
	r.lost = max(r.lost, len(lost), len(missing))
	r.doubled = max(r.doubled, len(doubled))
	extra := len(final.entries) - len(all) + len(lost) - sumExtra(final.count)
	if len(ackedList) != len(all) {
		t.Errorf("USA recorded an acknowledgement for %d of %d reports after its outbox drained", len(ackedList), len(all))
	}
	if len(lost)+len(doubled)+len(missing) > 0 || extra != 0 {
		t.Errorf("after %d kills GBR lost %d (%v), doubled %d (%v), cannot read %d of USA's %d reports; %d reports it holds were never published",
			crashCycles, len(lost), lost, len(doubled), doubled, len(missing), len(all), extra)
	}
	r.note("%d reports published at USA while GBR was killed %d times, %d of them with reports for GBR queued or in flight",
		len(all), crashCycles, killsWhileBehind)
	r.note("%d reports committed by GBR whose acknowledgement a kill cut off were resent and recognised as duplicates; %d read back; checks after restarts took %s",
		dupAcks, readBacks, checkTime.Round(time.Second))
}

// sumExtra is how many feed entries beyond the first each report has.
func sumExtra(count map[string]int) int {
	n := 0
	for _, c := range count {
		n += c - 1
	}
	return n
}
