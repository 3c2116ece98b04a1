package embedded

import (
	"math/rand/v2"
	"testing"
)

// TestTermTableActsAsAMap checks the term table against a Go map through growth, overwrites and
// iteration, with ids that collide on their home slot.
func TestTermTableActsAsAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tab, want := newTermTable(0), map[uint32]int32{}
	for i := range 200_000 {
		id := rng.Uint32()
		switch i % 5 {
		case 0:
			id = uint32(i % 1000) // small ids: the same few home slots
		case 1:
			id = uint32(i%1000) << 22 // ids that differ only in their high bits
		}
		tab.set(id, int32(i))
		want[id] = int32(i)
	}
	if tab.len() != len(want) {
		t.Fatalf("len %d, want %d", tab.len(), len(want))
	}
	for id, at := range want {
		if got, ok := tab.get(id); !ok || got != at {
			t.Fatalf("get(%d) = %d, %v; want %d", id, got, ok, at)
		}
	}
	seen := 0
	tab.each(func(id uint32, at int32) {
		if want[id] != at {
			t.Fatalf("each gave %d for %d, want %d", at, id, want[id])
		}
		seen++
	})
	if seen != len(want) {
		t.Fatalf("each gave %d ids, want %d", seen, len(want))
	}
	for range 1000 {
		if id := rng.Uint32(); want[id] == 0 {
			if _, ok := tab.get(id); ok && id != 0 {
				t.Fatalf("get(%d) found an id never set", id)
			}
		}
	}
}
