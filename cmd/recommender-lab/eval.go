package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/arxiv"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/eval"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store"
)

const evalHelp = `
Measures recommendation quality through the gRPC API, on a server it starts on loopback with a
store of its own: a fresh embedded store, or with --store qdrant the Qdrant collections
eval_csfcube and eval_arxiv (created if missing, and kept: a later run finds the papers there and
skips the ingest):

- CSFCube ("papers like this one", expert-graded): ingests corpus.jsonl, ranks each query row's
  candidate pool by similarity to the query paper (Recommend with the query paper as the seed and
  the pool as candidate_paper_ids), and prints NDCG%20 and NDCG@20 on the dev split for each
  retrieval mode available: lexical always, dense and hybrid when an embedding API is configured
  (the EMBEDDING_* variables or flags of serve). The ranking of every row, dev and heldout, is
  written as JSON lines {"query_id","facet","ranked"} (hybrid when available, else lexical).
- arXiv sample: topic precision@10 in each mode, each paper as the only seed; and several seeds,
  over papers with one topic label: mix (two positives from topics A and B: the mean of
  min(#A, #B)/5 in the top 10; mix-bound, the same from each seed's own top 5), same-ret and
  other-ret (topic precision@10 with a negative seed of the positive's topic, or of another,
  over that of the positive alone) and demotion (of the positive's top 10 among the negative's
  20 nearest, the share that leaves the top 10), for each seed strategy; and the calibration of
  the relevance the service returns, on the 30% of seed papers it was not fitted on (expected
  calibration error and reliability curve). --calibrate fits it anew instead.

With an embedding model, ingesting takes a while (a CPU model embeds a few papers a second):
--data-dir keeps both stores, so later runs, e.g. tuning the hybrid fusion with the --fusion-*
flags, skip it.

--strategy runs ranking experiments instead: each named strategy ranks CSFCube's pools and the
sample (every paper as the only seed) outside the service, from vectors fetched through the
embedding API (sentences, queries: embedded on first use, then the API's cache answers) and the
service's own lists; the table gives each one's dev NDCG with its paired standard error against
today's default, its topic precision, and its dev NDCG%20 by facet. Parameters follow the name
after colons: prf:10:0.5 is feedback from the 10 nearest papers at beta 0.5.`

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("eval", "[flags]", evalHelp, stderr)
	csfcube := fs.String("csfcube", "../shared/eval/csfcube", "folder of the CSFCube collection (corpus.jsonl, pools.jsonl, qrels-dev.tsv); empty: skip")
	sample := fs.String("arxiv", "../shared/data/arxiv-cs-sample.jsonl.gz", "arXiv sample with topic labels; empty: skip")
	out := fs.String("out", "csfcube-rankings.jsonl", "where to write the rankings of every CSFCube row")
	trials := fs.Int("multi-seed-trials", 200, "arXiv sample: trials of each multi-seed case")
	calibrate := fs.Bool("calibrate", false, "arXiv sample: fit the relevance calibration of each mode on 70% of the seed papers and print it "+
		"(recommend.Calibrations), instead of the other measures")
	examplesOut := fs.String("calibration-examples", "", "with --calibrate: also write the examples it fits on to this file, as JSON lines {kind, mode, features, relevant}")
	relevanceOnly := fs.Bool("relevance-only", false, "arXiv sample: print only the calibration of the relevance (by request kind, and for text of random words)")
	var sf cli.StoreFlags
	sf.RegisterEval(fs, "keep the embedded evaluation stores here (csfcube/, arxiv/) and reuse them on the next run, "+
		"which then skips the ingest and its embedding calls; empty: fresh temporary stores")
	var ef cli.EmbeddingFlags
	ef.Register(fs)
	f := rank.DefaultFusion
	fs.StringVar((*string)(&f.Method), "fusion-method", string(f.Method), "hybrid: rrf (ranks) or dbsf (scores)")
	fs.IntVar(&f.K, "fusion-k", f.K, "hybrid: the RRF constant")
	fs.Var(float32Flag{&f.LexicalWeight}, "fusion-lexical-weight", "hybrid: the lexical list's RRF weight")
	fs.Var(float32Flag{&f.DenseWeight}, "fusion-dense-weight", "hybrid: the dense list's RRF weight")
	fs.IntVar(&f.Depth, "fusion-depth", f.Depth, "hybrid: candidates each list contributes at least")
	authorTieBreak := fs.Bool("author-tie-break", false, "order papers the ranking scores equally by the authors they share with the seeds (off in the service)")
	seedTerms := seedTermsFlag(fs)
	strategies := fs.String("strategy", "", "ranking experiments: comma-separated strategies ("+strings.Join(eval.Strategies(), ", ")+
		"); prints CSFCube's dev NDCG and the sample's topic P@10 of each beside today's, writes each one's rankings "+
		"beside --out (NAME inserted before the extension), and skips the other measures")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := errors.Join(ef.ApplyEnv(), sf.ApplyEnv()); err != nil {
		return err
	}
	if f.K < 1 || f.Depth < 1 || f.LexicalWeight < 0 || f.DenseWeight < 0 {
		return cli.UsageError{Msg: "--fusion-k and --fusion-depth must be at least 1, the weights at least 0"}
	}
	svcOpts := []app.Option{app.WithPipeline(func(e *recommend.Engine) {
		e.Fusion, e.AuthorTieBreak = f, *authorTieBreak
		seedTerms(e)
	})}
	embCfg, useEmbedder, err := ef.Config()
	if err != nil {
		return err
	}
	var emb embed.Embedder
	modes := []recommenderv1.RetrievalMode{recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL}
	if useEmbedder {
		if emb, err = embed.New(embCfg); err != nil {
			return err
		}
		modes = append(modes, recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID)
	}
	if *strategies != "" {
		return runStrategies(ctx, stdout, stderr, strings.Split(*strategies, ","), *csfcube, *sample, *out, &sf, emb, svcOpts)
	}
	csfcubeExamples := map[recommenderv1.RetrievalMode][]eval.Example{} // dev rows, for --calibrate
	if *csfcube != "" {
		c, err := eval.LoadCSFCube(*csfcube)
		if err != nil {
			return fmt.Errorf("load CSFCube: %w", err)
		}
		fmt.Fprintf(stdout, "CSFCube: %d papers, %d query rows; NDCG on the dev split\n", len(c.Corpus), len(c.Pools))
		fmt.Fprintf(stdout, "  %-8s %8s %8s\n", "mode", "NDCG%20", "NDCG@20")
		var last []eval.Ranking
		err = withEvalStore(ctx, &sf, "csfcube", "eval_csfcube", emb, svcOpts, c.Corpus, func(r evalRun) error {
			for _, m := range modes {
				s, rankings, err := c.Evaluate(ctx, r.client, m)
				if err != nil {
					return err
				}
				ece, curve := eval.Reliability(s.Predictions, 10)
				fmt.Fprintf(stdout, "  %-8s %8.4f %8.4f   (%d dev rows; relevance ECE %.4f over %d judged results, relevant: graded 1 or more)\n",
					modeName(m), s.NDCGPct20, s.NDCG20, s.Rows, ece, len(s.Predictions))
				fmt.Fprintf(stdout, "           reliability (candidate lists): %s\n", reliabilityLine(curve))
				csfcubeExamples[m] = s.Examples
				last = rankings
			}
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "  reference (dev, NDCG%20): SPECTER 0.533, TF-IDF 0.548, BM25 0.542")
		if err := eval.WriteRankings(*out, last); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rankings of all %d rows (%s) written to %s\n", len(last), modeName(modes[len(modes)-1]), *out)
	}
	if *sample != "" {
		papers, err := arxiv.ReadFile(*sample)
		if err != nil {
			return err
		}
		err = withEvalStore(ctx, &sf, "arxiv", "eval_arxiv", emb, svcOpts, papers, func(r evalRun) error {
			if *calibrate {
				return fitCalibrations(ctx, stdout, r.client, papers, modes, csfcubeExamples, *examplesOut)
			}
			if *relevanceOnly {
				return printRelevance(ctx, stdout, r.client, papers, modes)
			}
			fmt.Fprintf(stdout, "arXiv sample: topic precision@10 over %d seed papers\n", len(papers))
			for _, m := range modes {
				p, err := eval.TopicPrecision(ctx, r.client, papers, m)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "  %-8s %8.4f\n", modeName(m), p)
			}
			if err := printRelevance(ctx, stdout, r.client, papers, modes); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "arXiv sample: several seeds (%d trials of single-topic papers, random seed %d)\n", *trials, multiSeedRandom)
			fmt.Fprintf(stdout, "  %-8s %-9s %8s %10s %10s %10s %10s\n", "mode", "strategy", "mix", "mix-bound", "same-ret", "demotion", "other-ret")
			for _, m := range modes {
				for _, st := range []recommenderv1.SeedStrategy{recommenderv1.SeedStrategy_SEED_STRATEGY_PER_SEED, recommenderv1.SeedStrategy_SEED_STRATEGY_CENTROID} {
					ms, err := eval.MultiSeedBench(ctx, r.client, papers, m, st, *trials, multiSeedRandom)
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "  %-8s %-9s %8.4f %10.4f %10.4f %10.4f %10.4f\n", modeName(m), strategyName(st), ms.Mix, ms.MixBound, ms.SameTopicRetention, ms.Demotion, ms.OtherTopicRetention)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// runStrategies measures each strategy and today's default on CSFCube's dev rows and the
// sample's topics, and writes each one's rankings of every CSFCube row.
func runStrategies(ctx context.Context, stdout, stderr io.Writer, names []string, csfcube, sample, out string,
	sf *cli.StoreFlags, emb embed.Embedder, opts []app.Option) error {
	var list []eval.Strategy // today's first, once
	for _, n := range append([]string{"today"}, names...) {
		if n = strings.TrimSpace(n); n == "today" && len(list) > 0 {
			continue
		}
		s, err := eval.ParseStrategy(n)
		if err != nil {
			return cli.UsageError{Msg: err.Error()}
		}
		list = append(list, s)
	}
	type figures struct {
		rows eval.RowScores // CSFCube's dev rows
		p10  float64
	}
	got := make([]figures, len(list))
	// progress reports a long embedding (a first run's sentences) at every tenth of the way.
	progress := func(what string) func(done, total int) {
		shown := 0
		return func(done, total int) {
			if total >= 10000 && done*10/total > shown {
				shown = done * 10 / total
				fmt.Fprintf(stderr, "embedding %s: %d of %d texts\n", what, done, total)
			}
		}
	}
	if csfcube != "" {
		c, err := eval.LoadCSFCube(csfcube)
		if err != nil {
			return fmt.Errorf("load CSFCube: %w", err)
		}
		err = withEvalStore(ctx, sf, "csfcube", "eval_csfcube", emb, opts, c.Corpus, func(r evalRun) error {
			lab := eval.NewLab(r.client, emb, c.Corpus)
			lab.Progress = progress("CSFCube")
			for i, s := range list {
				rows, rankings, err := c.EvaluateStrategy(ctx, lab, s)
				if err != nil {
					return err
				}
				got[i].rows = rows
				if err := eval.WriteRankings(strategyOut(out, s.Name), rankings); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if sample != "" {
		papers, err := arxiv.ReadFile(sample)
		if err != nil {
			return err
		}
		err = withEvalStore(ctx, sf, "arxiv", "eval_arxiv", emb, opts, papers, func(r evalRun) error {
			lab := eval.NewLab(r.client, emb, papers)
			lab.Progress = progress("the arXiv sample")
			for i, s := range list {
				if got[i].p10, err = eval.StrategyTopicPrecision(ctx, lab, s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%-28s %8s %8s %10s   %s\n", "strategy", "NDCG%20", "NDCG@20", "topic P@10", "vs today: NDCG%20 (paired standard error), P@10")
	figure := func(x float64, measured bool) string {
		if !measured {
			return "-"
		}
		return fmt.Sprintf("%.4f", x)
	}
	for i, s := range list {
		pct20, at20 := got[i].rows.Mean()
		vsNDCG, vsP10 := "-", "-"
		if csfcube != "" {
			d, se := got[i].rows.PairedDifference(got[0].rows)
			vsNDCG = fmt.Sprintf("%+.4f (%.4f)", d, se)
		}
		if sample != "" {
			vsP10 = fmt.Sprintf("%+.4f", got[i].p10-got[0].p10)
		}
		fmt.Fprintf(stdout, "%-28s %8s %8s %10s   %s, %s\n", s.Name, figure(pct20, csfcube != ""), figure(at20, csfcube != ""),
			figure(got[i].p10, sample != ""), vsNDCG, vsP10)
	}
	if csfcube != "" {
		fmt.Fprintf(stdout, "CSFCube dev NDCG%%20 by facet (%d background, %d method, %d result rows):\n",
			facetRows(got[0].rows, "background"), facetRows(got[0].rows, "method"), facetRows(got[0].rows, "result"))
		for i, s := range list {
			fmt.Fprintf(stdout, "  %-26s %.4f %.4f %.4f\n", s.Name, got[i].rows.FacetMean("background"), got[i].rows.FacetMean("method"), got[i].rows.FacetMean("result"))
		}
	}
	for _, s := range list {
		fmt.Fprintf(stdout, "  %s: %s\n", s.Name, s.About)
	}
	fmt.Fprintf(stdout, "(CSFCube: dev rows; rankings of all rows in %s)\n", strategyOut(out, "NAME"))
	return nil
}

func facetRows(r eval.RowScores, facet string) int {
	n := 0
	for _, f := range r.Facets {
		if f == facet {
			n++
		}
	}
	return n
}

// strategyOut is where a strategy's rankings go: out with the name before its extension.
func strategyOut(out, name string) string {
	ext := filepath.Ext(out)
	safe := strings.NewReplacer(":", "_", "/", "_").Replace(name)
	return strings.TrimSuffix(out, ext) + "-" + safe + ext
}

// fitCalibrations fits the relevance calibration of each request kind and mode on the seed
// papers not held back (and, for candidate lists, CSFCube's dev rows) and prints them as the Go
// table recommend.Calibrations holds.
func fitCalibrations(ctx context.Context, stdout io.Writer, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper,
	modes []recommenderv1.RetrievalMode, csfcube map[recommenderv1.RetrievalMode][]eval.Example, examplesOut string) error {
	var dump *json.Encoder
	if examplesOut != "" {
		f, err := os.Create(examplesOut)
		if err != nil {
			return err
		}
		defer f.Close()
		dump = json.NewEncoder(f)
	}
	fmt.Fprintln(stdout, "relevance calibrations, fitted on 70% of the sample's seed papers and CSFCube's dev rows (recommend.Calibrations):")
	for _, k := range recommend.Kinds {
		fmt.Fprintf(stdout, "\tKind%s: {\n", strings.ToUpper(k.String()[:1])+k.String()[1:])
		for _, m := range modes {
			ex, _, err := eval.KindExamples(ctx, c, papers, m, k, false)
			if err != nil {
				return err
			}
			if k == recommend.KindCandidates && len(csfcube[m]) > 0 {
				// Each collection weighs alike: CSFCube's pools (candidates another system
				// retrieved, graded by experts) are a tenth as many as the sample's lists.
				w := float64(len(ex)) / float64(len(csfcube[m]))
				for _, e := range csfcube[m] {
					e.Weight = w
					ex = append(ex, e)
				}
			}
			for _, e := range ex {
				if dump != nil {
					if err := dump.Encode(map[string]any{"kind": k.String(), "mode": modeName(m), "features": e.Features, "relevant": e.Relevant, "drawn": e.Drawn}); err != nil {
						return err
					}
				}
			}
			if k == recommend.KindText {
				// Words drawn at random, none relevant to anything (the first 100 draws are
				// printRelevance's check, these the next 200).
				rw, err := eval.RandomWordsExamples(ctx, c, eval.RandomWords(papers, 300)[100:], m, 5)
				if err != nil {
					return err
				}
				for _, e := range rw {
					if dump != nil {
						if err := dump.Encode(map[string]any{"kind": "random", "mode": modeName(m), "features": e.Features, "relevant": false, "drawn": false}); err != nil {
							return err
						}
					}
				}
				ex = append(ex, rw...)
			}
			w := eval.FitLogistic(ex)
			var terms []string
			for _, x := range w {
				terms = append(terms, strconv.FormatFloat(x, 'f', 4, 64))
			}
			name := modeName(m)
			fmt.Fprintf(stdout, "\t\tMode%s: {%s}, // %d results\n", strings.ToUpper(name[:1])+name[1:], strings.Join(terms, ", "), len(ex))
		}
		fmt.Fprintln(stdout, "\t},")
	}
	return nil
}

// printRelevance prints the calibration of the relevance by request kind and mode on the
// held-back seed papers, and the relevance given to text of random words.
func printRelevance(ctx context.Context, stdout io.Writer, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, modes []recommenderv1.RetrievalMode) error {
	fmt.Fprintf(stdout, "arXiv sample: relevance calibration by request kind, on the held-back 30%% of the seed papers (up to %d requests a kind; "+
		"top %d of each, every candidate of a list of %d; relevant: shares a topic with a seed)\n", eval.KindLimit, eval.CalibrationDepth, 40)
	for _, m := range modes {
		for _, k := range recommend.Kinds {
			_, preds, err := eval.KindExamples(ctx, c, papers, m, k, true)
			if err != nil {
				return err
			}
			ece, curve := eval.Reliability(preds, 10)
			fmt.Fprintf(stdout, "  %-8s %-10s ECE %.4f over %5d results; reliability (predicted -> observed, count): %s\n",
				modeName(m), k, ece, len(preds), reliabilityLine(curve))
		}
	}
	queries := eval.RandomWords(papers, 100)
	fmt.Fprintf(stdout, "arXiv sample: relevance of the first result for %d texts of five random words (e.g. %q)\n", len(queries), queries[0])
	for _, m := range modes {
		mean, highest, err := eval.RandomWordsRelevance(ctx, c, queries, m)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  %-8s mean %.3f, highest %.3f\n", modeName(m), mean, highest)
	}
	return nil
}

// reliabilityLine prints a reliability curve: each bin's mean predicted relevance, the share
// observed relevant, and its count.
func reliabilityLine(curve []eval.Bin) string {
	var b strings.Builder
	for _, bin := range curve {
		if bin.N > 0 {
			fmt.Fprintf(&b, " %.2f->%.2f (%d)", bin.MeanP, bin.Observed, bin.N)
		}
	}
	return strings.TrimSpace(b.String())
}

// strategyName is a seed strategy as the eval tables name it: "per-seed", "centroid".
func strategyName(s recommenderv1.SeedStrategy) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "SEED_STRATEGY_")), "_", "-")
}

// multiSeedRandom seeds the draws of the multi-seed trials, so that runs compare.
const multiSeedRandom = 1

func modeName(m recommenderv1.RetrievalMode) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "RETRIEVAL_MODE_"))
}

// evalRun is what withEvalStore hands its function: a client of the service on loopback, the
// store it serves, and whether this run ingested the papers (else they were there already).
type evalRun struct {
	client   recommenderv1.RecommenderServiceClient
	store    store.Store
	app      *app.App
	ingested bool
}

// withEvalStore serves a store of its own on loopback (see storeFlags.openEval), ingests
// papers unless it holds as many already (a rerun skips the ingest and its embedding calls),
// and runs fn against it.
func withEvalStore(ctx context.Context, sf *cli.StoreFlags, dir, collection string, emb embed.Embedder, opts []app.Option, papers []*recommenderv1.Paper, fn func(evalRun) error) error {
	st, cleanup, err := sf.OpenEval(ctx, dir, collection)
	if err != nil {
		return err
	}
	defer cleanup()
	a, err := app.New(ctx, st, emb, opts...)
	if err != nil {
		return err
	}
	lb, err := server.StartLoopback(a)
	if err != nil {
		return err
	}
	defer lb.Close()
	client := recommenderv1.NewRecommenderServiceClient(lb.Conn)
	stats, err := st.Stats(ctx)
	if err != nil {
		return err
	}
	switch stats.PaperCount {
	case int64(len(papers)):
		return fn(evalRun{client: client, store: st, app: a})
	case 0:
	default:
		fix := "use another --data-dir"
		if sf.Backend == "qdrant" {
			fix = "delete the Qdrant collection " + collection
		}
		return fmt.Errorf("the store holds %d papers, not the %d of this run (it is kept between runs): %s",
			stats.PaperCount, len(papers), fix)
	}
	stream, err := client.IngestPapers(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < len(papers); i += 500 {
		if err := stream.Send(&recommenderv1.IngestPapersRequest{Papers: papers[i:min(i+500, len(papers))]}); err != nil {
			return err
		}
	}
	if resp, err := stream.CloseAndRecv(); err != nil {
		return cli.RPCError(err)
	} else if resp.GetRejected() > 0 {
		return fmt.Errorf("%d papers rejected, first: %v", resp.GetRejected(), resp.GetRejections()[0])
	}
	return fn(evalRun{client: client, store: st, app: a, ingested: true})
}

// float32Flag is a flag.Value for a float32.
type float32Flag struct{ p *float32 }

func (f float32Flag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatFloat(float64(*f.p), 'g', -1, 32)
}

func (f float32Flag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 32)
	if err == nil {
		*f.p = float32(v)
	}
	return err
}

// seedTermsFlag registers --hybrid-seed-terms; the function it returns sets the engine's
// HybridSeedTerms when the flag was given.
func seedTermsFlag(fs *flag.FlagSet) func(*recommend.Engine) {
	n := fs.Int("hybrid-seed-terms", -1, "hybrid: search a seed's words by its N most informative terms; 0: every term; -1: the service's setting")
	return func(e *recommend.Engine) {
		if *n >= 0 {
			e.HybridSeedTerms = *n
		}
	}
}
