package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/store/storetest"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// filled makes a closed store of n papers with 16-dimension vectors in dir, its graph saved.
func filled(t *testing.T, dir string, n int) []store.Paper {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindEmbedding(context.Background(), store.EmbeddingSpec{Model: "m", Dimensions: 16}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []store.Paper
	for i := range n {
		p := storetest.Paper(fmt.Sprintf("p%04d", i), fmt.Sprintf("Paper %d about topic %d", i, i%7), strings.Repeat(fmt.Sprintf("words of paper %d ", i), 5))
		p.Dense, p.DenseHash = make([]float32, 16), fmt.Sprintf("h%d", i)
		for j := range p.Dense {
			p.Dense[j] = float32(rng.NormFloat64())
		}
		ps = append(ps, p)
	}
	if _, err := s.Upsert(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return ps
}

func damage(t *testing.T, path string, at int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// 256 KiB of random bytes inside the vector index: the store notices, says so and rebuilds the
// graph, and dense search still finds each paper by its own vector.
func TestDamagedVectorIndexIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	ps := filled(t, dir, 3000)
	path := filepath.Join(dir, "ann.idx")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no vector index saved: %v", err)
	}
	n := min(256<<10, fi.Size()/2)
	damage(t, path, fi.Size()/4, randomBytes(int(n)))
	var logs bytes.Buffer
	s, err := embedded.Open(context.Background(), embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1},
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "vector index file damaged; rebuilding it") {
		t.Fatalf("no log line about the damaged index:\n%s", logs.String())
	}
	found := 0
	for i := 0; i < len(ps); i += 30 {
		lists, err := s.Search(context.Background(), store.Query{Dense: ps[i].Dense, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(lists.Dense) == 1 && lists.Dense[0].ID == ps[i].ID {
			found++
		}
	}
	if found < 95 {
		t.Fatalf("%d of 100 papers found by their own vector after the rebuild", found)
	}
	// A clean reopen trusts the rebuilt file: no log line.
	_ = s.Close()
	logs.Reset()
	s2, err := embedded.Open(context.Background(), embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1},
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
	if logs.Len() > 0 {
		t.Fatalf("reopening after the rebuild logged:\n%s", logs.String())
	}
}

// A papers file cut short, or with 4 KiB of garbage over a page that holds records, is
// refused with an error that names the file: no SIGBUS, no panic.
func TestDamagedPapersFileIsAClearError(t *testing.T) {
	for _, tc := range []struct {
		name string
		hurt func(t *testing.T, path string)
	}{
		{"truncated to half", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage over a record page", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(b, []byte("words of paper 1500 "))
			if i < 0 {
				t.Fatal("record not found in the file")
			}
			damage(t, path, int64(i/4096*4096), randomBytes(4096))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			filled(t, dir, 3000)
			path := filepath.Join(dir, embedded.FileName)
			tc.hurt(t, path)
			// Check a copy: an open that fails inside bbolt keeps its file locked until the
			// process ends (serve and check end at once), and this test goes on in the process.
			other := t.TempDir()
			if err := os.WriteFile(filepath.Join(other, embedded.FileName), testutil.ReadFile(t, path), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := embedded.Check(context.Background(), other)
			if err != nil || len(r.Problems) == 0 {
				t.Fatalf("check: %+v, %v; want problems", r, err)
			}
			t.Logf("check: %s", r.Problems[0])
			// Opened from the snapshot of the clean close, the store need not read the damaged
			// page (bbolt's free list is on disk too); reading it is an error, not a crash.
			copyDir := t.TempDir()
			for _, name := range []string{embedded.FileName, "index.snap", "vectors.f32"} {
				if err := os.WriteFile(filepath.Join(copyDir, name), testutil.ReadFile(t, filepath.Join(dir, name)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if s, err := embedded.Open(context.Background(), embedded.Options{Dir: copyDir}); err == nil {
				if _, err := s.Get(context.Background(), []string{"p1500"}); err == nil {
					t.Fatal("get of a paper on the damaged page: no error")
				} else {
					t.Logf("open from the snapshot; get: %v", err)
				}
			}
			// Without a snapshot (after a crash) the open reads every record and refuses.
			if err := os.Remove(filepath.Join(dir, "index.snap")); err != nil {
				t.Fatal(err)
			}
			_, err = embedded.Open(context.Background(), embedded.Options{Dir: dir})
			var de *embedded.DamagedError
			if !errors.As(err, &de) || de.Path != path || !strings.Contains(err.Error(), "Restore the data directory from a backup") {
				t.Fatalf("open: %v, want a DamagedError naming %s and what to do", err, path)
			}
			t.Logf("open: %v", err)
		})
	}
}

// A papers file missing or empty beside the other store files is refused unless asked for.
func TestMissingPapersFileIsRefused(t *testing.T) {
	for _, empty := range []bool{false, true} {
		dir := t.TempDir()
		filled(t, dir, 50)
		path := filepath.Join(dir, embedded.FileName)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if empty {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err := embedded.Open(context.Background(), embedded.Options{Dir: dir})
		var me *embedded.MissingError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "--allow-empty-store") {
			t.Fatalf("empty file %v: open %v, want a MissingError saying how to go on", empty, err)
		}
		s, err := embedded.Open(context.Background(), embedded.Options{Dir: dir, AllowEmpty: true})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := s.Stats(context.Background()); st.PaperCount != 0 {
			t.Fatalf("allowed empty store holds %d papers", st.PaperCount)
		}
		_ = s.Close()
	}
	// A fresh directory is not refused.
	s, err := embedded.Open(context.Background(), embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

func TestCheckASoundStore(t *testing.T) {
	dir := t.TempDir()
	filled(t, dir, 200)
	r, err := embedded.Check(context.Background(), dir)
	if err != nil || len(r.Problems) > 0 || r.Papers != 200 || r.Vectors != 200 || r.ANN != "checksum good, matches the papers" {
		t.Fatalf("check: %+v, %v", r, err)
	}
}

// TestOneByteFlippedAnywhereIsCaught flips one byte at 20 random offsets of each file of a data
// directory, one at a time, and opens the store, reads every paper back, finds each of a few by
// its own vector, and runs Check. A damaged file is refused, or set aside with a warning and
// rebuilt from the records, or a damaged record is refused when read; no flip may change an
// answer. The table it logs is the fault table.
func TestOneByteFlippedAnywhereIsCaught(t *testing.T) {
	race.Skip(t)
	ctx := context.Background()
	clean := t.TempDir()
	ps := filled(t, clean, 300)
	entries, err := os.ReadDir(clean)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("RECOMMENDER_FLIP_SEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 33))
	type verdict struct{ file, outcome string }
	tally := map[verdict]int{}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
		fi, _ := e.Info()
		for range 20 {
			at := rng.Int64N(fi.Size())
			dir := t.TempDir()
			for _, f := range entries {
				if err := os.WriteFile(filepath.Join(dir, f.Name()), testutil.ReadFile(t, filepath.Join(clean, f.Name())), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			b := testutil.ReadFile(t, filepath.Join(dir, e.Name()))[at]
			damage(t, filepath.Join(dir, e.Name()), at, []byte{^b})
			checked := "; check finds nothing"
			if rep, err := embedded.Check(ctx, dir); err == nil && len(rep.Problems) > 0 {
				checked = "; check reports it"
			}
			outcome := flipOutcome(t, ctx, dir, ps, ids) + checked
			if strings.Contains(outcome, "ANSWERED WRONG") {
				t.Errorf("%s, byte %d flipped: %s", e.Name(), at, outcome)
			}
			tally[verdict{e.Name(), outcome}]++
		}
	}
	var table strings.Builder
	for _, f := range files {
		for v, n := range tally {
			if v.file == f {
				fmt.Fprintf(&table, "  %-12s %2d of 20: %s\n", f, n, v.outcome)
			}
		}
	}
	t.Logf("one byte flipped at 20 random offsets of each file (RECOMMENDER_FLIP_SEED=%d replays them):\n%s", seed, table.String())
}

// flipOutcome opens a damaged copy and says what the store made of it.
func flipOutcome(t *testing.T, ctx context.Context, dir string, ps []store.Paper, ids []string) string {
	t.Helper()
	var logs bytes.Buffer
	s, err := embedded.Open(ctx, embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	var de *embedded.DamagedError
	switch {
	case errors.As(err, &de):
		return "refused at open, naming the file"
	case err != nil:
		return "refused at open: " + err.Error()
	}
	defer s.Close()
	outcome := "no data in those bytes: every answer as before"
	if strings.Contains(logs.String(), "level=WARN") {
		outcome = "set aside with a warning and rebuilt from the records: every answer as before"
	}
	got, err := s.Get(ctx, ids)
	switch {
	case errors.As(err, &de):
		return "refused when read, naming papers.db and what failed"
	case err != nil && strings.Contains(err.Error(), "corrupt record"):
		return "a damaged record refused when read, naming the paper"
	case err != nil:
		return "ANSWERED WRONG: " + err.Error()
	}
	for i, p := range got {
		if p.ID != ps[i].ID || p.Title != ps[i].Title || p.Abstract != ps[i].Abstract || !slices.Equal(p.Dense, ps[i].Dense) {
			return fmt.Sprintf("ANSWERED WRONG: paper %s read back changed", ps[i].ID)
		}
	}
	for _, p := range ps[:20] {
		lists, err := s.Search(ctx, store.Query{Dense: p.Dense, DenseSet: store.EmbeddingSpec{Model: "m", Dimensions: 16}.Key(), Limit: 1})
		if err != nil || len(lists.Dense) == 0 || lists.Dense[0].ID != p.ID {
			return fmt.Sprintf("ANSWERED WRONG: paper %s not found by its own vector (%v)", p.ID, err)
		}
	}
	return outcome
}

// A vectors file cut short under a running store (the store maps it) fails the searches that
// read it, naming it, instead of ending the process with SIGBUS.
func TestVectorsFileCutShortUnderTheStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ps := filled(t, dir, 300)
	s, err := embedded.Open(ctx, embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := store.Query{Dense: ps[7].Dense, DenseSet: store.EmbeddingSpec{Model: "m", Dimensions: 16}.Key(), Limit: 3}
	if lists, err := s.Search(ctx, q); err != nil || lists.Dense[0].ID != ps[7].ID {
		t.Fatalf("before: %v, %v", lists, err)
	}
	// (A batch the linker is linking while the file is cut would still fault: a cut is checked
	// for between batches.)
	if err := s.WaitLinked(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "vectors.f32"), 0); err != nil {
		t.Fatal(err)
	}
	var de *embedded.DamagedError
	if _, err := s.Search(ctx, q); !errors.As(err, &de) || !strings.Contains(err.Error(), "vectors.f32") {
		t.Fatalf("after the cut: %v, want a DamagedError naming vectors.f32", err)
	}
	if _, err := s.Read(ctx, []string{ps[7].ID}, store.DenseVector, ""); !errors.As(err, &de) || !strings.Contains(err.Error(), "vectors.f32") {
		t.Fatalf("a read of a vector after the cut: %v, want a DamagedError naming vectors.f32", err)
	}
	// A new vector wakes the linker, which sees the cut and links nothing rather than fault.
	p := ps[0]
	p.ID, p.DenseHash = "new", "new"
	if _, err := s.Upsert(ctx, []store.Paper{p}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(ctx, q); !errors.As(err, &de) {
		t.Fatalf("after a write: %v, want a DamagedError", err)
	}
}
