package embed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"golang.org/x/time/rate"
)

// Client is an Embedder over an OpenAI-compatible embeddings API, through go-openai.
type Client struct {
	cfg     Config
	api     *openai.Client
	limiter *rate.Limiter // nil when unpaced
	sem     chan struct{}
	dims    atomic.Int64
	stats   counters
}

var _ Embedder = (*Client)(nil)

// New returns a client for cfg; zero tuning fields take their defaults.
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var oc openai.ClientConfig
	if cfg.AzureDeployment != "" {
		oc = openai.DefaultAzureConfig(cfg.APIKey, cfg.BaseURL)
		oc.APIVersion = cfg.AzureAPIVersion
		deployment := cfg.AzureDeployment
		oc.AzureModelMapperFunc = func(string) string { return deployment }
		if cfg.Model == "" {
			cfg.Model = deployment
		}
	} else {
		oc = openai.DefaultConfig(cfg.APIKey)
		oc.BaseURL = cfg.BaseURL
	}
	oc.HTTPClient = headerCapture{inner: &http.Client{}}
	c := &Client{cfg: cfg, api: openai.NewClientWithConfig(oc), sem: make(chan struct{}, cfg.MaxConcurrency)}
	if cfg.RequestsPerMinute > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(float64(cfg.RequestsPerMinute)/60), 1)
	}
	c.dims.Store(int64(cfg.Dimensions))
	return c, nil
}

// WithDefaults returns c with each zero tuning field set to its default.
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.AzureAPIVersion == "" {
		c.AzureAPIVersion = d.AzureAPIVersion
	}
	for _, f := range []struct{ v, def *int }{
		{&c.MaxConcurrency, &d.MaxConcurrency}, {&c.MaxInputs, &d.MaxInputs}, {&c.MaxTokens, &d.MaxTokens},
		{&c.MaxInputTokens, &d.MaxInputTokens}, {&c.MaxAttempts, &d.MaxAttempts},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.RequestTimeout, &d.RequestTimeout}, {&c.InitialBackoff, &d.InitialBackoff}, {&c.MaxBackoff, &d.MaxBackoff},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return c
}

// Model implements Embedder.
func (c *Client) Model() string { return c.cfg.Model }

// Prefixes implements Embedder.
func (c *Client) Prefixes() Prefixes { return c.cfg.Prefixes }

// Dimensions implements Embedder.
func (c *Client) Dimensions() int { return int(c.dims.Load()) }

// Stats returns the client's counters.
func (c *Client) Stats() Stats { return c.stats.snapshot() }

