package server_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/paperrec/recommender/internal/embed/embedtest"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/testutil"
)

var ctx = context.Background()

// demoServer serves the demo corpus.
func demoServer(t *testing.T) *testutil.Server { return demoServerWith(t, nil) }

// wantCode fails unless err carries code, and returns the fields of its BadRequest violations.
func wantCode(t *testing.T, err error, code codes.Code) []string {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code = %v (%v), want %v", got, err, code)
	}
	var fields []string
	for _, v := range testutil.Detail[*errdetails.BadRequest](err).GetFieldViolations() {
		fields = append(fields, v.GetField())
	}
	return fields
}

func ids(resp *recommenderv1.RecommendResponse) []string {
	var out []string
	for _, r := range resp.GetResults() {
		out = append(out, r.GetPaper().GetId())
	}
	return out
}

func TestSeedsNeverRecommendThemselves(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	for _, req := range []*recommenderv1.RecommendRequest{
		{PositivePaperIds: []string{"demo-0001"}, PageSize: 100},
		{PositivePaperIds: []string{"demo-0001", "demo-0004"}, NegativePaperIds: []string{"demo-0003"}, PageSize: 100},
		// The query text matches the seeds' own titles word for word.
		{Query: "graph neural network message passing", PositivePaperIds: []string{"demo-0001", "demo-0002"}, PageSize: 100},
	} {
		resp, err := srv.Client.Recommend(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) == 0 {
			t.Fatalf("%v: no results", req)
		}
		for _, id := range ids(resp) {
			if slices.Contains(req.PositivePaperIds, id) || slices.Contains(req.NegativePaperIds, id) {
				t.Errorf("%v: seed %s returned", req, id)
			}
		}
	}
}

func TestRecommendFindsTheTopic(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0013"}, PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	// demo-0013..0018 are the federated learning papers.
	for _, r := range resp.GetResults() {
		if !strings.Contains(strings.ToLower(r.GetPaper().GetAbstract()), "federated") {
			t.Errorf("seed about federated learning recommended %s %q", r.GetPaper().GetId(), r.GetPaper().GetTitle())
		}
	}
	if resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL {
		t.Errorf("mode = %v, want LEXICAL", resp.GetMode())
	}
}

func TestRecommendValidation(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	cases := []struct {
		name  string
		req   *recommenderv1.RecommendRequest
		code  codes.Code
		field string // a BadRequest field violation that must be present
	}{
		{"neither query nor seeds", &recommenderv1.RecommendRequest{}, codes.InvalidArgument, "query"},
		{"only negative seeds", &recommenderv1.RecommendRequest{NegativePaperIds: []string{"demo-0001"}}, codes.InvalidArgument, "query"},
		{"blank query", &recommenderv1.RecommendRequest{Query: " \t\n "}, codes.InvalidArgument, "query"},
		{"over-long query", &recommenderv1.RecommendRequest{Query: strings.Repeat("graph ", 2000)}, codes.InvalidArgument, "query"},
		{"stop words only", &recommenderv1.RecommendRequest{Query: "the of and 42"}, codes.InvalidArgument, "query"},
		{"negative page size", &recommenderv1.RecommendRequest{Query: "graph", PageSize: -1}, codes.InvalidArgument, "page_size"},
		{"empty seed id", &recommenderv1.RecommendRequest{PositivePaperIds: []string{" "}}, codes.InvalidArgument, "positive_paper_ids[0]"},
		{"seed both positive and negative", &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0001"}, NegativePaperIds: []string{"demo-0001"}}, codes.InvalidArgument, "negative_paper_ids"},
		{"too many seeds", &recommenderv1.RecommendRequest{PositivePaperIds: manyIDs(101)}, codes.InvalidArgument, "positive_paper_ids"},
		{"year range inverted", &recommenderv1.RecommendRequest{Query: "graph", Filter: &recommenderv1.Filter{MinYear: 2022, MaxYear: 2020}}, codes.InvalidArgument, "filter.min_year"},
		{"garbage page token", &recommenderv1.RecommendRequest{Query: "graph", PageToken: "not-a-token"}, codes.InvalidArgument, "page_token"},
		{"diversity above 1", &recommenderv1.RecommendRequest{Query: "graph", Diversity: 1.5}, codes.InvalidArgument, "diversity"},
		{"diversity NaN", &recommenderv1.RecommendRequest{Query: "graph", Diversity: float32(math.NaN())}, codes.InvalidArgument, "diversity"},
		{"half-life negative", &recommenderv1.RecommendRequest{Query: "graph", RecencyHalfLifeDays: -1}, codes.InvalidArgument, "recency_half_life_days"},
		{"half-life below a day", &recommenderv1.RecommendRequest{Query: "graph", RecencyHalfLifeDays: 1e-9}, codes.InvalidArgument, "recency_half_life_days"},
		{"half-life past a century", &recommenderv1.RecommendRequest{Query: "graph", RecencyHalfLifeDays: 200_000}, codes.InvalidArgument, "recency_half_life_days"},
		{"half-life infinite", &recommenderv1.RecommendRequest{Query: "graph", RecencyHalfLifeDays: float32(math.Inf(1))}, codes.InvalidArgument, "recency_half_life_days"},
		{"dense without a model", &recommenderv1.RecommendRequest{Query: "graph", Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE}, codes.FailedPrecondition, ""},
		{"hybrid without a model", &recommenderv1.RecommendRequest{Query: "graph", Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID}, codes.FailedPrecondition, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := srv.Client.Recommend(ctx, tc.req)
			fields := wantCode(t, err, tc.code)
			if tc.field != "" && !slices.Contains(fields, tc.field) {
				t.Errorf("field violations %v, want one for %q", fields, tc.field)
			}
		})
	}
}

func manyIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("demo-%04d", i+1)
	}
	return out
}

// An unknown seed id is reported and left out when another seed resolves; when none does, the
// call is NOT_FOUND naming the ids.
func TestUnknownSeedsAreReportedOrNotFound(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0001", "no-such-paper"}})
	if err != nil {
		t.Fatal(err)
	}
	alone, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0001"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(resp), ids(alone); !slices.Equal(got, want) {
		t.Errorf("with an unknown seed beside demo-0001: %v, want demo-0001's own %v", got, want)
	}
	if got := seedSummary(resp); !slices.Equal(got, []string{"+demo-0001 FOUND", "+no-such-paper NOT_FOUND"}) {
		t.Errorf("seeds %v", got)
	}
	for _, req := range []*recommenderv1.RecommendRequest{
		{PositivePaperIds: []string{"no-such-paper", "nor-this-one"}},
		{Query: "graph", NegativePaperIds: []string{"no-such-paper"}},
		{PositivePaperIds: []string{"no-such-paper"}, NegativePaperIds: []string{"demo-0002"}}, // nothing positive left
	} {
		_, err := srv.Client.Recommend(ctx, req)
		wantCode(t, err, codes.NotFound)
		if !strings.Contains(status.Convert(err).Message(), "no-such-paper") {
			t.Errorf("message %q does not name the missing id", status.Convert(err).Message())
		}
	}
	_, err = srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: "no-such-paper"})
	wantCode(t, err, codes.NotFound)
}

// seedSummary is each reported seed as "+id STATUS" ("-" for negative; "[i]" for inline).
func seedSummary(resp *recommenderv1.RecommendResponse) []string {
	var out []string
	for _, s := range resp.GetSeeds() {
		sign, name := "+", s.GetPaperId()
		if s.GetNegative() {
			sign = "-"
		}
		if _, ok := s.GetSource().(*recommenderv1.Seed_InlineIndex); ok {
			name = fmt.Sprintf("[%d]", s.GetInlineIndex())
		}
		out = append(out, sign+name+" "+strings.TrimPrefix(s.GetStatus().String(), "SEED_STATUS_"))
	}
	return out
}

func TestPageSizeDefaultsAndCap(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	testutil.Ingest(t, srv.Client, twinPapers(150))
	for _, tc := range []struct{ size, want int32 }{{0, 10}, {7, 7}, {100, 100}, {500, 100}} {
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "identical twins", PageSize: tc.size})
		if err != nil {
			t.Fatal(err)
		}
		if got := int32(len(resp.GetResults())); got != tc.want {
			t.Errorf("page_size %d: %d results, want %d", tc.size, got, tc.want)
		}
	}
}

