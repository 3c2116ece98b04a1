package embedded

import (
	"context"
	"math"
	"slices"
	"sync"

	"github.com/paperrec/recommender/internal/ann"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// maxQueryTerms bounds how many query terms are scored: the highest |weight| x idf ones. A seed
// paper has 200-300 distinct terms and pairs; the rest add posting-list work but do not improve
// the results (96 measured best of 32-256 on the CSFCube dev split and the arXiv sample).
const maxQueryTerms = 96

// doc is the in-memory part of a paper: what scoring and filtering need. Full records stay on
// disk and are read only for the hits returned.
type doc struct {
	id         string
	year       int32
	categories []string
	authors    []string // store.NormalizeAuthor applied
	length     float32  // lexical.Vector.Sum of the document
	dense      []float32
	alive      bool
	ann        int32 // node in the ANN graph; -1 when none
}

type posting struct {
	doc uint32
	tf  float32
}

// index is the in-memory retrieval state. Updates are applied after the disk commit; deletions
// are lazy (the doc is marked dead and its postings skipped) and compacted in bulk once dead docs
// are a large share, so a write costs O(terms of the paper), not O(posting-list length).
type index struct {
	ann      *ann.Index // nil while loading: built or read once every paper is in
	annDocs  []uint32   // doc number of each ANN node
	annCfg   ANNOptions
	docs     []doc
	byID     map[string]uint32
	postings map[uint32][]posting
	df       map[uint32]int32 // live documents per term
	live     int
	dead     int
	sumLen   float64

	scratch sync.Pool // *scratch, sized to len(docs)
}

type scratch struct {
	acc   []float32
	mark  []uint32 // mark[d] == epoch: acc[d] is valid for this query
	epoch uint32
	hits  []uint32
}

func newIndex(cfg ANNOptions) *index {
	return &index{byID: map[string]uint32{}, postings: map[uint32][]posting{}, df: map[uint32]int32{}, annCfg: cfg}
}

// put adds a paper; the caller removes any older version first.
func (x *index) put(p *store.Paper) {
	n := uint32(len(x.docs))
	authors := make([]string, len(p.Authors))
	for i, a := range p.Authors {
		authors[i] = store.NormalizeAuthor(a)
	}
	d := doc{id: p.ID, year: p.Year, categories: slices.Clone(p.Categories), authors: authors,
		length: p.Lexical.Sum(), dense: normalized(p.Dense), alive: true, ann: -1}
	x.docs = append(x.docs, d)
	x.addToANN(n)
	x.byID[p.ID] = n
	for i, t := range p.Lexical.Indices {
		x.postings[t] = append(x.postings[t], posting{doc: n, tf: p.Lexical.Values[i]})
		x.df[t]++
	}
	x.live++
	x.sumLen += float64(d.length)
}

// remove deletes a paper if present. terms is the paper's stored lexical vector: the index
// keeps no per-doc term list, so the caller, who has just read the record from disk, supplies it
// for the document-frequency upkeep. Postings stay until compaction.
func (x *index) remove(id string, terms lexical.Vector) {
	n, ok := x.byID[id]
	if !ok {
		return
	}
	delete(x.byID, id)
	d := &x.docs[n]
	d.alive = false
	if d.ann >= 0 {
		x.ann.Delete(uint32(d.ann))
	}
	x.live--
	x.dead++
	x.sumLen -= float64(d.length)
	for _, t := range terms.Indices {
		if x.df[t]--; x.df[t] <= 0 {
			delete(x.df, t)
		}
	}
}

// maybeCompact renumbers live docs and drops dead postings once dead docs outnumber half the
// live ones (and a floor, so small stores do not compact on every delete).
func (x *index) maybeCompact() {
	if x.dead < 1024 || x.dead < x.live/2 {
		return
	}
	remap := make([]uint32, len(x.docs))
	docs := make([]doc, 0, x.live)
	for i, d := range x.docs {
		if d.alive {
			remap[i] = uint32(len(docs))
			x.byID[d.id] = uint32(len(docs))
			docs = append(docs, d)
		}
	}
	for t, ps := range x.postings {
		kept := ps[:0]
		for _, p := range ps {
			if x.docs[p.doc].alive {
				kept = append(kept, posting{doc: remap[p.doc], tf: p.tf})
			}
		}
		if len(kept) == 0 {
			delete(x.postings, t)
		} else {
			x.postings[t] = slices.Clip(kept)
		}
	}
	x.docs = docs
	x.dead = 0
	for i, n := range x.annDocs {
		x.annDocs[i] = remap[n] // nodes of deleted docs are tombstones; their entry is never read
	}
	if x.ann != nil && x.ann.Deleted() > x.ann.Len()/2 {
		x.buildANN() // too many tombstones slow every search
	}
}

type scored struct {
	doc   uint32
	score float32
}

// search runs q against the index and returns the best q.Limit hits, by score then id.
func (x *index) search(ctx context.Context, q store.Query) ([]rank.Scored, error) {
	m := x.matcher(q.Filter)
	switch {
	case q.Lexical.Len() > 0 && len(q.Dense) > 0:
		// Hybrid: fuse deeper candidate lists than the page needs, so papers ranked moderately
		// by both signals can surface.
		depth := max(q.Limit, 100)
		lex, err := x.searchLexical(ctx, q.Lexical, m, depth)
		if err != nil {
			return nil, err
		}
		dense, err := x.searchDense(ctx, q.Dense, m, depth, q.Exact)
		if err != nil {
			return nil, err
		}
		return rank.FuseRRF(q.Limit, lex, dense), nil
	case len(q.Dense) > 0:
		return x.searchDense(ctx, q.Dense, m, q.Limit, q.Exact)
	default:
		return x.searchLexical(ctx, q.Lexical, m, q.Limit)
	}
}

func (x *index) better(a, b scored) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return x.docs[a.doc].id < x.docs[b.doc].id
}

