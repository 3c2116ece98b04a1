package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/paperrec/recommender/gen/client"
	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/reembed"
	"github.com/paperrec/recommender/internal/testutil"
)

// The reliability tests of the README: each runs the real binary and talks to it over gRPC on
// loopback.

const (
	writeKey = "write-key-0123456789abcdef"
	readKey  = "read-key-0123456789abcdef0"
	readKey2 = "read-key-2-0123456789abcdef"
)

var keysEnv = "RECOMMENDER_API_KEYS=write:" + writeKey + ",read:" + readKey + ",read:" + readKey2

// clientWithKey connects to addr sending key ("" sends none).
func clientWithKey(t testing.TB, addr, key string) (recommenderv1.RecommenderServiceClient, *grpc.ClientConn) {
	t.Helper()
	// One attempt: these tests look at each answer the server gives.
	c, err := client.Dial(addr, client.Options{APIKey: key, Retry: client.RetryPolicy{MaxAttempts: 1},
		DialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64 << 20))}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, c.Conn()
}

func wantStatus(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

var onePaper = &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "auth-1", Title: "Keys and scopes"}}}

// 1. No key, wrong key, a read key writing: the right codes; health still answers.
func TestAuthCodes(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, []string{keysEnv}, t.TempDir(), "--demo")
	ctx := context.Background()
	anon, anonConn := clientWithKey(t, p.addr, "")
	_, err := anon.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech"})
	wantStatus(t, err, codes.Unauthenticated, "no key")
	wrong, _ := clientWithKey(t, p.addr, "wrong-key-0123456789abcdef")
	_, err = wrong.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	wantStatus(t, err, codes.Unauthenticated, "wrong key")
	reader, _ := clientWithKey(t, p.addr, readKey)
	if _, err := reader.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech"}); err != nil {
		t.Fatalf("read key reading: %v", err)
	}
	_, err = reader.UpsertPapers(ctx, onePaper)
	wantStatus(t, err, codes.PermissionDenied, "read key writing")
	stream, err := reader.IngestPapers(ctx)
	if err == nil {
		_, err = stream.CloseAndRecv()
	}
	wantStatus(t, err, codes.PermissionDenied, "read key ingesting")
	writer, _ := clientWithKey(t, p.addr, writeKey)
	if _, err := writer.UpsertPapers(ctx, onePaper); err != nil {
		t.Fatalf("write key writing: %v", err)
	}
	h, err := healthpb.NewHealthClient(anonConn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a key: %v, %v", h, err)
	}
	// The CLI sends RECOMMENDER_API_KEY.
	cmd := exec.Command(binary, "recommend", "--server", p.addr, "--query", "speech")
	cmd.Env = append(os.Environ(), "RECOMMENDER_API_KEY="+readKey)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "results (lexical)") {
		t.Fatalf("recommend with RECOMMENDER_API_KEY: %v\n%s", err, out)
	}
	if logs := p.logs(); strings.Contains(logs, writeKey) || strings.Contains(logs, readKey) {
		t.Fatal("a key appears in the server log")
	}
}

// Without keys the server refuses a reachable address unless told otherwise.
func TestNoKeysMeansLoopbackOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "serve", "--grpc-addr", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to serve without API keys") {
		t.Fatalf("keyless on 0.0.0.0: %v\n%s", err, out)
	}
	p := startServe(t, t.TempDir())
	if logs := p.logs(); !strings.Contains(logs, "no API keys configured") || !strings.Contains(logs, `auth="none: loopback only"`) {
		t.Fatalf("start-up does not say it runs without keys:\n%s", logs)
	}
	// Loopback only includes the HTTP API's host names: a page on a rebound name is refused,
	// --allow-unauthenticated or not, while the server listens on loopback.
	for _, q := range []*process{p, startServe(t, t.TempDir(), "--allow-unauthenticated")} {
		for host, want := range map[string]int{"evil.example": http.StatusForbidden, "localhost": http.StatusOK} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+q.httpAddr+"/v1/DeletePapers", strings.NewReader(`{"paperIds": ["x"]}`))
			req.Host = host
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", "http://"+host)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%v, Host %s: HTTP %d, want %d", q.cmd.Args[1:], host, resp.StatusCode, want)
			}
		}
	}
}

