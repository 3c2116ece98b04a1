package main

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// collector is an OTLP trace collector on loopback that remembers span names.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []string
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestTracingExportsSpans: with OTEL_EXPORTER_OTLP_ENDPOINT set, RPCs over gRPC and calls over
// HTTP are traced and the spans reach the collector, flushed at shutdown.
func TestTracingExportsSpans(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, col)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	p := startServeEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + lis.Addr().String(), "OTEL_EXPORTER_OTLP_INSECURE=true"}, t.TempDir(), "--demo")
	if _, err := p.client.Recommend(context.Background(), &recommenderv1.RecommendRequest{Query: "speech"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+p.httpAddr+"/v1/GetIndexInfo", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_ = p.conn.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	col.mu.Lock()
	defer col.mu.Unlock()
	if !slices.Contains(col.spans, "recommender.v1.RecommenderService/Recommend") || !slices.Contains(col.spans, "POST /v1/GetIndexInfo") {
		t.Fatalf("spans received: %v", col.spans)
	}
}
