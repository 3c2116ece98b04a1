package server_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/testutil"
)

// followFederated is a feed of federated learning papers over the demo corpus.
var followFederated = &recommenderv1.Feed{Name: "federated privacy", Query: "federated learning privacy", MinRelevance: 0.5}

// newPaper is a paper written after the stream starts: on federated learning when on is true,
// else on soil chemistry (which the feed never matches: no shared word).
func newPaper(i int, on bool) *recommenderv1.Paper {
	if on {
		return &recommenderv1.Paper{Id: fmt.Sprintf("new-fl-%02d", i), Title: fmt.Sprintf("Federated learning with privacy guarantees, part %d", i),
			Abstract: "Clients train a shared model with federated learning while differential privacy protects each update."}
	}
	return &recommenderv1.Paper{Id: fmt.Sprintf("new-soil-%02d", i), Title: fmt.Sprintf("Nitrogen in soil, part %d", i),
		Abstract: "Measurements of nitrogen and moisture in agricultural soil."}
}

func createFeed(t testing.TB, c recommenderv1.RecommenderServiceClient, f *recommenderv1.Feed) *recommenderv1.Feed {
	t.Helper()
	resp, err := c.CreateFeed(ctx, &recommenderv1.CreateFeedRequest{Feed: f})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetFeed()
}

// feedStream reads a StreamFeed: events until the next heartbeat.
type feedStream struct {
	t      testing.TB
	stream recommenderv1.RecommenderService_StreamFeedClient
	cancel context.CancelFunc
	cursor string // of the last event or heartbeat read
}

func openStream(t testing.TB, c recommenderv1.RecommenderServiceClient, req *recommenderv1.StreamFeedRequest) *feedStream {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancel)
	stream, err := c.StreamFeed(sctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return &feedStream{t: t, stream: stream, cancel: cancel}
}

// next returns the ids of the papers sent before the next heartbeat (in order).
func (s *feedStream) untilHeartbeat() []string {
	s.t.Helper()
	var ids []string
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			s.t.Fatalf("stream: %v (after %v)", err, ids)
		}
		s.cursor = ev.GetCursor()
		if ev.GetPaper() == nil {
			return ids
		}
		if ev.GetRelevance() < 0.5 || ev.GetWriteTime() == "" {
			s.t.Fatalf("event %v below the feed's relevance or without a write time", ev)
		}
		ids = append(ids, ev.GetPaper().GetId())
	}
}

// recv reads exactly n paper events.
func (s *feedStream) recv(n int) []string {
	s.t.Helper()
	var ids []string
	for len(ids) < n {
		ev, err := s.stream.Recv()
		if err != nil {
			s.t.Fatalf("stream: %v (after %v)", err, ids)
		}
		if ev.GetPaper() != nil {
			ids = append(ids, ev.GetPaper().GetId())
			s.cursor = ev.GetCursor()
		}
	}
	return ids
}

func upsert(t testing.TB, c recommenderv1.RecommenderServiceClient, papers ...*recommenderv1.Paper) {
	t.Helper()
	if _, err := c.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: papers}); err != nil {
		t.Fatal(err)
	}
}

