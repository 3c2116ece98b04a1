package lexical

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Sketch similarity tracks the exact cosine of the term sets: pairs of sets of abstract-like
// sizes with overlaps from none to all.
func TestSketchEstimatesSetCosine(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	var sumErr, worst float64
	n := 0
	for _, size := range []int{40, 120, 300} {
		for _, shared := range []float64{0, 0.1, 0.25, 0.5, 0.9, 1} {
			for range 20 {
				a, b := overlapping(rng, size, size*2/3+rng.IntN(size), shared)
				exact := float64(len(intersect(a, b))) / math.Sqrt(float64(len(a)*len(b)))
				sa, sb := vector(a).Sketch(), vector(b).Sketch()
				got := sa.Similarity(&sb)
				err := math.Abs(got - exact)
				sumErr += err
				worst = max(worst, err)
				n++
			}
		}
	}
	t.Logf("%d pairs: mean absolute error %.3f, worst %.3f", n, sumErr/float64(n), worst)
	if sumErr/float64(n) > 0.04 || worst > 0.2 {
		t.Fatalf("mean absolute error %.3f (want <= 0.04), worst %.3f (want <= 0.2)", sumErr/float64(n), worst)
	}
	empty := Vector{}.Sketch()
	s := vector([]uint32{1, 2, 3}).Sketch()
	if empty.Similarity(&s) != 0 || s.Similarity(&empty) != 0 || s.Similarity(&s) != 1 {
		t.Fatalf("empty %v, %v; self %v", empty.Similarity(&s), s.Similarity(&empty), s.Similarity(&s))
	}
}

func TestZeroBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		x := rng.Uint64()
		for i := range 8 { // make some bytes zero, and some 0x80 or 0x01 (carry edge cases)
			switch rng.IntN(4) {
			case 0:
				x &^= 0xff << (8 * i)
			case 1:
				x = x&^(0xff<<(8*i)) | uint64([]byte{0x80, 0x01, 0x7f, 0xff}[rng.IntN(4)])<<(8*i)
			}
		}
		want := 0
		for i := range 8 {
			if byte(x>>(8*i)) == 0 {
				want++
			}
		}
		if got := zeroBytes(x); got != want {
			t.Fatalf("zeroBytes(%#x) = %d, want %d", x, got, want)
		}
	}
}

// overlapping draws two sets of sizes na and nb sharing about shared of the smaller one.
func overlapping(rng *rand.Rand, na, nb int, shared float64) (a, b []uint32) {
	common := int(shared * float64(min(na, nb)))
	seen := map[uint32]bool{}
	draw := func() uint32 {
		for {
			if x := rng.Uint32(); !seen[x] {
				seen[x] = true
				return x
			}
		}
	}
	for range common {
		x := draw()
		a, b = append(a, x), append(b, x)
	}
	for len(a) < na {
		a = append(a, draw())
	}
	for len(b) < nb {
		b = append(b, draw())
	}
	slices.Sort(a)
	slices.Sort(b)
	return a, b
}

func intersect(a, b []uint32) []uint32 {
	var out []uint32
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			out = append(out, x)
		}
	}
	return out
}

func vector(ids []uint32) Vector {
	v := Vector{Indices: ids, Values: make([]float32, len(ids))}
	for i := range v.Values {
		v.Values[i] = 1
	}
	return v
}

// BenchmarkSketch: the cost of a paper's sketch, made at ingest and at every open.
func BenchmarkSketch(b *testing.B) {
	v := Document("Building Segmentation through a Gated Graph Convolutional Neural Network with Deep Structured Feature Embedding",
		"Automatic building extraction from optical imagery remains a challenge due to, for example, the complexity of building shapes. "+
			"Semantic segmentation is an efficient approach for this task. The latest development in deep convolutional neural networks "+
			"has made accurate pixel-level classification tasks possible. Yet one central issue remains: the precise delineation of boundaries. "+
			"Deep architectures generally fail to produce fine-grained segmentation with accurate boundaries due to their progressive down-sampling. "+
			"Hence, we introduce a generic framework to overcome the issue, integrating the graph convolutional network and deep structured "+
			"feature embedding into an end-to-end workflow.")
	for b.Loop() {
		_ = v.Sketch()
	}
	b.ReportMetric(float64(v.Len()), "terms")
}
