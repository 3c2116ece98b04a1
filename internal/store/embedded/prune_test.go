package embedded_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// TestPrunedLexicalSearchIsExact checks that MaxScore pruning returns exactly what scoring every
// posting returns (ids, order and float32 scores), and that this is BM25 as a plain loop over
// the live papers computes it, on the arXiv sample, for seed, multi-seed, negative-seed and text
// queries, with and without filters, at several depths, after deletes and updates (dead
// postings), with exact copies of papers (ties broken by id), and with bounds computed at an
// average length the collection has since left.
func TestPrunedLexicalSearchIsExact(t *testing.T) {
	race.Skip(t)
	ctx := context.Background()
	s, sample := openEmptyWithSample(t)
	toStore := func(id, title, abstract string, i int) store.Paper {
		p := sample[i]
		return store.Paper{ID: id, Title: title, Abstract: abstract, Authors: p.GetAuthors(), Categories: p.GetTopics(),
			Year: p.GetYear(), Lexical: lexical.Document(title, abstract)}
	}
	var papers []store.Paper
	for i, p := range sample {
		papers = append(papers, toStore(p.GetId(), p.GetTitle(), p.GetAbstract(), i))
	}
	for i := range 8000 { // more papers than a few windows of pruneRange: a title and another's abstract
		j := i % len(sample)
		papers = append(papers, toStore(fmt.Sprintf("mix-%04d", i), sample[j].GetTitle(), sample[(j*7+3+i/len(sample))%len(sample)].GetAbstract(), j))
	}
	for i := range 40 { // copies: equal scores, ordered by id
		p := sample[i*37]
		papers = append(papers, toStore(fmt.Sprintf("copy-%02d", i), p.GetTitle(), p.GetAbstract(), i*37))
	}
	for i := 0; i < len(papers); i += 500 {
		if _, err := s.Upsert(ctx, papers[i:min(i+500, len(papers))]); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 19))
	var gone []string
	for range 300 {
		gone = append(gone, sample[rng.IntN(len(sample))].GetId())
	}
	if _, err := s.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	var updates, long []store.Paper
	for i := range 100 { // new text: the old postings are dead
		j := rng.IntN(len(sample))
		updates = append(updates, toStore(sample[j].GetId(), sample[j].GetTitle(), sample[(j+1)%len(sample)].GetAbstract(), j))
		// Long papers raise the average length by less than a rebound takes: the bounds are
		// then scaled, not recomputed.
		a := sample[i].GetAbstract()
		long = append(long, toStore(fmt.Sprintf("long-%03d", i), sample[i].GetTitle(), strings.Repeat(a+" ", 3), i))
	}
	for _, batch := range [][]store.Paper{updates, long} {
		if _, err := s.Upsert(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	live := map[string]store.Paper{}
	for i, batch := range [][]store.Paper{papers, updates, long} {
		for _, p := range batch {
			live[p.ID] = p
		}
		if i == 0 {
			for _, id := range gone {
				delete(live, id)
			}
		}
	}
	plain := newPlainBM25(live)

	if avg, bounds := s.AverageLengths(); avg <= bounds {
		t.Fatalf("average length %.1f, bounds at %.1f: the scaled bounds are not exercised", avg, bounds)
	}
	seedVector := func() lexical.Vector {
		for {
			if ps, err := s.Get(ctx, []string{sample[rng.IntN(len(sample))].GetId()}); err == nil {
				return lexical.SeedQuery(ps[0].Lexical)
			}
		}
	}
	filters := []store.Filter{{}, {MinYear: 2019, MaxYear: 2021}, {Categories: []string{sample[3].GetTopics()[0]}},
		{ExcludeIDs: []string{sample[5].GetId(), "copy-01"}}}
	compared, ties := 0, 0
	for q := range 240 {
		var qv lexical.Vector
		switch q % 4 {
		case 0:
			qv = seedVector()
		case 1:
			qv = lexical.Combine([]lexical.Vector{seedVector(), seedVector(), seedVector()}, nil)
		case 2:
			qv = lexical.Combine([]lexical.Vector{seedVector()}, []lexical.Vector{seedVector()})
		default:
			qv = lexical.Query(sample[rng.IntN(len(sample))].GetTitle())
		}
		k := []int{1, 10, 100, 1000}[q%4*7%4]
		f := filters[q%len(filters)]
		want, err := s.LexicalTopK(ctx, qv, f, k, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.LexicalTopK(ctx, qv, f, k, true)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("query %d (k %d, filter %+v): pruned\n%v\nscoring every posting\n%v", q, k, f, head(got), head(want))
		}
		if err := sameRanking(want, plain.topK(qv, f, k)); err != nil {
			t.Fatalf("query %d (k %d, filter %+v): scoring every posting and a plain loop differ: %v", q, k, f, err)
		}
		compared += len(want)
		for i := 1; i < len(want); i++ {
			if want[i].Score == want[i-1].Score {
				ties++
			}
		}
	}
	if ties == 0 {
		t.Fatal("no tied scores among the answers: the copies do not test the order of ties")
	}
	t.Logf("240 queries, %d hits equal, %d of them tied with the one before", compared, ties)
}

func head(h []store.Scored) []store.Scored { return h[:min(len(h), 12)] }

// plainBM25 is the reference lexical search over the live papers, a term's papers listed with
// their term frequencies.
type plainBM25 struct {
	live   map[string]store.Paper
	tfs    map[uint32]map[string]float32
	avgLen float32
}

func newPlainBM25(live map[string]store.Paper) *plainBM25 {
	b := &plainBM25{live: live, tfs: map[uint32]map[string]float32{}}
	var sumLen float64
	for id, p := range live {
		sumLen += float64(p.Lexical.Sum())
		for i, t := range p.Lexical.Indices {
			if b.tfs[t] == nil {
				b.tfs[t] = map[string]float32{}
			}
			b.tfs[t][id] = p.Lexical.Values[i]
		}
	}
	b.avgLen = float32(sumLen / float64(len(live)))
	return b
}

// topK returns the top k of the papers that match f by their BM25 score for qv (over the
// query's maxQueryTerms heaviest terms by weight times idf), summed in float64.
func (b *plainBM25) topK(qv lexical.Vector, f store.Filter, k int) []store.Scored {
	n := float64(len(b.live))
	type term struct {
		id     uint32
		weight float32 // as the search weighs terms: which are the heaviest can hang on rounding
	}
	var terms []term
	for i, t := range qv.Indices {
		if df := len(b.tfs[t]); df > 0 && qv.Values[i] != 0 {
			terms = append(terms, term{t, qv.Values[i] * float32(lexical.IDF(n, float64(df)))})
		}
	}
	slices.SortStableFunc(terms, func(a, b term) int { return cmp.Compare(abs(b.weight), abs(a.weight)) })
	scores := map[string]float64{}
	for _, t := range terms[:min(len(terms), embedded.MaxQueryTerms)] {
		for id, tf := range b.tfs[t.id] {
			scores[id] += float64(t.weight) * float64(lexical.BM25Weight(tf, b.live[id].Lexical.Sum(), b.avgLen))
		}
	}
	var out []store.Scored
	for id, score := range scores {
		if score > 0 && plainMatch(b.live[id], f) {
			out = append(out, store.Scored{ID: id, Score: float32(score)})
		}
	}
	slices.SortFunc(out, func(a, b store.Scored) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), k)]
}

