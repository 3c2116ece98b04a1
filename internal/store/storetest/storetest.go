// Package storetest is the conformance suite every store.Store backend must pass. It lives in a
// non-test file so each backend's tests can import it; the embedded store runs it in every
// `go test`.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// Opener returns a new, empty store that the suite may use until the test ends.
type Opener func(t *testing.T) store.Store

// Features declares what a backend supports beyond the core contract.
type Features struct {
	// IndexVersion: Stats.IndexVersion increases with every write. (Qdrant keeps no write
	// counter, so its adapter reports 0.)
	IndexVersion bool
	// Shards is how many parts the backend splits the papers into, each weighing terms by its
	// own document frequencies (Qdrant's IDF is per shard): papers alike on different shards
	// score differently, so ties hold within a shard only. 0 or 1: one.
	Shards int
}

// Run runs the whole suite against the backend that open creates.
func Run(t *testing.T, open Opener, f Features) {
	features = f
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"UpsertGetRoundTrip", testUpsertGet},
		{"ReupsertIsIdempotent", testReupsert},
		{"ReadBackResentIsUnchanged", testResendReadBack},
		{"UpdateReplacesTerms", testUpdate},
		{"DeleteAndUnknownIDs", testDelete},
		{"LexicalTopK", testLexicalTopK},
		{"ReadFields", testReadFields},
		{"Sketches", testSketches},
		{"NegativeWeightsPushDown", testNegativeWeights},
		{"TiesBrokenByID", testTies},
		{"Filters", testFilters},
		{"DenseExact", testDense},
		{"Hybrid", testHybrid},
		{"ManyDeletes", testManyDeletes},
		{"BindEmbedding", testBindEmbedding},
		{"BindPrefixes", testBindPrefixes},
		{"ConcurrentWritersAndReaders", testConcurrent},
		{"Feeds", testFeeds},
		{"WriteLog", testWriteLog},
		{"VectorSets", testVectorSets},
		{"NeighbourLists", testNeighbourLists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

// features is set by Run for the backend under test.
var features Features

// bind ties the store to a test model of the given size: backends may need the size before
// they can store vectors (Qdrant creates the dense vector with the collection).
func bind(t *testing.T, s store.Store, dims int) {
	t.Helper()
	if _, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "conformance", Dimensions: dims}); err != nil {
		t.Fatalf("bind: %v", err)
	}
}

// Paper builds a paper with its lexical vector, as the service would store it.
func Paper(id, title, abstract string) store.Paper {
	return store.Paper{ID: id, Title: title, Abstract: abstract, Lexical: lexical.Document(title, abstract)}
}

func upsert(t *testing.T, s store.Store, papers ...store.Paper) []store.Outcome {
	t.Helper()
	out, err := s.Upsert(ctx, papers)
	if err != nil {
		t.Fatalf("upsert: %v", err)
	}
	return out
}

// searchLists runs q and checks each list: in Better's order, at most Limit long, nil for a
// signal q does not have.
func searchLists(t *testing.T, s store.Store, q store.Query) store.Lists {
	t.Helper()
	lists, err := s.Search(ctx, q)
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	for _, l := range []struct {
		name string
		has  bool
		list []store.Scored
	}{{"lexical", q.Lexical.Len() > 0, lists.Lexical}, {"dense", len(q.Dense) > 0, lists.Dense}} {
		if !l.has && l.list != nil {
			t.Fatalf("a %s list for a query without that signal: %v", l.name, l.list)
		}
		for i := 1; i < len(l.list); i++ {
			if a, b := l.list[i-1], l.list[i]; !store.Better(a, b) {
				t.Fatalf("%s list out of order at %d: %s %v then %s %v", l.name, i, a.ID, a.Score, b.ID, b.Score)
			}
		}
		if len(l.list) > q.Limit {
			t.Fatalf("%s list of %d, limit %d", l.name, len(l.list), q.Limit)
		}
	}
	return lists
}

// search runs a query of one signal and returns its list.
func search(t *testing.T, s store.Store, q store.Query) []store.Scored {
	t.Helper()
	lists := searchLists(t, s, q)
	if q.Lexical.Len() > 0 {
		return lists.Lexical
	}
	return lists.Dense
}

// read reads ids and checks that the records come in the order asked.
func read(t *testing.T, s store.Store, ids []string, fields store.Fields) []store.Record {
	t.Helper()
	records, err := s.Read(ctx, ids, fields, "")
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	at := 0
	for _, r := range records {
		for at < len(ids) && ids[at] != r.Paper.ID {
			at++
		}
		if at == len(ids) {
			t.Fatalf("read %v returned %s out of order or unasked", ids, r.Paper.ID)
		}
		at++
	}
	return records
}

