package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/qdrant"
)

const benchGRPCHelp = `
Load-tests Recommend over real gRPC on loopback: the whole service (the embedded store with its
vector index, or with --store qdrant the Qdrant collection bench_grpc; hybrid retrieval) serving
--papers synthetic papers, whose embeddings come from a local fake OpenAI-compatible API (hashed
bag-of-words vectors, so no model is needed). It prints the ingest rate (papers/s through
IngestPapers, embedding included), waits for the vector index to catch up (Qdrant's, or the
embedded graph, linked behind the writes), then for 1, 8 and 32 concurrent clients it sends
seed requests (stored vectors, no embedding call), text requests (one embedding call each, a
paper's title as the query) and the embedding API calls alone that text requests make (its
share of their latency) for --seconds each, and prints p50, p99 and throughput.

With --arxiv FILE it serves those papers instead, and with an embedding API configured (the
EMBEDDING_* variables or flags of serve, e.g. the local model of tests/embedserver) embeds them
and every text query with it, so text latencies include the real embedding call.`

func runBenchGRPC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench-grpc", "[flags]", benchGRPCHelp, stderr)
	n := fs.Int("papers", 100_000, "synthetic papers to serve")
	dims := fs.Int("dims", 384, "embedding dimensions")
	seconds := fs.Float64("seconds", 10, "duration of each load level")
	warmup := fs.Float64("warmup", 0, "seconds of each request kind sent untimed first, at the first level's clients: a store just opened reads its postings and records from disk at first")
	levels := fs.String("clients", "1,8,32", "concurrent clients per level")
	kinds := fs.String("requests", "seed,text,embed", "request kinds to run: seed, seed-dense (a seed in DENSE mode: the hybrid seed's dense half alone), text, embed (the embedding API call a text request makes, alone: what of text's latency is the API's)")
	seedTerms := seedTermsFlag(fs)
	var sf cli.StoreFlags
	sf.RegisterEval(fs, "keep the embedded store here between runs (default: a temporary folder); a rerun with the same --papers skips the ingest")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load phase to this file")
	arxivFile := fs.String("arxiv", "", "serve the papers of this JSON-lines file (plain or .gz) instead of synthetic ones")
	var ef cli.EmbeddingFlags
	ef.Register(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := errors.Join(ef.ApplyEnv(), sf.ApplyEnv()); err != nil {
		return err
	}
	if !(*seconds > 0 && *seconds <= 86_400) {
		return cli.UsageError{Msg: fmt.Sprintf("--seconds must be more than 0 and at most 86400, got %v", *seconds)}
	}
	if !(*warmup >= 0 && *warmup <= 86_400) {
		return cli.UsageError{Msg: fmt.Sprintf("--warmup must be 0 to 86400, got %v", *warmup)}
	}
	embCfg, realAPI, err := ef.Config()
	if err != nil {
		return err
	}
	if !realAPI {
		api := embedtest.New(*dims)
		defer api.Close()
		embCfg = embed.Config{BaseURL: api.BaseURL(), Model: "fake-hash", Dimensions: *dims, MaxInputs: 512}
	}
	emb, err := embed.New(embCfg)
	if err != nil {
		return err
	}
	papers := syntheticPapers(*n)
	if *arxivFile != "" {
		if papers, err = arxiv.ReadFile(*arxivFile); err != nil {
			return err
		}
		*n = len(papers)
	}
	heapBefore := liveHeapMiB()
	start := time.Now()
	run := func(r evalRun) error {
		client := r.client
		info, err := client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
		if err != nil {
			return cli.RPCError(err)
		}
		where := "the embedded store (vector index)"
		if sf.Backend == "qdrant" {
			where = "Qdrant (collection bench_grpc)"
		}
		secs := time.Since(start).Seconds()
		if r.ingested {
			fmt.Fprintf(stdout, "%d papers ingested into %s in %.1fs (%s papers/s)", *n, where, secs, cli.Rate(float64(*n)/secs))
		} else {
			fmt.Fprintf(stdout, "%d papers loaded from %s in %.1fs", *n, where, secs)
		}
		fmt.Fprintf(stdout, "; hybrid retrieval, model %s, %d dimensions\n", info.GetEmbeddingModel(), info.GetEmbeddingDimensions())
		if qs, ok := r.store.(*qdrant.Store); ok {
			// Qdrant builds its vector index in the background after the writes: measure the
			// index, not a brute-force scan of segments not yet optimised.
			waited := time.Now()
			if err := qs.WaitOptimized(ctx); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Qdrant finished optimising the collection %.1fs later\n\n", time.Since(waited).Seconds())
		} else {
			if es, ok := r.store.(*embedded.Store); ok {
				// Vectors are linked into the graph behind the writes: measure the graph, not
				// an exact scan of the vectors still queued.
				waited := time.Now()
				if err := es.WaitLinked(ctx); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "the vector index linked the last vectors %.1fs later\n", time.Since(waited).Seconds())
			}
			fmt.Fprintf(stdout, "store on the Go heap: %.0f MiB (raw float32 vectors: %.0f MiB, memory-mapped if loaded at open, on the heap if ingested by this run)\n\n",
				liveHeapMiB()-heapBefore, vectorsMiB(*n, int(info.GetEmbeddingDimensions())))
		}
		stopProfile, err := cpuProfileTo(*cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
		fmt.Fprintf(stdout, "%-8s %8s %10s %10s %12s\n", "request", "clients", "p50", "p99", "requests/s")
		for _, kind := range strings.Split(*kinds, ",") {
			if !slices.Contains([]string{"seed", "seed-dense", "text", "embed"}, kind) {
				return cli.UsageError{Msg: "--requests takes seed, seed-dense, text, embed or several, e.g. seed,text"}
			}
			send := sender(kind, client, emb)
			asked := papers
			if !strings.HasPrefix(kind, "seed") { // a title of stop words and numbers alone is not a query
				asked = slices.DeleteFunc(slices.Clone(papers), func(p *recommenderv1.Paper) bool { return lexical.Query(p.GetTitle()).Len() == 0 })
			}
			for i, c := range strings.Split(*levels, ",") {
				var clients int
				if _, err := fmt.Sscan(c, &clients); err != nil || clients < 1 {
					return cli.UsageError{Msg: "--clients takes whole numbers, e.g. 1,8,32"}
				}
				if i == 0 && *warmup > 0 {
					if _, err := loadLevel(ctx, asked, send, clients, time.Duration(*warmup*float64(time.Second)), warmupStream); err != nil {
						return err
					}
				}
				lat, err := loadLevel(ctx, asked, send, clients, time.Duration(*seconds*float64(time.Second)), timedStream)
				if err != nil {
					return err
				}
				slices.Sort(lat)
				fmt.Fprintf(stdout, "%-8s %8d %10s %10s %12.0f\n", kind, clients, round(lat[len(lat)/2]), round(lat[len(lat)*99/100]),
					float64(len(lat))/(*seconds))
			}
		}
		return nil
	}
	opts := []app.Option{app.WithPipeline(seedTerms)}
	return withEvalStore(ctx, &sf, "", "bench_grpc", emb, opts, papers, run)
}

