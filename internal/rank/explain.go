package rank

import (
	"cmp"
	"math"
	"slices"

	"github.com/paperrec/recommender/internal/lexical"
)

// TermWeight is a word with a weight.
type TermWeight struct {
	Term   string
	Weight float32
}

// SharedTerms returns up to n words of text (a paper's title and abstract) whose terms have a
// positive weight in the query, heaviest first. A word weighs its query weight, times
// 1 + ln(its count in the paper), times its rarity among the candidates considered,
// ln(1 + pool / (1 + docs of the pool holding it)): without the rarity factor, words every
// candidate shares ("model", "learning") would explain nothing yet come first.
func SharedTerms(query lexical.Vector, text string, pool []Candidate, n int) []TermWeight {
	df := map[uint32]int{}
	for i := range pool {
		for _, t := range pool[i].Lexical.Indices {
			df[t]++
		}
	}
	counts := map[string]int{}
	surface := map[string]string{}
	for _, tok := range lexical.Analyze(text) {
		if counts[tok.Term] == 0 {
			surface[tok.Term] = tok.Surface
		}
		counts[tok.Term]++
	}
	var out []TermWeight
	for term, c := range counts {
		id := lexical.TermID(term)
		i, ok := slices.BinarySearch(query.Indices, id)
		if !ok || query.Values[i] <= 0 {
			continue
		}
		rarity := math.Log(1 + float64(len(pool))/float64(1+df[id]))
		w := float64(query.Values[i]) * (1 + math.Log(float64(c))) * rarity
		out = append(out, TermWeight{Term: surface[term], Weight: float32(w)})
	}
	slices.SortFunc(out, func(a, b TermWeight) int {
		if c := cmp.Compare(b.Weight, a.Weight); c != 0 {
			return c
		}
		return cmp.Compare(a.Term, b.Term)
	})
	return out[:min(n, len(out))]
}
