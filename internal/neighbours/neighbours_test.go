package neighbours_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/neighbours"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/storetest"
)

// keeper is a Keeper over st whose lists are empty, counting what it computes.
func keeper(st *embedded.Store, id string, computed *atomic.Int64) *neighbours.Keeper {
	return &neighbours.Keeper{Lists: st, Log: st, Key: func() string { return "test" }, Length: 5, ID: id,
		LeaseTTL: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Papers: func(ctx context.Context) (int64, error) {
			s, err := st.Stats(ctx)
			return s.PaperCount, err
		},
		Compute: func(context.Context, string) ([]neighbours.Entry, error) {
			computed.Add(1)
			return nil, nil
		}}
}

func write(t *testing.T, st store.Store, from, n int) {
	t.Helper()
	var papers []store.Paper
	for i := from; i < from+n; i++ {
		papers = append(papers, storetest.Paper(fmt.Sprintf("p%03d", i), "paper", "about leases"))
	}
	if _, err := st.Upsert(context.Background(), papers); err != nil {
		t.Fatal(err)
	}
}

// current waits until k's status shows every write taken in.
func current(t *testing.T, k *neighbours.Keeper) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := k.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Built && st.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not current after 30 s: %+v", st)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

// TestOneKeeperAtATime: keepers sharing a store (replicas) keep the lists one at a time; when the
// one keeping them stops, another takes over.
func TestOneKeeperAtATime(t *testing.T) {
	st, err := embedded.Open(context.Background(), embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	write(t, st, 0, 20)
	var byA, byB atomic.Int64
	a, b := keeper(st, "a", &byA), keeper(st, "b", &byB)
	run := func(k *neighbours.Keeper) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("keeper: %v", err)
			}
		}
	}
	stopA := run(a)
	current(t, a)
	stopB := run(b)
	defer stopB()
	write(t, st, 20, 5)
	current(t, b)
	if byA.Load() != 25 || byB.Load() != 0 {
		t.Fatalf("computed: a %d, b %d; want 25 by a (it holds the lease), none by b", byA.Load(), byB.Load())
	}
	stopA()
	write(t, st, 25, 3)
	current(t, b)
	if byA.Load() != 25 || byB.Load() != 3 {
		t.Fatalf("after a stopped: a %d, b %d; want b to take the 3 new papers in", byA.Load(), byB.Load())
	}
}
