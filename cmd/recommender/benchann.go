package main

import (
	"bufio"
	"bytes"
	"context"
	le "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
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
)

const benchANNHelp = `
Benchmarks the approximate nearest-neighbour index against hnswlib on the same vectors in the
same run. It generates seeded, clustered unit vectors (and queries near them), computes the
exact top k of every query, writes everything as raw little-endian files the peer reads
(meta.json, base.f32, queries.f32, gt.i32), then for our index and for hnswlib (Debian's
python3-hnswlib, through scripts/hnswlib_bench.py) with the same M and ef_construction, built
and queried on one thread: build time, index memory, recall@k and queries/second for each ef,
and the time to reload a saved index.`

func runBenchANN(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench-ann", "[flags]", benchANNHelp, stderr)
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
	dir := fs.String("dir", "", "where to write the vectors (default: a temporary folder, removed after)")
	python := fs.String("python", "/usr/bin/python3", "Python with hnswlib and numpy; empty: skip the peer")
	peer := fs.String("peer-script", "scripts/hnswlib_bench.py", "the hnswlib side")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var efs []int
	for _, s := range strings.Split(*efList, ",") {
		e, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || e < *k {
			return usageError{fmt.Sprintf("--ef values must be whole numbers of at least k, got %q", s)}
		}
		efs = append(efs, e)
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
	}

	start := time.Now()
	base, queries := anntest.Clustered(*n, *nq, *dims, *clusters, float32(*noise), *seed)
	gt := groundTruth(base, queries, *k)
	if err := writeBenchFiles(*dir, base, queries, gt, *dims, *k); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vectors: %d x %d, %d clusters, noise %.2f, seed %d; %d queries, k %d; M %d, ef_construction %d; one thread\n",
		*n, *dims, *clusters, *noise, *seed, *nq, *k, *m, *efc)
	fmt.Fprintf(stdout, "(generated with exact ground truth in %.1fs, files in %s)\n\n", time.Since(start).Seconds(), *dir)

	// Ours.
	opts := ann.Options{M: *m, EfConstruction: *efc, Seed: *seed}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	idx := ann.New(opts)
	for _, v := range base {
		idx.Add(v)
	}
	build := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	graphMiB := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	rawMiB := float64(*n**dims*4) / (1 << 20)
	ours := benchRow{name: "ours (Go, internal/ann)", build: build.Seconds(), indexMiB: graphMiB}
	for _, ef := range efs {
		ours.points = append(ours.points, measure(idx, queries, gt, *k, ef))
	}
	var buf bytes.Buffer
	if err := idx.Save(&buf); err != nil {
		return err
	}
	start = time.Now()
	if _, err := ann.Load(bytes.NewReader(buf.Bytes()), opts, func(id uint32) []float32 { return base[id] }); err != nil {
		return err
	}
	ours.reload = time.Since(start).Seconds()
	ours.peakRSS = peakRSSMiB()

	rows := []benchRow{ours}
	if *python != "" {
		peerRow, err := runPeer(ctx, *python, *peer, *dir, *m, *efc, *efList)
		if err != nil {
			return fmt.Errorf("hnswlib: %w", err)
		}
		rows = append(rows, peerRow)
	}
	printBench(stdout, rows, rawMiB, efs)
	return nil
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

// measure runs every query once, one at a time, on this goroutine.
func measure(idx *ann.Index, queries [][]float32, gt [][]int32, k, ef int) benchPoint {
	hits := 0
	start := time.Now()
	for i, q := range queries {
		for _, r := range idx.Search(q, k, ef, nil) {
			if slices.Contains(gt[i], int32(r.ID)) {
				hits++
			}
		}
	}
	secs := time.Since(start).Seconds()
	return benchPoint{ef: ef, recall: float64(hits) / float64(len(queries)*k), qps: float64(len(queries)) / secs}
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
func runPeer(ctx context.Context, python, script, dir string, m, efc int, efs string) (benchRow, error) {
	cmd := exec.CommandContext(ctx, python, script, dir, strconv.Itoa(m), strconv.Itoa(efc), efs)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return benchRow{}, err
	}
	row := benchRow{name: "hnswlib (C++, Debian python3-hnswlib)"}
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
	fmt.Fprintf(w, "%-40s %9s %12s %9s %10s\n", "", "build s", "index MiB", "reload s", "peak RSS")
	for _, r := range rows {
		fmt.Fprintf(w, "%-40s %9.1f %12.1f %9.3f %8.0f MiB\n", r.name, r.build, r.indexMiB, r.reload, r.peakRSS)
	}
	fmt.Fprintf(w, "raw float32 vectors: %.1f MiB; ours in memory = vectors + graph = %.2fx raw\n\n",
		rawMiB, (rawMiB+rows[0].indexMiB)/rawMiB)
	fmt.Fprintf(w, "%5s  %12s %10s", "ef", "ours recall", "ours QPS")
	if len(rows) > 1 {
		fmt.Fprintf(w, "  %14s %12s  %9s", "hnswlib recall", "hnswlib QPS", "QPS ratio")
	}
	fmt.Fprintln(w)
	for i, ef := range efs {
		o := rows[0].points[i]
		fmt.Fprintf(w, "%5d  %12.4f %10.0f", ef, o.recall, o.qps)
		if len(rows) > 1 && i < len(rows[1].points) {
			p := rows[1].points[i]
			fmt.Fprintf(w, "  %14.4f %12.0f  %8.2fx", p.recall, p.qps, o.qps/p.qps)
		}
		fmt.Fprintln(w)
	}
}

// peakRSSMiB is this process's peak resident memory.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
