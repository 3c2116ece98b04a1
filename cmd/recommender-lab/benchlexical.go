package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
)

const benchLexicalHelp = `
Benchmarks lexical search alone (BM25 over the embedded store's postings, no embedding, no gRPC)
on the papers of --papers, held in the embedded store at --data-dir (filled from the file
first when empty; kept for the next run). --queries papers spread evenly over the store are
the queries: as seeds (the stored paper's terms, the paper itself excluded) and as text (its
title). Each runs on one thread, k results, twice in the same run: scoring every posting (as
the service does), then pruned by MaxScore, each time once untimed before the timed pass (a store just
opened reads postings and records from disk); it prints p50, p99 and queries/s for each and
checks that both gave the same papers and scores. With --python, the same title queries go to tantivy (the
Rust search library, through its Python package: pip install tantivy==0.27.0) over the same
papers indexed into --peer-dir, in one segment, weighed and analysed as ours as far as its API
allows (one field of the title twice and the abstract; words holding a letter, lower-cased, our
stop words, English stemming; ours also scores adjacent pairs of words, which tantivy does
not), warmed up like ours, and
timed over the same work (parsing and searching; its ids are read after the timer, as our
search returns ids): its latency, queries/s, how many of its top k are ours, and our queries/s
over its, by the scoring the service uses (every posting).`

