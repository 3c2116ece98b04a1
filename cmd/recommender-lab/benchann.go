package main

import (
	"bufio"
	"bytes"
	"context"
	le "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/viterin/vek/vek32"

	"github.com/paperrec/recommender/internal/ann"
	"github.com/paperrec/recommender/internal/ann/anntest"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/mmap"
)

const benchANNHelp = `
Benchmarks the approximate nearest-neighbour index against hnswlib on the same vectors in the
same run. It generates seeded, clustered unit vectors (and queries near them), computes the
exact top k of every query, writes everything as raw little-endian files the peer reads
(meta.json, base.f32, queries.f32, gt.i32), then for our index and for hnswlib (Debian's
python3-hnswlib, through scripts/hnswlib_bench.py) with the same M and ef_construction, built
on --threads threads and queried on one: build time, index memory, recall@k and queries/second
for each ef, and the time to reload a saved index. Our graph is also searched with int8 codes
and rescoring, the float vectors memory-mapped from base.f32 (read only to rescore).`

func runBenchANN(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench-ann", "[flags]", benchANNHelp, stderr)
	n := fs.Int("n", 100_000, "vectors in the index")
	dims := fs.Int("dims", 384, "dimensions")
	nq := fs.Int("queries", 1000, "queries")
	k := fs.Int("k", 10, "neighbours per query (recall@k)")
	clusters := fs.Int("clusters", 0, "clusters the vectors are drawn around (0: n/100)")
	noise := fs.Float64("noise", 1.0, "spread of a cluster relative to the spread of the centres")
	seed := fs.Uint64("seed", 1, "random seed")
	m := fs.Int("m", 16, "HNSW M")
	efc := fs.Int("ef-construction", 200, "HNSW ef_construction")
	efList := fs.String("ef", "16,32,64,128,256", "search ef values")
	threads := fs.Int("threads", runtime.GOMAXPROCS(0), "threads building each index (queries always run on one)")
	dir := fs.String("dir", "", "where to write the vectors (default: a temporary folder, removed after)")
	python := fs.String("python", "/usr/bin/python3", "Python with hnswlib and numpy; empty: skip the peer")
	peer := fs.String("peer-script", "scripts/hnswlib_bench.py", "the hnswlib side")
	peerOnly := fs.Bool("peer-only", false, "skip our index: write the vectors and run the peer alone (to calibrate a data set quickly)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	var efs []int
	for _, s := range strings.Split(*efList, ",") {
		e, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || e < *k {
			return cli.UsageError{Msg: fmt.Sprintf("--ef values must be whole numbers of at least k, got %q", s)}
		}
		efs = append(efs, e)
	}
	if !(*noise >= 0 && *noise <= 100) {
		return cli.UsageError{Msg: fmt.Sprintf("--noise must be from 0 to 100, got %v", *noise)}
	}
	if *clusters == 0 {
		*clusters = max(*n/100, 1)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "bench-ann")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil { // before the vectors are generated, which takes a while
		return err
	}

	start := time.Now()
	base, queries := anntest.Clustered(*n, *nq, *dims, *clusters, float32(*noise), *seed)
	gt := groundTruth(base, queries, *k)
	if err := writeBenchFiles(*dir, base, queries, gt, *dims, *k); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vectors: %d x %d, %d clusters, noise %.2f, seed %d; %d queries, k %d; M %d, ef_construction %d; built on %d threads, queried on one\n",
		*n, *dims, *clusters, *noise, *seed, *nq, *k, *m, *efc, *threads)
	fmt.Fprintf(stdout, "(generated with exact ground truth in %.1fs, files in %s)\n\n", time.Since(start).Seconds(), *dir)

	progress := func(what string) { fmt.Fprintf(stderr, "%s %s\n", time.Now().Format(time.TimeOnly), what) }
	rawMiB := vectorsMiB(*n, *dims)
	var rows []benchRow
	if !*peerOnly {
		progress("building ours")
		ours, err := benchOurs(ann.Options{M: *m, EfConstruction: *efc, Seed: *seed}, *dir, *dims, *threads, base, queries, gt, *k, efs, progress)
		if err != nil {
			return err
		}
		rows = ours
	}
	base = nil // the peer reads the files; let the collector have the vectors back
	if *python != "" {
		progress("building and querying hnswlib")
		peerRow, err := runPeer(ctx, *python, *peer, *dir, *m, *efc, *efList, *threads)
		if err != nil {
			return fmt.Errorf("hnswlib: %w", err)
		}
		rows = append(rows, peerRow)
	}
	progress("done")
	printBench(stdout, rows, rawMiB, efs)
	return nil
}

