// Package anntest generates seeded, clustered unit vectors for the ANN index's tests and
// benchmarks: base vectors and queries drawn around the same random centres, so a query's
// neighbours are a crowd of near-equals, which is what makes a search hard.
package anntest

import (
	"math"
	"math/rand/v2"
)

// Clustered returns n base vectors and nq queries of dims dimensions around clusters centres,
// noise being a cluster's spread relative to the centres'.
func Clustered(n, nq, dims, clusters int, noise float32, seed uint64) (base, queries [][]float32) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	centres := make([][]float32, clusters)
	for i := range centres {
		centres[i] = make([]float32, dims)
		for j := range centres[i] {
			centres[i][j] = float32(rng.NormFloat64())
		}
	}
	draw := func() []float32 {
		c := centres[rng.IntN(clusters)]
		v := make([]float32, dims)
		var ss float64
		for j := range v {
			v[j] = c[j] + noise*float32(rng.NormFloat64())
			ss += float64(v[j]) * float64(v[j])
		}
		inv := float32(1 / math.Sqrt(ss))
		for j := range v {
			v[j] *= inv
		}
		return v
	}
	base = make([][]float32, n)
	for i := range base {
		base[i] = draw()
	}
	queries = make([][]float32, nq)
	for i := range queries {
		queries[i] = draw()
	}
	return base, queries
}
