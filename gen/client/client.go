// Package client is a typed Go client of the paper recommender for other services: one call
// to Dial gives the generated RecommenderService client with API key, TLS, a default deadline
// and retries of UNAVAILABLE and RESOURCE_EXHAUSTED (as the server advises) set up.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// Options configure a Client. The zero value is a plaintext client without a key, with the
// default retry policy and no default deadline.
type Options struct {
	// APIKey is sent with every call as "authorization: Bearer <key>".
	APIKey string
	// TLS, when set, connects with TLS (add a client certificate for mutual TLS); nil is
	// plaintext, for a server on loopback or behind a sidecar.
	TLS *tls.Config
	// Timeout is the deadline of a unary call made without one; 0: none. Retries happen
	// within it.
	Timeout time.Duration
	// Retry is the policy for UNAVAILABLE and RESOURCE_EXHAUSTED; the zero value is
	// DefaultRetry, and MaxAttempts 1 turns retries off.
	Retry RetryPolicy
	// DialOptions are added to the client's own.
	DialOptions []grpc.DialOption
}

// RetryPolicy retries unary calls that failed with UNAVAILABLE (the server or its store is
// restarting, say), or with RESOURCE_EXHAUSTED when the server says when to come back (a
// google.rpc.RetryInfo: rate limits, an overloaded store). Every unary method of the service is
// idempotent, so a retry is safe even when the first attempt took effect. The wait is an
// exponential backoff with jitter, or the server's RetryInfo delay when it is longer; a retry
// that would end past the call's deadline is not made.
type RetryPolicy struct {
	MaxAttempts    int           // attempts in all, the first included; default 4
	InitialBackoff time.Duration // default 100ms
	MaxBackoff     time.Duration // default 5s
}

// DefaultRetry is the policy of a zero Options.Retry.
var DefaultRetry = RetryPolicy{MaxAttempts: 4, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}

// Client is the generated client with its connection.
type Client struct {
	recommenderv1.RecommenderServiceClient
	conn *grpc.ClientConn
}

// Dial returns a client of the server at addr (host:port). The connection is made lazily, on
// the first call.
func Dial(addr string, o Options) (*Client, error) {
	if addr == "" {
		return nil, errors.New("recommender client: empty address")
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(deadline(o.Timeout), retry(o.Retry.orDefault()))}
	if o.APIKey != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(o.APIKey)))
	}
	conn, err := grpc.NewClient(addr, append(opts, o.DialOptions...)...)
	if err != nil {
		return nil, err
	}
	return &Client{RecommenderServiceClient: recommenderv1.NewRecommenderServiceClient(conn), conn: conn}, nil
}

// Conn is the underlying connection, e.g. for the health service.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (p RetryPolicy) orDefault() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetry.MaxAttempts
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = DefaultRetry.InitialBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultRetry.MaxBackoff
	}
	return p
}

// deadline gives a call without a deadline the default one.
func deadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// retry applies the policy (see RetryPolicy).
func retry(p RetryPolicy) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		backoff := p.InitialBackoff
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			wait, ok := retryAfter(err, backoff)
			if !ok || attempt >= p.MaxAttempts {
				return err
			}
			if d, has := ctx.Deadline(); has && time.Until(d) < wait {
				return err // the retry could not finish in time
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			}
			backoff = min(2*backoff, p.MaxBackoff)
		}
	}
}

// retryAfter says whether err is worth retrying, and after how long: the server's RetryInfo
// delay, or the backoff with ±20% jitter when that is longer or absent.
func retryAfter(err error, backoff time.Duration) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return 0, false
	}
	var advised time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			advised = ri.GetRetryDelay().AsDuration()
		}
	}
	switch {
	case st.Code() == codes.Unavailable:
	case st.Code() == codes.ResourceExhausted && advised > 0:
	default:
		return 0, false
	}
	jittered := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
	return max(advised, jittered), true
}

// bearer sends the API key. RequireTransportSecurity is false so a key can reach a server on
// loopback without TLS; the server refuses to serve keyless on a reachable address.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return false }
