package server

import (
	"context"
	"errors"
	"slices"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// RerankPool is how many results by relevance diversity and recency re-rank. It is fixed,
// whatever page is asked for, so every page comes from the same re-ranked list; paging stops at
// its end.
const RerankPool = 300

// sharedTermsShown bounds the shared terms of an explanation.
const sharedTermsShown = 5

// Recommend implements RecommenderService. The pipeline: build the query from the text and the
// seeds; retrieve by relevance (the store fuses lexical and dense candidates in HYBRID mode);
// fold papers with the same normalised title into the best one; when asked, apply recency and
// diversity over a fixed pool; cut the page; explain it when asked.
func (s *Service) Recommend(ctx context.Context, req *recommenderv1.RecommendRequest) (*recommenderv1.RecommendResponse, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	r, err := parseRecommend(req)
	if err != nil {
		return nil, err
	}
	mode, err := s.resolveMode(r.mode)
	if err != nil {
		return nil, err
	}
	q, seeds, negative, err := s.buildQuery(ctx, r, mode)
	var ee *embed.Error
	if err != nil && s.fallback && r.mode == recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED &&
		errors.As(err, &ee) && ee.Kind == embed.KindUnavailable {
		mode = recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL
		q, seeds, negative, err = s.buildQuery(ctx, r, mode)
	}
	if err != nil {
		return nil, err
	}
	explainLex := q.Lexical
	if mode == recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE {
		q.Lexical = lexical.Vector{}
	}
	resp := &recommenderv1.RecommendResponse{Mode: mode}
	if r.candidates != nil {
		known, err := s.store.Lookup(ctx, r.candidates)
		if err != nil {
			return nil, err
		}
		have := map[string]bool{}
		q.Filter.OnlyIDs = []string{}
		for _, p := range known {
			have[p.ID] = true
			q.Filter.OnlyIDs = append(q.Filter.OnlyIDs, p.ID)
		}
		for _, id := range r.candidates {
			if !have[id] {
				resp.UnknownCandidateIds = append(resp.UnknownCandidateIds, id)
			}
		}
		if len(known) == 0 {
			return resp, nil
		}
	}

	rerank := r.diversity > 0 || r.halfLife > 0
	depth := MaxResults
	if rerank {
		depth = RerankPool
	}
	need := min(r.offset+r.pageSize, depth)
	q.WithVectors = rerank || r.explain
	// A seed's copies under other ids (same normalised title) are the seed, not a recommendation.
	// A caller that names the candidates gets every one of them ranked, copies included.
	var seedTitles []string
	if r.candidates == nil {
		for _, p := range append(slices.Clone(seeds), negative...) {
			seedTitles = append(seedTitles, p.Title)
		}
	}
	cands, papers, more, err := s.retrieve(ctx, q, need, depth, rerank, seedTitles)
	if err != nil {
		return nil, err
	}
	relevance := make(map[string]float32, len(cands))
	for _, c := range cands {
		relevance[c.ID] = c.Score
	}
	if r.halfLife > 0 {
		rank.ApplyRecency(cands, r.halfLife, time.Now())
	}
	cands = rank.MMR(cands, r.diversity, need)

	var signals map[string]signalScores
	var idf rank.IDF
	if r.explain {
		if signals, err = s.signals(ctx, q, mode, relevance); err != nil {
			return nil, err
		}
		if idf, err = s.termRarity(ctx, explainLex, cands); err != nil {
			return nil, err
		}
	}
	if r.offset < len(cands) {
		for i := r.offset; i < min(need, len(cands)); i++ {
			c := &cands[i]
			p := papers[c.ID]
			rec := &recommenderv1.Recommendation{Paper: toProtoPaper(&p), Score: c.Score, DuplicatePaperIds: c.Duplicates}
			if r.explain {
				rec.Explanation = explain(c, &p, signals[c.ID], relevance[c.ID], seeds, explainLex, idf)
			}
			resp.Results = append(resp.Results, rec)
		}
	}
	if (len(cands) > need || more) && need < depth {
		resp.NextPageToken = r.pageToken.encode(need)
	}
	return resp, nil
}

// retrieve returns candidates by relevance with duplicates folded: at least need of them when
// the store has them (the whole pool of depth when re-ranking), and whether more exist.
// Papers titled like one of dropTitles are left out.
func (s *Service) retrieve(ctx context.Context, q store.Query, need, depth int, rerank bool, dropTitles []string) ([]rank.Candidate, map[string]store.Paper, bool, error) {
	limit := min(need+10, depth) // room for folded duplicates
	if rerank {
		limit = depth
	}
	for {
		q.Limit = limit
		hits, err := s.store.Search(ctx, q)
		if err != nil {
			return nil, nil, false, err
		}
		cands := make([]rank.Candidate, len(hits))
		papers := make(map[string]store.Paper, len(hits))
		for i, h := range hits {
			cands[i] = rank.Candidate{ID: h.Paper.ID, Title: h.Paper.Title, Date: h.Paper.Date, Year: h.Paper.Year,
				Score: h.Score, Lexical: h.Paper.Lexical, Dense: h.Paper.Dense}
			papers[h.Paper.ID] = h.Paper
		}
		cands = rank.CollapseDuplicates(cands, dropTitles...)
		exhausted := len(hits) < limit
		if exhausted || len(cands) > need || limit >= depth {
			return cands, papers, !exhausted, nil
		}
		limit = min(limit*2, depth)
	}
}

// signalScores are one paper's scores by each signal.
type signalScores struct{ lexical, dense float32 }

// signals scores the candidates by each signal separately, for explanations. In HYBRID mode
// that takes one search per signal, as deep as the fusion looked.
func (s *Service) signals(ctx context.Context, q store.Query, mode recommenderv1.RetrievalMode, relevance map[string]float32) (map[string]signalScores, error) {
	out := make(map[string]signalScores, len(relevance))
	switch mode {
	case recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL:
		for id, sc := range relevance {
			out[id] = signalScores{lexical: sc}
		}
		return out, nil
	case recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE:
		for id, sc := range relevance {
			out[id] = signalScores{dense: sc}
		}
		return out, nil
	}
	depth := q.Fusion.OrDefault().ListDepth(len(relevance))
	for _, side := range []struct {
		q   store.Query
		set func(*signalScores, float32)
	}{
		{store.Query{Lexical: q.Lexical, Filter: q.Filter, Limit: depth}, func(s *signalScores, v float32) { s.lexical = v }},
		{store.Query{Dense: q.Dense, Filter: q.Filter, Limit: depth, Exact: q.Exact}, func(s *signalScores, v float32) { s.dense = v }},
	} {
		hits, err := s.store.Search(ctx, side.q)
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			if _, ok := relevance[h.Paper.ID]; ok {
				sc := out[h.Paper.ID]
				side.set(&sc, h.Score)
				out[h.Paper.ID] = sc
			}
		}
	}
	return out, nil
}

