package httpapi

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/server"
)

// Config configures the HTTP API.
type Config struct {
	// CORSOrigins may call the API from a browser ("https://app.example.com"); none by default.
	CORSOrigins []string
	// MaxBodyBytes bounds a request body, like the gRPC message limit.
	MaxBodyBytes int64
	// LoopbackHostsOnly answers only requests whose Host is a loopback name (localhost,
	// 127.0.0.0/8, ::1). A server without API keys sets it: any web page can make a browser
	// send requests to a name it controls that resolves to 127.0.0.1 (DNS rebinding), and the
	// Host header is what gives those away.
	LoopbackHostsOnly bool
	// RPC, when set, serves the services at their gRPC paths (/recommender.v1.RecommenderService/
	// <Method>, /grpc.health.v1.Health/Check) in the protocols generated clients speak:
	// Connect, gRPC-Web and gRPC (see server.Server.HTTPHandler).
	RPC http.Handler
	// Gate, when set, checks each call's key, scope and rate before its body is read, and logs
	// and counts the calls refused here (server.Server is one).
	Gate Gate
}

// Gate admits calls before their bodies are read.
type Gate interface {
	// Admit checks the call (its key, scope, rate) and returns the context to serve it with.
	Admit(ctx context.Context, method string) (context.Context, error)
	// Refuse logs and counts a call refused here, and returns its status error.
	Refuse(ctx context.Context, method string, err error) error
}

//go:embed web openapi.json
var assets embed.FS

// Handler serves:
//   - POST /v1/<Method> for every unary RPC of RecommenderService (Recommend, GetPaper,
//     UpsertPapers, DeletePapers, GetIndexInfo): the request message as protobuf JSON in, the
//     response as protobuf JSON out, through the same interceptor chain as gRPC (auth with
//     "Authorization: Bearer <key>", rate limits, logging, metrics, error mapping);
//   - GET /openapi.json, the API's OpenAPI description, generated from the .proto;
//   - GET / and its assets, the page.
//
// IngestPapers streams and is served over gRPC only.
func Handler(svc recommenderv1.RecommenderServiceServer, interceptor grpc.UnaryServerInterceptor, cfg Config) http.Handler {
	mux := http.NewServeMux()
	desc := recommenderv1.RecommenderService_ServiceDesc
	methods := map[string]*method{}
	for _, m := range desc.Methods {
		methods[m.MethodName] = &method{svc: svc, desc: m, full: "/" + desc.ServiceName + "/" + m.MethodName,
			interceptor: interceptor, maxBody: cfg.MaxBodyBytes, gate: cfg.Gate}
	}
	origins := allowList(cfg.CORSOrigins)
	// guarded calls next only for what refuseCrossSite lets through.
	guarded := func(accept contentType, next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if httpStatus, err := refuseCrossSite(r, origins, accept); err != nil {
				writeErrorStatus(w, httpStatus, err)
				return
			}
			next(w, r)
		}
	}
	mux.HandleFunc("POST /v1/{method}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := methods[r.PathValue("method")]
		if !ok {
			writeError(w, server.NewStatus(codes.NotFound, apierr.MethodNotFound,
				fmt.Sprintf("no unary method %q: POST /v1/<Method>, see /openapi.json", r.PathValue("method")), nil))
			return
		}
		guarded(jsonContentType, m.ServeHTTP)(w, r)
	})
	mux.Handle("GET /v1/feeds/{feed_id}/events", guarded(jsonContentType, (&feedEvents{svc: svc, interceptor: interceptor}).ServeHTTP))
	if cfg.RPC != nil {
		rpc := guarded(rpcContentType, (&rpcCalls{next: cfg.RPC, gate: cfg.Gate, maxBody: cfg.MaxBodyBytes}).ServeHTTP)
		for _, service := range []string{desc.ServiceName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
			mux.Handle("POST /"+service+"/", rpc) // every protocol calls with POST
		}
	}
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		b, _ := assets.ReadFile("openapi.json")
		_, _ = w.Write(b)
	})
	web, _ := fs.Sub(assets, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	var h http.Handler = cors(origins, securityHeaders(mux))
	if cfg.LoopbackHostsOnly {
		h = LoopbackHostsOnly(h)
	}
	return h
}

func allowList(origins []string) map[string]bool {
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[strings.TrimRight(o, "/")] = true
	}
	return allowed
}

// contentType is an accepted media type and the error that lists them.
type contentType struct {
	ok   func(mediaType string) bool
	want string
}

var (
	jsonContentType = contentType{func(mt string) bool { return mt == "application/json" },
		"send the request message as application/json (curl: -H 'Content-Type: application/json')"}
	// rpcContentType is what the Connect, gRPC-Web and gRPC protocols send.
	rpcContentType = contentType{func(mt string) bool {
		return mt == "application/json" || mt == "application/proto" || strings.HasPrefix(mt, "application/connect+") ||
			strings.HasPrefix(mt, "application/grpc")
	}, "use a Connect, gRPC-Web or gRPC client (application/json or application/proto for Connect)"}
)

