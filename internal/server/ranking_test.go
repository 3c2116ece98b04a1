package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// sampleServer returns the package's server of the shared arXiv sample (see TestMain), for tests
// that only read it.
func sampleServer(t *testing.T) (*testutil.Server, []*recommenderv1.Paper) {
	t.Helper()
	return sample.Get(t)
}

// meanPairwiseSimilarity is the mean cosine similarity of the results' term vectors.
func meanPairwiseSimilarity(results []*recommenderv1.Recommendation) float64 {
	var sum float64
	n := 0
	for i := range results {
		for j := i + 1; j < len(results); j++ {
			a, b := results[i].GetPaper(), results[j].GetPaper()
			sum += rank.LexicalCosine(lexical.Document(a.GetTitle(), a.GetAbstract()), lexical.Document(b.GetTitle(), b.GetAbstract()))
			n++
		}
	}
	return sum / float64(n)
}

func TestDiversitySpreadsTheTopTen(t *testing.T) {
	t.Parallel()
	race.Skip(t)
	srv, _ := sampleServer(t)
	ask := func(d float32) []*recommenderv1.Recommendation {
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "federated learning privacy", PageSize: 10, Diversity: d})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) != 10 {
			t.Fatalf("diversity %v: %d results", d, len(resp.GetResults()))
		}
		return resp.GetResults()
	}
	plain, diverse := ask(0), ask(0.5)
	if plain[0].GetPaper().GetId() != diverse[0].GetPaper().GetId() {
		t.Fatalf("diversity changed the top result: %s -> %s", plain[0].GetPaper().GetId(), diverse[0].GetPaper().GetId())
	}
	before, after := meanPairwiseSimilarity(plain), meanPairwiseSimilarity(diverse)
	t.Logf("mean pairwise similarity of the top 10: %.3f without diversity, %.3f with 0.5", before, after)
	if after >= before {
		t.Fatalf("diversity did not spread the results: %.3f -> %.3f", before, after)
	}
	// Paging through the diverse list is consistent: page 2 continues page 1.
	first, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "federated learning privacy", PageSize: 5, Diversity: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	second, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "federated learning privacy", PageSize: 5, Diversity: 0.5, PageToken: first.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(first)[:5:5], ids(&recommenderv1.RecommendResponse{Results: diverse})[:5]; !slices.Equal(got, want) {
		t.Fatalf("page 1 %v, want %v", got, want)
	}
	if got, want := ids(second), ids(&recommenderv1.RecommendResponse{Results: diverse})[5:]; !slices.Equal(got, want) {
		t.Fatalf("page 2 %v, want %v", got, want)
	}
}

func TestRecencyMovesANewerEquallySimilarPaperUp(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	testutil.Ingest(t, srv.Client, []*recommenderv1.Paper{
		// Same terms (numbers are not terms), so the same score; the older one has the smaller id.
		{Id: "a-old", Title: "Sparse retrieval 2015", Abstract: "Inverted indexes for sparse retrieval.", Date: "2015-03-01"},
		{Id: "b-new", Title: "Sparse retrieval 2024", Abstract: "Inverted indexes for sparse retrieval.", Date: "2024-03-01"},
		{Id: "c-undated", Title: "Sparse retrieval", Abstract: "Inverted indexes for sparse retrieval."},
	})
	order := func(halfLife float32) []string {
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "sparse retrieval", RecencyHalfLifeDays: halfLife})
		if err != nil {
			t.Fatal(err)
		}
		return ids(resp)
	}
	if got := order(0); !slices.Equal(got, []string{"a-old", "b-new", "c-undated"}) {
		t.Fatalf("without recency %v: want ties by id", got)
	}
	if got := order(365); got[0] != "b-new" {
		t.Fatalf("with a one-year half-life %v: want the 2024 paper first", got)
	}
	_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "sparse", RecencyHalfLifeDays: -1})
	wantCode(t, err, codes.InvalidArgument)
	_, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "sparse", Diversity: 1.5})
	wantCode(t, err, codes.InvalidArgument)
}

func TestDuplicateTitlesCollapse(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	testutil.Ingest(t, srv.Client, []*recommenderv1.Paper{
		{Id: "1706.03762", Title: "Attention Is All You Need", Abstract: "The Transformer, based solely on attention mechanisms."},
		{Id: "attention-copy", Title: "Attention is all you need.", Abstract: "The Transformer, based solely on attention mechanisms, dispensing with recurrence."},
		{Id: "other", Title: "Attention in recurrent networks", Abstract: "Attention mechanisms for recurrence."},
	})
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "attention transformer", PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(resp); len(got) != 2 || !slices.Contains(got, "other") {
		t.Fatalf("results %v: want the two versions folded into one, and the other paper", got)
	}
	first := resp.GetResults()[0]
	if first.GetPaper().GetTitle() == "Attention in recurrent networks" {
		first = resp.GetResults()[1]
	}
	if dups := first.GetDuplicatePaperIds(); len(dups) != 1 || dups[0] == first.GetPaper().GetId() {
		t.Fatalf("kept %s with duplicates %v", first.GetPaper().GetId(), dups)
	}
}

