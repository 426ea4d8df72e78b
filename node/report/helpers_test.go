package report_test

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node/report"
	"github.com/tearline/tearline/pki"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// federation is a set of parties, each with its own development CA, and a
// Trust that holds every party's bundle.
type federation struct {
	cas   map[string]*pki.DevCA
	trust *pki.Trust
}

// newFederation opens a development CA per party in a fresh temporary
// directory and trusts each one for its own party only.
func newFederation(t testing.TB, parties ...string) *federation {
	t.Helper()
	f := &federation{cas: make(map[string]*pki.DevCA), trust: pki.NewTrust()}
	for _, p := range parties {
		ca, err := pki.OpenDevCA(t.TempDir(), p)
		if err != nil {
			t.Fatalf("OpenDevCA(%s): %v", p, err)
		}
		f.cas[p] = ca
		f.trust.Set(p, []*x509.Certificate{ca.Certificate()})
	}
	return f
}

// source returns a certificate source for an identity of party, issued by
// the party's CA.
func (f *federation) source(t testing.TB, party string, kind pki.Kind, name string) *pki.CertSource {
	t.Helper()
	return newSource(t, f.cas[party], party, kind, name)
}

// node returns the certificate source of party's node.
func (f *federation) node(t testing.TB, party string) *pki.CertSource {
	t.Helper()
	return f.source(t, party, pki.KindNode, "n1")
}

func newSource(t testing.TB, ca *pki.DevCA, party string, kind pki.Kind, name string, opts ...pki.CertSourceOption) *pki.CertSource {
	t.Helper()
	id, err := pki.NewIdentity(party, kind, name)
	if err != nil {
		t.Fatalf("NewIdentity(%s, %s, %s): %v", party, kind, name, err)
	}
	opts = append([]pki.CertSourceOption{pki.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	src, err := pki.NewCertSource(ca, id, time.Hour, opts...)
	if err != nil {
		t.Fatalf("NewCertSource(%s): %v", id, err)
	}
	return src
}

// wireMarking returns a wire marking.
func wireMarking(class string, relTo []string, noforn, orcon bool, topics ...string) *reportv1.Marking {
	return &reportv1.Marking{Classification: class, RelTo: relTo, Noforn: noforn, Orcon: orcon, Topics: topics}
}

// draft returns a valid three-portion draft of originator, created at created.
func draft(originator string, created time.Time) report.Draft {
	return report.Draft{
		Originator: originator,
		Created:    created,
		Topics:     []string{"cyber", "flood"},
		Route:      []*reportv1.RouteEntry{{Via: "GBR", To: "CAN"}},
		Portions: []*reportv1.Portion{
			{
				Marking:     wireMarking("SECRET", []string{"CAN", "GBR", "USA"}, false, false, "cyber"),
				ContentType: "text/plain",
				Title:       "Summary",
				Body:        []byte("a botnet controller at 192.0.2.7"),
			},
			{
				Marking:     wireMarking("TOP SECRET", nil, true, false, "cyber"),
				ContentType: "text/plain",
				Title:       "Source",
				Body:        []byte("yes"), // short: the salt keeps it from being guessed
			},
			{
				Marking:     wireMarking("CONFIDENTIAL", []string{"GBR", "USA"}, false, true, "flood"),
				ContentType: "application/json",
				Body:        []byte(`{"river":"Severn","level_m":4.2}`),
			},
		},
	}
}

// sealed is a sealed report with its verified header.
type sealed struct {
	header   *reportv1.Signed
	portions []*reportv1.Portion
	v        *report.Verified
}

// seal seals d with s and opens the result, failing the test on any error.
func seal(t testing.TB, d report.Draft, s report.Signer, trust report.Verifier) sealed {
	t.Helper()
	hdr, ps, err := report.Seal(d, s)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	v, err := report.OpenHeader(hdr, trust)
	if err != nil {
		t.Fatalf("OpenHeader of a freshly sealed header: %v", err)
	}
	return sealed{header: hdr, portions: ps, v: v}
}

// hop returns a hop of the sealed report from -> to carrying indexes.
func hop(r sealed, from, to string, sent time.Time, indexes ...uint32) *reportv1.Hop {
	h := &reportv1.Hop{
		ReportId:     r.v.Header.GetId(),
		HeaderDigest: r.v.Digest,
		From:         from,
		To:           to,
		Sent:         timestamppb.New(sent),
	}
	for _, ix := range indexes {
		h.Portions = append(h.Portions, &reportv1.PortionRelease{Index: ix, Basis: reportv1.Basis_BASIS_ORIGIN})
	}
	return h
}

func signHop(t testing.TB, h *reportv1.Hop, s report.Signer) *reportv1.Signed {
	t.Helper()
	sd, err := report.SignHop(h, s)
	if err != nil {
		t.Fatalf("SignHop: %v", err)
	}
	return sd
}

func clonePortions(ps []*reportv1.Portion) []*reportv1.Portion {
	out := make([]*reportv1.Portion, len(ps))
	for i, p := range ps {
		out[i] = proto.CloneOf(p)
	}
	return out
}

var sentinels = []error{report.ErrInvalid, report.ErrSignature, report.ErrDigest, report.ErrTooLarge}

// isSentinel reports whether err wraps one of the package's sentinels.
func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// wantErr fails the test unless err wraps one of want.
func wantErr(t testing.TB, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, want)
		return
	}
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Errorf("%s: error %q, want one wrapping %v", what, err, want)
}
