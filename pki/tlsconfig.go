package pki

import (
	"crypto/tls"
	"fmt"
	"time"
)

// ServerTLS returns a TLS 1.3 server configuration that presents src's
// current certificate, requires a client certificate, and accepts a client
// only if trust.Verify accepts its chain at clock() (time.Now if clock is
// nil): the client's party comes from its verified chain and SAN alone.
// Session tickets are off, so every connection is fully verified. It panics
// if src or trust is nil rather than return a configuration that could fail
// open.
func ServerTLS(src *CertSource, trust *Trust, clock func() time.Time) *tls.Config {
	if src == nil || trust == nil {
		panic("pki: ServerTLS needs a cert source and a trust")
	}
	if clock == nil {
		clock = time.Now
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		GetCertificate:         src.GetCertificate,
		// The chain is verified below, against the claimed party's CAs only.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := trust.Verify(cs.PeerCertificates, clock())
			if err != nil {
				return fmt.Errorf("pki: client refused: %w", err)
			}
			return nil
		},
	}
}

// ClientTLS returns a TLS 1.3 client configuration that presents src's
// current certificate and accepts a server only if trust.Verify accepts its
// chain at clock() (time.Now if clock is nil) and want accepts its identity,
// for example WantNode("GBR"). The system roots and host names play no part:
// Go's own verification is switched off and replaced by this full check in
// VerifyConnection, which runs on every handshake. It panics if src, trust
// or want is nil rather than return a configuration that could fail open.
func ClientTLS(src *CertSource, trust *Trust, want func(Identity) error, clock func() time.Time) *tls.Config {
	if src == nil || trust == nil || want == nil {
		panic("pki: ClientTLS needs a cert source, a trust and a want function")
	}
	if clock == nil {
		clock = time.Now
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		GetClientCertificate:   src.GetClientCertificate,
		// Safe only because VerifyConnection does the full verification.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := trust.Verify(cs.PeerCertificates, clock())
			if err != nil {
				return fmt.Errorf("pki: server refused: %w", err)
			}
			if err := want(id); err != nil {
				return fmt.Errorf("pki: server refused: %w: %s is not the expected peer: %w", ErrUntrusted, id, err)
			}
			return nil
		},
	}
}

// WantNode returns a ClientTLS want function that accepts only a node of party.
func WantNode(party string) func(Identity) error {
	return func(id Identity) error {
		if id.Kind != KindNode || id.Party != party {
			return fmt.Errorf("want a node of party %s", party)
		}
		return nil
	}
}

// WantIdentity returns a ClientTLS want function that accepts only want.
func WantIdentity(want Identity) func(Identity) error {
	return func(id Identity) error {
		if id != want {
			return fmt.Errorf("want %s", want)
		}
		return nil
	}
}

// PeerIdentity verifies the peer chain of a completed TLS 1.3 connection with
// trust at time at and returns the peer's identity; it re-derives what
// ServerTLS or ClientTLS checked during the handshake, for code that gets
// only the connection state (a gRPC interceptor, say). Errors wrap
// ErrUntrusted.
func PeerIdentity(cs tls.ConnectionState, trust *Trust, at time.Time) (Identity, error) {
	if !cs.HandshakeComplete {
		return Identity{}, fmt.Errorf("%w: TLS handshake not complete", ErrUntrusted)
	}
	if cs.Version != tls.VersionTLS13 {
		return Identity{}, fmt.Errorf("%w: TLS version %s, want TLS 1.3", ErrUntrusted, tls.VersionName(cs.Version))
	}
	if trust == nil {
		return Identity{}, fmt.Errorf("%w: no trust to verify the peer with", ErrUntrusted)
	}
	return trust.Verify(cs.PeerCertificates, at)
}