// words is the set of lower-cased words of text.
func words(text string) map[string]bool {
	out := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 || r == '-' || r == '/')
	}) {
		out[w] = true
	}
	return out
}

func TestExplanationsNameRealSharedTerms(t *testing.T) {
	t.Parallel()
	race.Skip(t)
	srv, papers := sampleServer(t)
	byID := map[string]*recommenderv1.Paper{}
	for _, p := range papers {
		byID[p.GetId()] = p
	}
	seed := papers[0]
	query := "semantic segmentation of buildings"
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: query, PositivePaperIds: []string{seed.GetId()}, PageSize: 10, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	// A shared term is a word of the result whose term (stem) is a term of the query or seed.
	asked := map[string]bool{}
	for _, term := range lexical.Terms(query + " " + seed.GetTitle() + " " + seed.GetAbstract()) {
		asked[term] = true
	}
	for _, r := range resp.GetResults() {
		e := r.GetExplanation()
		if e == nil || len(e.GetSharedTerms()) == 0 || len(e.GetSharedTerms()) > 5 {
			t.Fatalf("%s: explanation %v", r.GetPaper().GetId(), e)
		}
		text := words(r.GetPaper().GetTitle() + " " + r.GetPaper().GetAbstract())
		for i, st := range e.GetSharedTerms() {
			if !text[st.GetTerm()] || !slices.ContainsFunc(lexical.Terms(st.GetTerm()), func(t string) bool { return asked[t] }) {
				t.Errorf("%s: shared term %q is not a word of the result with a term of the query or seed", r.GetPaper().GetId(), st.GetTerm())
			}
			if i > 0 && st.GetWeight() > e.GetSharedTerms()[i-1].GetWeight() {
				t.Errorf("%s: shared terms not heaviest first", r.GetPaper().GetId())
			}
		}
		// Text and seed retrieve a list each (per-seed): the score is the place in the best one,
		// the lexical score the paper's BM25 score there.
		if r.GetRelevance() <= 0 || r.GetRelevance() >= 1 {
			t.Errorf("%s: relevance %v outside (0, 1)", r.GetPaper().GetId(), r.GetRelevance())
		}
		if e.GetClosestSeedId() != seed.GetId() || e.GetClosestSeedSimilarity() <= 0 || e.GetLexicalScore() <= 0 || e.GetFusedScore() != r.GetScore() {
			t.Errorf("%s: explanation %v (score %v)", r.GetPaper().GetId(), e, r.GetScore())
		}
		// In words: the heaviest shared terms, and no dense similarity claimed (lexical).
		if want := "shares " + e.GetSharedTerms()[0].GetTerm(); !strings.HasPrefix(e.GetSummary(), want) || strings.Contains(e.GetSummary(), "meaning") {
			t.Errorf("%s: summary %q, want it to start %q and claim no closeness in meaning", r.GetPaper().GetId(), e.GetSummary(), want)
		}
	}
	// Without explain, no explanation is sent.
	plain, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: query, PageSize: 3})
	if err != nil || plain.GetResults()[0].GetExplanation() != nil {
		t.Fatalf("unasked explanation: %v, %v", plain, err)
	}
}

