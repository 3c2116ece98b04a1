package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/paperrec/recommender/internal/embed"
)

// embeddingFlags are serve's embedding settings. Each reads an environment variable for its
// default; the API key is read only from EMBEDDING_API_KEY or a file, never a flag, so it cannot
// leak through the process list or shell history.
type embeddingFlags struct {
	cfg                         embed.Config
	keyFile                     string
	queryPrefix, documentPrefix optionalString
	errs                        []error
	fs                          *flag.FlagSet
}

// Defaults for an embedding server on this machine (a loopback URL), measured with the CPU model
// of tests/embedserver (BENCHMARKS.md, "Embedding throughput"): it shares the machine's cores, so
// requests in parallel only contend (backfill 2.5 papers/s at 1 in flight, 2.1 at 4), and small
// requests finish well inside the timeout.
const (
	localMaxConcurrency = 1
	localMaxInputs      = 32
)

// optionalString is a string flag that tells "set to empty" from "not set": an explicit empty
// prefix overrides the model's preset.
type optionalString struct {
	v   string
	set bool
}

func (o *optionalString) String() string { return o.v }

func (o *optionalString) Set(v string) error { o.v, o.set = v, true; return nil }

// fromEnv takes the variable's value, when set (even empty), as the default.
func (o *optionalString) fromEnv(name string) *optionalString {
	o.v, o.set = os.LookupEnv(name)
	return o
}

// or returns the value when set, else def.
func (o *optionalString) or(def string) string {
	if o.set {
		return o.v
	}
	return def
}

func (e *embeddingFlags) register(fs *flag.FlagSet) {
	e.fs = fs
	d := embed.Defaults()
	fs.StringVar(&e.cfg.BaseURL, "embedding-base-url", os.Getenv("EMBEDDING_BASE_URL"),
		"OpenAI-compatible API base URL, e.g. https://api.openai.com/v1; empty: lexical retrieval only (env EMBEDDING_BASE_URL)")
	fs.StringVar(&e.cfg.Model, "embedding-model", os.Getenv("EMBEDDING_MODEL"),
		"embedding model, e.g. text-embedding-3-small (env EMBEDDING_MODEL)")
	e.intVar(fs, &e.cfg.Dimensions, "embedding-dimensions", "EMBEDDING_DIMENSIONS", 0,
		"vector size to ask for (text-embedding-3 models); 0: the model's own, learned with one call at start (env EMBEDDING_DIMENSIONS)")
	fs.Var(e.queryPrefix.fromEnv("EMBEDDING_QUERY_PREFIX"), "embedding-query-prefix",
		"instruction `text` put before a query (e5: \"query: \"); unset: the model's known preset, else none; \"\" for none (env EMBEDDING_QUERY_PREFIX)")
	fs.Var(e.documentPrefix.fromEnv("EMBEDDING_DOCUMENT_PREFIX"), "embedding-document-prefix",
		"instruction `text` put before a paper's title and abstract (e5: \"passage: \"); unset: the model's known preset, else none (env EMBEDDING_DOCUMENT_PREFIX)")
	fs.StringVar(&e.keyFile, "embedding-api-key-file", os.Getenv("EMBEDDING_API_KEY_FILE"),
		"file holding the API key (env EMBEDDING_API_KEY_FILE); or set EMBEDDING_API_KEY")
	fs.StringVar(&e.cfg.AzureDeployment, "embedding-azure-deployment", os.Getenv("EMBEDDING_AZURE_DEPLOYMENT"),
		"Azure OpenAI deployment name; set to use Azure (env EMBEDDING_AZURE_DEPLOYMENT)")
	fs.StringVar(&e.cfg.AzureAPIVersion, "embedding-azure-api-version", envOr("EMBEDDING_AZURE_API_VERSION", d.AzureAPIVersion),
		"Azure OpenAI api-version (env EMBEDDING_AZURE_API_VERSION)")
	e.intVar(fs, &e.cfg.MaxConcurrency, "embedding-max-concurrency", "EMBEDDING_MAX_CONCURRENCY", d.MaxConcurrency,
		fmt.Sprintf("embedding requests in flight at once; %d for a loopback URL (a model on this machine) (env EMBEDDING_MAX_CONCURRENCY)", localMaxConcurrency))
	e.intVar(fs, &e.cfg.RequestsPerMinute, "embedding-requests-per-minute", "EMBEDDING_REQUESTS_PER_MINUTE", 0,
		"pace requests to stay under the provider's rate limit; 0: unpaced (env EMBEDDING_REQUESTS_PER_MINUTE)")
	e.intVar(fs, &e.cfg.MaxInputs, "embedding-max-inputs", "EMBEDDING_MAX_INPUTS", d.MaxInputs,
		fmt.Sprintf("inputs per request; %d for a loopback URL (env EMBEDDING_MAX_INPUTS)", localMaxInputs))
	e.intVar(fs, &e.cfg.MaxTokens, "embedding-max-tokens", "EMBEDDING_MAX_TOKENS", d.MaxTokens,
		"estimated tokens per request (env EMBEDDING_MAX_TOKENS)")
	e.intVar(fs, &e.cfg.MaxInputTokens, "embedding-max-input-tokens", "EMBEDDING_MAX_INPUT_TOKENS", d.MaxInputTokens,
		"the model's per-input token limit; longer texts are truncated at a word (env EMBEDDING_MAX_INPUT_TOKENS)")
	timeout := d.RequestTimeout
	if v := os.Getenv("EMBEDDING_TIMEOUT"); v != "" {
		var err error
		if timeout, err = time.ParseDuration(v); err != nil {
			e.errs = append(e.errs, fmt.Errorf("EMBEDDING_TIMEOUT: %w", err))
		}
	}
	fs.DurationVar(&e.cfg.RequestTimeout, "embedding-timeout", timeout, "timeout of one embedding request (env EMBEDDING_TIMEOUT)")
}

