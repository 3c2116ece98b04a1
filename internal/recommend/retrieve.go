package recommend

import (
	"context"
	"slices"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// signalScores are one paper's scores by each signal, and its lexical score as a share of the
// most its list's query can score.
type signalScores struct{ lexical, dense, lexicalShare float32 }

// retrieval searches a plan's lists and merges them into candidates, keeping what the later
// steps need of each paper.
type retrieval struct {
	mode           Mode
	kind           Kind
	lexicalMax     []float64 // of each positive list (plan.lexicalMax)
	store          store.Store
	filter         store.Filter
	exact, vectors bool
	comparable     bool     // the positive lists' hits carry sketches and embeddings (store.Query.Comparable)
	brief          bool     // hits are read brief (store.Query.Brief); fill reads the page whole
	dropTitles     []string // papers titled so are left out (a seed's copies)

	papers    map[string]store.Paper
	signals   map[string]signalScores
	coherence float64 // a text query's (calibrateText)
}

// run returns candidates by relevance with duplicates folded: at least need of them when the
// store has them (the whole pool of depth when re-ranking), and whether more exist.
func (rt *retrieval) run(ctx context.Context, p plan, need, depth int, rerank bool) ([]rank.Candidate, bool, error) {
	limit := min(need+foldRoom, depth)
	if rerank {
		limit = depth
	}
	for {
		lists, exhausted, err := rt.search(ctx, p.positive, limit, rt.fields())
		if err != nil {
			return nil, false, err
		}
		if err := rt.completeScores(ctx, p.positive, lists); err != nil {
			return nil, false, err
		}
		cands, ranks := rt.merge(lists)
		if len(p.negative) > 0 {
			negLists, _, err := rt.search(ctx, p.negative, NegativeReach, noRead)
			if err != nil {
				return nil, false, err
			}
			cands = Demote(cands, ranks, bestRanks(negLists))
		}
		cands = rank.CollapseDuplicates(cands, rt.dropTitles...)
		if exhausted || len(cands) > need || limit >= depth {
			return cands, !exhausted, nil
		}
		limit = min(limit*2, depth)
	}
}

// hit is a paper a list found, with what the later steps read of it.
type hit struct {
	paper  store.Paper
	sketch *lexical.Sketch
	// score is its score in the list (fused in hybrid); lexical and dense its score in each
	// signal's own list (0: not found by it).
	score, lexical, dense float32
}

// noRead asks search for the lists' ids and scores alone: a negative seed's list is only ranks.
const noRead = ^store.Fields(0) // not a set of fields: nothing is read

// fields is what the positive lists read of their papers: brief when a page is filled in
// after, term and dense vectors for explanations, sketches and embeddings for diversity.
func (rt *retrieval) fields() store.Fields {
	var f store.Fields
	if !rt.brief {
		f |= store.Metadata
	}
	if rt.vectors {
		f |= store.LexicalVector | store.DenseVector
	}
	if rt.comparable {
		f |= store.DenseVector | store.Sketch
	}
	return f
}

// completeScores gives each hit of a hybrid list the score of the signal whose own list did
// not reach it (a fused list is the union of two lists of some depth): its relevance is
// calibrated on both, and must not depend on how deep the lists were read, that is on the page
// size. One search by each signal over the papers missing its score.
func (rt *retrieval) completeScores(ctx context.Context, qs []query, lists [][]hit) error {
	if rt.mode != ModeHybrid {
		return nil
	}
	for i, hits := range lists {
		var noLexical, noDense []string
		for _, h := range hits {
			if h.lexical == 0 {
				noLexical = append(noLexical, h.paper.ID)
			}
			if h.dense == 0 {
				noDense = append(noDense, h.paper.ID)
			}
		}
		for _, signal := range []struct {
			ids []string
			q   store.Query
			set func(h *hit, score float32)
		}{
			{noLexical, store.Query{Lexical: qs[i].Lexical}, func(h *hit, v float32) { h.lexical = v }},
			{noDense, store.Query{Dense: qs[i].Dense, DenseSet: qs[i].DenseSet}, func(h *hit, v float32) { h.dense = v }},
		} {
			if len(signal.ids) == 0 || (signal.q.Lexical.Len() == 0 && len(signal.q.Dense) == 0) {
				continue
			}
			q := signal.q
			q.Filter, q.Limit, q.Exact = rt.filter, len(signal.ids), true
			q.Filter.OnlyIDs = signal.ids
			found, err := rt.store.Search(ctx, q)
			if err != nil {
				return err
			}
			scores := make(map[string]float32, len(signal.ids))
			for _, f := range append(found.Lexical, found.Dense...) {
				scores[f.ID] = f.Score
			}
			for j := range hits {
				if v, ok := scores[hits[j].paper.ID]; ok {
					signal.set(&hits[j], v)
				}
			}
		}
	}
	return nil
}

// search runs each query to limit under the request's filter, reading fields of the papers
// found; exhausted says no list had more.
func (rt *retrieval) search(ctx context.Context, qs []query, limit int, fields store.Fields) ([][]hit, bool, error) {
	lists := make([][]hit, len(qs))
	exhausted := true
	for i, q := range qs {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		hits, err := rt.find(ctx, q, rt.filter, limit, fields)
		if err != nil {
			return nil, false, err
		}
		lists[i] = hits
		exhausted = exhausted && len(hits) < limit
	}
	return lists, exhausted, nil
}

// find returns q's best limit papers that pass filter, with fields read: each signal's list
// from the store, fused when there are two (from lists as deep as the fusion reads), then the
// papers kept read in that order (one deleted meanwhile is left out).
func (rt *retrieval) find(ctx context.Context, q query, filter store.Filter, limit int, fields store.Fields) ([]hit, error) {
	sq := q.Query
	sq.Filter, sq.Limit, sq.Exact = filter, limit, rt.exact
	hybrid := sq.Lexical.Len() > 0 && len(sq.Dense) > 0
	if hybrid {
		sq.Limit = q.fusion.ListDepth(limit)
	}
	lists, err := rt.store.Search(ctx, sq)
	if err != nil {
		return nil, err
	}
	var ranked []rank.Fused
	switch {
	case hybrid:
		ranked = q.fusion.Fuse(limit, lists.Lexical, lists.Dense)
	case len(sq.Dense) > 0:
		ranked = rank.OneSignal(lists.Dense, false)
	default:
		ranked = rank.OneSignal(lists.Lexical, true)
	}
	hits := make([]hit, len(ranked))
	for i, r := range ranked {
		hits[i] = hit{paper: store.Paper{ID: r.ID}, score: r.Score, lexical: r.Lexical, dense: r.Dense}
	}
	if fields == noRead || len(hits) == 0 {
		return hits, nil
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.paper.ID
	}
	records, err := rt.store.Read(ctx, ids, fields, sq.DenseSet)
	if err != nil {
		return nil, err
	}
	kept := hits[:0]
	for _, h := range hits {
		if len(records) > 0 && records[0].Paper.ID == h.paper.ID {
			h.paper, h.sketch, records = records[0].Paper, records[0].Sketch, records[1:]
			kept = append(kept, h)
		}
	}
	return kept, nil
}

// fill replaces the brief papers of a page by the whole ones; a paper deleted since the search
// is dropped from papers.
func (rt *retrieval) fill(ctx context.Context, page []rank.Candidate) error {
	ids := make([]string, len(page))
	for i, c := range page {
		ids[i] = c.ID
		delete(rt.papers, c.ID)
	}
	found, err := rt.store.Lookup(ctx, ids)
	if err != nil {
		return err
	}
	for _, p := range found {
		rt.papers[p.ID] = p
	}
	return nil
}

// merge makes the candidates of the positive lists. One list keeps its order and scores.
// Several are interleaved by rank: a paper's place is its best rank in any list, its score that
// rank's reciprocal-rank score, and its signal scores and relevance those of that list, so the
// first papers of every seed come first whatever their raw scores (a long seed's BM25 scores
// run higher).
func (rt *retrieval) merge(lists [][]hit) ([]rank.Candidate, map[string]int) {
	best := bestRanks(lists)
	rt.papers, rt.signals = make(map[string]store.Paper, len(best)), make(map[string]signalScores, len(best))
	cands := make([]rank.Candidate, 0, len(best))
	calibration := Calibrations[rt.kind][rt.mode]
	for l, hits := range lists {
		top := bestLexical(hits)
		for i, h := range hits {
			id := h.paper.ID
			if _, done := rt.papers[id]; done || best[id] != i+1 {
				continue // taken from a list that ranks it as well, or not its best list
			}
			share := rt.lexicalShare(l, h.lexical, top)
			c := rank.Candidate{ID: id, Title: h.paper.Title, Date: h.paper.Date, Year: h.paper.Year,
				Lexical: h.paper.Lexical, Dense: h.paper.Dense, Sketch: h.sketch, Score: h.score,
				Relevance: calibration.Relevance(Features(rt.kind, rt.mode, Signals{share, float64(h.dense)}, Context{}))}
			if len(lists) > 1 {
				c.Score = rank.DefaultFusion.PositionScore(i+1, 1)
			}
			cands = append(cands, c)
			rt.papers[id] = h.paper
			rt.signals[id] = signalScores{lexical: h.lexical, dense: h.dense, lexicalShare: float32(share)}
		}
	}
	if len(lists) > 1 {
		slices.SortFunc(cands, func(a, b rank.Candidate) int {
			if store.Better(store.Scored{ID: a.ID, Score: a.Score}, store.Scored{ID: b.ID, Score: b.Score}) {
				return -1
			}
			return 1
		})
	}
	return cands, best
}

// unmatched appends to cands the candidates that pass filter and that no list found (lexical
// retrieval finds only papers sharing a word): a caller that names its candidates gets every one
// back, these last, in the order given, with the relevance of a paper no signal found (at most
// that of the last one found).
func (rt *retrieval) unmatched(cands []rank.Candidate, candidates []store.Paper, filter store.Filter) []rank.Candidate {
	if len(candidates) == 0 {
		return cands
	}
	found := make(map[string]bool, len(cands))
	for _, c := range cands {
		found[c.ID] = true
		for _, d := range c.Duplicates {
			found[d] = true
		}
	}
	score, relevance := float32(0), float32(1)
	if len(cands) > 0 {
		last := cands[len(cands)-1]
		score, relevance = min(last.Score, 0), last.Relevance
	}
	calibration := Calibrations[rt.kind][rt.mode]
	for i := range candidates {
		p := &candidates[i]
		if found[p.ID] || !filter.Matches(p) {
			continue
		}
		found[p.ID] = true
		score -= 1 // below every found one, in the order given
		c := rank.Candidate{ID: p.ID, Title: p.Title, Date: p.Date, Year: p.Year, Lexical: p.Lexical, Dense: p.Dense, Score: score,
			Relevance: min(relevance, calibration.Relevance(Features(rt.kind, rt.mode, Signals{}, Context{Coherence: rt.coherence})))}
		cands = append(cands, c)
		rt.papers[p.ID] = *p
		rt.signals[p.ID] = signalScores{}
	}
	return cands
}

// calibrateText gives the candidates of a text query (its one list, q) their relevance with the
// query's coherence, which it returns: that of cands' first CoherenceDepth, or, for a feed
// matching a batch of new papers (matching), that of the first the text finds in the store
// under filter. What comparing them needs (embeddings, or word sketches in lexical mode) is
// read for the ones the search did not bring it for.
func (rt *retrieval) calibrateText(ctx context.Context, q query, cands []rank.Candidate, matching bool, filter store.Filter) (float64, error) {
	byDense := rt.mode != ModeLexical
	var first []rank.Candidate
	if matching {
		hits, err := rt.find(ctx, q, filter, CoherenceDepth, store.DenseVector|store.Sketch)
		if err != nil {
			return 0, err
		}
		for _, h := range hits {
			first = append(first, rank.Candidate{ID: h.paper.ID, Dense: h.paper.Dense, Sketch: h.sketch})
		}
	} else {
		first = slices.Clone(cands[:min(len(cands), CoherenceDepth)]) // the reads below are for this only
		var missing []string
		for _, c := range first {
			if (byDense && len(c.Dense) == 0) || (!byDense && c.Sketch == nil) {
				missing = append(missing, c.ID)
			}
		}
		if len(missing) > 0 {
			records, err := rt.store.Read(ctx, missing, store.DenseVector|store.Sketch, q.DenseSet)
			if err != nil {
				return 0, err
			}
			byID := make(map[string]store.Record, len(records))
			for _, r := range records {
				byID[r.Paper.ID] = r
			}
			for i := range first {
				if r, ok := byID[first[i].ID]; ok {
					first[i].Dense, first[i].Sketch = r.Paper.Dense, r.Sketch
				}
			}
		}
	}
	rt.coherence = Coherence(first, byDense)
	rt.calibrateAll(cands)
	return rt.coherence, nil
}

// calibrateAll sets the relevance of cands, all of a text's or candidate list's results, with
// the request's context (ListFeatures).
func (rt *retrieval) calibrateAll(cands []rank.Candidate) {
	list := make([]Signals, len(cands))
	for i, c := range cands {
		list[i] = rt.signals[c.ID].calibrated()
	}
	calibration := Calibrations[rt.kind][rt.mode]
	for i, f := range ListFeatures(rt.kind, rt.mode, rt.coherence, list) {
		cands[i].Relevance = calibration.Relevance(f)
	}
}

// calibrated are the signals as Features takes them (and explanations report them).
func (s signalScores) calibrated() Signals {
	return Signals{LexicalShare: float64(s.lexicalShare), Dense: float64(s.dense)}
}

// lexicalShare is a lexical score of list l as a share of the most its query can score; when
// the store gives no idf to know that, its share of the list's best times unknownMaxShare.
func (rt *retrieval) lexicalShare(l int, score, best float32) float64 {
	if score <= 0 {
		return 0
	}
	if l < len(rt.lexicalMax) && rt.lexicalMax[l] > 0 {
		return min(float64(score)/rt.lexicalMax[l], 1)
	}
	if best <= 0 {
		return 0
	}
	return unknownMaxShare * float64(score) / float64(best)
}

// bestLexical is the highest lexical score of a list.
func bestLexical(hits []hit) float32 {
	var b float32
	for _, h := range hits {
		b = max(b, h.lexical)
	}
	return b
}

// bestRanks is each paper's best rank (from 1) over lists.
func bestRanks(lists [][]hit) map[string]int {
	best := map[string]int{}
	for _, hits := range lists {
		for i, h := range hits {
			if r, ok := best[h.paper.ID]; !ok || i+1 < r {
				best[h.paper.ID] = i + 1
			}
		}
	}
	return best
}

// What a negative seed demotes: a paper among its NegativeReach nearest (the first page of its
// own list) that it ranks better than DemoteMargin times the paper's best rank in the positive
// lists. A negative of the positive's own topic ranks much of that topic well, so "closer to the
// negative than to any positive" alone either demotes too little (margin 1: a third of the
// negative's near neighbours in the positive's top 10 left it) or, with a wider margin, sweeps
// the topic away deep down the list. The reach confines it to the negative's neighbourhood,
// where a margin of 3 can act. Chosen on eval's multi-seed benchmark over several draws of seeds
// (BENCHMARKS.md, "Several seeds").
const (
	NegativeReach = 10
	DemoteMargin  = 3.0
)

// Demote moves below the others the candidates a negative seed's list ranks within
// NegativeReach and better than DemoteMargin times their rank in the positive lists
// (negative[id] <= NegativeReach and negative[id] < DemoteMargin x positive[id]). They keep
// their order, and their scores are shifted below the lowest kept one, so that re-ranking by
// score (recency, diversity) starts from the demoted order. Everything else keeps its place and
// score, so a negative seed far from the positives changes nothing.
func Demote(cands []rank.Candidate, positive, negative map[string]int) []rank.Candidate {
	kept := make([]rank.Candidate, 0, len(cands))
	var demoted []rank.Candidate
	for _, c := range cands {
		if n, ok := negative[c.ID]; ok && n <= NegativeReach && float64(n) < DemoteMargin*float64(positive[c.ID]) {
			demoted = append(demoted, c)
			continue
		}
		kept = append(kept, c)
	}
	if len(kept) > 0 && len(demoted) > 0 {
		lowest, highest := kept[0].Score, demoted[0].Score
		for _, c := range kept {
			lowest = min(lowest, c.Score)
		}
		for _, c := range demoted {
			highest = max(highest, c.Score)
		}
		if shift := highest - lowest; shift >= 0 {
			shift += max(abs(lowest), abs(highest))*1e-3 + 1e-6 // strictly below, at float32 precision
			for i := range demoted {
				demoted[i].Score -= shift
			}
		}
	}
	return append(kept, demoted...)
}

func abs(x float32) float32 { return max(x, -x) }
