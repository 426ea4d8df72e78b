package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every connection and counts them.
type echoServer struct {
	lis      net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func newEcho(t *testing.T) *echoServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{lis: lis}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			conns = append(conns, c)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { lis.Close(); e.wg.Wait() })
	return e
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	return readN(c, len(msg), d)
}

func readN(c net.Conn, n int, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestPass(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.lis.Addr().String())
	c := dial(t, p.Addr())
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	go func() { _, _ = c.Write(big) }()
	got, err := readN(c, len(big), 5*time.Second)
	if err != nil || got != string(big) {
		t.Fatalf("echo through the proxy: %v (%d bytes)", err, len(got))
	}
	if s := p.Stats(); s.Accepted != 1 || s.Forwarded != 2*int64(len(big)) {
		t.Fatalf("stats %+v", s)
	}
}

// A stall holds bytes in flight and new connections; on Pass they flow,
// intact and in order.
func TestStallHoldsThenResumes(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.lis.Addr().String())
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "before", time.Second); err != nil || got != "before" {
		t.Fatalf("before the stall: %q %v", got, err)
	}
	p.Set(Stall)
	if _, err := roundTrip(c, "during", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("bytes passed a stall: %v", err)
	}
	held := dial(t, p.Addr())
	if _, err := held.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := e.accepted.Load(); n != 1 {
		t.Fatalf("a connection reached the server during a stall (%d accepted)", n)
	}
	p.Set(Pass)
	if got, err := readN(c, len("during"), 2*time.Second); err != nil || got != "during" {
		t.Fatalf("after the stall: %q %v", got, err)
	}
	if got, err := readN(held, 3, 2*time.Second); err != nil || got != "new" {
		t.Fatalf("held connection after the stall: %q %v", got, err)
	}
}

// Drop throws bytes away; the connection stays silent after Pass, until
// ResetDropped resets it. New connections during Drop never reach the server.
func TestDropIsSilentUntilReset(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.lis.Addr().String())
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "hello", time.Second); err != nil || got != "hello" {
		t.Fatalf("before the drop: %q %v", got, err)
	}
	p.Set(Drop)
	if _, err := roundTrip(c, "lost", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("bytes passed a drop: %v", err)
	}
	late := dial(t, p.Addr())
	if _, err := roundTrip(late, "late", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a new connection answered during a drop: %v", err)
	}
	p.Set(Pass)
	if _, err := roundTrip(c, "again", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a dropped connection came back: %v", err)
	}
	if n := p.ResetDropped(); n != 2 {
		t.Fatalf("ResetDropped reset %d connections, want 2", n)
	}
	if _, err := readN(c, 1, time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after ResetDropped: %v, want a reset", err)
	}
	if n := e.accepted.Load(); n != 1 {
		t.Fatalf("the server saw %d connections, want 1", n)
	}
	fresh := dial(t, p.Addr())
	if got, err := roundTrip(fresh, "fresh", time.Second); err != nil || got != "fresh" {
		t.Fatalf("new connection after the drop: %q %v", got, err)
	}
	if s := p.Stats(); s.Dropped != 2 || s.Discarded == 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Reset resets open connections and every new one until Pass.
func TestReset(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.lis.Addr().String())
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "x", time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Reset)
	if _, err := readN(c, 1, time.Second); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("open connection: %v, want a reset", err)
	}
	if n, err := net.Dial("tcp", p.Addr()); err == nil {
		_, err = readN(n, 1, time.Second)
		n.Close()
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Fatalf("new connection during Reset: %v, want a reset", err)
		}
	}
	p.Set(Pass)
	ok := dial(t, p.Addr())
	if got, err := roundTrip(ok, "ok", time.Second); err != nil || got != "ok" {
		t.Fatalf("after Reset: %q %v", got, err)
	}
}

// The server going away resets the client's connection attempt.
func TestTargetDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	p := newProxy(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return // reset before the connect returned: ended, as wanted
	}
	defer c.Close()
	if _, err := readN(c, 1, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("read with the server down: %v, want the connection to end", err)
	}
}
