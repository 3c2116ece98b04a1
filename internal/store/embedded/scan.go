package embedded

// nextAtLeastGo is nextAtLeast one accumulator at a time.
func nextAtLeastGo(a []float32, from int, t float32) int {
	for i := from; i < len(a); i++ {
		if !(a[i] < t) {
			return i
		}
	}
	return len(a)
}
