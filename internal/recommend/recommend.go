// Package recommend is the recommendation pipeline, independent of any transport: it builds the
// queries from text and seed papers, retrieves and fuses candidates, demotes what negative seeds
// point at, re-ranks for recency and diversity, and explains the results. It also keeps stored
// papers' vectors when their text is unchanged (AttachVectors).
package recommend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// Mode is a retrieval mode.
type Mode int

// Retrieval modes. ModeAuto lets the engine choose: hybrid with an embedder, else lexical.
const (
	ModeAuto Mode = iota
	ModeLexical
	ModeDense
	ModeHybrid
)

func (m Mode) String() string {
	return [...]string{"auto", "lexical", "dense", "hybrid"}[m]
}

// Strategy is how several seeds (the query text counting as one) make one list.
type Strategy int

// Strategies. StrategyAuto is DefaultStrategy.
const (
	StrategyAuto Strategy = iota
	// StrategyPerSeed retrieves each seed's own neighbours and interleaves the lists by rank, so
	// every seed contributes near the top however far apart the seeds are (Qdrant's best_score
	// recommend strategy, by rank rather than by raw score, since BM25 scores of two seeds do not
	// compare).
	StrategyPerSeed
	// StrategyCentroid averages the seeds into one query (Rocchio): papers close to all of them
	// lead, and a seed unlike the others is drowned.
	StrategyCentroid
)

func (s Strategy) String() string {
	return [...]string{"auto", "per-seed", "centroid"}[s]
}

// DefaultStrategy is the strategy of StrategyAuto, chosen with eval's multi-seed benchmark:
// per-seed keeps both topics of a two-seed request in the top 10 where the centroid keeps one
// (BENCHMARKS.md, "Several seeds").
const DefaultStrategy = StrategyPerSeed

// DefaultHybridSeedTerms is how many of a seed's terms hybrid search scores (Engine.HybridSeedTerms):
// a seed's 40 most informative terms cost a fraction of its 96 over a million papers, and
// moved the hybrid CSFCube NDCG%20 and the topic P@10 by less than 0.005 (BENCHMARKS.md,
// "Seed requests at 1M, restated").
const DefaultHybridSeedTerms = 40

// Limits of the pipeline.
const (
	// MaxResults bounds how deep paging goes: each page recomputes the top offset+size papers.
	MaxResults = 1_000
	// MaxSeeds bounds a request's seed papers, stored and inline, positive and negative.
	MaxSeeds = 100
	// RerankPool is how many results by relevance recency and negative seeds re-rank (and
	// diversity with them). It is fixed, whatever page is asked for, so every page comes from the
	// same re-ranked list; paging stops at its end.
	RerankPool = 300
	// DiversityPool is the pool diversity alone re-ranks: ten pages of ten to pick from, at a
	// third of the cost of the 300 that demoting and recency need to refill a page.
	DiversityPool = 100
	// sharedTermsShown bounds the shared terms of an explanation.
	sharedTermsShown = 5
	// sharedTermsSaid bounds the shared terms an explanation's summary names.
	sharedTermsSaid = 3
	// foldRoom is how many hits past a page a search fetches, so duplicates folded into one
	// still leave a full page.
	foldRoom = 10
)

// Request is a validated recommendation request.
type Request struct {
	Text               string
	Positive, Negative []string // seed paper ids, canonical and distinct
	// InlinePositive and InlineNegative are seeds given by their text, never stored.
	InlinePositive, InlineNegative []InlineSeed
	Filter                         store.Filter
	Candidates                     []string // nil: the whole store; else rank only these
	// Matching calibrates the relevance of Candidates as the request without them would (a
	// feed deciding which new papers reach its threshold), not as a list to rank.
	Matching         bool
	Mode             Mode
	Strategy         Strategy
	Diversity        float64       // 0: relevance order
	HalfLife         time.Duration // 0: no recency boost
	Explain, Exact   bool
	Offset, PageSize int
}

