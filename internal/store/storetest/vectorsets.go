package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/store"
)

// testVectorSets moves a store from one model's vectors to another's: the second set filled
// while the first serves, writes during it, an incomplete switch refused, the atomic switch,
// the first set still searchable afterwards, vectors of the wrong set refused, and the retire.
func testVectorSets(t *testing.T, s store.Store) {
	vs, ok := s.(store.VectorSets)
	if !ok {
		t.Skip("the backend keeps one vector set")
	}
	a := store.EmbeddingSpec{Model: "model-a", Dimensions: 3}
	b := store.EmbeddingSpec{Model: "model-b", Dimensions: 2, QueryPrefix: "query: ", DocumentPrefix: "passage: "}
	if _, err := s.BindEmbedding(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Model a sees papers along 3 axes, model b along 2: a query finds different papers in each.
	vecA := func(i int) []float32 { v := make([]float32, 3); v[i%3] = 1; v[(i+1)%3] = 0.1; return v }
	vecB := func(i int) []float32 { v := make([]float32, 2); v[i%2] = 1; v[(i+1)%2] = 0.05 * float32(i); return v }
	var papers []store.Paper
	for i := range 6 {
		p := Paper(fmt.Sprintf("p%d", i), fmt.Sprintf("Paper %d on sets", i), "An abstract about vector sets.")
		p.Dense = vecA(i)
		papers = append(papers, p)
	}
	upsert(t, s, papers...)
	if err := vs.SwitchVectorSet(ctx, b, nil); !errors.Is(err, store.ErrNoOtherSet) {
		t.Fatalf("switch without a second set: %v", err)
	}
	if err := vs.BeginVectorSet(ctx, a); !errors.Is(err, store.ErrSetActive) {
		t.Fatalf("a second set of the active model: %v", err)
	}
	if err := vs.BeginVectorSet(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := vs.BeginVectorSet(ctx, b); err != nil {
		t.Fatalf("beginning the same set again (a resumed job): %v", err)
	}
	status := func(want store.VectorSetStatus) {
		t.Helper()
		got, err := vs.VectorSetStatus(ctx)
		if err != nil || got != want {
			t.Fatalf("status %+v (%v), want %+v", got, err, want)
		}
	}
	status(store.VectorSetStatus{Active: a, Other: b, Papers: 6, ActiveVectors: 6})

	// The job's view: papers without a vector in b, by id, in pages.
	missing := func(after string, limit int) []string {
		t.Helper()
		ps, err := vs.MissingVectors(ctx, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range ps {
			if p.Title == "" || p.Abstract == "" {
				t.Fatalf("missing paper %s without its text", p.ID)
			}
			ids = append(ids, p.ID)
		}
		return ids
	}
	// Pages in the store's order: together every paper once.
	page1 := missing("", 4)
	page2 := missing(page1[len(page1)-1], 4)
	if all := sorted(append(slices.Clone(page1), page2...)); len(page1) != 4 || !slices.Equal(all, []string{"p0", "p1", "p2", "p3", "p4", "p5"}) {
		t.Fatalf("missing in pages of 4: %v then %v", page1, page2)
	}
	put := func(ids ...int) []string {
		t.Helper()
		var in []store.SetVector
		for _, i := range ids {
			p := papers[i]
			in = append(in, store.SetVector{ID: p.ID, TextKey: store.TextKey(p.Title, p.Abstract), Dense: vecB(i), DenseHash: "b-hash"})
		}
		skipped, err := vs.PutVectors(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return skipped
	}
	if skipped := put(0, 1, 2, 3); len(skipped) != 0 {
		t.Fatalf("skipped %v", skipped)
	}
	stale := store.SetVector{ID: "p4", TextKey: store.TextKey("an older title", papers[4].Abstract), Dense: vecB(4)}
	if skipped, err := vs.PutVectors(ctx, []store.SetVector{stale, {ID: "gone", TextKey: "x", Dense: vecB(0)}}); err != nil || !slices.Equal(skipped, []string{"p4", "gone"}) {
		t.Fatalf("a vector of another text and one of no paper: skipped %v (%v)", skipped, err)
	}
	status(store.VectorSetStatus{Active: a, Other: b, OtherVectors: 4, Papers: 6, ActiveVectors: 6})

	// Writes while the set fills: new text loses its b vector; other fields keep it.
	papers[1].Title = "Paper 1, revised"
	papers[1].Lexical = Paper("", papers[1].Title, papers[1].Abstract).Lexical
	papers[2].Authors = []string{"A. Author"}
	upsert(t, s, papers[1], papers[2])
	if got := sorted(missing("", 10)); !slices.Equal(got, []string{"p1", "p4", "p5"}) {
		t.Fatalf("missing after the writes: %v", got)
	}

	// Queries name their set; the active one is the default, the other is searchable too.
	q := func(set string, v []float32, exclude ...string) []string {
		t.Helper()
		return hitIDs(search(t, s, store.Query{Dense: v, DenseSet: set, Limit: 3, Exact: true, Filter: store.Filter{ExcludeIDs: exclude}}))
	}
	if got := q("", vecA(1)); len(got) != 3 || got[0] != "p1" {
		t.Fatalf("active set, query like p1: %v", got)
	}
	// Along b's second axis p3 is the nearest after p1, whose b vector is of its old title (a
	// backend may keep it until it is embedded again).
	if got := q(b.Key(), []float32{0, 1}, "p1"); len(got) == 0 || got[0] != "p3" {
		t.Fatalf("set b, query along its second axis: %v", got)
	}
	var sw *store.EmbeddingSwitchedError
	if _, err := s.Search(ctx, store.Query{Dense: []float32{1, 0}, DenseSet: "no such set", Limit: 3}); !errors.As(err, &sw) || sw.Active != a {
		t.Fatalf("a query of an unknown set: %v", err)
	}
	// Reads name their set too: its vectors. A paper the other set has no vector for yet
	// comes without one, or not at all (a backend may keep the set's papers apart).
	for _, set := range []store.EmbeddingSpec{a, b} {
		records, err := s.Read(ctx, []string{"p0", "p5"}, store.DenseVector, set.Key())
		want := vecA(0)
		if set == b {
			want = vecB(0)
		}
		if err != nil || len(records) == 0 || !sameDirection(records[0].Paper.Dense, want) || records[0].Paper.DenseSet != set.Key() ||
			(set == a && len(records) != 2) || (set == b && len(records) == 2 && records[1].Paper.Dense != nil) {
			t.Fatalf("read of set %s: %+v (%v)", set.Model, records, err)
		}
	}
	if _, err := s.Read(ctx, []string{"p0"}, store.DenseVector, "no such set"); !errors.As(err, &sw) || sw.Active != a {
		t.Fatalf("a read of an unknown set: %v", err)
	}

	var inc *store.IncompleteSetError
	if err := vs.SwitchVectorSet(ctx, b, nil); !errors.As(err, &inc) || inc.Missing != 3 {
		t.Fatalf("switch with 3 papers missing: %v", err)
	}
	if st, _ := s.Stats(ctx); st.Embedding != a {
		t.Fatalf("a refused switch changed the active set to %+v", st.Embedding)
	}
	put(1)
	// The switch embeds the last ones itself; a fill that leaves one out is refused whole.
	var asked []string
	fill := func(all bool) store.FillFunc {
		return func(_ context.Context, ps []store.Paper) ([]store.SetVector, error) {
			asked = asked[:0]
			var out []store.SetVector
			for _, p := range ps {
				asked = append(asked, p.ID)
				i := slices.IndexFunc(papers, func(q store.Paper) bool { return q.ID == p.ID })
				if p.Title != papers[i].Title || (!all && p.ID == "p5") {
					continue
				}
				out = append(out, store.SetVector{ID: p.ID, TextKey: store.TextKey(p.Title, p.Abstract), Dense: vecB(i), DenseHash: "b-hash"})
			}
			return out, nil
		}
	}
	if err := vs.SwitchVectorSet(ctx, b, fill(false)); !errors.As(err, &inc) || inc.Missing != 1 || !slices.Equal(sorted(asked), []string{"p4", "p5"}) {
		t.Fatalf("a switch whose fill left p5 out (asked for %v): %v", asked, err)
	}
	if st, _ := s.Stats(ctx); st.Embedding != a {
		t.Fatalf("a refused switch changed the active set to %+v", st.Embedding)
	}
	if err := vs.SwitchVectorSet(ctx, b, fill(true)); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(ctx); st.Embedding != b {
		t.Fatalf("after the switch the store reports %+v", st.Embedding)
	}
	if err := vs.SwitchVectorSet(ctx, b, nil); err != nil {
		t.Fatalf("switching again to the active set (another replica did it): %v", err)
	}
	got, err := s.Get(ctx, []string{"p3"})
	if err != nil || !sameDirection(got[0].Dense, vecB(3)) || got[0].DenseSet != b.Key() || got[0].DenseHash != "b-hash" {
		t.Fatalf("p3 after the switch: %+v (%v)", got, err)
	}
	// The set switched away from stays, and papers written now have no vector in it.
	if got := q(a.Key(), vecA(1)); len(got) == 0 || got[0] != "p1" {
		t.Fatalf("the former set after the switch: %v", got)
	}
	late := papers[0]
	late.Dense, late.DenseSet = vecA(0), a.Key()
	if _, err := s.Upsert(ctx, []store.Paper{late}); !errors.As(err, &sw) || sw.Active != b {
		t.Fatalf("a vector of the former set written after the switch: %v", err)
	}
	fresh := Paper("p6", "Paper 6 on sets", "Written after the switch.")
	fresh.Dense, fresh.DenseSet = vecB(6), b.Key()
	upsert(t, s, fresh)
	status(store.VectorSetStatus{Active: b, Other: a, OtherVectors: 6, Papers: 7, ActiveVectors: 7})
	if got := q("", []float32{1, 0.3}); len(got) != 3 {
		t.Fatalf("the new set: %v", got)
	}
	if err := vs.BeginVectorSet(ctx, store.EmbeddingSpec{Model: "model-c", Dimensions: 2}); err == nil {
		t.Fatal("a third model while the former set is kept was accepted")
	}
	// Rolling back is the same move again: the former set lacks only what was written since.
	if err := vs.BeginVectorSet(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := missing("", 10); !slices.Equal(got, []string{"p6"}) {
		t.Fatalf("missing from the former set: %v", got)
	}
	if err := vs.RetireVectorSet(ctx); err != nil {
		t.Fatal(err)
	}
	status(store.VectorSetStatus{Active: b, Papers: 7, ActiveVectors: 7})
	if _, err := s.Search(ctx, store.Query{Dense: vecA(1), DenseSet: a.Key(), Limit: 3}); !errors.As(err, &sw) {
		t.Fatalf("a query of the retired set: %v", err)
	}
	if err := vs.RetireVectorSet(ctx); !errors.Is(err, store.ErrNoOtherSet) {
		t.Fatalf("retiring twice: %v", err)
	}
	if got := q("", []float32{0, 1}); !slices.Equal(got, []string{"p1", "p3", "p5"}) {
		t.Fatalf("the active set after the retire: %v", got)
	}
	if got, err := s.Get(ctx, []string{"p0"}); err != nil || !sameDirection(got[0].Dense, vecB(0)) {
		t.Fatalf("p0 after the retire: %+v (%v)", got, err)
	}
	if _, err := s.BindEmbedding(ctx, b); err != nil {
		t.Fatalf("binding the new model after the switch: %v", err)
	}
	var mm *store.EmbeddingMismatchError
	if _, err := s.BindEmbedding(ctx, a); !errors.As(err, &mm) {
		t.Fatalf("binding the retired model: %v", err)
	}
}

func sorted(ids []string) []string {
	slices.Sort(ids)
	return ids
}