// cpuProfileTo starts a CPU profile written to path (none when path is empty); stop ends it.
func cpuProfileTo(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// liveHeapMiB is the live heap after a collection.
func liveHeapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func round(d time.Duration) string { return d.Round(time.Microsecond).String() }

// Random streams of loadLevel's papers: the warm-up's are others than the timed run's, which
// would otherwise find the records it reads already in memory.
const (
	timedStream  = 3
	warmupStream = 4
)

// sender returns the request of a kind for a paper: a Recommend by seed or by its title, or
// the embedding of its title alone.
func sender(kind string, client recommenderv1.RecommenderServiceClient, emb embed.Embedder) func(context.Context, *recommenderv1.Paper) error {
	return func(ctx context.Context, p *recommenderv1.Paper) error {
		var err error
		switch kind {
		case "seed":
			_, err = client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{p.GetId()}})
		case "seed-dense":
			_, err = client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{p.GetId()},
				Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE})
		case "text":
			_, err = client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: p.GetTitle()})
		default:
			_, err = emb.Embed(ctx, []string{emb.Prefixes().QueryText(p.GetTitle())}) // as the service sends it
		}
		if err != nil {
			return cli.RPCError(err)
		}
		return nil
	}
}

// loadLevel runs clients goroutines sending requests back to back for d, each client asking
// for papers in a random order of the stream.
func loadLevel(ctx context.Context, papers []*recommenderv1.Paper, send func(context.Context, *recommenderv1.Paper) error, clients int, d time.Duration, stream uint64) ([]time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), stream))
			var mine []time.Duration
			for time.Now().Before(deadline) {
				p := papers[rng.IntN(len(papers))]
				start := time.Now()
				if err := send(ctx, p); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, firstErr
}

// syntheticPapers writes n papers about 200 topics, each with words of its own and shared ones,
// in a Zipf-like mix, so both retrieval signals have structure to find.
func syntheticPapers(n int) []*recommenderv1.Paper {
	rng := rand.New(rand.NewPCG(42, 42))
	common := make([]string, 2000)
	for i := range common {
		common[i] = fmt.Sprintf("term%04d", i)
	}
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(common)-1))
	words := func(topic, count int) string {
		var b strings.Builder
		for range count {
			if rng.IntN(3) == 0 {
				fmt.Fprintf(&b, "topic%03dword%02d ", topic, rng.IntN(30))
			} else {
				b.WriteString(common[zipf.Uint64()] + " ")
			}
		}
		return strings.TrimSpace(b.String())
	}
	out := make([]*recommenderv1.Paper, n)
	for i := range out {
		topic := rng.IntN(200)
		out[i] = &recommenderv1.Paper{Id: fmt.Sprintf("syn-%06d", i), Title: words(topic, 8), Abstract: words(topic, 120),
			Year: int32(2000 + rng.IntN(26))}
	}
	return out
}
