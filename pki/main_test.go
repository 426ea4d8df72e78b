package pki

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if goroutines started by the tests (servers,
// connections, renewal loops) are still running when they have finished.
func TestMain(m *testing.M) {
	code := m.Run()
	// A fuzzing run's own goroutines outlive m.Run: waiting for them
	// would only hold every fuzz worker open for the timeout.
	if code == 0 && !fuzzing() {
		if leaked := waitForGoroutines(5 * time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n\n%s\n", strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// waitForGoroutines returns the stacks of goroutines other than the test
// framework's that are still running after timeout.
func waitForGoroutines(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		leaked := interestingGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func interestingGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// A goroutine of interest runs, or was started by, this module's code;
	// the one doing this check is not of interest.
	var leaked []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/tearline/tearline") && !strings.Contains(g, "interestingGoroutines") {
			leaked = append(leaked, g)
		}
	}
	return leaked
}

// fuzzing reports whether the test binary runs as a fuzzing coordinator or
// worker (go test -fuzz).
func fuzzing() bool {
	f, w := flag.Lookup("test.fuzz"), flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() != "" || w != nil && w.Value.String() == "true"
}
