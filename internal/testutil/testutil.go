package testutil

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store/embedded"
)

// Server is a recommender served over real gRPC on 127.0.0.1.
type Server struct {
	Client recommenderv1.RecommenderServiceClient
	Conn   *grpc.ClientConn
	Addr   string
}

// Options adjusts StartServerWith.
type Options struct {
	Embedder embed.Embedder // nil: lexical only
	Dir      string         // data directory; empty: a fresh temporary one
}

// StartServer serves a fresh embedded store from a temporary directory on 127.0.0.1:0 until the
// test ends.
func StartServer(tb testing.TB) *Server { return StartServerWith(tb, Options{}) }

// StartServerWith is StartServer with options.
func StartServerWith(tb testing.TB, o Options) *Server {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	st, err := embedded.Open(ctx, embedded.Options{Dir: o.Dir})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := server.NewService(ctx, st, o.Embedder)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.Listen(cfg, svc, log)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
		if err := st.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return &Server{Client: recommenderv1.NewRecommenderServiceClient(conn), Conn: conn, Addr: srv.Addr().String()}
}

// SharedDir returns the shared data directory: $RECOMMENDER_SHARED_DIR, or ../shared beside the
// repository root. The test is skipped, saying how to provide it, when it is missing.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("RECOMMENDER_SHARED_DIR")
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, "..", "shared")
	}
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("shared data not found at %s (set RECOMMENDER_SHARED_DIR to the folder holding data/ and eval/)", dir)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// ReadPapers reads every paper of a JSON-lines file (plain or gzip), failing on malformed lines.
func ReadPapers(tb testing.TB, path string) []*recommenderv1.Paper {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, err := arxiv.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*recommenderv1.Paper
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, p)
	}
}

// Ingest streams papers through IngestPapers in batches of 500 and returns the summary.
func Ingest(tb testing.TB, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper) *recommenderv1.IngestPapersResponse {
	tb.Helper()
	stream, err := c.IngestPapers(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(papers); i += 500 {
		if err := stream.Send(&recommenderv1.IngestPapersRequest{Papers: papers[i:min(i+500, len(papers))]}); err != nil {
			tb.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}