// benchOurs builds our graph on the float32 vectors and measures it, then reloads the saved graph
// as the store does (int8 codes in memory, float vectors memory-mapped for rescoring) and measures
// that: one row each.
func benchOurs(opts ann.Options, dir string, dims, threads int, base, queries [][]float32, gt [][]int32, k int, efs []int, progress func(string)) ([]benchRow, error) {
	rawMiB := vectorsMiB(len(base), dims)
	var idx *ann.Index
	graphMiB, build := heapGrowth(func() {
		idx = ann.New(opts)
		idx.AddBatch(base, threads)
	})
	progress("querying ours")
	ours := benchRow{name: "ours, float32", build: build.Seconds(), indexMiB: rawMiB + graphMiB}
	for _, ef := range efs {
		ours.points = append(ours.points, measure(idx, queries, gt, k, ef))
	}
	graphPath := filepath.Join(dir, "ours.graph")
	if err := saveGraph(idx, graphPath); err != nil {
		return nil, err
	}
	idx = nil
	// Reload: the vectors file read into memory and the graph file.
	var err error
	var vecs [][]float32
	_, reload := heapGrowth(func() {
		var raw []float32
		if raw, err = readFloats(filepath.Join(dir, "base.f32")); err == nil {
			vecs = split(raw, dims)
			idx, err = loadGraph(graphPath, opts, vecs)
		}
	})
	if err != nil {
		return nil, err
	}
	ours.reload = reload.Seconds()
	idx, vecs = nil, nil

	progress("querying ours, int8")
	// Int8: the same graph, codes in memory, float vectors memory-mapped for the rescoring.
	mapped, unmap, err := mmap.Floats(filepath.Join(dir, "base.f32"))
	if err != nil {
		return nil, err
	}
	defer unmap()
	mvecs := split(mapped, dims)
	q8 := opts
	q8.Int8 = true
	// The float graph loads as int8 (encoding every vector) and is saved with its codes, as
	// the store saves it; the reload timed is of that file, the store's restart.
	if idx, err = loadGraph(graphPath, q8, mvecs); err != nil {
		return nil, err
	}
	graph8 := filepath.Join(dir, "ours-int8.graph")
	if err := saveGraph(idx, graph8); err != nil {
		return nil, err
	}
	idx = nil
	int8MiB, reload8 := heapGrowth(func() { idx, err = loadGraph(graph8, q8, mvecs) })
	if err != nil {
		return nil, err
	}
	quant := benchRow{name: "ours, int8 + rescoring", build: build.Seconds(), indexMiB: int8MiB, reload: reload8.Seconds()}
	for _, ef := range efs {
		quant.points = append(quant.points, measure(idx, queries, gt, k, ef))
	}
	ours.peakRSS = peakRSSMiB()
	quant.peakRSS = ours.peakRSS
	return []benchRow{ours, quant}, nil
}

// heapGrowth runs fn and returns how much the live heap grew and how long fn took.
func heapGrowth(fn func()) (float64, time.Duration) {
	before := liveHeapMiB()
	start := time.Now()
	fn()
	took := time.Since(start)
	return liveHeapMiB() - before, took
}

// vectorsMiB is the size of n float32 vectors of dims dimensions.
func vectorsMiB(n, dims int) float64 { return float64(n*dims*4) / (1 << 20) }

