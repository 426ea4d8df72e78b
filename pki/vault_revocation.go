package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// ErrRevoked wraps every refusal of a revoked certificate.
var ErrRevoked = errors.New("pki: certificate revoked")

const (
	maxCRLSize = 8 << 20
	// DefaultCRLInterval is how often a CRLWatcher fetches the CRL when
	// nothing asks it to sooner.
	DefaultCRLInterval = 30 * time.Second
)

func readBounded(r io.Reader, limit int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// ParseCRL parses a CRL (DER, or one PEM "X509 CRL" block) and checks that
// one of cas signed it.
func ParseCRL(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("unexpected PEM block %q, want X509 CRL", b.Type)
		}
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	for _, ca := range cas {
		if ca != nil && bytes.Equal(crl.RawIssuer, ca.RawSubject) && crl.CheckSignatureFrom(ca) == nil {
			return crl, nil
		}
	}
	return nil, errors.New("the CRL is not signed by a CA of the party")
}

// Revocations holds, for each party, the serial numbers its CRL revokes,
// and the live connections authenticated by certificates of that party, so
// that a newly revoked certificate's connections are closed at once. It is
// safe for concurrent use.
type Revocations struct {
	mu      sync.Mutex
	parties map[string]*crlState
	conns   map[string]map[*trackedRevConn]struct{} // party/serial → live connections
	log     *slog.Logger
	onRev   func(party string, serial *big.Int)
}

// OnRevoked sets a function called for each certificate a new CRL revokes
// (the node records it in its audit log). Set it before the watchers run.
func (r *Revocations) OnRevoked(fn func(party string, serial *big.Int)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onRev = fn
}

type crlState struct {
	number  *big.Int
	this    time.Time
	serials map[string]time.Time // serial (hex) → revocation time
}

type trackedRevConn struct{ c io.Closer }

// NewRevocations returns a Revocations that knows no CRL yet.
func NewRevocations(log *slog.Logger) *Revocations {
	if log == nil {
		log = slog.Default()
	}
	return &Revocations{parties: map[string]*crlState{}, conns: map[string]map[*trackedRevConn]struct{}{}, log: log}
}

func revKey(party string, serial *big.Int) string { return party + "/" + serial.Text(16) }

// Update makes crl (already checked with ParseCRL) the current CRL of party,
// unless it is older than the one held (a lower CRL number, or an earlier
// this-update), and closes the live connections of every certificate it
// newly revokes. It returns the newly revoked serials and the number of
// connections closed.
func (r *Revocations) Update(party string, crl *x509.RevocationList) ([]*big.Int, int) {
	st := &crlState{number: crl.Number, this: crl.ThisUpdate, serials: map[string]time.Time{}}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			st.serials[e.SerialNumber.Text(16)] = e.RevocationTime
		}
	}
	r.mu.Lock()
	old := r.parties[party]
	if old != nil && (crl.ThisUpdate.Before(old.this) || (old.number != nil && crl.Number != nil && crl.Number.Cmp(old.number) < 0)) {
		r.mu.Unlock()
		r.log.Warn("older crl ignored", slog.String("crl_party", party))
		return nil, 0
	}
	r.parties[party] = st
	var newly []*big.Int
	var closers []*trackedRevConn
	for s := range st.serials {
		if old != nil {
			if _, had := old.serials[s]; had {
				continue
			}
		}
		n, _ := new(big.Int).SetString(s, 16)
		newly = append(newly, n)
		for tc := range r.conns[party+"/"+s] {
			closers = append(closers, tc)
		}
		delete(r.conns, party+"/"+s)
	}
	r.mu.Unlock()
	// Logged before the connections close, so that whoever sees a
	// connection end for the revocation finds it in the log.
	for _, n := range newly {
		r.log.Info("certificate revoked", slog.String("crl_party", party), slog.String("serial", VaultSerial(n)))
	}
	for _, tc := range closers {
		_ = tc.c.Close()
	}
	r.mu.Lock()
	onRev := r.onRev
	r.mu.Unlock()
	if onRev != nil {
		for _, n := range newly {
			onRev(party, n)
		}
	}
	if len(closers) > 0 {
		r.log.Info("closed connections of revoked certificates", slog.String("crl_party", party), slog.Int("connections", len(closers)))
	}
	return newly, len(closers)
}

// Known reports whether a CRL of party is held.
func (r *Revocations) Known(party string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.parties[party] != nil
}

// Revoked reports whether party's CRL revokes serial.
func (r *Revocations) Revoked(party string, serial *big.Int) bool {
	if serial == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.parties[party]
	if st == nil {
		return false
	}
	_, ok := st.serials[serial.Text(16)]
	return ok
}

// Check refuses a chain (leaf first) one of whose certificates, other than
// a self-signed root, its party's CRL revokes. The party comes from the
// leaf's identity; a chain without one is left to Trust.Verify to refuse.
func (r *Revocations) Check(chain []*x509.Certificate) error {
	if len(chain) == 0 || chain[0] == nil {
		return nil
	}
	id, err := IdentityFromCert(chain[0])
	if err != nil {
		return nil
	}
	for _, c := range chain {
		if c == nil || selfSigned(c) {
			continue
		}
		if r.Revoked(id.Party, c.SerialNumber) {
			return fmt.Errorf("%w: %s: certificate serial %s is on the CRL of %s", ErrRevoked, id, VaultSerial(c.SerialNumber), id.Party)
		}
	}
	return nil
}

// VerifyConnection wraps a tls.Config.VerifyConnection callback (nil for
// none) so that a handshake with a revoked peer certificate fails after
// inner's own checks.
func (r *Revocations) VerifyConnection(inner func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if inner != nil {
			if err := inner(cs); err != nil {
				return err
			}
		}
		return r.Check(cs.PeerCertificates)
	}
}

