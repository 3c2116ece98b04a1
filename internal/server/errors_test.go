package server_test

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/testutil"
)

// fullDisk is a store whose writes fail as a full disk does.
type fullDisk struct{ store.Store }

func (fullDisk) Upsert(ctx context.Context, papers []store.Paper) ([]store.Outcome, error) {
	return nil, fmt.Errorf("write papers: %w", &os.PathError{Op: "write", Path: "papers.db", Err: syscall.ENOSPC})
}

// TestErrorsOverGRPC checks over a real gRPC connection the errors no HTTP test reaches: a
// request that does not decode, in a unary call and in a stream, is INVALID_ARGUMENT
// (grpc-go says INTERNAL), and a full disk is RESOURCE_EXHAUSTED with retry advice; each
// carries its ErrorInfo reason.
func TestErrorsOverGRPC(t *testing.T) {
	t.Parallel()
	st, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lb, err := startLoopback(ctx, fullDisk{st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	client := recommenderv1.NewRecommenderServiceClient(lb.Conn)

	// Field 1 of RecommendRequest is the query string: these bytes are not UTF-8.
	badUTF8 := &wrapperspb.BytesValue{Value: []byte{0xff, 0xfe, 0xfd}}
	err = lb.Conn.Invoke(ctx, recommenderv1.RecommenderService_Recommend_FullMethodName, badUTF8, &recommenderv1.RecommendResponse{})
	wantReason(t, err, codes.InvalidArgument, apierr.MalformedRequest, "unary request with invalid UTF-8")

	stream, err := lb.Conn.NewStream(ctx, &recommenderv1.RecommenderService_ServiceDesc.Streams[0], recommenderv1.RecommenderService_IngestPapers_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	// Field 1 of IngestPapersRequest holds papers, whose field 1 is the id string: one paper
	// with an id that is not UTF-8.
	if err := stream.SendMsg(&wrapperspb.BytesValue{Value: []byte{0x0a, 0x02, 0xff, 0xfe}}); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	err = stream.RecvMsg(&recommenderv1.IngestPapersResponse{})
	wantReason(t, err, codes.InvalidArgument, apierr.MalformedRequest, "stream message that does not decode")

	_, err = client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "p-1", Title: "T"}}})
	wantReason(t, err, codes.ResourceExhausted, apierr.StorageFull, "upsert onto a full disk")
	if retry := testutil.Detail[*errdetails.RetryInfo](err); retry.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("full disk without retry advice: %v", status.Convert(err).Details())
	}

	_, err = client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: "nope"})
	wantReason(t, err, codes.NotFound, apierr.PaperNotFound, "unknown paper")
	if res := testutil.Detail[*errdetails.ResourceInfo](err); res.GetResourceType() != "recommender.v1.Paper" || res.GetResourceName() != "nope" {
		t.Fatalf("NOT_FOUND without the paper's ResourceInfo: %v", status.Convert(err).Details())
	}
}

func wantReason(t *testing.T, err error, code codes.Code, reason, what string) {
	t.Helper()
	if status.Code(err) != code || server.Reason(err) != reason {
		t.Fatalf("%s: %v (reason %q), want %v with reason %s", what, err, server.Reason(err), code, reason)
	}
	if info := testutil.Detail[*errdetails.ErrorInfo](err); info.GetDomain() != apierr.Domain {
		t.Fatalf("%s: ErrorInfo domain %q", what, info.GetDomain())
	}
}