// 2. A client over its budget gets RESOURCE_EXHAUSTED with retry info; another key is unaffected.
func TestRateLimitPerKey(t *testing.T) {
	p := startServeEnv(t, []string{keysEnv}, t.TempDir(), "--demo", "--rate-limit", "2", "--rate-burst", "3")
	ctx := context.Background()
	greedy, _ := clientWithKey(t, p.addr, readKey)
	var limited error
	for i := 0; i < 20 && limited == nil; i++ {
		if _, err := greedy.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil {
			limited = err
		}
	}
	wantStatus(t, limited, codes.ResourceExhausted, "21st request within a second")
	if retry := testutil.Detail[*errdetails.RetryInfo](limited); retry.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("no retry delay in %v", status.Convert(limited).Details())
	}
	other, _ := clientWithKey(t, p.addr, readKey2)
	if _, err := other.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatalf("another key was limited too: %v", err)
	}
}

// A key's own rate in the keys file limits that key alone, with no server-wide rate; a key
// listed twice stops the server at start, naming the lines.
func TestRateLimitFromKeysFile(t *testing.T) {
	dir := t.TempDir()
	dup := filepath.Join(dir, "dup-keys")
	if err := os.WriteFile(dup, []byte("read "+readKey+"\nwrite "+readKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "serve", "--grpc-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--api-keys-file", dup).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line 2") || !strings.Contains(string(out), "already on line 1") || strings.Contains(string(out), readKey) {
		t.Fatalf("serve with a key listed twice: %v\n%s", err, out)
	}

	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("read "+readKey+" rate=0.01 burst=2\nread "+readKey2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, t.TempDir(), "--demo", "--api-keys-file", keys)
	ctx := context.Background()
	limited, _ := clientWithKey(t, p.addr, readKey)
	var errs []error
	for range 3 {
		_, err := limited.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
		errs = append(errs, err)
	}
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("the first two calls of a key with burst=2: %v", errs)
	}
	wantStatus(t, errs[2], codes.ResourceExhausted, "third call of a key with burst=2")
	other, _ := clientWithKey(t, p.addr, readKey2)
	for i := range 30 {
		if _, err := other.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil {
			t.Fatalf("call %d of a key without a rate, on a server without one: %v", i+1, err)
		}
	}
}

// peakRSS reads a process's peak resident memory from /proc.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no VmHWM in /proc status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// 3. A 5 MB message and a 1 MB query are refused with the right codes, and memory stays bounded.
func TestOversizedRequestsAreRefused(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "--demo")
	ctx := context.Background()
	c, _ := clientWithKey(t, p.addr, "")
	big := &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "big", Title: "Big", Abstract: strings.Repeat("word ", 1<<20)}}}
	query := strings.Repeat("query ", 1<<20/6)
	before := peakRSS(t, p.cmd.Process.Pid)
	for range 10 {
		_, err := c.UpsertPapers(ctx, big)
		wantStatus(t, err, codes.ResourceExhausted, "5 MB message")
		_, err = c.Recommend(ctx, &recommenderv1.RecommendRequest{Query: query})
		wantStatus(t, err, codes.InvalidArgument, "1 MB query")
	}
	after := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("server peak RSS %d MiB before, %d MiB after 10 refused 5 MB messages and 10 refused 1 MB queries", before>>20, after>>20)
	if after-before > 64<<20 {
		t.Fatalf("peak memory grew by %d MiB", (after-before)>>20)
	}
	if _, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech"}); err != nil {
		t.Fatalf("server unwell after the refusals: %v", err)
	}
}