// Track registers a live connection authenticated by chain, so that it is
// closed when a CRL revokes the leaf. It returns an error, having closed c,
// if the leaf is revoked already; release unregisters the connection (call
// it when c closes).
func (r *Revocations) Track(chain []*x509.Certificate, c io.Closer) (release func(), err error) {
	if len(chain) == 0 || chain[0] == nil {
		return func() {}, nil
	}
	id, err := IdentityFromCert(chain[0])
	if err != nil {
		return func() {}, nil
	}
	key := revKey(id.Party, chain[0].SerialNumber)
	tc := &trackedRevConn{c: c}
	r.mu.Lock()
	if r.conns[key] == nil {
		r.conns[key] = map[*trackedRevConn]struct{}{}
	}
	r.conns[key][tc] = struct{}{}
	r.mu.Unlock()
	// A revocation that raced with the handshake still wins.
	if err := r.Check(chain); err != nil {
		r.untrack(key, tc)
		_ = c.Close()
		return func() {}, err
	}
	return func() { r.untrack(key, tc) }, nil
}

func (r *Revocations) untrack(key string, tc *trackedRevConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns[key], tc)
	if len(r.conns[key]) == 0 {
		delete(r.conns, key)
	}
}

// CRLWatcher keeps one party's CRL in a Revocations fresh: it fetches it on
// a schedule and whenever Kick asks, keeping the last good CRL when a fetch
// fails.
type CRLWatcher struct {
	party    string
	fetch    func(context.Context) (*x509.RevocationList, error)
	rev      *Revocations
	interval time.Duration
	log      *slog.Logger
	kick     chan struct{}
}

// NewCRLWatcher returns a watcher of party's CRL, got from fetch (for
// example a VaultIssuer's CRL method bound to the party's CAs), every
// interval (DefaultCRLInterval if zero).
func NewCRLWatcher(party string, fetch func(context.Context) (*x509.RevocationList, error), rev *Revocations, interval time.Duration, log *slog.Logger) *CRLWatcher {
	if interval <= 0 {
		interval = DefaultCRLInterval
	}
	if log == nil {
		log = slog.Default()
	}
	return &CRLWatcher{party: party, fetch: fetch, rev: rev, interval: interval,
		log: log.With(slog.String("crl_party", party)), kick: make(chan struct{}, 1)}
}

// Refresh fetches the CRL now and applies it.
func (w *CRLWatcher) Refresh(ctx context.Context) error {
	crl, err := w.fetch(ctx)
	if err != nil {
		return err
	}
	w.rev.Update(w.party, crl)
	return nil
}

// Kick asks Run to refresh at once; it does not wait.
func (w *CRLWatcher) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run refreshes the CRL every interval and on Kick until ctx ends; a failed
// fetch is logged and retried at the next tick, the last CRL staying in force.
func (w *CRLWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("crl refresh failed", slog.Any("error", err), slog.Duration("retry_in", w.interval))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.kick:
		}
	}
}

// RevocationCreds wraps a gRPC server's TLS transport credentials so that
// every connection is tracked by its peer certificate in rev and closed
// when a CRL revokes that certificate. (inner's tls.Config should also use
// rev.VerifyConnection, so that a revoked certificate fails the handshake.)
func RevocationCreds(inner credentials.TransportCredentials, rev *Revocations) credentials.TransportCredentials {
	return &revocationCreds{TransportCredentials: inner, rev: rev}
}

type revocationCreds struct {
	credentials.TransportCredentials
	rev *Revocations
}

func (c *revocationCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	ti, ok := ai.(credentials.TLSInfo)
	if !ok {
		conn.Close()
		return nil, nil, errors.New("pki: not a TLS connection")
	}
	rc := &revConn{Conn: conn}
	release, err := c.rev.Track(ti.State.PeerCertificates, rc)
	if err != nil {
		return nil, nil, err
	}
	rc.mu.Lock()
	rc.release = release
	closed := rc.closed
	rc.mu.Unlock()
	if closed { // closed by a revocation before release was set
		release()
	}
	return rc, ai, nil
}

func (c *revocationCreds) Clone() credentials.TransportCredentials {
	return &revocationCreds{TransportCredentials: c.TransportCredentials.Clone(), rev: c.rev}
}

type revConn struct {
	net.Conn
	mu      sync.Mutex
	closed  bool
	release func()
}

func (c *revConn) Close() error {
	c.mu.Lock()
	release := c.release
	c.release = nil
	c.closed = true
	c.mu.Unlock()
	if release != nil {
		release()
	}
	return c.Conn.Close()
}

// HTTPCRLFetcher returns a fetch function for NewCRLWatcher that gets a
// party's CRL from its published address (a CRL distribution point, such as
// Vault's unauthenticated <address>/v1/<mount>/crl) and checks it against
// the party's CAs, cas. A partner uses it to learn another party's
// revocations.
func HTTPCRLFetcher(client *http.Client, url string, cas []*x509.Certificate) func(context.Context) (*x509.RevocationList, error) {
	if client == nil {
		client = &http.Client{Timeout: DefaultVaultTimeout}
	}
	return func(ctx context.Context) (*x509.RevocationList, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("crl %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("crl %s: %w", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("crl %s: HTTP %d", url, resp.StatusCode)
		}
		body, err := readBounded(resp.Body, maxCRLSize)
		if err != nil {
			return nil, fmt.Errorf("crl %s: %w", url, err)
		}
		crl, err := ParseCRL(body, cas)
		if err != nil {
			return nil, fmt.Errorf("crl %s: %w", url, err)
		}
		return crl, nil
	}
}
