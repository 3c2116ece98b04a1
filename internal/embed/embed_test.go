package embed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/embed/modeltest"
	"github.com/paperrec/recommender/internal/store"
)

const dims = 16

// fast returns a client for srv with millisecond backoff, so retry tests do not wait on our
// own backoff (waits on the server's Retry-After are what they measure).
func fast(t *testing.T, srv *embedtest.Server, tune func(*embed.Config)) *embed.Client {
	t.Helper()
	cfg := embed.Config{BaseURL: srv.BaseURL(), Model: "test-model", APIKey: "sk-test-secret",
		InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if tune != nil {
		tune(&cfg)
	}
	c, err := embed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("paper number %d about topic %d", i, i%3)
	}
	return out
}

func wantKind(t *testing.T, err error, kind embed.Kind) *embed.Error {
	t.Helper()
	var e *embed.Error
	if !errors.As(err, &e) || e.Kind != kind {
		t.Fatalf("error %v, want kind %v", err, kind)
	}
	return e
}

func TestBatchingByCountKeepsOrder(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	c := fast(t, srv, func(c *embed.Config) { c.MaxInputs = 3 })
	in := texts(10)
	vecs, err := c.Embed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, r := range srv.Requests() {
		sizes = append(sizes, len(r.Inputs))
		if r.Model != "test-model" || r.APIKey != "sk-test-secret" {
			t.Errorf("request model %q key %q", r.Model, r.APIKey)
		}
	}
	slices.Sort(sizes) // requests run concurrently
	if !slices.Equal(sizes, []int{1, 3, 3, 3}) {
		t.Fatalf("request sizes %v, want 3+3+3+1", sizes)
	}
	for i, v := range vecs {
		if !slices.Equal(v, embedtest.Vector(in[i], dims)) {
			t.Fatalf("vector %d is not the embedding of input %d", i, i)
		}
	}
	if st := c.Stats(); st.Requests != 4 || st.Inputs != 10 || st.Retries != 0 || c.Dimensions() != dims {
		t.Fatalf("stats %+v dims %d", st, c.Dimensions())
	}
}