// 4. SIGTERM during traffic: a call in flight completes, new calls are refused, and the process
// exits 0 within the shutdown timeout.
func TestSIGTERMDrainsInFlightCalls(t *testing.T) {
	p := startServe(t, t.TempDir(), "--demo", "--shutdown-timeout", "10s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, conn := clientWithKey(t, p.addr, "")
	// An ingest stream is a call that stays in flight across the signal.
	stream, err := c.IngestPapers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&recommenderv1.IngestPapersRequest{Papers: []*recommenderv1.Paper{{Id: "inflight-1", Title: "Before the signal"}}}); err != nil {
		t.Fatal(err)
	}
	// A stream of Recommend calls from other clients runs throughout.
	var wg sync.WaitGroup
	stopLoad := make(chan struct{})
	var mu sync.Mutex
	unexpected := []error{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc, _ := clientWithKey(t, p.addr, "")
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				_, err := lc.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition"})
				if code := status.Code(err); err != nil && code != codes.Unavailable {
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
				}
			}
		}()
	}
	// The watch is itself an in-flight call: it is closed once it has shown NOT_SERVING, or the
	// graceful stop would wait for it until the hard-stop timeout.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // SERVING
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		h, err := watch.Recv()
		if err != nil {
			t.Fatalf("health watch ended before NOT_SERVING: %v", err)
		}
		if h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
	}
	stopWatch()
	// The in-flight stream goes on and completes.
	if err := stream.Send(&recommenderv1.IngestPapersRequest{Papers: []*recommenderv1.Paper{{Id: "inflight-2", Title: "After the signal"}}}); err != nil {
		t.Fatalf("in-flight stream cut: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil || resp.GetInserted() != 2 {
		t.Fatalf("in-flight stream: %v, %v; want 2 inserted", resp, err)
	}
	// New connections are refused.
	fresh, _ := clientWithKey(t, p.addr, "")
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	_, err = fresh.Recommend(short, &recommenderv1.RecommendRequest{Query: "speech"})
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Fatalf("new call after SIGTERM: %v, want it refused", err)
	}
	close(stopLoad)
	wg.Wait()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal("the process did not exit")
	}
	elapsed := time.Since(start)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	t.Logf("exited 0 %v after SIGTERM", elapsed.Round(time.Millisecond))
	if elapsed >= 10*time.Second {
		t.Fatalf("shutdown took the whole timeout (%v): in-flight calls were cut, not drained", elapsed)
	}
	if len(unexpected) > 0 {
		t.Fatalf("%d calls failed with something else than UNAVAILABLE, first: %v", len(unexpected), unexpected[0])
	}
	// What the stream acknowledged is on disk.
	q := startServe(t, p.dataDir)
	if _, err := q.client.GetPaper(context.Background(), &recommenderv1.GetPaperRequest{PaperId: "inflight-2"}); err != nil {
		t.Fatalf("acknowledged paper lost: %v", err)
	}
}

// writePapers writes n distinct papers as JSON lines.
func writePapers(t *testing.T, n int) string {
	t.Helper()
	topics := []string{"graph neural networks", "speech recognition", "federated learning", "robot manipulation", "query optimization"}
	path := filepath.Join(t.TempDir(), "papers.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		topic := topics[i%len(topics)]
		fmt.Fprintf(w, `{"id":"bf-%05d","title":"Paper %d on %s","abstract":"We study %s, variant %d, with method %d."}`+"\n", i, i, topic, topic, i, i*7%13)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return path
}

// 5. The backfill process SIGKILLed three times at random points, then completed: every paper
// is stored exactly once with its vector, and the embedding calls show it resumed.
func TestBackfillSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	const n = 3000
	api := embedtest.New(16)
	defer api.Close()
	api.SetLatency(5 * time.Millisecond)
	env := []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake", "EMBEDDING_DIMENSIONS=16"}
	p := startServeEnv(t, env, t.TempDir(), "--embedding-max-inputs", "50", "--embedding-max-concurrency", "2")
	file := writePapers(t, n)
	checkpoint := filepath.Join(t.TempDir(), "backfill.checkpoint")
	args := []string{"backfill", "--server", p.addr, "--file", file, "--checkpoint", checkpoint, "--batch-size", "100", "--stream-papers", "300"}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("kill points drawn with seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for kill := 1; kill <= 3; kill++ {
		cmd := exec.Command(binary, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill once the API has embedded a random number of further texts.
		at := api.Inputs() + 100 + rng.IntN(600)
		if err := api.WaitInputs(ctx, at); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		t.Logf("kill %d after %d texts embedded", kill, api.Inputs())
	}
	out, errOut, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("final backfill: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "resuming after line") {
		t.Fatalf("the final run did not resume from the checkpoint:\n%s", errOut)
	}
	t.Logf("final run: %s%s", errOut, out)
	info, err := p.client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetPaperCount() != n {
		t.Fatalf("index info %v, %v; want %d papers, each once", info, err, n)
	}
	// Each paper has its vector: a dense request by it as the seed needs it.
	for i := 0; i < n; i += 7 {
		_, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{fmt.Sprintf("bf-%05d", i)},
			Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, PageSize: 1})
		if err != nil {
			t.Fatalf("paper bf-%05d: %v", i, err)
		}
	}
	embedded := api.Inputs()
	t.Logf("%d texts embedded for %d papers across 3 kills and a resume (%.2f per paper)", embedded, n, float64(embedded)/n)
	// Without resuming, each run would have started over; the waste is bounded by what was in
	// flight at each kill (at most one stream of 300).
	if embedded > n+3*300 {
		t.Fatalf("%d texts embedded for %d papers: the backfill did not resume", embedded, n)
	}
}