// twinPapers returns n papers with the same terms, so every score ties and only the paper id
// can order them.
func twinPapers(n int) []*recommenderv1.Paper {
	out := make([]*recommenderv1.Paper, n)
	for i := range out {
		// Ids deliberately not inserted in sorted order.
		// Numbers are not terms: every twin has the same term vector, so scores tie, but the
		// titles differ, so they are not folded together as duplicates.
		id := (i * 37) % n
		out[i] = &recommenderv1.Paper{Id: fmt.Sprintf("twin-%03d", id), Title: fmt.Sprintf("Identical twins %03d", id), Abstract: "Every twin has the same abstract."}
	}
	return out
}

func TestPagingIsDeterministicAndComplete(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	testutil.Ingest(t, srv.Client, twinPapers(95))
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Ingest(t, srv.Client, papers)

	for _, query := range []string{"identical twins", "learning graph speech robot database"} {
		all, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: query, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		want := ids(all)
		if query == "identical twins" {
			// All scores tie, so the order is by id.
			if !slices.IsSorted(want) || len(want) != 95 {
				t.Fatalf("tied results not ordered by id: %v", want)
			}
		}
		// Page through with a small page size, changing it midway (allowed), and compare.
		var got []string
		req := &recommenderv1.RecommendRequest{Query: query, PageSize: 7}
		for page := 0; ; page++ {
			resp, err := srv.Client.Recommend(ctx, req)
			if err != nil {
				t.Fatalf("page %d: %v", page, err)
			}
			got = append(got, ids(resp)...)
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
			req.PageSize = int32(7 + page%3)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: paged results differ from one page\n got %v\nwant %v", query, got, want)
		}
	}
}

// Every answer names the model and index version it came from; a page token is bound to the
// ranking: another model's server refuses it, saying why, and so does a token of the old format.
func TestAnswersAreVersioned(t *testing.T) {
	t.Parallel()
	lex := demoServer(t)
	req := &recommenderv1.RecommendRequest{Query: "graph neural networks", PageSize: 3}
	first, err := lex.Client.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	info, err := lex.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetEmbeddingModel() != "lexical" || first.GetIndexVersion() == 0 || first.GetIndexVersion() != info.GetIndexVersion() || first.GetFallback() != "" {
		t.Fatalf("answer names model %q, version %d, fallback %q; index info %v", first.GetEmbeddingModel(), first.GetIndexVersion(), first.GetFallback(), info)
	}
	if _, err := lex.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "new-1", Title: "Graph networks again"}}}); err != nil {
		t.Fatal(err)
	}
	after, err := lex.Client.Recommend(ctx, req)
	if err != nil || after.GetIndexVersion() <= first.GetIndexVersion() {
		t.Fatalf("after a write: version %d, before %d (%v)", after.GetIndexVersion(), first.GetIndexVersion(), err)
	}

	api := embedtest.New(testDims)
	t.Cleanup(api.Close)
	dense := demoServerWith(t, newEmbedder(t, api, "fake-model"))
	if resp, err := dense.Client.Recommend(ctx, req); err != nil || resp.GetEmbeddingModel() != "fake-model" {
		t.Fatalf("model named %q (%v), want fake-model", resp.GetEmbeddingModel(), err)
	}
	// The same request, with the lexical server's token: refused by the other ranking.
	next := proto.Clone(req).(*recommenderv1.RecommendRequest)
	next.PageToken = first.GetNextPageToken()
	_, err = dense.Client.Recommend(ctx, next)
	wantCode(t, err, codes.InvalidArgument)
	if msg := status.Convert(err).Message() + fmt.Sprint(testutil.Detail[*errdetails.BadRequest](err)); !strings.Contains(msg, "another embedding model") {
		t.Fatalf("refusal %q does not say the model changed", msg)
	}
	if _, err := lex.Client.Recommend(ctx, next); err != nil {
		t.Fatalf("the token on its own server: %v", err)
	}
	// A token of the first format (version byte 1), well formed otherwise.
	b, _ := base64.RawURLEncoding.DecodeString(first.GetNextPageToken())
	old := append([]byte{1}, b[1:9]...)
	old = append(old, b[17:len(b)-4]...)
	old = binary.BigEndian.AppendUint32(old, crc32.Checksum(old, crc32.MakeTable(crc32.Castagnoli)))
	next.PageToken = base64.RawURLEncoding.EncodeToString(old)
	_, err = lex.Client.Recommend(ctx, next)
	wantCode(t, err, codes.InvalidArgument)
	if msg := fmt.Sprint(testutil.Detail[*errdetails.BadRequest](err)); !strings.Contains(msg, "earlier version of the service") {
		t.Fatalf("old token refusal %q", msg)
	}
}

