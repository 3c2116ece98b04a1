package embedded

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, p := range []store.Paper{
		{ID: "x"},
		{ID: "2103.12906", Title: "T", Abstract: "Ünïcode abstract", Authors: []string{"A B", "C D"},
			Categories: []string{"cs.LG"}, Topics: []string{"GNN"}, Year: -3, Date: "2021-01-02",
			Lexical: lexical.Document("Title words", "abstract words words"), Dense: []float32{1.5, -2, 0}},
	} {
		got, err := decodeRecord(encodeRecord(&p))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
		}
		forIndex, err := decodeForIndex(encodeRecord(&p))
		want := store.Paper{ID: p.ID, Title: p.Title, Date: p.Date, Authors: p.Authors, Categories: p.Categories, Year: p.Year, Lexical: p.Lexical, Dense: p.Dense, DenseHash: p.DenseHash}
		if err != nil || !reflect.DeepEqual(forIndex, want) {
			t.Fatalf("for the index (%v):\n got %+v\nwant %+v", err, forIndex, want)
		}
		meta, err := decodeMetadata(encodeRecord(&p))
		p.Lexical, p.Dense = lexical.Vector{}, nil
		if err != nil || !reflect.DeepEqual(meta, p) {
			t.Fatalf("metadata (%v):\n got %+v\nwant %+v", err, meta, p)
		}
	}
}

// FuzzDecodeRecord checks that no input makes the decoder panic or allocate wildly, and that
// whatever decodes re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(&store.Paper{ID: "a", Title: "b", Lexical: lexical.Document("b", "c"), Dense: []float32{1}}))
	f.Add([]byte{recordVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeMetadata(b)
		_, _ = decodeForIndex(b)
		p, err := decodeRecord(b)
		if err != nil {
			return
		}
		if again := encodeRecord(&p); string(again) != string(b) {
			// Non-minimal varints decode but re-encode shorter; anything else is a bug.
			if _, err := decodeRecord(again); err != nil {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
		}
	})
}

// A record with any one byte changed fails its checksum; a record of version 1, written before
// records had one, still reads.
func TestRecordChecksum(t *testing.T) {
	p := store.Paper{ID: "2103.12906", Title: "Graphs", Abstract: "Message passing.", Lexical: lexical.Document("Graphs", "Message passing."), Dense: []float32{0.5, -1}}
	b := encodeRecord(&p)
	for i := range b {
		damaged := bytes.Clone(b)
		damaged[i] ^= 0x10
		if _, err := decodeRecord(damaged); !errors.Is(err, errCorrupt) {
			t.Fatalf("byte %d of %d changed: %v, want a corrupt record", i, len(b), err)
		}
	}
	v1 := append([]byte{recordVersionV1}, b[1:len(b)-4]...)
	if got, err := decodeRecord(v1); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("version 1 record: %+v, %v", got, err)
	}
}