func TestNegativeSeedDemotesWhatIsCloserToIt(t *testing.T) {
	t.Parallel()
	race.Skip(t)
	srv, papers := sampleServer(t)
	top := func(n int, pos string, neg []string, exclude ...string) []string {
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{pos}, NegativePaperIds: neg,
			PageSize: int32(n), Filter: &recommenderv1.Filter{ExcludePaperIds: exclude}})
		if err != nil {
			t.Fatal(err)
		}
		return ids(resp)
	}
	rankIn := func(list []string) map[string]int {
		r := map[string]int{}
		for i, id := range list {
			r[id] = i + 1
		}
		return r
	}
	// For a seed, take its second-best neighbour as the negative seed (the hardest case: the
	// same topic). A paper among the negative's nearest that the negative ranks well enough
	// against the seed leaves the top 10; the others keep their order; nothing is lost.
	demotes := func(negRank, posRank int, ok bool) bool {
		return ok && negRank <= recommend.NegativeReach && float64(negRank) < recommend.DemoteMargin*float64(posRank)
	}
	var seeds, near, demoted int
	for _, p := range papers[:60] {
		alone := top(100, p.GetId(), nil)
		if len(alone) < 20 {
			continue
		}
		neg := alone[1]
		// Ranks as the service compares them: each list without both seeds.
		posRank, negRank := rankIn(top(100, p.GetId(), nil, neg)), rankIn(top(100, neg, nil, p.GetId()))
		after := top(100, p.GetId(), []string{neg})
		if slices.Contains(after, neg) || len(after) < len(alone)-1 {
			t.Fatalf("seed %s, negative %s: %d results (alone %d), negative returned: %v", p.GetId(), neg, len(after), len(alone), slices.Contains(after, neg))
		}
		var keptOrder []string
		for _, id := range after[:10] {
			if n, ok := negRank[id]; demotes(n, posRank[id], ok) {
				t.Fatalf("seed %s: %s in the top 10 with the negative %s, though ranked %d by the negative and %d by the seed", p.GetId(), id, neg, n, posRank[id])
			}
			keptOrder = append(keptOrder, id)
		}
		var wantOrder []string
		for _, id := range alone {
			if n, ok := negRank[id]; id != neg && !demotes(n, posRank[id], ok) && len(wantOrder) < 10 {
				wantOrder = append(wantOrder, id)
			}
			if posRank[id] <= 10 && negRank[id] > 0 && negRank[id] <= 20 && id != neg {
				near++
				if !slices.Contains(after[:10], id) {
					demoted++
				}
			}
		}
		if !slices.Equal(keptOrder, wantOrder) {
			t.Fatalf("seed %s, negative %s: top 10 %v, want the seed's list without the demoted %v", p.GetId(), neg, keptOrder, wantOrder)
		}
		seeds++
	}
	t.Logf("%d seeds: %d of %d of the seed's top 10 among the negative's 20 nearest left the top 10", seeds, demoted, near)
	if seeds < 20 {
		t.Fatalf("only %d seeds with 20 results", seeds)
	}
}

func TestCandidateListsAreRanked(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{
		PositivePaperIds:  []string{"demo-0019"},
		CandidatePaperIds: []string{"demo-0001", "demo-0021", "demo-0024", "nope", "demo-0043"},
		PageSize:          10,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := ids(resp)
	for _, id := range got {
		if !slices.Contains([]string{"demo-0001", "demo-0021", "demo-0024", "demo-0043"}, id) {
			t.Fatalf("result %s is not a candidate", id)
		}
	}
	// The two speech papers rank first for a speech seed.
	if len(got) < 2 || !slices.Contains(got[:2], "demo-0021") || !slices.Contains(got[:2], "demo-0024") {
		t.Fatalf("ranked candidates %v", got)
	}
	if !slices.Equal(resp.GetUnknownCandidateIds(), []string{"nope"}) {
		t.Fatalf("unknown candidates %v, want [nope]", resp.GetUnknownCandidateIds())
	}
	// The list comes back whole: a candidate sharing no word with the text (lexical mode finds
	// none of them) comes last, with a low relevance, in relevance order; filters still apply.
	resp, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition",
		CandidatePaperIds: []string{"demo-0001", "demo-0021", "demo-0043", "demo-0019"}, PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(resp); len(got) != 4 || !slices.Contains(got[2:], "demo-0001") || !slices.Contains(got[2:], "demo-0043") {
		t.Fatalf("candidates with and without shared words: %v, want all 4, the two unrelated last", got)
	}
	for i, r := range resp.GetResults() {
		if i > 0 && r.GetRelevance() > resp.GetResults()[i-1].GetRelevance() {
			t.Errorf("relevance not in result order: %v", resp.GetResults())
		}
	}
	if last := resp.GetResults()[3].GetRelevance(); last >= resp.GetResults()[1].GetRelevance() {
		t.Errorf("an unmatched candidate's relevance %v is not below the matched ones'", last)
	}
	resp, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech recognition",
		CandidatePaperIds: []string{"demo-0001", "demo-0021"}, Filter: &recommenderv1.Filter{ExcludePaperIds: []string{"demo-0001"}}})
	if err != nil || !slices.Equal(ids(resp), []string{"demo-0021"}) {
		t.Fatalf("a filtered-out unmatched candidate: %v, %v", ids(resp), err)
	}
	// Only unknown candidates: an empty answer that says so.
	resp, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech", CandidatePaperIds: []string{"x", "y"}})
	if err != nil || len(resp.GetResults()) != 0 || len(resp.GetUnknownCandidateIds()) != 2 {
		t.Fatalf("only unknown candidates: %v, %v", resp, err)
	}
}