func hitIDs(hits []store.Scored) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

func textQuery(text string, limit int) store.Query {
	return store.Query{Lexical: lexical.Query(text), Limit: limit}
}

// sameDirection reports whether two vectors point the same way: a store may return a dense
// vector scaled to unit length (Qdrant's cosine distance stores it so), and only its direction
// counts.
func sameDirection(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	return store.Cosine(a, b) > 1-1e-6
}

func testUpsertGet(t *testing.T, s store.Store) {
	bind(t, s, 3)
	p := Paper("a", "Graph neural networks", "Message passing on graphs.")
	p.Authors, p.Categories, p.Topics = []string{"Ada Lovelace", "Alan Turing"}, []string{"cs.LG"}, []string{"GNN"}
	p.Year, p.Date, p.URL = 2021, "2021-03-04", "https://example.org/papers/a"
	p.Dense, p.DenseHash = []float32{0.5, -1, 2}, "0123abcd"
	if got := upsert(t, s, p, Paper("b", "Other", "Text.")); !slices.Equal(got, []store.Outcome{store.Inserted, store.Inserted}) {
		t.Fatalf("outcomes %v, want inserted twice", got)
	}
	got, err := s.Get(ctx, []string{"b", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "b" || got[1].ID != "a" {
		t.Fatalf("get returned %v, want b then a", hitIDsOf(got))
	}
	a := got[1]
	if a.Title != p.Title || a.Abstract != p.Abstract || !slices.Equal(a.Authors, p.Authors) ||
		!slices.Equal(a.Categories, p.Categories) || !slices.Equal(a.Topics, p.Topics) || a.Year != p.Year ||
		a.Date != p.Date || a.URL != p.URL || !sameDirection(a.Dense, p.Dense) || a.DenseHash != p.DenseHash ||
		!slices.Equal(a.Lexical.Indices, p.Lexical.Indices) || !slices.Equal(a.Lexical.Values, p.Lexical.Values) {
		t.Fatalf("round trip changed the paper:\n got %+v\nwant %+v", a, p)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.PaperCount != 2 || (features.IndexVersion && st.IndexVersion == 0) {
		t.Fatalf("stats = %+v, %v; want 2 papers and a version", st, err)
	}
}

func hitIDsOf(ps []store.Paper) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func testReupsert(t *testing.T, s store.Store) {
	ps := []store.Paper{Paper("a", "One", "First."), Paper("b", "Two", "Second.")}
	upsert(t, s, ps...)
	v1, _ := s.Stats(ctx)
	if got := upsert(t, s, ps...); !slices.Equal(got, []store.Outcome{store.Unchanged, store.Unchanged}) {
		t.Fatalf("re-upsert outcomes %v, want unchanged", got)
	}
	v2, _ := s.Stats(ctx)
	if v1.IndexVersion != v2.IndexVersion || v2.PaperCount != 2 {
		t.Fatalf("unchanged re-upsert changed stats %+v -> %+v", v1, v2)
	}
	// Within one batch the last occurrence of an id wins.
	out := upsert(t, s, Paper("c", "Three", "x"), Paper("c", "Three", "y"))
	if out[0] != store.Inserted || out[1] != store.Updated {
		t.Fatalf("repeated id outcomes %v, want inserted then updated", out)
	}
	got, err := s.Get(ctx, []string{"c"})
	if err != nil || got[0].Abstract != "y" {
		t.Fatalf("repeated id stored %v, %v; want the last", got, err)
	}
}

// testResendReadBack sends again a paper as the store returned it, as ingest does when it reuses
// a stored vector: a backend that returns vectors scaled to unit length must still find it
// unchanged, or every resent batch would be rewritten and counted as updated.
func testResendReadBack(t *testing.T, s store.Store) {
	bind(t, s, 3)
	var ps []store.Paper
	for i := range 50 {
		p := Paper(fmt.Sprintf("p%02d", i), "Vectors", "Read back.")
		// Lengths other than 1, and unit vectors whose normalisation may move the last bit.
		p.Dense, p.DenseHash = []float32{0.5 + float32(i), -1, 2}, fmt.Sprintf("h%02d", i)
		if i%2 == 1 {
			p.Dense = unit(p.Dense)
		}
		ps = append(ps, p)
	}
	upsert(t, s, ps...)
	back, err := s.Get(ctx, hitIDsOf(ps))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range upsert(t, s, back...) {
		if o != store.Unchanged {
			t.Fatalf("%s as read back, sent again: %v, want unchanged", back[i].ID, o)
		}
	}
}

func unit(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / math.Sqrt(n))
	}
	return out
}

func testUpdate(t *testing.T, s store.Store) {
	upsert(t, s, Paper("a", "Quantum annealing", "Qubits."), Paper("b", "Filler", "Nothing relevant."))
	if got := upsert(t, s, Paper("a", "Protein folding", "Amino acids.")); got[0] != store.Updated {
		t.Fatalf("outcome %v, want updated", got[0])
	}
	if hits := search(t, s, textQuery("quantum annealing qubits", 10)); len(hits) != 0 {
		t.Fatalf("old terms still match: %v", hitIDs(hits))
	}
	if hits := search(t, s, textQuery("protein folding", 10)); !slices.Equal(hitIDs(hits), []string{"a"}) {
		t.Fatalf("new terms match %v, want [a]", hitIDs(hits))
	}
	if st, _ := s.Stats(ctx); st.PaperCount != 2 {
		t.Fatalf("count %d after update, want 2", st.PaperCount)
	}
}

func testDelete(t *testing.T, s store.Store) {
	upsert(t, s, Paper("a", "Alpha topic", "Alpha."), Paper("b", "Beta topic", "Beta."))
	notFound, err := s.Delete(ctx, []string{"a", "zzz"})
	if err != nil || !slices.Equal(notFound, []string{"zzz"}) {
		t.Fatalf("delete = %v, %v; want [zzz] not found", notFound, err)
	}
	_, err = s.Get(ctx, []string{"b", "a", "q"})
	var nf *store.NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, store.ErrNotFound) || !slices.Equal(nf.IDs, []string{"a", "q"}) {
		t.Fatalf("get of deleted/unknown ids: %v; want NotFoundError naming a and q", err)
	}
	found, err := s.Lookup(ctx, []string{"q", "b", "a"})
	if err != nil || len(found) != 1 || found[0].ID != "b" {
		t.Fatalf("lookup = %v, %v; want only b", hitIDsOf(found), err)
	}
	if hits := search(t, s, textQuery("alpha topic", 10)); slices.Contains(hitIDs(hits), "a") {
		t.Fatal("deleted paper still found")
	}
	if got := read(t, s, []string{"a", "b", "q"}, 0); len(got) != 1 || got[0].Paper.ID != "b" {
		t.Fatalf("read of a deleted, a stored and an unknown id: %d records, want b alone", len(got))
	}
	if st, _ := s.Stats(ctx); st.PaperCount != 1 {
		t.Fatalf("count %d, want 1", st.PaperCount)
	}
	// Re-inserting a deleted id is an insert.
	if got := upsert(t, s, Paper("a", "Alpha topic", "Alpha.")); got[0] != store.Inserted {
		t.Fatalf("re-insert outcome %v", got[0])
	}
}

