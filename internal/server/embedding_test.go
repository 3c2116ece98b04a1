package server_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/embed/modeltest"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/testutil"
)

const testDims = 64

func newEmbedder(t *testing.T, api *embedtest.Server, model string) *embed.Client {
	t.Helper()
	return newPrefixedEmbedder(t, api, model, embed.Prefixes{})
}

func newPrefixedEmbedder(t *testing.T, api *embedtest.Server, model string, p embed.Prefixes) *embed.Client {
	t.Helper()
	c, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: model, APIKey: "sk-test", Prefixes: p,
		InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hybridServer serves the demo corpus, embedded through a fake API whose calls are counted.
func hybridServer(t *testing.T) (*testutil.Server, *embedtest.Server) {
	t.Helper()
	api := embedtest.New(testDims)
	t.Cleanup(api.Close)
	return demoServerWith(t, newEmbedder(t, api, "fake-embed")), api
}

// demoServerWith serves the demo corpus, embedded with emb when it is set (checking that each
// paper was embedded).
func demoServerWith(t *testing.T, emb *embed.Client) *testutil.Server {
	t.Helper()
	opts := testutil.Options{}
	if emb != nil {
		opts.Embedder = emb
	}
	srv := testutil.StartServerWith(t, opts) // may probe the model's size: one input
	var before embed.Stats
	if emb != nil {
		before = emb.Stats()
	}
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	if resp := testutil.Ingest(t, srv.Client, papers); resp.GetInserted() != int64(len(papers)) {
		t.Fatalf("ingested %d of %d demo papers: %v", resp.GetInserted(), len(papers), resp)
	}
	if emb != nil {
		if n := emb.Stats().Inputs - before.Inputs; n != int64(len(papers)) {
			t.Fatalf("ingest embedded %d texts, want %d", n, len(papers))
		}
	}
	return srv
}

// TestModesOverGRPC runs every retrieval mode by seed and by text, on hashed vectors from the
// fake API and on a real model's.
func TestModesOverGRPC(t *testing.T) {
	t.Parallel()
	t.Run("fake API", func(t *testing.T) {
		api := embedtest.New(testDims)
		t.Cleanup(api.Close)
		testModes(t, newEmbedder(t, api, "fake-embed"), testDims)
	})
	t.Run("real model", func(t *testing.T) {
		testModes(t, modeltest.Start(t).Client(t), 384)
	})
}

func testModes(t *testing.T, emb *embed.Client, dims int) {
	srv := demoServerWith(t, emb)
	info, err := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetEmbeddingModel() != emb.Model() || info.GetEmbeddingDimensions() != int32(dims) {
		t.Fatalf("index info %v, %v", info, err)
	}
	for _, mode := range []recommenderv1.RetrievalMode{
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED, recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL,
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID,
	} {
		want := mode
		if mode == recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED {
			want = recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID // the default with an embedder
		}
		// Seed requests use stored vectors: no embedding call.
		before := emb.Stats()
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0019"}, Mode: mode, PageSize: 5})
		if err != nil {
			t.Fatalf("%v by seed: %v", mode, err)
		}
		if n := emb.Stats().Requests - before.Requests; n != 0 {
			t.Errorf("%v by seed made %d embedding calls, want 0", mode, n)
		}
		if resp.GetMode() != want || len(resp.GetResults()) != 5 {
			t.Fatalf("%v by seed: mode %v, %d results", mode, resp.GetMode(), len(resp.GetResults()))
		}
		// demo-0019 is about speech recognition; its closest paper in every mode is another
		// speech recognition paper.
		if top := resp.GetResults()[0].GetPaper(); !strings.Contains(strings.ToLower(top.GetTitle()+top.GetAbstract()), "speech") {
			t.Errorf("%v: top result %q is not about speech", mode, top.GetTitle())
		}

		// A text query embeds the text once (lexical mode: never).
		before = emb.Stats()
		resp, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "robot manipulation with reinforcement learning", Mode: mode})
		if err != nil {
			t.Fatalf("%v by text: %v", mode, err)
		}
		after := emb.Stats()
		wantCalls := int64(1)
		if want == recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL {
			wantCalls = 0
		}
		if after.Requests-before.Requests != wantCalls || after.Inputs-before.Inputs != wantCalls {
			t.Errorf("%v by text: %d embedding calls of %d inputs, want %d of one input", mode,
				after.Requests-before.Requests, after.Inputs-before.Inputs, wantCalls)
		}
		if resp.GetMode() != want || len(resp.GetResults()) == 0 {
			t.Fatalf("%v by text: mode %v, %d results", mode, resp.GetMode(), len(resp.GetResults()))
		}
	}
}

