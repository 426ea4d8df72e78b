package gateway

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"time"

	"github.com/tearline/tearline/pki"
)

// How often the node logs handshakes it refused. One peer (one claimed
// identity, issuer and serial) gets at most one line in each
// refusalLogEvery, its further refusals counted in its next line, so that
// a peer retrying with a refused certificate cannot flood the log, nor use
// up the lines of another: a genuine refusal during such a flood is still
// named. All peers together get at most refusalBurst lines in each
// refusalLogEvery, so that certificates claiming ever new identities
// cannot flood it either; what that bound leaves out is counted in the
// next line. (A client that presents a new certificate at each handshake
// can use up those lines: the identities and serials are the client's to
// choose, and the log cannot tell a genuine one from another.)
const (
	refusalLogEvery = 10 * time.Second
	refusalBurst    = 20
)

// refusalLog decides which refusals are logged (see refusalLogEvery). It
// remembers only the peers logged in the last two windows: no more than
// 3 x refusalBurst.
type refusalLog struct {
	mu         sync.Mutex
	windowFrom time.Time
	logged     int // lines in the window from windowFrom
	unnamed    int // refusals not logged, and not counted under a peer remembered, since the last line
	peers      map[string]*refusedPeer
}

type refusedPeer struct {
	last      time.Time // its last line
	notLogged int       // its refusals since, not logged
}

// take decides whether a refusal by the peer key, at now, is logged; if so
// it returns how many of that peer's refusals were not logged since its
// last line, and how many others were not logged and are not counted
// under a peer.
func (r *refusalLog) take(key string, now time.Time) (log bool, peerNotLogged, unnamed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.windowFrom) >= refusalLogEvery {
		r.windowFrom, r.logged = now, 0
		for k, q := range r.peers {
			if now.Sub(q.last) >= 2*refusalLogEvery {
				r.unnamed += q.notLogged
				delete(r.peers, k)
			}
		}
	}
	p := r.peers[key]
	if p != nil && now.Sub(p.last) < refusalLogEvery {
		p.notLogged++
		return false, 0, 0
	}
	if r.logged >= refusalBurst {
		if p != nil {
			p.notLogged++
		} else {
			r.unnamed++
		}
		return false, 0, 0
	}
	if p == nil {
		if r.peers == nil {
			r.peers = make(map[string]*refusedPeer)
		}
		p = &refusedPeer{}
		r.peers[key] = p
	}
	r.logged++
	p.last = now
	peerNotLogged, unnamed = p.notLogged, r.unnamed
	p.notLogged, r.unnamed = 0, 0
	return true, peerNotLogged, unnamed
}

// logRefusals wraps a server's VerifyConnection so that each handshake it
// refuses (a revoked, expired or untrusted certificate, a suspended party)
// is logged with the identity the certificate claims, its issuer, serial
// and the reason: a security team sees what was tried, where the client
// only sees its connection fail. The log is bounded for each peer and for
// all together (refusalLogEvery).
func logRefusals(log *slog.Logger, clock func() time.Time, inner func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	var bound refusalLog
	return func(cs tls.ConnectionState) error {
		if inner == nil {
			return nil
		}
		err := inner(cs)
		if err == nil {
			return nil
		}
		key := "(no certificate)"
		attrs := []any{"reason", err.Error()}
		if len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0] != nil {
			leaf := cs.PeerCertificates[0]
			who := "(no Tearline identity)"
			if id, ierr := pki.IdentityFromCert(leaf); ierr == nil {
				who = id.String()
			}
			serial := pki.VaultSerial(leaf.SerialNumber)
			key = who + " " + leaf.Issuer.String() + " " + serial
			// What the certificate says: it may be forged (the handshake
			// was refused), so it is logged as claimed, with its issuer.
			attrs = append(attrs, "claimed_peer", who, "issuer", leaf.Issuer.String(), "serial", serial, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		ok, peerNotLogged, unnamed := bound.take(key, clock())
		if !ok {
			return err
		}
		if peerNotLogged > 0 {
			attrs = append(attrs, "not_logged_before", peerNotLogged)
		}
		if unnamed > 0 {
			attrs = append(attrs, "other_refusals_not_logged", unnamed)
		}
		log.Warn("handshake refused", attrs...)
		return err
	}
}
