package qdrant

import (
	qc "github.com/qdrant/go-client/qdrant"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// toPoint converts a paper: fields as payload (plus normalised authors for filtering, the
// content hash for unchanged detection and the lexical length), the dense vector, and the
// lexical vector as BM25 document weights, to which Qdrant's IDF modifier adds idf at query time.
func toPoint(p *store.Paper, contentHash string, avgLen float64) *qc.PointStruct {
	authorsNorm := make([]string, len(p.Authors))
	for i, a := range p.Authors {
		authorsNorm[i] = store.NormalizeAuthor(a)
	}
	length := lexicalLength(p.Lexical)
	payload := qc.NewValueMap(map[string]any{
		"paper_id": p.ID, "title": p.Title, "abstract": p.Abstract, "date": p.Date, "year": int64(p.Year),
		"authors": anyList(p.Authors), "authors_norm": anyList(authorsNorm), "categories": anyList(p.Categories),
		"topics": anyList(p.Topics), "url": p.URL, "dense_hash": p.DenseHash, "content_hash": contentHash, "lexical_length": length,
	})
	weights := make([]float32, p.Lexical.Len())
	for i, tf := range p.Lexical.Values {
		weights[i] = lexical.BM25Weight(tf, float32(length), float32(avgLen))
	}
	vectors := map[string]*qc.Vector{LexicalVector: qc.NewVectorSparse(p.Lexical.Indices, weights)}
	if len(p.Dense) > 0 {
		vectors[DenseVector] = qc.NewVectorDense(p.Dense)
	}
	return &qc.PointStruct{Id: qc.NewID(PointID(p.ID)), Payload: payload, Vectors: qc.NewVectorsMap(vectors)}
}

func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func stringList(v *qc.Value) []string {
	var out []string
	for _, x := range v.GetListValue().GetValues() {
		out = append(out, x.GetStringValue())
	}
	return out
}

// fromPayload reads a paper's fields back.
func fromPayload(pl map[string]*qc.Value) store.Paper {
	return store.Paper{
		ID: pl["paper_id"].GetStringValue(), Title: pl["title"].GetStringValue(), Abstract: pl["abstract"].GetStringValue(),
		Date: pl["date"].GetStringValue(), Year: int32(pl["year"].GetIntegerValue()),
		Authors: stringList(pl["authors"]), Categories: stringList(pl["categories"]), Topics: stringList(pl["topics"]),
		DenseHash: pl["dense_hash"].GetStringValue(), URL: pl["url"].GetStringValue(),
	}
}

// vectorsOf reads a point's vectors back, turning BM25 weights into term frequencies again.
func vectorsOf(v *qc.VectorsOutput, pl map[string]*qc.Value, avgLen float64) (lexical.Vector, []float32) {
	named := v.GetVectors().GetVectors()
	var lex lexical.Vector
	if sv := named[LexicalVector]; sv != nil {
		indices, weights := sv.GetSparse().GetIndices(), sv.GetSparse().GetValues()
		if sv.GetSparse() == nil { // older servers fill the deprecated fields
			indices, weights = sv.GetIndices().GetData(), sv.GetData()
		}
		length := float32(pl["lexical_length"].GetDoubleValue())
		lex = lexical.Vector{Indices: indices, Values: make([]float32, len(weights))}
		for i, w := range weights {
			lex.Values[i] = lexical.BM25TermFrequency(w, length, float32(avgLen))
		}
	}
	var dense []float32
	if dv := named[DenseVector]; dv != nil {
		dense = dv.GetDense().GetData()
		if dense == nil {
			dense = dv.GetData()
		}
	}
	return lex, dense
}

// toFilter translates a store filter into Qdrant conditions on the indexed payload fields.
func toFilter(f store.Filter) *qc.Filter {
	var must, mustNot []*qc.Condition
	if f.MinYear != 0 || f.MaxYear != 0 {
		// A year bound excludes papers of unknown year (stored as 0), as in the embedded store.
		r := &qc.Range{Gte: ptr(float64(max(f.MinYear, 1)))}
		if f.MaxYear != 0 {
			r.Lte = ptr(float64(f.MaxYear))
		}
		must = append(must, qc.NewRange("year", r))
	}
	if len(f.Categories) > 0 {
		must = append(must, qc.NewMatchKeywords("categories", f.Categories...))
	}
	if len(f.Authors) > 0 {
		norm := make([]string, len(f.Authors))
		for i, a := range f.Authors {
			norm[i] = store.NormalizeAuthor(a)
		}
		must = append(must, qc.NewMatchKeywords("authors_norm", norm...))
	}
	if f.OnlyIDs != nil {
		must = append(must, qc.NewHasID(pointIDs(f.OnlyIDs)...))
	}
	if len(f.ExcludeIDs) > 0 {
		mustNot = append(mustNot, qc.NewHasID(pointIDs(f.ExcludeIDs)...))
	}
	if must == nil && mustNot == nil {
		return nil
	}
	return &qc.Filter{Must: must, MustNot: mustNot}
}

func ptr[T any](v T) *T { return &v }

func pointIDs(paperIDs []string) []*qc.PointId {
	ids := make([]*qc.PointId, len(paperIDs))
	for i, id := range paperIDs {
		ids[i] = qc.NewID(PointID(id))
	}
	return ids
}
