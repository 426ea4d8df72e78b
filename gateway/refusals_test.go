package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
)

// refusalCerts issues n node certificates of GBR's dev CA, named gbr0,
// gbr1, ...: n peers whose handshakes are refused.
func refusalCerts(t *testing.T, n int) []tls.ConnectionState {
	t.Helper()
	ca, err := pki.OpenDevCA(filepath.Join(t.TempDir(), "ca"), "GBR")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]tls.ConnectionState, n)
	for i := range out {
		id, err := pki.NewIdentity("GBR", pki.KindNode, fmt.Sprintf("gbr%d", i))
		if err != nil {
			t.Fatal(err)
		}
		is, err := ca.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = tls.ConnectionState{PeerCertificates: is.Chain}
	}
	return out
}

var errRefusedForTest = errors.New("certificate revoked")

// refusingVerifier is logRefusals over a verifier that refuses every
// handshake, logging to logs, on the clock *now.
func refusingVerifier(logs *strings.Builder, now *time.Time) func(tls.ConnectionState) error {
	log := slog.New(slog.NewTextHandler(logs, nil))
	return logRefusals(log, func() time.Time { return *now }, func(tls.ConnectionState) error { return errRefusedForTest })
}

// TestLogRefusals: a refused handshake is logged with the peer's identity,
// serial and the reason, once in refusalLogEvery for one peer; its next
// line says how many were not logged. An accepted one is not logged.
func TestLogRefusals(t *testing.T) {
	cs := refusalCerts(t, 1)[0]
	var logs strings.Builder
	now := time.Unix(1_800_000_000, 0)
	verify := refusingVerifier(&logs, &now)
	for range 8 {
		if err := verify(cs); err != errRefusedForTest {
			t.Fatalf("the wrapper changed the refusal: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "handshake refused"); n != 1 {
		t.Fatalf("%d lines for one peer in one window, want 1:\n%s", n, logs.String())
	}
	for _, want := range []string{"claimed_peer=spiffe://gbr.tearline.test/party/GBR/node/gbr0", "serial=" + pki.VaultSerial(cs.PeerCertificates[0].SerialNumber), `reason="certificate revoked"`} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the log does not say %s:\n%s", want, logs.String())
		}
	}
	now = now.Add(refusalLogEvery)
	logs.Reset()
	_ = verify(cs)
	if !strings.Contains(logs.String(), "not_logged_before=7") {
		t.Fatalf("the next window's line does not count the 7 not logged:\n%s", logs.String())
	}
	logs.Reset()
	accept := logRefusals(slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return now }, func(tls.ConnectionState) error { return nil })
	if err := accept(cs); err != nil || logs.Len() != 0 {
		t.Fatalf("an accepted handshake: %v, logged %q", err, logs.String())
	}
}

// TestLogRefusalsFloodDoesNotHideAnother: a peer retrying a refused
// certificate many times a second does not use up the log's lines: another
// peer refused meanwhile is named. Many peers together get at most
// refusalBurst lines a window, and the next line counts the rest.
func TestLogRefusalsFloodDoesNotHideAnother(t *testing.T) {
	peers := refusalCerts(t, refusalBurst+5)
	var logs strings.Builder
	now := time.Unix(1_800_000_000, 0)
	verify := refusingVerifier(&logs, &now)
	for i := range 1000 {
		now = now.Add(time.Millisecond)
		_ = verify(peers[0])
		if i == 500 {
			_ = verify(peers[1])
		}
	}
	if n := strings.Count(logs.String(), "handshake refused"); n != 2 {
		t.Fatalf("%d lines, want 2 (the flooding peer once, the other once):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "node/gbr1") {
		t.Fatalf("the peer refused during the flood is not named:\n%s", logs.String())
	}

	// Many peers in one window: refusalBurst lines, then a count.
	now = now.Add(refusalLogEvery)
	logs.Reset()
	for _, p := range peers {
		_ = verify(p)
	}
	if n := strings.Count(logs.String(), "handshake refused"); n != refusalBurst {
		t.Fatalf("%d lines from %d peers in one window, want %d", n, len(peers), refusalBurst)
	}
	if !strings.Contains(logs.String(), "node/gbr0 ") || !strings.Contains(logs.String(), "not_logged_before=999") {
		t.Fatalf("the flooding peer's next line does not count its 999 refusals not logged:\n%s", logs.String())
	}
	now = now.Add(refusalLogEvery)
	logs.Reset()
	_ = verify(peers[0])
	if !strings.Contains(logs.String(), "other_refusals_not_logged=5") {
		t.Fatalf("the next line does not count the 5 peers over the bound:\n%s", logs.String())
	}
}
