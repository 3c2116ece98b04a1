// Package topk keeps the k best of a stream of items.
package topk

import "slices"

// List keeps the k best items seen, by a strict total order, in O(n log k). The order must be
// total (break score ties by id) so that the same inputs always give the same list, whatever
// order they arrive in.
type List[T any] struct {
	k      int
	better func(a, b T) bool
	heap   []T // min-heap by better: the root is the worst kept item
}

// New returns a List keeping k items; better(a, b) reports whether a ranks before b.
func New[T any](k int, better func(a, b T) bool) *List[T] {
	return &List[T]{k: k, better: better, heap: make([]T, 0, min(k, 1024))}
}

// Full reports whether k items are kept, so Worst is the bar a new item must beat.
func (t *List[T]) Full() bool { return len(t.heap) == t.k }

// Worst returns the worst kept item; call only when Full.
func (t *List[T]) Worst() T { return t.heap[0] }

// Push offers an item.
func (t *List[T]) Push(x T) {
	if t.k <= 0 {
		return
	}
	if len(t.heap) < t.k {
		t.heap = append(t.heap, x)
		t.up(len(t.heap) - 1)
		return
	}
	if t.better(x, t.heap[0]) {
		t.heap[0] = x
		t.down(0)
	}
}

// Sorted returns the kept items, best first.
func (t *List[T]) Sorted() []T {
	out := slices.Clone(t.heap)
	slices.SortFunc(out, func(a, b T) int {
		if t.better(a, b) {
			return -1
		}
		if t.better(b, a) {
			return 1
		}
		return 0
	})
	return out
}

func (t *List[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.better(t.heap[p], t.heap[i]) {
			return
		}
		t.heap[p], t.heap[i] = t.heap[i], t.heap[p]
		i = p
	}
}

func (t *List[T]) down(i int) {
	n := len(t.heap)
	for {
		worst := i
		l, r := 2*i+1, 2*i+2
		if l < n && t.better(t.heap[worst], t.heap[l]) {
			worst = l
		}
		if r < n && t.better(t.heap[worst], t.heap[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		t.heap[i], t.heap[worst] = t.heap[worst], t.heap[i]
		i = worst
	}
}