func TestPageTokenTampering(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	req := &recommenderv1.RecommendRequest{Query: "learning", PageSize: 5}
	resp, err := srv.Client.Recommend(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	token := resp.GetNextPageToken()
	if token == "" {
		t.Fatal("no next page token")
	}
	// Flip each character of the token in turn: every altered token must be refused.
	for i := range token {
		b := []byte(token)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "learning", PageSize: 5, PageToken: string(b)})
		if fields := wantCode(t, err, codes.InvalidArgument); !slices.Contains(fields, "page_token") {
			t.Fatalf("altered token %q: violations %v", b, fields)
		}
	}
	// A valid token presented with a different request is refused too.
	_, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "graphs", PageSize: 5, PageToken: token})
	wantCode(t, err, codes.InvalidArgument)
}

func TestFilters(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	all := func(f *recommenderv1.Filter) []*recommenderv1.Recommendation {
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{
			Query: "learning networks graph speech robot database security image retrieval", PageSize: 100, Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) == 0 {
			t.Fatalf("filter %v: no results", f)
		}
		return resp.GetResults()
	}
	for _, r := range all(&recommenderv1.Filter{MinYear: 2021, MaxYear: 2022}) {
		if y := r.GetPaper().GetYear(); y < 2021 || y > 2022 {
			t.Errorf("year filter returned %d", y)
		}
	}
	for _, r := range all(&recommenderv1.Filter{Categories: []string{"cs.RO", "cs.DB"}}) {
		cats := r.GetPaper().GetCategories()
		if !slices.Contains(cats, "cs.RO") && !slices.Contains(cats, "cs.DB") {
			t.Errorf("category filter returned %v", cats)
		}
	}
	// Authors match case-insensitively with white space folded.
	for _, r := range all(&recommenderv1.Filter{Authors: []string{"  mei   TANAKA "}}) {
		if !slices.Contains(r.GetPaper().GetAuthors(), "Mei Tanaka") {
			t.Errorf("author filter returned %v", r.GetPaper().GetAuthors())
		}
	}
	excluded := all(nil)[0].GetPaper().GetId()
	for _, r := range all(&recommenderv1.Filter{ExcludePaperIds: []string{excluded}}) {
		if r.GetPaper().GetId() == excluded {
			t.Errorf("excluded paper %s returned", excluded)
		}
	}
}

func TestArxivVersionSuffixIsStoredUnderBareID(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	up, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{
		{Id: "2103.12906v3", Title: "A versioned paper", Abstract: "About versions."},
		{Id: "hep-th/9901001v2", Title: "An old-style id", Abstract: "About old ids."},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if up.GetInserted() != 2 {
		t.Fatalf("inserted %d, want 2", up.GetInserted())
	}
	for _, tc := range []struct{ ask, want string }{
		{"2103.12906", "2103.12906"}, {"2103.12906v1", "2103.12906"}, {"arXiv:2103.12906v3", "2103.12906"},
		{"hep-th/9901001", "hep-th/9901001"},
	} {
		got, err := srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: tc.ask})
		if err != nil {
			t.Fatalf("get %s: %v", tc.ask, err)
		}
		if got.GetPaper().GetId() != tc.want {
			t.Errorf("get %s: id %s, want %s", tc.ask, got.GetPaper().GetId(), tc.want)
		}
	}
	// Another version of the same paper updates it rather than adding one.
	up, err = srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{
		{Id: "2103.12906v4", Title: "A versioned paper, revised", Abstract: "About versions."}}})
	if err != nil || up.GetUpdated() != 1 {
		t.Fatalf("upsert v4: %v, %v; want 1 updated", up, err)
	}
	info, err := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetPaperCount() != 2 {
		t.Fatalf("index info %v, %v; want 2 papers", info, err)
	}
}

