package rank

import (
	"math"

	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/topk"
)

// Fusion is how hybrid retrieval merges the lexical and the dense candidate lists: weighted
// reciprocal rank fusion, computed as Qdrant computes it (so both stores rank alike). A paper
// at rank r (from 1) of a list with weight w scores 1 / (r/w + K - 1); its scores add up over
// the lists. A heavier list's ranks are compressed: with weights 2:1, its second paper counts
// as much as the other's first.
type Fusion struct {
	// Method is how the lists' scores are combined: FuseRRF (ranks) or FuseDBSF (scores).
	Method FusionMethod
	// K damps the weight of the very top ranks, so that one list cannot dominate (Cormack et
	// al., 2009).
	K int
	// LexicalWeight and DenseWeight scale each list's ranks.
	LexicalWeight, DenseWeight float32
	// Depth is how many candidates each list contributes at least (more when a page needs it),
	// so papers ranked moderately by both signals can surface.
	Depth int
}

// FusionMethod names a way of fusing.
type FusionMethod string

// Fusion methods.
const (
	// FuseRRF is weighted reciprocal rank fusion (see Fusion).
	FuseRRF FusionMethod = "rrf"
	// FuseDBSF is distribution-based score fusion, as Qdrant's DBSF: each list's scores are
	// mapped to [0, 1] between mean - 3 sd and mean + 3 sd, weighted, and added up.
	FuseDBSF FusionMethod = "dbsf"
	// FuseMinMax maps each list's scores to [0, 1] between its lowest and highest, weights and
	// adds them up (a convex combination when the weights sum to 1).
	FuseMinMax FusionMethod = "minmax"
)

// DefaultFusion is standard RRF. Tuned on the CSFCube dev rows and the arXiv sample's topics with
// a real model (BENCHMARKS.md, "Hybrid fusion"), no other RRF or score-fusion setting was better
// on both; the dense-heavy ones that gain on CSFCube (up to +0.015) lose topic precision.
var DefaultFusion = Fusion{Method: FuseRRF, K: 60, LexicalWeight: 1, DenseWeight: 1, Depth: FusionDepth}

// FusionDepth is how many candidates each list contributes to a hybrid search at least, in
// every fusion: deep enough that a paper ranked moderately by both signals surfaces, cheap
// enough for one request.
const FusionDepth = 100

// TextFusion is the fusion for a query of free text alone. A short query gives BM25 little to go
// on and misses every paper that says the same in other words, while the embedding matches the
// meaning: so the dense list leads (K 2, weights 5 to 0.2: a lexical match moves a paper past
// dense neighbours of nearly equal rank, not past clearly better ones). Of 10 paraphrase targets
// (no word in common) 1:1 RRF put 1 in the hybrid top 10, 5:1 seven, this nine; see
// BENCHMARKS.md, "Hybrid fusion".
var TextFusion = Fusion{Method: FuseRRF, K: 2, LexicalWeight: 0.2, DenseWeight: 5, Depth: FusionDepth}

// OrDefault returns f, or DefaultFusion when f is the zero value.
func (f Fusion) OrDefault() Fusion {
	if f == (Fusion{}) {
		return DefaultFusion
	}
	return f
}

// ListDepth is how many candidates each list gives for a fused list of limit.
func (f Fusion) ListDepth(limit int) int { return max(limit, f.Depth) }

// PositionScore is the fused score of rank r (from 1) in a list of weight w; 0 for w <= 0.
func (f Fusion) PositionScore(r int, w float32) float32 {
	if w <= 0 {
		return 0
	}
	return 1 / (float32(r)/w + float32(f.K) - 1)
}

// Fused is an entry of a fused list: its fused score and the score it had in each list (0 when
// it was not in that list), which explanations show.
type Fused struct {
	store.Scored
	Lexical, Dense float32
}

// OneSignal is a list of one signal as a fused list: lexical's or dense's.
func OneSignal(list []store.Scored, lexical bool) []Fused {
	out := make([]Fused, len(list))
	for i, s := range list {
		out[i] = Fused{Scored: s}
		if lexical {
			out[i].Lexical = s.Score
		} else {
			out[i].Dense = s.Score
		}
	}
	return out
}

// Fuse merges the lexical and dense lists (each best first) and returns the best limit ids.
func (f Fusion) Fuse(limit int, lexical, dense []store.Scored) []Fused {
	fused := make(map[string]*Fused, len(lexical)+len(dense))
	for side, l := range []struct {
		list []store.Scored
		w    float32
	}{{lexical, f.LexicalWeight}, {dense, f.DenseWeight}} {
		lo, span := float32(0), float32(0)
		switch f.Method {
		case FuseDBSF:
			lo, span = distribution(l.list)
		case FuseMinMax:
			lo, span = extremes(l.list)
		}
		for i, s := range l.list {
			e := fused[s.ID]
			if e == nil {
				e = &Fused{Scored: store.Scored{ID: s.ID}}
				fused[s.ID] = e
			}
			if side == 0 {
				e.Lexical = s.Score
			} else {
				e.Dense = s.Score
			}
			if f.Method == FuseDBSF || f.Method == FuseMinMax { // else (and when unset) RRF
				e.Score += l.w * normalized(s.Score, lo, span)
			} else {
				e.Score += f.PositionScore(i+1, l.w)
			}
		}
	}
	top := topk.New(limit, func(a, b Fused) bool { return store.Better(a.Scored, b.Scored) })
	for _, e := range fused {
		top.Push(*e)
	}
	return top.Sorted()
}

// distribution returns the low limit (mean - 3 sd) and the span (6 sd) of a list's scores.
func distribution(list []store.Scored) (lo, span float32) {
	if len(list) < 2 {
		return 0, 0
	}
	var mean, m2 float64
	for i, s := range list { // Welford's one-pass mean and variance
		d := float64(s.Score) - mean
		mean += d / float64(i+1)
		m2 += d * (float64(s.Score) - mean)
	}
	sd := math.Sqrt(m2 / float64(len(list)))
	return float32(mean - 3*sd), float32(6 * sd)
}

// normalized maps score into [0, 1] between lo and lo+span (0.5 when the span is 0).
func normalized(score, lo, span float32) float32 {
	if span == 0 {
		return 0.5
	}
	return min(1, max(0, (score-lo)/span))
}

// extremes returns the lowest score of a list and the span to the highest.
func extremes(list []store.Scored) (lo, span float32) {
	if len(list) == 0 {
		return 0, 0
	}
	lo, hi := list[0].Score, list[0].Score
	for _, s := range list {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	return lo, hi - lo
}
