package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
	"github.com/paperrec/recommender/internal/testutil"
)

const listLength = 5

// listsServer serves the demo corpus from st, hybrid (a fake model), keeping lists of
// listLength.
func listsServer(t *testing.T, st store.Store) recommenderv1.RecommenderServiceClient {
	return listsServerKept(t, st, false)
}

// listsServerKept is listsServer; keepFirst starts the lists' upkeep before the corpus is
// written, which it then takes in as writes.
func listsServerKept(t *testing.T, st store.Store, keepFirst bool) recommenderv1.RecommenderServiceClient {
	t.Helper()
	api := embedtest.New(32)
	t.Cleanup(api.Close)
	emb, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: "fake", Dimensions: 32, MaxInputs: 512})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := startLoopback(ctx, st, emb, app.WithNeighbourLists(listLength, 2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lb.Close(); err != nil {
			t.Error(err)
		}
	})
	c := recommenderv1.NewRecommenderServiceClient(lb.Conn)
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	if !keepFirst {
		testutil.Ingest(t, c, papers)
	}
	kctx, cancel := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- lb.App.KeepNeighbourLists(kctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-kept; !errors.Is(err, context.Canceled) {
			t.Errorf("keeping the lists: %v", err)
		}
	})
	if keepFirst { // the corpus in three writes, each taken in before the next
		listsCurrent(t, c)
		for i := 0; i < len(papers); i += 16 {
			testutil.Ingest(t, c, papers[i:min(i+16, len(papers))])
			listsCurrent(t, c)
		}
	}
	return c
}

// TestBulkWritesRebuildTheLists: many papers written at once after the lists were built (here
// a third of the corpus, three times) are taken in by computing every list again, so every list is what a search answers,
// scores included (reverse neighbours alone would leave older lists' scores behind).
func TestBulkWritesRebuildTheLists(t *testing.T) {
	st, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := listsServerKept(t, st, true)
	papers, _ := demo.Papers()
	if l := listsCurrent(t, c); l.GetLists() != int64(len(papers)) {
		t.Fatalf("lists info %v; want %d lists", l, len(papers))
	}
	for _, p := range papers {
		sameAsSearch(t, c, p.GetId())
	}
}

// listsCurrent waits until the lists reflect every write.
func listsCurrent(t *testing.T, c recommenderv1.RecommenderServiceClient) *recommenderv1.NeighbourListsInfo {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		info, err := c.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if l := info.GetNeighbourLists(); l.GetBuilt() && l.GetPendingWrites() == 0 {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lists are not current after a minute: %v", info.GetNeighbourLists())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not timing one
	}
}

func resultIDs(rs []*recommenderv1.Recommendation) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetPaper().GetId())
	}
	return out
}

// sameAsSearch fails unless paper id's similar papers come from its list and equal a search's.
func sameAsSearch(t *testing.T, c recommenderv1.RecommenderServiceClient, id string) []string {
	t.Helper()
	got, err := c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: id, PageSize: listLength})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
		t.Fatalf("%s: source %v (%s), want the list", id, got.GetSource(), got.GetSearchReason())
	}
	want, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{id}, PageSize: listLength})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resultIDs(got.GetResults()), resultIDs(want.GetResults())) {
		t.Fatalf("%s: list %v, search %v", id, resultIDs(got.GetResults()), resultIDs(want.GetResults()))
	}
	for i, r := range got.GetResults() {
		w := want.GetResults()[i]
		if r.GetScore() != w.GetScore() || r.GetRelevance() != w.GetRelevance() || r.GetPaper().GetTitle() != w.GetPaper().GetTitle() ||
			r.GetPaper().GetAbstract() != w.GetPaper().GetAbstract() {
			t.Fatalf("%s: result %d differs from the search's: %v vs %v", id, i, r, w)
		}
	}
	if got.GetMode() != want.GetMode() || got.GetEmbeddingModel() != want.GetEmbeddingModel() {
		t.Fatalf("%s: mode %v model %s, the search's %v %s", id, got.GetMode(), got.GetEmbeddingModel(), want.GetMode(), want.GetEmbeddingModel())
	}
	return resultIDs(got.GetResults())
}

func TestSimilarPapersFromLists(t *testing.T) { eachStore(t, testSimilarPapersFromLists) }

