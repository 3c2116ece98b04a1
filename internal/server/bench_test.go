package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
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
