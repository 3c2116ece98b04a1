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
	return tf * (BM25K1 + 1) / (tf + bm25Norm(docLen, avgLen))
}

// BM25TermFrequency inverts BM25Weight: the term frequency that has weight w in a document of
// docLen terms. Stores that keep only weights (Qdrant) use it to give back the frequencies.
func BM25TermFrequency(w, docLen, avgLen float32) float32 {
	tf := w * bm25Norm(docLen, avgLen) / (BM25K1 + 1 - w)
	return float32(math.Round(float64(tf)*1000) / 1000) // undo float32 rounding noise
}

func bm25Norm(docLen, avgLen float32) float32 {
	return BM25K1 * (1 - BM25B + BM25B*docLen/avgLen)
}

// IDF is BM25's inverse document frequency (the "+1" variant that is never negative), the
// formula Qdrant's IDF modifier also uses.
func IDF(docs, docFreq float64) float64 {
	return math.Log(1 + (docs-docFreq+0.5)/(docFreq+0.5))
}
