package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/store/qdrant/qdranttest"
)

// killable is a Qdrant a test can take down and bring back on the same address and data.
type killable struct {
	url           string
	kill, restart func() error
}

// TestBackfillSurvivesQdrantRestart takes Qdrant down in the middle of a backfill and brings it
// back: the service turns NOT_SERVING then SERVING, the backfill carries on by itself, and every
// paper it sent is stored. It runs on the contract double, and on a real Qdrant when QDRANT_BIN
// names its binary: the test then starts Qdrant in a temporary folder and SIGKILLs it.
func TestBackfillSurvivesQdrantRestart(t *testing.T) {
	t.Parallel()
	t.Run("double", func(t *testing.T) {
		d, err := qdranttest.Start()
		if err != nil {
			t.Fatal(err)
		}
		defer d.Stop()
		testQdrantKill(t, killable{url: d.URL(), kill: func() error { d.Stop(); return nil }, restart: d.Restart})
	})
	t.Run("real", func(t *testing.T) {
		bin := os.Getenv("QDRANT_BIN")
		if bin == "" {
			t.Skip("set QDRANT_BIN to a Qdrant binary to kill a real Qdrant mid-backfill")
		}
		p, err := qdranttest.StartProcess(bin, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		testQdrantKill(t, killable{url: p.URL(), kill: p.Kill, restart: p.Restart})
	})
}

func testQdrantKill(t *testing.T, q killable) {
	const n = 2000
	api := embedtest.New(16)
	defer api.Close()
	p := startServeEnv(t, []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake-model"}, t.TempDir(),
		"--store", "qdrant", "--qdrant-url", q.url, "--qdrant-health-interval", "50ms", "--qdrant-timeout", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	watch, err := healthpb.NewHealthClient(p.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "recommender.v1.RecommenderService"})
	if err != nil {
		t.Fatal(err)
	}
	waitHealth(t, watch, healthpb.HealthCheckResponse_SERVING)

	file := filepath.Join(t.TempDir(), "papers.jsonl")
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"id":"kill-%04d","title":"Paper %d on topic %d","abstract":"Words about topic %d and item %d."}`+"\n", i, i, i%37, i%37, i)
	}
	if err := os.WriteFile(file, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The embedding API holds the service once 1,100 papers are embedded: Qdrant goes down at
	// that point of the backfill, not before it started or after it ended. The streams are of
	// 100 papers, then of 300 (a fast server), so 100 papers of the stream held are stored.
	const holdAt = n/2 + 100
	held := api.PauseAt(holdAt)
	backfill, stdout, sc := startCLI(ctx, t, "backfill", "--server", p.addr, "--file", file,
		"--batch-size", "100", "--stream-papers", "300", "--retry-for", "2m")
	// The backfill's stderr, read to its end; retried is closed at its first retry.
	var stderr strings.Builder
	retried, stderrDone := make(chan struct{}), make(chan struct{})
	retrying := retried
	go func() {
		defer close(stderrDone)
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			if retrying != nil && strings.Contains(sc.Text(), "again in") {
				close(retrying)
				retrying = nil
			}
		}
	}()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the backfill never reached half way")
	}
	// Once Qdrant has applied what was embedded (the last batch of it is in a stream the server
	// has not acknowledged yet), the kill comes.
	waitCount(ctx, t, p.client, holdAt)
	if err := q.kill(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, watch, healthpb.HealthCheckResponse_NOT_SERVING)
	api.Resume() // the papers held now meet a Qdrant that is down
	// Qdrant comes back only once the backfill has met the outage.
	select {
	case <-retried:
	case <-stderrDone:
		t.Fatalf("the backfill ended without meeting the outage:\n%s%s", stdout.String(), stderr.String())
	case <-ctx.Done():
		t.Fatal("the backfill never retried while Qdrant was down")
	}
	if err := q.restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, watch, healthpb.HealthCheckResponse_SERVING)
	<-stderrDone
	if err := backfill.Wait(); err != nil {
		t.Fatalf("backfill: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("backfill:\n%s%s", stdout.String(), stderr.String())
	// The stream cut by the outage is sent again: its papers Qdrant had stored before it went
	// down are found there and counted unchanged (at least the batch of 100 past the last stream
	// of 300 acknowledged; more when a resend is cut again part way, which a loaded machine's
	// timing allows); none is lost, rejected or counted twice.
	var inserted, unchanged int
	got := summary.FindString(stdout.String())
	if _, err := fmt.Sscanf(got, "inserted %d, updated 0, unchanged %d, rejected 0, malformed lines 0", &inserted, &unchanged); err != nil ||
		inserted+unchanged != n || unchanged < 100 || unchanged%100 != 0 {
		t.Errorf("backfill summary %q: want every paper inserted or found unchanged once, the resent batches unchanged", got)
	}

	info, err := p.client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetPaperCount() != n {
		t.Errorf("%d papers stored, want %d", info.GetPaperCount(), n)
	}
	rec, err := p.client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"kill-0005"}})
	if err != nil || len(rec.GetResults()) == 0 {
		t.Fatalf("recommend after the restart: %v, %v", rec, err)
	}
	for i := range n {
		id := fmt.Sprintf("kill-%04d", i)
		got, err := p.client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: id})
		if err != nil || got.GetPaper().GetTitle() != fmt.Sprintf("Paper %d on topic %d", i, i%37) {
			t.Fatalf("GetPaper(%s) after the restart: %v, %v", id, got, err)
		}
	}
}

// waitCount waits until the service reports want papers stored.
func waitCount(ctx context.Context, t *testing.T, client recommenderv1.RecommenderServiceClient, want int64) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
		if err == nil && info.GetPaperCount() == want {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for %d papers stored: %v, %v", want, info, err)
		}
	}
}

// TestBenchGRPCStores runs the load benchmark briefly on each store: the second run on a kept
// store loads it instead of ingesting again, and a run with another corpus is refused.
func TestBenchGRPCStores(t *testing.T) {
	t.Parallel()
	d, err := qdranttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	for _, tc := range []struct {
		name  string
		where string
		args  []string
	}{
		{"embedded", "the embedded store (vector index)", []string{"--data-dir", t.TempDir()}},
		{"qdrant", "Qdrant (collection bench_grpc)", []string{"--store", "qdrant", "--qdrant-url", d.URL()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"bench-grpc", "--papers", "300", "--dims", "16", "--seconds", "0.1", "--clients", "1,2"}, tc.args...)
			for i, want := range []string{"300 papers ingested into " + tc.where, "300 papers loaded from " + tc.where} {
				out, errOut, code := runCLI(t, args...)
				if code != 0 || !strings.HasPrefix(out, want) {
					t.Fatalf("run %d: exit %d, want output starting %q:\n%s%s", i+1, code, want, out, errOut)
				}
				for _, row := range []string{"\nseed            1 ", "\nseed            2 ", "\ntext            1 ", "\ntext            2 ", "\nembed           1 "} {
					if !strings.Contains(out, row) {
						t.Fatalf("run %d: no row %q in\n%s", i+1, strings.TrimSpace(row), out)
					}
				}
			}
			// Another corpus size would mix with the papers kept: refused, not merged.
			args[2] = "200"
			if _, errOut, code := runCLI(t, args...); code != 1 || !strings.Contains(errOut, "the store holds 300 papers, not the 200 of this run") {
				t.Fatalf("run with another --papers: exit %d, %s", code, errOut)
			}
		})
	}
}
