package server_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed/embedtest"
)

// A paper the store does not hold, given inline, recommends like the same paper stored: the
// results of an inline copy of demo-0014 are those of demo-0014 by id (its stored copy, titled
// alike, is left out as a seed's copy), and nothing is stored.
func TestInlineSeedRecommendsLikeTheStoredPaper(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	var seed *recommenderv1.Paper
	for _, p := range papers {
		if p.GetId() == "demo-0014" {
			seed = p
		}
	}
	byID, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0014"}, PageSize: 20})
	if err != nil {
		t.Fatal(err)
	}
	inline, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PageSize: 20, PositivePapers: []*recommenderv1.SeedPaper{
		{Title: seed.GetTitle(), Abstract: seed.GetAbstract(), Authors: seed.GetAuthors(), Year: seed.GetYear()}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(inline), ids(byID); len(got) == 0 || !slices.Equal(got, want) {
		t.Fatalf("inline copy of demo-0014: %v, want its results by id %v", got, want)
	}
	if got := seedSummary(inline); !slices.Equal(got, []string{"+[0] INLINE"}) || inline.GetSeeds()[0].GetTitle() != seed.GetTitle() {
		t.Fatalf("seeds %v", inline.GetSeeds())
	}
	info, err := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetPaperCount() != int64(len(papers)) {
		t.Fatalf("paper count %d after inline seeds, want %d (%v)", info.GetPaperCount(), len(papers), err)
	}
}

// Ids and inline seeds mix; every seed is reported in the request's order, repeats as
// duplicates; an inline paper titled like a stored seed is that seed again.
func TestMixedSeedsAreReported(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{
		PositivePaperIds: []string{"demo-0001", "no-such-paper", " demo-0001 "},
		NegativePaperIds: []string{"demo-0007"},
		PositivePapers: []*recommenderv1.SeedPaper{
			{Title: "Drafting a survey of sleep staging from wearable sensors", Abstract: "We review automatic sleep staging from wrist-worn accelerometers."},
			{Title: "  " + demoTitle(t, "demo-0001") + "!"},
		},
		NegativePapers: []*recommenderv1.SeedPaper{{Abstract: "Quantum error correction with surface codes."}},
		Explain:        true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"+demo-0001 FOUND", "+no-such-paper NOT_FOUND", "+demo-0001 DUPLICATE", "-demo-0007 FOUND",
		"+[0] INLINE", "+[1] DUPLICATE", "-[0] INLINE"}
	if got := seedSummary(resp); !slices.Equal(got, want) {
		t.Fatalf("seeds %v, want %v", got, want)
	}
	if len(resp.GetResults()) == 0 {
		t.Fatal("no results")
	}
	closest := map[string]bool{}
	for _, r := range resp.GetResults() {
		closest[r.GetExplanation().GetClosestSeedId()] = true
		if id := r.GetPaper().GetId(); id == "demo-0001" || id == "demo-0007" {
			t.Fatalf("a seed came back: %s", id)
		}
	}
	if !closest["demo-0001"] && !closest["positive_papers[0]"] {
		t.Fatalf("closest seeds %v name neither seed", closest)
	}
}

// demoTitle is a demo paper's title, upper-cased (the same title once normalised).
func demoTitle(t *testing.T, id string) string {
	t.Helper()
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range papers {
		if p.GetId() == id {
			return strings.ToUpper(p.GetTitle())
		}
	}
	t.Fatalf("no demo paper %s", id)
	return ""
}

func TestInlineSeedValidation(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	for _, tc := range []struct {
		seed  *recommenderv1.SeedPaper
		field string
	}{
		{&recommenderv1.SeedPaper{}, "positive_papers[0]"},
		{&recommenderv1.SeedPaper{Title: "the of and", Abstract: "42"}, "positive_papers[0]"},
		{&recommenderv1.SeedPaper{Title: strings.Repeat("long ", 201)}, "positive_papers[0].title"},
		{&recommenderv1.SeedPaper{Title: "Graphs", Abstract: strings.Repeat("graphs ", 1500)}, "positive_papers[0].abstract"},
		{&recommenderv1.SeedPaper{Title: "Graphs", Year: 20}, "positive_papers[0].year"},
		{&recommenderv1.SeedPaper{Title: "Graphs", Authors: make([]string, 101)}, "positive_papers[0].authors"},
	} {
		_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePapers: []*recommenderv1.SeedPaper{tc.seed}})
		if fields := wantCode(t, err, codes.InvalidArgument); !slices.Contains(fields, tc.field) {
			t.Errorf("%v: fields %v, want %s", tc.seed, fields, tc.field)
		}
	}
	// Negative inline seeds alone recommend nothing.
	_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{NegativePapers: []*recommenderv1.SeedPaper{{Title: "Graphs"}}})
	wantCode(t, err, codes.InvalidArgument)
}

// The text and every inline seed are embedded in one call; stored seeds are not embedded again.
func TestInlineSeedsEmbedInOneCall(t *testing.T) {
	t.Parallel()
	api := embedtest.New(testDims)
	t.Cleanup(api.Close)
	srv := demoServerWith(t, newEmbedder(t, api, "fake-model"))
	before := len(api.Requests())
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "privacy of federated learning",
		PositivePaperIds: []string{"demo-0014"},
		PositivePapers:   []*recommenderv1.SeedPaper{{Title: "Secure aggregation for federated learning"}, {Title: "Private set intersection"}},
		NegativePapers:   []*recommenderv1.SeedPaper{{Title: "Image segmentation"}}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := api.Requests()[before:]
	if len(reqs) != 1 || len(reqs[0].Inputs) != 4 {
		t.Fatalf("%d embedding calls (%v), want one of 4 inputs (the text, three inline seeds)", len(reqs), reqs)
	}
	if resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID || len(resp.GetResults()) == 0 {
		t.Fatalf("mode %v, %d results", resp.GetMode(), len(resp.GetResults()))
	}
}
