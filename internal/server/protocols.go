package server

import (
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