func testLexicalTopK(t *testing.T, s store.Store) {
	upsert(t, s,
		Paper("exact", "Reciprocal rank fusion", "Fusing ranked lists with reciprocal rank fusion."),
		Paper("partial", "Rank aggregation", "Combining rankings."),
		Paper("title-only-fusion", "Fusion reactors", "Plasma confinement."),
		Paper("unrelated", "Soil chemistry", "Nitrogen in soil."),
	)
	hits := search(t, s, textQuery("reciprocal rank fusion", 10))
	ids := hitIDs(hits)
	if len(ids) == 0 || ids[0] != "exact" {
		t.Fatalf("best hit %v, want exact first", ids)
	}
	if slices.Contains(ids, "unrelated") {
		t.Fatalf("paper sharing no term returned: %v", ids)
	}
	for _, h := range hits {
		if h.Score <= 0 {
			t.Fatalf("hit %+v: want a positive score", h)
		}
	}
	if got := search(t, s, textQuery("reciprocal rank fusion", 1)); len(got) != 1 || got[0].ID != "exact" {
		t.Fatalf("limit 1 = %v", hitIDs(got))
	}
}

// Read fills in what it is asked for: brief (what ranking reads), metadata, each vector.
func testReadFields(t *testing.T, s store.Store) {
	bind(t, s, 3)
	p := Paper("a", "Reciprocal rank fusion", "Fusing ranked lists with reciprocal rank fusion.")
	p.Date, p.Year, p.Authors, p.Categories, p.URL = "2009-07-19", 2009, []string{"Gordon Cormack"}, []string{"cs.IR"}, "https://example.org/rrf"
	p.Dense, p.DenseHash = []float32{1, 2, 3}, "rrf"
	upsert(t, s, p, Paper("b", "Other", "Text."))
	brief := read(t, s, []string{"a"}, 0)
	if len(brief) != 1 {
		t.Fatalf("brief read: %d records", len(brief))
	}
	if h := brief[0]; h.Paper.ID != p.ID || h.Paper.Title != p.Title || h.Paper.Date != p.Date || h.Paper.Year != p.Year ||
		h.Paper.Lexical.Len() != 0 || h.Paper.Dense != nil || h.Sketch != nil {
		t.Fatalf("brief read %+v, want id, title, date and year of %+v and no representations", h, p)
	}
	meta := read(t, s, []string{"a"}, store.Metadata)[0].Paper
	if meta.Abstract != p.Abstract || !slices.Equal(meta.Authors, p.Authors) || !slices.Equal(meta.Categories, p.Categories) ||
		meta.URL != p.URL || meta.DenseHash != p.DenseHash || meta.Lexical.Len() != 0 || meta.Dense != nil {
		t.Fatalf("metadata read %+v, want the fields of %+v and no representations", meta, p)
	}
	lex := read(t, s, []string{"a"}, store.LexicalVector)[0].Paper
	if !slices.Equal(lex.Lexical.Indices, p.Lexical.Indices) || !slices.Equal(lex.Lexical.Values, p.Lexical.Values) || lex.Dense != nil {
		t.Fatalf("term vector read: %v, dense %v; want %v alone", lex.Lexical, lex.Dense, p.Lexical)
	}
	dense := read(t, s, []string{"a", "b"}, store.DenseVector)
	st, _ := s.Stats(ctx)
	if len(dense) != 2 || !sameDirection(dense[0].Paper.Dense, p.Dense) || dense[0].Paper.DenseSet != st.Embedding.Key() ||
		dense[0].Paper.Lexical.Len() != 0 || dense[1].Paper.Dense != nil {
		t.Fatalf("dense read %+v, want a's direction in the active set and none for b", dense)
	}
	all := read(t, s, []string{"b", "a"}, store.AllFields)
	if len(all) != 2 || all[1].Paper.Abstract != p.Abstract || all[1].Paper.Lexical.Len() == 0 || !sameDirection(all[1].Paper.Dense, p.Dense) {
		t.Fatalf("whole read %+v", all)
	}
	if got := read(t, s, nil, store.AllFields); len(got) != 0 {
		t.Fatalf("read of no ids: %v", got)
	}
}

