package rank

import (
	"math"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/paperrec/recommender/internal/lexical"
)

// Candidate is a retrieved paper on its way to the result list.
type Candidate struct {
	ID    string
	Title string
	Date  string // "YYYY-MM-DD" or empty
	Year  int32
	Score float32 // relevance; re-ranking steps update it
	// Relevance is the calibrated probability that the paper is relevant; re-ranking keeps it.
	Relevance  float32
	Lexical    lexical.Vector
	Dense      []float32
	Duplicates []string // ids folded into this one
}

// NormalizeTitle folds a title for duplicate detection: lower case, letters and digits only,
// single spaces. "Attention Is All You Need." and "Attention is all you need" are one title.
func NormalizeTitle(title string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(title) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		default:
			space = true
		}
	}
	return b.String()
}

// CollapseDuplicates keeps the best-ranked paper of each normalised title and lists the others
// as its duplicates; papers titled like one of drop (a seed's copies) are left out altogether.
func CollapseDuplicates(cands []Candidate, drop ...string) []Candidate {
	dropped := map[string]bool{}
	for _, t := range drop {
		if k := NormalizeTitle(t); k != "" {
			dropped[k] = true
		}
	}
	first := map[string]int{}
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		key := NormalizeTitle(c.Title)
		if dropped[key] {
			continue
		}
		if i, ok := first[key]; ok && key != "" {
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
		if Better(Scored{a.ID, a.Score}, Scored{b.ID, b.Score}) {
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
// picked), relevance scaled to [0, 1] by the best score. The best paper stays first. Scores are
// left as they were, so they need not decrease down the list. Only the first k picks are made
// (a page needs no more); the rest follow in relevance order. Picks are greedy, so a later page
// asking for more gets the same first ones. Each paper's vector is normalised once, so a
// similarity is one dot product: k x len(cands) of them in all.
func MMR(cands []Candidate, diversity float64, k int) []Candidate {
	if diversity <= 0 || len(cands) < 3 || k <= 1 {
		return cands
	}
	best := float64(cands[0].Score)
	for _, c := range cands {
		best = max(best, float64(c.Score))
	}
	if best <= 0 {
		best = 1
	}
	left := slices.Clone(cands)
	units := unitsOf(left)
	maxSim := make([]float64, len(left)) // highest similarity of each left candidate to the picks
	scatter := make([]float64, units.terms)
	out := make([]Candidate, 0, len(cands))
	for len(left) > 0 && len(out) < k {
		pick, pickValue := 0, math.Inf(-1)
		for i, c := range left {
			v := (1-diversity)*float64(c.Score)/best - diversity*maxSim[i]
			if v > pickValue {
				pick, pickValue = i, v
			}
		}
		chosen := units.vecs[pick]
		out = append(out, left[pick])
		left = slices.Delete(left, pick, pick+1)
		units.vecs = slices.Delete(units.vecs, pick, pick+1)
		maxSim = slices.Delete(maxSim, pick, pick+1)
		chosen.scatter(scatter)
		for i := range left {
			maxSim[i] = max(maxSim[i], chosen.similarity(&units.vecs[i], scatter))
		}
		chosen.unscatter(scatter)
	}
	return append(out, left...)
}

// unitVectors are a paper's vectors scaled to unit length (the term frequencies damped as in
// LexicalCosine), so that Similarity is a dot product. Terms are numbered 0..n-1 over the
// candidates, so a pick's term vector can be spread into an array each other paper reads
// directly.
type unitVectors struct {
	dense  []float32
	slots  []int32
	values []float64
}

// units are the candidates' unit vectors and the number of distinct terms among them.
type units struct {
	vecs  []unitVectors
	terms int
}

func unitsOf(cands []Candidate) units {
	// When every paper has an embedding of one size, only those are compared.
	allDense := len(cands[0].Dense) > 0
	for i := range cands {
		allDense = allDense && len(cands[i].Dense) == len(cands[0].Dense)
	}
	var slot termSlots
	if !allDense {
		n := 0
		for i := range cands {
			n += cands[i].Lexical.Len()
		}
		slot = newTermSlots(n)
	}
	u := units{vecs: make([]unitVectors, len(cands))}
	for ci := range cands {
		c := &cands[ci]
		var v unitVectors
		if !allDense {
			v.slots, v.values = make([]int32, c.Lexical.Len()), make([]float64, c.Lexical.Len())
			var ss float64
			for i, t := range c.Lexical.Indices {
				d := dampCached(c.Lexical.Values[i])
				v.slots[i], v.values[i] = slot.of(t), d
				ss += d * d
			}
			inv := 1 / math.Sqrt(max(ss, math.SmallestNonzeroFloat64))
			for i := range v.values {
				v.values[i] *= inv
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
		u.vecs[ci] = v
	}
	u.terms = int(slot.n)
	return u
}

// termSlots numbers terms 0, 1, ... in order of first sight: an open-addressing table, since a
// Go map made this numbering most of a diversity request's time (some 45,000 lookups).
type termSlots struct {
	keys  []uint32
	slots []int32 // -1: empty
	mask  uint32
	n     int32
}

func newTermSlots(terms int) termSlots {
	// Candidates share most of their terms: start at a fraction of the total and grow, so
	// the table stays small enough for the cache.
	size := 1024
	for size < terms/8 {
		size *= 2
	}
	return makeTermSlots(size)
}

func makeTermSlots(size int) termSlots {
	t := termSlots{keys: make([]uint32, size), slots: make([]int32, size), mask: uint32(size - 1)}
	for i := range t.slots {
		t.slots[i] = -1
	}
	return t
}

// of returns the slot of term, giving it the next one when new.
func (t *termSlots) of(term uint32) int32 {
	for i := (term * 0x9E3779B1) & t.mask; ; i = (i + 1) & t.mask { // Fibonacci hashing spreads hashed ids
		switch {
		case t.slots[i] < 0:
			if int(t.n+1)*2 > len(t.slots) { // over half full: double, then insert there
				t.grow()
				return t.of(term)
			}
			t.keys[i], t.slots[i] = term, t.n
			t.n++
			return t.slots[i]
		case t.keys[i] == term:
			return t.slots[i]
		}
	}
}

func (t *termSlots) grow() {
	bigger := makeTermSlots(2 * len(t.slots))
	for i, s := range t.slots {
		if s >= 0 {
			j := (t.keys[i] * 0x9E3779B1) & bigger.mask
			for bigger.slots[j] >= 0 {
				j = (j + 1) & bigger.mask
			}
			bigger.keys[j], bigger.slots[j] = t.keys[i], s
		}
	}
	bigger.n = t.n
	*t = bigger
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

// scatter spreads the term vector into a (all zero before), unscatter zeroes it again.
func (a *unitVectors) scatter(arr []float64) {
	for i, s := range a.slots {
		arr[s] = a.values[i]
	}
}

func (a *unitVectors) unscatter(arr []float64) {
	for _, s := range a.slots {
		arr[s] = 0
	}
}

// similarity is Similarity of a, whose term vector is scattered in arr, and b.
func (a *unitVectors) similarity(b *unitVectors, arr []float64) float64 {
	var dot float64
	if len(a.dense) > 0 && len(a.dense) == len(b.dense) {
		for i := range a.dense {
			dot += float64(a.dense[i]) * float64(b.dense[i])
		}
		return dot
	}
	for i, s := range b.slots {
		dot += arr[s] * b.values[i]
	}
	return dot
}

// Similarity is the cosine similarity of two papers: of their embeddings when both have one,
// else of their term vectors.
func Similarity(a, b *Candidate) float64 {
	if len(a.Dense) > 0 && len(a.Dense) == len(b.Dense) {
		return Cosine(a.Dense, b.Dense)
	}
	return LexicalCosine(a.Lexical, b.Lexical)
}

// Cosine is the cosine similarity of two vectors of equal length (0 if either is zero).
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
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
