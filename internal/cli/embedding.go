package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/server"
)

// embeddingFlags are serve's embedding settings. Each reads an environment variable for its
// default; the API key is read only from EMBEDDING_API_KEY or a file, never a flag, so it cannot
// leak through the process list or shell history.
type EmbeddingFlags struct {
	Cfg                         embed.Config
	keyFile                     string
	queryPrefix, documentPrefix optionalString
	errs                        []error
	fs                          *flag.FlagSet
	name, env                   string // the flags' and variables' prefixes (registerAs)
	inheritKey                  string // the key to use when none is set (inherit)
}

// Defaults for an embedding server on this machine (a loopback URL), measured with the CPU model
// of tests/embedserver (BENCHMARKS.md, "Throughput on 2 cores"): it shares each request among
// its workers, one per core, so one request in flight per core keeps them busy between
// requests too (1 to 4 in flight measured alike), and small requests finish well inside the
// timeout.
var localMaxConcurrency = runtime.NumCPU()

const localMaxInputs = 32

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

func (e *EmbeddingFlags) Register(fs *flag.FlagSet) { e.RegisterAs(fs, "embedding", "EMBEDDING", true) }

// registerAs registers the flags named <name>-base-url, <name>-model... reading <ENV>_BASE_URL,
// <ENV>_MODEL... and the key from <ENV>_API_KEY: serve has a second set for re-embedding, which
// has only the model's flags (full false: base URL, model, size, prefixes, key file) and takes
// the client's tuning from the first (inherit).
func (e *EmbeddingFlags) RegisterAs(fs *flag.FlagSet, name, env string, full bool) {
	e.fs, e.name, e.env = fs, name, env
	f := func(s string) string { return name + s }
	v := func(s string) string { return env + s }
	d := embed.Defaults()
	unset := "lexical retrieval only"
	if !full {
		unset = "the --embedding-base-url"
	}
	fs.StringVar(&e.Cfg.BaseURL, f("-base-url"), os.Getenv(v("_BASE_URL")),
		"OpenAI-compatible API base URL, e.g. https://api.openai.com/v1; empty: "+unset+" (env "+v("_BASE_URL")+")")
	fs.StringVar(&e.Cfg.Model, f("-model"), os.Getenv(v("_MODEL")),
		"embedding model, e.g. text-embedding-3-small (env "+v("_MODEL")+")")
	e.intVar(fs, &e.Cfg.Dimensions, f("-dimensions"), v("_DIMENSIONS"), 0,
		"vector size to ask for (text-embedding-3 models); 0: the model's own, learned with one call at start (env "+v("_DIMENSIONS")+")")
	fs.Var(e.queryPrefix.fromEnv(v("_QUERY_PREFIX")), f("-query-prefix"),
		"instruction `text` put before a query (e5: \"query: \"); unset: the model's known preset, else none; \"\" for none (env "+v("_QUERY_PREFIX")+")")
	fs.Var(e.documentPrefix.fromEnv(v("_DOCUMENT_PREFIX")), f("-document-prefix"),
		"instruction `text` put before a paper's title and abstract (e5: \"passage: \"); unset: the model's known preset, else none (env "+v("_DOCUMENT_PREFIX")+")")
	fs.StringVar(&e.keyFile, f("-api-key-file"), os.Getenv(v("_API_KEY_FILE")),
		"file holding the API key (env "+v("_API_KEY_FILE")+"); or set "+v("_API_KEY"))
	if !full {
		return
	}
	fs.StringVar(&e.Cfg.AzureDeployment, f("-azure-deployment"), os.Getenv(v("_AZURE_DEPLOYMENT")),
		"Azure OpenAI deployment name; set to use Azure (env "+v("_AZURE_DEPLOYMENT")+")")
	fs.StringVar(&e.Cfg.AzureAPIVersion, f("-azure-api-version"), EnvOr(v("_AZURE_API_VERSION"), d.AzureAPIVersion),
		"Azure OpenAI api-version (env "+v("_AZURE_API_VERSION")+")")
	e.intVar(fs, &e.Cfg.MaxConcurrency, f("-max-concurrency"), v("_MAX_CONCURRENCY"), d.MaxConcurrency,
		fmt.Sprintf("embedding requests in flight at once; %d (one per core) for a loopback URL (a model on this machine) (env "+v("_MAX_CONCURRENCY")+")", localMaxConcurrency))
	e.intVar(fs, &e.Cfg.RequestsPerMinute, f("-requests-per-minute"), v("_REQUESTS_PER_MINUTE"), 0,
		"pace requests to stay under the provider's rate limit; 0: unpaced (env "+v("_REQUESTS_PER_MINUTE")+")")
	e.intVar(fs, &e.Cfg.MaxInputs, f("-max-inputs"), v("_MAX_INPUTS"), d.MaxInputs,
		fmt.Sprintf("inputs per request; %d for a loopback URL (env "+v("_MAX_INPUTS")+")", localMaxInputs))
	e.intVar(fs, &e.Cfg.MaxTokens, f("-max-tokens"), v("_MAX_TOKENS"), d.MaxTokens,
		"estimated tokens per request (env "+v("_MAX_TOKENS")+")")
	e.intVar(fs, &e.Cfg.MaxInputTokens, f("-max-input-tokens"), v("_MAX_INPUT_TOKENS"), d.MaxInputTokens,
		"the model's per-input token limit; longer texts are truncated at a word (env "+v("_MAX_INPUT_TOKENS")+")")
	timeout := d.RequestTimeout
	if t := os.Getenv(v("_TIMEOUT")); t != "" {
		var err error
		if timeout, err = time.ParseDuration(t); err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", v("_TIMEOUT"), err))
		}
	}
	fs.DurationVar(&e.Cfg.RequestTimeout, f("-timeout"), timeout, "timeout of one embedding request (env "+v("_TIMEOUT")+")")
}

