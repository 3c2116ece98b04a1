package lexical

import "math"

// BM25 parameters: the values Robertson and Zaragoza recommend, and Lucene's defaults.
const (
	BM25K1 = 1.2
	BM25B  = 0.75
)

// BM25Weight is the document side of BM25 for one term: the saturated, length-normalised term
// frequency. Multiplied by the term's idf and the query weight, and summed over query terms, it
// gives the BM25 score.
func BM25Weight(tf, docLen, avgLen float32) float32 {
	return NewBM25(avgLen).Weight(tf, docLen)
}

// BM25 is BM25Weight for one average length, with the division by it done once: scoring loops
// over many postings use it.
type BM25 struct{ base, perLen float32 }

// NewBM25 prepares BM25Weight for documents of average length avgLen.
func NewBM25(avgLen float32) BM25 {
	return BM25{base: BM25K1 * (1 - BM25B), perLen: BM25K1 * BM25B / avgLen}
}

// Weight is BM25Weight(tf, docLen, avgLen).
func (b BM25) Weight(tf, docLen float32) float32 {
	return tf * (BM25K1 + 1) / (tf + b.base + b.perLen*docLen)
}

// BM25TermFrequency inverts BM25Weight: the term frequency that has weight w in a document of
// docLen terms. Stores that keep only weights (Qdrant) use it to give back the frequencies.
func BM25TermFrequency(w, docLen, avgLen float32) float32 {
	tf := w * bm25Norm(docLen, avgLen) / (BM25K1 + 1 - w)
	return float32(math.Round(float64(tf)*1000) / 1000) // undo float32 rounding noise
}

func bm25Norm(docLen, avgLen float32) float32 {
	b := NewBM25(avgLen)
	return b.base + b.perLen*docLen
}

// IDF is BM25's inverse document frequency (the "+1" variant that is never negative), the
// formula Qdrant's IDF modifier also uses.
func IDF(docs, docFreq float64) float64 {
	return math.Log(1 + (docs-docFreq+0.5)/(docFreq+0.5))
}
