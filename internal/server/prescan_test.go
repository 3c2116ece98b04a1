package server

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
)

// The scans find the first list over its limit, at any depth, in protobuf and in JSON (by JSON
// and by proto field names), and pass everything within the limits, malformed bytes included.
func TestPrescanFindsListsOverTheirLimits(t *testing.T) {
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("p-%d", i)
		}
		return out
	}
	recommend := recommenderv1.RecommenderService_Recommend_FullMethodName
	for _, tc := range []struct {
		name   string
		method string
		msg    proto.Message
		field  string // "": passes
	}{
		{"seeds at the limit", recommend, &recommenderv1.RecommendRequest{PositivePaperIds: ids(MaxSeeds)}, ""},
		{"one seed too many", recommend, &recommenderv1.RecommendRequest{PositivePaperIds: ids(MaxSeeds + 1)}, "positive_paper_ids"},
		{"excluded ids in the filter", recommend, &recommenderv1.RecommendRequest{Query: "x", Filter: &recommenderv1.Filter{ExcludePaperIds: ids(MaxExcluded + 1)}}, "filter.exclude_paper_ids"},
		{"authors of an inline seed", recommend, &recommenderv1.RecommendRequest{PositivePapers: []*recommenderv1.SeedPaper{{Title: "t"}, {Title: "u", Authors: ids(MaxSeedList + 1)}}}, "positive_papers[1].authors"},
		{"candidates at the limit", recommend, &recommenderv1.RecommendRequest{Query: "x \\\" { [", CandidatePaperIds: ids(MaxCandidates)}, ""},
		{"papers to upsert", recommenderv1.RecommenderService_UpsertPapers_FullMethodName, &recommenderv1.UpsertPapersRequest{Papers: make([]*recommenderv1.Paper, MaxBatch+1)}, "papers"},
		{"ids to delete", recommenderv1.RecommenderService_DeletePapers_FullMethodName, &recommenderv1.DeletePapersRequest{PaperIds: ids(MaxBatch + 1)}, "paper_ids"},
	} {
		if up, ok := tc.msg.(*recommenderv1.UpsertPapersRequest); ok {
			for i := range up.Papers {
				up.Papers[i] = &recommenderv1.Paper{Id: "x"}
			}
		}
		b, err := proto.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		camel, _ := protojson.Marshal(tc.msg)
		snake, _ := protojson.MarshalOptions{UseProtoNames: true, Indent: "  "}.Marshal(tc.msg)
		for _, scan := range []struct {
			name string
			err  error
		}{{"protobuf", PrescanProto(b, tc.method)}, {"JSON", PrescanJSON(camel, tc.method)}, {"JSON, proto names", PrescanJSON(snake, tc.method)}} {
			got := ""
			if verr, ok := scan.err.(*apierr.ValidationError); ok {
				got = verr.Violations[0].Field
			} else if scan.err != nil {
				t.Fatalf("%s, %s: %v", tc.name, scan.name, scan.err)
			}
			if got != tc.field {
				t.Errorf("%s, %s: violation at %q, want %q", tc.name, scan.name, got, tc.field)
			}
		}
	}
	for _, bad := range []string{"", "{", `{"positivePaperIds": [`, `[1, 2]`, `{"positivePaperIds": "x"}`, strings.Repeat("[", 1e5)} {
		if err := PrescanJSON([]byte(bad), recommend); err != nil {
			t.Errorf("%.20q: %v, want nil (the decoder reports bad JSON)", bad, err)
		}
	}
}
