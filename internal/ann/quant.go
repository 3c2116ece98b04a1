package ann

import (
	"math"
	"slices"
)

// dotInt8Go is the portable dot product of two int8 codes.
func dotInt8Go(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}

// quantize appends v's int8 code to dst and returns it with the scale that maps codes back:
// v[i] ≈ scale * code[i], symmetric around zero with the vector's largest |v[i]| at ±127, so
// dot(a, b) ≈ scaleA * scaleB * dotInt8(codeA, codeB).
func quantize(dst []int8, v []float32) ([]int8, float32) {
	var maxAbs float32
	for _, f := range v {
		maxAbs = max(maxAbs, f, -f)
	}
	if maxAbs == 0 || math.IsNaN(float64(maxAbs)) || math.IsInf(float64(maxAbs), 0) {
		return append(dst, make([]int8, len(v))...), 0
	}
	inv := 127 / maxAbs
	dst = slices.Grow(dst, len(v))
	for _, f := range v {
		// Round half away from zero; |f*inv| <= 127, so the conversion cannot overflow.
		r := f * inv
		if r < 0 {
			r -= 0.5
		} else {
			r += 0.5
		}
		dst = append(dst, int8(r))
	}
	return dst, maxAbs / 127
}
