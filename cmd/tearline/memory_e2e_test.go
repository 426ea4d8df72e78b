package main

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/internal/freeport"
	"github.com/tearline/tearline/internal/scrape"
)

// A node process given memory_limit_mib and gc_percent runs under that
// soft limit and with that GC target, and its metrics show them and the
// memory it counts; one without them shows no limit and the runtime's
// default target.
func TestE2EMemoryLimit(t *testing.T) {
	f := newFederation(t, "USA", "GBR")
	ports, err := freeport.Range(2)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{"USA": "127.0.0.1:" + strconv.Itoa(ports), "GBR": "127.0.0.1:" + strconv.Itoa(ports+1)}
	f.editConfig("USA", func(c *gateway.Config) {
		c.MemoryLimitMiB = 300
		c.GCPercent = 350
		c.MetricsListen = addrs["USA"]
	})
	f.editConfig("GBR", func(c *gateway.Config) { c.MetricsListen = addrs["GBR"] })
	f.startAll("USA", "GBR")

	if l := f.log("USA"); !strings.Contains(l, "memory_limit_mib=300") || !strings.Contains(l, "gc_percent=350") {
		t.Errorf("USA's log does not say its memory limit and GC percent:\n%s", l)
	}
	usa := scrapeMetrics(t, addrs["USA"])
	if m := regexp.MustCompile(`(?m)^tearline_memory_limit_bytes (\d+)$`).FindStringSubmatch(usa); m == nil || m[1] != strconv.Itoa(300<<20) {
		t.Errorf("USA (memory_limit_mib 300): want tearline_memory_limit_bytes %d, metrics:\n%s", 300<<20, usa)
	}
	if !regexp.MustCompile(`(?m)^tearline_gc_percent 350$`).MatchString(usa) {
		t.Errorf("USA (gc_percent 350): want tearline_gc_percent 350, metrics:\n%s", usa)
	}
	for party, m := range map[string]string{"USA": usa, "GBR": scrapeMetrics(t, addrs["GBR"])} {
		got := regexp.MustCompile(`(?m)^tearline_memory_bytes (\d+)$`).FindStringSubmatch(m)
		if got == nil {
			t.Fatalf("%s: no tearline_memory_bytes in metrics:\n%s", party, m)
		}
		// A running node holds at least its runtime and a few MiB of heap.
		if b, _ := strconv.ParseUint(got[1], 10, 64); b < 1<<20 || b > 300<<20 {
			t.Errorf("%s: tearline_memory_bytes %d, want 1 MiB to 300 MiB for an idle node", party, b)
		}
	}
	if os.Getenv("GOGC") == "" {
		if gbr := scrapeMetrics(t, addrs["GBR"]); !regexp.MustCompile(`(?m)^tearline_gc_percent 100$`).MatchString(gbr) {
			t.Errorf("GBR has no gc_percent, yet its metrics do not show the default of 100:\n%s", gbr)
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if gbr := scrapeMetrics(t, addrs["GBR"]); regexp.MustCompile(`(?m)^tearline_memory_limit_bytes `).MatchString(gbr) {
			t.Errorf("GBR has no memory_limit_mib, yet its metrics show a limit:\n%s", gbr)
		}
	}
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	text, err := scrape.Get(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return text
}
