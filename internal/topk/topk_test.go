package topk_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/topk"
)

type scored struct {
	ID    string
	Score float32
}

func better(a, b scored) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.ID < b.ID
}

func TestTopKMatchesFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range []int{0, 1, 5, 100, 1000} {
		items := make([]scored, 500)
		for i := range items {
			// Few distinct scores, so ties must be broken by id.
			items[i] = scored{ID: string(rune('a'+i%26)) + string(rune('a'+i/26)), Score: float32(rng.IntN(7))}
		}
		top := topk.New(k, better)
		for _, it := range items {
			top.Push(it)
		}
		want := slices.Clone(items)
		slices.SortFunc(want, func(a, b scored) int {
			if better(a, b) {
				return -1
			}
			return 1
		})
		want = want[:min(k, len(want))]
		if got := top.Sorted(); !slices.Equal(got, want) {
			t.Fatalf("k=%d: top-k differs from full sort\n got %v\nwant %v", k, got, want)
		}
	}
}