// Read gives a paper's term sketch when asked, of the paper's current text.
func testSketches(t *testing.T, s store.Store) {
	papers := []store.Paper{
		Paper("a", "Reciprocal rank fusion", "Fusing ranked lists with reciprocal rank fusion."),
		Paper("b", "Rank aggregation", "Combining rankings by rank fusion."),
		Paper("c", "Fusion reactors", "Plasma confinement."),
	}
	upsert(t, s, papers...)
	papers[1] = Paper("b", "Rank aggregation, revised", "Combining rankings by Borda count and rank fusion.")
	upsert(t, s, papers[1])
	want := map[string]lexical.Sketch{}
	for _, p := range papers {
		want[p.ID] = p.Lexical.Sketch()
	}
	ids := hitIDs(search(t, s, textQuery("rank fusion", 10)))
	if len(ids) != 3 {
		t.Fatalf("hits %v", ids)
	}
	for _, r := range read(t, s, ids, store.Metadata) {
		if r.Sketch != nil {
			t.Fatalf("%s: a sketch not asked for", r.Paper.ID)
		}
	}
	for _, r := range read(t, s, ids, store.Sketch) {
		if r.Sketch == nil || *r.Sketch != want[r.Paper.ID] || r.Paper.Lexical.Len() != 0 {
			t.Fatalf("%s: sketch %v, lexical %v: want the current text's sketch and no vectors", r.Paper.ID, r.Sketch != nil, r.Paper.Lexical)
		}
	}
}

