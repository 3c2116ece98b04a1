package eval_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/eval"
)

// scripted answers Recommend over two topics of four papers (a1..a4, b1..b4) by rules whose
// measures are known: one positive gets every other paper, its own topic first; two positives
// get three of each topic; a negative of the positive's topic leaves only the other topic; a
// negative of the other topic changes nothing.
type scripted struct {
	recommenderv1.RecommenderServiceClient
}

var world = []string{"a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"}

func (scripted) Recommend(_ context.Context, req *recommenderv1.RecommendRequest, _ ...grpc.CallOption) (*recommenderv1.RecommendResponse, error) {
	pos, neg := req.GetPositivePaperIds(), req.GetNegativePaperIds()
	topic := pos[0][:1]
	var ids []string
	switch {
	case len(pos) == 2:
		for _, t := range []string{pos[0][:1], pos[1][:1]} {
			n := 0
			for _, id := range world {
				if strings.HasPrefix(id, t) && !slices.Contains(pos, id) && n < 3 {
					ids, n = append(ids, id), n+1
				}
			}
		}
	case len(neg) == 1 && neg[0][:1] == topic:
		for _, id := range world {
			if !strings.HasPrefix(id, topic) {
				ids = append(ids, id)
			}
		}
	default:
		for _, own := range []bool{true, false} {
			for _, id := range world {
				if strings.HasPrefix(id, topic) == own && id != pos[0] {
					ids = append(ids, id)
				}
			}
		}
	}
	resp := &recommenderv1.RecommendResponse{}
	for _, id := range ids[:min(len(ids), int(req.GetPageSize()))] {
		resp.Results = append(resp.Results, &recommenderv1.Recommendation{Paper: &recommenderv1.Paper{Id: id}})
	}
	return resp, nil
}

func TestMultiSeedBench(t *testing.T) {
	var papers []*recommenderv1.Paper
	for _, id := range world {
		papers = append(papers, &recommenderv1.Paper{Id: id, Topics: []string{id[:1]}})
	}
	papers = append(papers, &recommenderv1.Paper{Id: "x", Topics: []string{"a", "b"}}) // two topics: never drawn
	m, err := eval.MultiSeedBench(context.Background(), scripted{}, papers, recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL, recommenderv1.SeedStrategy_SEED_STRATEGY_PER_SEED, 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Mix: three of each topic, min 3 of 5. Same-topic negative: no own-topic result is left.
	// Demotion: the positive's top 10 are the 7 other papers; the negative's 20 nearest hold 6
	// of them (all but itself), and the 2 of its topic among those leave. Other topic: as alone.
	want := eval.MultiSeed{Mix: 0.6, SameTopicRetention: 0, Demotion: 2.0 / 6, OtherTopicRetention: 1, Trials: 50}
	if math.Abs(m.Mix-want.Mix) > 1e-9 || m.SameTopicRetention != want.SameTopicRetention ||
		math.Abs(m.Demotion-want.Demotion) > 1e-9 || m.OtherTopicRetention != want.OtherTopicRetention || m.Trials != want.Trials {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if _, err := eval.MultiSeedBench(context.Background(), scripted{}, papers[:1], recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL, recommenderv1.SeedStrategy_SEED_STRATEGY_PER_SEED, 5, 1); err == nil {
		t.Fatal("a corpus of one topic was accepted")
	}
}
