package recommend

import (
	"context"
	"math"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
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

// Signals are one paper's match with the seed or text that found it, in absolute terms: its
// BM25 score as a share of the most the query can score (LexicalMax), and its cosine
// similarity (0 for a signal that did not run or did not find it).
type Signals struct{ LexicalShare, Dense float64 }

// Context is what a result's relevance is calibrated on besides its own signals: a text
// query's coherence (see Coherence), and a candidate list's spread of signals (see
// ListContext).
type Context struct {
	Coherence float64
	// The mean and standard deviation over a candidate list of each signal's feature.
	LexMean, LexSD, DenseMean, DenseSD float64
}

// Features describe a paper's match so that its relevance does not depend on what else the
// store holds or the list ranks above it: a constant; lexical, the log of the share (what
// matters is its order of magnitude: the share of a seed's words a related paper holds is
// small); dense, the cosine; hybrid, both. Text alone adds the query's coherence: a few words
// match many papers a little, whether or not they name a topic, and only how alike the papers
// they find are tells the two apart. A candidate list adds each signal's standard score in the
// list and its mean: the same similarity means less among candidates all alike (a list another
// system retrieved for the seed) than among papers drawn from everywhere.
func Features(kind Kind, mode Mode, s Signals, c Context) []float64 {
	lex := lexFeature(s.LexicalShare)
	var f []float64
	switch mode {
	case ModeLexical:
		f = []float64{1, lex}
	case ModeDense:
		f = []float64{1, s.Dense}
	default:
		f = []float64{1, lex, s.Dense}
	}
	switch kind {
	case KindText:
		ceiling := coherenceCeiling
		if mode != ModeLexical {
			ceiling = denseCoherenceCeiling
		}
		f = append(f, min(c.Coherence, ceiling))
	case KindCandidates:
		z := func(x, mean, sd float64) float64 { return (x - mean) / (sd + 1e-6) }
		if mode != ModeDense {
			f = append(f, z(lex, c.LexMean, c.LexSD), c.LexMean)
		}
		if mode != ModeLexical {
			f = append(f, z(s.Dense, c.DenseMean, c.DenseSD), c.DenseMean)
		}
	}
	return f
}

func lexFeature(share float64) float64 { return math.Log(share + lexicalFloor) }

// ListFeatures are the features of all the results of one request of kind in mode, with their
// context: a text's coherence, or for a candidate list its spread (ListContext over all of it).
// The pipeline calibrates with them and eval fits on them.
func ListFeatures(kind Kind, mode Mode, coherence float64, list []Signals) [][]float64 {
	c := Context{Coherence: coherence}
	if kind == KindCandidates {
		c = ListContext(list)
	}
	out := make([][]float64, len(list))
	for i, s := range list {
		out[i] = Features(kind, mode, s, c)
	}
	return out
}

// ListContext is the spread of a candidate list's signals, for Features.
func ListContext(list []Signals) Context {
	var c Context
	if len(list) == 0 {
		return c
	}
	n := float64(len(list))
	for _, s := range list {
		c.LexMean += lexFeature(s.LexicalShare) / n
		c.DenseMean += s.Dense / n
	}
	for _, s := range list {
		c.LexSD += (lexFeature(s.LexicalShare) - c.LexMean) * (lexFeature(s.LexicalShare) - c.LexMean) / n
		c.DenseSD += (s.Dense - c.DenseMean) * (s.Dense - c.DenseMean) / n
	}
	c.LexSD, c.DenseSD = math.Sqrt(c.LexSD), math.Sqrt(c.DenseSD)
	return c
}

// The coherence Features uses is at most about the highest the calibration data holds (the
// arXiv sample's texts reach 0.33 by word sketches, 0.93 by embeddings): a store of near copies
// (a test's, a demo's) has first results more alike than any the calibration saw, and the
// linear model must not extrapolate that into relevance for a paper sharing nothing with the
// text.
const (
	coherenceCeiling      = 0.35
	denseCoherenceCeiling = 0.94
)

// CoherenceDepth is how many of a text query's first results its coherence compares.
const CoherenceDepth = 10

// Coherence is the mean pairwise similarity of the first CoherenceDepth candidates: of their
// embeddings when byDense, else of their word sketches (the first ones lacking what is
// compared are left out). The results of words that name a topic resemble one another; those
// of unrelated words are each about one of the words.
func Coherence(cands []rank.Candidate, byDense bool) float64 {
	var sum float64
	var pairs int
	cands = cands[:min(len(cands), CoherenceDepth)]
	for i := range cands {
		for j := i + 1; j < len(cands); j++ {
			a, b := &cands[i], &cands[j]
			switch {
			case byDense && len(a.Dense) > 0 && len(a.Dense) == len(b.Dense):
				sum += store.Cosine(a.Dense, b.Dense)
			case !byDense && a.Sketch != nil && b.Sketch != nil:
				sum += a.Sketch.Similarity(b.Sketch)
			default:
				continue
			}
			pairs++
		}
	}
	if pairs == 0 {
		return 0
	}
	return sum / float64(pairs)
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

// termIDF is the store's idf of q's terms; nil when the store does not say (Qdrant applies its
// own idf and does not expose it), which makes LexicalMax 0: unknown.
func (e *Engine) termIDF(ctx context.Context, q lexical.Vector) ([]float64, error) {
	ts, ok := store.As[store.TermStatser](e.Store)
	if !ok || q.Len() == 0 {
		return nil, nil
	}
	return ts.IDF(ctx, q.Indices)
}

// unknownMaxShare stands in for a list's best lexical share when the store does not give idf:
// each paper's share is then its score over the list's best, times this (about what the best
// of a seed's list reaches on the embedded store).
const unknownMaxShare = 0.25

// Calibrations are per request kind and mode, fitted by `recommender-lab eval --calibrate` on the
// arXiv sample's topic labels (70% of the seed papers, by id) and, for candidate lists, CSFCube's
// dev judgements; the other 30% check them (BENCHMARKS.md, "Calibrated relevance"). Refit them
// when ranking changes.
var Calibrations = map[Kind]map[Mode]Calibration{
	KindText: {
		ModeLexical: {-0.1522, 1.2627, 10.3129},           // 24974 results
		ModeDense:   {-71.4027, 59.1775, 22.4365},         // 25000 results
		ModeHybrid:  {-48.8236, 0.7061, 33.2539, 23.9194}, // 25000 results
	},
	KindSeed: {
		ModeLexical: {7.9315, 2.6858},            // 24000 results
		ModeDense:   {-60.7242, 67.6470},         // 24000 results
		ModeHybrid:  {-26.5190, 1.3871, 34.8903}, // 24000 results
	},
	KindSeeds: {
		ModeLexical: {8.6046, 2.9792},            // 23994 results
		ModeDense:   {-65.2427, 72.4709},         // 23994 results
		ModeHybrid:  {-32.2016, 1.3989, 41.0466}, // 23994 results
	},
	KindCandidates: {
		ModeLexical: {-0.7485, 5.3926, -2.0984, -5.3785},                              // 26538 results
		ModeDense:   {-6.0640, 105.5232, -0.8512, -99.2009},                           // 26538 results
		ModeHybrid:  {-20.2639, 4.0723, 43.9701, -2.7631, -4.3681, -0.0346, -22.8608}, // 26538 results
	},
}