func TestFeedsCreateGetListDelete(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	a := createFeed(t, srv.Client, followFederated)
	b := createFeed(t, srv.Client, &recommenderv1.Feed{PositivePaperIds: []string{"demo-0014"}, PositivePapers: []*recommenderv1.SeedPaper{{Title: "Secure aggregation"}}})
	if a.GetFeedId() == "" || a.GetCreateTime() == "" || a.GetQuery() != followFederated.GetQuery() {
		t.Fatalf("created %v", a)
	}
	got, err := srv.Client.GetFeed(ctx, &recommenderv1.GetFeedRequest{FeedId: a.GetFeedId()})
	if err != nil || got.GetFeed().GetName() != "federated privacy" {
		t.Fatalf("get: %v (%v)", got, err)
	}
	list, err := srv.Client.ListFeeds(ctx, &recommenderv1.ListFeedsRequest{})
	if err != nil || len(list.GetFeeds()) != 2 || list.GetFeeds()[0].GetFeedId() != a.GetFeedId() || list.GetFeeds()[1].GetFeedId() != b.GetFeedId() {
		t.Fatalf("list, oldest first: %v (%v)", list, err)
	}
	if _, err := srv.Client.DeleteFeed(ctx, &recommenderv1.DeleteFeedRequest{FeedId: a.GetFeedId()}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error {
			_, err := srv.Client.GetFeed(ctx, &recommenderv1.GetFeedRequest{FeedId: a.GetFeedId()})
			return err
		}(),
		func() error {
			_, err := srv.Client.DeleteFeed(ctx, &recommenderv1.DeleteFeedRequest{FeedId: a.GetFeedId()})
			return err
		}(),
	} {
		wantCode(t, err, codes.NotFound)
		if server.Reason(err) != apierr.FeedNotFound {
			t.Fatalf("reason %q", server.Reason(err))
		}
	}
	for _, tc := range []struct {
		feed  *recommenderv1.Feed
		field string
	}{
		{&recommenderv1.Feed{}, "feed.query"},
		{&recommenderv1.Feed{Query: "graphs", MinRelevance: 1.5}, "feed.min_relevance"},
		{&recommenderv1.Feed{Query: "graphs", PositivePapers: []*recommenderv1.SeedPaper{{}}}, "feed.positive_papers[0]"},
	} {
		_, err := srv.Client.CreateFeed(ctx, &recommenderv1.CreateFeedRequest{Feed: tc.feed})
		if fields := wantCode(t, err, codes.InvalidArgument); !slices.Contains(fields, tc.field) {
			t.Errorf("%v: fields %v, want %s", tc.feed, fields, tc.field)
		}
	}
	// A stream's error arrives with its first receive.
	stream, err := srv.Client.StreamFeed(ctx, &recommenderv1.StreamFeedRequest{FeedId: b.GetFeedId(), Cursor: "not-a-cursor"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.InvalidArgument)
}

// Two clients follow one feed while papers are written: each gets the matching papers, in
// write order, and nothing else.
func TestTwoClientsStreamWhilePapersAreWritten(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	f := createFeed(t, srv.Client, followFederated)
	one := openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: f.GetFeedId()})
	two := openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: f.GetFeedId()})
	for _, s := range []*feedStream{one, two} {
		if ids := s.untilHeartbeat(); len(ids) != 0 {
			t.Fatalf("papers %v written before the stream started", ids)
		}
	}
	var want []string
	for i := range 6 {
		p := newPaper(i, i%3 != 2) // two of every three on federated learning
		upsert(t, srv.Client, p)
		if i%3 != 2 {
			want = append(want, p.GetId())
		}
	}
	for name, s := range map[string]*feedStream{"one": one, "two": two} {
		if got := s.recv(len(want)); !slices.Equal(got, want) {
			t.Errorf("client %s got %v, want %v", name, got, want)
		}
	}
	// A paper re-sent unchanged is no write; one changed is written again.
	upsert(t, srv.Client, newPaper(0, true))
	changed := newPaper(1, true)
	changed.Abstract += " Revised."
	upsert(t, srv.Client, changed)
	if got := one.recv(1); got[0] != changed.GetId() {
		t.Fatalf("after a re-send and a change: %v", got)
	}
}

// A client cut off mid-stream resumes with its last cursor and sees every matching paper
// exactly once; the backlog since a time comes first; a restart loses no feed or write.
func TestFeedResumesWithoutGapOrRepeat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var feedID, since string
	var want []string
	t.Run("before the restart", func(t *testing.T) {
		srv := testutil.StartServerWith(t, testutil.Options{Dir: dir})
		feedID = createFeed(t, srv.Client, followFederated).GetFeedId()
		since = time.Now().UTC().Format(time.RFC3339Nano)
		for i := range 8 {
			p := newPaper(i, i != 3)
			upsert(t, srv.Client, p)
			if i != 3 {
				want = append(want, p.GetId())
			}
		}
		s := openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: feedID, Since: since})
		first := s.recv(2)
		s.cancel() // the client goes away mid-backlog
		resumed := openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: feedID, Cursor: s.cursor})
		rest := resumed.untilHeartbeat()
		if got := append(first, rest...); !slices.Equal(got, want) {
			t.Fatalf("first %v then, resumed, %v: want each of %v once", first, rest, want)
		}
		resumed.cancel()
	})
	t.Run("after the restart", func(t *testing.T) {
		srv := testutil.StartServerWith(t, testutil.Options{Dir: dir})
		if _, err := srv.Client.GetFeed(ctx, &recommenderv1.GetFeedRequest{FeedId: feedID}); err != nil {
			t.Fatalf("the feed after a restart: %v", err)
		}
		s := openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: feedID, Since: since})
		if got := s.untilHeartbeat(); !slices.Equal(got, want) {
			t.Fatalf("backlog since %s after a restart: %v, want %v", since, got, want)
		}
		s.cancel()
	})
}