func (e *EmbeddingFlags) intVar(fs *flag.FlagSet, p *int, name, env string, def int, usage string) {
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

// Config returns the embedder configuration, or ok=false when no base URL is set (lexical only).
func (e *EmbeddingFlags) Config() (cfg embed.Config, ok bool, err error) {
	if len(e.errs) > 0 {
		return cfg, false, UsageError{Msg: errors.Join(e.errs...).Error()}
	}
	if e.Cfg.BaseURL == "" {
		return cfg, false, nil
	}
	if isLoopbackURL(e.Cfg.BaseURL) {
		for _, f := range []struct {
			flag, env string
			v         *int
			local     int
		}{
			{e.name + "-max-concurrency", e.env + "_MAX_CONCURRENCY", &e.Cfg.MaxConcurrency, localMaxConcurrency},
			{e.name + "-max-inputs", e.env + "_MAX_INPUTS", &e.Cfg.MaxInputs, localMaxInputs},
		} {
			if _, env := os.LookupEnv(f.env); !env && !e.isSet(f.flag) {
				*f.v = f.local
			}
		}
	}
	cfg = e.Cfg.WithDefaults()
	preset, _ := embed.KnownPrefixes(cfg.Model)
	cfg.Prefixes = embed.Prefixes{Query: e.queryPrefix.or(preset.Query), Document: e.documentPrefix.or(preset.Document)}
	if cfg.APIKey, err = Secret(e.env+"_API_KEY", e.keyFile, strings.ToLower(e.env)+" API key"); err != nil {
		return cfg, false, err
	}
	if cfg.APIKey == "" {
		cfg.APIKey = e.inheritKey
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, UsageError{Msg: err.Error()}
	}
	return cfg, true, nil
}

// inherit takes what other sets and e does not: the base URL and API key when e names none, and
// the client's tuning (concurrency, batch sizes, pacing, timeout, Azure settings).
func (e *EmbeddingFlags) Inherit(other embed.Config) {
	if e.Cfg.BaseURL == "" && e.Cfg.Model != "" {
		e.Cfg.BaseURL = other.BaseURL
		e.inheritKey = other.APIKey
	}
	e.Cfg.MaxConcurrency, e.Cfg.MaxInputs, e.Cfg.MaxTokens = other.MaxConcurrency, other.MaxInputs, other.MaxTokens
	e.Cfg.MaxInputTokens, e.Cfg.RequestTimeout, e.Cfg.RequestsPerMinute = other.MaxInputTokens, other.RequestTimeout, other.RequestsPerMinute
	e.Cfg.AzureDeployment, e.Cfg.AzureAPIVersion = other.AzureDeployment, other.AzureAPIVersion
}

// isSet reports whether the flag was given on the command line.
func (e *EmbeddingFlags) isSet(name string) bool {
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
	return server.IsLoopbackHost(u.Hostname())
}
