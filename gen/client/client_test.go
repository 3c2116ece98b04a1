package client_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paperrec/recommender/gen/client"
	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// fake is a RecommenderService on loopback that fails the first calls with the errors queued,
// then answers, and records what each call carried.
type fake struct {
	recommenderv1.UnimplementedRecommenderServiceServer
	mu        sync.Mutex
	failures  []error
	arrivals  []time.Time
	keys      []string
	deadlines []bool
}

func (f *fake) GetIndexInfo(ctx context.Context, _ *recommenderv1.GetIndexInfoRequest) (*recommenderv1.GetIndexInfoResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrivals = append(f.arrivals, time.Now())
	md, _ := metadata.FromIncomingContext(ctx)
	f.keys = append(f.keys, first(md.Get("authorization")))
	_, has := ctx.Deadline()
	f.deadlines = append(f.deadlines, has)
	if len(f.failures) > 0 {
		err := f.failures[0]
		f.failures = f.failures[1:]
		return nil, err
	}
	return &recommenderv1.GetIndexInfoResponse{PaperCount: 48, StoreBackend: "embedded"}, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// startFake serves f on loopback and returns its address and how to stop it.
func startFake(f *fake) (string, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s := grpc.NewServer()
	recommenderv1.RegisterRecommenderServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	return lis.Addr().String(), s.Stop
}

// serve is startFake for a test.
func serve(t *testing.T, f *fake) string {
	addr, stop := startFake(f)
	t.Cleanup(stop)
	return addr
}

func withRetryInfo(code codes.Code, delay time.Duration) error {
	st, _ := status.New(code, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	return st.Err()
}

func TestRetries(t *testing.T) {
	fast := client.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	for _, tc := range []struct {
		name     string
		failures []error
		policy   client.RetryPolicy
		wantCode codes.Code
		attempts int
	}{
		{"unavailable twice, then an answer", []error{status.Error(codes.Unavailable, "restarting"), status.Error(codes.Unavailable, "restarting")}, fast, codes.OK, 3},
		{"unavailable past the attempts", []error{status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down")}, fast, codes.Unavailable, 4},
		{"rate limited with advice", []error{withRetryInfo(codes.ResourceExhausted, 5*time.Millisecond)}, fast, codes.OK, 2},
		{"resource exhausted without advice", []error{status.Error(codes.ResourceExhausted, "too large")}, fast, codes.ResourceExhausted, 1},
		{"invalid argument", []error{status.Error(codes.InvalidArgument, "bad")}, fast, codes.InvalidArgument, 1},
		{"retries off", []error{status.Error(codes.Unavailable, "down")}, client.RetryPolicy{MaxAttempts: 1}, codes.Unavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{failures: tc.failures}
			c, err := client.Dial(serve(t, f), client.Options{Retry: tc.policy})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
			if status.Code(err) != tc.wantCode || len(f.arrivals) != tc.attempts {
				t.Fatalf("%v after %d attempts, want %v after %d", err, len(f.arrivals), tc.wantCode, tc.attempts)
			}
		})
	}
}

// TestRetryWaitsAsAdvised: the retry comes no sooner than the server's RetryInfo says, even
// when the backoff is shorter.
func TestRetryWaitsAsAdvised(t *testing.T) {
	const advised = 200 * time.Millisecond
	f := &fake{failures: []error{withRetryInfo(codes.ResourceExhausted, advised)}}
	c, err := client.Dial(serve(t, f), client.Options{Retry: client.RetryPolicy{InitialBackoff: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(f.arrivals) != 2 || f.arrivals[1].Sub(f.arrivals[0]) < advised {
		t.Fatalf("arrivals %v: want the retry at least %v after the first call", f.arrivals, advised)
	}
}

// TestNoRetryPastTheDeadline: a retry that cannot finish before the call's deadline is not
// made; the caller gets the server's error, not DEADLINE_EXCEEDED.
func TestNoRetryPastTheDeadline(t *testing.T) {
	f := &fake{failures: []error{withRetryInfo(codes.ResourceExhausted, time.Hour)}}
	c, err := client.Dial(serve(t, f), client.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
	if status.Code(err) != codes.ResourceExhausted || len(f.arrivals) != 1 {
		t.Fatalf("%v after %d attempts, want RESOURCE_EXHAUSTED at once", err, len(f.arrivals))
	}
}

// TestKeyAndDeadline: the API key travels with each call, and a call without a deadline gets
// the default one while one with its own keeps it.
func TestKeyAndDeadline(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	c, err := client.Dial(addr, client.Options{APIKey: "read-key", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	bare, err := client.Dial(addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	if f.keys[0] != "Bearer read-key" || !f.deadlines[0] || f.keys[1] != "" || f.deadlines[1] {
		t.Fatalf("keys %q, deadlines %v", f.keys, f.deadlines)
	}
	if _, err := client.Dial("", client.Options{}); err == nil {
		t.Fatal("an empty address was accepted")
	}
}
