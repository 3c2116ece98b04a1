//go:build !purego

package embedded

import "golang.org/x/sys/cpu"

//go:noescape
func nextAtLeastAVX2(a *float32, n int, t float32) int

var hasAVX2 = cpu.X86.HasAVX2

// nextAtLeast returns the first i >= from with !(a[i] < t), or len(a): the next accumulator a
// window's scan must look at. Most are below t once the top k is full, and comparing 32 at a
// time costs a fraction of comparing each.
func nextAtLeast(a []float32, from int, t float32) int {
	if hasAVX2 {
		if n := (len(a) - from) &^ 31; n > 0 {
			if i := from + nextAtLeastAVX2(&a[from], n, t); i < from+n {
				return i
			}
			from += n
		}
	}
	return nextAtLeastGo(a, from, t)
}
