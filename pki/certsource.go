package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Defaults of a CertSource.
const (
	// DefaultRenewFraction is the fraction of a certificate's lifetime after
	// which it is renewed.
	DefaultRenewFraction = 2.0 / 3.0
	// DefaultJitter is the fraction by which the renewal point is moved at
	// random, earlier or later.
	DefaultJitter = 0.1
	// DefaultCheckInterval is how often Run compares the clock with the
	// renewal time, at the least; it bounds how late a clock jump is noticed.
	DefaultCheckInterval = 30 * time.Second
	// DefaultMinBackoff is the first wait after a failed renewal attempt;
	// the wait doubles after each further failure.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff is the longest wait between failed renewal attempts.
	DefaultMaxBackoff = time.Minute

	issueTimeout = 30 * time.Second
)

// CertSource holds the current certificate of one identity, serves it through
// TLS callbacks and signs with its key. Run renews it before it expires; the
// certificate, its key and its chain are swapped together atomically, so a
// handshake or a signature always uses a matching set and rotation needs no
// restart. It is safe for concurrent use.
type CertSource struct {
	iss      Issuer // nil for a static source
	id       Identity
	ttl      time.Duration
	clock    func() time.Time
	fraction float64
	jitter   float64
	check    time.Duration
	minBack  time.Duration
	maxBack  time.Duration
	log      *slog.Logger
	onIssue  func(leaf *x509.Certificate)

	cur     atomic.Pointer[certState]
	running atomic.Bool
}

// certState is one issued certificate with everything derived from it;
// it is never modified once stored.
type certState struct {
	issued   *Issued
	tlsCert  *tls.Certificate
	chainDER [][]byte
	renewAt  time.Time
}

// CertSourceOption configures NewCertSource.
type CertSourceOption func(*CertSource)

// WithClock sets the clock against which certificate lifetimes are measured
// (default time.Now). Waits between checks and retries use real timers.
func WithClock(clock func() time.Time) CertSourceOption {
	return func(s *CertSource) { s.clock = clock }
}

// WithRenewFraction sets the fraction of the lifetime, in (0, 1), after which
// the certificate is renewed (default DefaultRenewFraction).
func WithRenewFraction(f float64) CertSourceOption {
	return func(s *CertSource) { s.fraction = f }
}

// WithJitter sets the relative jitter, in [0, 1), applied to the renewal
// point: with fraction f and jitter j it falls uniformly in f·(1±j) of the
// lifetime (default DefaultJitter).
func WithJitter(j float64) CertSourceOption {
	return func(s *CertSource) { s.jitter = j }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) CertSourceOption {
	return func(s *CertSource) { s.log = l }
}

// WithOnIssue sets a function called with the leaf of every certificate
// the source obtains (the first one included), after it is in use; the
// node records it in its audit log.
func WithOnIssue(fn func(leaf *x509.Certificate)) CertSourceOption {
	return func(s *CertSource) { s.onIssue = fn }
}

// WithCheckInterval sets how often, at the least, Run compares the clock
// with the renewal time (default DefaultCheckInterval). Tests that drive the
// clock by hand set it short.
func WithCheckInterval(d time.Duration) CertSourceOption {
	return func(s *CertSource) { s.check = d }
}

// WithBackoff sets the first and the longest wait between failed renewal
// attempts (default DefaultMinBackoff and DefaultMaxBackoff).
func WithBackoff(minWait, maxWait time.Duration) CertSourceOption {
	return func(s *CertSource) { s.minBack, s.maxBack = minWait, maxWait }
}