func TestUnchangedReingestMakesNoEmbeddingCall(t *testing.T) {
	t.Parallel()
	srv, api := hybridServer(t)
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	before := len(api.Requests())
	if resp := testutil.Ingest(t, srv.Client, papers); resp.GetUnchanged() != int64(len(papers)) {
		t.Fatalf("re-ingest %v", resp)
	}
	if n := len(api.Requests()) - before; n != 0 {
		t.Fatalf("unchanged re-ingest made %d embedding calls", n)
	}
	// A changed abstract is re-embedded; a changed author list alone is not.
	papers[0].Abstract += " Revised."
	papers[1].Authors = append(papers[1].Authors, "New Author")
	before = api.Inputs()
	resp := testutil.Ingest(t, srv.Client, papers[:2])
	if resp.GetUpdated() != 2 || api.Inputs()-before != 1 {
		t.Fatalf("ingest of one changed text and one changed author list: %v, %d texts embedded; want 2 updated, 1 embedded", resp, api.Inputs()-before)
	}
	// The re-embedded vector is the one of the new text.
	got, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{papers[1].GetId()},
		Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, PageSize: 1})
	if err != nil || len(got.GetResults()) != 1 {
		t.Fatalf("dense by a paper whose vector was kept: %v, %v", got, err)
	}
}

func TestBadEmbeddingsStoreNothing(t *testing.T) {
	t.Parallel()
	srv, api := hybridServer(t)
	for _, f := range []embedtest.Fault{{WrongDims: true}, {NaN: true}, {Status: 500}} {
		api.Inject(f, f) // the client tries twice
		_, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{
			{Id: "fresh-1", Title: "A fresh paper", Abstract: "Never stored."}, {Id: "fresh-2", Title: "Another"}}})
		wantCode(t, err, codes.Unavailable)
		for _, id := range []string{"fresh-1", "fresh-2"} {
			_, err := srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: id})
			wantCode(t, err, codes.NotFound)
		}
		api.ClearFaults() // bad responses are not retried, so one of each pair is left
	}
	api.Inject(embedtest.Fault{Status: 429, Code: "insufficient_quota"})
	_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech"})
	wantCode(t, err, codes.FailedPrecondition)
}