func plainMatch(p store.Paper, f store.Filter) bool {
	if f.MinYear != 0 && p.Year < f.MinYear || f.MaxYear != 0 && p.Year > f.MaxYear || slices.Contains(f.ExcludeIDs, p.ID) {
		return false
	}
	return len(f.Categories) == 0 || slices.ContainsFunc(p.Categories, func(c string) bool { return slices.Contains(f.Categories, c) })
}

// sameRanking reports how got differs from want beyond float rounding (the search sums float32
// contributions, the reference float64): the same scores rank by rank, and the same papers but
// where a score is within the rounding of another, which may order them either way or leave
// one of them just past the end.
func sameRanking(got, want []store.Scored) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d hits, want %d", len(got), len(want))
	}
	near := func(a, b float32) bool { return math.Abs(float64(a-b)) <= 1e-4*math.Max(1, math.Abs(float64(b))) }
	for i := range got {
		if !near(got[i].Score, want[i].Score) {
			return fmt.Errorf("rank %d: %v, want %v", i+1, got[i], want[i])
		}
		if got[i].ID != want[i].ID && !near(got[i].Score, want[len(want)-1].Score) &&
			!slices.ContainsFunc(want, func(w store.Scored) bool { return w.ID == got[i].ID && near(w.Score, got[i].Score) }) {
			return fmt.Errorf("rank %d: %v, not among the answers %v", i+1, got[i], head(want))
		}
	}
	return nil
}

func abs(x float32) float32 { return float32(math.Abs(float64(x))) }

// TestNamedPapersScoreAsInAScan: a search restricted to a few named papers (scored by look-ups
// in the postings, not a scan) gives each the float32 score a search of the whole store gives
// it, and finds none the scan does not.
func TestNamedPapersScoreAsInAScan(t *testing.T) {
	ctx := context.Background()
	s, sample := openEmptyWithSample(t)
	var papers []store.Paper
	for copy := range 4 { // postings long enough that 10 named papers are scored by look-ups
		for _, p := range sample {
			papers = append(papers, store.Paper{ID: fmt.Sprintf("%s-%d", p.GetId(), copy), Title: p.GetTitle(), Abstract: p.GetAbstract(),
				Lexical: lexical.Document(p.GetTitle(), p.GetAbstract())})
		}
	}
	for i := 0; i < len(papers); i += 1000 {
		if _, err := s.Upsert(ctx, papers[i:min(i+1000, len(papers))]); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 5))
	looked := 0
	for range 50 {
		seed := papers[rng.IntN(len(papers))]
		q := store.Query{Lexical: lexical.SeedQuery(seed.Lexical), Limit: len(papers)}
		whole, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		inScan := map[string]float32{}
		for _, h := range whole.Lexical {
			inScan[h.ID] = h.Score
		}
		var named []string
		for range 10 {
			named = append(named, papers[rng.IntN(len(papers))].ID)
		}
		q.Filter.OnlyIDs, q.Limit = named, len(named)
		few, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range few.Lexical {
			if want, ok := inScan[h.ID]; !ok || h.Score != want {
				t.Fatalf("%s scored %v among named papers, %v (found: %v) in the whole store", h.ID, h.Score, want, ok)
			}
			looked++
		}
		for _, id := range named {
			if _, ok := inScan[id]; ok && !slices.ContainsFunc(few.Lexical, func(h store.Scored) bool { return h.ID == id }) {
				t.Fatalf("%s is found in the whole store but not among the named papers", id)
			}
		}
	}
	if looked < 50 {
		t.Fatalf("only %d named papers scored: the test checks too little", looked)
	}
}

// openEmptyWithSample opens an empty store, closed when the test ends, and reads the shared
// arXiv sample.
func openEmptyWithSample(t *testing.T) (*embedded.Store, []*recommenderv1.Paper) {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, testutil.ReadPapers(t, filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz"))
}