// NewCertSource returns a source of certificates for id issued by iss with
// lifetime ttl, and issues the first certificate now: an error means no
// certificate could be had. Call Run to keep it renewed.
func NewCertSource(iss Issuer, id Identity, ttl time.Duration, opts ...CertSourceOption) (*CertSource, error) {
	if iss == nil {
		return nil, errors.New("pki: cert source: nil issuer")
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("pki: cert source: %w", err)
	}
	if id.Party != iss.Party() {
		return nil, fmt.Errorf("pki: cert source: identity %s is not of the issuer's party %s", id, iss.Party())
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("pki: cert source: TTL must be positive, got %v", ttl)
	}
	s := &CertSource{
		iss:      iss,
		id:       id,
		ttl:      ttl,
		clock:    time.Now,
		fraction: DefaultRenewFraction,
		jitter:   DefaultJitter,
		check:    DefaultCheckInterval,
		minBack:  DefaultMinBackoff,
		maxBack:  DefaultMaxBackoff,
		log:      slog.Default(),
	}
	for _, o := range opts {
		o(s)
	}
	switch {
	case s.clock == nil:
		return nil, errors.New("pki: cert source: nil clock")
	case s.log == nil:
		return nil, errors.New("pki: cert source: nil logger")
	case !(s.fraction > 0 && s.fraction < 1):
		return nil, fmt.Errorf("pki: cert source: renew fraction %v not in (0, 1)", s.fraction)
	case !(s.jitter >= 0 && s.jitter < 1):
		return nil, fmt.Errorf("pki: cert source: jitter %v not in [0, 1)", s.jitter)
	case s.check <= 0:
		return nil, fmt.Errorf("pki: cert source: check interval must be positive, got %v", s.check)
	case s.minBack <= 0 || s.maxBack < s.minBack:
		return nil, fmt.Errorf("pki: cert source: bad backoff %v..%v", s.minBack, s.maxBack)
	}
	s.log = s.log.With(slog.String("identity", id.String()))
	ctx, cancel := context.WithTimeout(context.Background(), issueTimeout)
	defer cancel()
	if err := s.renew(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// StaticCertSource returns a source that always serves is (for example a
// profile's certificate) and never renews it; its Run only waits for its
// context to end.
func StaticCertSource(is *Issued) (*CertSource, error) {
	id, err := is.check()
	if err != nil {
		return nil, fmt.Errorf("pki: static cert source: %w", err)
	}
	s := &CertSource{id: id, clock: time.Now, log: slog.Default()}
	s.cur.Store(newCertState(is, time.Time{}))
	return s, nil
}

func newCertState(is *Issued, renewAt time.Time) *certState {
	tc := is.TLSCertificate()
	return &certState{issued: is, tlsCert: &tc, chainDER: tc.Certificate, renewAt: renewAt}
}

// renew issues a certificate and makes it current.
func (s *CertSource) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, issueTimeout)
	defer cancel()
	is, err := s.iss.Issue(ctx, IssueRequest{Identity: s.id, TTL: s.ttl})
	if err != nil {
		return fmt.Errorf("pki: issue certificate for %s: %w", s.id, err)
	}
	got, err := is.check()
	if err != nil {
		return fmt.Errorf("pki: issue certificate for %s: %w", s.id, err)
	}
	if got != s.id {
		return fmt.Errorf("pki: issue certificate for %s: issuer certified %s instead", s.id, got)
	}
	leaf := is.Chain[0]
	now := s.clock()
	if !now.Before(leaf.NotAfter) {
		return fmt.Errorf("pki: issue certificate for %s: issued certificate expired at %s",
			s.id, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// Measure the lifetime from when the certificate was received, not from
	// a back-dated NotBefore, so that renewal is never due on arrival.
	start := now
	if leaf.NotBefore.After(now) {
		start = leaf.NotBefore
	}
	lifetime := leaf.NotAfter.Sub(start)
	f := s.fraction * (1 + s.jitter*(2*rand.Float64()-1))
	renewAt := start.Add(time.Duration(f * float64(lifetime)))
	s.cur.Store(newCertState(is, renewAt))
	s.log.Info("certificate issued",
		slog.String("serial", serialHex(leaf)),
		slog.Time("not_before", leaf.NotBefore),
		slog.Time("not_after", leaf.NotAfter),
		slog.Time("renew_at", renewAt))
	if s.onIssue != nil {
		s.onIssue(leaf)
	}
	return nil
}

// Run renews the certificate when its renewal time, measured by the source's
// clock, has come, and retries a failed renewal with exponential backoff
// while the old certificate stays in use. It returns nil when ctx ends, and
// an error only if it is already running. A static source just waits.
func (s *CertSource) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("pki: cert source is already running")
	}
	defer s.running.Store(false)
	if s.iss == nil {
		<-ctx.Done()
		return nil
	}
	backoff := s.minBack
	for {
		st := s.cur.Load()
		now := s.clock()
		wait := s.check
		if !now.Before(st.renewAt) {
			err := s.renew(ctx)
			if err == nil {
				backoff = s.minBack
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			wait = backoff
			backoff = min(2*backoff, s.maxBack)
			leaf := st.issued.Leaf()
			expired := !now.Before(leaf.NotAfter)
			level := slog.LevelWarn
			if expired {
				level = slog.LevelError
			}
			s.log.Log(ctx, level, "certificate renewal failed",
				slog.Any("error", err),
				slog.Duration("retry_in", wait),
				slog.String("serial", serialHex(leaf)),
				slog.Time("not_after", leaf.NotAfter),
				slog.Bool("expired", expired))
		} else if d := st.renewAt.Sub(now); d < wait {
			wait = d
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Current returns the current certificate and key. The value must not be
// modified.
func (s *CertSource) Current() *Issued { return s.cur.Load().issued }

// Identity returns the identity the source holds certificates for.
func (s *CertSource) Identity() Identity { return s.id }

// GetCertificate serves the current certificate; it is a
// tls.Config.GetCertificate callback.
func (s *CertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().tlsCert, nil
}

// GetClientCertificate serves the current certificate; it is a
// tls.Config.GetClientCertificate callback.
func (s *CertSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.cur.Load().tlsCert, nil
}

// Sign signs msg with the current key and returns the signature with the DER
// certificate chain (leaf first) of that same key, for the verifier's
// Trust.VerifyDER. The chain's bytes must not be modified.
func (s *CertSource) Sign(msg []byte) (sig []byte, chainDER [][]byte) {
	st := s.cur.Load()
	return ed25519.Sign(st.issued.Key, msg), append([][]byte(nil), st.chainDER...)
}
