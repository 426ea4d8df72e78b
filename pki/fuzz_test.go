package pki

import "testing"

// FuzzParseIdentity checks that ParseIdentity never panics and that what it
// accepts is valid and survives a round trip through String and URI.
func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{
		"spiffe://gbr.tearline.test/party/GBR/node/n1",
		"spiffe://usa.tearline.test/party/USA/svc/analysis",
		"spiffe://aus.tearline.test/party/AUS/officer/j.smith",
		"spiffe://gbr.tearline.test/party/GBR/node/n1?x#y",
		"spiffe://u@gbr.tearline.test:1/party/GBR/node/n%31",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		id, err := ParseIdentity(uri)
		if err != nil {
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("ParseIdentity(%q) accepted an invalid identity: %v", uri, err)
		}
		if id.String() != uri {
			t.Fatalf("ParseIdentity(%q).String() = %q", uri, id.String())
		}
		again, err := ParseIdentity(id.String())
		if err != nil || again != id {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", uri, again, err, id)
		}
		again, err = ParseIdentity(id.URI().String())
		if err != nil || again != id {
			t.Fatalf("URI round trip of %q: %+v, %v; want %+v", uri, again, err, id)
		}
	})
}