func saveGraph(idx *ann.Index, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := idx.Save(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func loadGraph(path string, opts ann.Options, vecs [][]float32) (*ann.Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ann.Load(f, opts, func(id uint32) []float32 {
		if int(id) >= len(vecs) {
			return nil
		}
		return vecs[id]
	})
}

// readFloats reads a file of little-endian float32s.
func readFloats(path string) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(le.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

func split(flat []float32, dims int) [][]float32 {
	out := make([][]float32, len(flat)/dims)
	for i := range out {
		out[i] = flat[i*dims : (i+1)*dims : (i+1)*dims]
	}
	return out
}

type benchPoint struct {
	ef     int
	recall float64
	qps    float64
}

type benchRow struct {
	name                    string
	build, reload, indexMiB float64
	peakRSS                 float64
	points                  []benchPoint
}

// shortName is the row's name without its parenthesis, for column headings.
func (r benchRow) shortName() string { return strings.SplitN(r.name, " (", 2)[0] }

// measure runs the queries one at a time on this goroutine, the whole set again until a second
// has passed (short runs are noisy); recall is from the first pass.
func measure(idx *ann.Index, queries [][]float32, gt [][]int32, k, ef int) benchPoint {
	hits, runs := 0, 0
	start := time.Now()
	for runs == 0 || time.Since(start) < time.Second {
		for i, q := range queries {
			res := idx.Search(q, k, ef, nil)
			if runs > 0 {
				continue
			}
			for _, r := range res {
				if slices.Contains(gt[i], int32(r.ID)) {
					hits++
				}
			}
		}
		runs++
	}
	secs := time.Since(start).Seconds()
	return benchPoint{ef: ef, recall: float64(hits) / float64(len(queries)*k), qps: float64(runs*len(queries)) / secs}
}

// groundTruth is the exact top k of each query, by brute force on every core.
func groundTruth(base, queries [][]float32, k int) [][]int32 {
	gt := make([][]int32, len(queries))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for qi := range next {
				type sc struct {
					id int32
					s  float32
				}
				top := make([]sc, 0, k+1)
				for i, v := range base {
					s := vek32.Dot(queries[qi], v)
					if len(top) < k || s > top[len(top)-1].s {
						top = append(top, sc{int32(i), s})
						slices.SortFunc(top, func(a, b sc) int {
							if a.s > b.s {
								return -1
							}
							return 1
						})
						top = top[:min(k, len(top))]
					}
				}
				ids := make([]int32, len(top))
				for i, t := range top {
					ids[i] = t.id
				}
				gt[qi] = ids
			}
		}()
	}
	for i := range queries {
		next <- i
	}
	close(next)
	wg.Wait()
	return gt
}

func writeBenchFiles(dir string, base, queries [][]float32, gt [][]int32, dims, k int) error {
	write := func(name string, fn func(w *bufio.Writer)) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		fn(w)
		if err := w.Flush(); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}
	vecs := func(vs [][]float32) func(*bufio.Writer) {
		return func(w *bufio.Writer) {
			for _, v := range vs {
				_ = le.Write(w, le.LittleEndian, v)
			}
		}
	}
	meta, _ := json.Marshal(map[string]int{"n": len(base), "queries": len(queries), "dims": dims, "k": k})
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), meta, 0o644); err != nil {
		return err
	}
	if err := write("base.f32", vecs(base)); err != nil {
		return err
	}
	if err := write("queries.f32", vecs(queries)); err != nil {
		return err
	}
	return write("gt.i32", func(w *bufio.Writer) {
		for _, ids := range gt {
			_ = le.Write(w, le.LittleEndian, ids)
		}
	})
}

