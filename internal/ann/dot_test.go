package ann

import (
	"math/rand/v2"
	"testing"

	"github.com/paperrec/recommender/internal/testutil/race"
)

// The assembly kernel and the portable loop agree on every length (the kernel takes multiples
// of 32, the loop the rest) and at the extremes of the code range.
func TestDotInt8MatchesPortable(t *testing.T) {
	race.Skip(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 800; n++ {
		a, b := make([]int8, n), make([]int8, n)
		for i := range a {
			a[i], b[i] = int8(rng.IntN(255)-127), int8(rng.IntN(255)-127)
		}
		if got, want := dotInt8(a, b), dotInt8Go(a, b); got != want {
			t.Fatalf("n %d: dotInt8 %d, portable %d", n, got, want)
		}
	}
	a := make([]int8, 4096)
	for i := range a {
		a[i] = -127
	}
	if got := dotInt8(a, a); got != 4096*127*127 {
		t.Fatalf("extreme codes: %d, want %d", got, 4096*127*127)
	}
}

func TestQuantizeRoundTrip(t *testing.T) {
	v := []float32{0.5, -0.25, 0, 0.125, -0.5}
	code, scale := quantize(nil, v)
	for i, c := range code {
		if d := float32(c)*scale - v[i]; d > scale/2 || d < -scale/2 {
			t.Fatalf("component %d: %v decodes to %v", i, v[i], float32(c)*scale)
		}
	}
	if code[0] != 127 || code[4] != -127 {
		t.Fatalf("largest components not at ±127: %v", code)
	}
}
