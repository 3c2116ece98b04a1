package embedded

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// TestPrunedLexicalSearchIsExact checks the pruned lexical search against the exhaustive one
// (every posting scored) on Zipf-distributed text, as word frequencies are: the same papers in
// the same order with the same scores, for seed and short queries, several k, with and without
// filters, with deleted papers, on one core's range and on two halves.
func TestPrunedLexicalSearchIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	zipf := rand.NewZipf(rng, 1.1, 2, 4999)
	text := func(words int) string {
		var b strings.Builder
		for range words {
			fmt.Fprintf(&b, "w%d ", zipf.Uint64())
		}
		return b.String()
	}
	x := newIndex(ANNOptions{})
	var docs []lexical.Vector
	for i := range 6000 {
		p := store.Paper{ID: fmt.Sprintf("p%05d", i), Year: int32(2000 + i%20), Lexical: lexical.Document(text(8), text(120))}
		x.put(&p)
		docs = append(docs, p.Lexical)
	}
	for i := 0; i < 6000; i += 7 {
		x.remove(fmt.Sprintf("p%05d", i), docs[i])
	}
	ctx := context.Background()
	run := func(q store.Query, prune bool) []rank.Scored {
		x.noPrune = !prune
		got, err := x.search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for i := range 60 {
		seed := 1 + 7*i + i%5 // live papers
		queries := []lexical.Vector{lexical.Combine([]lexical.Vector{docs[seed]}, nil), lexical.Query(text(4))}
		for qi, qv := range queries {
			for _, k := range []int{1, 10, 100} {
				for fi, f := range []store.Filter{{}, {ExcludeIDs: []string{fmt.Sprintf("p%05d", seed)}}, {MinYear: 2015}} {
					q := store.Query{Lexical: qv, Limit: k, Filter: f}
					want, got := run(q, false), run(q, true)
					if len(got) != len(want) {
						t.Fatalf("query %d/%d k %d filter %d: %d hits pruned, %d exhaustive", i, qi, k, fi, len(got), len(want))
					}
					for j := range want {
						if got[j].ID != want[j].ID || math.Abs(float64(got[j].Score-want[j].Score)) > 1e-4*math.Abs(float64(want[j].Score)) {
							t.Fatalf("query %d/%d k %d filter %d: hit %d pruned %+v, exhaustive %+v", i, qi, k, fi, j, got[j], want[j])
						}
					}
				}
			}
		}
	}
	if x.pruned.Load() == 0 {
		t.Fatal("no search pruned: the test checked nothing")
	}
	t.Logf("%d searches (or halves) pruned", x.pruned.Load())
}
