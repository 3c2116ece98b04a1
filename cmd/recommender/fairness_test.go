package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed/embedtest"
)

// TestAFloodingKeyDoesNotStarveAnother: key A (rate=5 burst=5) is flooded by 16 clients while
// key B asks for recommendations one after another, for a second before, during and after; B is
// never refused, A is beyond its rate, its refusals held so its clients cannot send faster than
// its rate allows. The test prints B's latency in each second (the goal: p99 during at most
// twice p99 before; printed, not asserted: timings are for benchmarks).
func TestAFloodingKeyDoesNotStarveAnother(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("read "+readKey+" rate=5 burst=5\nread "+readKey2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, t.TempDir(), "--demo", "--api-keys-file", keys)
	ctx := context.Background()
	b, _ := clientWithKey(t, p.addr, readKey2)
	// measure sends key B's calls one after another for a second.
	measure := func(what string) []time.Duration {
		var lat []time.Duration
		for i, end := 0, time.Now().Add(time.Second); time.Now().Before(end); i++ {
			start := time.Now()
			if _, err := b.Recommend(ctx, &recommenderv1.RecommendRequest{Query: fmt.Sprintf("speech recognition %d", i%7)}); err != nil {
				t.Fatalf("key B, %s: %v", what, err)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	before := measure("before")
	stop := make(chan struct{})
	var accepted, refused, other atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		a, _ := clientWithKey(t, p.addr, readKey)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := a.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "federated learning"})
				switch status.Code(err) {
				case codes.OK:
					accepted.Add(1)
				case codes.ResourceExhausted:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	during := measure("during the flood")
	close(stop)
	wg.Wait()
	after := measure("after")
	for _, r := range []struct {
		name string
		lat  []time.Duration
	}{{"before", before}, {"during", during}, {"after", after}} {
		t.Logf("key B %-6s the flood: %4d calls, p50 %v, p99 %v", r.name, len(r.lat),
			percentile(r.lat, 0.5).Round(10*time.Microsecond), percentile(r.lat, 0.99).Round(10*time.Microsecond))
	}
	t.Logf("key A (rate=5 burst=5, 16 clients): %d accepted, %d refused RESOURCE_EXHAUSTED, %d other", accepted.Load(), refused.Load(), other.Load())
	if refused.Load() == 0 || other.Load() > 0 {
		t.Fatalf("key A: %d refused, %d other errors; want refusals only", refused.Load(), other.Load())
	}
	// Held, each of A's clients gets about one refusal per 0.2 s (its rate's interval): some
	// 80 in the second, not the thousands a client sending as fast as it can would get.
	if n := refused.Load(); n > 1000 {
		t.Fatalf("key A was refused %d times in a second: its refusals are not held", n)
	}
}

// A caller's unary calls in flight are bounded (--max-calls-per-caller): past the bound a call
// is refused at once, and another key is served.
func TestCallsInFlightPerCaller(t *testing.T) {
	t.Parallel()
	api := embedtest.New(16)
	defer api.Close()
	p := startServeEnv(t, []string{keysEnv, "EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake", "EMBEDDING_MAX_CONCURRENCY=4"},
		t.TempDir(), "--demo", "--max-calls-per-caller", "2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, _ := clientWithKey(t, p.addr, readKey)
	before := api.Inputs()
	api.PauseAt(before) // text queries wait at the embedding API
	held := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := a.Recommend(ctx, &recommenderv1.RecommendRequest{Query: "speech"})
			held <- err
		}()
	}
	if err := api.WaitInputs(ctx, before+2); err != nil {
		t.Fatal(err)
	}
	_, err := a.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0019"}})
	wantStatus(t, err, codes.ResourceExhausted, "a third call of a caller with two in flight")
	b, _ := clientWithKey(t, p.addr, readKey2)
	if _, err := b.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0019"}}); err != nil {
		t.Fatalf("another key: %v", err)
	}
	api.Resume()
	for range 2 {
		if err := <-held; err != nil {
			t.Fatalf("a held call: %v", err)
		}
	}
	if _, err := a.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0019"}}); err != nil {
		t.Fatalf("once the calls ended: %v", err)
	}
}

// Idle connections from one address are bounded on each port: past --max-connections-per-address
// a new one is closed at once, and once the client lets go, it connects again.
func TestIdleConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "--demo", "--max-connections-per-address", "20")
	for _, addr := range []string{p.addr, p.httpAddr} {
		var conns []net.Conn
		for range 30 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Each read waits until the server closes the connection, or until the deadline for
		// one it holds.
		var closed atomic.Int32
		var wg sync.WaitGroup
		deadline := time.Now().Add(300 * time.Millisecond)
		for _, c := range conns {
			wg.Go(func() {
				_ = c.SetReadDeadline(deadline)
				if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					closed.Add(1)
				}
			})
		}
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
		if n := closed.Load(); n != 10 {
			t.Errorf("%s: %d of 30 idle connections closed by the server, want the 10 past the bound of 20", addr, n)
		}
	}
	// Let go of, the connections count no more.
	c, _ := clientWithKey(t, p.addr, "")
	if _, err := c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{}); err != nil {
		t.Fatalf("a client after the idle connections closed: %v", err)
	}
}
