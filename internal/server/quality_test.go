package server_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/testutil"
)

// minTopicPrecision is the quality bar for lexical recommendations on the shared arXiv sample.
const minTopicPrecision = 0.60

// TestTopicPrecisionAt10 recommends by each paper of the shared arXiv sample as the only seed,
// through the gRPC API, and counts a result as relevant when it shares a topic label with the
// seed. Run with -v to see the figure.
func TestTopicPrecisionAt10(t *testing.T) {
	if testing.Short() {
		t.Skip("ingests 4,082 papers; skipped with -short")
	}
	papers := testutil.ReadPapers(t, filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz"))
	srv := testutil.StartServer(t)
	testutil.Ingest(t, srv.Client, papers)
	p := topicPrecision(t, srv.Client, papers)
	t.Logf("topic precision@10 over %d seed papers: %.4f (bar %.2f)", len(papers), p, minTopicPrecision)
	if p < minTopicPrecision {
		t.Fatalf("topic precision@10 = %.4f, below %.2f", p, minTopicPrecision)
	}
}

// topicPrecision is the mean, over seeds, of the share of the top 10 that shares a topic with the
// seed. A seed with fewer than 10 results counts the missing ones as misses.
func topicPrecision(tb testing.TB, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper) float64 {
	topics := map[string][]string{}
	for _, p := range papers {
		topics[p.GetId()] = p.GetTopics()
	}
	var sum float64
	for _, p := range papers {
		resp, err := c.Recommend(context.Background(), &recommenderv1.RecommendRequest{
			PositivePaperIds: []string{p.GetId()}, PageSize: 10})
		if err != nil {
			tb.Fatalf("recommend by %s: %v", p.GetId(), err)
		}
		hits := 0
		for _, r := range resp.GetResults() {
			for _, topic := range topics[r.GetPaper().GetId()] {
				if slices.Contains(p.GetTopics(), topic) {
					hits++
					break
				}
			}
		}
		sum += float64(hits) / 10
	}
	return sum / float64(len(papers))
}
