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
	ID         string
	Title      string
	Date       string // "YYYY-MM-DD" or empty
	Year       int32
	Score      float32 // relevance; re-ranking steps update it
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
// as its duplicates. It looks only at earlier candidates, so a prefix of the input gives a
// prefix of the output, and pages stay consistent however many candidates were fetched.
func CollapseDuplicates(cands []Candidate) []Candidate {
	first := map[string]int{}
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		key := NormalizeTitle(c.Title)
		if i, ok := first[key]; ok && key != "" {
			out[i].Duplicates = append(out[i].Duplicates, c.ID)
			continue
		}
		first[key] = len(out)
		out = append(out, c)
	}
	return out
}

// DropTitles removes the candidates whose normalised title is one of titles (with the papers
// folded into them).
func DropTitles(cands []Candidate, titles []string) []Candidate {
	drop := map[string]bool{}
	for _, t := range titles {
		if k := NormalizeTitle(t); k != "" {
			drop[k] = true
		}
	}
	if len(drop) == 0 {
		return cands
	}
	return slices.DeleteFunc(cands, func(c Candidate) bool { return drop[NormalizeTitle(c.Title)] })
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
// left as they were, so they need not decrease down the list.
func MMR(cands []Candidate, diversity float64) []Candidate {
	if diversity <= 0 || len(cands) < 3 {
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
	maxSim := make([]float64, len(left)) // highest similarity of each left candidate to the picks
	out := make([]Candidate, 0, len(cands))
	for len(left) > 0 {
		pick, pickValue := 0, math.Inf(-1)
		for i, c := range left {
			v := (1-diversity)*float64(c.Score)/best - diversity*maxSim[i]
			if v > pickValue {
				pick, pickValue = i, v
			}
		}
		chosen := left[pick]
		out = append(out, chosen)
		left = slices.Delete(left, pick, pick+1)
		maxSim = slices.Delete(maxSim, pick, pick+1)
		for i := range left {
			maxSim[i] = max(maxSim[i], Similarity(&chosen, &left[i]))
		}
	}
	return out
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
	damp := func(x float32) float64 {
		if x <= 0 {
			return 0
		}
		return 1 + math.Log(float64(x))
	}
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
