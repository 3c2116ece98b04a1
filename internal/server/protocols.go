package server

import (
	"context"
	"net/http"

	"connectrpc.com/vanguard/vanguardgrpc"
)

// HTTPHandler serves every service of the gRPC server (recommender, health, reflection) to
// HTTP clients in the Connect protocol, gRPC-Web and gRPC. It is Vanguard's transcoder in front
// of the grpc.Server itself, not a second implementation: each call enters through the same
// interceptors (keys, rate limits, logging, metrics, error mapping) and stats handler (tracing)
// as a call on the gRPC port. gRPC clients need HTTP/2 (h2c on a plaintext port).
func (s *Server) HTTPHandler() (http.Handler, error) {
	return vanguardgrpc.NewTranscoder(s.grpc)
}

type transportKey struct{}

// WithTransport tags a call's context with the transport it came by, for metrics and logs; the
// HTTP API sets it, and calls without it came by the gRPC port.
func WithTransport(ctx context.Context, transport string) context.Context {
	return context.WithValue(ctx, transportKey{}, transport)
}

// TransportOf is the transport WithTransport set, else "grpc".
func TransportOf(ctx context.Context) string {
	if t, ok := ctx.Value(transportKey{}).(string); ok {
		return t
	}
	return "grpc"
}
