package testutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

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
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	st, err := embedded.Open(context.Background(), embedded.Options{Dir: o.Dir})
	if err != nil {
		tb.Fatal(err)
	}
	lb, err := server.StartLoopback(context.Background(), st, o.Embedder)
	if err != nil {
		_ = st.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := lb.Close(); err != nil {
			tb.Errorf("stop server: %v", err)
		}
		if err := st.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return &Server{Client: recommenderv1.NewRecommenderServiceClient(lb.Conn), Conn: lb.Conn, Addr: lb.Addr}
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
	papers, err := arxiv.ReadAll(f)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return papers
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

// Detail returns the first detail of type T (e.g. *errdetails.RetryInfo) in err's status, or
// the zero T.
func Detail[T any](err error) T {
	for _, d := range status.Convert(err).Details() {
		if t, ok := d.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// ReadFile reads a file the test needs, failing the test when it cannot.
func ReadFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