// Result is one page of recommendations.
type Result struct {
	Mode     Mode // the mode that ran (lexical after a fallback)
	Strategy Strategy
	// Model is the embedding model the service ranks with ("lexical" without one), and
	// IndexVersion the store's write counter when the request started (0 from a store that
	// keeps none): what the answer was computed from.
	Model        string
	IndexVersion uint64
	// Fallback says why the mode is lexical although the request left it to the service and a
	// model is configured (the embedding API was unavailable); empty otherwise.
	Fallback          string
	Items             []Item
	UnknownCandidates []string
	// Seeds says what became of each seed: ids (positive, then negative) and inline seeds
	// (positive, then negative), in the request's order.
	Seeds []SeedResult
	// NextOffset is where the next page starts; 0 when there is none.
	NextOffset int
	// Coherence is how alike a text query's first results are (see Coherence); 0 for other
	// requests.
	Coherence float64
}

// Item is one recommended paper.
type Item struct {
	Paper       store.Paper
	Score       float32
	Relevance   float32  // calibrated probability that a reader judges it relevant
	Duplicates  []string // ids folded into this one (same normalised title)
	Explanation *Explanation
}

// Explanation says why a paper was recommended.
type Explanation struct {
	LexicalScore, DenseScore float32 // in the list that ranked it best
	LexicalShare             float32 // LexicalScore over the most that list's query can score
	FusedScore               float32 // relevance before recency and diversity
	ClosestSeedID            string
	ClosestSeedSimilarity    float32
	SharedTerms              []rank.TermWeight
	Summary                  string // the above in words, for a reader
}

// Engine runs the pipeline over a store. Set its fields before the first call; they are read
// concurrently after.
type Engine struct {
	Store    store.Store
	Embedder embed.Embedder // nil: lexical only
	// Filling names the model the store's papers are being embedded with while this engine,
	// lexical, answers (see resolveMode); empty otherwise.
	Filling string
	Spec    store.EmbeddingSpec // the store's binding, when Embedder is set
	// Fusion merges the lexical and dense lists of a seed; zero: rank.DefaultFusion for seeds,
	// rank.TextFusion for text.
	Fusion rank.Fusion
	// Fallback answers ModeAuto requests lexically when the embedding API is unavailable.
	Fallback bool
	// HybridSeedTerms, when positive, searches a stored or inline seed's words by its that many
	// most informative terms (weight x idf) in hybrid mode, where the embedding carries most of
	// the ranking; 0: every term (the store scores at most its own bound, 96 on the embedded).
	// The service sets DefaultHybridSeedTerms.
	HybridSeedTerms int
	// AuthorTieBreak orders papers scored equally by the authors they share with the seeds
	// (breakTiesByAuthors). Off by default: measured with recommender-lab eval --author-tie-break.
	AuthorTieBreak bool
}