func testNegativeWeights(t *testing.T, s store.Store) {
	upsert(t, s,
		Paper("a", "Speech recognition transformers", "Transformers for speech."),
		Paper("b", "Speech recognition with hidden Markov models", "Hidden Markov models for speech."))
	q := lexical.Combine([]lexical.Vector{lexical.Query("speech recognition")}, nil)
	plain := hitIDs(search(t, s, store.Query{Lexical: q, Limit: 10}))
	neg := lexical.Combine([]lexical.Vector{lexical.Query("speech recognition")}, []lexical.Vector{lexical.Query("hidden markov models")})
	pushed := hitIDs(search(t, s, store.Query{Lexical: neg, Limit: 10}))
	if len(plain) != 2 || len(pushed) == 0 || pushed[0] != "a" || slices.Index(pushed, "b") == 0 {
		t.Fatalf("without negative %v, with negative %v: want b pushed below a", plain, pushed)
	}
}

func testTies(t *testing.T, s store.Store) {
	var ps []store.Paper
	for _, i := range rand.New(rand.NewPCG(7, 7)).Perm(40) {
		ps = append(ps, Paper(fmt.Sprintf("tie-%02d", i), "Same title", "Same abstract."))
	}
	upsert(t, s, ps...)
	hits := search(t, s, textQuery("same title", 15))
	got := hitIDs(hits)
	want := make([]string, 15)
	for i := range want {
		want[i] = fmt.Sprintf("tie-%02d", i)
	}
	if features.Shards > 1 {
		// One score per shard, and within each the ids in order (search checked the order).
		scores := map[float32]bool{}
		for _, h := range hits {
			scores[h.Score] = true
		}
		if len(got) != 15 || len(scores) > features.Shards {
			t.Fatalf("tied hits %v with %d scores, want 15 with at most one score per shard", got, len(scores))
		}
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tied hits %v, want the 15 smallest ids in order", got)
	}
}

