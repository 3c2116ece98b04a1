package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	encproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/store"
)

// Config configures the gRPC server.
type Config struct {
	// Addr is the listen address, host:port; port 0 picks a free port.
	Addr string
	// Reflection registers the server reflection service, so grpcurl works without .proto files.
	Reflection bool
	// ShutdownTimeout bounds how long a graceful stop waits for in-flight RPCs.
	ShutdownTimeout time.Duration
	// MaxRecvMsgBytes bounds one request message; larger ones are refused with
	// RESOURCE_EXHAUSTED before they are read. `backfill` keeps its batches under 3 MiB.
	MaxRecvMsgBytes int
	// MaxConnectionAge closes each client connection after this long (the calls in flight
	// finish first), so clients reconnect and spread over replicas added since: a gRPC
	// connection otherwise stays on the pod it first reached. 0: never.
	MaxConnectionAge time.Duration

	// Gate admits each call before its message is read (auth.Gate: API keys, scopes, rate
	// limits); nil admits every call unnamed. Serving without authentication is allowed only on
	// a loopback address unless AllowUnauthenticated is set.
	Gate Gate
	// AllowUnauthenticated permits serving without keys on a non-loopback address.
	AllowUnauthenticated bool
	// MaxCallsPerCaller bounds each caller's unary calls in flight at once (0: unbounded):
	// with the rate, what keeps one key from taking every core from the others. Streams (a
	// backfill, open feeds) are not counted.
	MaxCallsPerCaller int
	// MaxConnsPerAddress bounds the connections open at once from one remote address (0:
	// unbounded); see LimitPerAddress.
	MaxConnsPerAddress int
	// TLS, when set, serves over TLS (with ClientAuth set, mutual TLS).
	TLS *tls.Config
	// Metrics records RPC counts and latencies (metrics.Metrics); nil records nothing.
	Metrics RPCObserver
	// ExtraOptions are added to the gRPC server's (the tracing stats handler, say).
	ExtraOptions []grpc.ServerOption
}

// Gate admits calls (auth.Gate).
type Gate interface {
	// Admit returns the caller's name, and for a call over its caller's rate how long until
	// the rate allows one (the call is held that long, then refused); or the refusal.
	Admit(ctx context.Context, method string) (caller string, overRate time.Duration, err error)
	// Authenticates reports whether callers must show a key.
	Authenticates() bool
}

// RPCObserver records each call's outcome and duration.
type RPCObserver interface {
	ObserveRPC(method, code, transport string, d time.Duration)
}