// 6. The embedding API down during serving: text queries get UNAVAILABLE (or, with the fallback
// configured, lexical results) and seed queries keep working.
func TestEmbeddingAPIDownWhileServing(t *testing.T) {
	t.Parallel()
	api := embedtest.New(16)
	env := []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake", "EMBEDDING_DIMENSIONS=16"}
	strict := startServeEnv(t, env, t.TempDir(), "--demo")
	lenient := startServeEnv(t, env, t.TempDir(), "--demo", "--embedding-fallback-lexical")
	api.Close() // down from here on
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := strict.client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition"})
	wantStatus(t, err, codes.Unavailable, "text query with the API down")
	for _, p := range []*process{strict, lenient} {
		resp, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0019"}})
		if err != nil || resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID || len(resp.GetResults()) == 0 {
			t.Fatalf("seed query with the API down: %v, %v", resp, err)
		}
	}
	resp, err := lenient.client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition"})
	if err != nil || resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL || len(resp.GetResults()) == 0 {
		t.Fatalf("text query with the fallback: %v, %v", resp, err)
	}
	// The answer says it fell back, and why.
	if !strings.HasPrefix(resp.GetFallback(), "embedding API unavailable") || resp.GetEmbeddingModel() == "lexical" {
		t.Fatalf("fallback %q, model %q: want the reason, and the configured model named", resp.GetFallback(), resp.GetEmbeddingModel())
	}
}

// 7. 32 concurrent clients mixing Recommend and Upsert, 25 calls each: no unexpected error, and
// every upsert acknowledged is stored. BenchmarkConcurrentLoad measures the same mix.
func TestConcurrentLoad(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "--demo")
	papers, _ := demo.Papers()
	const clients, calls = 32, 25
	errs := make(chan error, clients*calls)
	var wg sync.WaitGroup
	for w := range clients {
		c, _ := clientWithKey(t, p.addr, "")
		wg.Go(func() {
			for i := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if _, err := loadCall(ctx, c, papers, w, i); err != nil {
					errs <- err
				}
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	if n := len(errs); n > 0 {
		t.Fatalf("%d unexpected errors, first: %v", n, <-errs)
	}
	info, err := p.client.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
	if want := int64(len(papers) + clients*((calls+4)/5)); err != nil || info.GetPaperCount() != want {
		t.Fatalf("after the load: %v papers (%v), want %d", info.GetPaperCount(), err, want)
	}
}

// BenchmarkConcurrentLoad runs TestConcurrentLoad's mix from 32 clients against the binary and
// reports each call's p50 and p99 and the calls per second.
func BenchmarkConcurrentLoad(b *testing.B) {
	p := startServe(b, b.TempDir(), "--demo")
	papers, _ := demo.Papers()
	var mu sync.Mutex
	var recLat, upLat []time.Duration
	var clients atomic.Int32
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := int(clients.Add(1))
		c, _ := clientWithKey(b, p.addr, "")
		for i := 0; pb.Next(); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			t0 := time.Now()
			upsert, err := loadCall(ctx, c, papers, w, i)
			d := time.Since(t0)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			if upsert {
				upLat = append(upLat, d)
			} else {
				recLat = append(recLat, d)
			}
			mu.Unlock()
		}
	})
	elapsed := time.Since(start)
	ms := func(l []time.Duration, q float64) float64 { return float64(percentile(l, q).Microseconds()) / 1000 }
	b.ReportMetric(ms(recLat, 0.5), "recommend-p50-ms")
	b.ReportMetric(ms(recLat, 0.99), "recommend-p99-ms")
	b.ReportMetric(ms(upLat, 0.5), "upsert-p50-ms")
	b.ReportMetric(ms(upLat, 0.99), "upsert-p99-ms")
	b.ReportMetric(float64(len(recLat)+len(upLat))/elapsed.Seconds(), "calls/s")
}

