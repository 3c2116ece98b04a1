package server_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	neturl "net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/testutil"
)

// fakeModel is an embedding client of the fake API under a model name; two models of different
// sizes embed the same text in unrelated directions.
func fakeModel(t *testing.T, api *embedtest.Server, model string, dims int) embed.Embedder {
	t.Helper()
	c, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: model, Dimensions: dims}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reembedQueries are dense requests (so the answer depends on the vectors alone, not on BM25's
// corpus statistics, which the writes during the test change) by text and by seeds, restricted
// to dated papers (the papers written during the test have no year).
func reembedQueries(papers []*recommenderv1.Paper) []*recommenderv1.RecommendRequest {
	var out []*recommenderv1.RecommendRequest
	dated := &recommenderv1.Filter{MinYear: 1900}
	for _, q := range []string{"graph neural networks for molecules", "speech recognition with transformers",
		"reinforcement learning for robot control", "privacy of federated learning"} {
		out = append(out, &recommenderv1.RecommendRequest{Query: q, Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, Filter: dated, PageSize: 10})
	}
	for i := 0; i < len(papers); i += len(papers) / 6 {
		out = append(out, &recommenderv1.RecommendRequest{PositivePaperIds: []string{papers[i].GetId()},
			Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, Filter: dated, PageSize: 10})
	}
	return out
}

// answers runs the queries; each answer is its model and its results (ids and scores).
func answers(t *testing.T, c recommenderv1.RecommenderServiceClient, qs []*recommenderv1.RecommendRequest) (models []string, results []string) {
	t.Helper()
	for _, q := range qs {
		resp, err := c.Recommend(context.Background(), q)
		if err != nil {
			t.Fatalf("query %v: %v", q, err)
		}
		var b strings.Builder
		for _, r := range resp.GetResults() {
			fmt.Fprintf(&b, "%s:%.6f ", r.GetPaper().GetId(), r.GetScore())
		}
		models, results = append(models, resp.GetEmbeddingModel()), append(results, b.String())
	}
	return models, results
}

// TestReembeddingWithoutDowntime moves a serving store from model-a to model-b: before, during
// (the job held at several points while papers are written) and after the switch, every answer
// is wholly model-a's (equal to a server that only knew model-a) or wholly model-b's, never a
// mix, and once one query has been answered by model-b every later one is; after it, responses
// name model-b, every paper (those written during it too) has a model-b vector, a page token of
// model-a is refused, and model-a's vectors stay until retired.
func TestReembeddingWithoutDowntime(t *testing.T) { eachStore(t, testReembedding) }

// cleanupCollections deletes a test's Qdrant collections (its name and those it starts with).
func cleanupCollections(t *testing.T, url, prefix string) {
	u, _ := neturl.Parse(url)
	port, _ := strconv.Atoi(u.Port())
	admin, err := qc.NewClient(&qc.Config{Host: u.Hostname(), Port: port, SkipCompatibilityCheck: true})
	if err != nil {
		return
	}
	defer admin.Close()
	names, _ := admin.ListCollections(context.Background())
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			_ = admin.DeleteCollection(context.Background(), name)
		}
	}
}