func testFilters(t *testing.T, s store.Store) {
	mk := func(id string, year int32, cats, authors []string) store.Paper {
		p := Paper(id, "Filtered topic", "Filtered abstract.")
		p.Year, p.Categories, p.Authors = year, cats, authors
		return p
	}
	upsert(t, s,
		mk("y2019", 2019, []string{"cs.LG"}, []string{"Ada Lovelace"}),
		mk("y2020", 2020, []string{"cs.IR"}, []string{"Alan Turing"}),
		mk("y2021", 2021, []string{"cs.IR", "cs.DB"}, []string{"Grace Hopper", "Ada Lovelace"}),
		mk("nodate", 0, nil, nil),
	)
	cases := []struct {
		name string
		f    store.Filter
		want []string
	}{
		{"none", store.Filter{}, []string{"nodate", "y2019", "y2020", "y2021"}},
		{"min year", store.Filter{MinYear: 2020}, []string{"y2020", "y2021"}},
		{"max year", store.Filter{MaxYear: 2020}, []string{"y2019", "y2020"}},
		{"year range", store.Filter{MinYear: 2020, MaxYear: 2020}, []string{"y2020"}},
		{"categories any of", store.Filter{Categories: []string{"cs.DB", "cs.LG"}}, []string{"y2019", "y2021"}},
		{"authors any of, folded", store.Filter{Authors: []string{"ada  LOVELACE"}}, []string{"y2019", "y2021"}},
		{"exclusions", store.Filter{ExcludeIDs: []string{"y2019", "nodate", "unknown"}}, []string{"y2020", "y2021"}},
		{"all together", store.Filter{MinYear: 2019, Categories: []string{"cs.IR"}, Authors: []string{"Grace Hopper"}}, []string{"y2021"}},
		{"only these ids", store.Filter{OnlyIDs: []string{"y2019", "y2021", "unknown"}}, []string{"y2019", "y2021"}},
		{"only these ids, filtered", store.Filter{OnlyIDs: []string{"y2019", "y2021"}, MinYear: 2020}, []string{"y2021"}},
	}
	for _, tc := range cases {
		q := textQuery("filtered topic", 10)
		q.Filter = tc.f
		got := hitIDs(search(t, s, q))
		sort.Strings(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// randomVectors returns n papers with seeded random dense vectors.
func randomVectors(n, dims int, seed uint64) []store.Paper {
	rng := rand.New(rand.NewPCG(seed, seed))
	ps := make([]store.Paper, n)
	for i := range ps {
		ps[i] = Paper(fmt.Sprintf("v%03d", i), fmt.Sprintf("Vector paper %d", i), "Shared words.")
		ps[i].Dense = make([]float32, dims)
		for j := range ps[i].Dense {
			ps[i].Dense[j] = float32(rng.NormFloat64())
		}
	}
	return ps
}

func testDense(t *testing.T, s store.Store) {
	bind(t, s, 16)
	ps := randomVectors(200, 16, 1)
	upsert(t, s, ps...)
	q := slices.Clone(ps[0].Dense)
	q[0] += 0.3 // near p0, not identical
	type sc struct {
		id string
		s  float64
	}
	var want []sc
	for _, p := range ps {
		want = append(want, sc{p.ID, store.Cosine(q, p.Dense)})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].s > want[j].s })
	hits := search(t, s, store.Query{Dense: q, Limit: 10})
	if len(hits) != 10 {
		t.Fatalf("%d dense hits, want 10", len(hits))
	}
	for i, h := range hits {
		if h.ID != want[i].id || math.Abs(float64(h.Score)-want[i].s) > 1e-4 {
			t.Fatalf("dense hit %d = %s %.5f, want %s %.5f (exact cosine)", i, h.ID, h.Score, want[i].id, want[i].s)
		}
	}
	// What comparing papers needs, read together: their embeddings (direction only: a backend
	// may scale them) and sketches, without the term vectors.
	byID := map[string][]float32{}
	for _, p := range ps {
		byID[p.ID] = p.Dense
	}
	for _, r := range read(t, s, hitIDs(hits), store.DenseVector|store.Sketch) {
		if r.Sketch == nil || r.Paper.Lexical.Len() != 0 || len(r.Paper.Dense) != 16 || store.Cosine(r.Paper.Dense, byID[r.Paper.ID]) < 0.9999 {
			t.Fatalf("comparable read %s: sketch %v, lexical %d terms, dense %v, want the stored direction %v",
				r.Paper.ID, r.Sketch != nil, r.Paper.Lexical.Len(), r.Paper.Dense, byID[r.Paper.ID])
		}
	}
	// Papers without a vector are never dense hits; filters apply.
	upsert(t, s, Paper("novec", "Vector paper", "Shared words."))
	qf := store.Query{Dense: q, Limit: 300, Filter: store.Filter{ExcludeIDs: []string{"v000"}}}
	got := hitIDs(search(t, s, qf))
	if len(got) != 199 || slices.Contains(got, "novec") || slices.Contains(got, "v000") {
		t.Fatalf("filtered dense search returned %d hits (novec or v000 present?)", len(got))
	}
}

// A query of both signals gives each signal's list as that signal alone would.
func testHybrid(t *testing.T, s store.Store) {
	bind(t, s, 8)
	ps := randomVectors(50, 8, 2)
	ps[7].Title, ps[7].Lexical = "Zebra crossing", lexical.Document("Zebra crossing", "Shared words.")
	upsert(t, s, ps...)
	both := searchLists(t, s, store.Query{Lexical: lexical.Query("shared zebra"), Dense: ps[7].Dense, Limit: 5})
	lex := search(t, s, store.Query{Lexical: lexical.Query("shared zebra"), Limit: 5})
	dense := search(t, s, store.Query{Dense: ps[7].Dense, Limit: 5})
	if len(lex) != 5 || len(dense) != 5 || lex[0].ID != "v007" || dense[0].ID != "v007" {
		t.Fatalf("lexical %v, dense %v: want 5 each, v007 first", hitIDs(lex), hitIDs(dense))
	}
	same := func(a, b []store.Scored) bool {
		return slices.EqualFunc(a, b, func(x, y store.Scored) bool { return x.ID == y.ID && math.Abs(float64(x.Score-y.Score)) <= 1e-5 })
	}
	if !same(both.Lexical, lex) || !same(both.Dense, dense) {
		t.Fatalf("both signals: %v and %v; alone: %v and %v", both.Lexical, both.Dense, lex, dense)
	}
}

func testManyDeletes(t *testing.T, s store.Store) {
	var ps []store.Paper
	for i := range 3000 {
		topic := "even"
		if i%2 == 1 {
			topic = "odd"
		}
		ps = append(ps, Paper(fmt.Sprintf("m%04d", i), "Number "+topic, fmt.Sprintf("An %s number.", topic)))
	}
	for i := 0; i < len(ps); i += 500 {
		upsert(t, s, ps[i:i+500]...)
	}
	var del []string
	for i := 0; i < 2900; i++ {
		del = append(del, ps[i].ID)
	}
	for i := 0; i < len(del); i += 500 {
		if _, err := s.Delete(ctx, del[i:min(i+500, len(del))]); err != nil {
			t.Fatal(err)
		}
	}
	got := hitIDs(search(t, s, textQuery("odd", 1000)))
	first := slices.Clone(got[:min(3, len(got))])
	if features.Shards > 1 { // scores differ by shard: compare the papers, not their order
		slices.Sort(got)
	}
	if len(got) != 50 || got[0] != "m2901" || got[49] != "m2999" {
		t.Fatalf("after deletes: %d odd hits starting %v, want the 50 surviving odd papers", len(got), first)
	}
	if st, _ := s.Stats(ctx); st.PaperCount != 100 {
		t.Fatalf("count %d, want 100", st.PaperCount)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	errc := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				p := Paper(fmt.Sprintf("w%d-%03d", w, i), "Concurrent writes", fmt.Sprintf("Writer %d paper %d.", w, i))
				if _, err := s.Upsert(ctx, []store.Paper{p}); err != nil {
					errc <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range perWriter {
				if _, err := s.Search(ctx, textQuery("concurrent writes", 20)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx); st.PaperCount != writers*perWriter {
		t.Fatalf("count %d, want %d", st.PaperCount, writers*perWriter)
	}
	if got := search(t, s, textQuery("concurrent writes", 1000)); len(got) != writers*perWriter {
		t.Fatalf("%d papers found, want %d", len(got), writers*perWriter)
	}
}

func testBindEmbedding(t *testing.T, s store.Store) {
	if st, _ := s.Stats(ctx); st.Embedding != (store.EmbeddingSpec{}) {
		t.Fatalf("new store bound to %+v", st.Embedding)
	}
	if _, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "m1"}); err == nil {
		t.Fatal("first binding without dimensions accepted")
	}
	m1 := store.EmbeddingSpec{Model: "m1", Dimensions: 8}
	if got, err := s.BindEmbedding(ctx, m1); err != nil || got != m1 {
		t.Fatalf("bind = %+v, %v", got, err)
	}
	// The same model without dimensions learns them from the store.
	if got, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "m1"}); err != nil || got != m1 {
		t.Fatalf("rebind = %+v, %v", got, err)
	}
	for _, other := range []store.EmbeddingSpec{{Model: "m2", Dimensions: 8}, {Model: "m1", Dimensions: 16},
		{Model: "m1", Dimensions: 8, QueryPrefix: "query: "}, {Model: "m1", Dimensions: 8, DocumentPrefix: "passage: "}} {
		var mm *store.EmbeddingMismatchError
		if _, err := s.BindEmbedding(ctx, other); !errors.As(err, &mm) || mm.Stored != m1 {
			t.Fatalf("bind %+v over %+v: %v, want a mismatch", other, m1, err)
		}
	}
	if st, _ := s.Stats(ctx); st.Embedding != m1 {
		t.Fatalf("stats embedding %+v, want %+v", st.Embedding, m1)
	}
}