func (e *embeddingFlags) intVar(fs *flag.FlagSet, p *int, name, env string, def int, usage string) {
	if v := os.Getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s must be a whole number, got %q", env, v))
		} else {
			def = n
		}
	}
	fs.IntVar(p, name, def, usage)
}

// config returns the embedder configuration, or ok=false when no base URL is set (lexical only).
func (e *embeddingFlags) config() (cfg embed.Config, ok bool, err error) {
	if len(e.errs) > 0 {
		return cfg, false, usageError{errors.Join(e.errs...).Error()}
	}
	if e.cfg.BaseURL == "" {
		return cfg, false, nil
	}
	if isLoopbackURL(e.cfg.BaseURL) {
		for _, f := range []struct {
			flag, env string
			v         *int
			local     int
		}{
			{"embedding-max-concurrency", "EMBEDDING_MAX_CONCURRENCY", &e.cfg.MaxConcurrency, localMaxConcurrency},
			{"embedding-max-inputs", "EMBEDDING_MAX_INPUTS", &e.cfg.MaxInputs, localMaxInputs},
		} {
			if _, env := os.LookupEnv(f.env); !env && !e.isSet(f.flag) {
				*f.v = f.local
			}
		}
	}
	cfg = e.cfg.WithDefaults()
	preset, _ := embed.KnownPrefixes(cfg.Model)
	cfg.Prefixes = embed.Prefixes{Query: e.queryPrefix.or(preset.Query), Document: e.documentPrefix.or(preset.Document)}
	if cfg.APIKey, err = secret("EMBEDDING_API_KEY", e.keyFile, "embedding API key"); err != nil {
		return cfg, false, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, usageError{err.Error()}
	}
	return cfg, true, nil
}

// isSet reports whether the flag was given on the command line.
func (e *embeddingFlags) isSet(name string) bool {
	set := false
	e.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// isLoopbackURL reports whether raw points at this machine.
func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	if h := u.Hostname(); h == "localhost" {
		return true
	} else if ip := net.ParseIP(h); ip != nil {
		return ip.IsLoopback()
	}
	return false
}
