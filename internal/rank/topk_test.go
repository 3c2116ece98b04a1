package rank_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/rank"
)

func TestTopKMatchesFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range []int{0, 1, 5, 100, 1000} {
		items := make([]rank.Scored, 500)
		for i := range items {
			// Few distinct scores, so ties must be broken by id.
			items[i] = rank.Scored{ID: string(rune('a'+i%26)) + string(rune('a'+i/26)), Score: float32(rng.IntN(7))}
		}
		top := rank.NewTopK(k, rank.Better)
		for _, it := range items {
			top.Push(it)
		}
		want := slices.Clone(items)
		slices.SortFunc(want, func(a, b rank.Scored) int {
			if rank.Better(a, b) {
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

func TestFuseRRF(t *testing.T) {
	a := []rank.Scored{{ID: "x"}, {ID: "y"}, {ID: "z"}}
	b := []rank.Scored{{ID: "y"}, {ID: "w"}}
	got := rank.FuseRRF(3, a, b)
	ids := []string{got[0].ID, got[1].ID, got[2].ID}
	// y is ranked in both lists; x and w are first/second in one list each.
	if !slices.Equal(ids, []string{"y", "x", "w"}) {
		t.Fatalf("fused order = %v, want [y x w]", ids)
	}
	if want := float32(1.0/62 + 1.0/61); got[0].Score != want {
		t.Fatalf("y score = %v, want %v", got[0].Score, want)
	}
}