// runPeer runs the hnswlib script and reads its JSON lines.
func runPeer(ctx context.Context, python, script, dir string, m, efc int, efs string, threads int) (benchRow, error) {
	cmd := exec.CommandContext(ctx, python, script, dir, strconv.Itoa(m), strconv.Itoa(efc), efs, strconv.Itoa(threads))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return benchRow{}, err
	}
	row := benchRow{name: "hnswlib (Debian python3-hnswlib)"}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var r struct {
			EF         int     `json:"ef"`
			Recall     float64 `json:"recall"`
			QPS        float64 `json:"qps"`
			Build      float64 `json:"build_seconds"`
			IndexMiB   float64 `json:"index_mib"`
			PeakRSSMiB float64 `json:"peak_rss_mib"`
			Reload     float64 `json:"reload_seconds"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return row, fmt.Errorf("peer output %q: %w", line, err)
		}
		switch {
		case r.EF > 0:
			row.points = append(row.points, benchPoint{ef: r.EF, recall: r.Recall, qps: r.QPS})
		case r.Build > 0:
			row.build, row.indexMiB, row.peakRSS = r.Build, r.IndexMiB, r.PeakRSSMiB
		case r.Reload > 0:
			row.reload = r.Reload
		}
	}
	return row, nil
}

func printBench(w io.Writer, rows []benchRow, rawMiB float64, efs []int) {
	fmt.Fprintf(w, "%-32s %8s %11s %9s %10s %12s\n", "", "build s", "index MiB", "x raw", "reload s", "peak RSS")
	for _, r := range rows {
		fmt.Fprintf(w, "%-32s %8.1f %11.1f %8.2fx %10.3f %8.0f MiB\n", r.name, r.build, r.indexMiB, r.indexMiB/rawMiB, r.reload, r.peakRSS)
	}
	fmt.Fprintf(w, "raw float32 vectors: %.1f MiB (int8: codes and graph in memory, vectors memory-mapped for rescoring)\n\n", rawMiB)
	// With all three rows the last is the peer: each of ours is also given as a ratio of its QPS.
	compare := len(rows) == 3
	fmt.Fprintf(w, "%5s", "ef")
	for _, r := range rows {
		fmt.Fprintf(w, "  %26s", r.shortName()+" recall / QPS")
	}
	if compare {
		fmt.Fprintf(w, "  %13s %13s", "float/hnswlib", "int8/hnswlib")
	}
	fmt.Fprintln(w)
	for i, ef := range efs {
		fmt.Fprintf(w, "%5d", ef)
		for _, r := range rows {
			if i < len(r.points) {
				fmt.Fprintf(w, "  %17.4f / %6.0f", r.points[i].recall, r.points[i].qps)
			}
		}
		if compare && i < len(rows[2].points) {
			p := rows[2].points[i].qps
			fmt.Fprintf(w, "  %12.2fx %12.2fx", rows[0].points[i].qps/p, rows[1].points[i].qps/p)
		}
		fmt.Fprintln(w)
	}
	// The goal is stated at equal recall, not equal ef: read each curve at recall 0.95.
	const target = 0.95
	fmt.Fprintf(w, "\nQPS at recall@k %.2f (interpolated between ef points):", target)
	var peerQPS float64
	if compare {
		peerQPS, _ = qpsAtRecall(rows[2].points, target)
	}
	for _, r := range rows {
		q, ok := qpsAtRecall(r.points, target)
		name := r.shortName()
		switch {
		case !ok:
			fmt.Fprintf(w, "  %s not reached;", name)
		case compare && peerQPS > 0 && r.name != rows[2].name:
			fmt.Fprintf(w, "  %s %.0f (%.2fx);", name, q, q/peerQPS)
		default:
			fmt.Fprintf(w, "  %s %.0f;", name, q)
		}
	}
	fmt.Fprintln(w)
}

// qpsAtRecall reads a recall/QPS curve (points in rising ef) at the given recall, interpolating
// linearly between the two points around it; false when no point reaches it.
func qpsAtRecall(points []benchPoint, recall float64) (float64, bool) {
	for i, p := range points {
		if p.recall < recall {
			continue
		}
		if i == 0 {
			return p.qps, true
		}
		prev := points[i-1]
		if p.recall == prev.recall {
			return p.qps, true
		}
		t := (recall - prev.recall) / (p.recall - prev.recall)
		return prev.qps + t*(p.qps-prev.qps), true
	}
	return 0, false
}

// peakRSSMiB is this process's peak resident memory.
func peakRSSMiB() float64 { return procStatusMiB("VmHWM:") }

// procStatusMiB reads a memory field of /proc/self/status (0 where there is none).
func procStatusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
