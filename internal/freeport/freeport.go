// Package freeport finds consecutive free TCP ports on loopback, for
// servers that tests and the benchmark start on addresses they must know
// before the servers listen (each node's config names its partners').
//
// The ports come from below the kernel's ephemeral range. A port inside it
// can be taken, between a server's stop and its restart, by an outgoing
// connection: even by a client redialling that very port, which on
// loopback can connect to itself. The benchmark's catch-up phase restarts
// a node on its port while its partner redials it, and failed that way
// ("bind: address already in use").
//
// A port is also reserved for the process it was handed to, for as long
// as it lives (reserve): go test runs packages in parallel processes, and
// one of them took a port that another's node had released to restart on
// it (TestE2EPartnerOfflineCatchUp failed so, once).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Range hands out.
const lowest = 20000

var (
	mu     sync.Mutex
	handed = map[int]bool{} // ports this process was given
)

// Range returns the first of n consecutive ports on 127.0.0.1 that were
// free when it looked, below the ephemeral range, never handing out a port
// twice in one process. Another process may take one before it is used:
// callers start their servers at once.
func Range(n int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	top := ephemeralStart()
	if top-n <= lowest {
		return 0, fmt.Errorf("freeport: no room for %d ports between %d and the ephemeral range at %d", n, lowest, top)
	}
	for range 200 {
		base := lowest + rand.IntN(top-n-lowest)
		if free(base, n) {
			for i := range n {
				handed[base+i] = true
			}
			return base, nil
		}
	}
	return 0, errors.New("freeport: no free ports on loopback")
}

// free reports whether ports base..base+n-1 were never handed out, are
// not another live process's (reserve), and can be listened on now. It
// keeps their reservations when they are.
func free(base, n int) bool {
	var taken []func()
	release := func() {
		for _, r := range taken {
			r()
		}
	}
	for i := range n {
		if handed[base+i] {
			release()
			return false
		}
		r, ok := reserve(base + i)
		if !ok {
			release()
			return false
		}
		taken = append(taken, r)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			release()
			return false
		}
		l.Close()
	}
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), or 32768, Linux's default.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 32768
	}
	p, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return p
}