// apiAndStore returns a fake embedding API and an embedded store in a fresh directory, both
// closed when the test ends (the store may be closed before).
func apiAndStore(t *testing.T) (*embedtest.Server, *embedded.Store, string) {
	t.Helper()
	api := embedtest.New(testDims)
	t.Cleanup(api.Close)
	dir := t.TempDir()
	st, err := embedded.Open(ctx, embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return api, st, dir
}

// A store filled lexically, then served with a model: the server does not answer hybrid over
// papers without vectors. It stays lexical and says how far the embedding is (GetIndexInfo),
// fills the vectors in the background (Reembed, which serve starts), then switches to the model;
// from then on a server without the model is refused, with the flags to give.
func TestLexicalStoreGetsItsFirstModel(t *testing.T) {
	t.Parallel()
	api, st, _ := apiAndStore(t)
	lexicalApp, err := app.New(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var papers []*recommenderv1.Paper
	for i := range 20 {
		papers = append(papers, &recommenderv1.Paper{Id: fmt.Sprintf("old-%02d", i), Title: fmt.Sprintf("Stored before the model, on topic %d", i%4),
			Abstract: fmt.Sprintf("Words about topic %d and item %d.", i%4, i)})
	}
	if _, err := server.NewService(lexicalApp).UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: papers}); err != nil {
		t.Fatal(err)
	}
	lb, err := startLoopback(ctx, st, newEmbedder(t, api, "fake-embed"))
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	c := recommenderv1.NewRecommenderServiceClient(lb.Conn)
	info, err := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetEmbeddingModel() != server.LexicalModel || info.GetPapersWithVectors() != 0 {
		t.Fatalf("before the fill: %v (%v), want lexical, no paper embedded", info, err)
	}
	resp, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"old-01"}})
	if err != nil || resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL || len(resp.GetResults()) == 0 {
		t.Fatalf("a seed before the fill: %v (%v), want lexical results", resp, err)
	}
	_, err = c.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "topic", Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE})
	if wantCode(t, err, codes.FailedPrecondition); !strings.Contains(err.Error(), "not available yet") {
		t.Fatalf("dense before the fill: %v", err)
	}
	if err := lb.App.Reembed(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	info, err = c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetEmbeddingModel() != "fake-embed" || info.GetPapersWithVectors() != 20 || info.GetPaperCount() != 20 {
		t.Fatalf("after the fill: %v (%v), want fake-embed with 20 of 20 papers embedded", info, err)
	}
	resp, err = c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"old-01"}, Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE})
	if err != nil || len(resp.GetResults()) == 0 {
		t.Fatalf("dense after the fill: %v (%v)", resp, err)
	}
	lb.Close()
	_, err = app.New(ctx, st, nil)
	var mr *app.ModelRequiredError
	if !errors.As(err, &mr) || !strings.Contains(err.Error(), "--embedding-model fake-embed") {
		t.Fatalf("a lexical server over the embedded store: %v, want it refused with the flag to add", err)
	}
}

// A seed stored without a vector in a store bound to the model (written around the service)
// is used by its words, with a note on the seed, never an error; the other signals still run.
func TestSeedWithoutVectorIsUsedLexically(t *testing.T) {
	t.Parallel()
	api, st, dir := apiAndStore(t)
	if _, err := st.BindEmbedding(ctx, store.EmbeddingSpec{Model: "fake-embed", Dimensions: testDims}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Upsert(ctx, []store.Paper{{ID: "old", Title: "Speech recognition stored without a vector",
		Lexical: lexical.Document("Speech recognition stored without a vector", "")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	srv := testutil.StartServerWith(t, testutil.Options{Dir: dir, Embedder: newEmbedder(t, api, "fake-embed")})
	testutil.Ingest(t, srv.Client, []*recommenderv1.Paper{{Id: "new", Title: "Speech recognition with a vector"}, {Id: "other", Title: "Graph databases"}})
	info, err := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetPapersWithVectors() != 2 || info.GetPaperCount() != 3 {
		t.Fatalf("coverage %d of %d (%v), want 2 of 3", info.GetPapersWithVectors(), info.GetPaperCount(), err)
	}
	for _, mode := range []recommenderv1.RetrievalMode{recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID, recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE} {
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"old", "new"}, Mode: mode})
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		if st := resp.GetSeeds(); len(st) != 2 || st[0].GetStatus() != recommenderv1.SeedStatus_SEED_STATUS_NO_EMBEDDING || st[1].GetStatus() != recommenderv1.SeedStatus_SEED_STATUS_FOUND {
			t.Fatalf("%v: seeds %v, want old noted as not embedded and new found", mode, st)
		}
		if len(resp.GetResults()) == 0 {
			t.Fatalf("%v: no results", mode)
		}
	}
	// Written again, as backfill or serve --load would, the paper gets its vector.
	testutil.Ingest(t, srv.Client, []*recommenderv1.Paper{{Id: "old", Title: "Speech recognition stored without a vector"}})
	info, err = srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetPapersWithVectors() != 3 {
		t.Fatalf("after writing it again: coverage %d of %d (%v), want 3 of 3", info.GetPapersWithVectors(), info.GetPaperCount(), err)
	}
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"old"}, Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE})
	if err != nil || resp.GetSeeds()[0].GetStatus() != recommenderv1.SeedStatus_SEED_STATUS_FOUND {
		t.Fatalf("the seed written again: %v (%v), want found with its vector", resp.GetSeeds(), err)
	}
}

