package pki

import (
	"errors"
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		uri  string
		want Identity // zero: error expected
	}{
		{"spiffe://gbr.tearline.test/party/GBR/node/n1", Identity{"gbr.tearline.test", "GBR", KindNode, "n1"}},
		{"spiffe://usa.tearline.test/party/USA/svc/analysis", Identity{"usa.tearline.test", "USA", KindService, "analysis"}},
		{"spiffe://aus.tearline.test/party/AUS/officer/j.smith", Identity{"aus.tearline.test", "AUS", KindOfficer, "j.smith"}},
		{"spiffe://x-1.example_org.test/party/NATO-2/node/a_b-c.d", Identity{"x-1.example_org.test", "NATO-2", KindNode, "a_b-c.d"}},
		{"spiffe://localhost/party/ABCDEFGHIJKLMNOP/node/" + long, Identity{"localhost", "ABCDEFGHIJKLMNOP", KindNode, long}},
		{"spiffe://-x.tearline.test/party/-X/node/0", Identity{"-x.tearline.test", "-X", KindNode, "0"}},

		{"", Identity{}},
		{"spiffe://", Identity{}},
		{"spiffe:/gbr.tearline.test/party/GBR/node/n1", Identity{}},
		{"SPIFFE://gbr.tearline.test/party/GBR/node/n1", Identity{}},
		{"https://gbr.tearline.test/party/GBR/node/n1", Identity{}},
		{" spiffe://gbr.tearline.test/party/GBR/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1 ", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1?x=1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1?", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1#frag", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1#", Identity{}},
		{"spiffe://user@gbr.tearline.test/party/GBR/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test:443/party/GBR/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n%31", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1/", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n1/x", Identity{}},
		{"spiffe://gbr.tearline.test//party/GBR/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node", Identity{}},
		{"spiffe://gbr.tearline.test/parties/GBR/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/GBR/node/n1", Identity{}},
		{"spiffe:///party/GBR/node/n1", Identity{}},
		{"spiffe://GBR.tearline.test/party/GBR/node/n1", Identity{}},
		{"spiffe://gbr..test/party/GBR/node/n1", Identity{}},
		{"spiffe://.gbr.test/party/GBR/node/n1", Identity{}},
		{"spiffe://gbr.test./party/GBR/node/n1", Identity{}},
		{"spiffe://[::1]/party/GBR/node/n1", Identity{}},
		{"spiffe://" + strings.Repeat("a", 64) + ".test/party/GBR/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/gbr/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/G/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/ABCDEFGHIJKLMNOPQ/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GB_R/node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/Node/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/user/n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/N1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/.n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/..", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/-n1", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/" + long + "a", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/né", Identity{}},
		{"spiffe://gbr.tearline.test/party/GBR/node/n\x00", Identity{}},
		{"spiffe://gbr.tearline.test\\party/GBR/node/n1", Identity{}},
		{"spiffe://" + strings.Repeat("a.", 300) + "b/party/GBR/node/n1", Identity{}},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			got, err := ParseIdentity(tc.uri)
			if tc.want.IsZero() {
				if err == nil {
					t.Fatalf("ParseIdentity(%q) = %+v, want error", tc.uri, got)
				}
				if !errors.Is(err, ErrIdentity) {
					t.Fatalf("error %v does not wrap ErrIdentity", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseIdentity(%q): %v", tc.uri, err)
			}
			if got != tc.want {
				t.Fatalf("ParseIdentity(%q) = %+v, want %+v", tc.uri, got, tc.want)
			}
			if got.String() != tc.uri || got.URI().String() != tc.uri {
				t.Fatalf("String() = %q, URI() = %q, want %q", got.String(), got.URI(), tc.uri)
			}
		})
	}
}

func TestNewIdentity(t *testing.T) {
	id, err := NewIdentity("GBR", KindNode, "london")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Identity{"gbr.tearline.test", "GBR", KindNode, "london"}); id != want {
		t.Fatalf("got %+v, want %+v", id, want)
	}
	if got := id.String(); got != "spiffe://gbr.tearline.test/party/GBR/node/london" {
		t.Fatalf("String() = %q", got)
	}
	for _, tc := range []struct {
		party string
		kind  Kind
		name  string
	}{
		{"gbr", KindNode, "n"},
		{"G", KindNode, "n"},
		{"GBR", "host", "n"},
		{"GBR", KindService, ""},
		{"GBR", KindOfficer, "Smith"},
	} {
		if _, err := NewIdentity(tc.party, tc.kind, tc.name); !errors.Is(err, ErrIdentity) {
			t.Errorf("NewIdentity(%q, %q, %q) error = %v, want ErrIdentity", tc.party, tc.kind, tc.name, err)
		}
	}
}

func TestDefaultDomain(t *testing.T) {
	for party, want := range map[string]string{"GBR": "gbr.tearline.test", "NATO-2": "nato-2.tearline.test"} {
		if got := DefaultDomain(party); got != want {
			t.Errorf("DefaultDomain(%q) = %q, want %q", party, got, want)
		}
	}
}

func TestIdentityFromCert(t *testing.T) {
	ca := newCA(t, "GBR")
	good := "spiffe://gbr.tearline.test/party/GBR/node/n1"
	tests := []struct {
		name    string
		uris    []string
		wantErr string
	}{
		{"one URI SAN", []string{good}, ""},
		{"no URI SAN", nil, "no URI SAN"},
		{"two URI SANs", []string{good, "spiffe://gbr.tearline.test/party/GBR/node/n2"}, "2 URI SANs"},
		{"same URI SAN twice", []string{good, good}, "2 URI SANs"},
		{"bad URI SAN", []string{"spiffe://gbr.tearline.test/party/GBR/node/N1"}, "invalid name"},
		{"URI SAN with query", []string{good + "?q"}, "unexpected character"},
		{"URI SAN with empty fragment", []string{good + "#"}, "unexpected character"},
		{"URI SAN with escape", []string{"spiffe://gbr.tearline.test/party/GBR/node/n%31"}, "unexpected character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is := forge(t, ca, tc.uris, nil)
			id, err := IdentityFromCert(is.Chain[0])
			if tc.wantErr == "" {
				if err != nil || id.String() != good {
					t.Fatalf("IdentityFromCert = %v, %v; want %s", id, err, good)
				}
				return
			}
			if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("IdentityFromCert error = %v, want ErrIdentity containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := IdentityFromCert(nil); !errors.Is(err, ErrIdentity) {
		t.Fatalf("IdentityFromCert(nil) error = %v", err)
	}
}
