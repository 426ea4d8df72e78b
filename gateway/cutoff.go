package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/pki"
)

// cutoff makes a suspension take effect at once: it knows every live
// connection by the party of its peer (to close a partner's) and every live
// subscription by subscriber (to end them with a clear status).
type cutoff struct {
	node  *node.Node
	trust *pki.Trust
	clock func() time.Time

	mu    sync.Mutex
	conns map[string]map[*trackedConn]struct{}             // party → live connections
	subs  map[string]map[*context.CancelCauseFunc]struct{} // subscriber → live streams
}

func newCutoff(n *node.Node, trust *pki.Trust, clock func() time.Time) *cutoff {
	c := &cutoff{node: n, trust: trust, clock: clock,
		conns: map[string]map[*trackedConn]struct{}{},
		subs:  map[string]map[*context.CancelCauseFunc]struct{}{},
	}
	n.OnSuspend(c.suspended)
	return c
}

// errSubscriberSuspended is the cancel cause of a suspended subscription.
var errSubscriberSuspended = errors.New("subscriber suspended")

// suspended runs inside node.Suspend, before it returns.
func (c *cutoff) suspended(kind, name string) {
	c.mu.Lock()
	var conns []*trackedConn
	var cancels []*context.CancelCauseFunc
	switch kind {
	case node.SuspendPartner:
		for tc := range c.conns[name] {
			conns = append(conns, tc)
		}
	case node.SuspendSubscriber:
		for cf := range c.subs[name] {
			cancels = append(cancels, cf)
		}
	}
	c.mu.Unlock()
	for _, cf := range cancels {
		(*cf)(errSubscriberSuspended)
	}
	for _, tc := range conns {
		tc.Close()
	}
}

// subscription registers a live subscription; the returned context ends
// when the subscriber is suspended, and done unregisters it.
func (c *cutoff) subscription(ctx context.Context, name string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	key := &cancel
	c.mu.Lock()
	if c.subs[name] == nil {
		c.subs[name] = map[*context.CancelCauseFunc]struct{}{}
	}
	c.subs[name][key] = struct{}{}
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		delete(c.subs[name], key)
		c.mu.Unlock()
		cancel(nil)
	}
}

// verifyConnection refuses, at the handshake, a peer of a suspended partner.
func (c *cutoff) verifyConnection(inner func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if inner != nil {
			if err := inner(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		id, err := pki.IdentityFromCert(cs.PeerCertificates[0])
		if err != nil {
			return err
		}
		if c.node.PartnerSuspended(id.Party) {
			c.node.SuspendedAttempt(id, "connect")
			return fmt.Errorf("party %s is suspended at this node", id.Party)
		}
		return nil
	}
}

// creds wraps the server's transport credentials to track connections.
func (c *cutoff) creds(inner credentials.TransportCredentials) credentials.TransportCredentials {
	return &trackingCreds{TransportCredentials: inner, c: c}
}

type trackingCreds struct {
	credentials.TransportCredentials
	c *cutoff
}

func (t *trackingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := t.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	ti, ok := ai.(credentials.TLSInfo)
	if !ok {
		conn.Close()
		return nil, nil, errors.New("gateway: not a TLS connection")
	}
	id, err := pki.PeerIdentity(ti.State, t.c.trust, t.c.clock())
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	tc := &trackedConn{Conn: conn, c: t.c, party: id.Party}
	t.c.mu.Lock()
	if t.c.conns[id.Party] == nil {
		t.c.conns[id.Party] = map[*trackedConn]struct{}{}
	}
	t.c.conns[id.Party][tc] = struct{}{}
	t.c.mu.Unlock()
	// A suspension that raced with this handshake still wins.
	if t.c.node.PartnerSuspended(id.Party) {
		tc.Close()
		return nil, nil, fmt.Errorf("party %s is suspended at this node", id.Party)
	}
	return tc, ai, nil
}

func (t *trackingCreds) Clone() credentials.TransportCredentials {
	return &trackingCreds{TransportCredentials: t.TransportCredentials.Clone(), c: t.c}
}

type trackedConn struct {
	net.Conn
	c     *cutoff
	party string
	once  sync.Once
}

func (tc *trackedConn) Close() error {
	tc.once.Do(func() {
		tc.c.mu.Lock()
		delete(tc.c.conns[tc.party], tc)
		tc.c.mu.Unlock()
	})
	return tc.Conn.Close()
}
