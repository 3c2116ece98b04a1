package embed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"
)

// Embedder turns texts into vectors, one per text, in order.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Model names the embedding model.
	Model() string
	// Dimensions is the vector size: configured, or learned from the first response (0 before).
	Dimensions() int
	// Prefixes are what callers put before queries and documents for this model; Embed sends
	// texts as given.
	Prefixes() Prefixes
}

// Config configures the OpenAI-compatible client. The zero values of the tuning fields mean
// their defaults (see Defaults).
type Config struct {
	// BaseURL of the API, e.g. https://api.openai.com/v1 or http://localhost:11434/v1 (Ollama).
	BaseURL string
	// Model is the embedding model, e.g. text-embedding-3-small.
	Model string
	// Dimensions asks the model for vectors of this size (text-embedding-3 models can shorten
	// their vectors); 0 uses the model's native size and omits the parameter.
	Dimensions int
	// APIKey is sent as a bearer token (or api-key for Azure). It comes from the environment or a
	// file, never a flag, and is never logged (see LogValue).
	APIKey string
	// AzureDeployment switches to Azure OpenAI: requests go to the named deployment.
	AzureDeployment string
	// AzureAPIVersion is the Azure api-version query parameter.
	AzureAPIVersion string
	// Prefixes are the model's query and document instructions (see KnownPrefixes).
	Prefixes Prefixes

	// RequestTimeout bounds one HTTP request (a retry gets a fresh one).
	RequestTimeout time.Duration
	// MaxConcurrency bounds requests in flight at once.
	MaxConcurrency int
	// MaxInputs bounds the inputs of one request (OpenAI's limit is 2,048).
	MaxInputs int
	// MaxTokens bounds the estimated tokens of one request (OpenAI's limit is 300,000).
	MaxTokens int
	// MaxInputTokens is the model's per-input limit; longer inputs are truncated at a word
	// boundary (and counted in Stats).
	MaxInputTokens int
	// RequestsPerMinute paces requests on our side, to stay under the provider's rate limit
	// instead of bouncing off it; 0 means unpaced.
	RequestsPerMinute int
	// MaxAttempts bounds tries per request, the first included.
	MaxAttempts int
	// InitialBackoff and MaxBackoff shape the exponential backoff between tries.
	InitialBackoff, MaxBackoff time.Duration
	// Observer, when set, is told of every request and retry (for metrics).
	Observer Observer
	// Logger, when set, gets a warning for every failed request (a timeout included) saying
	// whether it is retried: a slow or failing provider shows in the log, not only in metrics.
	Logger *slog.Logger
}

// Observer receives the client's events.
type Observer interface {
	// ObserveRequest reports one HTTP request: its latency, and on success its inputs and
	// estimated tokens.
	ObserveRequest(d time.Duration, inputs, tokens int, err error)
	// ObserveRetry reports a retry after a transient failure.
	ObserveRetry()
}

// Defaults returns a Config with every tuning field set to its default.
func Defaults() Config {
	return Config{
		AzureAPIVersion: "2024-10-21",
		RequestTimeout:  60 * time.Second,
		MaxConcurrency:  4,
		MaxInputs:       2048,
		MaxTokens:       300_000,
		MaxInputTokens:  8191,
		MaxAttempts:     6,
		InitialBackoff:  500 * time.Millisecond,
		MaxBackoff:      30 * time.Second,
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("embedding base URL %q must be an http(s) URL", c.BaseURL))
	}
	if c.Model == "" && c.AzureDeployment == "" {
		errs = append(errs, errors.New("embedding model is required (EMBEDDING_MODEL)"))
	}
	for _, f := range []struct {
		name string
		v    int64
		min  int64
	}{
		{"dimensions", int64(c.Dimensions), 0},
		{"request timeout", int64(c.RequestTimeout), 1},
		{"max concurrency", int64(c.MaxConcurrency), 1},
		{"max inputs per request", int64(c.MaxInputs), 1},
		{"max tokens per request", int64(c.MaxTokens), 1},
		{"max tokens per input", int64(c.MaxInputTokens), 1},
		{"requests per minute", int64(c.RequestsPerMinute), 0},
		{"max attempts", int64(c.MaxAttempts), 1},
		{"initial backoff", int64(c.InitialBackoff), 1},
		{"max backoff", int64(c.MaxBackoff), 1},
	} {
		if f.v < f.min {
			errs = append(errs, fmt.Errorf("embedding %s must be at least %d, got %d", f.name, f.min, f.v))
		}
	}
	if c.MaxInputTokens > c.MaxTokens {
		errs = append(errs, errors.New("embedding max tokens per input exceeds max tokens per request"))
	}
	return errors.Join(errs...)
}

// LogValue keeps the API key out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL), slog.String("model", c.Model), slog.Int("dimensions", c.Dimensions),
		slog.String("query_prefix", c.Prefixes.Query), slog.String("document_prefix", c.Prefixes.Document),
		slog.Bool("api_key_set", c.APIKey != ""), slog.String("azure_deployment", c.AzureDeployment),
		slog.Int("max_concurrency", c.MaxConcurrency), slog.Int("requests_per_minute", c.RequestsPerMinute))
}

// Kind classifies embedding failures by what the caller can do about them.
type Kind int

// Failure kinds.
const (
	// KindUnavailable: the API is down, overloaded or slow; retrying later may work.
	KindUnavailable Kind = iota + 1
	// KindQuota: the account is out of quota (429 insufficient_quota); an operator must act.
	KindQuota
	// KindAuth: the key was refused (401/403).
	KindAuth
	// KindRejected: any other 4xx, e.g. an unknown model; not retried.
	KindRejected
	// KindBadResponse: the API answered with vectors we cannot use (wrong count, dimensions,
	// order, NaN or infinity); nothing of the batch is used.
	KindBadResponse
)

func (k Kind) String() string {
	switch k {
	case KindUnavailable:
		return "unavailable"
	case KindQuota:
		return "insufficient quota"
	case KindAuth:
		return "authentication failed"
	case KindRejected:
		return "request rejected"
	case KindBadResponse:
		return "bad response"
	}
	return "unknown"
}

// Error is an embedding failure. Its message includes the upstream detail for operators' logs;
// Kind is what may be shown to clients.
type Error struct {
	Kind     Kind
	Status   int // HTTP status, 0 when there was no response
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("embedding API: %s", e.Kind)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Attempts > 1 {
		s += fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Stats counts the client's work since it was created.
type Stats struct {
	Requests    int64 // HTTP requests sent, retries included
	Retries     int64
	Inputs      int64 // texts embedded successfully
	Tokens      int64 // estimated tokens of those texts
	Truncations int64 // inputs cut to MaxInputTokens
}

type counters struct {
	requests, retries, inputs, tokens, truncations atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{Requests: c.requests.Load(), Retries: c.retries.Load(), Inputs: c.inputs.Load(),
		Tokens: c.tokens.Load(), Truncations: c.truncations.Load()}
}
