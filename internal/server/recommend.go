package server

import (
	"context"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/recommend"
)

// Recommend implements RecommenderService: it validates the request, runs the pipeline
// (internal/recommend) and converts its page, with the token of the next one.
func (s *Service) Recommend(ctx context.Context, req *recommenderv1.RecommendRequest) (*recommenderv1.RecommendResponse, error) {
	var r *recommendRequest
	res, err := s.app.Recommend(ctx, func(ranking string) (recommend.Request, error) {
		var err error
		if r, err = parseRecommend(req, ranking); err != nil {
			return recommend.Request{}, err
		}
		return r.Request, nil
	})
	if err != nil {
		return nil, err
	}
	resp := &recommenderv1.RecommendResponse{Mode: toProtoMode(res.Mode), Strategy: toProtoStrategy(res.Strategy),
		UnknownCandidateIds: res.UnknownCandidates, EmbeddingModel: res.Model, IndexVersion: res.IndexVersion, Fallback: res.Fallback,
		Coherence: float32(res.Coherence),
		Seeds:     seedReport(req, res.Seeds)}
	for i := range res.Items {
		it := &res.Items[i]
		rec := &recommenderv1.Recommendation{Paper: toProtoPaper(&it.Paper), Score: it.Score, Relevance: it.Relevance, DuplicatePaperIds: it.Duplicates}
		if x := it.Explanation; x != nil {
			rec.Explanation = &recommenderv1.Explanation{LexicalScore: x.LexicalScore, DenseScore: x.DenseScore, FusedScore: x.FusedScore,
				ClosestSeedId: x.ClosestSeedID, ClosestSeedSimilarity: x.ClosestSeedSimilarity, Summary: x.Summary, LexicalSimilarity: x.LexicalShare}
			for _, t := range x.SharedTerms {
				rec.Explanation.SharedTerms = append(rec.Explanation.SharedTerms, &recommenderv1.SharedTerm{Term: t.Term, Weight: t.Weight})
			}
		}
		resp.Results = append(resp.Results, rec)
	}
	if res.NextOffset > 0 {
		resp.NextPageToken = r.pageToken.encode(res.NextOffset)
	}
	return resp, nil
}

// seedReport lists every seed of the request as given, with what became of it: the pipeline
// saw each id once, so a repeated one (after canonicalisation) is reported as a duplicate here.
func seedReport(req *recommenderv1.RecommendRequest, results []recommend.SeedResult) []*recommenderv1.Seed {
	type key struct {
		id       string
		negative bool
	}
	byID := map[key]recommend.SeedResult{}
	var out []*recommenderv1.Seed
	for _, r := range results {
		if r.Inline < 0 {
			byID[key{r.ID, r.Negative}] = r
		}
	}
	for _, side := range []struct {
		ids      []string
		negative bool
	}{{req.GetPositivePaperIds(), false}, {req.GetNegativePaperIds(), true}} {
		seen := map[string]bool{}
		for _, raw := range side.ids {
			id := CanonicalID(raw)
			s := &recommenderv1.Seed{Source: &recommenderv1.Seed_PaperId{PaperId: id}, Negative: side.negative,
				Status: recommenderv1.SeedStatus_SEED_STATUS_DUPLICATE}
			if !seen[id] {
				seen[id] = true
				r := byID[key{id, side.negative}]
				s.Status, s.Title = seedStatuses[r.Status], r.Title
			}
			out = append(out, s)
		}
	}
	for _, r := range results {
		if r.Inline >= 0 {
			out = append(out, &recommenderv1.Seed{Source: &recommenderv1.Seed_InlineIndex{InlineIndex: int32(r.Inline)},
				Negative: r.Negative, Status: seedStatuses[r.Status], Title: r.Title})
		}
	}
	return out
}

var seedStatuses = map[recommend.SeedStatus]recommenderv1.SeedStatus{
	recommend.SeedFound:       recommenderv1.SeedStatus_SEED_STATUS_FOUND,
	recommend.SeedInline:      recommenderv1.SeedStatus_SEED_STATUS_INLINE,
	recommend.SeedNotFound:    recommenderv1.SeedStatus_SEED_STATUS_NOT_FOUND,
	recommend.SeedDuplicate:   recommenderv1.SeedStatus_SEED_STATUS_DUPLICATE,
	recommend.SeedNoEmbedding: recommenderv1.SeedStatus_SEED_STATUS_NO_EMBEDDING,
}

// The API's enums and the pipeline's.
var (
	modes = map[recommenderv1.RetrievalMode]recommend.Mode{
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED: recommend.ModeAuto,
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL:     recommend.ModeLexical,
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE:       recommend.ModeDense,
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID:      recommend.ModeHybrid,
	}
	strategies = map[recommenderv1.SeedStrategy]recommend.Strategy{
		recommenderv1.SeedStrategy_SEED_STRATEGY_UNSPECIFIED: recommend.StrategyAuto,
		recommenderv1.SeedStrategy_SEED_STRATEGY_PER_SEED:    recommend.StrategyPerSeed,
		recommenderv1.SeedStrategy_SEED_STRATEGY_CENTROID:    recommend.StrategyCentroid,
	}
)

func toProtoMode(m recommend.Mode) recommenderv1.RetrievalMode { return keyOf(modes, m) }

func toProtoStrategy(s recommend.Strategy) recommenderv1.SeedStrategy { return keyOf(strategies, s) }

func keyOf[K comparable, V comparable](m map[K]V, v V) K {
	for k, x := range m {
		if x == v {
			return k
		}
	}
	var zero K
	return zero
}