// testBindPrefixes: the prefixes are recorded with the model, so that a store filled with an
// asymmetric model's document prefix is never queried without its query prefix.
func testBindPrefixes(t *testing.T, s store.Store) {
	e5 := store.EmbeddingSpec{Model: "e5", Dimensions: 8, QueryPrefix: "query: ", DocumentPrefix: "passage: "}
	if got, err := s.BindEmbedding(ctx, e5); err != nil || got != e5 {
		t.Fatalf("bind = %+v, %v", got, err)
	}
	if got, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "e5", QueryPrefix: "query: ", DocumentPrefix: "passage: "}); err != nil || got != e5 {
		t.Fatalf("rebind = %+v, %v", got, err)
	}
	for _, other := range []store.EmbeddingSpec{{Model: "e5", Dimensions: 8}, {Model: "e5", Dimensions: 8, QueryPrefix: "query: "},
		{Model: "e5", Dimensions: 8, QueryPrefix: "query:", DocumentPrefix: "passage:"}} {
		var mm *store.EmbeddingMismatchError
		if _, err := s.BindEmbedding(ctx, other); !errors.As(err, &mm) || mm.Stored != e5 {
			t.Fatalf("bind %+v over %+v: %v, want a mismatch", other, e5, err)
		}
	}
	if st, _ := s.Stats(ctx); st.Embedding != e5 {
		t.Fatalf("stats embedding %+v, want %+v", st.Embedding, e5)
	}
}

