package rank

import (
	"context"
	"iter"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// Candidate is a retrieved paper on its way to the result list.
type Candidate struct {
	ID    string
	Title string
	Date  string // "YYYY-MM-DD" or empty
	Year  int32
	Score float32 // relevance; re-ranking steps update it
	// Relevance is the calibrated probability that the paper is relevant; re-ranking keeps it.
	Relevance float32
	Lexical   lexical.Vector
	Dense     []float32
	// Sketch, when set, stands for Lexical in comparisons (Similarity): cheaper, and needs no
	// term vector.
	Sketch     *lexical.Sketch
	Duplicates []string // ids folded into this one
}

// NormalizeTitle folds a title for duplicate detection: lower case, letters and digits only,
// single spaces. "Attention Is All You Need." and "Attention is all you need" are one title.
func NormalizeTitle(title string) string {
	var b strings.Builder
	b.Grow(len(title))
	for r := range foldedTitle(title) {
		b.WriteRune(r)
	}
	return b.String()
}

// TitleKey is a 64-bit hash of NormalizeTitle(title), without building it; 0 when that is empty.
func TitleKey(title string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211 // FNV-1a
	h := uint64(offset)
	for r := range foldedTitle(title) {
		h = (h ^ uint64(r)) * prime
	}
	if h == offset {
		return 0
	}
	return h
}

// foldedTitle yields NormalizeTitle(title) rune by rune.
func foldedTitle(title string) iter.Seq[rune] {
	return func(yield func(rune) bool) {
		space, started := false, false
		for _, r := range title {
			switch {
			case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || '0' <= r && r <= '9'):
			case r < utf8.RuneSelf && 'A' <= r && r <= 'Z':
				r += 'a' - 'A'
			case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
				r = unicode.ToLower(r)
			default:
				space = true
				continue
			}
			if space && started && !yield(' ') {
				return
			}
			space, started = false, true
			if !yield(r) {
				return
			}
		}
	}
}

// CollapseDuplicates keeps the best-ranked paper of each normalised title and lists the others
// as its duplicates; papers titled like one of drop (a seed's copies) are left out altogether.
func CollapseDuplicates(cands []Candidate, drop ...string) []Candidate {
	dropped := map[uint64]bool{}
	for _, t := range drop {
		if k := TitleKey(t); k != 0 {
			dropped[k] = true
		}
	}
	first := make(map[uint64]int, len(cands))
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		key := TitleKey(c.Title)
		if dropped[key] {
			continue
		}
		if i, ok := first[key]; ok && key != 0 {
			out[i].Duplicates = append(out[i].Duplicates, c.ID)
			continue
		}
		first[key] = len(out)
		out = append(out, c)
	}
	return out
}

// ApplyRecency multiplies each score by 0.5^(age / halfLife) and re-sorts. Age runs from the
// paper's date, or the middle of its year, to now. A paper of unknown date gets the factor of
// the oldest dated candidate: no boost, but no penalty for missing metadata either.
func ApplyRecency(cands []Candidate, halfLife time.Duration, now time.Time) {
	factors := make([]float64, len(cands))
	oldest := 1.0
	for i := range cands {
		factors[i] = -1
		if t, ok := paperTime(&cands[i]); ok {
			factors[i] = math.Pow(0.5, float64(max(now.Sub(t), 0))/float64(halfLife))
			oldest = min(oldest, factors[i])
		}
	}
	for i := range cands {
		if factors[i] < 0 {
			factors[i] = oldest
		}
		cands[i].Score *= float32(factors[i])
	}
	slices.SortStableFunc(cands, func(a, b Candidate) int {
		if store.Better(store.Scored{ID: a.ID, Score: a.Score}, store.Scored{ID: b.ID, Score: b.Score}) {
			return -1
		}
		return 1
	})
}

func paperTime(c *Candidate) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, c.Date); err == nil {
		return t, true
	}
	if c.Year > 0 {
		return time.Date(int(c.Year), time.July, 1, 0, 0, 0, 0, time.UTC), true
	}
	return time.Time{}, false
}

