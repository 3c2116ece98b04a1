package server_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/synth"
	"github.com/paperrec/recommender/internal/testutil"
)

func samplePapers(b *testing.B) []*recommenderv1.Paper {
	return testutil.ReadPapers(b, filepath.Join(testutil.SharedDir(b), "data", "arxiv-cs-sample.jsonl.gz"))
}

// BenchmarkRecommendBySeed measures Recommend over gRPC on loopback with each paper of the shared
// sample as the seed in turn, and reports latency percentiles.
func BenchmarkRecommendBySeed(b *testing.B) {
	papers := samplePapers(b)
	srv := testutil.StartServer(b)
	testutil.Ingest(b, srv.Client, papers)
	benchSeeds(b, srv.Client, papers, 0)
}

// BenchmarkDiversity compares seed requests with and without diversity (MMR over the 300-paper
// re-ranking pool), on the sample without vectors (lexical similarity) and with vectors (a fake
// embedding API's, 64 dimensions).
func BenchmarkDiversity(b *testing.B) {
	papers := samplePapers(b)
	for _, withVectors := range []bool{false, true} {
		o := testutil.Options{}
		name := "lexical"
		if withVectors {
			api := embedtest.New(64)
			b.Cleanup(api.Close)
			emb, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: "fake", Dimensions: 64, MaxInputs: 512})
			if err != nil {
				b.Fatal(err)
			}
			o.Embedder, name = emb, "vectors"
		}
		srv := testutil.StartServerWith(b, o)
		testutil.Ingest(b, srv.Client, papers)
		for _, diversity := range []float32{0, 0.5} {
			b.Run(fmt.Sprintf("%s/diversity=%.1f", name, diversity), func(b *testing.B) { benchSeeds(b, srv.Client, papers, diversity) })
		}
	}
}

// benchSeeds sends seed requests, each paper in turn, and reports latency percentiles.
func benchSeeds(b *testing.B, client recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, diversity float32) {
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		start := time.Now()
		_, err := client.Recommend(context.Background(), &recommenderv1.RecommendRequest{
			PositivePaperIds: []string{papers[i%len(papers)].GetId()}, PageSize: 10, Diversity: diversity})
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkIngestSample streams the whole shared sample through IngestPapers into a fresh
// embedded store (fsync per 500-paper batch) and reports papers per second.
func BenchmarkIngestSample(b *testing.B) {
	papers := samplePapers(b)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		srv := testutil.StartServer(b)
		b.StartTimer()
		start := time.Now()
		if resp := testutil.Ingest(b, srv.Client, papers); resp.GetInserted() != int64(len(papers)) {
			b.Fatalf("inserted %d of %d", resp.GetInserted(), len(papers))
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(len(papers)*b.N)/total.Seconds(), "papers/s")
}

// BenchmarkBackfillRateLimited ingests the shared sample through IngestPapers with embeddings
// from the fake API, which answers each request after 50 ms, while the client paces itself to
// 1,200 requests per minute. It reports how much of that budget the pipeline used: the
// fraction falls below 1 when embedding waits on the store or on the stream.
func BenchmarkBackfillRateLimited(b *testing.B) {
	const rpm = 1200
	papers := samplePapers(b)
	var requests int
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		api := embedtest.New(64)
		api.SetLatency(50 * time.Millisecond)
		emb, err := embed.New(embed.Config{BaseURL: api.BaseURL(), Model: "fake", Dimensions: 64,
			MaxInputs: 32, MaxConcurrency: 4, RequestsPerMinute: rpm})
		if err != nil {
			b.Fatal(err)
		}
		srv := testutil.StartServerWith(b, testutil.Options{Embedder: emb})
		b.StartTimer()
		start := time.Now()
		if resp := testutil.Ingest(b, srv.Client, papers); resp.GetInserted() != int64(len(papers)) {
			b.Fatalf("inserted %d of %d", resp.GetInserted(), len(papers))
		}
		elapsed += time.Since(start)
		requests += len(api.Requests())
		api.Close()
	}
	achieved := float64(requests) / elapsed.Minutes()
	b.ReportMetric(achieved, "requests/min")
	b.ReportMetric(achieved/rpm, "fraction-of-rpm")
	b.ReportMetric(float64(len(papers)*b.N)/elapsed.Seconds(), "papers/s")
}

