package server_test

import (
	"path/filepath"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/eval"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// Quality bars for lexical recommendations, measured through the gRPC API. Run with -v to see
// the figures; `recommender-lab eval` prints them for every mode.
const (
	minTopicPrecision = 0.60
	minCSFCubeNDCG    = 0.56
)

// TestTopicPrecisionAt10 recommends by each paper of the shared arXiv sample as the only seed
// and counts a result as relevant when it shares a topic label with the seed.
func TestTopicPrecisionAt10(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("ingests 4,082 papers; skipped with -short")
	}
	race.Skip(t)
	srv, papers := sampleServer(t)
	p, err := eval.TopicPrecision(ctx, srv.Client, papers, recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("topic precision@10 over %d seed papers: %.4f (bar %.2f)", len(papers), p, minTopicPrecision)
	if p < minTopicPrecision {
		t.Fatalf("topic precision@10 = %.4f, below %.2f", p, minTopicPrecision)
	}
}

// TestCSFCubeLexical ranks every CSFCube pool by similarity to its query paper, lexically,
// and scores the dev split.
func TestCSFCubeLexical(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("ingests 4,205 papers; skipped with -short")
	}
	race.Skip(t)
	c, err := eval.LoadCSFCube(filepath.Join(testutil.SharedDir(t), "eval", "csfcube"))
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.StartServer(t)
	if resp := testutil.Ingest(t, srv.Client, c.Corpus); resp.GetInserted() != int64(len(c.Corpus)) {
		t.Fatalf("ingested %d of %d papers: %v", resp.GetInserted(), len(c.Corpus), resp.GetRejections())
	}
	s, rankings, err := c.Evaluate(ctx, srv.Client, recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CSFCube dev, lexical, %d rows: NDCG%%20 %.4f, NDCG@20 %.4f (bar %.2f)", s.Rows, s.NDCGPct20, s.NDCG20, minCSFCubeNDCG)
	for i, r := range rankings {
		if len(r.Ranked) != len(c.Pools[i].Candidates) {
			t.Fatalf("row %s/%s: %d ranked of %d candidates", r.QueryID, r.Facet, len(r.Ranked), len(c.Pools[i].Candidates))
		}
	}
	if len(rankings) != 50 || s.Rows != 24 {
		t.Fatalf("%d rankings, %d dev rows; want 50 and 24", len(rankings), s.Rows)
	}
	if s.NDCGPct20 < minCSFCubeNDCG {
		t.Fatalf("NDCG%%20 = %.4f, below %.2f", s.NDCGPct20, minCSFCubeNDCG)
	}
}