// MMR re-ranks with maximal marginal relevance (Carbonell and Goldstein, 1998): each next pick
// maximises (1 - diversity) x relevance - diversity x (highest similarity to a paper already
// picked), relevance scaled to [0, 1] by the best score and similarities below 0 counted as 0.
// The best paper stays first. Scores are left as they were, so they need not decrease down the
// list. Only the first k picks are made (a page needs no more); the rest follow in relevance
// order. Picks are greedy, so a later page asking for more gets the same first ones.
//
// It is lazy: a similarity can only lower a paper's value, so a pick stops looking once no paper
// further down can score above the best value found, and a paper's similarities to the picks are
// computed only when its value, as known so far, could still win. On a pool of hundreds that
// touches a few dozen papers instead of k x the pool. It checks ctx before each pick.
func MMR(ctx context.Context, cands []Candidate, diversity float64, k int) ([]Candidate, error) {
	if diversity <= 0 || len(cands) < 3 || k <= 1 {
		return cands, nil
	}
	n := len(cands)
	best := float64(cands[0].Score)
	for _, c := range cands {
		best = max(best, float64(c.Score))
	}
	if best <= 0 {
		best = 1
	}
	// relevance[i] is paper i's value before any similarity; ceiling[i] bounds the value of
	// every paper from i on: their best relevance.
	relevance, ceiling := make([]float64, n), make([]float64, n+1)
	ceiling[n] = math.Inf(-1)
	for i := n - 1; i >= 0; i-- {
		relevance[i] = (1 - diversity) * float64(cands[i].Score) / best
		ceiling[i] = max(ceiling[i+1], relevance[i])
	}
	// When every paper has an embedding of one size, those are compared; else when every
	// paper has a sketch, sketches; else term vectors.
	allSketched, allDense := true, len(cands[0].Dense) > 0
	for i := range cands {
		allSketched = allSketched && cands[i].Sketch != nil
		allDense = allDense && len(cands[i].Dense) == len(cands[0].Dense)
	}
	allSketched = allSketched && !allDense
	vecs := make([]*unitVectors, n) // made when a paper is first compared
	unit := func(i int) *unitVectors {
		if vecs[i] == nil {
			vecs[i] = unitOf(&cands[i], !allDense)
		}
		return vecs[i]
	}
	maxSim := make([]float64, n) // highest similarity to the first compared[i] picks
	compared := make([]int, n)
	taken := make([]bool, n)
	tables := make([]termTable, n) // the picks' term vectors, for lookups by term
	picks := make([]int, 0, min(k, n))
	for len(picks) < cap(picks) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pick, pickValue := -1, math.Inf(-1)
		for i := 0; i < n && ceiling[i] > pickValue; i++ {
			if taken[i] || relevance[i]-diversity*maxSim[i] <= pickValue {
				continue
			}
			for _, p := range picks[compared[i]:] {
				if allSketched {
					maxSim[i] = max(maxSim[i], cands[p].Sketch.Similarity(cands[i].Sketch))
				} else {
					maxSim[i] = max(maxSim[i], unit(p).similarity(unit(i), &tables[p]))
				}
			}
			compared[i] = len(picks)
			if v := relevance[i] - diversity*maxSim[i]; v > pickValue {
				pick, pickValue = i, v
			}
		}
		taken[pick] = true
		picks = append(picks, pick)
		if !allDense && !allSketched {
			tables[pick] = newTermTable(unit(pick))
		}
	}
	out := make([]Candidate, 0, n)
	for _, p := range picks {
		out = append(out, cands[p])
	}
	for i := range cands {
		if !taken[i] {
			out = append(out, cands[i])
		}
	}
	return out, nil
}

// unitVectors are a paper's vectors scaled to unit length (the term frequencies damped as in
// LexicalCosine), so that a similarity is a dot product.
type unitVectors struct {
	dense []float32
	terms []uint32 // ascending, as in lexical.Vector
	value []float64
}