// loadCall is call i of client w in the load mix: every fifth an upsert of a new paper, the
// rest seed requests over the demo corpus.
func loadCall(ctx context.Context, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, w, i int) (upsert bool, err error) {
	if i%5 == 0 {
		_, err = c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{
			{Id: fmt.Sprintf("load-%02d-%06d", w, i), Title: papers[i%len(papers)].GetTitle(), Abstract: papers[i%len(papers)].GetAbstract()}}})
		return true, err
	}
	_, err = c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{papers[(w+i)%len(papers)].GetId()}})
	return false, err
}

// 8. /metrics exposes RPC, embedding, store and ingest metrics.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	api := embedtest.New(16)
	defer api.Close()
	env := []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake"}
	p := startServeEnv(t, env, t.TempDir(), "--demo", "--metrics-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`msg=metrics addr=(\S+)`).FindStringSubmatch(p.logs())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", p.logs())
	}
	// Served on loopback, the metrics answer loopback names only (DNS rebinding).
	req, _ := http.NewRequest(http.MethodGet, "http://"+m[1]+"/metrics", nil)
	req.Host = "evil.example"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("metrics for Host evil.example: %v, %v; want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	ctx := context.Background()
	if _, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatal(err)
	}
	// The same RPC over each transport of the HTTP port is counted under its own label.
	for _, call := range []struct{ path, contentType, body string }{
		{"/v1/GetIndexInfo", "application/json", "{}"},
		{"/recommender.v1.RecommenderService/GetIndexInfo", "application/json", "{}"},
		{"/recommender.v1.RecommenderService/GetIndexInfo", "application/grpc-web+proto", "\x00\x00\x00\x00\x00"},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.httpAddr+call.path, strings.NewReader(call.body))
		req.Header.Set("Content-Type", call.contentType)
		req.Header.Set("Connect-Protocol-Version", "1")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`recommender_rpcs_total{code="OK",method="/recommender.v1.RecommenderService/Recommend",transport="grpc"} 1`,
		`recommender_rpcs_total{code="InvalidArgument",method="/recommender.v1.RecommenderService/Recommend",transport="grpc"} 1`,
		`recommender_rpc_duration_seconds_bucket{code="OK",method="/recommender.v1.RecommenderService/Recommend",transport="grpc"`,
		`recommender_rpcs_total{code="OK",method="/recommender.v1.RecommenderService/GetIndexInfo",transport="http-json"} 1`,
		`recommender_rpcs_total{code="OK",method="/recommender.v1.RecommenderService/GetIndexInfo",transport="connect"} 1`,
		`recommender_rpcs_total{code="OK",method="/recommender.v1.RecommenderService/GetIndexInfo",transport="grpc-web"} 1`,
		`recommender_embedding_requests_total{outcome="ok"}`,
		`recommender_embedding_request_duration_seconds_count`,
		`recommender_embedding_inputs_total 50`, // the start-up probe, the 48 demo papers, the query
		`recommender_embedding_tokens_total`,
		`recommender_embedding_retries_total 0`,
		`recommender_store_operation_duration_seconds_count{backend="embedded",operation="search"}`,
		`recommender_ingested_papers_total{outcome="inserted"} 48`,
		`recommender_papers 48`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// rpcLine matches the server's log line of a call: its method, code and duration.
var rpcLine = regexp.MustCompile(`msg=rpc method=(\S+) code=(\S+) duration=(\S+)`)

