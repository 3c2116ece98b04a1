package embedded_test

import (
	"context"
	"errors"
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

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		return s
	}, storetest.Features{IndexVersion: true})
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
	if !slices.EqualFunc(before, after, func(a, b store.Hit) bool { return a.Paper.ID == b.Paper.ID && a.Score == b.Score }) {
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
	if _, err := embedded.Open(context.Background(), embedded.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), `load paper "a"`) {
		t.Fatalf("open of a corrupt record: %v, want an error naming the paper", err)
	}
}