func unitOf(c *Candidate, lexicalToo bool) *unitVectors {
	v := &unitVectors{}
	if lexicalToo {
		v.terms, v.value = c.Lexical.Indices, make([]float64, c.Lexical.Len())
		var ss float64
		for i, x := range c.Lexical.Values {
			v.value[i] = dampCached(x)
			ss += v.value[i] * v.value[i]
		}
		inv := 1 / math.Sqrt(max(ss, math.SmallestNonzeroFloat64))
		for i := range v.value {
			v.value[i] *= inv
		}
	}
	if len(c.Dense) > 0 {
		var dd float64
		for _, x := range c.Dense {
			dd += float64(x) * float64(x)
		}
		v.dense = make([]float32, len(c.Dense))
		for i, x := range c.Dense {
			v.dense[i] = float32(float64(x) / math.Sqrt(max(dd, math.SmallestNonzeroFloat64)))
		}
	}
	return v
}

// dampedSmall holds damp of the frequencies a term vector mostly holds, multiples of 0.5
// below 32 (adjacent-term pairs count half), so most terms take no logarithm.
var dampedSmall = func() (d [64]float64) {
	for i := range d {
		d[i] = damp(float32(i) / 2)
	}
	return d
}()

func dampCached(x float32) float64 {
	if h := x * 2; h >= 0 && h < 64 && h == float32(int(h)) {
		return dampedSmall[int(h)]
	}
	return damp(x)
}

// similarity is Similarity of the two papers' unit vectors; at holds a's term vector.
func (a *unitVectors) similarity(b *unitVectors, at *termTable) float64 {
	var dot float64
	if len(a.dense) > 0 && len(a.dense) == len(b.dense) {
		for i := range a.dense {
			dot += float64(a.dense[i]) * float64(b.dense[i])
		}
		return dot
	}
	for j, t := range b.terms {
		dot += at.get(t) * b.value[j]
	}
	return dot
}

// termTable maps a pick's terms to its values: open addressing, at most a quarter full, so a
// look-up (most miss) is about one probe. Cheaper than merging two sorted term lists.
type termTable struct {
	keys []uint32
	vals []float64 // 0: empty (a term present has a positive value)
	mask uint32
}

func newTermTable(u *unitVectors) termTable {
	size := 64
	for size < 4*len(u.terms) {
		size *= 2
	}
	t := termTable{keys: make([]uint32, size), vals: make([]float64, size), mask: uint32(size - 1)}
	for i, term := range u.terms {
		j := (term * 0x9E3779B1) & t.mask // Fibonacci hashing spreads hashed ids
		for t.vals[j] != 0 {
			j = (j + 1) & t.mask
		}
		t.keys[j], t.vals[j] = term, u.value[i]
	}
	return t
}

func (t *termTable) get(term uint32) float64 {
	for j := (term * 0x9E3779B1) & t.mask; ; j = (j + 1) & t.mask {
		if t.vals[j] == 0 || t.keys[j] == term {
			return t.vals[j]
		}
	}
}

// Similarity is the cosine similarity of two papers: of their embeddings when both have one,
// else estimated from their sketches when both have one, else of their term vectors.
func Similarity(a, b *Candidate) float64 {
	if len(a.Dense) > 0 && len(a.Dense) == len(b.Dense) {
		return store.Cosine(a.Dense, b.Dense)
	}
	if a.Sketch != nil && b.Sketch != nil {
		return a.Sketch.Similarity(b.Sketch)
	}
	return LexicalCosine(a.Lexical, b.Lexical)
}

// LexicalCosine is the cosine similarity of two sparse term vectors, with term frequencies
// damped to 1 + ln(tf) so a repeated word does not dominate.
func LexicalCosine(a, b lexical.Vector) float64 {
	var dot, na, nb float64
	for _, x := range a.Values {
		na += damp(x) * damp(x)
	}
	for _, x := range b.Values {
		nb += damp(x) * damp(x)
	}
	i, j := 0, 0
	for i < a.Len() && j < b.Len() {
		switch {
		case a.Indices[i] < b.Indices[j]:
			i++
		case a.Indices[i] > b.Indices[j]:
			j++
		default:
			dot += damp(a.Values[i]) * damp(b.Values[j])
			i++
			j++
		}
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// damp is a term frequency as the similarities weigh it, 1 + ln(tf).
func damp(x float32) float64 {
	if x <= 0 {
		return 0
	}
	return 1 + math.Log(float64(x))
}