func testSimilarPapersFromLists(t *testing.T, open func(t *testing.T, name string) store.Store) {
	c := listsServer(t, open(t, "lists"))
	papers, _ := demo.Papers()
	if l := listsCurrent(t, c); l.GetLists() != int64(len(papers)) || l.GetLength() != listLength {
		t.Fatalf("lists info %v; want %d lists of %d", l, len(papers), listLength)
	}
	for _, p := range papers {
		sameAsSearch(t, c, p.GetId())
	}

	// The brief view: the same papers, their id, title, year and date only.
	for _, p := range papers[:5] {
		full := sameAsSearch(t, c, p.GetId())
		brief, err := c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: p.GetId(), PageSize: listLength,
			View: recommenderv1.PaperView_PAPER_VIEW_BRIEF})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resultIDs(brief.GetResults()), full) || brief.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
			t.Fatalf("brief: %v from %v, full %v", resultIDs(brief.GetResults()), brief.GetSource(), full)
		}
		for _, r := range brief.GetResults() {
			if r.GetPaper().GetTitle() == "" || r.GetPaper().GetAbstract() != "" || len(r.GetPaper().GetAuthors()) > 0 {
				t.Fatalf("a brief paper: %v", r.GetPaper())
			}
		}
	}

	// Any other shape is searched, and says why.
	id := papers[0].GetId()
	for _, req := range []*recommenderv1.SimilarPapersRequest{
		{PaperId: id, PageSize: listLength + 1},
		{PaperId: id, Filter: &recommenderv1.Filter{MinYear: 2000}},
		{PaperId: id, Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL},
	} {
		resp, err := c.SimilarPapers(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSource() != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_SEARCH || resp.GetSearchReason() == "" {
			t.Errorf("%v: source %v, reason %q; want a search with its reason", req, resp.GetSource(), resp.GetSearchReason())
		}
	}
	_, err := c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: "no-such-paper"})
	wantCode(t, err, codes.NotFound)
	if fields := wantCode(t, func() error {
		_, err := c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{})
		return err
	}(), codes.InvalidArgument); !slices.Equal(fields, []string{"paper_id"}) {
		t.Errorf("an empty id: violations %v, want paper_id", fields)
	}
	_, err = c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: id, View: 7})
	if fields := wantCode(t, err, codes.InvalidArgument); !slices.Equal(fields, []string{"view"}) {
		t.Errorf("an unknown view: violations %v, want view", fields)
	}

	// A new paper written like one stored enters that paper's list (its reverse neighbour),
	// and has its own; a deleted paper's list goes with it.
	twin := proto.Clone(papers[3]).(*recommenderv1.Paper)
	twin.Id, twin.Title = "twin-of-3", "A second look: "+twin.GetTitle()
	if _, err := c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{twin}}); err != nil {
		t.Fatal(err)
	}
	listsCurrent(t, c)
	if got := sameAsSearch(t, c, papers[3].GetId()); !slices.Contains(got, twin.GetId()) {
		t.Fatalf("the twin of %s is not in its list %v", papers[3].GetId(), got)
	}
	sameAsSearch(t, c, twin.GetId())
	if _, err := c.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{PaperIds: []string{twin.GetId()}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: twin.GetId()})
	wantCode(t, err, codes.NotFound)
	// Its place in others' lists is left out when they are read.
	resp, err := c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: papers[3].GetId(), PageSize: 2})
	if err != nil || slices.Contains(resultIDs(resp.GetResults()), twin.GetId()) {
		t.Fatalf("after the twin's delete: %v, %v", resultIDs(resp.GetResults()), err)
	}
}

func TestExportNeighbourLists(t *testing.T) { eachStore(t, testExportNeighbourLists) }

