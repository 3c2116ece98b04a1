package httpapi

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/server"
)

// rpcCalls guards the gRPC paths served in the Connect, gRPC-Web and gRPC protocols: each call
// is admitted (key, scope, rate) before any of its body is read, and a call whose request is one
// message has that message read here within the limit (decompressed within it too, for
// Connect's Content-Encoding), before Vanguard, which would buffer and decompress it whole.
// Client streams (IngestPapers) are left to Vanguard's and gRPC's limit per message.
type rpcCalls struct {
	next    http.Handler
	gate    Gate
	maxBody int64
}

// envelopeSlack is what the gRPC and gRPC-Web protocols add to a message: its 5-byte prefix.
const envelopeSlack = 5

// oneMessage holds the methods whose request is a single message.
var oneMessage = func() map[string]bool {
	desc := recommenderv1.RecommenderService_ServiceDesc
	m := map[string]bool{healthpb.Health_Check_FullMethodName: true, healthpb.Health_Watch_FullMethodName: true}
	for _, u := range desc.Methods {
		m["/"+desc.ServiceName+"/"+u.MethodName] = true
	}
	for _, st := range desc.Streams {
		if !st.ClientStreams {
			m["/"+desc.ServiceName+"/"+st.StreamName] = true
		}
	}
	return m
}()

var rpcErrors = connect.NewErrorWriter()

func (c *rpcCalls) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := r.URL.Path
	if connectUnary(r) && r.Header.Get("Connect-Protocol-Version") == "" {
		// The Connect protocol lets clients leave the header out (its own curl examples do), but
		// Vanguard takes a JSON POST without it for REST and answers a bare 404.
		r.Header.Set("Connect-Protocol-Version", "1")
	}
	ctx := server.WithTransport(incomingContext(r), rpcTransport(r.Header.Get("Content-Type")))
	if c.gate != nil {
		var err error
		if ctx, err = c.gate.Admit(ctx, method); err != nil {
			writeRPCError(w, r, err)
			return
		}
	}
	if oneMessage[method] {
		if err := c.readMessage(w, r); err != nil {
			if c.gate != nil {
				err = c.gate.Refuse(ctx, method, err)
			}
			writeRPCError(w, r, err)
			return
		}
	}
	c.next.ServeHTTP(w, r.WithContext(ctx))
}

// readMessage replaces r's body by its one message read within the limit, decompressed when it
// came gzipped, with the encoding header that said so removed.
func (c *rpcCalls) readMessage(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var body []byte
	var err error
	decoded := "" // the encoding header of a body decompressed here
	switch {
	case connectUnary(r): // the body is the message
		gz := strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip")
		if body, err = readBody(w, r, c.maxBody, gz); gz {
			decoded = "Content-Encoding"
		}
	case strings.HasPrefix(mt, "application/grpc-web-text"): // base64 of an envelope, left to Vanguard
		body, err = readBody(w, r, (c.maxBody+envelopeSlack)*4/3+4, false)
	default: // one enveloped message
		header := "Grpc-Encoding"
		if strings.HasPrefix(mt, "application/connect+") {
			header = "Connect-Content-Encoding"
		}
		var gunzipped bool
		if body, gunzipped, err = readEnvelope(w, r, c.maxBody, strings.ToLower(r.Header.Get(header))); gunzipped {
			decoded = header
		}
	}
	if err != nil {
		return err
	}
	if strings.HasSuffix(mt, "json") {
		msg := body
		if !connectUnary(r) && len(body) >= envelopeSlack {
			msg = body[envelopeSlack:]
		}
		if err := server.PrescanJSON(msg, r.URL.Path); err != nil {
			return err
		}
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	if decoded != "" {
		r.Header.Del(decoded)
	}
	return nil
}

// connectUnary reports whether r is a unary call in the Connect protocol: its body is the
// message itself, compressed by Content-Encoding.
func connectUnary(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json" || mt == "application/proto"
}

// bodyErrorStatus is the HTTP status of a readBody error: 413 for a body too large (sending it
// again will not help, unlike after a 429), else the code's.
func bodyErrorStatus(err error) int {
	if server.Reason(err) == apierr.BodyTooLarge {
		return http.StatusRequestEntityTooLarge
	}
	return HTTPStatus(status.Code(err))
}

// writeRPCError answers a call refused before Vanguard in the call's own protocol, with the
// error's details; a Connect unary call refused for its size gets HTTP 413.
func writeRPCError(w http.ResponseWriter, r *http.Request, err error) {
	if connectUnary(r) && server.Reason(err) == apierr.BodyTooLarge {
		w = statusOverride{ResponseWriter: w, status: http.StatusRequestEntityTooLarge}
	}
	_ = rpcErrors.Write(w, r, server.ConnectError(err))
}

// statusOverride writes its own HTTP status in place of the one asked for.
type statusOverride struct {
	http.ResponseWriter
	status int
}

func (s statusOverride) WriteHeader(int) { s.ResponseWriter.WriteHeader(s.status) }
