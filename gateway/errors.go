package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/policy"
	"github.com/tearline/tearline/node/store"
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
	case errors.Is(err, node.ErrSuspended):
		return suspendedCallStatus(userText(err, node.ErrSuspended))
	case errors.Is(err, node.ErrDenied):
		return status.Error(codes.PermissionDenied, userText(err, node.ErrDenied))
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The caller went away or ran out of time: nothing to log.
		return status.FromContextError(err).Err()
	}
	if st := storeStatus(err, clientStoreText); st != nil {
		log.Warn("request refused: the store cannot be written", "method", method, "error", err)
		return st
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	log.Error("request failed", "method", method, "error", err)
	return status.Error(codes.Internal, "internal error; the node's log has the details")
}

// deniedStatus builds the status of a denial: FailedPrecondition when the
// originator's consent could allow it (third-party-rule: an ORCON portion
// for a third party), PermissionDenied otherwise (among them
// originator-holds, a release back to the originator, which nothing
// allows), with ErrorInfo (reason = rule id) and PreconditionFailure
// details. Reasons never hold portion content.
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

// Reasons (ErrorInfo) of the refusals a node gives when its store cannot be
// written.
const (
	ReasonStoreFull     = "store-full"
	ReasonStoreReadOnly = "store-read-only"
)

// storeText is what a refusal for a store that cannot be written says, and
// the step that ends it.
type storeText struct{ full, readOnly, nextFull, nextReadOnly string }

// clientStoreText is for the node's own officers and subscribers.
var clientStoreText = storeText{
	full:         "the node's store is full: the disk that holds it has no space left, so the node takes no new work (publish, share, receipts from partners); reads still work and nothing it already stored is lost",
	readOnly:     "the node's store is read-only: its file system does not take writes, so the node takes no new work (publish, share, receipts from partners); reads still work and nothing it already stored is lost",
	nextFull:     "free space on the disk that holds the node's data_dir (or move data_dir to a larger disk); the node takes work again as soon as there is space, without a restart",
	nextReadOnly: "make the file system that holds the node's data_dir writable again (the system log says why it is read-only), then restart the node",
}

// subscriberStoreText is for a subscription: a delivery is recorded in
// provenance, so a node that cannot write delivers nothing.
var subscriberStoreText = storeText{
	full:         "the node's store is full: the disk that holds it has no space left, so the node cannot record deliveries in provenance and ends the subscription; the saved cursor is before any report sent but not recorded",
	readOnly:     "the node's store is read-only: its file system does not take writes, so the node cannot record deliveries in provenance and delivers nothing more; the saved cursor is before any report sent but not recorded",
	nextFull:     "subscribe again with --resume once the node's operators have freed disk space; reports sent but not recorded are sent again",
	nextReadOnly: "subscribe again with --resume once the node's operators have made its store writable and restarted it; reports sent but not recorded are sent again",
}

// partnerStoreText is for a partner node whose envelope was not stored.
var partnerStoreText = storeText{
	full:         "the receiving node's store is full: the envelope was not stored and is not acknowledged",
	readOnly:     "the receiving node's store is read-only: the envelope was not stored and is not acknowledged",
	nextFull:     "keep it queued and send it again later; the receiving node's operators must free disk space",
	nextReadOnly: "keep it queued and send it again later; the receiving node's operators must make its store writable",
}

// ReasonSuspended (ErrorInfo) refuses a call of a suspended subscriber or
// partner, and ends a suspended subscriber's stream. The refusal never says
// why it was suspended: that is the security team's, in the audit log.
const ReasonSuspended = "suspended"

// suspendedNext is the next step of a suspended caller.
const suspendedNext = "ask the node's operators: the security team lifts a suspension by reinstatement"

// suspendedCallStatus is the refusal of a suspended caller, saying msg.
func suspendedCallStatus(msg string) error {
	st := status.New(codes.PermissionDenied, msg+". Next: "+suspendedNext)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonSuspended, Domain: ErrorDomain, Metadata: map[string]string{"next": suspendedNext}}); err == nil {
		st = d
	}
	return st.Err()
}

// ReasonDeliveryNotRecorded (ErrorInfo) ends a subscription whose
// deliveries could not be recorded for a reason other than a full or
// read-only store.
const ReasonDeliveryNotRecorded = "delivery-not-recorded"

// deliveryNotRecordedStatus is that subscription's end.
func deliveryNotRecordedStatus() error {
	const next = "subscribe again with --resume; reports sent but not recorded are sent again (the node's log says why recording failed)"
	st := status.New(codes.Internal, "deliveries could not be recorded in provenance, so the subscription ends; the saved cursor is before them. Next: "+next)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonDeliveryNotRecorded, Domain: ErrorDomain, Metadata: map[string]string{"next": next}}); err == nil {
		st = d
	}
	return st.Err()
}

// storeStatus is the status of a write refused because the disk is full
// (ResourceExhausted) or the store read-only (Unavailable), with fixed text,
// the next step and ErrorInfo; nil for any other error.
func storeStatus(err error, text storeText) error {
	var code codes.Code
	var reason, msg, next string
	switch {
	case errors.Is(err, store.ErrFull):
		code, reason, msg, next = codes.ResourceExhausted, ReasonStoreFull, text.full, text.nextFull
	case errors.Is(err, store.ErrReadOnly):
		code, reason, msg, next = codes.Unavailable, ReasonStoreReadOnly, text.readOnly, text.nextReadOnly
	default:
		return nil
	}
	st := status.New(code, msg+". Next: "+next)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: map[string]string{"next": next}}); err == nil {
		st = d
	}
	return st.Err()
}
