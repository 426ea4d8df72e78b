package freeport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
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

// TestReserveAcrossProcesses: a port another live process was handed is
// not handed here, and is once that process has ended.
func TestReserveAcrossProcesses(t *testing.T) {
	if p := os.Getenv("FREEPORT_HOLD"); p != "" {
		// The other process: reserve the port, say so, wait for stdin
		// to close.
		port, _ := strconv.Atoi(p)
		mu.Lock()
		_, ok := reserve(port)
		mu.Unlock()
		fmt.Println("reserved", ok)
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("reservations are made on Linux and other Unix systems; this test reads /proc to be sure it runs on one")
	}
	base, err := Range(1)
	if err != nil {
		t.Fatal(err)
	}
	port := base + 1 // not handed out here (a neighbour may be: try a few)
	for handed[port] {
		port++
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReserveAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FREEPORT_HOLD=%d", port))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "reserved true\n" {
		t.Fatalf("the other process: %q, %v", line, err)
	}
	mu.Lock()
	_, ok := reserve(port)
	mu.Unlock()
	if ok {
		t.Errorf("port %d, reserved by another live process, was reserved here too", port)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	release, ok := reserve(port)
	mu.Unlock()
	if !ok {
		t.Errorf("port %d is still reserved after the process that held it ended", port)
	}
	release()
}
