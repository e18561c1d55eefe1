package server

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/authzd/authzd/internal/decision"
	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/token"
)

// errorDomain is the ErrorInfo domain of every error authzd returns.
const errorDomain = "authzd"

// Stable reasons for errors that arise in the server itself.
const (
	reasonInvalidRequest = "INVALID_REQUEST"
	reasonBodyTooLarge   = "BODY_TOO_LARGE"
	reasonInternal       = "INTERNAL"
	reasonCanceled       = "CANCELED"
	reasonNotFound       = "NOT_FOUND"
	// reasonPolicyNotLoaded: a bundle-fed engine has no policy yet.
	reasonPolicyNotLoaded = "POLICY_NOT_LOADED"
)

// classify is the one table that maps errors of the decision path to gRPC
// codes and stable reasons. Nothing else in authzd knows status codes.
func classify(err error) (codes.Code, string, string) {
	var (
		inv *decision.InvalidRequestError
		tok *token.Error
		ev  *decision.EvaluationError
	)
	switch {
	case errors.As(err, &inv):
		return codes.InvalidArgument, inv.Reason, inv.Message
	case errors.As(err, &tok) && tok.Reason == token.ReasonIssuerUnavailable:
		return codes.Unavailable, string(tok.Reason), tok.Message
	case errors.As(err, &tok):
		return codes.Unauthenticated, string(tok.Reason), tok.Message
	case errors.Is(err, policy.ErrNotLoaded):
		return codes.Unavailable, reasonPolicyNotLoaded, "no policy loaded yet: " + err.Error()
	case errors.As(err, &ev):
		return codes.Internal, ev.Reason, ev.Error()
	case errors.Is(err, context.Canceled):
		return codes.Canceled, reasonCanceled, "request canceled by the caller"
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, reasonCanceled, "request deadline exceeded"
	default:
		return codes.Internal, reasonInternal, "internal error"
	}
}

// statusOf turns an error into a gRPC status carrying an ErrorInfo detail
// with the stable reason and the decision id. A status error that already
// carries ErrorInfo is returned as is.
func statusOf(err error, decisionID string) *status.Status {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if _, ok := d.(*errdetails.ErrorInfo); ok {
				return st
			}
		}
		return withInfo(st.Code(), reasonForCode(st.Code()), st.Message(), decisionID)
	}
	code, reason, msg := classify(err)
	return withInfo(code, reason, msg, decisionID)
}

func withInfo(code codes.Code, reason, msg, decisionID string) *status.Status {
	st := status.New(code, msg)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   reason,
		Domain:   errorDomain,
		Metadata: map[string]string{"decision_id": decisionID},
	})
	if err != nil {
		return st
	}
	return detailed
}

func reasonForCode(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return reasonInvalidRequest
	case codes.NotFound, codes.Unimplemented:
		return reasonNotFound
	case codes.Canceled, codes.DeadlineExceeded:
		return reasonCanceled
	default:
		return reasonInternal
	}
}

// httpStatus is grpc-gateway's standard mapping, with 413 for a body over
// the limit.
func httpStatus(st *status.Status) int {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == reasonBodyTooLarge {
			return http.StatusRequestEntityTooLarge
		}
	}
	switch st.Code() {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