// Embed implements Embedder. Texts are truncated to the per-input limit, split into requests by
// count and estimated tokens, and sent up to MaxConcurrency at a time; the first failure cancels
// the rest, and no partial result is returned.
func (c *Client) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	inputs := make([]string, len(texts))
	for i, t := range texts {
		var cut bool
		if inputs[i], cut = truncate(t, c.cfg.MaxInputTokens); cut {
			c.stats.truncations.Add(1)
		}
	}
	out := make([][]float32, len(texts))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for _, b := range c.batches(inputs) {
		acquired := false
		select {
		case c.sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			if acquired {
				<-c.sem
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-c.sem }()
			vecs, err := c.embedBatch(ctx, inputs[b.from:b.to])
			if err != nil {
				once.Do(func() { firstErr = err; cancel(err) })
				return
			}
			copy(out[b.from:b.to], vecs)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

type span struct{ from, to int }

// batches splits inputs into requests within MaxInputs and MaxTokens.
func (c *Client) batches(inputs []string) []span {
	var out []span
	start, tokens := 0, 0
	for i, in := range inputs {
		t := EstimateTokens(in)
		if i > start && (i-start == c.cfg.MaxInputs || tokens+t > c.cfg.MaxTokens) {
			out = append(out, span{start, i})
			start, tokens = i, 0
		}
		tokens += t
	}
	return append(out, span{start, len(inputs)})
}

// embedBatch sends one request, retrying what the providers document as transient: 429
// rate_limit_exceeded, 5xx, connection errors and timeouts. It waits the longer of a full-jitter
// exponential backoff and the server's Retry-After, and gives up rather than sleep past the
// caller's deadline.
func (c *Client) embedBatch(ctx context.Context, inputs []string) ([][]float32, error) {
	req := openai.EmbeddingRequestStrings{Input: inputs, Model: openai.EmbeddingModel(c.cfg.Model),
		Dimensions: c.cfg.Dimensions, EncodingFormat: openai.EmbeddingEncodingFormatFloat}
	for attempt := 1; ; attempt++ {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				return nil, err
			}
		}
		info := &callInfo{}
		callCtx, cancel := context.WithTimeout(context.WithValue(ctx, callInfoKey{}, info), c.cfg.RequestTimeout)
		start := time.Now()
		resp, err := c.api.CreateEmbeddings(callCtx, req)
		cancel()
		c.stats.requests.Add(1)
		if err == nil {
			vecs, verr := c.check(&resp, len(inputs))
			if verr != nil {
				c.observe(start, 0, 0, verr)
				return nil, &Error{Kind: KindBadResponse, Status: info.status, Attempts: attempt, Err: verr}
			}
			tokens := 0
			for _, in := range inputs {
				tokens += EstimateTokens(in)
			}
			c.stats.inputs.Add(int64(len(inputs)))
			c.stats.tokens.Add(int64(tokens))
			c.observe(start, len(inputs), tokens, nil)
			return vecs, nil
		}
		c.observe(start, 0, 0, err)
		if ctx.Err() != nil { // the caller gave up: not the API's fault
			return nil, context.Cause(ctx)
		}
		e := classify(err, info.status)
		e.Err = redactKey(e.Err, c.cfg.APIKey)
		e.Attempts = attempt
		if e.Kind != KindUnavailable || attempt == c.cfg.MaxAttempts {
			c.logFailure(e, len(inputs), time.Since(start), 0)
			return nil, e
		}
		wait := c.backoff(attempt)
		if info.retryAfter > wait {
			wait = info.retryAfter
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			e.Err = fmt.Errorf("%w (a retry in %v would pass the deadline)", e.Err, wait.Round(time.Millisecond))
			c.logFailure(e, len(inputs), time.Since(start), 0)
			return nil, e
		}
		c.logFailure(e, len(inputs), time.Since(start), wait)
		c.stats.retries.Add(1)
		if c.cfg.Observer != nil {
			c.cfg.Observer.ObserveRetry()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		}
	}
}

// logFailure warns of a failed request; retryIn 0 means the error goes back to the caller.
func (c *Client) logFailure(e *Error, inputs int, took, retryIn time.Duration) {
	if c.cfg.Logger == nil {
		return
	}
	next := "given up"
	if retryIn > 0 {
		next = "retry in " + retryIn.Round(time.Millisecond).String()
	}
	c.cfg.Logger.Warn("embedding request failed", "model", c.cfg.Model, "inputs", inputs, "attempt", e.Attempts,
		"took", took.Round(time.Millisecond), "timeout", c.cfg.RequestTimeout, "error", e.Error(), "next", next)
}

func (c *Client) observe(start time.Time, inputs, tokens int, err error) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.ObserveRequest(time.Since(start), inputs, tokens, err)
	}
}

