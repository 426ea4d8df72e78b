package gateway

import (
	"bytes"
	"regexp"
	"runtime/debug"
	"testing"
)

// The metrics show the process's GC target as the runtime holds it,
// "off" included (-1, which the runtime keeps in an unsigned counter).
func TestGCPercentMetric(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for pct, want := range map[int]string{250: "250", -1: "-1"} {
		debug.SetGCPercent(pct)
		var b bytes.Buffer
		writeMemoryMetrics(&b)
		if !regexp.MustCompile(`(?m)^tearline_gc_percent ` + regexp.QuoteMeta(want) + `$`).Match(b.Bytes()) {
			t.Errorf("GC percent %d: want tearline_gc_percent %s in:\n%s", pct, want, b.String())
		}
	}
}
