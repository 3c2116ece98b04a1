package recommend

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// plan is what a request searches: the lists whose papers are recommended (one per seed and
// one for the text, or one centroid of them all) and one list per negative seed, whose papers
// are demoted where they rank better than in every positive list.
type plan struct {
	positive, negative []query // filter and limit are set when searching
	// lexicalMax is LexicalMax of each positive query (0: unknown), for relevance.
	lexicalMax []float64
	// explainTerms are the text's and the positive seeds' terms, which explanations match.
	explainTerms lexical.Vector
}

// seedQuery is one seed's (or the text's) representation in both signals.
type seedQuery struct {
	lexical lexical.Vector
	dense   []float32
	text    bool
}

// plan turns the request into store queries for the mode and strategy. Stored seeds are read
// once and serve both signals; the text and the inline seeds are embedded in one call, and a
// request with neither makes no embedding call.
func (e *Engine) plan(ctx context.Context, r Request, mode Mode, strategy Strategy, seeds seedPapers) (plan, error) {
	var pos, neg []seedQuery
	var textVector []float32
	if mode != ModeLexical {
		var err error
		if textVector, err = e.embedRequest(ctx, r.Text, &seeds); err != nil {
			return plan{}, err
		}
	}
	if r.Text != "" {
		qv := lexical.Query(r.Text)
		if qv.Len() == 0 && mode != ModeDense {
			return plan{}, apierr.Invalid("query", "contains no searchable words (only stop words, numbers or punctuation)")
		}
		pos = append(pos, seedQuery{lexical: qv, dense: textVector, text: true})
	}
	for _, side := range []struct {
		papers []store.Paper
		out    *[]seedQuery
	}{{seeds.positive, &pos}, {seeds.negative, &neg}} {
		for _, p := range side.papers {
			if mode != ModeLexical && p.DenseSet != "" && p.DenseSet != e.Spec.Key() {
				// The store switched models since this request began: the caller retries
				// with the new one.
				return plan{}, &store.EmbeddingSwitchedError{}
			}
			// A stored seed without a vector yet (SeedNoEmbedding) goes by its words alone.
			*side.out = append(*side.out, seedQuery{lexical: lexical.SeedQuery(p.Lexical), dense: p.Dense})
		}
	}
	var p plan
	lexes := make([]lexical.Vector, len(pos))
	for i, s := range pos {
		lexes[i] = s.lexical
	}
	p.explainTerms = lexical.Combine(lexes, nil)
	if strategy == StrategyCentroid && len(pos) > 1 {
		pos = []seedQuery{centroid(pos)}
	}
	for _, s := range pos {
		idf, err := e.termIDF(ctx, s.lexical)
		if err != nil {
			return plan{}, err
		}
		// The share of the most the seed's words could score stays of all its words, as the
		// relevance was calibrated, when fewer of them are searched.
		p.lexicalMax = append(p.lexicalMax, LexicalMax(s.lexical, idf))
		if mode == ModeHybrid && !s.text && len(s.dense) > 0 && e.HybridSeedTerms > 0 {
			s.lexical = strongestTerms(s.lexical, idf, e.HybridSeedTerms)
		}
		p.positive = append(p.positive, e.query(s, mode))
	}
	for _, s := range neg {
		p.negative = append(p.negative, e.query(s, mode))
	}
	return p, nil
}

// embedRequest embeds the text (when set) and the inline seeds without a vector of the
// model's size in one call, setting the seeds' vectors; it returns the text's.
func (e *Engine) embedRequest(ctx context.Context, text string, seeds *seedPapers) ([]float32, error) {
	var texts []string
	if text != "" {
		texts = append(texts, e.prefixes().QueryText(text))
	}
	var todo []*store.Paper
	for _, side := range []struct {
		papers []store.Paper
		from   int
	}{{seeds.positive, seeds.positiveInline}, {seeds.negative, seeds.negativeInline}} {
		for i := range side.papers[side.from:] {
			p := &side.papers[side.from+i]
			if len(p.Dense) == 0 || len(p.Dense) != e.Embedder.Dimensions() {
				todo = append(todo, p)
				texts = append(texts, e.prefixes().DocumentText(p.Title, p.Abstract))
			}
		}
	}
	if len(texts) == 0 {
		return nil, nil
	}
	vecs, err := e.Embedder.Embed(ctx, texts)
	if err != nil {
		return nil, fmt.Errorf("embed query: %w", err)
	}
	if err := e.checkDims(vecs); err != nil {
		return nil, err
	}
	var textVector []float32
	if text != "" {
		textVector, vecs = vecs[0], vecs[1:]
	}
	for i, p := range todo {
		p.Dense = vecs[i]
	}
	return textVector, nil
}

