// Package faultproxy is a TCP proxy for fault-injection tests: placed
// between a client and a server (the client dials Addr instead of the
// server), it forwards bytes both ways until told to fail. The modes model
// what a network does to a link:
//
//   - Pass: bytes flow.
//   - Stall: nothing is read or written; bytes in flight wait (TCP flow
//     control backs up to the endpoints) and flow again, intact and in
//     order, when the mode returns to Pass. New connections are held.
//   - Drop (a blackhole): every byte is read and thrown away, new
//     connections are accepted and never reach the server. A connection that
//     has lost bytes cannot carry a byte stream again: it stays silent for
//     the rest of its life, as one whose peer vanished, until an endpoint
//     gives up on it or ResetDropped answers it with a reset (a middlebox
//     that lost the flow's state).
//   - Reset: every connection is reset (TCP RST), and new ones are reset as
//     soon as they are accepted.
//
// Setting a mode takes effect at once on every connection.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does to connections.
type Mode int

// Modes.
const (
	Pass Mode = iota
	Stall
	Drop
	Reset
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Stall:
		return "stall"
	case Drop:
		return "drop"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Stats counts what the proxy did.
type Stats struct {
	// Accepted is how many connections were accepted.
	Accepted int64
	// Dropped is how many connections lost bytes to Drop (silent since).
	Dropped int64
	// Resets is how many connections were reset.
	Resets int64
	// Forwarded is how many bytes were passed on, both ways.
	Forwarded int64
	// Discarded is how many bytes Drop threw away.
	Discarded int64
}

// Proxy forwards connections from its listener to a target address.
type Proxy struct {
	target string
	lis    net.Listener

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced on every mode change
	conns   map[*conn]struct{}
	closed  bool

	wg sync.WaitGroup

	accepted, dropped, resets, forwarded, discarded atomic.Int64
}

type conn struct {
	client  *net.TCPConn
	dropped atomic.Bool

	mu     sync.Mutex
	server *net.TCPConn // nil until dialled
	closed bool
}

// New listens on listen (e.g. "127.0.0.1:0") and forwards to target. It
// starts in Pass; Close stops it.
func New(listen, target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{target: target, lis: lis, changed: make(chan struct{}), conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set switches the mode. Drop marks every open connection as dropped;
// Reset resets every open connection.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	var victims []*conn
	for c := range p.conns {
		switch m {
		case Drop:
			if !c.dropped.Swap(true) {
				p.dropped.Add(1)
			}
		case Reset:
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		p.reset(c)
	}
}

// ResetDropped resets every connection that lost bytes to Drop, as a
// middlebox that lost their state answers their next packet. It returns
// how many it reset.
func (p *Proxy) ResetDropped() int {
	p.mu.Lock()
	var victims []*conn
	for c := range p.conns {
		if c.dropped.Load() {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		p.reset(c)
	}
	return len(victims)
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted: p.accepted.Load(), Dropped: p.dropped.Load(), Resets: p.resets.Load(),
		Forwarded: p.forwarded.Load(), Discarded: p.discarded.Load(),
	}
}

// Conns is how many connections are open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	close(p.changed) // wake anything waiting for a mode change
	p.changed = make(chan struct{})
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	err := p.lis.Close()
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		nc, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		c := &conn{client: nc.(*net.TCPConn)}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			nc.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

// state returns the mode, a channel closed at its next change, and
// whether the proxy is closed.
func (p *Proxy) state() (Mode, <-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.changed, p.closed
}

// gate waits while the mode is Stall; it returns the mode it let through,
// or false when the proxy closed.
func (p *Proxy) gate() (Mode, bool) {
	for {
		m, changed, closed := p.state()
		if closed {
			return m, false
		}
		if m != Stall {
			return m, true
		}
		<-changed
	}
}

func (p *Proxy) serve(c *conn) {
	defer p.wg.Done()
	defer p.forget(c)
	m, ok := p.gate()
	if !ok {
		c.close()
		return
	}
	switch m {
	case Reset:
		p.reset(c)
		return
	case Drop:
		if !c.dropped.Swap(true) {
			p.dropped.Add(1)
		}
	}
	if !c.dropped.Load() {
		d := net.Dialer{Timeout: 5 * time.Second}
		sc, err := d.Dial("tcp", p.target)
		if err != nil {
			// The server is away: the client sees its connection reset, as
			// it would dialling the server itself.
			p.reset(c)
			return
		}
		if !c.setServer(sc.(*net.TCPConn)) {
			return // reset or closed while dialling
		}
	}
	server := c.serverConn()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pump(c, server, c.client) // server -> client
	}()
	p.pump(c, c.client, server) // client -> server
	wg.Wait()
	c.close()
}

// pump copies src to dst through the gate. A clean end (EOF) is passed on
// as a half-close; any other failure closes the connection both ways, so
// that the other pump ends too.
func (p *Proxy) pump(c *conn, src, dst *net.TCPConn) {
	if src == nil {
		// A dropped connection that never reached the server: nothing
		// comes from that side.
		return
	}
	buf := make([]byte, 32<<10)
	for {
		if _, ok := p.gate(); !ok {
			c.close()
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			// Bytes read just before a stall wait for it to end.
			if _, ok := p.gate(); !ok {
				c.close()
				return
			}
			if c.dropped.Load() || dst == nil {
				p.discarded.Add(int64(n))
			} else {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					c.close()
					return
				}
				p.forwarded.Add(int64(n))
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && dst != nil && !c.dropped.Load() {
				_ = dst.CloseWrite()
				return
			}
			c.close()
			return
		}
	}
}

func (p *Proxy) reset(c *conn) {
	p.resets.Add(1)
	c.mu.Lock()
	_ = c.client.SetLinger(0)
	if c.server != nil {
		_ = c.server.SetLinger(0)
	}
	c.mu.Unlock()
	c.close()
}

func (p *Proxy) forget(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// setServer attaches the dialled server side; false (and the server side
// closed) when the connection was closed meanwhile.
func (c *conn) setServer(s *net.TCPConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.Close()
		return false
	}
	c.server = s
	return true
}

func (c *conn) serverConn() *net.TCPConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.server
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.client.Close()
	if c.server != nil {
		c.server.Close()
	}
}

// Run serves until ctx ends, then closes the proxy: for a task runner.
func (p *Proxy) Run(ctx context.Context) error {
	<-ctx.Done()
	return p.Close()
}