func TestModelMismatchIsRefused(t *testing.T) {
	t.Parallel()
	api := embedtest.New(testDims)
	defer api.Close()
	st, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := app.New(ctx, st, newEmbedder(t, api, "model-a")); err != nil {
		t.Fatal(err)
	}
	_, err = app.New(ctx, st, newEmbedder(t, api, "model-b"))
	var mm *store.EmbeddingMismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), `vectors of model "model-a"`) {
		t.Fatalf("second model: %v, want a mismatch naming model-a", err)
	}
	// The same model again needs no probe: its size comes from the store.
	before := len(api.Requests())
	if _, err := app.New(ctx, st, newEmbedder(t, api, "model-a")); err != nil || len(api.Requests()) != before {
		t.Fatalf("reopen with the same model: %v, %d probe calls", err, len(api.Requests())-before)
	}
}

// TestPrefixesAreSentAndBound: an asymmetric model's documents and queries are embedded with
// their prefixes, seeds use the stored document vectors, and the store refuses other prefixes
// as it refuses another model.
func TestPrefixesAreSentAndBound(t *testing.T) {
	t.Parallel()
	api := embedtest.New(testDims)
	defer api.Close()
	e5 := embed.Prefixes{Query: "query: ", Document: "passage: "}
	dir := t.TempDir()
	st, err := embedded.Open(ctx, embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lb, err := startLoopback(ctx, st, newPrefixedEmbedder(t, api, "e5-like", e5))
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	client := recommenderv1.NewRecommenderServiceClient(lb.Conn)
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Ingest(t, client, papers[:5])
	want := "passage: " + embed.PaperText(papers[0].GetTitle(), papers[0].GetAbstract())
	var docs []string
	for _, r := range api.Requests() {
		docs = append(docs, r.Inputs...)
	}
	if len(docs) < 5 || !slices.Contains(docs, want) {
		t.Fatalf("documents embedded as %q, want each with the document prefix, e.g. %q", docs, want)
	}
	for _, d := range docs {
		if !strings.HasPrefix(d, "passage: ") {
			t.Fatalf("document embedded without its prefix: %q", d)
		}
	}
	before := len(api.Requests())
	if _, err := client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition"}); err != nil {
		t.Fatal(err)
	}
	if got := api.Requests()[before:]; len(got) != 1 || !slices.Equal(got[0].Inputs, []string{"query: speech recognition"}) {
		t.Fatalf("query embedded as %v, want one input %q", got, "query: speech recognition")
	}
	info, err := client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetEmbeddingQueryPrefix() != e5.Query || info.GetEmbeddingDocumentPrefix() != e5.Document {
		t.Fatalf("index info %v, %v: want the prefixes", info, err)
	}
	before = len(api.Requests())
	if _, err := client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{papers[0].GetId()}}); err != nil {
		t.Fatal(err)
	}
	if n := len(api.Requests()) - before; n != 0 {
		t.Fatalf("a seed request made %d embedding calls; seeds use their stored document vectors", n)
	}

	for _, other := range []embed.Prefixes{{}, {Query: "query: ", Document: ""}, {Query: "search_query: ", Document: "passage: "}} {
		_, err := app.New(ctx, st, newPrefixedEmbedder(t, api, "e5-like", other))
		var mm *store.EmbeddingMismatchError
		if !errors.As(err, &mm) || !strings.Contains(err.Error(), `query prefix "query: ", document prefix "passage: "`) {
			t.Fatalf("prefixes %+v over e5's: %v, want a mismatch naming the stored prefixes", other, err)
		}
	}
	if _, err := app.New(ctx, st, newPrefixedEmbedder(t, api, "e5-like", e5)); err != nil {
		t.Fatalf("the same prefixes again: %v", err)
	}
}