// EmbedInline embeds inline seeds as a request would (their document texts), for a caller that
// keeps their vectors; it returns them with the key of the model they belong to.
func (e *Engine) EmbedInline(ctx context.Context, seeds []InlineSeed) ([][]float32, string, error) {
	if e.Embedder == nil || len(seeds) == 0 {
		return nil, "", nil
	}
	texts := make([]string, len(seeds))
	for i, s := range seeds {
		texts[i] = e.prefixes().DocumentText(s.Title, s.Abstract)
	}
	vecs, err := e.Embedder.Embed(ctx, texts)
	if err != nil {
		return nil, "", fmt.Errorf("embed inline seeds: %w", err)
	}
	if err := e.checkDims(vecs); err != nil {
		return nil, "", err
	}
	return vecs, e.Spec.Key(), nil
}

// query is one list a plan searches: the store query of a seed (or the text) and how its two
// signals' lists fuse.
type query struct {
	store.Query
	fusion rank.Fusion
}

// query is the query of one seed in mode.
func (e *Engine) query(s seedQuery, mode Mode) query {
	q := query{fusion: e.Fusion}
	if q.fusion == (rank.Fusion{}) && s.text {
		q.fusion = rank.TextFusion // text alone: the embedding leads (see rank.TextFusion)
	}
	q.fusion = q.fusion.OrDefault()
	if mode != ModeDense || len(s.dense) == 0 {
		q.Lexical = s.lexical // a seed without a vector goes by its words in every mode
	}
	if mode != ModeLexical && len(s.dense) > 0 {
		q.Dense, q.DenseSet = s.dense, e.Spec.Key()
	}
	return q
}

// centroid is the Rocchio combination of several seeds: the mean of their term weights, and the
// mean of their unit-length vectors.
func centroid(seeds []seedQuery) seedQuery {
	lexes := make([]lexical.Vector, len(seeds))
	for i, s := range seeds {
		lexes[i] = s.lexical
	}
	out := seedQuery{lexical: lexical.Combine(lexes, nil)}
	withVectors := 0
	for _, s := range seeds {
		if len(s.dense) > 0 {
			withVectors++
		}
	}
	for _, s := range seeds {
		if len(s.dense) == 0 {
			continue // lexical mode, or a seed not embedded yet: the others' mean
		}
		if out.dense == nil {
			out.dense = make([]float32, len(s.dense))
		}
		w := 1 / float64(withVectors) / norm(s.dense)
		for i, x := range s.dense {
			out.dense[i] += float32(w * float64(x))
		}
	}
	return out
}

func norm(v []float32) float64 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return 1
	}
	return math.Sqrt(ss)
}

// prefixes are the bound model's instructions.
func (e *Engine) prefixes() embed.Prefixes {
	return embed.Prefixes{Query: e.Spec.QueryPrefix, Document: e.Spec.DocumentPrefix}
}

// checkDims guards the store against vectors of another size than it is bound to (an API that
// changed its model behind the same name, say).
func (e *Engine) checkDims(vecs [][]float32) error {
	for _, v := range vecs {
		if len(v) != e.Spec.Dimensions {
			return &embed.Error{Kind: embed.KindBadResponse,
				Err: fmt.Errorf("%d dimensions, the store holds %d", len(v), e.Spec.Dimensions)}
		}
	}
	return nil
}

// strongestTerms keeps the n terms of q of highest weight x idf (by weight when idf is nil), as
// Lucene's MoreLikeThis picks a document's most informative terms.
func strongestTerms(q lexical.Vector, idf []float64, n int) lexical.Vector {
	if q.Len() <= n {
		return q
	}
	strength := func(i int) float64 {
		w := math.Abs(float64(q.Values[i]))
		if idf != nil {
			w *= idf[i]
		}
		return w
	}
	order := make([]int, q.Len())
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(strength(b), strength(a)) })
	keep := order[:n]
	slices.Sort(keep) // terms stay in index order
	out := lexical.Vector{Indices: make([]uint32, n), Values: make([]float32, n)}
	for j, i := range keep {
		out.Indices[j], out.Values[j] = q.Indices[i], q.Values[i]
	}
	return out
}
