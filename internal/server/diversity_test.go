package server_test

import (
	"context"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// Diversity without embeddings compares term sketches (what the store keeps in memory) instead
// of term vectors: over 100 seeds' pools of 100, MMR on sketches must get most of the way exact
// MMR gets in spreading the top 10 (mean pairwise cosine of their term vectors), at the same
// relevance.
func TestSketchDiversityTracksExact(t *testing.T) {
	t.Parallel()
	race.Skip(t)
	srv, papers := sampleServer(t)
	var plainSim, exSim, skSim, exRel, skRel float64 // sums over seeds
	n := 0
	for i := 0; i < len(papers); i += 41 {
		resp, err := srv.Client.Recommend(context.Background(), &recommenderv1.RecommendRequest{PositivePaperIds: []string{papers[i].GetId()}, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) < 100 {
			continue
		}
		var ex, sk []rank.Candidate
		for _, r := range resp.GetResults() {
			v := lexical.Document(r.GetPaper().GetTitle(), r.GetPaper().GetAbstract())
			s := v.Sketch()
			ex = append(ex, rank.Candidate{ID: r.GetPaper().GetId(), Score: r.GetScore(), Lexical: v})
			sk = append(sk, rank.Candidate{ID: r.GetPaper().GetId(), Score: r.GetScore(), Lexical: v, Sketch: &s})
		}
		top := float64(ex[0].Score)
		mean := func(c []rank.Candidate) (sim, rel float64) {
			m := 0
			for a := 0; a < 10; a++ {
				rel += float64(c[a].Score) / top / 10
				for b := a + 1; b < 10; b++ {
					sim += rank.LexicalCosine(c[a].Lexical, c[b].Lexical)
					m++
				}
			}
			return sim / float64(m), rel
		}
		ps, _ := mean(ex) // before MMR reorders it
		e, err := rank.MMR(context.Background(), ex, 0.5, 10)
		if err != nil {
			t.Fatal(err)
		}
		s, err := rank.MMR(context.Background(), sk, 0.5, 10)
		if err != nil {
			t.Fatal(err)
		}
		es, er := mean(e)
		ss, sr := mean(s)
		plainSim, exSim, skSim, exRel, skRel = plainSim+ps, exSim+es, skSim+ss, exRel+er, skRel+sr
		n++
	}
	f := float64(n)
	t.Logf("%d seeds: mean pairwise similarity of the top 10: %.3f plain, %.3f by MMR on term vectors, %.3f by MMR on sketches; "+
		"relevance kept %.3f and %.3f", n, plainSim/f, exSim/f, skSim/f, exRel/f, skRel/f)
	if n < 90 || plainSim-skSim < 0.7*(plainSim-exSim) || skRel < exRel-0.02 {
		t.Fatalf("sketches spread the top 10 by %.3f, term vectors by %.3f (want at least 70%%), relevance %.3f against %.3f",
			(plainSim-skSim)/f, (plainSim-exSim)/f, skRel/f, exRel/f)
	}
}
