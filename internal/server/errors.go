package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/store"
)

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
		verr *apierr.ValidationError
		nf   *store.NotFoundError
		pe   *apierr.PreconditionError
		ee   *apierr.EmbeddingError
		mm   *store.EmbeddingMismatchError
		ue   *store.UnavailableError
		fe   *apierr.FeedNotFoundError
		ae   *apierr.AccessError
		re   *store.ResourceExhaustedError
		sw   *store.EmbeddingSwitchedError
	)
	switch {
	case errors.As(err, &verr):
		br := &errdetails.BadRequest{}
		for _, v := range verr.Violations {
			br.FieldViolations = append(br.FieldViolations,
				&errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		meta := map[string]string{"field": verr.Violations[0].Field}
		if verr.More > 0 {
			meta["violations_not_listed"] = strconv.Itoa(verr.More)
		}
		return NewStatus(codes.InvalidArgument, apierr.InvalidRequest, verr.Error(), meta, br)
	case errors.As(err, &ae) && ae.Denied:
		return NewStatus(codes.PermissionDenied, apierr.APIKeyScope, ae.Message,
			map[string]string{"key_id": ae.KeyID, "scope": ae.Scope, "required_scope": ae.Required})
	case errors.As(err, &ae):
		return NewStatus(codes.Unauthenticated, apierr.APIKeyInvalid, ae.Message, nil)
	case errors.As(err, &nf):
		ids := strings.Join(nf.IDs, ",")
		return NewStatus(codes.NotFound, apierr.PaperNotFound, nf.Error(), map[string]string{"paper_ids": ids},
			&errdetails.ResourceInfo{ResourceType: "recommender.v1.Paper", ResourceName: ids, Description: "no paper with this id is stored"})
	case errors.As(err, &fe):
		return NewStatus(codes.NotFound, apierr.FeedNotFound, fe.Error(), map[string]string{"feed_id": fe.ID},
			&errdetails.ResourceInfo{ResourceType: "recommender.v1.Feed", ResourceName: fe.ID, Description: "no feed with this id is saved"})
	case errors.As(err, &pe):
		return precondition(pe.Reason, pe.Subject, pe.Message)
	case errors.As(err, &mm):
		return precondition(apierr.EmbeddingModelMismatch, "store", mm.Error())
	case errors.Is(err, store.ErrNoOtherSet):
		return precondition(apierr.VectorSetBusy, "store", "the store keeps no second set of vectors")
	case errors.As(err, &sw):
		return NewStatus(codes.Unavailable, apierr.EmbeddingSwitched, "the store switched embedding models during the call; retry", nil)
	case errors.Is(err, syscall.ENOSPC):
		log.Error("disk full", "method", method, "error", err)
		return NewStatus(codes.ResourceExhausted, apierr.StorageFull, "the server's disk is full; retry once an operator has freed space",
			nil, &errdetails.RetryInfo{RetryDelay: durationpb.New(storageFullRetry)})
	case errors.As(err, &ue):
		log.Warn("store unavailable", "method", method, "error", err)
		return NewStatus(codes.Unavailable, apierr.StoreUnavailable, "store unavailable; retry later", nil)
	case errors.As(err, &re):
		log.Warn("store overloaded", "method", method, "error", err)
		var details []protoadapt.MessageV1
		if re.RetryAfter > 0 {
			details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(re.RetryAfter)})
		}
		return NewStatus(codes.ResourceExhausted, apierr.StoreOverloaded, "store overloaded; retry later", nil, details...)
	case errors.As(err, &ee):
		// The upstream message may quote inputs or account details: operators get it in the
		// log, clients get the kind.
		log.Warn("embedding failed", "method", method, "error", err)
		if ee.Retryable {
			return NewStatus(codes.Unavailable, apierr.EmbeddingUnavailable, "embedding service unavailable ("+ee.Kind+"); retry later",
				map[string]string{"kind": ee.Kind})
		}
		return precondition(apierr.EmbeddingRefused, "embedding-api",
			"embedding service refused the request ("+ee.Kind+"); an operator must fix its configuration")
	case errors.Is(err, context.DeadlineExceeded):
		return NewStatus(codes.DeadlineExceeded, apierr.DeadlineExceeded, "deadline exceeded", nil)
	case errors.Is(err, context.Canceled):
		return NewStatus(codes.Canceled, apierr.Canceled, "request canceled", nil)
	case errors.Is(err, store.ErrClosed):
		return NewStatus(codes.Unavailable, apierr.ShuttingDown, "server is shutting down", nil)
	}
	log.Error("internal error", "method", method, "error", err)
	return NewStatus(codes.Internal, apierr.Internal, "internal error", nil)
}

// storageFullRetry is the retry advice of a full disk: freeing space takes an operator.
const storageFullRetry = time.Minute

// precondition is a FAILED_PRECONDITION with its PreconditionFailure.
func precondition(reason, subject, msg string) error {
	return NewStatus(codes.FailedPrecondition, reason, msg, nil, &errdetails.PreconditionFailure{
		Violations: []*errdetails.PreconditionFailure_Violation{{Type: reason, Subject: subject, Description: msg}}})
}