func TestBatchingByTokenBudget(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	// 150-byte texts are 50 estimated tokens each; a 120-token budget fits two per request.
	c := fast(t, srv, func(c *embed.Config) { c.MaxTokens = 120; c.MaxInputTokens = 100 })
	in := make([]string, 5)
	for i := range in {
		in[i] = strings.Repeat(fmt.Sprintf("w%d ", i), 50)
	}
	if _, err := c.Embed(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	for _, r := range srv.Requests() {
		tokens := 0
		for _, s := range r.Inputs {
			tokens += embed.EstimateTokens(s)
		}
		if len(r.Inputs) > 2 || tokens > 120 {
			t.Fatalf("request of %d inputs, %d tokens: over the budget", len(r.Inputs), tokens)
		}
	}
	if n := len(srv.Requests()); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

func TestLongInputsAreTruncatedAtAWordBoundary(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	c := fast(t, srv, func(c *embed.Config) { c.MaxInputTokens = 10 }) // 30 bytes
	long := "alpha beta gamma delta epsilon zeta eta theta"
	if _, err := c.Embed(context.Background(), []string{long, "short"}); err != nil {
		t.Fatal(err)
	}
	got := srv.Requests()[0].Inputs
	if got[0] != "alpha beta gamma delta epsilon" || got[1] != "short" {
		t.Fatalf("sent %q", got)
	}
	if st := c.Stats(); st.Truncations != 1 {
		t.Fatalf("truncations %d, want 1", st.Truncations)
	}
}

func TestRateLimitedWithRetryAfterThenSuccess(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	srv.Inject(embedtest.Fault{Status: 429, Code: "rate_limit_exceeded", RetryAfter: "1"})
	c := fast(t, srv, nil)
	if _, err := c.Embed(context.Background(), texts(2)); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	// Our own backoff is at most 5ms here: the second request waited for Retry-After.
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Fatalf("retried after %v, before Retry-After's 1s", gap)
	}
	if st := c.Stats(); st.Retries != 1 {
		t.Fatalf("retries %d, want 1", st.Retries)
	}
}

func TestTransientFaultsAreRetried(t *testing.T) {
	for _, faults := range [][]embedtest.Fault{
		{{Status: 500}, {Status: 503}},
		{{Status: 502}, {Reset: true}},
		{{Status: 429, Code: "rate_limit_exceeded"}},
	} {
		srv := embedtest.New(dims)
		srv.Inject(faults...)
		c := fast(t, srv, nil)
		if _, err := c.Embed(context.Background(), texts(3)); err != nil {
			t.Fatalf("faults %+v: %v", faults, err)
		}
		if st := c.Stats(); st.Retries != int64(len(faults)) || st.Requests != int64(len(faults)+1) {
			t.Fatalf("faults %+v: stats %+v", faults, st)
		}
		srv.Close()
	}
}

func TestRetriesAreBounded(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	srv.Inject(embedtest.Fault{Status: 500}, embedtest.Fault{Status: 500}, embedtest.Fault{Status: 500})
	c := fast(t, srv, func(c *embed.Config) { c.MaxAttempts = 3 })
	e := wantKind(t, func() error { _, err := c.Embed(context.Background(), texts(1)); return err }(), embed.KindUnavailable)
	if e.Attempts != 3 || len(srv.Requests()) != 3 {
		t.Fatalf("attempts %d, requests %d; want 3", e.Attempts, len(srv.Requests()))
	}
}

func TestPermanentFailuresFailFast(t *testing.T) {
	for _, tc := range []struct {
		fault embedtest.Fault
		kind  embed.Kind
	}{
		{embedtest.Fault{Status: 429, Code: "insufficient_quota"}, embed.KindQuota},
		{embedtest.Fault{Status: 401, Code: "invalid_api_key"}, embed.KindAuth},
		{embedtest.Fault{Status: 401, Code: "invalid_api_key", EchoKey: true}, embed.KindAuth},
		{embedtest.Fault{Status: 404, Code: "model_not_found"}, embed.KindRejected},
		{embedtest.Fault{Status: 400}, embed.KindRejected},
	} {
		srv := embedtest.New(dims)
		srv.Inject(tc.fault)
		c := fast(t, srv, nil)
		_, err := c.Embed(context.Background(), texts(2))
		wantKind(t, err, tc.kind)
		if n := len(srv.Requests()); n != 1 {
			t.Fatalf("%+v: %d requests, want 1 (no retry)", tc.fault, n)
		}
		if strings.Contains(err.Error(), "sk-test-secret") {
			t.Fatalf("error leaks the API key: %v", err)
		}
		srv.Close()
	}
}

func TestBadResponsesAreRejected(t *testing.T) {
	for name, f := range map[string]embedtest.Fault{
		"wrong dims": {WrongDims: true}, "NaN": {NaN: true}, "wrong count": {WrongCount: true}, "out of order": {Reorder: true},
	} {
		t.Run(name, func(t *testing.T) {
			srv := embedtest.New(dims)
			defer srv.Close()
			srv.Inject(f)
			c := fast(t, srv, func(c *embed.Config) { c.Dimensions = dims })
			vecs, err := c.Embed(context.Background(), texts(3))
			wantKind(t, err, embed.KindBadResponse)
			if vecs != nil || len(srv.Requests()) != 1 {
				t.Fatalf("got vectors %v after %d requests; want none, no retry", vecs, len(srv.Requests()))
			}
		})
	}
}

func TestHangIsCutByTheDeadlineWithoutLeaks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := embedtest.New(dims)
	srv.Inject(embedtest.Fault{Hang: true})
	c := fast(t, srv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Embed(ctx, texts(2))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the caller's deadline", err)
	}
	srv.Close()
}

func TestHungRequestTimesOutAndIsRetried(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	srv.Inject(embedtest.Fault{Hang: true})
	var logged bytes.Buffer
	c := fast(t, srv, func(c *embed.Config) {
		c.RequestTimeout = 200 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	})
	if _, err := c.Embed(context.Background(), texts(2)); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Retries != 1 {
		t.Fatalf("retries %d, want 1", st.Retries)
	}
	// The timeout is logged once, with what happens next, and the key never.
	out := logged.String()
	if strings.Count(out, "embedding request failed") != 1 || !strings.Contains(out, "deadline exceeded") ||
		!strings.Contains(out, "next=\"retry in") || !strings.Contains(out, "timeout=200ms") || strings.Contains(out, "sk-test-secret") {
		t.Fatalf("log:\n%s", out)
	}
}

