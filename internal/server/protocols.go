package server

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paperrec/recommender/internal/apierr"
)

// HTTPHandler serves every service of the gRPC server (recommender, health, reflection) to
// HTTP clients in the Connect protocol, gRPC-Web and gRPC. It is Vanguard's transcoder in front
// of the grpc.Server itself, not a second implementation: each call enters through the same
// interceptors (keys, rate limits, logging, metrics, error mapping) and stats handler (tracing)
// as a call on the gRPC port. gRPC clients need HTTP/2 (h2c on a plaintext port).
//
// Vanguard buffers and decompresses a message before the server's own limit applies to it, so
// both are bounded here by the gRPC limit: a message larger, compressed or not, is refused with
// RESOURCE_EXHAUSTED (BODY_TOO_LARGE) once that many bytes are in.
func (s *Server) HTTPHandler() (http.Handler, error) {
	limit := s.cfg.MaxRecvMsgBytes
	return vanguardgrpc.NewTranscoder(s.grpc,
		vanguard.WithDefaultServiceOptions(vanguard.WithMaxMessageBufferBytes(uint32(limit))),
		vanguard.WithCompression("gzip",
			func() connect.Compressor { return gzip.NewWriter(io.Discard) },
			func() connect.Decompressor { return &boundedGunzip{limit: int64(limit)} }))
}

// BodyTooLarge is the error of a request body or message over limit bytes, compressed or not.
func BodyTooLarge(limit int64) error {
	return NewStatus(codes.ResourceExhausted, apierr.BodyTooLarge,
		fmt.Sprintf("request larger than %d bytes (decompressed, if it was compressed)", limit),
		map[string]string{"limit_bytes": strconv.FormatInt(limit, 10)})
}

// boundedGunzip decompresses gzip and fails once more than limit bytes came out: a few KB of
// gzip can hold gigabytes of zeros.
type boundedGunzip struct {
	zr       gzip.Reader
	n, limit int64
}

func (d *boundedGunzip) Reset(r io.Reader) error {
	d.n = 0
	return d.zr.Reset(r)
}

func (d *boundedGunzip) Read(p []byte) (int, error) {
	n, err := d.zr.Read(p)
	if d.n += int64(n); d.n > d.limit {
		return n, ConnectError(BodyTooLarge(d.limit))
	}
	return n, err
}

func (d *boundedGunzip) Close() error { return d.zr.Close() }

// ConnectError is a status error as Connect's error type, its details kept, for writing in the
// protocol of a call that has not reached the gRPC server.
func ConnectError(err error) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	st := status.Convert(err)
	ce = connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
	for _, d := range st.Proto().GetDetails() {
		m, err := d.UnmarshalNew()
		if err != nil {
			continue
		}
		if detail, err := connect.NewErrorDetail(m); err == nil {
			ce.AddDetail(detail)
		}
	}
	return ce
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