func testReembedding(t *testing.T, open func(t *testing.T, name string) store.Store) {
	papers := testutil.ReadPapers(t, filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz"))[:600]
	ctx := context.Background()
	apiA, apiB := embedtest.New(32), embedtest.New(48)
	defer apiA.Close()
	defer apiB.Close()
	refAPI := embedtest.New(48) // vectors depend on the text and size only: the same as apiB's
	defer refAPI.Close()

	serve := func(st store.Store, emb embed.Embedder, opts ...app.Option) (*server.Loopback, recommenderv1.RecommenderServiceClient) {
		t.Helper()
		lb, err := startLoopback(ctx, st, emb, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lb.Close() })
		return lb, recommenderv1.NewRecommenderServiceClient(lb.Conn)
	}
	_, refA := serve(open(t, "ref_a"), fakeModel(t, apiA, "model-a", 32))
	_, refB := serve(open(t, "ref_b"), fakeModel(t, refAPI, "model-b", 48))
	testutil.Ingest(t, refA, papers)
	testutil.Ingest(t, refB, papers)
	qs := reembedQueries(papers)
	_, wantA := answers(t, refA, qs)
	_, wantB := answers(t, refB, qs)
	if slices.Equal(wantA, wantB) {
		t.Fatal("the two models answer alike: the test could not tell them apart")
	}

	// The server under test: on model-a, told to move to model-b.
	st := open(t, "main")
	first, c := serve(st, fakeModel(t, apiA, "model-a", 32))
	testutil.Ingest(t, c, papers)
	_ = first.Close()
	lb, c := serve(st, fakeModel(t, apiA, "model-a", 32), app.WithReembedding(fakeModel(t, apiB, "model-b", 48)))
	if models, got := answers(t, c, qs); !slices.Equal(got, wantA) || models[0] != "model-a" {
		t.Fatalf("before the re-embedding: %v %v", models, got)
	}
	paged := proto.Clone(qs[0]).(*recommenderv1.RecommendRequest)
	paged.PageSize = 3
	firstPage, err := c.Recommend(ctx, paged)
	if err != nil || firstPage.GetNextPageToken() == "" {
		t.Fatalf("a first page: %v", err)
	}

	// Queries in a loop for the whole re-embedding, each checked against both references, until
	// model-b has answered every query twice; papers written in another loop all the while.
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var loopErr, writeErr error
	var seenA, seenB, live int
	queried := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(queried)
		switched := false
		for round := 0; seenB < 2*len(qs); round++ {
			q := qs[round%len(qs)]
			resp, err := c.Recommend(lctx, q)
			if err != nil {
				loopErr = fmt.Errorf("round %d: %w", round, err)
				return
			}
			var b strings.Builder
			for _, r := range resp.GetResults() {
				fmt.Fprintf(&b, "%s:%.6f ", r.GetPaper().GetId(), r.GetScore())
			}
			got, model := b.String(), resp.GetEmbeddingModel()
			switch {
			case model == "model-a" && got == wantA[round%len(qs)] && !switched:
				seenA++
			case model == "model-b" && got == wantB[round%len(qs)]:
				seenB++
				switched = true
			default:
				loopErr = fmt.Errorf("round %d: an answer of %s (after the switch: %v) that is neither model's:\n%s\nwant a: %s\nwant b: %s",
					round, model, switched, got, wantA[round%len(qs)], wantB[round%len(qs)])
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ; ; live++ {
			select {
			case <-queried:
				return
			default:
			}
			p := &recommenderv1.Paper{Id: fmt.Sprintf("live-%04d", live), Title: fmt.Sprintf("Written while the store moves, number %d", live)}
			if _, err := c.UpsertPapers(lctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{p}}); err != nil {
				writeErr = fmt.Errorf("write %d: %w", live, err)
				return
			}
		}
	}()

	done := make(chan error, 1)
	go func() { done <- lb.App.Reembed(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	// At each stage papers are written beside the loop, not in it: the next request held may be
	// the switch's, which embeds its last papers holding the embedded store's writer lock.
	var staged sync.WaitGroup
	var stagedMu sync.Mutex
	var stagedErr error
	written := 0
	var progress []int64
	held := apiB.PauseAt(128)
	for stage := 2; ; stage++ {
		select {
		case err := <-done:
			apiB.Resume()
			if err != nil {
				t.Fatalf("re-embedding: %v", err)
			}
		case <-held:
			// The job (or, once switched, a query or write embedding with model-b) waits: look,
			// then let it go on, holding the next request in the same step so that the job
			// cannot run past the next stage unseen.
			info, err := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if info.GetEmbeddingModel() == "model-a" {
				if o := info.GetOtherVectorSet(); !o.GetFilling() || o.GetModel() != "model-b" {
					t.Fatalf("index info during the re-embedding: %v", info)
				}
				progress = append(progress, info.GetOtherVectorSet().GetPapersWithVectors())
			}
			held = apiB.ResumeAndPauseAt(stage * 128)
			staged.Add(1)
			go func(first int) {
				defer staged.Done()
				for i := first; i < first+5; i++ {
					p := &recommenderv1.Paper{Id: fmt.Sprintf("new-%03d", i), Title: fmt.Sprintf("A paper written during the move, number %d", i),
						Abstract: "Its vector must reach the new model's set before the switch."}
					if _, err := c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{p}}); err != nil {
						stagedMu.Lock()
						stagedErr = cmp.Or(stagedErr, fmt.Errorf("write %d during the re-embedding: %w", i, err))
						stagedMu.Unlock()
						return
					}
				}
			}(written)
			written += 5
			continue
		}
		break
	}
	staged.Wait()
	wg.Wait()
	if err := cmp.Or(loopErr, writeErr, stagedErr); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d stages (papers with a model-b vector at each: %v), %d papers written at them and %d all along; %d answers of model-a, %d of model-b",
		len(progress), progress, written, live, seenA, seenB)
	if len(progress) < 2 || !slices.IsSorted(progress) || progress[0] == progress[len(progress)-1] {
		t.Fatalf("progress %v: want it seen at 2 stages or more, going forward", progress)
	}

	// After the switch.
	models, got := answers(t, c, qs)
	if !slices.Equal(got, wantB) || models[0] != "model-b" {
		t.Fatalf("after the switch: %v %v", models, got)
	}
	info, err := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetEmbeddingModel() != "model-b" || info.GetEmbeddingDimensions() != 48 ||
		info.GetOtherVectorSet().GetModel() != "model-a" || info.GetOtherVectorSet().GetFilling() {
		t.Fatalf("index info after the switch: %v (%v)", info, err)
	}
	var ids []string
	for i := range written {
		ids = append(ids, fmt.Sprintf("new-%03d", i))
	}
	for i := range live {
		ids = append(ids, fmt.Sprintf("live-%04d", i))
	}
	stored, err := st.Get(ctx, append(ids, papers[0].GetId(), papers[599].GetId()))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range stored {
		if len(p.Dense) != 48 || p.DenseSet != (store.EmbeddingSpec{Model: "model-b", Dimensions: 48}).Key() {
			t.Fatalf("paper %s after the switch: a vector of %d dimensions from set %q", p.ID, len(p.Dense), p.DenseSet)
		}
	}
	paged.PageToken = firstPage.GetNextPageToken()
	_, err = c.Recommend(ctx, paged)
	if wantCode(t, err, codes.InvalidArgument); !strings.Contains(status.Convert(err).Message(), "another embedding model") {
		t.Fatalf("a page token of model-a after the switch: %v", err)
	}
	// A write now is embedded with model-b.
	before := len(apiB.Requests())
	if _, err := c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "after", Title: "Written after the switch"}}}); err != nil {
		t.Fatal(err)
	}
	if reqs := apiB.Requests(); len(reqs) != before+1 || reqs[len(reqs)-1].Model != "model-b" {
		t.Fatalf("a write after the switch was not embedded with model-b: %d requests", len(reqs)-before)
	}

	retired, err := c.RetireVectorSet(ctx, &recommenderv1.RetireVectorSetRequest{})
	if err != nil || retired.GetRetired().GetModel() != "model-a" {
		t.Fatalf("retire: %v (%v)", retired, err)
	}
	if info, _ := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{}); info.GetOtherVectorSet() != nil {
		t.Fatalf("a set left after the retire: %v", info.GetOtherVectorSet())
	}
	_, err = c.RetireVectorSet(ctx, &recommenderv1.RetireVectorSetRequest{})
	wantCode(t, err, codes.FailedPrecondition)
	if _, got := answers(t, c, qs); !slices.Equal(got, wantB) {
		t.Fatalf("after the retire: %v", got)
	}
}

// TestRetireRefusedWhileFilling: a retire is refused while the server fills the set.
func TestRetireRefusedWhileFilling(t *testing.T) {
	ctx := context.Background()
	apiA, apiB := embedtest.New(8), embedtest.New(12)
	defer apiA.Close()
	defer apiB.Close()
	st, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lb, err := startLoopback(ctx, st, fakeModel(t, apiA, "model-a", 8), app.WithReembedding(fakeModel(t, apiB, "model-b", 12)))
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	c := recommenderv1.NewRecommenderServiceClient(lb.Conn)
	if _, err := c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "x", Title: "One paper"}}}); err != nil {
		t.Fatal(err)
	}
	held := apiB.PauseAt(0)
	done := make(chan error, 1)
	go func() { done <- lb.App.Reembed(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the job never asked for a vector")
	}
	_, err = c.RetireVectorSet(ctx, &recommenderv1.RetireVectorSetRequest{})
	if wantCode(t, err, codes.FailedPrecondition); !strings.Contains(status.Convert(err).Message(), "re-embedding") {
		t.Fatalf("retire while filling: %v", err)
	}
	apiB.Resume()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