func TestUpsertIsIdempotentAndValidated(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	papers := []*recommenderv1.Paper{
		{Id: "p1", Title: "First", Abstract: "One.", Date: "2020-05-01"},
		{Id: "p2", Title: "Second", Abstract: "Two.", Year: 2019},
	}
	counts := func() [3]int32 {
		resp, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: papers})
		if err != nil {
			t.Fatal(err)
		}
		return [3]int32{resp.GetInserted(), resp.GetUpdated(), resp.GetUnchanged()}
	}
	if got := counts(); got != [3]int32{2, 0, 0} {
		t.Fatalf("first upsert %v, want 2 inserted", got)
	}
	info1, _ := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if got := counts(); got != [3]int32{0, 0, 2} {
		t.Fatalf("second upsert %v, want 2 unchanged", got)
	}
	info2, _ := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if info1.GetIndexVersion() != info2.GetIndexVersion() {
		t.Errorf("unchanged upsert moved the index version %d -> %d", info1.GetIndexVersion(), info2.GetIndexVersion())
	}
	papers[1].Abstract = "Two, revised."
	if got := counts(); got != [3]int32{0, 1, 1} {
		t.Fatalf("third upsert %v, want 1 updated 1 unchanged", got)
	}
	got, err := srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: "p1"})
	if err != nil || got.GetPaper().GetYear() != 2020 {
		t.Fatalf("p1: %v, %v; want year 2020 derived from its date", got, err)
	}

	// All-or-nothing: one bad paper fails the batch with a violation naming it.
	_, err = srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{
		{Id: "p3", Title: "Fine"}, {Id: "p4"}, {Id: "p5", Title: "Bad date", Date: "May 2020"}, {Id: "p3", Title: "Again"}}})
	fields := wantCode(t, err, codes.InvalidArgument)
	for _, f := range []string{"papers[1].title", "papers[2].date", "papers[3].id"} {
		if !slices.Contains(fields, f) {
			t.Errorf("violations %v, want %s", fields, f)
		}
	}
	_, err = srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: "p3"})
	wantCode(t, err, codes.NotFound)

	// A paper's url is a link on the page: absolute http(s) only, and kept as sent.
	for _, u := range []string{"javascript:alert(1)", "data:text/html,x", "/papers/p6", "ftp://example.org/p6", "https://", "https://example.org/a b"} {
		_, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "p6", Title: "Linked", Url: u}}})
		if fields := wantCode(t, err, codes.InvalidArgument); !slices.Contains(fields, "papers[0].url") {
			t.Errorf("url %q: violations %v, want papers[0].url", u, fields)
		}
	}
	const link = "https://example.org/papers/p6?v=2"
	if _, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "p6", Title: "Linked", Url: link}}}); err != nil {
		t.Fatal(err)
	}
	if got, err := srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: "p6"}); err != nil || got.GetPaper().GetUrl() != link {
		t.Fatalf("p6: %v, %v; want url %s", got, err, link)
	}

	// Ids that print like another id, or not at all, are refused; letters of any script are not.
	for _, id := range []string{"p1\u200b", "p\u202e1", "p\u20661", "\ufeffp1", "p\u00ad1", "p1\ufe0f", "p\u31641", "p\ue0001", "p\x7f1"} {
		_, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: id, Title: "Hidden"}}})
		if fields := wantCode(t, err, codes.InvalidArgument); !slices.Contains(fields, "papers[0].id") {
			t.Errorf("id %+q: violations %v, want papers[0].id", id, fields)
		}
		_, err = srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{id}})
		wantCode(t, err, codes.InvalidArgument)
	}
	if _, err := srv.Client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{{Id: "статья-1", Title: "Кириллица"}, {Id: "論文-2", Title: "漢字"}}}); err != nil {
		t.Errorf("ids in other scripts: %v", err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	resp, err := srv.Client.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{PaperIds: []string{"demo-0001", "missing"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeleted() != 1 || !slices.Equal(resp.GetNotFoundPaperIds(), []string{"missing"}) {
		t.Fatalf("delete = %v, want 1 deleted and [missing] not found", resp)
	}
	_, err = srv.Client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: "demo-0001"})
	wantCode(t, err, codes.NotFound)
	rec, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "heterogeneous citation graphs relation-aware", PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(rec), "demo-0001") {
		t.Error("deleted paper still recommended")
	}
	_, err = srv.Client.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{})
	wantCode(t, err, codes.InvalidArgument)
}