func (x *index) toScored(hits []scored) []rank.Scored {
	out := make([]rank.Scored, len(hits))
	for i, h := range hits {
		out[i] = rank.Scored{ID: x.docs[h.doc].id, Score: h.score}
	}
	return out
}

// queryTerm is one query term ready for scoring.
type queryTerm struct {
	weight float32 // query weight x idf
	ps     []posting
}

// searchLexical scores term at a time with BM25 into a reusable accumulator, then selects the
// top k. Only papers with a positive score are returned: a paper that shares nothing with the
// query is not "similar", however few results that leaves.
func (x *index) searchLexical(ctx context.Context, qv lexical.Vector, m *matcher, k int) ([]rank.Scored, error) {
	if x.live == 0 || k <= 0 {
		return nil, nil
	}
	n := float64(x.live)
	avgLen := float32(x.sumLen / n)
	terms := make([]queryTerm, 0, qv.Len())
	for i, t := range qv.Indices {
		df, ok := x.df[t]
		if !ok || qv.Values[i] == 0 {
			continue
		}
		idf := float32(lexical.IDF(n, float64(df)))
		terms = append(terms, queryTerm{weight: qv.Values[i] * idf, ps: x.postings[t]})
	}
	if len(terms) > maxQueryTerms {
		slices.SortStableFunc(terms, func(a, b queryTerm) int {
			return cmpFloat(abs32(b.weight), abs32(a.weight))
		})
		terms = terms[:maxQueryTerms]
	}

	s := x.getScratch()
	defer x.scratch.Put(s)
	for _, qt := range terms {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, p := range qt.ps {
			d := &x.docs[p.doc]
			if !d.alive {
				continue
			}
			contrib := qt.weight * lexical.BM25Weight(p.tf, d.length, avgLen)
			if s.mark[p.doc] != s.epoch {
				s.mark[p.doc] = s.epoch
				s.acc[p.doc] = 0
				s.hits = append(s.hits, p.doc)
			}
			s.acc[p.doc] += contrib
		}
	}
	top := rank.NewTopK(k, x.better)
	for _, d := range s.hits {
		if sc := s.acc[d]; sc > 0 && m.match(d) {
			top.Push(scored{doc: d, score: sc})
		}
	}
	return x.toScored(top.Sorted()), nil
}

// searchDense finds the k papers whose vectors are most similar to qv: with the ANN graph, or
// exactly when the store is small, when the request asks, when the filter names the candidates,
// or when a filtered graph search finds fewer than k papers (the filter was too selective for the
// walk), so a filter never costs results.
func (x *index) searchDense(ctx context.Context, qv []float32, m *matcher, k int, exact bool) ([]rank.Scored, error) {
	q := normalized(qv)
	if x.ann == nil || exact || m.only != nil || x.live < x.annCfg.ExactBelow {
		return x.scanDense(ctx, q, m, k)
	}
	res := x.ann.Search(q, k, max(x.annCfg.EfSearch, k), func(id uint32) bool {
		n := x.annDocs[id]
		return len(x.docs[n].dense) == len(q) && m.match(n)
	})
	if len(res) < k && m.restricts() {
		return x.scanDense(ctx, q, m, k)
	}
	top := rank.NewTopK(k, x.better)
	for _, r := range res {
		top.Push(scored{doc: x.annDocs[r.ID], score: r.Score})
	}
	return x.toScored(top.Sorted()), nil
}

