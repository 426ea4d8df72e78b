package gateway

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/policy"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of Tearline's errors.
const ErrorDomain = "tearline"

// toStatus translates a node error at the edge, in one place (STYLE 9).
// Validation messages are written for the caller; an internal failure is
// logged and the caller gets fixed text.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	var denied *node.DeniedError
	switch {
	case errors.As(err, &denied):
		return deniedStatus(denied.Reasons, "")
	case errors.Is(err, node.ErrInvalid):
		return status.Error(codes.InvalidArgument, userText(err, node.ErrInvalid))
	case errors.Is(err, node.ErrNotFound):
		return status.Error(codes.NotFound, userText(err, node.ErrNotFound))
	case errors.Is(err, node.ErrDenied):
		return status.Error(codes.PermissionDenied, userText(err, node.ErrDenied))
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	log.Error("request failed", "method", method, "error", err)
	return status.Error(codes.Internal, "internal error; the node's log has the details")
}

// deniedStatus builds the status of a denial: FailedPrecondition when the
// originator's consent could allow it, PermissionDenied otherwise, with
// ErrorInfo (reason = rule id) and PreconditionFailure details. Reasons
// never hold portion content.
func deniedStatus(rs []policy.Reason, reportID string) error {
	if len(rs) == 0 {
		return status.Error(codes.PermissionDenied, "denied")
	}
	first := rs[0]
	code := codes.PermissionDenied
	if first.Rule == policy.RuleThirdParty {
		code = codes.FailedPrecondition
	}
	msg := "denied: " + first.Message
	if first.Next != "" {
		msg += ". Next: " + first.Next
	}
	st := status.New(code, msg)
	info := &errdetails.ErrorInfo{
		Reason: string(first.Rule), Domain: ErrorDomain,
		Metadata: map[string]string{
			"portion": strconv.Itoa(int(first.Index)),
			"marking": first.Banner,
			"party":   first.Party,
			"next":    first.Next,
		},
	}
	if reportID != "" {
		info.Metadata["report"] = reportID
	}
	pf := &errdetails.PreconditionFailure{}
	for _, r := range rs {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type: string(r.Rule), Subject: "portion " + strconv.Itoa(int(r.Index)), Description: r.Message + "; next: " + r.Next,
		})
	}
	if withDetails, err := st.WithDetails(info, pf); err == nil {
		st = withDetails
	}
	return st.Err()
}

// userText is a validation error's text without the sentinel's prefix:
// "node: invalid request: portion 1: ..." becomes "portion 1: ...".
func userText(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}
