package eval

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestSentenceMatches(t *testing.T) {
	x, y, xy := []float32{1, 0}, []float32{0, 1}, normalize([]float32{1, 1})
	seed := [][]float32{x, y}
	// One sentence matching one of the seed's exactly: the best pair is perfect, the mean of the
	// seed's best matches is not.
	cand := [][]float32{x}
	if got := MaxPair(seed, cand); got != 1 {
		t.Errorf("MaxPair = %v, want 1", got)
	}
	if got := MeanBest(seed, cand); got != 0.5 {
		t.Errorf("MeanBest = %v, want 0.5", got)
	}
	// Chamfer also asks how well the seed covers the candidate: fully here.
	if got := Chamfer(seed, cand); got != 0.75 {
		t.Errorf("Chamfer = %v, want 0.75", got)
	}
	// A candidate covering both of the seed's sentences moderately beats one covering one well
	// by MeanBest, not by MaxPair.
	if MeanBest(seed, [][]float32{xy}) <= MeanBest(seed, [][]float32{x}) || MaxPair(seed, [][]float32{xy}) >= MaxPair(seed, [][]float32{x}) {
		t.Error("MeanBest should reward coverage, MaxPair the best single match")
	}
}

func TestRRF(t *testing.T) {
	a := []string{"p1", "p2", "p3", "p4"}
	b := []string{"p3", "p1", "p4", "p2"}
	// Equal weights: p1 (1st, 2nd) and p3 (3rd, 1st) lead; p3 is first in b only.
	if got := RRF(60, 100, [][]string{a, b}, []float64{1, 1}); !slices.Equal(got, []string{"p1", "p3", "p2", "p4"}) {
		t.Errorf("RRF 1:1 = %v", got)
	}
	// A light weight on a follows b.
	if got := RRF(2, 100, [][]string{a, b}, []float64{0.01, 1}); !slices.Equal(got, b) {
		t.Errorf("RRF 0.01:1 = %v, want %v", got, b)
	}
	// Past the depth, candidates follow in list order.
	if got := RRF(60, 1, [][]string{a, b}, []float64{1, 1}); !slices.Equal(got, []string{"p1", "p3", "p2", "p4"}) {
		t.Errorf("RRF depth 1 = %v", got)
	}
}

func TestParseStrategy(t *testing.T) {
	for _, name := range []string{"today", "sent-mean", "prf:10:0.3", "rrf:2:5", "rrf-prf:60:1:5:0.5", "cosine-q2q"} {
		if s, err := ParseStrategy(name); err != nil || s.Rank == nil || s.About == "" {
			t.Errorf("ParseStrategy(%q) = %+v, %v", name, s, err)
		}
	}
	for _, name := range []string{"nope", "prf:x"} {
		if _, err := ParseStrategy(name); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("ParseStrategy(%q): error %v, want one naming it", name, err)
		}
	}
}

// BenchmarkSentenceRescoring measures what a sentence-level strategy adds to a request: the
// rescoring of a first stage's 200 papers, 9 sentence vectors of 384 dimensions each (the
// samples' mean is 8.3 with the title), by MeanBest.
func BenchmarkSentenceRescoring(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 2))
	vecs := func(n int) [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			v := make([]float32, 384)
			for d := range v {
				v[d] = float32(rnd.NormFloat64())
			}
			out[i] = normalize(v)
		}
		return out
	}
	seed := vecs(9)
	cands := make([][][]float32, 200)
	for i := range cands {
		cands[i] = vecs(9)
	}
	b.ResetTimer()
	for b.Loop() {
		for _, c := range cands {
			_ = MeanBest(seed, c)
		}
	}
}