// scanDense is the exact cosine scan over the live papers that pass the filter.
func (x *index) scanDense(ctx context.Context, q []float32, m *matcher, k int) ([]rank.Scored, error) {
	top := rank.NewTopK(k, x.better)
	visit := func(i uint32) {
		d := &x.docs[i]
		if d.alive && len(d.dense) == len(q) && m.match(i) {
			top.Push(scored{doc: i, score: dot(q, d.dense)})
		}
	}
	if m.only != nil { // a candidate list: look at those papers only
		for i := range m.only {
			visit(i)
		}
		return x.toScored(top.Sorted()), nil
	}
	for i := range x.docs {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		visit(uint32(i))
	}
	return x.toScored(top.Sorted()), nil
}

// addToANN links doc n into the graph, when there is one and the doc has a vector.
func (x *index) addToANN(n uint32) {
	if x.ann == nil || x.docs[n].dense == nil {
		return
	}
	x.docs[n].ann = int32(x.ann.Add(x.docs[n].dense))
	x.annDocs = append(x.annDocs, n)
}

// buildANN builds the graph afresh from the live papers' vectors.
func (x *index) buildANN() {
	x.ann, x.annDocs = ann.New(x.annCfg.Graph), nil
	for i := range x.docs {
		x.docs[i].ann = -1
		if x.docs[i].alive {
			x.addToANN(uint32(i))
		}
	}
}

func (x *index) getScratch() *scratch {
	s, _ := x.scratch.Get().(*scratch)
	if s == nil || len(s.acc) < len(x.docs) {
		s = &scratch{acc: make([]float32, len(x.docs)), mark: make([]uint32, len(x.docs))}
	}
	s.epoch++
	if s.epoch == 0 { // wrapped: old marks could alias the new epoch
		clear(s.mark)
		s.epoch = 1
	}
	s.hits = s.hits[:0]
	return s
}

// matcher evaluates a filter against docs.
type matcher struct {
	x          *index
	f          store.Filter
	only       map[uint32]bool // nil: no restriction
	excluded   map[uint32]bool
	categories map[string]bool
	authors    map[string]bool
}

func (x *index) matcher(f store.Filter) *matcher {
	m := &matcher{x: x, f: f, excluded: map[uint32]bool{}}
	if f.OnlyIDs != nil {
		m.only = map[uint32]bool{}
		for _, id := range f.OnlyIDs {
			if n, ok := x.byID[id]; ok {
				m.only[n] = true
			}
		}
	}
	for _, id := range f.ExcludeIDs {
		if n, ok := x.byID[id]; ok {
			m.excluded[n] = true
		}
	}
	if len(f.Categories) > 0 {
		m.categories = map[string]bool{}
		for _, c := range f.Categories {
			m.categories[c] = true
		}
	}
	if len(f.Authors) > 0 {
		m.authors = map[string]bool{}
		for _, a := range f.Authors {
			m.authors[store.NormalizeAuthor(a)] = true
		}
	}
	return m
}

// restricts reports whether the filter excludes more than a few named papers (seeds), that is,
// whether it may leave a graph walk short of results.
func (m *matcher) restricts() bool {
	f := m.f
	return f.MinYear != 0 || f.MaxYear != 0 || len(f.Categories) > 0 || len(f.Authors) > 0 || len(m.excluded) > 100
}

func (m *matcher) match(n uint32) bool {
	d := &m.x.docs[n]
	if !d.alive || m.excluded[n] || (m.only != nil && !m.only[n]) {
		return false
	}
	if (m.f.MinYear != 0 || m.f.MaxYear != 0) && d.year == 0 {
		return false
	}
	if m.f.MinYear != 0 && d.year < m.f.MinYear || m.f.MaxYear != 0 && d.year > m.f.MaxYear {
		return false
	}
	if m.categories != nil && !anyIn(d.categories, m.categories) {
		return false
	}
	if m.authors != nil && !anyIn(d.authors, m.authors) {
		return false
	}
	return true
}

func anyIn(values []string, set map[string]bool) bool {
	for _, v := range values {
		if set[v] {
			return true
		}
	}
	return false
}

// normalized returns v scaled to unit length (nil for nil or zero vectors), so that cosine
// similarity is a dot product.
func normalized(v []float32) []float32 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return nil
	}
	inv := float32(1 / math.Sqrt(ss))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

// dot is written with four accumulators so the compiler keeps them in registers and the CPU can
// pipeline the multiply-adds; an assembly kernel belongs to the approximate-index work.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

func cmpFloat(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
