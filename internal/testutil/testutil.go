package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
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
	srv, stop, err := startServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("stop server: %v", err)
		}
	})
	return srv
}

// startServer serves an embedded store in o.Dir until stop.
func startServer(o Options) (srv *Server, stop func() error, err error) {
	st, err := embedded.Open(context.Background(), embedded.Options{Dir: o.Dir})
	if err != nil {
		return nil, nil, err
	}
	a, err := app.New(context.Background(), st, o.Embedder)
	if err != nil {
		return nil, nil, errors.Join(err, st.Close())
	}
	lb, err := server.StartLoopback(a)
	if err != nil {
		return nil, nil, errors.Join(err, st.Close())
	}
	stop = func() error { return errors.Join(lb.Close(), st.Close()) }
	return &Server{Client: recommenderv1.NewRecommenderServiceClient(lb.Conn), Conn: lb.Conn, Addr: lb.Addr}, stop, nil
}

// SharedSample serves the shared arXiv sample, lexically, to the tests of a package that only
// read it: the first test that asks starts the server and ingests the sample, later ones reuse
// it, and the package's TestMain calls Close after the tests.
type SharedSample struct {
	once   sync.Once
	srv    *Server
	papers []*recommenderv1.Paper
	dir    string
	stop   func() error
	err    error
}

// Get returns the server and the papers it holds (skipping the test without ../shared). A test
// must not write to it.
func (s *SharedSample) Get(tb testing.TB) (*Server, []*recommenderv1.Paper) {
	tb.Helper()
	path := filepath.Join(SharedDir(tb), "data", "arxiv-cs-sample.jsonl.gz")
	s.once.Do(func() { s.err = s.start(path) })
	if s.err != nil {
		tb.Fatalf("shared sample server: %v", s.err)
	}
	return s.srv, s.papers
}

func (s *SharedSample) start(path string) error {
	var err error
	if s.papers, err = arxiv.ReadFile(path); err != nil {
		return err
	}
	if s.dir, err = os.MkdirTemp("", "shared-sample"); err != nil {
		return err
	}
	if s.srv, s.stop, err = startServer(Options{Dir: s.dir}); err != nil {
		return err
	}
	resp, err := IngestAll(s.srv.Client, s.papers)
	if err == nil && resp.GetInserted() != int64(len(s.papers)) {
		err = fmt.Errorf("ingested %d of %d papers: %v", resp.GetInserted(), len(s.papers), resp.GetRejections())
	}
	return err
}

// Close stops the server, if a test started it, and removes its data.
func (s *SharedSample) Close() error {
	var err error
	if s.stop != nil {
		err = s.stop()
	}
	if s.dir != "" {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	return err
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
	papers, err := arxiv.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return papers
}

// Ingest streams papers through IngestPapers in batches of 500 and returns the summary.
func Ingest(tb testing.TB, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper) *recommenderv1.IngestPapersResponse {
	tb.Helper()
	resp, err := IngestAll(c, papers)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// IngestAll is Ingest returning its error.
func IngestAll(c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper) (*recommenderv1.IngestPapersResponse, error) {
	stream, err := c.IngestPapers(context.Background())
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(papers); i += 500 {
		if err := stream.Send(&recommenderv1.IngestPapersRequest{Papers: papers[i:min(i+500, len(papers))]}); err != nil {
			return nil, err
		}
	}
	return stream.CloseAndRecv()
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
