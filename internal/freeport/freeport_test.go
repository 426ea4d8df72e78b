package freeport

import (
	"fmt"
	"net"
	"testing"
)

// TestRange: the ports are below the ephemeral range (where an outgoing
// connection could take one between a server's stop and its restart),
// free, and never handed out twice.
func TestRange(t *testing.T) {
	top := ephemeralStart()
	seen := map[int]bool{}
	for range 50 {
		base, err := Range(3)
		if err != nil {
			t.Fatal(err)
		}
		if base < lowest || base+3 > top {
			t.Fatalf("ports %d-%d are not between %d and the ephemeral range at %d", base, base+2, lowest, top)
		}
		for p := base; p < base+3; p++ {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Fatalf("port %d is not free: %v", p, err)
			}
			l.Close()
		}
	}
}
