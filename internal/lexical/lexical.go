package lexical

import (
	"math"
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/kljensen/snowball/english"
)

// TitleWeight is how many times a title term counts against an abstract term: titles are short
// and say what the paper is about, so a field weight of 2 is the usual BM25F-style choice.
const TitleWeight = 2

// Vector is a sparse term vector. Indices are term ids (see TermID), sorted ascending and unique;
// Values are parallel to them: term frequencies for documents, weights for queries.
type Vector struct {
	Indices []uint32
	Values  []float32
}

// Len is the number of distinct terms.
func (v Vector) Len() int { return len(v.Indices) }

// Sum is the sum of the values: a document's length in (weighted) terms.
func (v Vector) Sum() float32 {
	var s float32
	for _, x := range v.Values {
		s += x
	}
	return s
}

// TermID maps a term to its index in sparse vectors. Ids are a 32-bit FNV-1a hash rather than
// a vocabulary lookup so that any process (every stateless replica, every store backend) computes
// the same id with no shared state. Two terms can collide; with a vocabulary of a million terms a
// few dozen pairs do, which merges two rare words and is harmless for ranking.
func TermID(term string) uint32 {
	return fnvAdd(fnvOffset, term)
}

// FNV-1a, as hash/fnv computes it, without its allocation: ingest hashes every word.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnvAdd(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h
}

// pairID is TermID(first + " " + second), without building the string.
func pairID(first, second string) uint32 {
	return fnvAdd((fnvAdd(fnvOffset, first)^' ')*fnvPrime, second)
}

// Token is one analyzed word: the term used for matching and the word as written (lower-cased).
type Token struct {
	Term, Surface string
}

// Analyze returns the tokens of text in order, repeats kept: lower-cased alphanumeric words
// that contain a letter, stop words removed, terms stemmed with the Snowball English stemmer.
func Analyze(text string) []Token {
	var out []Token
	forEachToken(text, func(tok string) {
		if _, stop := stopWords[tok]; stop {
			return
		}
		out = append(out, Token{Term: stem(tok), Surface: tok})
	})
	return out
}

// Terms returns the terms of Analyze.
func Terms(text string) []string {
	toks := Analyze(text)
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.Term
	}
	return out
}

// Document is the vector of a paper: frequencies of terms and adjacent pairs of terms (pairs at
// BigramWeight) over title (counted TitleWeight times) and abstract. Frequencies are summed by
// term id directly (as fromCounts would merge them), so a backfill builds no pair strings.
func Document(title, abstract string) Vector {
	tf := make(map[uint32]float32, 256)
	for _, field := range []struct {
		text string
		w    float32
	}{{title, TitleWeight}, {abstract, 1}} {
		prev := ""
		forEachWord(field.text, func(word []byte) {
			if _, stop := stopWords[string(word)]; stop {
				return
			}
			t := stemWord(word)
			tf[TermID(t)] += field.w
			if prev != "" {
				tf[pairID(prev, t)] += field.w * BigramWeight
			}
			prev = t
		})
	}
	return fromIDs(tf)
}

// Query is the vector of free text used as a query, terms and pairs as in Document: each weighs
// 1 + ln(its frequency), so a long pasted abstract is not dominated by the words it repeats.
func Query(text string) Vector {
	tf := map[string]float32{}
	addTerms(tf, text, 1)
	for t, n := range tf {
		tf[t] = 1 + float32(math.Log(float64(n)))
	}
	return fromCounts(tf)
}

func fromCounts(tf map[string]float32) Vector {
	byID := make(map[uint32]float32, len(tf))
	for t, n := range tf {
		byID[TermID(t)] += n
	}
	return fromIDs(byID)
}

// fromIDs is the vector of frequencies by term id, in id order.
func fromIDs(tf map[uint32]float32) Vector {
	v := Vector{Indices: make([]uint32, 0, len(tf)), Values: make([]float32, 0, len(tf))}
	for id := range tf {
		v.Indices = append(v.Indices, id)
	}
	slices.Sort(v.Indices)
	for _, id := range v.Indices {
		v.Values = append(v.Values, tf[id])
	}
	return v
}

// forEachToken calls fn with each lower-cased run of letters and digits that contains a letter
// and is at least two characters long. Pure numbers ("2021", "4") carry no topic.
func forEachToken(text string, fn func(string)) {
	forEachWord(text, func(w []byte) { fn(string(w)) })
}

// forEachWord is forEachToken with the word in a buffer reused for the next one: map look-ups
// by string(word) do not allocate. ASCII, nearly all of an English abstract, takes a fast path.
func forEachWord(text string, fn func([]byte)) {
	var arr [64]byte
	buf := arr[:0]
	hasLetter := false
	flush := func() {
		if hasLetter && len(buf) >= 2 {
			fn(buf)
		}
		buf = buf[:0]
		hasLetter = false
	}
	for i := 0; i < len(text); {
		if c := text[i]; c < utf8.RuneSelf {
			switch {
			case 'a' <= c && c <= 'z' || '0' <= c && c <= '9':
				buf = append(buf, c)
				hasLetter = hasLetter || c >= 'a'
			case 'A' <= c && c <= 'Z':
				buf = append(buf, c+'a'-'A')
				hasLetter = true
			default:
				flush()
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		switch {
		case unicode.IsLetter(r):
			hasLetter = true
			buf = utf8.AppendRune(buf, unicode.ToLower(r))
		case unicode.IsDigit(r):
			buf = utf8.AppendRune(buf, r)
		default:
			flush()
		}
	}
	flush()
}

// stemCache memoises the stemmer, which dominates analysis time: vocabularies are Zipfian, so a
// bounded cache answers nearly every lookup during a backfill.
var (
	stemMu    sync.RWMutex
	stemCache = map[string]string{}
)

const stemCacheMax = 500_000

func stem(tok string) string { return stemWord([]byte(tok)) }

// stemWord stems a word held in a reused buffer.
func stemWord(w []byte) string {
	stemMu.RLock()
	s, ok := stemCache[string(w)]
	stemMu.RUnlock()
	if ok {
		return s
	}
	tok := string(w)
	s = english.Stem(tok, false)
	stemMu.Lock()
	if len(stemCache) < stemCacheMax {
		stemCache[tok] = s
	}
	stemMu.Unlock()
	return s
}

// BigramWeight is the weight of a pair of adjacent terms ("neural network", "question
// answer") relative to a single term. Pairs capture the phrases that name research topics; at
// half weight they raised topic precision@10 on the arXiv sample from 0.650 to 0.684 and
// NDCG%20 on the CSFCube dev split from 0.550 to 0.566, while at full weight the rare pairs
// crowd single terms out of the query and both fall.
const BigramWeight = 0.5

// addTerms adds the terms of text, and the pairs of adjacent terms, with weight w.
func addTerms(tf map[string]float32, text string, w float32) {
	terms := Terms(text)
	for i, t := range terms {
		tf[t] += w
		if i > 0 {
			tf[terms[i-1]+" "+t] += w * BigramWeight
		}
	}
}