// A call whose deadline passes while the server waits on the embedding API stops there: the
// server logs it ended (DEADLINE_EXCEEDED or CANCELLED) with a duration near the deadline, not whatever the wait
// would have been; and a shutdown with a call still held ends within the shutdown timeout.
func TestDeadlinesAndShutdownCutHeldCalls(t *testing.T) {
	api := embedtest.New(16)
	defer api.Close()
	// Two embedding calls at once (one is the default on loopback), so both calls held below
	// reach the API.
	p := startServeEnv(t, []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake-model", "EMBEDDING_MAX_CONCURRENCY=2"}, t.TempDir(),
		"--demo", "--shutdown-timeout", "300ms")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	api.PauseAt(0) // every embedding call from now on is held
	const deadline = 200 * time.Millisecond
	short, cancelShort := context.WithTimeout(ctx, deadline)
	_, err := p.client.Recommend(short, &recommenderv1.RecommendRequest{Query: "federated learning"})
	cancelShort()
	wantStatus(t, err, codes.DeadlineExceeded, "a text query while the embedding API holds every call")
	var logged time.Duration
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for logged == 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no Recommend line in the server log:\n%s", p.logs())
		}
		for _, m := range rpcLine.FindAllStringSubmatch(p.logs(), -1) {
			if strings.HasSuffix(m[1], "/Recommend") {
				// The client's deadline cancels the call (Canceled) unless the server's copy of it
				// fires first (DeadlineExceeded): either says it stopped there.
				if m[2] != "DeadlineExceeded" && m[2] != "Canceled" {
					t.Fatalf("server logged %s for the call, want DeadlineExceeded or Canceled", m[2])
				}
				if logged, err = time.ParseDuration(m[3]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Logf("client deadline %v; the server logged the call ended after %v (%v past it)", deadline, logged, logged-deadline)
	if logged > deadline+time.Second {
		t.Fatalf("the call ran %v past its deadline", logged-deadline)
	}

	// Calls with no deadline, over gRPC and over the HTTP API, held by the embedding API, then
	// SIGTERM: the process ends once the shutdown timeout cuts them.
	errc, httpErr := make(chan error, 1), make(chan error, 1)
	before := api.Inputs()
	go func() {
		_, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "graph neural networks"})
		errc <- err
	}()
	go func() {
		resp, err := http.Post("http://"+p.httpAddr+"/v1/Recommend", "application/json", strings.NewReader(`{"query": "sleep staging"}`))
		if err == nil {
			resp.Body.Close()
		}
		httpErr <- err
	}()
	if err := api.WaitInputs(ctx, before+2); err != nil { // both calls are held at the embedding API
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		<-p.exited
		t.Fatalf("the process did not exit:\n%s", p.logs())
	}
	elapsed := time.Since(start)
	t.Logf("shutdown timeout 300ms; exited %v after SIGTERM with a gRPC and an HTTP call held (code %d)", elapsed.Round(time.Millisecond), p.cmd.ProcessState.ExitCode())
	if err := <-errc; status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("the held gRPC call: %v, want UNAVAILABLE or CANCELLED", err)
	}
	<-httpErr                                       // cut or answered with an error: either way it ended
	if elapsed > 300*time.Millisecond+time.Second { // the timeout bounds the store's saves too
		t.Fatalf("shutdown took %v with a 300ms timeout", elapsed)
	}
	api.Resume()
}

// Connections are closed after --max-connection-age, so clients reconnect (and reach replicas
// added since); calls go on over the new connection. The health command answers for probes.
func TestConnectionsAgeAndHealthCommand(t *testing.T) {
	p := startServe(t, t.TempDir(), "--demo", "--max-connection-age", "300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, conn := clientWithKey(t, p.addr, "")
	if _, err := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	// The server's GOAWAY takes the connection out of READY.
	for s := conn.GetState(); s == connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatal("the connection stayed open past --max-connection-age")
		}
	}
	if _, err := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatalf("a call after the connection aged out: %v", err)
	}
	out, errOut, code := runCLI(t, "health", "--server", p.addr)
	if code != 0 || strings.TrimSpace(out) != "SERVING" {
		t.Fatalf("health: exit %d, %s%s", code, out, errOut)
	}
	if _, _, code := runCLI(t, "health", "--server", "127.0.0.1:1", "--timeout", "2s"); code != 1 {
		t.Fatalf("health of nothing: exit %d, want 1", code)
	}
}

