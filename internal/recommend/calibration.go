package recommend

import (
	"context"
	"math"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// Calibration maps a result's features (see Features) to the probability that a reader judges
// it relevant: a logistic model, relevance = 1 / (1 + exp(-(w · features))).
type Calibration []float64

// Relevance is the calibrated probability of features.
func (c Calibration) Relevance(features []float64) float32 {
	var z float64
	for i, w := range c {
		z += w * features[i]
	}
	return float32(1 / (1 + math.Exp(-z)))
}

// Kind is the shape of a request, which the calibration tells apart: the same similarity means
// more from a whole seed paper than from a few words of text.
type Kind int

// Request kinds.
const (
	KindText       Kind = iota // query text alone
	KindSeed                   // one positive seed paper, no text
	KindSeeds                  // several positive seeds, or text and seeds
	KindCandidates             // a candidate list to rank (by whatever seeds and text)
)

func (k Kind) String() string {
	return [...]string{"text", "seed", "seeds", "candidates"}[k]
}

// Kinds lists every request kind.
var Kinds = []Kind{KindText, KindSeed, KindSeeds, KindCandidates}

// kindOf is a request's kind: by its candidates, else by its positive text and seeds.
func kindOf(r Request, positiveSeeds int) Kind {
	switch {
	case r.Candidates != nil && !r.Matching:
		return KindCandidates
	case r.Text != "" && positiveSeeds == 0:
		return KindText
	case r.Text == "" && positiveSeeds == 1:
		return KindSeed
	}
	return KindSeeds
}

// Features describe a paper's match with the seed or text that found it, in absolute terms, so
// that its relevance does not depend on what else the store holds or the list ranks above it:
// a constant; lexical, the log of the paper's BM25 score as a share of the most the query can
// score (LexicalMax; the share of a seed's words a related paper holds is small, and what
// matters is its order of magnitude); dense, the cosine similarity; hybrid, both (a share of 0
// for a paper the lexical list did not hold).
func Features(mode Mode, lexicalShare, dense float64) []float64 {
	lex := math.Log(lexicalShare + lexicalFloor)
	switch mode {
	case ModeLexical:
		return []float64{1, lex}
	case ModeDense:
		return []float64{1, dense}
	}
	return []float64{1, lex, dense}
}

// lexicalFloor keeps the log of a lexical share of 0 finite; chosen with the calibration data
// (smaller shares are all about equally irrelevant).
const lexicalFloor = 0.002

// LexicalMax is the most a lexical query can score with BM25: every positive term at
// saturation, sum of weight x idf x (k1 + 1). idf gives each term's idf, in q's order.
func LexicalMax(q lexical.Vector, idf []float64) float64 {
	var m float64
	for i, w := range q.Values {
		if w > 0 && i < len(idf) {
			m += float64(w) * idf[i] * (lexical.BM25K1 + 1)
		}
	}
	return m
}

// lexicalMax is LexicalMax of q by the store's idf; 0 when the store does not say (Qdrant
// applies its own idf and does not expose it).
func (e *Engine) lexicalMax(ctx context.Context, q lexical.Vector) (float64, error) {
	ts, ok := store.As[store.TermStatser](e.Store)
	if !ok || q.Len() == 0 {
		return 0, nil
	}
	idf, err := ts.IDF(ctx, q.Indices)
	if err != nil {
		return 0, err
	}
	return LexicalMax(q, idf), nil
}

// unknownMaxShare stands in for a list's best lexical share when the store does not give idf:
// each paper's share is then its score over the list's best, times this (about what the best
// of a seed's list reaches on the embedded store).
const unknownMaxShare = 0.25

// Calibrations are per request kind and mode, fitted by `recommender eval --calibrate` on the
// arXiv sample's topic labels (70% of the seed papers, by id) and, for candidate lists, CSFCube's
// dev judgements; the other 30% check them (BENCHMARKS.md, "Calibrated relevance"). Refit them
// when ranking changes.
var Calibrations = map[Kind]map[Mode]Calibration{
	KindText: {
		ModeLexical: {3.1517, 1.9173},            // 24000 results
		ModeDense:   {-57.9688, 66.8973},         // 24000 results
		ModeHybrid:  {-26.5767, 1.1150, 33.2426}, // 24000 results
	},
	KindSeed: {
		ModeLexical: {7.9315, 2.6858},            // 24000 results
		ModeDense:   {-60.7242, 67.6470},         // 24000 results
		ModeHybrid:  {-23.9801, 1.7577, 32.8798}, // 24000 results
	},
	KindSeeds: {
		ModeLexical: {8.6046, 2.9792},            // 23994 results
		ModeDense:   {-65.2427, 72.4709},         // 23994 results
		ModeHybrid:  {-27.8153, 1.8431, 37.2049}, // 23994 results
	},
	KindCandidates: {
		ModeLexical: {9.6647, 2.5632},            // 26538 results
		ModeDense:   {-67.7457, 78.2931},         // 26538 results
		ModeHybrid:  {-32.7847, 1.6713, 45.2393}, // 26523 results
	},
}
