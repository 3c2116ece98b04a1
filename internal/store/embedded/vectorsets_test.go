package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
)

// TestVectorSetsSurviveReopen: a second set half filled, switched to, and the first retired,
// with the store closed and opened between each step: every state is on disk, and each set's
// graph answers like an exact scan.
func TestVectorSetsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1}}
	reopen := func(s *embedded.Store) *embedded.Store {
		t.Helper()
		if s != nil {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		s, err := embedded.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vec := func(d int) []float32 {
		v := make([]float32, d)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	a := store.EmbeddingSpec{Model: "a", Dimensions: 16}
	b := store.EmbeddingSpec{Model: "b", Dimensions: 8}
	s := reopen(nil)
	if _, err := s.BindEmbedding(ctx, a); err != nil {
		t.Fatal(err)
	}
	var papers []store.Paper
	for i := range 200 {
		title, abstract := fmt.Sprintf("Paper %d", i), fmt.Sprintf("Abstract %d on sets.", i)
		papers = append(papers, store.Paper{ID: fmt.Sprintf("p%03d", i), Title: title, Abstract: abstract,
			Lexical: lexical.Document(title, abstract), Dense: vec(16)})
	}
	if _, err := s.Upsert(ctx, papers); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginVectorSet(ctx, b); err != nil {
		t.Fatal(err)
	}
	bvec := map[string][]float32{}
	fill := func(s *embedded.Store, limit int) {
		t.Helper()
		todo, err := s.MissingVectors(ctx, "", limit)
		if err != nil {
			t.Fatal(err)
		}
		var in []store.SetVector
		for _, p := range todo {
			bvec[p.ID] = vec(8)
			in = append(in, store.SetVector{ID: p.ID, TextKey: store.TextKey(p.Title, p.Abstract), Dense: bvec[p.ID]})
		}
		if _, err := s.PutVectors(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	fill(s, 120)
	s = reopen(s)
	if st, err := s.VectorSetStatus(ctx); err != nil || st.OtherVectors != 120 || st.Other != b || st.Active != a {
		t.Fatalf("after a reopen half way: %+v (%v)", st, err)
	}
	fill(s, 200)
	if err := s.SwitchVectorSet(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	s = reopen(s)
	if st, _ := s.Stats(ctx); st.Embedding != b {
		t.Fatalf("after the switch and a reopen the store is bound to %+v", st.Embedding)
	}
	// Each set's graph (loaded from its file) finds a paper by its own vector.
	for _, id := range []string{"p007", "p150"} {
		i := 0
		fmt.Sscanf(id, "p%d", &i)
		for _, tc := range []struct {
			set string
			v   []float32
		}{{"", bvec[id]}, {b.Key(), bvec[id]}, {a.Key(), papers[i].Dense}} {
			hits, err := s.Search(ctx, store.Query{Dense: tc.v, DenseSet: tc.set, Limit: 1})
			if err != nil || len(hits.Dense) != 1 || hits.Dense[0].ID != id {
				t.Fatalf("set %q, %s's vector: %v (%v)", tc.set, id, hits, err)
			}
		}
	}
	for _, name := range []string{"ann.idx", "ann-1.idx", "vectors.f32", "vectors-1.f32"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Retiring the first set (slot 0, in the records) rewrites the records without it.
	before, _ := os.Stat(filepath.Join(dir, "vectors.f32"))
	if err := s.RetireVectorSet(ctx); err != nil {
		t.Fatal(err)
	}
	s = reopen(s)
	after, _ := os.Stat(filepath.Join(dir, "vectors.f32"))
	if before.Size() != 200*16*4 || after.Size() != 0 {
		t.Fatalf("slot 0's vectors file: %d bytes before the retire, %d after", before.Size(), after.Size())
	}
	if st, err := s.VectorSetStatus(ctx); err != nil || st != (store.VectorSetStatus{Active: b, Papers: 200, ActiveVectors: 200}) {
		t.Fatalf("after the retire: %+v (%v)", st, err)
	}
	// Moving on to a third model uses the freed slot, starting from nothing.
	if err := s.BeginVectorSet(ctx, store.EmbeddingSpec{Model: "c", Dimensions: 4}); err != nil {
		t.Fatal(err)
	}
	if todo, err := s.MissingVectors(ctx, "", 1000); err != nil || len(todo) != 200 {
		t.Fatalf("a third set: %d papers missing (%v)", len(todo), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