func testExportNeighbourLists(t *testing.T, open func(t *testing.T, name string) store.Store) {
	c := listsServer(t, open(t, "export"))
	papers, _ := demo.Papers()
	listsCurrent(t, c)
	export := func(after string) []*recommenderv1.NeighbourList {
		stream, err := c.ExportNeighbourLists(ctx, &recommenderv1.ExportNeighbourListsRequest{AfterPaperId: after})
		if err != nil {
			t.Fatal(err)
		}
		var out []*recommenderv1.NeighbourList
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp.GetLists()...)
		}
	}
	all := export("")
	if len(all) != len(papers) {
		t.Fatalf("exported %d lists, want %d", len(all), len(papers))
	}
	for _, l := range all {
		var ids []string
		for _, n := range l.GetNeighbours() {
			ids = append(ids, n.GetPaperId())
		}
		if want := sameAsSearch(t, c, l.GetPaperId()); !slices.Equal(ids, want) {
			t.Fatalf("exported list of %s %v, served %v", l.GetPaperId(), ids, want)
		}
		if _, err := time.Parse(time.RFC3339, l.GetComputedAt()); err != nil {
			t.Fatal(err)
		}
	}
	// A deleted paper leaves the export, its own list and its place in the others'.
	gone := all[0].GetNeighbours()[0].GetPaperId()
	if _, err := c.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{PaperIds: []string{gone}}); err != nil {
		t.Fatal(err)
	}
	after := export("")
	if len(after) != len(all)-1 {
		t.Fatalf("exported %d lists after a delete, want %d", len(after), len(all)-1)
	}
	for _, l := range after {
		for _, n := range l.GetNeighbours() {
			if l.GetPaperId() == gone || n.GetPaperId() == gone {
				t.Fatalf("the deleted %s is still exported: %v", gone, l)
			}
		}
	}
	all = after
	stream, err := c.ExportNeighbourLists(ctx, &recommenderv1.ExportNeighbourListsRequest{AfterPaperId: "bad id"})
	if err == nil {
		_, err = stream.Recv()
	}
	if fields := wantCode(t, err, codes.InvalidArgument); !slices.Equal(fields, []string{"after_paper_id"}) {
		t.Errorf("a malformed after_paper_id: violations %v", fields)
	}
	// Resuming after the tenth list sends the rest.
	if rest := export(all[9].GetPaperId()); len(rest) != len(all)-10 || rest[0].GetPaperId() != all[10].GetPaperId() {
		t.Fatalf("resumed after the 10th: %d lists from %s; want %d from %s", len(rest), rest[0].GetPaperId(), len(all)-10, all[10].GetPaperId())
	}
}

// TestNeighbourListsSurviveARestart: lists are durable with the store, and lists computed with
// another setting (here their length) are not served until rebuilt with the new one.
func TestNeighbourListsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	api := embedtest.New(32)
	defer api.Close()
	emb, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: "fake", Dimensions: 32, MaxInputs: 512})
	if err != nil {
		t.Fatal(err)
	}
	papers, _ := demo.Papers()
	id := papers[0].GetId()
	// serve opens the store in dir with lists of length, kept by this server when keep; stop
	// closes it all.
	serve := func(length int, keep bool) (c recommenderv1.RecommenderServiceClient, stop func()) {
		st, err := embedded.Open(ctx, embedded.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		lb, err := startLoopback(ctx, st, emb, app.WithNeighbourLists(length, 1))
		if err != nil {
			t.Fatal(err)
		}
		kctx, cancel := context.WithCancel(ctx)
		kept := make(chan error, 1)
		if keep {
			go func() { kept <- lb.App.KeepNeighbourLists(kctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
		} else {
			kept <- context.Canceled
		}
		return recommenderv1.NewRecommenderServiceClient(lb.Conn), func() {
			cancel()
			if err := <-kept; !errors.Is(err, context.Canceled) {
				t.Errorf("keeping the lists: %v", err)
			}
			if err := errors.Join(lb.Close(), st.Close()); err != nil {
				t.Error(err)
			}
		}
	}
	source := func(c recommenderv1.RecommenderServiceClient, size int) (recommenderv1.NeighbourSource, string) {
		resp, err := c.SimilarPapers(ctx, &recommenderv1.SimilarPapersRequest{PaperId: id, PageSize: int32(size)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSource(), resp.GetSearchReason()
	}

	c, stop := serve(listLength, true)
	testutil.Ingest(t, c, papers)
	listsCurrent(t, c)
	stop()

	c, stop = serve(listLength, false) // no upkeep: what is served was stored by the first server
	if src, why := source(c, listLength); src != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
		t.Fatalf("after a restart: %v (%s), want the stored list", src, why)
	}
	stop()

	c, stop = serve(3, false)
	if src, why := source(c, 3); src != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_SEARCH || why != "the paper's list is not built yet" {
		t.Fatalf("lists of another length: %v (%s), want a search until they are rebuilt", src, why)
	}
	stop()
	c, stop = serve(3, true)
	defer stop()
	if l := listsCurrent(t, c); l.GetLength() != 3 || l.GetLists() != int64(len(papers)) {
		t.Fatalf("rebuilt: %v", l)
	}
	if src, why := source(c, 3); src != recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST {
		t.Fatalf("after the rebuild: %v (%s)", src, why)
	}
}