func TestIngestRejectsBadPapersOneByOne(t *testing.T) {
	t.Parallel()
	srv := testutil.StartServer(t)
	resp := testutil.Ingest(t, srv.Client, []*recommenderv1.Paper{
		{Id: "ok-1", Title: "Good paper"},
		{Id: "", Title: "No id"},
		{Id: "ok-2", Abstract: "Good abstract"},
		{Id: "empty"},
		{Id: "ok-1", Title: "Good paper"}, // repeated in the stream: unchanged
	})
	if resp.GetInserted() != 2 || resp.GetRejected() != 2 || resp.GetUnchanged() != 1 {
		t.Fatalf("ingest = %v, want 2 inserted, 2 rejected, 1 unchanged", resp)
	}
	rej := resp.GetRejections()
	if len(rej) != 2 || rej[0].GetPosition() != 1 || rej[1].GetPosition() != 3 || rej[1].GetPaperId() != "empty" {
		t.Fatalf("rejections = %v, want positions 1 and 3", rej)
	}
	if !strings.Contains(rej[1].GetReason(), "title and abstract are both empty") {
		t.Errorf("reason %q does not say why", rej[1].GetReason())
	}
}

func TestIndexInfoHealthAndReflection(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	info, err := srv.Client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetPaperCount() != 48 || info.GetStoreBackend() != "embedded" || info.GetEmbeddingModel() != "lexical" || info.GetIndexVersion() == 0 {
		t.Errorf("index info = %v", info)
	}
	h, err := healthpb.NewHealthClient(srv.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "recommender.v1.RecommenderService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", h, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(srv.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "recommender.v1.RecommenderService") {
		t.Errorf("reflection lists %v", names)
	}
}

// TestIDListsAreCheckedCheaply: a list over its limit is one violation and none of its ids is
// looked at; a list within it reports at most the first 20 bad ids and a count of the rest, so
// neither the work nor the answer grows with what an attacker sends.
func TestIDListsAreCheckedCheaply(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	many := func(n int, id func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = id(i)
		}
		return out
	}
	bad := func(i int) string { return fmt.Sprintf("bad id %d", i) } // white space: invalid
	good := func(i int) string { return fmt.Sprintf("paper-%d", i) }
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"80,000 positive seeds", func() error {
			_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: many(80_000, good)})
			return err
		}, "positive_paper_ids"},
		{"5,000 bad ids to delete", func() error {
			_, err := srv.Client.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{PaperIds: many(5_000, bad)})
			return err
		}, "paper_ids"},
		{"5,000 excluded ids", func() error {
			_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech",
				Filter: &recommenderv1.Filter{ExcludePaperIds: many(5_000, good)}})
			return err
		}, "filter.exclude_paper_ids"},
		{"500 filter categories", func() error {
			_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech",
				Filter: &recommenderv1.Filter{Categories: many(500, good)}})
			return err
		}, "filter.categories"},
	} {
		if fields := wantCode(t, tc.call(), codes.InvalidArgument); !slices.Equal(fields, []string{tc.field}) {
			t.Errorf("%s: %d violations (first %v), want one for %s", tc.name, len(fields), fields[:min(3, len(fields))], tc.field)
		}
	}
	// 1,000 bad candidates, within the limit: the first 20 listed, the rest counted.
	_, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech", CandidatePaperIds: many(1_000, bad)})
	fields := wantCode(t, err, codes.InvalidArgument)
	info := testutil.Detail[*errdetails.ErrorInfo](err)
	if len(fields) != 20 || fields[0] != "candidate_paper_ids[0]" || info.GetMetadata()["violations_not_listed"] != "980" {
		t.Fatalf("1,000 bad candidates: %d violations listed, %q not listed", len(fields), info.GetMetadata()["violations_not_listed"])
	}
	if n := proto.Size(status.Convert(err).Proto()); n > 4<<10 {
		t.Fatalf("the error of 1,000 bad ids is %d bytes", n)
	}
}
