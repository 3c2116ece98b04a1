package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/storetest"
)

func open(t *testing.T, dir string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openGraphStore opens dir with every dense search going through the graph (normally stores
// under 10,000 papers scan exactly).
func openGraphStore(t *testing.T, dir string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		return s
	}, storetest.Features{IndexVersion: true})
}

// TestConformanceWithANN runs the suite with the approximate index used for every dense search
// (normally stores under 10,000 papers scan exactly), walking int8 codes (the default) and
// float32 vectors.
func TestConformanceWithANN(t *testing.T) {
	for _, quant := range []string{"int8", "none"} {
		t.Run(quant, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				s, err := embedded.Open(context.Background(), embedded.Options{Dir: t.TempDir(),
					ANN: embedded.ANNOptions{ExactBelow: 1, Quantization: quant}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}, storetest.Features{IndexVersion: true})
		})
	}
	if _, err := embedded.Open(context.Background(), embedded.Options{Dir: t.TempDir(), ANN: embedded.ANNOptions{Quantization: "pq"}}); err == nil {
		t.Fatal("an unknown quantization was accepted")
	}
}

// TestANNIsSavedAndReloaded: a clean close saves the graph, a reopen loads it and answers the
// same; after writes the saved graph is stale and is rebuilt, still answering correctly.
func TestANNIsSavedAndReloaded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openGraphStore(t, dir)
	var ps []store.Paper
	for i := range 300 {
		p := storetest.Paper(fmt.Sprintf("p%03d", i), "Vector paper", "Words.")
		p.Dense = []float32{float32(i % 7), float32(i % 11), float32(i % 13), 1}
		ps = append(ps, p)
	}
	if _, err := s.Upsert(ctx, ps); err != nil {
		t.Fatal(err)
	}
	q := store.Query{Dense: []float32{3, 5, 1, 1}, Limit: 10}
	before, _ := s.Search(ctx, q)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ann.idx")); err != nil {
		t.Fatalf("graph not saved: %v", err)
	}
	for round := range 2 {
		s = openGraphStore(t, dir)
		after, err := s.Search(ctx, q)
		if err != nil || !slices.Equal(before.Dense, after.Dense) {
			t.Fatalf("round %d: search after reopen differs:\nbefore %v\nafter  %v", round, before, after)
		}
		if round == 0 { // a write makes the saved graph stale; the next open must rebuild
			if _, err := s.Upsert(ctx, []store.Paper{storetest.Paper("text-only", "No vector", "Words.")}); err != nil {
				t.Fatal(err)
			}
			// Simulate a crash: the graph saved before the write stays on disk.
			b, _ := os.ReadFile(filepath.Join(dir, "ann.idx"))
			_ = s.Close()
			_ = os.WriteFile(filepath.Join(dir, "ann.idx"), b, 0o600)
			continue
		}
		_ = s.Close()
	}
}

// TestReopenRestoresEverything closes and reopens the store: papers, deletions, the index and
// the version come back from disk. (Crash safety is tested with kill -9 in cmd/recommender.)
func TestReopenRestoresEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	var ps []store.Paper
	for _, w := range []string{"alpha", "beta", "gamma", "delta"} {
		p := storetest.Paper(w, "Paper about "+w, "The "+w+" abstract.")
		p.Dense = []float32{1, 2, 3}
		ps = append(ps, p)
	}
	if _, err := s.Upsert(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, []string{"beta"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "m", Dimensions: 3}); err != nil {
		t.Fatal(err)
	}
	q := store.Query{Lexical: lexical.Query("paper gamma"), Limit: 10}
	before, _ := s.Search(ctx, q)
	stats, _ := s.Stats(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(ctx, q); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("search after close: %v, want ErrClosed", err)
	}

	s = open(t, dir)
	defer s.Close()
	after, _ := s.Search(ctx, q)
	if len(before.Lexical) == 0 || !slices.Equal(before.Lexical, after.Lexical) {
		t.Fatalf("search differs after reopen:\nbefore %v\nafter  %v", before, after)
	}
	if got, _ := s.Stats(ctx); got != stats {
		t.Fatalf("stats after reopen %+v, want %+v", got, stats)
	}
	got, err := s.Get(ctx, []string{"gamma"})
	if err != nil || !slices.Equal(got[0].Dense, []float32{1, 2, 3}) {
		t.Fatalf("gamma after reopen: %v, %v", got, err)
	}
}

func TestSecondOpenOfADirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := embedded.Open(context.Background(), embedded.Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v, want an in-use error", err)
	}
}

func TestCorruptRecordIsReportedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Upsert(context.Background(), []store.Paper{storetest.Paper("a", "A title", "An abstract.")}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// Overwrite the record's bytes in place: the file stays a valid bbolt file.
	path := filepath.Join(dir, embedded.FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "An abstract.")
	if i < 0 {
		t.Fatal("record text not found in the file")
	}
	b[i-1] = 0xff // the abstract's length varint
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened from the snapshot of the clean close, the store reads the record when asked for it.
	s, err = embedded.Open(context.Background(), embedded.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), []string{"a"}); err == nil || !strings.Contains(err.Error(), `read paper "a"`) {
		t.Fatalf("get of a corrupt record: %v, want an error naming the paper", err)
	}
	_ = s.Close()
	// Without a snapshot (after a crash) opening reads every record, and says which is damaged.
	if err := os.Remove(filepath.Join(dir, "index.snap")); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(context.Background(), embedded.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), `load paper "a"`) {
		t.Fatalf("open of a corrupt record: %v, want an error naming the paper", err)
	}
}
