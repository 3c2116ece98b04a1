package cli

import (
	"flag"
	"io"
	"os"
	"testing"

	"github.com/paperrec/recommender/internal/embed"
)

// TestEmbeddingPrefixFlags: a known model gets its preset prefixes; a flag or variable, even
// empty, overrides them; the flag wins over the variable.
func TestEmbeddingPrefixFlags(t *testing.T) {
	e5 := embed.Prefixes{Query: "query: ", Document: "passage: "}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want embed.Prefixes
	}{
		{"preset", nil, []string{"--embedding-model", "intfloat/multilingual-e5-small"}, e5},
		{"unknown model", nil, []string{"--embedding-model", "text-embedding-3-small"}, embed.Prefixes{}},
		{"empty flags override", nil, []string{"--embedding-model", "multilingual-e5-small",
			"--embedding-query-prefix", "", "--embedding-document-prefix", ""}, embed.Prefixes{}},
		{"empty variable overrides", map[string]string{"EMBEDDING_QUERY_PREFIX": ""},
			[]string{"--embedding-model", "multilingual-e5-small"}, embed.Prefixes{Document: "passage: "}},
		{"flag over variable", map[string]string{"EMBEDDING_QUERY_PREFIX": "q: "},
			[]string{"--embedding-model", "my-model", "--embedding-query-prefix", "search: "}, embed.Prefixes{Query: "search: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"EMBEDDING_QUERY_PREFIX", "EMBEDDING_DOCUMENT_PREFIX"} {
				if v, ok := tc.env[k]; ok {
					t.Setenv(k, v)
				} else {
					unsetenv(t, k)
				}
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var ef EmbeddingFlags
			ef.Register(fs)
			if err := fs.Parse(append([]string{"--embedding-base-url", "http://127.0.0.1:1/v1"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if err := ef.ApplyEnv(); err != nil {
				t.Fatal(err)
			}
			cfg, ok, err := ef.Config()
			if err != nil || !ok {
				t.Fatalf("config: %v, %v", ok, err)
			}
			if cfg.Prefixes != tc.want {
				t.Fatalf("prefixes %+v, want %+v", cfg.Prefixes, tc.want)
			}
		})
	}
}

// unsetenv unsets k until the test ends.
func unsetenv(t *testing.T, k string) {
	t.Helper()
	t.Setenv(k, "") // restores k's value when the test ends
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}

// TestLoopbackEmbeddingDefaults: a model server on this machine gets one request in flight of
// 32 inputs unless told otherwise; a remote API keeps the hosted defaults.
func TestLoopbackEmbeddingDefaults(t *testing.T) {
	d := embed.Defaults()
	for _, tc := range []struct {
		url             string
		args            []string
		conc, maxInputs int
	}{
		{"http://127.0.0.1:8000/v1", nil, localMaxConcurrency, localMaxInputs},
		{"http://localhost:8000/v1", nil, localMaxConcurrency, localMaxInputs},
		{"http://[::1]:8000/v1", nil, localMaxConcurrency, localMaxInputs},
		{"http://127.0.0.1:8000/v1", []string{"--embedding-max-concurrency", "3"}, 3, localMaxInputs},
		{"https://api.openai.com/v1", nil, d.MaxConcurrency, d.MaxInputs},
	} {
		unsetenv(t, "EMBEDDING_MAX_CONCURRENCY")
		unsetenv(t, "EMBEDDING_MAX_INPUTS")
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var ef EmbeddingFlags
		ef.Register(fs)
		if err := fs.Parse(append([]string{"--embedding-base-url", tc.url, "--embedding-model", "m"}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := ef.Config()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MaxConcurrency != tc.conc || cfg.MaxInputs != tc.maxInputs {
			t.Errorf("%s %v: concurrency %d, max inputs %d; want %d, %d", tc.url, tc.args, cfg.MaxConcurrency, cfg.MaxInputs, tc.conc, tc.maxInputs)
		}
	}
	t.Setenv("EMBEDDING_MAX_INPUTS", "100")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var ef EmbeddingFlags
	ef.Register(fs)
	if err := fs.Parse([]string{"--embedding-base-url", "http://127.0.0.1:1/v1", "--embedding-model", "m"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if cfg, _, _ := ef.Config(); cfg.MaxInputs != 100 {
		t.Errorf("EMBEDDING_MAX_INPUTS=100 on loopback gave %d", cfg.MaxInputs)
	}
}