// refuseCrossSite refuses what a browser would send on behalf of another site's page without
// asking first: a body of a type the API does not take (text/plain and form types need no
// CORS preflight), and any call from a foreign origin that is not allowed (by its Origin
// header, or its Sec-Fetch-Site when a browser sends no Origin). Clients that are not browsers
// send no Origin and are unaffected.
func refuseCrossSite(r *http.Request, allowed map[string]bool, accept contentType) (int, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" || r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !accept.ok(mt) {
			return http.StatusUnsupportedMediaType, server.NewStatus(codes.InvalidArgument, apierr.UnsupportedContentType,
				fmt.Sprintf("Content-Type %q is not accepted: %s", ct, accept.want), nil)
		}
	}
	origin := r.Header.Get("Origin")
	switch {
	case origin != "" && !sameOrigin(origin, r.Host) && !allowed[origin]:
		return http.StatusForbidden, server.NewStatus(codes.PermissionDenied, apierr.CrossOriginRefused,
			fmt.Sprintf("calls from origin %q are refused: allow it with --cors-origins", origin), map[string]string{"origin": origin})
	case origin == "" && (r.Header.Get("Sec-Fetch-Site") == "cross-site" || r.Header.Get("Sec-Fetch-Site") == "same-site"):
		return http.StatusForbidden, server.NewStatus(codes.PermissionDenied, apierr.CrossOriginRefused, "calls from another site are refused", nil)
	}
	return 0, nil
}

// rpcTransport names the protocol of a call on the gRPC paths, by its content type.
func rpcTransport(contentType string) string {
	switch {
	case strings.HasPrefix(contentType, "application/grpc-web"):
		return "grpc-web"
	case strings.HasPrefix(contentType, "application/grpc"):
		return "grpc-http"
	}
	return "connect"
}

// sameOrigin reports whether a browser's Origin is the site the request was sent to.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// LoopbackHostsOnly refuses requests addressed to a name that is not a loopback one (see
// Config.LoopbackHostsOnly).
func LoopbackHostsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !server.IsLoopbackHost(host) {
			writeErrorStatus(w, http.StatusForbidden, server.NewStatus(codes.PermissionDenied, apierr.HostRefused, fmt.Sprintf(
				"host %q is not served: without API keys this server answers only at a loopback address such as 127.0.0.1 or localhost", r.Host), nil))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// method serves one unary RPC.
type method struct {
	svc         recommenderv1.RecommenderServiceServer
	desc        grpc.MethodDesc
	full        string
	interceptor grpc.UnaryServerInterceptor
	maxBody     int64
	gate        Gate
}

func (m *method) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := server.WithTransport(incomingContext(r), "http-json")
	if m.gate != nil {
		var err error
		if ctx, err = m.gate.Admit(ctx, m.full); err != nil {
			writeError(w, err)
			return
		}
	}
	body, err := readBody(w, r, m.maxBody, false)
	if err == nil {
		err = server.PrescanJSON(body, m.full)
	}
	if err != nil {
		if m.gate != nil {
			err = m.gate.Refuse(ctx, m.full, err)
		}
		writeErrorStatus(w, bodyErrorStatus(err), err)
		return
	}
	// dec is how generated handlers fill in the request message: here, from protobuf JSON.
	dec := func(v any) error {
		if len(body) == 0 {
			return nil // an empty body is the empty message
		}
		if err := (protojson.UnmarshalOptions{}).Unmarshal(body, v.(proto.Message)); err != nil {
			return server.NewStatus(codes.InvalidArgument, apierr.MalformedRequest, fmt.Sprintf("request body is not a valid %s in JSON: %v",
				strings.TrimPrefix(m.full, "/"), err), nil)
		}
		return nil
	}
	resp, err := m.desc.Handler(m.svc, ctx, dec, m.interceptor)
	if err != nil {
		writeError(w, err)
		return
	}
	b, err := protojson.Marshal(resp.(proto.Message))
	if err != nil {
		writeError(w, server.NewStatus(codes.Internal, apierr.Internal, "internal error", nil))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// incomingContext carries what the gRPC interceptors read: the authorization header as
// metadata, and the client's address for per-address rate limits.
func incomingContext(r *http.Request) context.Context {
	md := metadata.MD{}
	if a := r.Header.Get("Authorization"); a != "" {
		md.Set("authorization", a)
	}
	ctx := metadata.NewIncomingContext(r.Context(), md)
	if addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr})
	}
	return ctx
}

// errorBody is the JSON of an error: the gRPC code by name and number, the message, and the
// details (field violations, retry info) in protobuf JSON.
type errorBody struct {
	Code     string            `json:"code"`
	GRPCCode int               `json:"grpcCode"`
	Message  string            `json:"message"`
	Details  []json.RawMessage `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, err error) {
	writeErrorStatus(w, HTTPStatus(status.Code(err)), err)
}

// writeErrorStatus is writeError with an HTTP status more precise than the code's.
func writeErrorStatus(w http.ResponseWriter, httpStatus int, err error) {
	st := status.Convert(err)
	body := errorBody{Code: st.Code().String(), GRPCCode: int(st.Code()), Message: st.Message()}
	for _, d := range st.Proto().GetDetails() {
		if b, err := protojson.Marshal(d); err == nil {
			body.Details = append(body.Details, b)
		}
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := int(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(body)
}

// HTTPStatus maps gRPC codes to HTTP statuses as Google's API design guide (and grpc-gateway) do.
func HTTPStatus(c codes.Code) int {
	switch c {
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
	}
	return http.StatusInternalServerError
}

// securityHeaders keeps the page from being framed or sniffed.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
		next.ServeHTTP(w, r)
	})
}

// cors answers browsers' cross-origin checks for the allowed origins only.
func cors(allowed map[string]bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && allowed[origin] {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			// Connect and gRPC-Web clients send and read a few headers of their own.
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, "+
				"X-Grpc-Web, X-User-Agent, Grpc-Timeout")
			h.Set("Access-Control-Expose-Headers", "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin")
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Max-Age", strconv.Itoa(600))
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed[origin] {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
