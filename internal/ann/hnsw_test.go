package ann_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/paperrec/recommender/internal/ann"
	"github.com/paperrec/recommender/internal/ann/anntest"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// clustered returns base vectors and queries from the same clusters, spread wide enough
// (noise 1.6) that recall at ef 64 is below 1 and the recall bar is a real check.
func clustered(n, nq, dims, c int, seed uint64) ([][]float32, [][]float32) {
	return anntest.Clustered(n, nq, dims, c, 1.6, seed)
}

func exact(vecs [][]float32, q []float32, k int, accept func(uint32) bool) []uint32 {
	type sc struct {
		id uint32
		s  float32
	}
	var all []sc
	for i, v := range vecs {
		if accept != nil && !accept(uint32(i)) {
			continue
		}
		var d float32
		for j := range v {
			d += v[j] * q[j]
		}
		all = append(all, sc{uint32(i), d})
	}
	slices.SortFunc(all, func(a, b sc) int {
		if a.s > b.s {
			return -1
		}
		if a.s < b.s {
			return 1
		}
		return 0
	})
	var ids []uint32
	for _, a := range all[:min(k, len(all))] {
		ids = append(ids, a.id)
	}
	return ids
}

func recall(got []ann.Result, want []uint32) float64 {
	hit := 0
	for _, r := range got {
		if slices.Contains(want, r.ID) {
			hit++
		}
	}
	return float64(hit) / float64(len(want))
}

func build(vecs [][]float32) *ann.Index {
	x := ann.New(ann.DefaultOptions())
	for _, v := range vecs {
		x.Add(v)
	}
	return x
}

func TestRecallAgainstExact(t *testing.T) {
	race.Skip(t)
	vecs, queries := clustered(6000, 200, 32, 40, 1)
	x := build(vecs)
	var sum float64
	for _, q := range queries {
		sum += recall(x.Search(q, 10, 64, nil), exact(vecs, q, 10, nil))
	}
	r := sum / float64(len(queries))
	t.Logf("recall@10 at ef 64 over %d queries: %.4f", len(queries), r)
	if r < 0.95 {
		t.Fatalf("recall@10 %.4f < 0.95", r)
	}
}

// A parallel batch build links every node and finds neighbours as well as a sequential one,
// while searches wait for it (run with -race: the workers share friend lists under node locks).
func TestParallelBatchBuild(t *testing.T) {
	n := 6000
	if race.Enabled {
		n = 1500 // what the race detector checks is the sharing, at a tenth of the speed
	}
	vecs, queries := clustered(n, 200, 32, 40, 1)
	x := ann.New(ann.DefaultOptions())
	x.Add(vecs[0])
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			if got := x.Search(vecs[0], 1, 16, nil); len(got) != 1 || got[0].ID != 0 {
				t.Errorf("search during the batch: %v", got)
				return
			}
		}
	}()
	if first := x.AddBatch(vecs[1:], 4); first != 1 {
		t.Fatalf("first id %d, want 1", first)
	}
	wg.Wait()
	if x.Len() != len(vecs) {
		t.Fatalf("len %d, want %d", x.Len(), len(vecs))
	}
	var sum float64
	for _, q := range queries {
		sum += recall(x.Search(q, 10, 64, nil), exact(vecs, q, 10, nil))
	}
	r := sum / float64(len(queries))
	t.Logf("recall@10 at ef 64 after a 4-way parallel build: %.4f", r)
	if r < 0.95 {
		t.Fatalf("recall@10 %.4f < 0.95", r)
	}
	for i, v := range vecs[:300] { // every node is reachable: it finds itself
		if got := x.Search(v, 1, 64, nil); got[0].ID != uint32(i) {
			t.Fatalf("node %d not found by its own vector: %v", i, got)
		}
	}
}

// With int8 codes the walk is approximate twice over, and the rescoring with float vectors
// brings the recall back: scores returned are exact dot products.
func TestInt8SearchRescores(t *testing.T) {
	race.Skip(t)
	vecs, queries := clustered(6000, 200, 64, 40, 1)
	opts := ann.DefaultOptions()
	opts.Int8 = true
	x := ann.New(opts)
	x.AddBatch(vecs, 2)
	var sum float64
	for _, q := range queries {
		got := x.Search(q, 10, 64, nil)
		for _, r := range got {
			var d float32
			for j := range q {
				d += q[j] * vecs[r.ID][j]
			}
			if diff := d - r.Score; diff > 1e-4 || diff < -1e-4 {
				t.Fatalf("node %d scored %v, exact %v", r.ID, r.Score, d)
			}
		}
		sum += recall(got, exact(vecs, q, 10, nil))
	}
	r := sum / float64(len(queries))
	t.Logf("int8 recall@10 at ef 64 with rescoring: %.4f", r)
	if r < 0.95 {
		t.Fatalf("int8 recall@10 %.4f < 0.95", r)
	}
	// A graph built on floats loads as an int8 index.
	var buf bytes.Buffer
	if err := build(vecs).Save(&buf); err != nil {
		t.Fatal(err)
	}
	y, err := ann.Load(&buf, opts, func(id uint32) []float32 { return vecs[id] })
	if err != nil {
		t.Fatal(err)
	}
	sum = 0
	for _, q := range queries {
		sum += recall(y.Search(q, 10, 64, nil), exact(vecs, q, 10, nil))
	}
	if r := sum / float64(len(queries)); r < 0.95 {
		t.Fatalf("loaded int8 recall@10 %.4f < 0.95", r)
	}
	// An int8 index saves its codes: reloaded as int8 it answers exactly as before; the file
	// also loads as a float32 index (the codes skipped).
	var buf8 bytes.Buffer
	if err := x.Save(&buf8); err != nil {
		t.Fatal(err)
	}
	if buf8.Len() < 6000*64 {
		t.Fatalf("int8 index file of %d bytes holds no codes", buf8.Len())
	}
	for _, o := range []ann.Options{opts, ann.DefaultOptions()} {
		z, err := ann.Load(bytes.NewReader(buf8.Bytes()), o, func(id uint32) []float32 { return vecs[id] })
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range queries[:50] {
			a, b := x.Search(q, 10, 64, nil), z.Search(q, 10, 64, nil)
			if o.Int8 && !slices.Equal(a, b) {
				t.Fatalf("reloaded int8 index answers differently:\n%v\n%v", a, b)
			}
			if recall(b, exact(vecs, q, 10, nil)) < 0.5 {
				t.Fatalf("reloaded index (int8 %v) lost its way: %v", o.Int8, b)
			}
		}
	}
}

