package server_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed/modeltest"
	"github.com/paperrec/recommender/internal/eval"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// paraphrases are queries written for this test, each describing one paper of the shared sample
// in other words: no query term (after the analyzer's stemming and stop words) is in the paper's
// title or abstract, which the test checks, so only meaning can find the paper.
var paraphrases = []struct{ target, query string }{
	{"1409.4842", "Google's 2014 winning image classifier made of parallel filters of several sizes"},
	{"2305.10601", "letting a chatbot try, assess and undo alternative lines of thinking, like when cracking puzzles"},
	{"1807.05981", "localising arousals, phases and brief bursts in overnight polysomnography with one detector"},
	{"1707.03080", "levels of self-governing machines doing procedures on patients without a doctor's hands"},
	{"2110.06877", "survey on finding where a person's elbows, knees and wrists appear in photos"},
	{"1906.02691", "a beginner's guide to VAEs"},
	{"2002.05202", "SwiGLU, GEGLU and bilinear layers replacing rectifiers inside T5"},
	{"1601.06759", "PixelRNN: row LSTMs that describe photos one colour intensity at a time"},
	{"quant-ph/0703105", "what qubit machines are"},
	{"1710.07876", "Wasserstein geometry for GMMs"},
}

// Semantic bars: of the 10 paraphrases, how many must have their paper in the top 10.
const minSemanticHits = 8

// TestParaphrasesFindTheirPaper ingests the shared sample (4,082 papers) through a real
// embedding model and asks for each paraphrase in every mode: DENSE and HYBRID must find most
// target papers in the top 10, LEXICAL (no shared word) fewer. The papers' vectors come from
// the shared recorded ones (../shared/data/e5-cache.sqlite, made by the pinned model) when
// present; then a fresh random draw of 64 of them and every query are embedded again live and
// must match (modeltest.Recorder.RequireLive), so a changed model or text still fails here.
func TestParaphrasesFindTheirPaper(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("ingests 4,082 papers through a real model; skipped with -short")
	}
	race.Skip(t)
	shared := testutil.SharedDir(t)
	papers := testutil.ReadPapers(t, filepath.Join(shared, "data", "arxiv-cs-sample.jsonl.gz"))
	byID := map[string]*recommenderv1.Paper{}
	for _, p := range papers {
		byID[p.GetId()] = p
	}
	for _, pp := range paraphrases {
		p := byID[pp.target]
		if p == nil {
			t.Fatalf("target %s is not in the sample", pp.target)
		}
		if shared := sharedTerms(pp.query, p); len(shared) > 0 {
			t.Fatalf("paraphrase of %s shares %v with the paper: not a paraphrase", pp.target, shared)
		}
	}
	var model *modeltest.Server
	if recorded := filepath.Join(shared, "data", "e5-cache.sqlite"); fileExists(recorded) {
		model = modeltest.StartRecorded(t, recorded)
	} else {
		t.Logf("no recorded vectors at %s: embedding all %d papers live (minutes)", recorded, len(papers))
		model = modeltest.Start(t)
	}
	emb := modeltest.Record(model.Client(t))
	srv := testutil.StartServerWith(t, testutil.Options{Embedder: emb})
	if resp := testutil.Ingest(t, srv.Client, papers); resp.GetRejected() > 0 {
		t.Fatalf("ingest rejected %d papers: %v", resp.GetRejected(), resp.GetRejections())
	}
	defer func() {
		emb.RequireLive(t, model, 64)
		st := model.Stats(t)
		t.Logf("model server: %d inputs from recorded vectors, %d embedded, %d embedded live to check", st.Cached, st.Embedded, st.Live)
	}()

	hits := map[recommenderv1.RetrievalMode]int{}
	modes := []recommenderv1.RetrievalMode{recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL,
		recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID}
	for _, pp := range paraphrases {
		var ranks []string
		for _, mode := range modes {
			resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: pp.query, Mode: mode, PageSize: 10})
			if err != nil {
				t.Fatalf("%v %q: %v", mode, pp.query, err)
			}
			r := slices.IndexFunc(resp.GetResults(), func(r *recommenderv1.Recommendation) bool { return r.GetPaper().GetId() == pp.target })
			if r >= 0 {
				hits[mode]++
			}
			ranks = append(ranks, modeRank(mode, r))
		}
		t.Logf("%-10s %s  %q", pp.target, strings.Join(ranks, " "), pp.query)
	}
	lex, dense, hybrid := hits[modes[0]], hits[modes[1]], hits[modes[2]]
	t.Logf("targets in the top 10 of %d: lexical %d, dense %d, hybrid %d", len(paraphrases), lex, dense, hybrid)
	if dense < minSemanticHits || hybrid < minSemanticHits {
		t.Errorf("dense %d, hybrid %d of %d targets in the top 10, want at least %d each", dense, hybrid, len(paraphrases), minSemanticHits)
	}
	if lex >= min(dense, hybrid) {
		t.Errorf("lexical found %d targets, as many as the semantic modes (%d, %d)", lex, dense, hybrid)
	}

	// The default mode (hybrid with a model) must not rank below lexical alone by topic.
	var precision [2]float64
	for i, mode := range []recommenderv1.RetrievalMode{modes[0], recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED} {
		p, err := eval.TopicPrecision(ctx, srv.Client, papers, mode)
		if err != nil {
			t.Fatal(err)
		}
		precision[i] = p
	}
	t.Logf("topic precision@10: lexical %.4f, default mode %.4f", precision[0], precision[1])
	if precision[1] < precision[0] {
		t.Errorf("default mode's topic precision@10 %.4f is below lexical's %.4f", precision[1], precision[0])
	}
}

func modeRank(mode recommenderv1.RetrievalMode, r int) string {
	name := strings.ToLower(strings.TrimPrefix(mode.String(), "RETRIEVAL_MODE_"))
	if r < 0 {
		return name + "=-"
	}
	return name + "=" + strconv.Itoa(r+1)
}

// sharedTerms returns the analyzed query terms that occur in the paper's title or abstract.
func sharedTerms(query string, p *recommenderv1.Paper) []string {
	doc := lexical.Terms(p.GetTitle() + "\n" + p.GetAbstract())
	var shared []string
	for _, term := range lexical.Terms(query) {
		if slices.Contains(doc, term) && !slices.Contains(shared, term) {
			shared = append(shared, term)
		}
	}
	return shared
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
