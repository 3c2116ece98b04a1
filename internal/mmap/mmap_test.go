package mmap_test

import (
	"bytes"
	"os"
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

// A released mapping reads the same after: its pages come back from the file.
func TestReleaseKeepsTheContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b")
	want := make([]byte, 3*65536+17)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	b, unmap, err := mmap.Bytes(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	if !bytes.Equal(b, want) {
		t.Fatal("mapped bytes differ")
	}
	if err := mmap.Release(b); err != nil {
		t.Fatal(err)
	}
	if err := mmap.Release(b[65536:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatal("bytes differ after Release")
	}
}

// A FloatFile copies a mapped vector out (into the buffer given, not the mapping) and returns
// any other slice as it is.
func TestFloatFileReadsMappedVectorsOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.f32")
	if err := mmap.WriteFloats(path, [][]float32{{1, 2, 3}, {4, 5, 6}}); err != nil {
		t.Fatal(err)
	}
	ff, err := mmap.OpenFloats(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	second := ff.Flat[3:6]
	buf := make([]float32, 3)
	got := ff.Read(second, buf)
	if !slices.Equal(got, []float32{4, 5, 6}) {
		t.Fatalf("read %v, want [4 5 6]", got)
	}
	if ff.Holds(second) && &got[0] != &buf[0] {
		t.Fatal("a mapped vector was returned in place, not copied into the buffer")
	}
	heap := []float32{7, 8}
	if ff.Holds(heap) || &ff.Read(heap, buf)[0] != &heap[0] {
		t.Fatal("a vector outside the file was not returned as it is")
	}
}