// TestReembeddingResumesAfterSIGKILL: serve with --reembed-model is killed half way through
// moving 1,500 papers to another model; started again with the same flags it embeds only what
// it had not (its progress survived in the store), switches, and from then on answers with the
// new model; `info` shows the set kept for a rollback and `retire-vectors` deletes it.
func TestReembeddingResumesAfterSIGKILL(t *testing.T) {
	t.Parallel()
	const n = 1500
	apiA, apiB := embedtest.New(16), embedtest.New(24)
	defer apiA.Close()
	defer apiB.Close()
	dir := t.TempDir()
	envA := []string{"EMBEDDING_BASE_URL=" + apiA.BaseURL(), "EMBEDDING_MODEL=model-a", "EMBEDDING_DIMENSIONS=16"}
	p := startServeEnv(t, envA, dir)
	testutil.Ingest(t, p.client, extraPapers("re", 0, n))
	p.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	toB := []string{"--reembed-base-url", apiB.BaseURL(), "--reembed-model", "model-b", "--reembed-dimensions", "24"}
	held := apiB.PauseAt(n / 2)
	p = startServeEnv(t, envA, dir, append(toB, "--metrics-addr", "127.0.0.1:0")...)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the re-embedding never got half way")
	}
	out, errOut, code := runCLI(t, "info", "--server", p.addr)
	if code != 0 || !strings.Contains(out, "model:      model-a") || !strings.Contains(out, "other set:  model model-b (24 dimensions)") ||
		!strings.Contains(out, "being filled") {
		t.Fatalf("info half way: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("half way: %s", out[strings.Index(out, "other set:"):])
	// The same progress on /metrics.
	m := regexp.MustCompile(`msg=metrics addr=(\S+)`).FindStringSubmatch(p.logs())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", p.logs())
	}
	scrape, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(scrape.Body)
	scrape.Body.Close()
	withVectors := regexp.MustCompile(`(?m)^recommender_other_vector_set_papers (\d+)$`).FindStringSubmatch(string(body))
	if withVectors == nil || !strings.Contains(out, withVectors[1]+" of 1500 papers") || !strings.Contains(string(body), "recommender_papers 1500") {
		t.Fatalf("/metrics half way (info said %q): %v", out, withVectors)
	}
	p.kill(t)
	apiB.Resume()
	before := apiB.Inputs()

	p = startServeEnv(t, envA, dir, toB...)
	waitModel(ctx, t, p, "model-b")
	second := apiB.Inputs() - before
	t.Logf("%d texts embedded with model-b before the kill, %d after it, for %d papers", before, second, n)
	// What was in flight at the kill (one batch) is embedded again.
	if before+second > n+reembed.DefaultBatch || second >= n {
		t.Fatalf("%d texts before the kill and %d after: the restart did not resume", before, second)
	}
	resp, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "tilings of the plane", PageSize: 3})
	if err != nil || resp.GetEmbeddingModel() != "model-b" || len(resp.GetResults()) != 3 {
		t.Fatalf("after the switch: %v (%v)", resp, err)
	}
	if !strings.Contains(p.logs(), "re-embedding: switched to the new model") {
		t.Fatalf("the switch was not logged:\n%s", p.logs())
	}
	out, errOut, code = runCLI(t, "info", "--server", p.addr)
	if code != 0 || !strings.Contains(out, "model:      model-b") || !strings.Contains(out, fmt.Sprintf("other set:  model model-a (16 dimensions), %d of %d papers (100.0%%); kept from before a switch", n, n)) {
		t.Fatalf("info after the switch: exit %d\n%s%s", code, out, errOut)
	}
	// Rolling back is the same move the other way: model-a's vectors are all there but for the
	// papers written since, so it embeds only those.
	if _, err := p.client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: extraPapers("late", 0, 3)}); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	envB := []string{"EMBEDDING_BASE_URL=" + apiB.BaseURL(), "EMBEDDING_MODEL=model-b", "EMBEDDING_DIMENSIONS=24"}
	back := []string{"--reembed-base-url", apiA.BaseURL(), "--reembed-model", "model-a", "--reembed-dimensions", "16"}
	beforeA := apiA.Inputs()
	p = startServeEnv(t, envB, dir, back...)
	waitModel(ctx, t, p, "model-a")
	if got := apiA.Inputs() - beforeA; got != 3 {
		t.Fatalf("the rollback embedded %d texts with model-a, want the 3 papers written since the switch", got)
	}
	p.stop(t)
	p = startServeEnv(t, envA, dir, toB...) // and forward again
	waitModel(ctx, t, p, "model-b")
	out, errOut, code = runCLI(t, "retire-vectors", "--server", p.addr)
	if code != 0 || out != fmt.Sprintf("retired the vectors of model model-a (16 dimensions, %d papers)\n", n+3) {
		t.Fatalf("retire-vectors: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = runCLI(t, "retire-vectors", "--server", p.addr); code == 0 || !strings.Contains(errOut, "no second set") {
		t.Fatalf("retire-vectors again: exit %d, %s", code, errOut)
	}
	// Restarted on the new model alone, the store is as it was left; check finds it sound.
	p.stop(t)
	if out, errOut, code := runCLI(t, "check", "--data-dir", dir); code != 0 ||
		!strings.Contains(out, fmt.Sprintf("vectors beside the records (a store moved to another model): %d; ann-1.idx: checksum good", n+3)) {
		t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
	}
	p = startServeEnv(t, envB, dir)
	if info, err := p.client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil || info.GetEmbeddingModel() != "model-b" || info.GetOtherVectorSet() != nil {
		t.Fatalf("restarted on model-b: %v (%v)", info, err)
	}
}

