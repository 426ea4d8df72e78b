package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tearline/tearline/pki"
)

// TestLogRefusals: a refused handshake is logged with the peer's identity,
// serial and the reason, at most refusalBurst times in refusalLogEvery;
// the next line says how many were not logged. An accepted one is not
// logged.
func TestLogRefusals(t *testing.T) {
	ca, err := pki.OpenDevCA(filepath.Join(t.TempDir(), "ca"), "GBR")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := pki.NewIdentity("GBR", pki.KindNode, "gbr")
	is, err := ca.Issue(context.Background(), pki.IssueRequest{Identity: id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{PeerCertificates: is.Chain}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Unix(1_800_000_000, 0)
	refuse := errors.New("certificate revoked")
	verify := logRefusals(log, func() time.Time { return now }, func(tls.ConnectionState) error { return refuse })
	for range refusalBurst + 3 {
		if err := verify(cs); err != refuse {
			t.Fatalf("the wrapper changed the refusal: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "handshake refused"); n != refusalBurst {
		t.Fatalf("%d lines in one window, want %d:\n%s", n, refusalBurst, logs.String())
	}
	for _, want := range []string{"claimed_peer=spiffe://gbr.tearline.test/party/GBR/node/gbr", "serial=" + pki.VaultSerial(is.Leaf().SerialNumber), `reason="certificate revoked"`} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the log does not say %s:\n%s", want, logs.String())
		}
	}
	now = now.Add(refusalLogEvery)
	logs.Reset()
	_ = verify(cs)
	if !strings.Contains(logs.String(), "not_logged_before=3") {
		t.Fatalf("the next window's line does not count the 3 not logged:\n%s", logs.String())
	}
	logs.Reset()
	accept := logRefusals(log, func() time.Time { return now }, func(tls.ConnectionState) error { return nil })
	if err := accept(cs); err != nil || logs.Len() != 0 {
		t.Fatalf("an accepted handshake: %v, logged %q", err, logs.String())
	}
}
