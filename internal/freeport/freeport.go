// Package freeport finds consecutive free TCP ports on loopback, for
// servers that tests and the benchmark start on addresses they must know
// before the servers listen (each node's config names its partners').
package freeport

import (
	"errors"
	"fmt"
	"net"
)

// Range returns the first of n consecutive ports on 127.0.0.1 that were
// free when it looked. Another process may take one before it is used:
// callers start their servers at once.
func Range(n int) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := base+n < 65000
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("no free ports on loopback")
}