// Feeds are kept by id (feed ids are time-ordered UUIDs), replaced, listed in id order and
// deleted.
func testFeeds(t *testing.T, s store.Store) {
	fs, ok := s.(store.Feeds)
	if !ok {
		t.Skip("the store keeps no feeds")
	}
	var ids []string
	for i := range 3 {
		id := uuid.Must(uuid.NewV7()).String()
		ids = append(ids, id)
		if err := fs.PutFeed(ctx, id, []byte(fmt.Sprintf("feed %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.PutFeed(ctx, ids[1], []byte("feed 1, renamed")); err != nil {
		t.Fatal(err)
	}
	if b, err := fs.GetFeed(ctx, ids[1]); err != nil || string(b) != "feed 1, renamed" {
		t.Fatalf("get: %q (%v)", b, err)
	}
	for _, id := range []string{uuid.Must(uuid.NewV7()).String(), "not-a-uuid"} {
		if _, err := fs.GetFeed(ctx, id); !errors.Is(err, store.ErrFeedNotFound) {
			t.Fatalf("get %s: %v, want ErrFeedNotFound", id, err)
		}
	}
	if err := fs.DeleteFeed(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := fs.DeleteFeed(ctx, ids[0]); !errors.Is(err, store.ErrFeedNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	list, err := fs.ListFeeds(ctx)
	if err != nil || len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[2] || string(list[1].Data) != "feed 2" {
		t.Fatalf("list %v (%v), want feeds 1 and 2 in order", list, err)
	}
}

// The write log lists papers in the order written, from any cursor; an unchanged re-send is no
// write; a paper written again is last (a store may also keep its earlier place).
func testWriteLog(t *testing.T, s store.Store) {
	wl, ok := s.(store.ChangeLog)
	if !ok {
		t.Skip("the store keeps no write log")
	}
	written := wl.Written()
	head, err := wl.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := Paper("wl-a", "First paper", "Alpha."), Paper("wl-b", "Second paper", "Beta."), Paper("wl-c", "Third paper", "Gamma.")
	for _, p := range []store.Paper{a, b, c} {
		upsert(t, s, p)
	}
	select { // a write ends the wait (a store shared by processes polls: at most a few seconds)
	case <-written:
	case <-time.After(30 * time.Second):
		t.Fatal("Written did not fire after a write")
	}
	upsert(t, s, a) // unchanged: no write
	b.Abstract = "Beta, revised."
	b.Lexical = lexical.Document(b.Title, b.Abstract)
	upsert(t, s, b)
	changes, err := wl.Changes(ctx, head, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := lastWrites(changes); !slices.Equal(got, []string{"wl-a", "wl-c", "wl-b"}) {
		t.Fatalf("writes after the head %v (latest of each %v), want a, c, then b again", changes, got)
	}
	for i := 1; i < len(changes); i++ {
		if !changes[i-1].Cursor.Before(changes[i].Cursor) || changes[i].At.Before(changes[i-1].At) {
			t.Fatalf("changes out of order: %v", changes)
		}
	}
	// From a change's cursor: what follows it. In pages of one: the same.
	after, err := wl.Changes(ctx, changes[0].Cursor, 100)
	if err != nil || !slices.Equal(ids(after), ids(changes[1:])) {
		t.Fatalf("after %v: %v (%v)", changes[0].Cursor, after, err)
	}
	var paged []store.Change
	for cur := head; ; {
		page, err := wl.Changes(ctx, cur, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged, cur = append(paged, page...), page[0].Cursor
	}
	if !slices.Equal(ids(paged), ids(changes)) {
		t.Fatalf("in pages of one %v, at once %v", ids(paged), ids(changes))
	}
	// By time: from the first write's time, all; from after the last, none.
	from, err := wl.CursorAt(ctx, changes[0].At)
	if err != nil {
		t.Fatal(err)
	}
	if all, err := wl.Changes(ctx, from, 100); err != nil || !slices.Equal(ids(all), ids(changes)) {
		t.Fatalf("since %v: %v (%v)", changes[0].At, ids(all), err)
	}
	late, err := wl.CursorAt(ctx, changes[len(changes)-1].At.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if none, err := wl.Changes(ctx, late, 100); err != nil || len(none) != 0 {
		t.Fatalf("since after the last write: %v (%v)", ids(none), err)
	}
}

func ids(cs []store.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// lastWrites is the ids of the changes, each at its last write only.
func lastWrites(cs []store.Change) []string {
	last := map[string]int{}
	for i, c := range cs {
		last[c.ID] = i
	}
	var out []string
	for i, c := range cs {
		if last[c.ID] == i {
			out = append(out, c.ID)
		}
	}
	return out
}
