// Package testvault runs a real Vault server for tests: the vaultdev program
// (internal/testvault/vaultdev, its own Go module linking Vault's core, HTTP
// handler and the PKI, KV and AppRole engines) on 127.0.0.1 with a random
// port and in-memory storage. A test that cannot get a Vault fails; it never
// skips.
//
// The binary is built by build.sh into a cache folder outside the
// repository (make vaultdev does the same) and reused while its sources are
// unchanged; TEARLINE_VAULTDEV names a binary to use instead.
package testvault

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tearline/tearline/internal/syncbuf"
)

// Server is a running vaultdev.
type Server struct {
	// Addr is the API address, http://127.0.0.1:PORT.
	Addr string
	// Token is the root token.
	Token string

	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan struct{}
	once   sync.Once
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the vaultdev binary, building it if needed.
func Binary() (string, error) {
	binOnce.Do(func() {
		if p := os.Getenv("TEARLINE_VAULTDEV"); p != "" {
			if _, err := os.Stat(p); err != nil {
				binErr = fmt.Errorf("TEARLINE_VAULTDEV=%s: %w", p, err)
				return
			}
			binPath = p
			return
		}
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			binErr = fmt.Errorf("testvault: cannot locate build.sh")
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command("bash", filepath.Join(filepath.Dir(file), "build.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			binErr = fmt.Errorf("testvault: build vaultdev: %w\n%s", err, stderr.String())
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	return binPath, binErr
}

// Start starts a vaultdev server and stops it when the test ends; it fails
// the test if the server cannot start. args are passed to vaultdev.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s, err := StartE(args...)
	if err != nil {
		t.Fatalf("testvault: no Vault: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("vaultdev stderr:\n%s", s.Stderr())
		}
	})
	return s
}

// StartE starts a vaultdev server; the caller stops it.
func StartE(args ...string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	args = append([]string{"-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, stderr: &syncbuf.Buffer{Max: 1 << 20}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	type hello struct {
		Addr  string `json:"addr"`
		Token string `json:"token"`
	}
	got := make(chan hello, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			var h hello
			if json.Unmarshal(sc.Bytes(), &h) == nil {
				got <- h
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case h := <-got:
		s.Addr, s.Token = h.Addr, h.Token
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("vaultdev exited at start: %s", s.Stderr())
	case <-time.After(60 * time.Second):
		s.Stop()
		return nil, fmt.Errorf("vaultdev did not start within 60s: %s", s.Stderr())
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Stderr returns what the server wrote on stderr so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// HostPort returns the server's host:port.
func (s *Server) HostPort() string { return strings.TrimPrefix(s.Addr, "http://") }

// Proxy is a TCP forwarder in front of a server that a test can take down
// (connections refused, live ones cut) and bring back on the same address:
// Vault "down during operation" without losing its in-memory state.
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to target (host:port) and closes it when the test
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testvault: proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() { p.Down(); p.wg.Wait() })
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.pipe(c) }()
		}
	}()
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) pipe(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, u) {
		c.Close()
		u.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go cp(u, c)
	go cp(c, u)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// Down closes the listener and cuts every live connection.
func (p *Proxy) Down() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// Up listens again on the same address.
func (p *Proxy) Up() error {
	var ln net.Listener
	var err error
	for range 50 { // the port can take a moment to be free again
		if ln, err = net.Listen("tcp", p.Addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}