// Recommend runs the pipeline for one page.
func (e *Engine) Recommend(ctx context.Context, r Request) (*Result, error) {
	mode, err := e.resolveMode(r.Mode)
	if err != nil {
		return nil, err
	}
	strategy := r.Strategy
	if strategy == StrategyAuto {
		strategy = DefaultStrategy
	}
	seeds, statuses, err := e.loadSeeds(ctx, r)
	if err != nil {
		return nil, err
	}
	if mode != ModeLexical {
		noteUnembedded(statuses, seeds)
	}
	p, err := e.plan(ctx, r, mode, strategy, seeds)
	var ee *embed.Error
	fallback := ""
	if err != nil && e.Fallback && r.Mode == ModeAuto && errors.As(err, &ee) && ee.Kind == embed.KindUnavailable {
		mode, fallback = ModeLexical, "embedding API unavailable: "+ee.Error()
		p, err = e.plan(ctx, r, mode, strategy, seeds)
	}
	if err != nil {
		return nil, err
	}
	res := &Result{Mode: mode, Strategy: strategy, Model: e.ModelName(), Fallback: fallback, Seeds: statuses}
	if v, ok := store.As[store.Versioner](e.Store); ok {
		res.IndexVersion = v.Version()
	}
	filter := r.Filter
	var candidates []store.Paper
	if r.Candidates != nil {
		if candidates, res.UnknownCandidates, err = e.known(ctx, r.Candidates); err != nil || len(candidates) == 0 {
			return res, err
		}
		filter.OnlyIDs = make([]string, len(candidates))
		for i := range candidates {
			filter.OnlyIDs[i] = candidates[i].ID
		}
	}

	rerank := r.Diversity > 0 || r.HalfLife > 0 || len(p.negative) > 0
	depth := MaxResults
	switch {
	case r.HalfLife > 0 || len(p.negative) > 0:
		depth = RerankPool
	case r.Diversity > 0:
		depth = DiversityPool
	}
	need := min(r.Offset+r.PageSize, depth)
	// A seed's copies under other ids (same normalised title) are the seed, not a
	// recommendation. A caller that names the candidates gets every one of them ranked.
	var seedTitles []string
	if r.Candidates == nil {
		for _, s := range append(seeds.positive, seeds.negative...) {
			seedTitles = append(seedTitles, s.Title)
		}
	}
	// Diversity compares the pool's papers by embeddings, or without them by term sketches,
	// which a store keeps in memory (a hundred term vectors read and merged would cost several
	// times the request); explanations read the vectors. A pool re-ranked to a page is read
	// brief, and the page's papers whole afterwards.
	ret := retrieval{mode: mode, kind: kindOf(r, len(seeds.positive)), lexicalMax: p.lexicalMax, store: e.Store, filter: filter, exact: r.Exact, vectors: r.Explain,
		comparable: r.Diversity > 0, brief: rerank, dropTitles: seedTitles}
	retrieve := need
	switch ret.kind {
	case KindText:
		retrieve = max(need, min(CoherenceDepth, depth)) // the coherence compares the first ones, whatever the page
	case KindCandidates:
		retrieve = max(need, min(len(candidates), depth)) // the relevance is calibrated in the whole list's context
	}
	cands, more, err := ret.run(ctx, p, retrieve, depth, rerank)
	if err != nil {
		return nil, err
	}
	if ret.kind == KindText && len(p.positive) == 1 {
		if res.Coherence, err = ret.calibrateText(ctx, p.positive[0], cands, r.Matching, r.Filter); err != nil {
			return nil, err
		}
	}
	if !more {
		cands = ret.unmatched(cands, candidates, filter)
	}
	if ret.kind == KindCandidates {
		ret.calibrateAll(cands) // in the whole list's context
	}
	if e.AuthorTieBreak {
		if err := e.breakTiesByAuthors(ctx, cands, seeds.positive); err != nil {
			return nil, err
		}
	}
	// The relevance shown follows the ranking: a result's is at most the one's above it. The
	// ranking fuses signals by rank (RRF, interleaved seeds) and the calibration by value, so a
	// paper below another can score a little higher alone; recency and diversity, which reorder
	// on purpose, come after and leave relevance as it is.
	for i := 1; i < len(cands); i++ {
		cands[i].Relevance = min(cands[i].Relevance, cands[i-1].Relevance)
	}
	fused := make(map[string]float32, len(cands)) // relevance order's scores, for explanations
	for _, c := range cands {
		fused[c.ID] = c.Score
	}
	if r.HalfLife > 0 {
		rank.ApplyRecency(cands, r.HalfLife, time.Now())
	}
	if cands, err = rank.MMR(ctx, cands, r.Diversity, need); err != nil {
		return nil, err
	}

	var idf rank.IDF
	if r.Explain {
		if idf, err = e.termRarity(ctx, p.explainTerms, cands); err != nil {
			return nil, err
		}
	}
	page := cands[min(r.Offset, len(cands)):min(need, len(cands))]
	if ret.brief {
		if err := ret.fill(ctx, page); err != nil {
			return nil, err
		}
	}
	for i := range page {
		if err := ctx.Err(); err != nil { // explaining a page of 100 reads every abstract
			return nil, err
		}
		c := &page[i]
		paper, ok := ret.papers[c.ID]
		if !ok {
			continue // deleted since it was ranked
		}
		it := Item{Paper: paper, Score: c.Score, Relevance: c.Relevance, Duplicates: c.Duplicates}
		if r.Explain {
			it.Explanation = explain(c, &it.Paper, ret.signals[c.ID], fused[c.ID], seeds.positive, p.explainTerms, idf)
		}
		res.Items = append(res.Items, it)
	}
	if (len(cands) > need || more) && need < depth {
		res.NextOffset = need
	}
	return res, nil
}

// ModelName is the embedding model the engine ranks with, "lexical" without one.
func (e *Engine) ModelName() string {
	if e.Embedder == nil {
		return "lexical"
	}
	return e.Spec.Model
}