// DefaultConfig returns the defaults the CLI starts from.
func DefaultConfig() Config {
	return Config{
		Addr:               "127.0.0.1:50051",
		Reflection:         true,
		ShutdownTimeout:    20 * time.Second,
		MaxRecvMsgBytes:    4 << 20,
		MaxConnectionAge:   5 * time.Minute,
		MaxCallsPerCaller:  32,
		MaxConnsPerAddress: 256,
	}
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("grpc address %q: %w", c.Addr, err))
	}
	if c.MaxConnectionAge < 0 {
		errs = append(errs, errors.New("max connection age must be 0 (never) or positive"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown timeout must be positive"))
	}
	if c.MaxRecvMsgBytes < 1<<20 {
		errs = append(errs, errors.New("max receive message size must be at least 1 MiB"))
	}
	if host, _, err := net.SplitHostPort(c.Addr); err == nil && (c.Gate == nil || !c.Gate.Authenticates()) && !c.AllowUnauthenticated && !IsLoopbackHost(host) {
		errs = append(errs, fmt.Errorf("refusing to serve without API keys on %s, which other machines can reach: "+
			"configure keys, listen on 127.0.0.1, or allow it explicitly", c.Addr))
	}
	if c.MaxConnsPerAddress < 0 {
		errs = append(errs, fmt.Errorf("connections per address must be 0 (unbounded) or more, got %d", c.MaxConnsPerAddress))
	}
	if c.MaxCallsPerCaller < 0 {
		errs = append(errs, fmt.Errorf("calls in flight per caller must be 0 (unbounded) or more, got %d", c.MaxCallsPerCaller))
	}
	return errors.Join(errs...)
}

// IsLoopbackHost reports whether host (a name or an address, IPv6 with or without brackets)
// names this machine only: localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxConnectionIdle closes a client connection that has had no call for this long (clients
// reconnect when they next call): idle connections are not held forever.
const maxConnectionIdle = 5 * time.Minute

// admission marks a call's context once its key, scope and rate are checked, so each call is
// checked (and charged to its rate) once, before its message is read.
type admissionKey struct{}

type admission struct {
	method, caller string
	// overRate, when set, is how long until the caller's rate allows a call: the call is
	// refused RESOURCE_EXHAUSTED, once held (see holdOverRate).
	overRate time.Duration
}

// Admit checks a call's key, scope and rate limit before its message is read, for the HTTP
// transports (the gRPC port does it as its tap handle). A refusal is logged and counted like any
// call and returned as a status error; an admitted call's ctx carries the admission, and the
// interceptors do not check it again.
func (s *Server) Admit(ctx context.Context, method string) (context.Context, error) {
	start := time.Now()
	a, err := s.admit(ctx, method)
	if err == nil && a.overRate > 0 {
		err = s.holdOverRate(ctx, a)
	}
	if err != nil {
		return ctx, s.finish(ctx, method, a.caller, start, nil, err)
	}
	return context.WithValue(ctx, admissionKey{}, a), nil
}

// Refuse logs and counts a call that a transport refused before the service saw it (a body over
// the limit), and returns its status error.
func (s *Server) Refuse(ctx context.Context, method string, err error) error {
	a, _ := ctx.Value(admissionKey{}).(admission)
	return s.finish(ctx, method, a.caller, time.Now(), nil, err)
}

// admitted returns the caller of a call the tap handle or Admit let through, or checks it now;
// a call over its caller's rate is held, then refused.
func (s *Server) admitted(ctx context.Context, method string) (string, error) {
	a, ok := ctx.Value(admissionKey{}).(admission)
	if !ok || a.method != method {
		var err error
		if a, err = s.admit(ctx, method); err != nil {
			return a.caller, err
		}
	}
	if a.overRate > 0 {
		return a.caller, s.holdOverRate(ctx, a)
	}
	return a.caller, nil
}

// tapAdmit is the gRPC port's tap handle: it runs once a call's headers are in, before its first
// message is read, so a call without a valid key costs no message. It runs under the
// connection's lock, so a call over its rate is only marked here, and held and refused by the
// interceptor, in the call's own goroutine.
func (s *Server) tapAdmit(ctx context.Context, info *tap.Info) (context.Context, error) {
	start := time.Now()
	a, err := s.admit(ctx, info.FullMethodName)
	if err != nil {
		return ctx, s.finish(ctx, info.FullMethodName, a.caller, start, nil, err)
	}
	return context.WithValue(ctx, admissionKey{}, a), nil
}

// Holding refusals. A caller over its rate is refused, but not at once: the refusal waits what
// the rate says (at most maxHold), so a client sending as fast as it can gets its answers no
// faster than its rate, and its flood costs the server, and the other callers sharing its cores,
// next to nothing. A caller with maxHeld calls held is refused at once: holding is not a queue
// a client could fill.
const (
	maxHold = time.Second
	maxHeld = 64
)

// holdOverRate holds a call over its caller's rate, then returns its refusal.
func (s *Server) holdOverRate(ctx context.Context, a admission) error {
	n, _ := s.held.LoadOrStore(a.caller, new(atomic.Int32))
	count := n.(*atomic.Int32)
	if count.Add(1) <= maxHeld {
		t := time.NewTimer(min(a.overRate, maxHold))
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if count.Add(-1) == 0 {
		s.held.Delete(a.caller)
	}
	return NewStatus(codes.ResourceExhausted, apierr.RateLimited, "rate limit exceeded; retry later", nil,
		&errdetails.RetryInfo{RetryDelay: durationpb.New(a.overRate)})
}

// admit checks a call with the gate: its caller, and whether it is over its rate.
func (s *Server) admit(ctx context.Context, method string) (admission, error) {
	a := admission{method: method}
	if s.cfg.Gate == nil {
		return a, nil
	}
	var err error
	a.caller, a.overRate, err = s.cfg.Gate.Admit(ctx, method)
	return a, err
}

// ServiceName is the name the health service reports for the recommender.
const ServiceName = "recommender.v1.RecommenderService"

// Server is a running gRPC server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	lis      net.Listener
	svc      *Service
	held     sync.Map // caller -> *atomic.Int32: its calls held before their refusal (holdOverRate)
	inFlight sync.Map // caller -> *atomic.Int32: its unary calls running (Config.MaxCallsPerCaller)
}

// Listen binds the listener and builds the gRPC server with the service registered.
func Listen(cfg Config, svc *Service, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	lis = LimitPerAddress(lis, cfg.MaxConnsPerAddress)
	s := &Server{cfg: cfg, log: log, lis: lis, health: health.NewServer(), svc: svc}
	opts := append([]grpc.ServerOption(nil), cfg.ExtraOptions...)
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(append(opts,
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.InTapHandle(s.tapAdmit),
		grpc.ForceServerCodecV2(wireCodec{encoding.GetCodecV2(encproto.Name)}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		// Explicit keepalive policy: grpc-go's default enforcement (5 min) closes connections of
		// clients that ping more often, which load balancers and some client libraries do.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// No MaxConnectionAgeGrace: a call in flight on an aged connection runs to its end (a
		// backfill stream can take many minutes); only new calls move to a new connection.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second,
			MaxConnectionAge: cfg.MaxConnectionAge, MaxConnectionIdle: maxConnectionIdle}),
		// A connection must say it speaks HTTP/2 soon: one that sends nothing is not held.
		grpc.ConnectionTimeout(10*time.Second),
	)...)
	registerService(s.grpc, svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if cfg.Reflection {
		reflection.Register(s.grpc)
	}
	s.setServing(svc.app.Ready())
	return s, nil
}

func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(ServiceName, st)
}

