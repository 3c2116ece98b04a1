//go:build !amd64 || purego

package embedded

func nextAtLeast(a []float32, from int, t float32) int { return nextAtLeastGo(a, from, t) }
