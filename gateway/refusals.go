package gateway

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"time"

	"github.com/tearline/tearline/pki"
)

// refusalLogEvery bounds how often the node logs handshakes it refused: at
// most refusalBurst in each refusalLogEvery, the rest counted in the next
// line, so that a peer retrying with a refused certificate cannot flood
// the log.
const (
	refusalLogEvery = 10 * time.Second
	refusalBurst    = 5
)

// logRefusals wraps a server's VerifyConnection so that each handshake it
// refuses (a revoked, expired or untrusted certificate, a suspended party)
// is logged with the identity the certificate claims, its issuer, serial
// and the reason: a security team sees what was tried, where the client
// only sees its connection fail. The bound is for all peers together, so
// a flood of refusals costs the log 5 lines in 10 s and a count.
func logRefusals(log *slog.Logger, clock func() time.Time, inner func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	var (
		mu         sync.Mutex
		windowFrom time.Time
		logged     int
		suppressed int
	)
	return func(cs tls.ConnectionState) error {
		if inner == nil {
			return nil
		}
		err := inner(cs)
		if err == nil {
			return nil
		}
		now := clock()
		mu.Lock()
		if now.Sub(windowFrom) >= refusalLogEvery {
			windowFrom, logged = now, 0
		}
		if logged >= refusalBurst {
			suppressed++
			mu.Unlock()
			return err
		}
		logged++
		earlier := suppressed
		suppressed = 0
		mu.Unlock()
		attrs := []any{"reason", err.Error()}
		if len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0] != nil {
			leaf := cs.PeerCertificates[0]
			who := "(no Tearline identity)"
			if id, ierr := pki.IdentityFromCert(leaf); ierr == nil {
				who = id.String()
			}
			// What the certificate says: it may be forged (the handshake
			// was refused), so it is logged as claimed, with its issuer.
			attrs = append(attrs, "claimed_peer", who, "issuer", leaf.Issuer.String(), "serial", pki.VaultSerial(leaf.SerialNumber), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if earlier > 0 {
			attrs = append(attrs, "not_logged_before", earlier)
		}
		log.Warn("handshake refused", attrs...)
		return err
	}
}
