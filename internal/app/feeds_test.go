package app

import (
	"bytes"
	"testing"
)

// A stored feed round-trips with its seeds' vectors, and one stored as a bare definition
// (before the vectors were kept) still reads.
func TestStoredFeedFormats(t *testing.T) {
	def := []byte("\x0a\x02f1\x12\x06graphs") // a Feed message: what the transport defines
	b := FeedRecord{ID: "f1", Definition: def, Vectors: [][]float32{{1, 2}, {3, -4}}, VectorsOf: "m\x00q\x00d"}.encode()
	got, err := decodeFeed("f1", b)
	if err != nil || !bytes.Equal(got.Definition, def) || got.VectorsOf != "m\x00q\x00d" || len(got.Vectors) != 2 || got.Vectors[1][1] != -4 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got, err := decodeFeed("f1", def); err != nil || !bytes.Equal(got.Definition, def) || got.Vectors != nil {
		t.Fatalf("a bare definition: %+v, %v", got, err)
	}
	for n := range b {
		if _, err := decodeFeed("f1", b[:n]); err == nil && n > 0 {
			t.Fatalf("cut to %d of %d bytes: read", n, len(b))
		}
	}
}