func TestSeveralSeedsFindWhatTheyShare(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	// Two seeds from different areas: a robot-learning paper and a speech paper. Averaging
	// gives each an equal say, so both areas are represented in the top 6.
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0025", "demo-0019"}, PageSize: 6})
	if err != nil {
		t.Fatal(err)
	}
	var robot, speech int
	for _, r := range resp.GetResults() {
		text := strings.ToLower(r.GetPaper().GetTitle() + " " + r.GetPaper().GetAbstract())
		if strings.Contains(text, "robot") {
			robot++
		}
		if strings.Contains(text, "speech") {
			speech++
		}
	}
	if robot == 0 || speech == 0 {
		t.Fatalf("two seeds gave %d robot and %d speech papers in %v", robot, speech, ids(resp))
	}
}

// TestSeedCopiesAreNotResults: a copy of a seed paper under another id (the same title but for
// case and punctuation) is the seed itself, and is never recommended, on any page, whether it
// would come first or be folded into another result; unless the caller names the candidates.
func TestSeedCopiesAreNotResults(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	abstract := "Small neural networks detect spoken keywords on microcontrollers with little memory."
	papers := []*recommenderv1.Paper{
		{Id: "kws-1", Title: "Keyword Spotting on Tiny Devices", Abstract: abstract},
		{Id: "kws-1-copy", Title: "Keyword spotting on tiny devices.", Abstract: abstract + " Extended version."},
		{Id: "kws-2", Title: "Streaming Keyword Spotting", Abstract: "Keyword spotting on devices with streaming neural networks."},
		{Id: "kws-3", Title: "Wake Word Detection", Abstract: "Detecting spoken wake words with tiny neural networks on devices."},
	}
	testutil.Ingest(t, srv.Client, papers)
	for name, req := range map[string]*recommenderv1.RecommendRequest{
		"positive seed":         {PositivePaperIds: []string{"kws-1"}, PageSize: 1},
		"two seeds":             {PositivePaperIds: []string{"kws-3", "kws-1"}, PageSize: 1},
		"positive with explain": {PositivePaperIds: []string{"kws-1"}, PageSize: 1, Explain: true, Diversity: 0.5},
	} {
		var ids []string
		for page := 0; ; page++ {
			resp, err := srv.Client.Recommend(ctx, req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, r := range resp.GetResults() {
				ids = append(ids, r.GetPaper().GetId())
				ids = append(ids, r.GetDuplicatePaperIds()...)
			}
			if resp.GetNextPageToken() == "" || page > 10 {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if slices.Contains(ids, "kws-1-copy") || len(ids) == 0 {
			t.Errorf("%s: results %v include the seed's copy (or nothing)", name, ids)
		}
	}
	// Candidates named by the caller are all ranked: it asked about each.
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"kws-1"},
		CandidatePaperIds: []string{"kws-1-copy", "kws-2"}})
	if err != nil || len(resp.GetResults()) != 2 {
		t.Fatalf("with candidates named: %v, %v", resp, err)
	}
}

// TestSharedTermsBySpecificity: an explanation lists the shared term that is rare in the corpus
// ("polysomnography") before the one most papers have ("number"), although among the
// candidates, all about sleep staging, it is the generic one that is rarer.
func TestSharedTermsBySpecificity(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	papers := []*recommenderv1.Paper{
		{Id: "seed", Title: "Sleep staging", Abstract: "Automatic scoring from polysomnography, and the number of epochs."},
		{Id: "target", Title: "Sleep staging networks", Abstract: "Automatic scoring from polysomnography, and the number of nights."},
	}
	for i := range 8 {
		papers = append(papers, &recommenderv1.Paper{Id: fmt.Sprintf("sleep-%d", i), Title: fmt.Sprintf("Sleep staging study %d", i),
			Abstract: "Sleep stages are scored from polysomnography recordings."})
	}
	for i := range 60 {
		papers = append(papers, &recommenderv1.Paper{Id: fmt.Sprintf("other-%d", i), Title: fmt.Sprintf("Factory report %d", i),
			Abstract: "The number of widgets produced rose."})
	}
	testutil.Ingest(t, srv.Client, papers)
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"seed"}, PageSize: 1, Explain: true})
	if err != nil || len(resp.GetResults()) != 1 || resp.GetResults()[0].GetPaper().GetId() != "target" {
		t.Fatalf("first result: %v, %v", resp.GetResults(), err)
	}
	var terms []string
	for _, st := range resp.GetResults()[0].GetExplanation().GetSharedTerms() {
		terms = append(terms, st.GetTerm())
	}
	specific, generic := slices.Index(terms, "polysomnography"), slices.Index(terms, "number")
	if specific < 0 || (generic >= 0 && generic < specific) {
		t.Fatalf("shared terms %v: want polysomnography, and before number", terms)
	}
}
