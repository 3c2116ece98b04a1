package cli

import (
	"flag"
	"fmt"
	"net/url"
	"runtime"
	"strings"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/server"
)

// EmbeddingFlags are the embedding settings of serve (and the lab's commands that embed). Each
// has its environment variable by cli.EnvName (ApplyEnv, or EmbeddingFlags.ApplyEnv, reads
// them); the API key is read only from EMBEDDING_API_KEY or a file, never a flag, so it cannot
// leak through the process list or shell history.
type EmbeddingFlags struct {
	Cfg                         embed.Config
	keyFile                     string
	queryPrefix, documentPrefix optionalString
	fs                          *flag.FlagSet
	names                       map[string]bool // the flags registered
	name, env                   string          // the flags' and variables' prefixes (registerAs)
	inheritKey                  string          // the key to use when none is set (inherit)
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

// EmptyIsAValue makes ApplyEnv take an empty variable: an explicit "no prefix".
func (o *optionalString) EmptyIsAValue() bool { return true }

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
	e.fs, e.name, e.env, e.names = fs, name, env, map[string]bool{}
	f := func(s string) string { e.names[name+s] = true; return name + s }
	v := func(s string) string { return env + s }
	d := embed.Defaults()
	unset := "lexical retrieval only"
	if !full {
		unset = "the --embedding-base-url"
	}
	fs.StringVar(&e.Cfg.BaseURL, f("-base-url"), "",
		"OpenAI-compatible API base URL, e.g. https://api.openai.com/v1; empty: "+unset+" (env "+v("_BASE_URL")+")")
	fs.StringVar(&e.Cfg.Model, f("-model"), "",
		"embedding model, e.g. text-embedding-3-small (env "+v("_MODEL")+")")
	fs.IntVar(&e.Cfg.Dimensions, f("-dimensions"), 0,
		"vector size to ask for (text-embedding-3 models); 0: the model's own, learned with one call at start (env "+v("_DIMENSIONS")+")")
	fs.Var(&e.queryPrefix, f("-query-prefix"),
		"instruction `text` put before a query (e5: \"query: \"); unset: the model's known preset, else none; \"\" for none (env "+v("_QUERY_PREFIX")+")")
	fs.Var(&e.documentPrefix, f("-document-prefix"),
		"instruction `text` put before a paper's title and abstract (e5: \"passage: \"); unset: the model's known preset, else none (env "+v("_DOCUMENT_PREFIX")+")")
	fs.StringVar(&e.keyFile, f("-api-key-file"), "",
		"file holding the API key (env "+v("_API_KEY_FILE")+"); or set "+v("_API_KEY"))
	if !full {
		return
	}
	fs.StringVar(&e.Cfg.AzureDeployment, f("-azure-deployment"), "",
		"Azure OpenAI deployment name; set to use Azure (env "+v("_AZURE_DEPLOYMENT")+")")
	fs.StringVar(&e.Cfg.AzureAPIVersion, f("-azure-api-version"), d.AzureAPIVersion,
		"Azure OpenAI api-version (env "+v("_AZURE_API_VERSION")+")")
	fs.IntVar(&e.Cfg.MaxConcurrency, f("-max-concurrency"), d.MaxConcurrency,
		fmt.Sprintf("embedding requests in flight at once; %d (one per core) for a loopback URL (a model on this machine) (env "+v("_MAX_CONCURRENCY")+")", localMaxConcurrency))
	fs.IntVar(&e.Cfg.RequestsPerMinute, f("-requests-per-minute"), 0,
		"pace requests to stay under the provider's rate limit; 0: unpaced (env "+v("_REQUESTS_PER_MINUTE")+")")
	fs.IntVar(&e.Cfg.MaxInputs, f("-max-inputs"), d.MaxInputs,
		fmt.Sprintf("inputs per request; %d for a loopback URL (env "+v("_MAX_INPUTS")+")", localMaxInputs))
	fs.IntVar(&e.Cfg.MaxTokens, f("-max-tokens"), d.MaxTokens,
		"estimated tokens per request (env "+v("_MAX_TOKENS")+")")
	fs.IntVar(&e.Cfg.MaxInputTokens, f("-max-input-tokens"), d.MaxInputTokens,
		"the model's per-input token limit; longer texts are truncated at a word (env "+v("_MAX_INPUT_TOKENS")+")")
	fs.DurationVar(&e.Cfg.RequestTimeout, f("-timeout"), d.RequestTimeout, "timeout of one embedding request (env "+v("_TIMEOUT")+")")
}

// ApplyEnv sets these flags from their variables, for a command whose other flags have none.
func (e *EmbeddingFlags) ApplyEnv() error { return applyEnv(e.fs, e.names) }

// Config returns the embedder configuration, or ok=false when no base URL is set (lexical only).
func (e *EmbeddingFlags) Config() (cfg embed.Config, ok bool, err error) {
	if e.Cfg.BaseURL == "" {
		return cfg, false, nil
	}
	if isLoopbackURL(e.Cfg.BaseURL) {
		for _, f := range []struct {
			flag  string
			v     *int
			local int
		}{
			{e.name + "-max-concurrency", &e.Cfg.MaxConcurrency, localMaxConcurrency},
			{e.name + "-max-inputs", &e.Cfg.MaxInputs, localMaxInputs},
		} {
			if !e.isSet(f.flag) { // on the command line or by its variable (ApplyEnv sets it)
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

// isSet reports whether the flag was set, on the command line or from its variable.
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
