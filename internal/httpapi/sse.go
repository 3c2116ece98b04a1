package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/server"
)

// feedEvents serves StreamFeed as Server-Sent Events: GET /v1/feeds/{feed_id}/events, with
// ?cursor= or ?since= as in StreamFeedRequest. Each event's id is its cursor, so a browser's
// EventSource resumes where it stopped by itself (it sends Last-Event-ID when it reconnects).
// Papers come as "paper" events, heartbeats as "heartbeat", a failure after the stream started
// as an "error" event with the error's JSON; the data is the StreamFeedResponse in protobuf JSON.
type feedEvents struct {
	svc         recommenderv1.RecommenderServiceServer
	interceptor grpc.UnaryServerInterceptor
}

func (h *feedEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &recommenderv1.StreamFeedRequest{FeedId: r.PathValue("feed_id"), Cursor: q.Get("cursor"), Since: q.Get("since")}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		req.Cursor = id
	}
	flusher, _ := w.(http.Flusher)
	s := &sseStream{w: w, flush: flusher}
	// The unary interceptor authenticates (a read key), rate-limits and logs the whole stream
	// as one call.
	info := &grpc.UnaryServerInfo{Server: h.svc, FullMethod: recommenderv1.RecommenderService_StreamFeed_FullMethodName}
	_, err := h.interceptor(server.WithTransport(incomingContext(r), "http-sse"), req, info, func(ctx context.Context, req any) (any, error) {
		s.ctx = ctx
		return nil, h.svc.StreamFeed(req.(*recommenderv1.StreamFeedRequest), s)
	})
	if err == nil || r.Context().Err() != nil {
		return
	}
	if !s.started {
		writeError(w, err)
		return
	}
	b, _ := protojson.Marshal(status.Convert(err).Proto())
	s.write("error", "", b)
}

// sseStream is the server side of StreamFeed writing Server-Sent Events.
type sseStream struct {
	ctx     context.Context
	w       http.ResponseWriter
	flush   http.Flusher
	started bool
}

func (s *sseStream) Send(ev *recommenderv1.StreamFeedResponse) error {
	b, err := protojson.Marshal(ev)
	if err != nil {
		return err
	}
	kind := "paper"
	if ev.GetPaper() == nil {
		kind = "heartbeat"
	}
	return s.write(kind, ev.GetCursor(), b)
}

func (s *sseStream) write(event, id string, data []byte) error {
	if !s.started {
		s.w.Header().Set("Content-Type", "text/event-stream")
		s.w.Header().Set("Cache-Control", "no-cache")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "event: %s\n", event)
	if id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	fmt.Fprintf(&b, "data: %s\n\n", data) // protobuf JSON has no newline
	if _, err := s.w.Write([]byte(b.String())); err != nil {
		return err
	}
	if s.flush != nil {
		s.flush.Flush()
	}
	return nil
}

func (s *sseStream) Context() context.Context     { return s.ctx }
func (s *sseStream) SetHeader(metadata.MD) error  { return nil }
func (s *sseStream) SendHeader(metadata.MD) error { return nil }
func (s *sseStream) SetTrailer(metadata.MD)       {}
func (s *sseStream) SendMsg(m any) error          { return s.Send(m.(*recommenderv1.StreamFeedResponse)) }
func (s *sseStream) RecvMsg(any) error            { return nil }
