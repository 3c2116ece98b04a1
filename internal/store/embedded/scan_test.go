package embedded

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestNextAtLeast checks the window scan's search (32 accumulators at a time with AVX2)
// against the comparison the scan made before it, one at a time: !(a[i] < t), so NaN is
// found and a tie is found.
func TestNextAtLeast(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 500 {
		a := make([]float32, rng.IntN(300))
		for i := range a {
			switch rng.IntN(40) {
			case 0:
				a[i] = float32(math.NaN())
			case 1:
				a[i] = 2.5 // the threshold below: a tie
			default:
				a[i] = rng.Float32() * 2.4
			}
		}
		th := float32(2.5)
		if trial%7 == 0 {
			th = -1 // everything qualifies
		}
		var got, want []int
		for i := nextAtLeast(a, 0, th); i < len(a); i = nextAtLeast(a, i+1, th) {
			got = append(got, i)
		}
		for i, v := range a {
			if !(v < th) {
				want = append(want, i)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("trial %d (%d values, threshold %v): found %v, want %v", trial, len(a), th, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("trial %d: found %v, want %v", trial, got, want)
			}
		}
	}
}
