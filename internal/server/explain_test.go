package server_test

import (
	"fmt"
	"slices"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/testutil"
)

// TestSharedTermsBySpecificity: an explanation lists the shared term that is rare in the corpus
// ("polysomnography") before the one most papers have ("number"), although among the
// candidates, all about sleep staging, it is the generic one that is rarer.
func TestSharedTermsBySpecificity(t *testing.T) {
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
