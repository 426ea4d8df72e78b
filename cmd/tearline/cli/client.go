package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/gateway"
	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// dial connects to the node named by the flags with the profile's
// certificate, verifying that the server is a node of the profile's party.
func (g *globals) dial() (clientv1.ClientServiceClient, func(), error) {
	conn, err := g.dialConn()
	if err != nil {
		return nil, nil, err
	}
	return clientv1.NewClientServiceClient(conn), func() { conn.Close() }, nil
}

// dialConn connects to the node named by the flags. With --dev DIR --as
// PARTY the node is PARTY's in DIR (checkGlobals refuses --node with them)
// and so is the profile, unless --profile names another (an analyst's);
// TEARLINE_NODE and TEARLINE_PROFILE do not apply then.
func (g *globals) dialConn() (*grpc.ClientConn, error) {
	addr, profDir := g.node, g.profile
	if g.dev != "" {
		if g.as == "" {
			return nil, usagef("--dev needs --as PARTY")
		}
		party := strings.ToUpper(g.as)
		a, err := gateway.DevAddress(g.dev, party)
		if err != nil {
			return nil, err
		}
		addr = a
		if !g.profileSet {
			profDir = filepath.Join(g.dev, party)
		}
	}
	if addr == "" {
		return nil, usagef("no node: give --node ADDR (or TEARLINE_NODE), or --dev DIR --as PARTY")
	}
	if profDir == "" {
		return nil, usagef("no profile: give --profile DIR (or TEARLINE_PROFILE), or --dev DIR --as PARTY")
	}
	prof, err := pki.LoadProfile(profDir)
	if err != nil {
		return nil, err
	}
	return gateway.Dial(addr, prof)
}

// withClient dials the node, makes a client of one service and runs fn
// with the call timeout.
func withClient[C any](ctx context.Context, g *globals, newClient func(grpc.ClientConnInterface) C, fn func(context.Context, C) error) error {
	conn, err := g.dialConn()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	return fn(ctx, newClient(conn))
}

// callAdmin runs fn against the node's admin service.
func (g *globals) callAdmin(ctx context.Context, fn func(context.Context, adminv1.AdminServiceClient) error) error {
	return withClient(ctx, g, adminv1.NewAdminServiceClient, fn)
}

// call runs fn against the node's client service.
func (g *globals) call(ctx context.Context, fn func(context.Context, clientv1.ClientServiceClient) error) error {
	return withClient(ctx, g, clientv1.NewClientServiceClient, fn)
}

// askAdmin makes one call to the node's admin service and returns its
// answer.
func askAdmin[T any](ctx context.Context, g *globals, call func(context.Context, adminv1.AdminServiceClient) (T, error)) (T, error) {
	return askWith(ctx, g, adminv1.NewAdminServiceClient, call)
}

// ask makes one call to the node's client service and returns its answer.
func ask[T any](ctx context.Context, g *globals, call func(context.Context, clientv1.ClientServiceClient) (T, error)) (T, error) {
	return askWith(ctx, g, clientv1.NewClientServiceClient, call)
}

func askWith[C, T any](ctx context.Context, g *globals, newClient func(grpc.ClientConnInterface) C, call func(context.Context, C) (T, error)) (T, error) {
	var resp T
	err := withClient(ctx, g, newClient, func(ctx context.Context, c C) error {
		var err error
		resp, err = call(ctx, c)
		return err
	})
	return resp, err
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cliError is the JSON form of an error.
type cliError struct {
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Next    string `json:"next,omitempty"`
}

// writeJSONError writes {"error": e} on one line: the last line of a
// stream of JSON lines (subscribe, publish --batch, audit export) parses
// like the others, and a single answer's error stays valid JSON.
func writeJSONError(w io.Writer, e cliError) {
	_ = json.NewEncoder(w).Encode(map[string]cliError{"error": e})
}

// describe turns any error into a cliError: a gRPC status with its
// ErrorInfo reason and next step, or a local error.
func describe(err error) cliError {
	st, ok := status.FromError(err)
	if !ok {
		reason := "local"
		if errors.Is(err, os.ErrNotExist) {
			reason = "not-found"
		}
		return cliError{Code: "Unknown", Reason: reason, Message: err.Error()}
	}
	e := cliError{Code: st.Code().String(), Message: st.Message(), Reason: kebab(st.Code().String())}
	fromNode := false // the node answered with a reason of its own
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			e.Reason = info.GetReason()
			e.Next = info.GetMetadata()["next"]
			fromNode = true
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		switch msg := st.Message(); {
		case fromNode: // a node that answers is not unreachable (e.g. store-read-only)
		case refusedCertificate(msg):
			// The node ended the connection as it was set up: with TLS
			// 1.3 the client's side of the handshake is done before the
			// node checks the client's certificate, so a refusal shows
			// as the node's alert or, as often, as the next write failing.
			e.Reason = "certificate-refused"
			e.Message = "the node closed the connection as it was set up; most likely it refused this profile's certificate (revoked, expired, not from a CA it trusts, or its party suspended; the node's log names the reason): " + msg
		case strings.Contains(msg, "authentication handshake failed"):
			// Something answers at the address, but mutual TLS failed:
			// most often --node is another party's node than the
			// profile's, or the profile's CA bundle is not its CA.
			e.Reason = "tls-handshake"
			e.Message = "the TLS handshake with the node failed (is --node the node of this profile's party, and ca.pem its CA?): " + msg
		case strings.Contains(msg, "produced zero addresses") || strings.Contains(msg, "no such host"):
			e.Reason = "unresolved"
			e.Message = "the node's address does not resolve (check --node HOST:PORT): " + msg
		default:
			e.Message = "the node is unreachable: " + msg
		}
	case codes.Unauthenticated:
		e.Message = "the node did not accept this profile's certificate: " + st.Message()
	case codes.DeadlineExceeded:
		e.Message = "the node did not answer in time"
	}
	return e
}

// refusedCertificate reports whether a transport error reads as the node
// refusing the client's certificate: the node's TLS alert about it, or the
// node closing the connection just set up (with TLS 1.3 the client's side
// of the handshake is done before the node checks the certificate, so the
// first write fails, with a broken pipe or, when the node's kernel answers
// it with a reset, "connection reset by peer", or the server's preface
// ends at EOF). Those can have other causes; the message says "most
// likely".
func refusedCertificate(msg string) bool {
	for _, s := range []string{
		"remote error: tls: bad certificate", "remote error: tls: certificate required",
		"remote error: tls: revoked certificate", "remote error: tls: expired certificate",
		"remote error: tls: unknown certificate", "remote error: tls: unsupported certificate",
		"remote error: tls: access denied",
		"error reading server preface: EOF", "broken pipe", "write: connection reset by peer",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// report prints err: one plain sentence on stderr, or JSON on stdout.
func report(g *globals, err error) { printError(g, describe(err)) }

// printError prints e as report does.
func printError(g *globals, e cliError) {
	if g.json {
		writeJSONError(g.stdout, e)
		return
	}
	msg := strings.TrimSuffix(e.Message, ".")
	textf(g.stderr, "tearline: %s.\n", msg)
}

func jsonLine(w io.Writer) *json.Encoder { return json.NewEncoder(w) }

// kebab turns a gRPC code name into a reason id: InvalidArgument -> invalid-argument.
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
