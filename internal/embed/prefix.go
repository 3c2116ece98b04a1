package embed

import (
	"path"
	"strings"
)

// Prefixes are the instructions an asymmetric embedding model was trained to see before a query
// and before a document. Sent without them (or with another model's), such a model's query and
// document vectors land in different regions and similarities drop.
type Prefixes struct {
	Query, Document string
}

// bgeQuery is the instruction BAAI's English bge v1.5 models (and models trained the same way)
// put before a short query; documents go bare.
const bgeQuery = "Represent this sentence for searching relevant passages: "

// presets maps a model's base name, lower case, to the prefixes its model card prescribes. A
// name matches a preset when it starts with it, so sizes and versions share one entry.
var presets = []struct {
	prefix string
	p      Prefixes
}{
	// intfloat's e5 family (e5-*, multilingual-e5-*, their v2s); not e5-mistral, which takes a
	// task instruction instead.
	{"e5-small", Prefixes{"query: ", "passage: "}},
	{"e5-base", Prefixes{"query: ", "passage: "}},
	{"e5-large", Prefixes{"query: ", "passage: "}},
	{"multilingual-e5-", Prefixes{"query: ", "passage: "}},
	{"nomic-embed-text", Prefixes{"search_query: ", "search_document: "}},
	{"bge-small-en", Prefixes{bgeQuery, ""}},
	{"bge-base-en", Prefixes{bgeQuery, ""}},
	{"bge-large-en", Prefixes{bgeQuery, ""}},
	{"mxbai-embed-large", Prefixes{bgeQuery, ""}},
	{"snowflake-arctic-embed", Prefixes{bgeQuery, ""}},
}

// KnownPrefixes returns the prefixes prescribed for model, recognised by its base name whatever
// the provider calls it ("intfloat/multilingual-e5-small", "nomic-embed-text:latest",
// "@cf/baai/bge-small-en-v1.5"); ok is false for a model with no known prefixes (OpenAI's
// text-embedding-3 models need none).
func KnownPrefixes(model string) (p Prefixes, ok bool) {
	name := strings.ToLower(path.Base(model))
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i] // Ollama's tag
	}
	for _, e := range presets {
		if strings.HasPrefix(name, e.prefix) {
			return e.p, true
		}
	}
	return Prefixes{}, false
}

// QueryText is the text embedded for a free-text query.
func (p Prefixes) QueryText(query string) string { return p.Query + query }

// DocumentText is the text embedded for a paper (see PaperText).
func (p Prefixes) DocumentText(title, abstract string) string {
	return p.Document + PaperText(title, abstract)
}