// Ranking names what orders results: the embedding model and its prefixes, or lexical. Page
// tokens carry it, so a page of one ranking is never mixed with another's.
func (e *Engine) Ranking() string {
	if e.Embedder == nil {
		return "lexical"
	}
	return e.Spec.Model + "\x00" + e.Spec.QueryPrefix + "\x00" + e.Spec.DocumentPrefix
}

// known splits candidate ids into the papers stored and the ids not.
func (e *Engine) known(ctx context.Context, ids []string) (stored []store.Paper, unknown []string, err error) {
	stored, err = e.Store.Lookup(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, p := range stored {
		have[p.ID] = true
	}
	for _, id := range ids {
		if !have[id] {
			unknown = append(unknown, id)
		}
	}
	return stored, unknown, nil
}

// resolveMode picks the retrieval mode: hybrid when an embedder is configured and the request
// leaves it to us, lexical without one; dense or hybrid without an embedder is refused.
func (e *Engine) resolveMode(m Mode) (Mode, error) {
	switch {
	case m == ModeAuto && e.Embedder != nil:
		return ModeHybrid, nil
	case m == ModeAuto:
		return ModeLexical, nil
	case m != ModeLexical && e.Embedder == nil && e.Filling != "":
		return 0, &apierr.PreconditionError{Reason: apierr.EmbeddingNotConfigured, Subject: "server", Message: fmt.Sprintf(
			"retrieval mode %s is not available yet: the server is embedding the store's papers with %s (info shows how far); until then it answers lexically", m, e.Filling)}
	case m != ModeLexical && e.Embedder == nil:
		return 0, &apierr.PreconditionError{Reason: apierr.EmbeddingNotConfigured, Subject: "server", Message: fmt.Sprintf(
			"retrieval mode %s needs an embedding model, and this server has none configured (set EMBEDDING_BASE_URL)", m)}
	}
	return m, nil
}

// termRarity is the idf explanations weigh shared terms by: the corpus's when the store says
// it, else rarity among the candidates.
func (e *Engine) termRarity(ctx context.Context, query lexical.Vector, pool []rank.Candidate) (rank.IDF, error) {
	ts, ok := store.As[store.TermStatser](e.Store)
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
func explain(c *rank.Candidate, p *store.Paper, sig signalScores, fused float32, seeds []store.Paper, terms lexical.Vector, idf rank.IDF) *Explanation {
	x := &Explanation{LexicalScore: sig.lexical, DenseScore: sig.dense, LexicalShare: sig.lexicalShare, FusedScore: fused}
	for i := range seeds {
		seed := rank.Candidate{ID: seeds[i].ID, Lexical: seeds[i].Lexical, Dense: seeds[i].Dense}
		if sim := float32(rank.Similarity(c, &seed)); x.ClosestSeedID == "" || sim > x.ClosestSeedSimilarity {
			x.ClosestSeedID, x.ClosestSeedSimilarity = seed.ID, sim
		}
	}
	x.SharedTerms = rank.SharedTerms(terms, p.Title+"\n"+p.Abstract, idf, sharedTermsShown)
	x.Summary = summarize(x, seeds)
	return x
}

// summarize says an explanation in words: "shares imitation, robotics; close in meaning to your
// seed". A paper is close in meaning when the dense list held it, and the seed named is the
// closest one (by its id when there are several).
func summarize(x *Explanation, seeds []store.Paper) string {
	var parts []string
	if n := min(len(x.SharedTerms), sharedTermsSaid); n > 0 {
		words := make([]string, n)
		for i, t := range x.SharedTerms[:n] {
			words[i] = t.Term
		}
		parts = append(parts, "shares "+strings.Join(words, ", "))
	}
	target := "your query"
	switch {
	case len(seeds) == 1:
		target = "your seed"
	case len(seeds) > 1:
		target = "your seed " + x.ClosestSeedID
	}
	switch {
	case x.DenseScore > 0:
		parts = append(parts, "close in meaning to "+target)
	case len(seeds) > 0 && len(parts) == 0:
		parts = append(parts, "most like "+target)
	}
	if len(parts) == 0 {
		return "ranked by the words of your request"
	}
	return strings.Join(parts, "; ")
}