// A deleted feed's open stream ends with NOT_FOUND, matching papers written after or not; a
// cursor past the newest write (the largest sequence number, which would wrap) is refused.
func TestDeletedFeedsStreamEndsAndForeignCursorsAreRefused(t *testing.T) {
	t.Parallel()
	srv := demoServer(t)
	f := createFeed(t, srv.Client, followFederated)
	s := openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: f.GetFeedId()})
	s.untilHeartbeat()
	if _, err := srv.Client.DeleteFeed(ctx, &recommenderv1.DeleteFeedRequest{FeedId: f.GetFeedId()}); err != nil {
		t.Fatal(err)
	}
	upsert(t, srv.Client, newPaper(1, true))
	if ev, err := s.stream.Recv(); status.Code(err) != codes.NotFound || server.Reason(err) != apierr.FeedNotFound {
		t.Fatalf("stream of a deleted feed: %v, %v; want NOT_FOUND", ev, err)
	}

	g := createFeed(t, srv.Client, followFederated)
	for _, seq := range []uint64{math.MaxUint64, 1 << 40} {
		cursor := base64.RawURLEncoding.EncodeToString(append(binary.AppendUvarint([]byte{1}, seq), "x"...))
		st, err := srv.Client.StreamFeed(ctx, &recommenderv1.StreamFeedRequest{FeedId: g.GetFeedId(), Cursor: cursor})
		if err == nil {
			_, err = st.Recv()
		}
		if fields := wantCode(t, err, codes.InvalidArgument); !slices.Equal(fields, []string{"cursor"}) {
			t.Fatalf("cursor at sequence %d: violations %v", seq, fields)
		}
	}
}

// TestFeedCostGrowsWithWritesNotStreams: 20 streams of one feed (a query and 99 inline seeds),
// then 1,001 papers written in 101 upserts. The seeds are embedded once, when the feed is made,
// and each batch of writes is matched once for all the streams: beside the papers' own, the
// feed costs at most one embedding input (its query) per upsert, whatever the streams. It
// prints the inputs and the CPU time.
func TestFeedCostGrowsWithWritesNotStreams(t *testing.T) {
	api := embedtest.New(testDims)
	t.Cleanup(api.Close)
	emb := newEmbedder(t, api, "fake-embed")
	srv := demoServerWith(t, emb)
	feed := &recommenderv1.Feed{Query: "federated learning privacy", MinRelevance: 0.01}
	for i := range 99 {
		feed.PositivePapers = append(feed.PositivePapers, &recommenderv1.SeedPaper{
			Title: fmt.Sprintf("Private federated training, variant %d", i), Abstract: "Clients train a shared model; differential privacy protects each update."})
	}
	created := emb.Stats().Inputs
	f := createFeed(t, srv.Client, feed)
	created = emb.Stats().Inputs - created
	streams := make([]*feedStream, 20)
	for i := range streams {
		streams[i] = openStream(t, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: f.GetFeedId()})
		streams[i].untilHeartbeat()
	}
	before, cpu := emb.Stats().Inputs, cpuTime(t)
	const writes = 1000
	for b := range writes / 10 {
		var papers []*recommenderv1.Paper
		for i := range 10 {
			papers = append(papers, &recommenderv1.Paper{Id: fmt.Sprintf("w-%04d", 10*b+i), Title: fmt.Sprintf("Soil nitrogen, plot %d", 10*b+i),
				Abstract: "Measurements of nitrogen in agricultural soil."})
		}
		upsert(t, srv.Client, papers...)
	}
	last := &recommenderv1.Paper{Id: "w-last", Title: "Federated learning privacy", Abstract: "Federated learning with differential privacy."}
	upsert(t, srv.Client, last)
	for _, s := range streams {
		for !slices.Contains(s.recv(1), last.GetId()) {
		}
	}
	// The papers written are embedded once each, as any write is; what the feed costs beside
	// them is its query's embedding, once per batch of writes matched.
	inputs := emb.Stats().Inputs - before
	feedInputs := inputs - (writes + 1)
	t.Logf("20 streams of a feed of a query and 99 inline seeds, %d papers written in %d upserts: %d embedding inputs making the feed, %d while streaming (%d of them the feed's, beside the papers' own), %v of CPU",
		writes+1, writes/10+1, created, inputs, feedInputs, cpuTime(t)-cpu)
	if created != 99 || feedInputs > writes/10+1 {
		t.Fatalf("the feed cost %d embedding inputs made and %d streaming: want its 99 seeds once, then at most one per upsert, whatever the streams", created, feedInputs)
	}
}

// cpuTime is the CPU the process has used, user and system.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Round(time.Millisecond)
}
