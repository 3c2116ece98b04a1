// Package vec holds the float32 vector arithmetic the exact scorers share.
package vec

import "math"

// Normalized returns v scaled to unit length (nil for nil or zero vectors), so that cosine
// similarity is a dot product.
func Normalized(v []float32) []float32 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return nil
	}
	inv := float32(1 / math.Sqrt(ss))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

// Dot is the dot product of a and b, which is at least as long as a. It is written with four
// accumulators so the compiler keeps them in registers and the CPU can pipeline the
// multiply-adds; an assembly kernel belongs to the approximate index (internal/ann).
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
