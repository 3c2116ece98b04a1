package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/storetest"
)

// linkerVector is paper i's vector in version v: 16 pseudo-random dimensions, so each paper's
// nearest vector is its own.
func linkerVector(i, v int) []float32 {
	r := rand.New(rand.NewPCG(uint64(i), uint64(v)))
	vec := make([]float32, 16)
	for j := range vec {
		vec[j] = float32(r.NormFloat64())
	}
	return vec
}

func linkerPapers(from, to, version int) []store.Paper {
	var ps []store.Paper
	for i := from; i < to; i++ {
		p := storetest.Paper(fmt.Sprintf("p%04d", i), "Vector paper", "Words.")
		p.Dense = linkerVector(i, version)
		ps = append(ps, p)
	}
	return ps
}

// linkAll waits for the linker, then checks the graphs against the papers.
func linkAll(t *testing.T, s *embedded.Store) {
	t.Helper()
	if err := s.WaitLinked(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckLinks(); err != nil {
		t.Fatal(err)
	}
}

// nearest is the top hit of a graph search (the store is opened with ExactBelow 1) for v.
func nearest(t *testing.T, s *embedded.Store, v []float32) store.Scored {
	t.Helper()
	lists, err := s.Search(context.Background(), store.Query{Dense: v, Limit: 3})
	if err != nil || len(lists.Dense) == 0 {
		t.Fatalf("search: %v, %d hits", err, len(lists.Dense))
	}
	return lists.Dense[0]
}

// TestVectorsAreFoundWhileTheLinkerLags: vectors are linked into the graph behind the writes.
// With the linker held, papers written, replaced and deleted are found (or not) at once, scored
// exactly; released, it links them all and the answers stay; a graph saved partly linked is
// completed after a reopen.
func TestVectorsAreFoundWhileTheLinkerLags(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openGraphStore(t, dir)
	defer func() { _ = s.Close() }()
	upsert := func(ps []store.Paper) {
		t.Helper()
		if _, err := s.Upsert(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	upsert(linkerPapers(0, 400, 0))
	linkAll(t, s)
	if n := s.Unlinked(); n != 0 {
		t.Fatalf("%d vectors unlinked after WaitLinked", n)
	}

	// A partly linked graph is saved at close and completed after the reopen.
	s.HoldLinker() // until the close
	upsert(linkerPapers(400, 500, 0))
	if n := s.Unlinked(); n != 100 {
		t.Fatalf("held linker: %d vectors queued, want 100", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openGraphStore(t, dir)
	linkAll(t, s)

	release := s.HoldLinker()
	upsert(linkerPapers(500, 800, 0))
	if _, err := s.Delete(ctx, []string{"p0010", "p0600"}); err != nil { // one linked, one queued
		t.Fatal(err)
	}
	upsert(append(linkerPapers(20, 21, 1), linkerPapers(610, 611, 1)...)) // new vectors for both kinds
	if n := s.Unlinked(); n != 300 {                                      // 300 written, p0600 gone, p0020 queued again
		t.Fatalf("held linker: %d vectors queued, want 300", n)
	}
	check := func(when string) {
		t.Helper()
		for i := 0; i < 800; i += 3 {
			version := 0
			if i == 20 || i == 610 {
				version = 1
			}
			want := fmt.Sprintf("p%04d", i)
			got := nearest(t, s, linkerVector(i, version))
			switch {
			case i == 10 || i == 600:
				if got.ID == want {
					t.Fatalf("%s: deleted %s found", when, want)
				}
			case got.ID != want || got.Score < 0.9999:
				t.Fatalf("%s: %s's vector found %s (%.5f)", when, want, got.ID, got.Score)
			}
		}
		for _, i := range []int{20, 610} { // an old vector finds its paper no more
			if got := nearest(t, s, linkerVector(i, 0)); got.Score > 0.9999 {
				t.Fatalf("%s: p%04d's replaced vector still found (%s, %.5f)", when, i, got.ID, got.Score)
			}
		}
	}
	check("queued")
	if err := s.CheckLinks(); err != nil {
		t.Fatal(err)
	}
	release()
	linkAll(t, s)
	check("linked")
}

// TestLinkerUnderConcurrentWrites: writers replacing and deleting papers race the linker and
// searches (run it with -race); afterwards every vector is linked exactly once, to the paper
// that holds it.
func TestLinkerUnderConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s := openGraphStore(t, t.TempDir())
	defer func() { _ = s.Close() }()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for round := range 60 {
				i := r.IntN(200)
				var err error
				if r.IntN(5) == 0 {
					_, err = s.Delete(ctx, []string{fmt.Sprintf("p%04d", i)})
				} else {
					_, err = s.Upsert(ctx, linkerPapers(i, i+r.IntN(20)+1, round*4+w))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if _, err := s.Search(ctx, store.Query{Dense: linkerVector(i, 0), Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	linkAll(t, s)
}

// TestAWriteDuringLinkingWins: a paper replaced or deleted after the linker took its vector and
// before it published it keeps its new state: the old vector's node is not published for it.
func TestAWriteDuringLinkingWins(t *testing.T) {
	ctx := context.Background()
	s := openGraphStore(t, t.TempDir())
	defer func() { _ = s.Close() }()
	s.HoldLinker()
	if _, err := s.Upsert(ctx, linkerPapers(0, 100, 0)); err != nil {
		t.Fatal(err)
	}
	s.LinkWithWriteBetween(func() {
		if _, err := s.Upsert(ctx, linkerPapers(5, 6, 1)); err != nil {
			t.Error(err)
		}
		if _, err := s.Delete(ctx, []string{"p0007"}); err != nil {
			t.Error(err)
		}
	})
	if err := s.CheckLinks(); err != nil {
		t.Fatal(err)
	}
	if n := s.Unlinked(); n != 1 {
		t.Fatalf("%d vectors queued after the batch, want 1 (p0005's new one)", n)
	}
	if got := nearest(t, s, linkerVector(5, 1)); got.ID != "p0005" {
		t.Fatalf("p0005's new vector found %s", got.ID)
	}
	for _, i := range []int{5, 7} {
		if got := nearest(t, s, linkerVector(i, 0)); got.Score > 0.9999 {
			t.Fatalf("p%04d's old vector still found (%s, %.5f)", i, got.ID, got.Score)
		}
	}
}
