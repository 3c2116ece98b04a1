package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/store"
)

// Violation is one invalid request field.
type Violation struct {
	Field       string // path in the request, e.g. "papers[3].title"
	Description string
}

// ValidationError lists every invalid field of a request.
type ValidationError struct{ Violations []Violation }

func (e *ValidationError) Error() string {
	if len(e.Violations) == 1 {
		return fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
	}
	return fmt.Sprintf("invalid request: %d problems, first %s: %s", len(e.Violations),
		e.Violations[0].Field, e.Violations[0].Description)
}

// add records a violation.
func (e *ValidationError) add(field, format string, args ...any) {
	e.Violations = append(e.Violations, Violation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// errOrNil returns e when it holds violations, so callers can `return v.errOrNil()`.
func (e *ValidationError) errOrNil() error {
	if len(e.Violations) == 0 {
		return nil
	}
	return e
}

// PreconditionError is a request this deployment cannot serve as configured.
type PreconditionError struct{ Reason string }

func (e *PreconditionError) Error() string { return e.Reason }

// toStatus is the one place where errors become gRPC statuses. Messages of our own typed errors
// are safe to show; anything else is logged and reported as a generic INTERNAL so that upstream
// messages and internals never reach a client.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	// Pass through only statuses made by our own handlers. status.FromError would also accept
	// a wrapped status from a dependency (Qdrant) and hand its message to the client.
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	var (
		verr *ValidationError
		nf   *store.NotFoundError
		pe   *PreconditionError
		ee   *embed.Error
		mm   *store.EmbeddingMismatchError
		ue   *store.UnavailableError
		re   *store.ResourceExhaustedError
	)
	switch {
	case errors.As(err, &verr):
		br := &errdetails.BadRequest{}
		for _, v := range verr.Violations {
			br.FieldViolations = append(br.FieldViolations,
				&errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		st, derr := status.New(codes.InvalidArgument, verr.Error()).WithDetails(br)
		if derr != nil {
			return status.Error(codes.InvalidArgument, verr.Error())
		}
		return st.Err()
	case errors.As(err, &nf):
		return status.Error(codes.NotFound, nf.Error())
	case errors.As(err, &pe):
		return status.Error(codes.FailedPrecondition, pe.Error())
	case errors.As(err, &ue):
		log.Warn("store unavailable", "method", method, "error", err)
		return status.Error(codes.Unavailable, "store unavailable; retry later")
	case errors.As(err, &re):
		log.Warn("store overloaded", "method", method, "error", err)
		st := status.New(codes.ResourceExhausted, "store overloaded; retry later")
		if re.RetryAfter > 0 {
			if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(re.RetryAfter)}); derr == nil {
				st = d
			}
		}
		return st.Err()
	case errors.As(err, &mm):
		return status.Error(codes.FailedPrecondition, mm.Error())
	case errors.As(err, &ee):
		// The upstream message may quote inputs or account details: operators get it in the
		// log, clients get the kind.
		log.Warn("embedding failed", "method", method, "error", err)
		switch ee.Kind {
		case embed.KindUnavailable, embed.KindBadResponse:
			return status.Error(codes.Unavailable, "embedding service unavailable ("+ee.Kind.String()+"); retry later")
		default:
			return status.Error(codes.FailedPrecondition, "embedding service refused the request ("+ee.Kind.String()+"); an operator must fix its configuration")
		}
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, "server is shutting down")
	}
	log.Error("internal error", "method", method, "error", err)
	return status.Error(codes.Internal, "internal error")
}