func runBenchLexical(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("bench-lexical", "--papers FILE --data-dir DIR [flags]", benchLexicalHelp, stderr)
	papersFile := fs.String("papers", "", "JSON-lines papers (plain or .gz), e.g. from recommender-lab synth")
	dir := fs.String("data-dir", "", "embedded store holding those papers (filled from --papers when empty)")
	nq := fs.Int("queries", 1000, "queries of each kind")
	k := fs.Int("k", 10, "results per query")
	python := fs.String("python", "", "Python with the tantivy package; empty: no peer")
	script := fs.String("peer-script", "scripts/tantivy_bench.py", "the tantivy side")
	peerDir := fs.String("peer-dir", "", "where tantivy keeps its index (default: beside --data-dir, DIR.tantivy)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *papersFile == "" || *dir == "" {
		return cli.UsageError{Msg: "give --papers and --data-dir"}
	}
	if *nq < 1 || *k < 1 {
		return cli.UsageError{Msg: "--queries and --k must be positive"}
	}
	if *peerDir == "" {
		*peerDir = filepath.Clean(*dir) + ".tantivy"
	}
	progress := func(what string) { fmt.Fprintf(stderr, "%s %s\n", time.Now().Format(time.TimeOnly), what) }

	var queries []*recommenderv1.Paper
	var rows []lexRow
	for _, exhaustive := range []bool{true, false} {
		progress(fmt.Sprintf("opening the store (score every posting: %v)", exhaustive))
		st, err := embedded.Open(ctx, embedded.Options{Dir: *dir, PruneLexical: !exhaustive})
		if err != nil {
			return err
		}
		err = func() error {
			stats, err := st.Stats(ctx)
			if err != nil {
				return err
			}
			if stats.PaperCount == 0 {
				progress("filling the store from " + *papersFile)
				start := time.Now()
				if err := fillLexical(ctx, st, *papersFile); err != nil {
					return err
				}
				if stats, err = st.Stats(ctx); err != nil {
					return err
				}
				secs := time.Since(start).Seconds()
				fmt.Fprintf(stdout, "filled the store with %d papers in %.1fs (%s papers/s: read, analysed and written in batches of 1,000, one core analysing)\n",
					stats.PaperCount, secs, cli.Rate(float64(stats.PaperCount)/secs))
			}
			if queries == nil {
				if queries, err = pickQueries(*papersFile, int(stats.PaperCount), *nq); err != nil {
					return err
				}
				progress(fmt.Sprintf("%d papers in the store; %d queries", stats.PaperCount, len(queries)))
			}
			name := "ours, pruned"
			if exhaustive {
				name = "ours, every posting"
			}
			for _, kind := range []string{"seed", "title"} {
				progress(name + ": " + kind)
				// Once untimed: the store just opened reads postings and records from disk at
				// first, and the first engine would pay for both.
				if _, err := runLexical(ctx, st, queries, kind, *k); err != nil {
					return err
				}
				r, err := runLexical(ctx, st, queries, kind, *k)
				if err != nil {
					return err
				}
				r.engine = name
				rows = append(rows, r)
			}
			debug.FreeOSMemory() // the heap of the run before, returned: RSS is this store's
			fmt.Fprintf(stdout, "%s: RSS after the queries %.0f MiB\n", name, procStatusMiB("VmRSS:"))
			return nil
		}()
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if *python != "" {
		progress("tantivy: indexing (once) and querying")
		r, err := runTantivy(ctx, *python, *script, *papersFile, *peerDir, queries, *k)
		if err != nil {
			return fmt.Errorf("tantivy: %w", err)
		}
		rows = append(rows, r)
	}
	printLexical(stdout, rows, *k)
	return nil
}

// lexRow is one engine's run of one kind of query.
type lexRow struct {
	engine, kind string
	lat          []time.Duration
	ids          [][]string
	scores       [][]float32
	build        float64       // seconds to index, peer only
	cpu          time.Duration // the process's CPU time (every thread) over the timed queries
}

// processCPU is the CPU time the process has used so far, user and system, every thread.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r lexRow) cpuPerQuery() time.Duration { return r.cpu / time.Duration(max(len(r.lat), 1)) }

func (r lexRow) qps() float64 {
	var total time.Duration
	for _, d := range r.lat {
		total += d
	}
	return float64(len(r.lat)) / total.Seconds()
}

// fillLexical writes the papers of a file into the store, lexical only, in batches.
func fillLexical(ctx context.Context, st store.Store, path string) error {
	return eachPaper(path, func(batch []*recommenderv1.Paper) error {
		ps := make([]store.Paper, len(batch))
		for i, p := range batch {
			ps[i] = store.Paper{ID: p.GetId(), Title: p.GetTitle(), Abstract: p.GetAbstract(), Authors: p.GetAuthors(),
				Categories: p.GetCategories(), Topics: p.GetTopics(), Year: p.GetYear(), Lexical: lexical.Document(p.GetTitle(), p.GetAbstract())}
		}
		_, err := st.Upsert(ctx, ps)
		return err
	})
}

// eachPaper reads a JSON-lines file of papers (plain or gzip) in batches of 1,000.
func eachPaper(path string, fn func([]*recommenderv1.Paper) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ar, err := arxiv.NewReader(f) // plain or gzip, as it finds
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var batch []*recommenderv1.Paper
	for {
		p, err := ar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if batch = append(batch, p); len(batch) == 1000 {
			if err := fn(batch); err != nil {
				return err
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		return fn(batch)
	}
	return nil
}

// pickQueries takes n papers spread evenly over the file's first total.
func pickQueries(path string, total, n int) ([]*recommenderv1.Paper, error) {
	n = min(n, total)
	var out []*recommenderv1.Paper
	at := 0
	err := eachPaper(path, func(batch []*recommenderv1.Paper) error {
		for _, p := range batch {
			if len(out) < n && at == len(out)*total/n {
				out = append(out, p)
			}
			at++
		}
		return nil
	})
	if err == nil && len(out) < n {
		err = fmt.Errorf("%s holds %d papers, the store %d", path, at, total)
	}
	return out, err
}

func runLexical(ctx context.Context, st store.Store, queries []*recommenderv1.Paper, kind string, k int) (lexRow, error) {
	r := lexRow{kind: kind}
	for _, p := range queries {
		q := store.Query{Limit: k}
		if kind == "seed" {
			stored, err := st.Get(ctx, []string{p.GetId()})
			if err != nil {
				return r, err
			}
			q.Lexical = lexical.SeedQuery(stored[0].Lexical)
			q.Filter.ExcludeIDs = []string{p.GetId()}
		}
		start, cpu := time.Now(), processCPU()
		if kind == "title" { // analysing the text is part of a text query
			q.Lexical = lexical.Query(p.GetTitle())
		}
		lists, err := st.Search(ctx, q)
		if err != nil {
			return r, err
		}
		r.lat = append(r.lat, time.Since(start))
		r.cpu += processCPU() - cpu
		ids, scores := make([]string, len(lists.Lexical)), make([]float32, len(lists.Lexical))
		for i, h := range lists.Lexical {
			ids[i], scores[i] = h.ID, h.Score
		}
		r.ids, r.scores = append(r.ids, ids), append(r.scores, scores)
	}
	return r, nil
}

// runTantivy runs the peer script on the title queries; it prints one JSON object per line:
// the indexing time, then each query's time and ids.
func runTantivy(ctx context.Context, python, script, papers, dir string, queries []*recommenderv1.Paper, k int) (lexRow, error) {
	qf, err := os.CreateTemp("", "bench-lexical-queries")
	if err != nil {
		return lexRow{}, err
	}
	defer os.Remove(qf.Name())
	enc := json.NewEncoder(qf)
	for _, p := range queries {
		if err := enc.Encode(map[string]string{"id": p.GetId(), "text": p.GetTitle()}); err != nil {
			return lexRow{}, err
		}
	}
	if err := qf.Close(); err != nil {
		return lexRow{}, err
	}
	sw, err := os.CreateTemp("", "bench-lexical-stopwords")
	if err != nil {
		return lexRow{}, err
	}
	defer os.Remove(sw.Name())
	if _, err := io.WriteString(sw, strings.Join(lexical.StopWords(), "\n")+"\n"); err != nil {
		return lexRow{}, err
	}
	if err := sw.Close(); err != nil {
		return lexRow{}, err
	}
	cmd := exec.CommandContext(ctx, python, script, papers, dir, qf.Name(), strconv.Itoa(k), sw.Name())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return lexRow{}, err
	}
	r := lexRow{engine: "tantivy 0.27.0", kind: "title"}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var v struct {
			Build   float64  `json:"build_seconds"`
			Seconds float64  `json:"seconds"`
			CPU     float64  `json:"cpu_seconds"`
			IDs     []string `json:"ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return r, fmt.Errorf("peer output %q: %w", sc.Text(), err)
		}
		switch {
		case v.IDs != nil:
			r.lat = append(r.lat, time.Duration(v.Seconds*float64(time.Second)))
			r.ids = append(r.ids, v.IDs)
			r.cpu += time.Duration(v.CPU * float64(time.Second))
		default:
			r.build = v.Build
		}
	}
	if len(r.ids) != len(queries) {
		return r, fmt.Errorf("%d answers to %d queries", len(r.ids), len(queries))
	}
	return r, nil
}

func printLexical(w io.Writer, rows []lexRow, k int) {
	fmt.Fprintf(w, "%-6s %-22s %10s %10s %10s %12s\n", "query", "engine", "p50", "p99", "queries/s", "CPU/query")
	for _, kind := range []string{"seed", "title"} {
		for _, r := range rows {
			if r.kind != kind {
				continue
			}
			lat := slices.Clone(r.lat)
			slices.Sort(lat)
			fmt.Fprintf(w, "%-6s %-22s %10s %10s %10.0f %12s\n", kind, r.engine, round(lat[len(lat)/2]), round(lat[len(lat)*99/100]), r.qps(), round(r.cpuPerQuery()))
		}
	}
	find := func(engine, kind string) *lexRow {
		for i := range rows {
			if rows[i].engine == engine && rows[i].kind == kind {
				return &rows[i]
			}
		}
		return nil
	}
	for _, kind := range []string{"seed", "title"} {
		all, pruned := find("ours, every posting", kind), find("ours, pruned", kind)
		same := 0
		for i := range all.ids {
			if slices.Equal(all.ids[i], pruned.ids[i]) && slices.Equal(all.scores[i], pruned.scores[i]) {
				same++
			}
		}
		fmt.Fprintf(w, "%s: pruned and every posting gave the same papers and scores for %d of %d queries; pruned %.1fx the queries/s\n",
			kind, same, len(all.ids), pruned.qps()/all.qps())
	}
	if peer := find("tantivy 0.27.0", "title"); peer != nil {
		ours := find("ours, every posting", "title") // the service's scoring
		shared, total := 0, 0
		for i := range peer.ids {
			for _, id := range peer.ids[i] {
				if slices.Contains(ours.ids[i], id) {
					shared++
				}
			}
			total += len(peer.ids[i])
		}
		fmt.Fprintf(w, "title: tantivy indexed the papers in %.1fs (kept in its folder; 0 when reused); of its top %d, %.1f%% are in ours; "+
			"ours (every posting, as the service scores) %.2fx tantivy's queries/s, %.2fx by CPU time a query\n",
			peer.build, k, 100*float64(shared)/float64(max(total, 1)), ours.qps()/peer.qps(), float64(peer.cpuPerQuery())/float64(ours.cpuPerQuery()))
	}
}