// UnaryInterceptor is the chain every unary RPC goes through (admission, panic recovery, error
// mapping, logging, metrics), for other transports of the same API (HTTP/JSON) to apply too.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor { return s.unaryInterceptor }

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// WatchStore polls a store that depends on a remote service and reports NOT_SERVING through
// the health service while it is unreachable or the service is not bound to it yet (see
// Service.AwaitBinding), SERVING once both hold, without a restart. Health is NOT_SERVING from
// the call until the first ping answers. It returns at once; the polling ends with ctx.
func (s *Server) WatchStore(ctx context.Context, hc store.HealthChecker, every time.Duration) {
	s.setServing(false)
	go func() {
		serving := false
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			pctx, cancel := context.WithTimeout(ctx, every)
			err := hc.Ping(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			ready := s.svc.app.Ready()
			if ok := err == nil && ready; ok != serving {
				serving = ok
				s.setServing(ok)
				switch {
				case ok:
					s.log.Info("store reachable and bound: health is SERVING")
				case err != nil:
					s.log.Warn("store unreachable: health is NOT_SERVING", "error", err)
				default:
					s.log.Warn("store reachable, not bound to the model yet: health is NOT_SERVING")
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Serve serves until ctx is done, then shuts down gracefully: health turns NOT_SERVING so load
// balancers stop routing here, in-flight RPCs finish, and after ShutdownTimeout the rest are cut.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.health.Shutdown()
	s.svc.app.Stop()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("graceful shutdown timed out; cutting remaining RPCs", "timeout", s.cfg.ShutdownTimeout)
		s.grpc.Stop()
		<-stopped
	}
	return nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	var caller string
	defer func() { err = s.finish(ctx, info.FullMethod, caller, start, recover(), err) }()
	if caller, err = s.admitted(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	if caller != "" && s.cfg.MaxCallsPerCaller > 0 {
		n, _ := s.inFlight.LoadOrStore(caller, new(atomic.Int32))
		count := n.(*atomic.Int32)
		defer func() {
			if count.Add(-1) == 0 {
				s.inFlight.Delete(caller) // callers by address come and go
			}
		}()
		if count.Add(1) > int32(s.cfg.MaxCallsPerCaller) {
			return nil, NewStatus(codes.ResourceExhausted, apierr.RateLimited,
				fmt.Sprintf("%d calls of this caller in flight already, the limit; retry once one ends", s.cfg.MaxCallsPerCaller), nil,
				&errdetails.RetryInfo{RetryDelay: durationpb.New(50 * time.Millisecond)})
		}
	}
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	var caller string
	defer func() { err = s.finish(ss.Context(), info.FullMethod, caller, start, recover(), err) }()
	if caller, err = s.admitted(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, wireStream{ss})
}

// finish turns a panic into INTERNAL (the process keeps serving), maps the error to a status
// and logs one line per RPC. Request contents are never logged: abstracts are large and queries
// may be private.
func (s *Server) finish(ctx context.Context, method, caller string, start time.Time, panicked any, err error) error {
	if panicked != nil {
		s.log.ErrorContext(ctx, "panic in handler", "method", method, "panic", fmt.Sprint(panicked), "stack", string(debug.Stack()))
		err = NewStatus(codes.Internal, apierr.Internal, "internal error", nil)
	}
	err = toStatus(s.log, method, err)
	code := status.Code(err)
	level := slog.LevelInfo
	if code == codes.Internal || code == codes.Unknown || code == codes.DataLoss {
		level = slog.LevelError
	}
	d := time.Since(start)
	transport := TransportOf(ctx)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.ObserveRPC(method, code.String(), transport, d)
	}
	s.log.Log(ctx, level, "rpc", "method", method, "code", code.String(), "duration", d, "caller", caller, "transport", transport)
	return err
}
