package server_test

import (
	"slices"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/testutil"
)

// TestSeedCopiesAreNotResults: a copy of a seed paper under another id (the same title but for
// case and punctuation) is the seed itself, and is never recommended, on any page, whether it
// would come first or be folded into another result; unless the caller names the candidates.
func TestSeedCopiesAreNotResults(t *testing.T) {
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
