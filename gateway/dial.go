package gateway

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/tearline/tearline/pki"
)

// maxClientMsg is the largest message a client sends or accepts.
const maxClientMsg = 16 << 20

// clientKeepalive makes a client with a call open ping the node when the
// connection has been quiet for Time, and give the connection up when no
// answer comes within Timeout: a subscriber whose node (or the network to
// it) vanished without closing the connection ends with Unavailable in
// under a minute, instead of waiting forever. (The node accepts pings
// every 5 s or more: server.go.)
var clientKeepalive = keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second}

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
		grpc.WithKeepaliveParams(clientKeepalive),
	), opts...)
	return grpc.NewClient(addr, opts...)
}
