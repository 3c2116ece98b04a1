package embedded

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// queueWrites starts writes while the writer lock is held, waits until all are queued, and
// releases the lock: the next leader commits them as one group.
func queueWrites(t *testing.T, s *Store, writes ...func() error) []error {
	t.Helper()
	s.writeMu.Lock()
	errs := make([]chan error, len(writes))
	for i, w := range writes {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- w() }()
	}
	for queued := 0; queued < len(writes); runtime.Gosched() {
		s.pendingMu.Lock()
		queued = len(s.pending)
		s.pendingMu.Unlock()
	}
	s.writeMu.Unlock()
	out := make([]error, len(writes))
	for i := range errs {
		out[i] = <-errs[i]
	}
	return out
}

func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	paper := func(i int) store.Paper {
		title := fmt.Sprintf("Paper number %d on grouped commits", i)
		return store.Paper{ID: fmt.Sprintf("g%02d", i), Title: title, Lexical: lexical.Document(title, "")}
	}

	// Twenty single-paper upserts queued together: one transaction, one version.
	var writes []func() error
	for i := range 20 {
		writes = append(writes, func() error { _, err := s.Upsert(ctx, []store.Paper{paper(i)}); return err })
	}
	before := s.Version()
	for i, err := range queueWrites(t, s, writes...) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := s.Version(); got != before+1 {
		t.Fatalf("version %d after a group of 20 from %d: want one commit", got, before)
	}
	if ps, err := s.Get(ctx, []string{"g00", "g19"}); err != nil || len(ps) != 2 {
		t.Fatalf("grouped papers: %v (%v)", ps, err)
	}
	if lists, err := s.Search(ctx, store.Query{Lexical: lexical.Query("grouped commits"), Limit: 100}); err != nil || len(lists.Lexical) != 20 {
		t.Fatalf("%d hits for the grouped papers (%v)", len(lists.Lexical), err)
	}

	// A failing write in a group fails alone; the others are committed, and nothing of the
	// failing one is.
	boom := errors.New("boom")
	errs := queueWrites(t, s,
		func() error { _, err := s.Upsert(ctx, []store.Paper{paper(20)}); return err },
		func() error {
			return s.write(ctx, func(tx *bolt.Tx) ([]change, error) {
				if err := tx.Bucket(bucketPapers).Put([]byte("half-written"), []byte("x")); err != nil {
					return nil, err
				}
				return nil, boom
			})
		},
		func() error { _, err := s.Upsert(ctx, []store.Paper{paper(21)}); return err },
	)
	if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
		t.Fatalf("errors %v: want only the second to fail, with its own error", errs)
	}
	if ps, err := s.Lookup(ctx, []string{"g20", "g21", "half-written"}); err != nil || len(ps) != 2 {
		t.Fatalf("after the failed group: %d of g20, g21 and half-written stored (%v)", len(ps), err)
	}
}

// BenchmarkConcurrentSingleUpserts: 32 writers each upserting one paper per call, as many
// clients of UpsertPapers would; reports papers/s (group commit makes one fsync serve many).
func BenchmarkConcurrentSingleUpserts(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	var next atomic.Int64
	b.SetParallelism(16) // x GOMAXPROCS writers
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			title := fmt.Sprintf("Concurrent paper %d about sparse retrieval", i)
			if _, err := s.Upsert(ctx, []store.Paper{{ID: fmt.Sprintf("c%08d", i), Title: title, Lexical: lexical.Document(title, "")}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "papers/s")
	b.ReportMetric(float64(s.Version())/float64(b.N), "commits/paper")
}
