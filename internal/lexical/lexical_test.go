package lexical_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

func TestTerms(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Graph Neural Networks", []string{"graph", "neural", "network"}},
		{"We propose a novel method for the networks", []string{"network"}},
		{"GPT-4 beats BERT in 2023!", []string{"gpt", "beat", "bert"}},
		{"x y 42 3.14", nil},
		{"Übersetzung résumé", []string{"übersetzung", "résumé"}},
		{"running runs ran", []string{"run", "run", "ran"}},
	}
	for _, tc := range cases {
		if got := lexical.Terms(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Terms(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func weight(v lexical.Vector, term string) float32 {
	i, ok := slices.BinarySearch(v.Indices, lexical.TermID(term))
	if !ok {
		return 0
	}
	return v.Values[i]
}

func TestDocumentWeighsTitleTerms(t *testing.T) {
	v := lexical.Document("Graph networks", "A graph of graphs.")
	if !slices.IsSorted(v.Indices) {
		t.Fatal("indices not sorted")
	}
	if got := weight(v, "graph"); got != lexical.TitleWeight+2 {
		t.Errorf("graph tf = %v, want title weight %d + 2", got, lexical.TitleWeight)
	}
	if got := weight(v, "network"); got != lexical.TitleWeight {
		t.Errorf("network tf = %v, want %d", got, lexical.TitleWeight)
	}
	if got := weight(v, "graph network"); got != lexical.TitleWeight*lexical.BigramWeight {
		t.Errorf("pair tf = %v, want %v", got, lexical.TitleWeight*lexical.BigramWeight)
	}
	// Title: 2 terms and 1 pair, twice; abstract: 2 terms and 1 pair ("graph graph").
	if want := float32(lexical.TitleWeight*(2+lexical.BigramWeight) + 2 + lexical.BigramWeight); v.Sum() != want {
		t.Errorf("length = %v, want %v", v.Sum(), want)
	}
}

func TestQuerySaturatesRepeats(t *testing.T) {
	v := lexical.Query("graph graph graph graph retrieval")
	if g, r := weight(v, "graph"), weight(v, "retriev"); !(g > r && g < 4*r) {
		t.Errorf("graph %v vs retrieval %v: want more weight, sublinear", g, r)
	}
}

func TestCombine(t *testing.T) {
	a, b := lexical.Query("speech recognition"), lexical.Query("speech synthesis")
	neg := lexical.Query("synthesis")
	v := lexical.Combine([]lexical.Vector{a, b}, []lexical.Vector{neg})
	if got := weight(v, "speech"); got != 1 {
		t.Errorf("speech (in both seeds) = %v, want 1", got)
	}
	if got := weight(v, "recognit"); got != 0.5 {
		t.Errorf("recognition (one seed of two) = %v, want 0.5", got)
	}
	if got := weight(v, "synthesi"); got != 0.5-lexical.NegativeWeight {
		t.Errorf("synthesis = %v, want %v", got, 0.5-lexical.NegativeWeight)
	}
	if !slices.IsSorted(v.Indices) {
		t.Error("indices not sorted")
	}
}

// TestDocumentMatchesItsDefinition checks Document, which hashes as it reads, against its
// definition spelled out with Terms and strings: term and pair frequencies by string, merged by
// TermID.
func TestDocumentMatchesItsDefinition(t *testing.T) {
	race.Skip(t)
	byDefinition := func(title, abstract string) map[uint32]float32 {
		tf := map[string]float32{}
		for _, f := range []struct {
			text string
			w    float32
		}{{title, lexical.TitleWeight}, {abstract, 1}} {
			terms := lexical.Terms(f.text)
			for i, term := range terms {
				tf[term] += f.w
				if i > 0 {
					tf[terms[i-1]+" "+term] += f.w * lexical.BigramWeight
				}
			}
		}
		out := map[uint32]float32{}
		for term, n := range tf {
			out[lexical.TermID(term)] += n
		}
		return out
	}
	papers := testutil.ReadPapers(t, filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz"))
	texts := [][2]string{{"Übersetzung résumé", "GPT-4 beats BERT in 2023! naïve Ångström x y 42 3.14 \xff\xfe"},
		{"", ""}, {"The", "of the and"}, {"C++ and C#: Ω-networks", "ÀÉÎ 𝔊raph sub-word\u00a0tokens"}}
	for _, p := range papers {
		texts = append(texts, [2]string{p.GetTitle(), p.GetAbstract()})
	}
	for _, tx := range texts {
		v, want := lexical.Document(tx[0], tx[1]), byDefinition(tx[0], tx[1])
		got := map[uint32]float32{}
		for i, id := range v.Indices {
			got[id] = v.Values[i]
		}
		if !slices.IsSorted(v.Indices) || len(got) != len(v.Indices) {
			t.Fatalf("%q: indices not sorted and unique", tx[0])
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d terms, want %d", tx[0], len(got), len(want))
		}
		for id, n := range want {
			if got[id] != n {
				t.Fatalf("%q: term %d has %v, want %v", tx[0], id, got[id], n)
			}
		}
	}
}
