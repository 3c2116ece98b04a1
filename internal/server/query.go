package server

import (
	"context"
	"fmt"
	"math"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// resolveMode picks the retrieval mode: HYBRID when an embedder is configured and the request
// leaves it to us, LEXICAL without one; DENSE or HYBRID without an embedder is refused.
func (s *Service) resolveMode(m recommenderv1.RetrievalMode) (recommenderv1.RetrievalMode, error) {
	switch {
	case m == recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED && s.emb != nil:
		return recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID, nil
	case m == recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED:
		return recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL, nil
	case m != recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL && s.emb == nil:
		return 0, &PreconditionError{Reason: apierr.EmbeddingNotConfigured, Subject: "server", Message: fmt.Sprintf(
			"retrieval mode %s needs an embedding model, and this server has none configured (set EMBEDDING_BASE_URL)", m)}
	}
	return m, nil
}

// buildQuery turns the request into a store query for the mode. Seeds are read once and serve
// both signals; seed-only requests make no embedding call, and a text query is embedded once.
// It also returns the positive seeds, for explanations, and the negative ones.
func (s *Service) buildQuery(ctx context.Context, r *recommendRequest, mode recommenderv1.RetrievalMode) (store.Query, []store.Paper, []store.Paper, error) {
	q := store.Query{Filter: r.filter, Exact: r.exact, Fusion: s.fusion}
	if q.Fusion == (rank.Fusion{}) && len(r.positive)+len(r.negative) == 0 {
		q.Fusion = rank.TextFusion // text alone: the embedding leads (see rank.TextFusion)
	}
	var positive, negative []store.Paper
	var err error
	if len(r.positive) > 0 {
		if positive, err = s.store.Get(ctx, r.positive); err != nil {
			return q, nil, nil, fmt.Errorf("load seed papers: %w", err)
		}
	}
	if len(r.negative) > 0 {
		if negative, err = s.store.Get(ctx, r.negative); err != nil {
			return q, nil, nil, fmt.Errorf("load seed papers: %w", err)
		}
	}
	if mode != recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE || r.explain {
		lex, err := lexicalQuery(r.query, positive, negative)
		if err != nil && mode != recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE {
			return q, nil, nil, err
		}
		q.Lexical = lex // in DENSE mode only for explanations; cleared before searching
	}
	if mode != recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL {
		if q.Dense, err = s.denseQuery(ctx, r.query, positive, negative); err != nil {
			return q, nil, nil, err
		}
	}
	return q, positive, negative, nil
}

// lexicalQuery combines the query text and the seeds' terms (see lexical.Combine).
func lexicalQuery(text string, positive, negative []store.Paper) (lexical.Vector, error) {
	var pos, neg []lexical.Vector
	if text != "" {
		qv := lexical.Query(text)
		if qv.Len() == 0 {
			return lexical.Vector{}, &ValidationError{Violations: []Violation{{Field: "query",
				Description: "contains no searchable words (only stop words, numbers or punctuation)"}}}
		}
		pos = append(pos, qv)
	}
	for _, p := range positive {
		pos = append(pos, lexical.SeedQuery(p.Lexical))
	}
	for _, p := range negative {
		neg = append(neg, lexical.SeedQuery(p.Lexical))
	}
	return lexical.Combine(pos, neg), nil
}

// denseQuery is the Rocchio-style combination used for seeds in both signals: the mean of the
// unit-length positive vectors (the query text's embedding counts as one) minus
// lexical.NegativeWeight times the mean of the negative ones.
func (s *Service) denseQuery(ctx context.Context, text string, positive, negative []store.Paper) ([]float32, error) {
	var pos, neg [][]float32
	if text != "" {
		vecs, err := s.emb.Embed(ctx, []string{s.prefixes().QueryText(text)})
		if err != nil {
			return nil, fmt.Errorf("embed query: %w", err)
		}
		if err := s.checkDims(vecs); err != nil {
			return nil, err
		}
		pos = append(pos, vecs[0])
	}
	for _, side := range []struct {
		papers []store.Paper
		out    *[][]float32
	}{{positive, &pos}, {negative, &neg}} {
		for _, p := range side.papers {
			if len(p.Dense) == 0 {
				return nil, &PreconditionError{Reason: apierr.SeedNotEmbedded, Subject: "paper/" + p.ID, Message: fmt.Sprintf(
					"seed paper %s has no embedding yet: re-ingest it with the embedding model configured, or ask for LEXICAL mode", p.ID)}
			}
			*side.out = append(*side.out, p.Dense)
		}
	}
	q := make([]float32, s.spec.Dimensions)
	for _, side := range []struct {
		vecs  [][]float32
		scale float64
	}{{pos, 1}, {neg, -lexical.NegativeWeight}} {
		for _, v := range side.vecs {
			w := side.scale / float64(len(side.vecs)) / norm(v)
			for i, x := range v {
				q[i] += float32(w * float64(x))
			}
		}
	}
	return q, nil
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

// checkDims guards the store against vectors of another size than it is bound to (an API that
// changed its model behind the same name, say).
func (s *Service) checkDims(vecs [][]float32) error {
	for _, v := range vecs {
		if len(v) != s.spec.Dimensions {
			return &embed.Error{Kind: embed.KindBadResponse,
				Err: fmt.Errorf("%d dimensions, the store holds %d", len(v), s.spec.Dimensions)}
		}
	}
	return nil
}