// waitModel waits until the server answers with the model (a re-embedding switched to it).
func waitModel(ctx context.Context, t *testing.T, p *process, model string) {
	t.Helper()
	for {
		info, err := p.client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetEmbeddingModel() == model {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no switch to %s; the server logged:\n%s", model, p.logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestReembeddingAddsAModelToALexicalStore: a store filled without an embedding model moves to
// one the same way, answering lexically until the switch and hybrid after it.
func TestReembeddingAddsAModelToALexicalStore(t *testing.T) {
	t.Parallel()
	api := embedtest.New(16)
	defer api.Close()
	dir := t.TempDir()
	startServe(t, dir, "--demo").stop(t)
	p := startServeEnv(t, nil, dir, "--reembed-base-url", api.BaseURL(), "--reembed-model", "fake", "--reembed-dimensions", "16")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitModel(ctx, t, p, "fake")
	resp, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition", PageSize: 3})
	if err != nil || resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID || resp.GetEmbeddingModel() != "fake" {
		t.Fatalf("after the switch: %v (%v)", resp, err)
	}
	// The lexical "set" it moved from holds no vectors: there is nothing to retire.
	if _, errOut, code := runCLI(t, "retire-vectors", "--server", p.addr); code == 0 || !strings.Contains(errOut, "no second set") {
		t.Fatalf("retire-vectors after moving from lexical: exit %d, %s", code, errOut)
	}
	p.stop(t)
	p = startServeEnv(t, []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake", "EMBEDDING_DIMENSIONS=16"}, dir)
	if info, err := p.client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); err != nil || info.GetEmbeddingModel() != "fake" || info.GetPaperCount() != 48 {
		t.Fatalf("restarted with the model: %v (%v)", info, err)
	}
}

// A wildcard or a malformed CORS origin is refused at start: the API takes keys and writes, so
// each site it trusts is named.
func TestCORSOriginsAreNamed(t *testing.T) {
	t.Parallel()
	for _, origins := range []string{"*", "https://*.example.com", "app.example.com", "https://app.example.com/path"} {
		_, errOut, code := runCLI(t, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--cors-origins", origins)
		if code != 2 || !strings.Contains(errOut, "--cors-origins: ") || !strings.Contains(errOut, "is not an origin") {
			t.Errorf("--cors-origins %q: exit %d, %s", origins, code, errOut)
		}
	}
}

// percentile is the q-quantile of latencies (0 for none).
func percentile(l []time.Duration, q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	l = slices.Clone(l)
	slices.Sort(l)
	return l[int(float64(len(l)-1)*q)]
}