// termRarity is the idf explanations weigh shared terms by: the corpus's when the store says
// it, else rarity among the candidates.
func (s *Service) termRarity(ctx context.Context, query lexical.Vector, pool []rank.Candidate) (rank.IDF, error) {
	ts, ok := s.store.(store.TermStatser)
	if !ok {
		return rank.PoolRarity(pool), nil
	}
	vals, err := ts.IDF(ctx, query.Indices)
	if err != nil {
		return nil, err
	}
	byTerm := make(map[uint32]float64, len(vals))
	for i, t := range query.Indices {
		byTerm[t] = vals[i]
	}
	return func(t uint32) float64 { return byTerm[t] }, nil
}

// explain builds a result's explanation.
func explain(c *rank.Candidate, p *store.Paper, sig signalScores, relevance float32, seeds []store.Paper, query lexical.Vector, idf rank.IDF) *recommenderv1.Explanation {
	e := &recommenderv1.Explanation{LexicalScore: sig.lexical, DenseScore: sig.dense, FusedScore: relevance}
	for i := range seeds {
		seed := rank.Candidate{ID: seeds[i].ID, Lexical: seeds[i].Lexical, Dense: seeds[i].Dense}
		if sim := float32(rank.Similarity(c, &seed)); e.ClosestSeedId == "" || sim > e.ClosestSeedSimilarity {
			e.ClosestSeedId, e.ClosestSeedSimilarity = seed.ID, sim
		}
	}
	for _, t := range rank.SharedTerms(query, p.Title+"\n"+p.Abstract, idf, sharedTermsShown) {
		e.SharedTerms = append(e.SharedTerms, &recommenderv1.SharedTerm{Term: t.Term, Weight: t.Weight})
	}
	return e
}
