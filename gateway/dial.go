package gateway

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tearline/tearline/pki"
)

// maxClientMsg is the largest message a client sends or accepts.
const maxClientMsg = 16 << 20

// Dial connects to the node at addr with the profile's certificate,
// verifying that the server is a node of the profile's party. It is what
// the CLI and the benchmark use to reach a node.
func Dial(addr string, prof *pki.Profile, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	is, err := prof.Issued()
	if err != nil {
		return nil, err
	}
	src, err := pki.StaticCertSource(is)
	if err != nil {
		return nil, err
	}
	trust := pki.NewTrust()
	trust.Set(prof.Identity.Party, prof.Bundle)
	party := prof.Identity.Party
	want := func(id pki.Identity) error {
		if id.Party != party || id.Kind != pki.KindNode {
			return fmt.Errorf("the server at %s is %s, not a node of %s", addr, id, party)
		}
		return nil
	}
	opts = append(append(dialWindows(),
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(src, trust, want, nil))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxClientMsg), grpc.MaxCallSendMsgSize(maxClientMsg)),
	), opts...)
	return grpc.NewClient(addr, opts...)
}
