package mmap_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/mmap"
)

func TestWriteThenMap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.f32")
	vecs := [][]float32{{1, -2.5, 3}, nil, {0.125}}
	if err := mmap.WriteFloats(path, vecs); err != nil {
		t.Fatal(err)
	}
	got, unmap, err := mmap.Floats(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, -2.5, 3, 0.125}; !slices.Equal(got, want) {
		t.Fatalf("mapped %v, want %v", got, want)
	}
	if err := unmap(); err != nil {
		t.Fatal(err)
	}
	if err := mmap.WriteFloats(path, nil); err != nil {
		t.Fatal(err)
	}
	if got, unmap, err := mmap.Floats(path); err != nil || len(got) != 0 || unmap() != nil {
		t.Fatalf("empty file: %v, %v", got, err)
	}
}
