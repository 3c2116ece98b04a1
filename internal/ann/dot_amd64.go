//go:build !purego

package ann

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:noescape
func dotInt8AVX2(a, b *int8, n int) int32

// prefetchLines asks the processor to start loading lines cache lines from p.
//
//go:noescape
func prefetchLines(p unsafe.Pointer, lines int)

var hasAVX2 = cpu.X86.HasAVX2

// dotInt8 is the dot product of two codes of the same length.
func dotInt8(a, b []int8) int32 {
	n := len(a) &^ 31
	if !hasAVX2 || n == 0 {
		return dotInt8Go(a, b)
	}
	s := dotInt8AVX2(&a[0], &b[0], n)
	if n < len(a) {
		s += dotInt8Go(a[n:], b[n:len(a)])
	}
	return s
}