func TestFilteredSearchKeepsRecall(t *testing.T) {
	race.Skip(t)
	vecs, queries := clustered(6000, 100, 32, 40, 3)
	x := build(vecs)
	accept := func(id uint32) bool { return id%10 == 3 } // one paper in ten passes
	var sum float64
	for _, q := range queries {
		got := x.Search(q, 10, 64, accept)
		for _, r := range got {
			if !accept(r.ID) {
				t.Fatalf("filtered search returned %d", r.ID)
			}
		}
		sum += recall(got, exact(vecs, q, 10, accept))
	}
	r := sum / float64(len(queries))
	t.Logf("filtered (10%%) recall@10 at ef 64: %.4f", r)
	if r < 0.95 {
		t.Fatalf("filtered recall@10 %.4f < 0.95", r)
	}
}

func TestDeleteAndSaveLoad(t *testing.T) {
	vecs, queries := clustered(2000, 50, 16, 20, 5)
	x := build(vecs)
	q := vecs[7]
	if got := x.Search(q, 1, 32, nil); got[0].ID != 7 {
		t.Fatalf("nearest to vector 7 is %d", got[0].ID)
	}
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	y, err := ann.Load(bytes.NewReader(buf.Bytes()), ann.DefaultOptions(), func(id uint32) []float32 { return vecs[id] })
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		if a, b := x.Search(q, 10, 50, nil), y.Search(q, 10, 50, nil); !slices.Equal(a, b) {
			t.Fatalf("loaded index answers differently:\n%v\n%v", a, b)
		}
	}
	x.Delete(7)
	if got := x.Search(q, 5, 32, nil); slices.ContainsFunc(got, func(r ann.Result) bool { return r.ID == 7 }) || x.Len() != 1999 {
		t.Fatalf("deleted node returned: %v (len %d)", got, x.Len())
	}
	if err := x.Save(&buf); err == nil {
		t.Fatal("an index with tombstones was saved")
	}
	if _, err := ann.Load(bytes.NewReader(buf.Bytes()[:40]), ann.DefaultOptions(), func(id uint32) []float32 { return vecs[id] }); err == nil {
		t.Fatal("a truncated file loaded")
	}
	if _, err := ann.Load(bytes.NewReader(buf.Bytes()), ann.Options{M: 8, EfConstruction: 100}, func(id uint32) []float32 { return vecs[id] }); err == nil {
		t.Fatal("a file built with other options loaded")
	}
}

func TestConcurrentAddDeleteSearch(t *testing.T) {
	vecs, _ := clustered(3000, 0, 16, 20, 8)
	x := build(vecs[:1000])
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for _, v := range vecs[1000:] {
			x.Add(v)
		}
	}()
	go func() {
		defer wg.Done()
		for i := uint32(0); i < 500; i++ {
			x.Delete(i * 2)
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 500 {
			for _, r := range x.Search(vecs[i], 10, 32, nil) {
				if r.ID >= uint32(x.Nodes()) {
					t.Errorf("result %d out of range", r.ID)
				}
			}
		}
	}()
	wg.Wait()
	if x.Len() != 2500 {
		t.Fatalf("len %d, want 2500", x.Len())
	}
}

// TestLoadSurvivesCorruptFiles: a damaged graph file is refused or loads into an index that
// searches without panicking (a saved graph is read at every store open).
func TestLoadSurvivesCorruptFiles(t *testing.T) {
	vecs, queries := clustered(300, 5, 8, 5, 9)
	x := build(vecs)
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	refused := 0
	for i := 0; i < len(good); i += 1 + i/64 { // every header byte, then sparser
		for _, b := range []byte{0x00, 0x7f, 0xff} {
			bad := slices.Clone(good)
			if bad[i] == b {
				continue
			}
			bad[i] = b
			y, err := ann.Load(bytes.NewReader(bad), ann.DefaultOptions(), func(id uint32) []float32 { return vecs[id] })
			if err != nil {
				refused++
				continue
			}
			for _, q := range queries {
				y.Search(q, 10, 32, nil)
			}
		}
	}
	if refused == 0 {
		t.Fatal("no corruption was detected")
	}
}
