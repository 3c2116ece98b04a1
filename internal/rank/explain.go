package rank

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"unicode"

	"github.com/paperrec/recommender/internal/lexical"
)

// TermWeight is a word with a weight.
type TermWeight struct {
	Term   string
	Weight float32
}

// IDF gives a term's rarity, by which SharedTerms weighs it.
type IDF func(term uint32) float64

// PoolRarity is the IDF to use when the corpus's is unknown (a store that does not say): rarity
// among the candidates considered, ln(1 + pool / (1 + docs of the pool holding it)). Candidates
// are alike, so it favours the words they do not share, specific or not.
func PoolRarity(pool []Candidate) IDF {
	df := map[uint32]int{}
	for i := range pool {
		for _, t := range pool[i].Lexical.Indices {
			df[t]++
		}
	}
	return func(t uint32) float64 { return math.Log(1 + float64(len(pool))/float64(1+df[t])) }
}

// SharedTerms returns up to n words of text (a paper's title and abstract) whose terms have a
// positive weight in the query, by their contribution to the match: query weight, times
// 1 + ln(its count in the paper), times its idf. With the corpus's idf a specific shared word
// ("polysomnography") comes before a generic one ("number") however often either occurs.
// A word is shown as the text writes it whole: "end-to-end", not "end"; the parts of one such
// word are one shared term, their weights summed.
func SharedTerms(query lexical.Vector, text string, idf IDF, n int) []TermWeight {
	counts := map[string]int{}
	for _, tok := range lexical.Analyze(text) {
		counts[tok.Term]++
	}
	surface := surfaces(text)
	var out []TermWeight
	at := map[string]int{} // index in out of each surface word
	for term, c := range counts {
		id := lexical.TermID(term)
		i, ok := slices.BinarySearch(query.Indices, id)
		if !ok || query.Values[i] <= 0 {
			continue
		}
		if w := float64(query.Values[i]) * (1 + math.Log(float64(c))) * idf(id); w > 0 {
			word := surface[term]
			if j, seen := at[word]; seen {
				out[j].Weight += float32(w)
				continue
			}
			at[word] = len(out)
			out = append(out, TermWeight{Term: word, Weight: float32(w)})
		}
	}
	slices.SortFunc(out, func(a, b TermWeight) int {
		if c := cmp.Compare(b.Weight, a.Weight); c != 0 {
			return c
		}
		return cmp.Compare(a.Term, b.Term)
	})
	return out[:min(n, len(out))]
}

// surfaces maps each term of text to the first word that holds it, lower-cased: the token
// itself, or, when the term occurs only inside hyphenated or slashed words, the first such word
// whole ("end-to-end", "encoder-decoder").
func surfaces(text string) map[string]string {
	plain, compound := map[string]string{}, map[string]string{}
	for _, word := range strings.Fields(text) {
		word = strings.ToLower(strings.TrimFunc(word, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }))
		for _, tok := range lexical.Analyze(word) {
			into, shown := plain, tok.Surface
			if strings.ContainsAny(word, "-/") && word != tok.Surface {
				into, shown = compound, word
			}
			if _, ok := into[tok.Term]; !ok {
				into[tok.Term] = shown
			}
		}
	}
	for term, word := range compound {
		if _, ok := plain[term]; !ok {
			plain[term] = word
		}
	}
	return plain
}