func TestNoSleepPastTheDeadline(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	srv.Inject(embedtest.Fault{Status: 429, Code: "rate_limit_exceeded", RetryAfter: "60"})
	c := fast(t, srv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Embed(ctx, texts(1))
	e := wantKind(t, err, embed.KindUnavailable)
	// It returned without waiting: the caller's context is still live.
	if ctx.Err() != nil || !strings.Contains(e.Error(), "would pass the deadline") {
		t.Fatalf("error %v (context %v): want an immediate give-up", err, ctx.Err())
	}
}

func TestDimensionsAndAzure(t *testing.T) {
	srv := embedtest.New(dims)
	defer srv.Close()
	c := fast(t, srv, func(c *embed.Config) {
		c.BaseURL = srv.URL
		c.Model = ""
		c.AzureDeployment = "my-embeddings"
		c.Dimensions = 8
	})
	vecs, err := c.Embed(context.Background(), texts(1))
	if err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if len(vecs[0]) != 8 || r.Dimensions != 8 || c.Model() != "my-embeddings" {
		t.Fatalf("dims %d (asked %d), model %q", len(vecs[0]), r.Dimensions, c.Model())
	}
	if !strings.HasPrefix(r.Path, "/openai/deployments/my-embeddings/embeddings?api-version=") || r.APIKey != "sk-test-secret" {
		t.Fatalf("azure request path %q key %q", r.Path, r.APIKey)
	}
}

func TestConfigValidationAndLogging(t *testing.T) {
	err := embed.Config{BaseURL: "localhost:11434", Dimensions: -1}.Validate()
	for _, want := range []string{"base URL", "model is required", "dimensions"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation %v: want a problem about %s", err, want)
		}
	}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("cfg", "embedding", embed.Config{APIKey: "sk-secret", Model: "m"})
	if strings.Contains(buf.String(), "sk-secret") || !strings.Contains(buf.String(), "api_key_set=true") {
		t.Fatalf("log line %q", buf.String())
	}
}

// TestLive embeds through a real API when EMBEDDING_BASE_URL is set (with EMBEDDING_MODEL and,
// for hosted APIs, EMBEDDING_API_KEY).
func TestLive(t *testing.T) {
	base := os.Getenv("EMBEDDING_BASE_URL")
	if base == "" {
		t.Skip("set EMBEDDING_BASE_URL, EMBEDDING_MODEL and EMBEDDING_API_KEY to run against a live embeddings API")
	}
	model := os.Getenv("EMBEDDING_MODEL")
	p, _ := embed.KnownPrefixes(model)
	c, err := embed.New(embed.Config{BaseURL: base, Model: model, APIKey: os.Getenv("EMBEDDING_API_KEY"), Prefixes: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vecs, err := c.Embed(ctx, []string{p.QueryText("graph neural networks"), p.DocumentText("", "message passing on graphs"),
		p.DocumentText("", "soil nitrogen chemistry")})
	if err != nil {
		t.Fatal(err)
	}
	if related, unrelated := store.Cosine(vecs[0], vecs[1]), store.Cosine(vecs[0], vecs[2]); related <= unrelated {
		t.Fatalf("cosine related %.3f <= unrelated %.3f", related, unrelated)
	}
	t.Logf("model %s: %d dimensions", c.Model(), c.Dimensions())
}

// TestRealModel runs the client against a real model behind the OpenAI protocol on loopback
// (see modeltest): the vectors carry meaning, batches split by MaxInputs come back in order,
// and an input the server refuses fails at once as rejected.
func TestRealModel(t *testing.T) {
	m := modeltest.Start(t)
	c := m.Client(t)
	p := c.Prefixes()
	if p.Query != "query: " || p.Document != "passage: " {
		t.Fatalf("prefixes %+v, want e5's", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vecs, err := c.Embed(ctx, []string{p.QueryText("graph neural networks for molecules"),
		p.DocumentText("Message passing for quantum chemistry", "We predict molecular properties with neural networks on molecular graphs."),
		p.DocumentText("Soil nitrogen dynamics", "Field measurements of nitrate leaching under winter wheat.")})
	if err != nil {
		t.Fatal(err)
	}
	if related, unrelated := store.Cosine(vecs[0], vecs[1]), store.Cosine(vecs[0], vecs[2]); related <= unrelated+0.05 {
		t.Fatalf("cosine to the related paper %.3f, to the unrelated one %.3f", related, unrelated)
	}
	if c.Dimensions() != 384 {
		t.Fatalf("dimensions %d, want 384", c.Dimensions())
	}

	// More inputs than one request takes: each vector must still be its own text's.
	texts := make([]string, 70)
	for i := range texts {
		texts[i] = p.QueryText(fmt.Sprintf("paper number %d about topic %d", i, i%7))
	}
	before := c.Stats().Requests
	all, err := c.Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Stats().Requests - before; n != 3 {
		t.Fatalf("%d requests for 70 inputs at 32 a request, want 3", n)
	}
	for _, i := range []int{0, 31, 32, 69} {
		one, err := c.Embed(ctx, texts[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if cos := store.Cosine(one[0], all[i]); cos < 0.999 {
			t.Fatalf("input %d: batched vector differs from its own (cosine %.4f)", i, cos)
		}
	}

	_, err = c.Embed(ctx, []string{"no prefix"})
	var ee *embed.Error
	if !errors.As(err, &ee) || ee.Kind != embed.KindRejected || ee.Attempts != 1 {
		t.Fatalf("unprefixed input: %v, want rejected after one attempt", err)
	}
}
