package embed_test

import (
	"testing"

	"github.com/paperrec/recommender/internal/embed"
)

func TestKnownPrefixes(t *testing.T) {
	e5 := embed.Prefixes{Query: "query: ", Document: "passage: "}
	bge := embed.Prefixes{Query: "Represent this sentence for searching relevant passages: "}
	for _, tc := range []struct {
		model string
		want  embed.Prefixes
		ok    bool
	}{
		{"multilingual-e5-small", e5, true},
		{"intfloat/multilingual-e5-large-instruct", e5, true},
		{"intfloat/e5-base-v2", e5, true},
		{"E5-Small-V2", e5, true},
		{"nomic-embed-text:latest", embed.Prefixes{Query: "search_query: ", Document: "search_document: "}, true},
		{"nomic-ai/nomic-embed-text-v1.5", embed.Prefixes{Query: "search_query: ", Document: "search_document: "}, true},
		{"BAAI/bge-small-en-v1.5", bge, true},
		{"@cf/baai/bge-base-en-v1.5", bge, true},
		{"mxbai-embed-large", bge, true},
		{"text-embedding-3-small", embed.Prefixes{}, false},
		{"intfloat/e5-mistral-7b-instruct", embed.Prefixes{}, false},
		{"bge-m3", embed.Prefixes{}, false},
		{"", embed.Prefixes{}, false},
	} {
		got, ok := embed.KnownPrefixes(tc.model)
		if got != tc.want || ok != tc.ok {
			t.Errorf("KnownPrefixes(%q) = %+v, %v; want %+v, %v", tc.model, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPrefixedTexts(t *testing.T) {
	p := embed.Prefixes{Query: "query: ", Document: "passage: "}
	if got := p.QueryText("graph networks"); got != "query: graph networks" {
		t.Errorf("QueryText = %q", got)
	}
	if got := p.DocumentText("T", "A"); got != "passage: T\n\nA" {
		t.Errorf("DocumentText = %q", got)
	}
	if got := (embed.Prefixes{}).DocumentText("T", "A"); got != embed.PaperText("T", "A") {
		t.Errorf("no prefix: DocumentText = %q", got)
	}
}
