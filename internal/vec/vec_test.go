package vec_test

import (
	"math"
	"testing"

	"github.com/paperrec/recommender/internal/vec"
)

func TestNormalizedAndDot(t *testing.T) {
	v := vec.Normalized([]float32{3, 4, 0, 0, 0})
	if got := vec.Dot(v, v); math.Abs(float64(got)-1) > 1e-6 {
		t.Errorf("|v|² = %v, want 1", got)
	}
	if got := vec.Dot([]float32{1, 2, 3, 4, 5}, []float32{5, 4, 3, 2, 1, 9}); got != 35 {
		t.Errorf("Dot = %v, want 35 (the tail past len(a) ignored)", got)
	}
	if vec.Normalized([]float32{0, 0}) != nil || vec.Normalized(nil) != nil {
		t.Error("a zero vector has no direction: want nil")
	}
}
