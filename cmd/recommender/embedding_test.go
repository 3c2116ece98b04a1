package main

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
				t.Setenv(k, "")
				if v, ok := tc.env[k]; ok {
					t.Setenv(k, v)
				} else {
					unsetenv(t, k)
				}
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var ef embeddingFlags
			ef.register(fs)
			if err := fs.Parse(append([]string{"--embedding-base-url", "http://127.0.0.1:1/v1"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			cfg, ok, err := ef.config()
			if err != nil || !ok {
				t.Fatalf("config: %v, %v", ok, err)
			}
			if cfg.Prefixes != tc.want {
				t.Fatalf("prefixes %+v, want %+v", cfg.Prefixes, tc.want)
			}
		})
	}
}

// unsetenv unsets k for the test (t.Setenv first, so it is restored afterwards).
func unsetenv(t *testing.T, k string) {
	t.Helper()
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}