// backoff is "full jitter" (AWS architecture blog): uniform in [0, min(max, initial x 2^n)), so
// clients that failed together do not retry together.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.cfg.MaxBackoff
	if shift := attempt - 1; shift < 30 {
		ceiling = min(ceiling, c.cfg.InitialBackoff<<shift)
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// classify maps a failed call to a Kind, following OpenAI's error codes documentation.
func classify(err error, status int) *Error {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	code := ""
	switch {
	case errors.As(err, &apiErr):
		status = apiErr.HTTPStatusCode
		code, _ = apiErr.Code.(string)
		if code == "" {
			code = apiErr.Type
		}
	case errors.As(err, &reqErr):
		status = reqErr.HTTPStatusCode
	}
	e := &Error{Status: status, Err: err}
	switch {
	case status >= 200 && status < 300 && errors.Is(err, io.ErrUnexpectedEOF):
		e.Kind = KindUnavailable // the body was cut off in transit
	case status >= 200 && status < 300:
		e.Kind = KindBadResponse // answered, but the body did not decode (e.g. NaN in the JSON)
	case status == 0, status == http.StatusRequestTimeout, status >= 500:
		e.Kind = KindUnavailable // no response (reset, timeout) or a server fault
	case status == http.StatusTooManyRequests && code == "insufficient_quota":
		e.Kind = KindQuota
	case status == http.StatusTooManyRequests:
		e.Kind = KindUnavailable
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = KindAuth
	default:
		e.Kind = KindRejected
	}
	return e
}

// check validates a response: one finite vector per input, in input order, all of the expected
// size. The first valid response fixes the size when none was configured.
func (c *Client) check(resp *openai.EmbeddingResponse, n int) ([][]float32, error) {
	if len(resp.Data) != n {
		return nil, fmt.Errorf("%d vectors for %d inputs", len(resp.Data), n)
	}
	want := int(c.dims.Load())
	if want == 0 && n > 0 {
		want = len(resp.Data[0].Embedding)
	}
	out := make([][]float32, n)
	for i, d := range resp.Data {
		if d.Index != i {
			return nil, fmt.Errorf("vector %d has index %d: out of order", i, d.Index)
		}
		if len(d.Embedding) != want || want == 0 {
			return nil, fmt.Errorf("vector %d has %d dimensions, want %d", i, len(d.Embedding), want)
		}
		for _, x := range d.Embedding {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("vector %d holds %v", i, x)
			}
		}
		out[i] = d.Embedding
	}
	if !c.dims.CompareAndSwap(0, int64(want)) && int(c.dims.Load()) != want {
		return nil, fmt.Errorf("vectors have %d dimensions, earlier ones had %d", want, c.dims.Load())
	}
	return out, nil
}

// callInfo receives what go-openai's errors do not carry: the status and retry hints of the
// HTTP response, recorded by headerCapture.
type callInfo struct {
	status     int
	retryAfter time.Duration
}

type callInfoKey struct{}

// headerCapture is the HTTP client handed to go-openai; it records each response's status and
// Retry-After hint into the callInfo of the request's context.
type headerCapture struct{ inner *http.Client }

func (h headerCapture) Do(req *http.Request) (*http.Response, error) {
	resp, err := h.inner.Do(req)
	if info, ok := req.Context().Value(callInfoKey{}).(*callInfo); ok && resp != nil {
		info.status = resp.StatusCode
		info.retryAfter = retryAfter(resp.Header, time.Now())
	}
	return resp, err
}

// retryAfter reads OpenAI's retry-after-ms, then the standard Retry-After (seconds or an HTTP
// date). It returns 0 when there is no usable hint.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// bearer matches what an upstream message may quote of a credential: a bearer token, or a key
// in OpenAI's sk- format.
var bearer = regexp.MustCompile(`(?i)(bearer\s+)\S+|\bsk-[A-Za-z0-9_\-*]{4,}`)

// redactKey hides the API key, and anything that looks like one, in an upstream error's message
// (some providers quote the Authorization header they refused), keeping the error for errors.As.
func redactKey(err error, key string) error {
	msg := err.Error()
	if key != "" {
		msg = strings.ReplaceAll(msg, key, "[api key]")
	}
	msg = bearer.ReplaceAllStringFunc(msg, func(m string) string {
		if i := strings.IndexAny(m, " \t"); i >= 0 && strings.EqualFold(m[:6], "bearer") {
			return m[:i+1] + "[redacted]"
		}
		return "sk-[redacted]"
	})
	if msg == err.Error() {
		return err
	}
	return redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }
