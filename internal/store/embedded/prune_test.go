package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/testutil"
)

// TestPrunedLexicalSearchIsExact checks that MaxScore pruning returns exactly what scoring every
// posting returns (ids, order and float32 scores) on the arXiv sample, for seed, multi-seed,
// negative-seed and text queries, with and without filters, at several depths, after deletes
// and updates (dead postings), with exact copies of papers (ties broken by id), and with bounds
// computed at an average length the collection has since left.
func TestPrunedLexicalSearchIsExact(t *testing.T) {
	ctx := context.Background()
	s, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	sample := testutil.ReadPapers(t, filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz"))
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

func head(h []rank.Scored) []rank.Scored { return h[:min(len(h), 12)] }