// BenchmarkFeedThreshold: 100,000 synthetic papers stored (drawn from a model of the sample), a
// feed on one topic (an inline seed: a sample paper of the commonest topic; min_relevance 0.5),
// then 50 new papers of that topic and 50 of others written. It prints how many new papers reach
// the threshold, how many the stream delivered, and how many the former rule, the feed's best 100
// of the whole store, would have; and fails when the stream missed one that reaches the threshold
// or sent one that does not. A new paper's relevance to the feed is the calibration of the
// feed's kind of request (one seed, lexical) applied to its lexical similarity to the seed, read
// from a request that ranks the new papers as candidates with explanations: more papers than a
// request may page through (1,000) reach 0.5 here, so paging the feed's own request cannot say.
func BenchmarkFeedThreshold(b *testing.B) {
	const stored = 100_000
	papers := samplePapers(b)
	model := synth.Train(papers)
	count := map[string]int{}
	for _, p := range papers {
		for _, t := range p.GetTopics() {
			count[t]++
		}
	}
	topic := ""
	for t, n := range count {
		if topic == "" || n > count[topic] || (n == count[topic] && t < topic) {
			topic = t
		}
	}
	seedIdx := slices.IndexFunc(papers, func(p *recommenderv1.Paper) bool { return slices.Contains(p.GetTopics(), topic) })
	seed := papers[seedIdx]
	srv := testutil.StartServer(b)
	rng := rand.New(rand.NewPCG(1, 2))
	var batch []*recommenderv1.Paper
	for i := range stored {
		batch = append(batch, model.Paper(rng, fmt.Sprintf("s-%06d", i)))
		if len(batch) == 1000 {
			testutil.Ingest(b, srv.Client, batch)
			batch = nil
		}
	}
	seedPapers := []*recommenderv1.SeedPaper{{Title: seed.GetTitle(), Abstract: seed.GetAbstract()}}
	const minRelevance = 0.5
	calibration := recommend.Calibrations[recommend.KindSeed][recommend.ModeLexical]
	for b.Loop() {
		feed := createFeed(b, srv.Client, &recommenderv1.Feed{Name: "one topic", MinRelevance: minRelevance, PositivePapers: seedPapers})
		stream := openStream(b, srv.Client, &recommenderv1.StreamFeedRequest{FeedId: feed.GetFeedId()})
		stream.untilHeartbeat()
		var written []*recommenderv1.Paper
		on := map[string]bool{}
		for len(written) < 100 {
			p := model.Paper(rng, "")
			onTopic := slices.Contains(p.GetTopics(), topic)
			if n := len(on); (onTopic && n >= 50) || (!onTopic && len(written)-n >= 50) {
				continue
			}
			p.Id = fmt.Sprintf("new-%s-%03d", map[bool]string{true: "on", false: "off"}[onTopic], len(written))
			if onTopic {
				on[p.Id] = true
			}
			written = append(written, p)
		}
		// The last write is the seed's own text: it reaches any threshold, and ends the wait.
		sentinel := &recommenderv1.Paper{Id: "new-sentinel", Title: seed.GetTitle(), Abstract: seed.GetAbstract()}
		upsert(b, srv.Client, written[:50]...)
		upsert(b, srv.Client, append(written[50:], sentinel)...)
		var delivered []string
		for !slices.Contains(delivered, sentinel.Id) {
			delivered = append(delivered, stream.recv(1)...)
		}
		// What reaches the threshold, and what the former rule would have sent: those among the
		// feed's best 100 of the whole store.
		ids := []string{}
		for _, p := range written {
			ids = append(ids, p.GetId())
		}
		resp, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePapers: seedPapers, CandidatePaperIds: ids,
			PageSize: 100, Explain: true})
		if err != nil {
			b.Fatal(err)
		}
		reach := map[string]bool{}
		for _, r := range resp.GetResults() {
			share := float64(r.GetExplanation().GetLexicalSimilarity())
			if calibration.Relevance(recommend.Features(recommend.KindSeed, recommend.ModeLexical, recommend.Signals{LexicalShare: share}, recommend.Context{})) >= minRelevance {
				reach[r.GetPaper().GetId()] = true
			}
		}
		top, err := srv.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePapers: seedPapers, PageSize: 100})
		if err != nil {
			b.Fatal(err)
		}
		former := 0
		for _, r := range top.GetResults() {
			if reach[r.GetPaper().GetId()] {
				former++
			}
		}
		got := map[string]bool{}
		for _, id := range delivered {
			if id != sentinel.Id {
				got[id] = true
			}
		}
		reachOn, gotOn := 0, 0
		for id := range reach {
			if on[id] {
				reachOn++
			}
		}
		for id := range got {
			if on[id] {
				gotOn++
			}
		}
		b.Logf("%d papers stored, 100 written (50 on %s, 50 off): %d reach min_relevance %.1f (%d on topic, %d off); "+
			"the stream delivered %d (%d on topic, %d off); the former rule (the feed's best 100 of the store) would have delivered %d",
			stored, topic, len(reach), minRelevance, reachOn, len(reach)-reachOn, len(got), gotOn, len(got)-gotOn, former)
		if !maps.Equal(got, reach) {
			b.Fatalf("delivered %v, want exactly those reaching the threshold %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(reach)))
		}
		stream.cancel()
		if _, err := srv.Client.DeleteFeed(ctx, &recommenderv1.DeleteFeedRequest{FeedId: feed.GetFeedId()}); err != nil {
			b.Fatal(err)
		}
		del := []string{sentinel.Id}
		for _, p := range written {
			del = append(del, p.GetId())
		}
		if _, err := srv.Client.DeletePapers(ctx, &recommenderv1.DeletePapersRequest{PaperIds: del}); err != nil {
			b.Fatal(err)
		}
	}
}
