package rank_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/testutil/race"
)

func TestNormalizeTitle(t *testing.T) {
	for in, want := range map[string]string{
		"Attention Is All You Need.":      "attention is all you need",
		"  BERT: Pre-training (v2) ":      "bert pre training v2",
		"Über ÉCOLE — Straße, 3D-Graphen": "über école straße 3d graphen",
		"...":                             "",
	} {
		if got := rank.NormalizeTitle(in); got != want {
			t.Errorf("NormalizeTitle(%q) = %q, want %q", in, got, want)
		}
		// The key stands for the folded title: equal for equal foldings, 0 for an empty one.
		if key := rank.TitleKey(in); (key == 0) != (want == "") || key != rank.TitleKey(want) || key == rank.TitleKey(want+" x") {
			t.Errorf("TitleKey(%q) = %d; of %q: %d", in, key, want, rank.TitleKey(want))
		}
	}
}

func TestCollapseDuplicates(t *testing.T) {
	cands := []rank.Candidate{
		{ID: "a", Title: "Graph Neural Networks"},
		{ID: "b", Title: "Speech recognition"},
		{ID: "a2", Title: "graph neural networks."},
		{ID: "c", Title: "Sleep Staging"},
		{ID: "b2", Title: "Speech  Recognition!"},
	}
	got := rank.CollapseDuplicates(slices.Clone(cands))
	if len(got) != 3 || !slices.Equal(got[0].Duplicates, []string{"a2"}) || !slices.Equal(got[1].Duplicates, []string{"b2"}) {
		t.Fatalf("collapsed: %+v", got)
	}
	got = rank.CollapseDuplicates(slices.Clone(cands), "SPEECH recognition", "")
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, []string{"a", "c"}) || !slices.Equal(got[0].Duplicates, []string{"a2"}) {
		t.Fatalf("with a seed's title dropped: %v (%+v), want [a c]", ids, got)
	}
}

func TestSharedTermsByContribution(t *testing.T) {
	query := lexical.Query("polysomnography number sleep")
	text := "Sleep staging from polysomnography; the number of nights, the number of epochs."
	id := func(word string) uint32 { return lexical.TermID(lexical.Analyze(word)[0].Term) }
	idf := map[uint32]float64{id("polysomnography"): 5, id("number"): 0.2, id("sleep"): 2}
	rarity := func(t uint32) float64 {
		if v, ok := idf[t]; ok {
			return v
		}
		return 1
	}
	var got []string
	for _, tw := range rank.SharedTerms(query, text, rarity, 5) {
		got = append(got, tw.Term)
	}
	// number occurs twice, but its idf is small: contribution, not count, orders them.
	if !slices.Equal(got, []string{"polysomnography", "sleep", "number"}) {
		t.Fatalf("shared terms %v", got)
	}
	// A term met inside a hyphenated word is shown as that word, once.
	got = got[:0]
	for _, tw := range rank.SharedTerms(lexical.Query("end to end speech"), "End-to-end speech recognition in real time.", rarity, 5) {
		got = append(got, tw.Term)
	}
	if !slices.Equal(got, []string{"end-to-end", "speech"}) && !slices.Equal(got, []string{"speech", "end-to-end"}) {
		t.Fatalf("shared terms %v, want end-to-end and speech", got)
	}
	// A word the text also writes alone is shown alone.
	got = got[:0]
	for _, tw := range rank.SharedTerms(lexical.Query("privacy"), "Privacy-promoting synthetic data for privacy.", rarity, 5) {
		got = append(got, tw.Term)
	}
	if !slices.Equal(got, []string{"privacy"}) {
		t.Fatalf("shared terms %v, want privacy", got)
	}
}

// TestMMRMatchesReference: the first k picks are those of plain greedy MMR over Similarity (the
// algorithm as written in the paper), with and without embeddings, on candidates in relevance
// order and shuffled, with scores far apart and close together (where similarity decides); the
// rest follow in the order they came.
func TestMMRMatchesReference(t *testing.T) {
	race.Skip(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, dims := range []int{-1, 0, 16} { // -1: sketches, no embeddings
		for _, spread := range []float32{1, 0.001} {
			for _, shuffled := range []bool{false, true} {
				name := fmt.Sprintf("dims %d, spread %v, shuffled %v", dims, spread, shuffled)
				cands := make([]rank.Candidate, 200)
				for i := range cands {
					c := &cands[i]
					c.ID, c.Score = fmt.Sprintf("p%03d", i), 1+spread*(float32(200-i)+rng.Float32())
					// 60 common terms and 1,000 rare ones.
					for term := range uint32(1060) {
						if (term < 60 && rng.IntN(4) == 0) || (term >= 60 && rng.IntN(50) == 0) {
							c.Lexical.Indices = append(c.Lexical.Indices, term)
							c.Lexical.Values = append(c.Lexical.Values, float32(1+rng.IntN(3)))
						}
					}
					for range dims {
						c.Dense = append(c.Dense, float32(rng.NormFloat64()))
					}
					if dims < 0 {
						sk := c.Lexical.Sketch()
						c.Sketch = &sk
					}
				}
				if shuffled {
					rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
				}
				const k = 25
				got, err := rank.MMR(context.Background(), slices.Clone(cands), 0.6, k)
				if err != nil {
					t.Fatal(err)
				}
				want := referenceMMR(cands, 0.6, k)
				for i := range k {
					if got[i].ID != want[i].ID {
						t.Fatalf("%s: pick %d is %s, want %s", name, i, got[i].ID, want[i].ID)
					}
				}
				if len(got) != len(cands) {
					t.Fatalf("%s: %d candidates out of %d", name, len(got), len(cands))
				}
				var rest []rank.Candidate
				for _, c := range cands {
					if !slices.ContainsFunc(got[:k], func(p rank.Candidate) bool { return p.ID == c.ID }) {
						rest = append(rest, c)
					}
				}
				for i := range rest {
					if got[k+i].ID != rest[i].ID {
						t.Fatalf("%s: after the picks, %s at %d, want %s", name, got[k+i].ID, k+i, rest[i].ID)
					}
				}
			}
		}
	}
}

// referenceMMR is greedy MMR for k picks, straight from the definition.
func referenceMMR(cands []rank.Candidate, diversity float64, k int) []rank.Candidate {
	best := 0.0
	for _, c := range cands {
		best = max(best, float64(c.Score))
	}
	left := slices.Clone(cands)
	var out []rank.Candidate
	for len(left) > 0 && len(out) < k {
		pick, pickValue := 0, math.Inf(-1)
		for i := range left {
			maxSim := 0.0
			for j := range out {
				maxSim = max(maxSim, rank.Similarity(&out[j], &left[i]))
			}
			if v := (1-diversity)*float64(left[i].Score)/best - diversity*maxSim; v > pickValue {
				pick, pickValue = i, v
			}
		}
		out = append(out, left[pick])
		left = slices.Delete(left, pick, pick+1)
	}
	return out
}

func TestApplyRecency(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cands := []rank.Candidate{
		{ID: "old", Score: 1, Date: "2016-01-01"},   // ten years: factor 2^-10
		{ID: "new", Score: 0.5, Date: "2025-01-01"}, // one year: factor 1/2
		{ID: "year", Score: 0.5, Year: 2025},        // the middle of 2025: half a year
		{ID: "undated", Score: 1},                   // the oldest dated candidate's factor
	}
	rank.ApplyRecency(cands, 365*24*time.Hour, now)
	var got []string
	for _, c := range cands {
		got = append(got, c.ID)
	}
	if !slices.Equal(got, []string{"year", "new", "old", "undated"}) {
		t.Fatalf("order %v, want year new old undated", got)
	}
	want := map[string]float64{"new": 0.25, "old": math.Pow(2, -10.0*3653/3650), "undated": math.Pow(2, -10.0*3653/3650)}
	for _, c := range cands {
		if w, ok := want[c.ID]; ok && math.Abs(float64(c.Score)-w) > 1e-4 {
			t.Errorf("%s: score %v, want %v", c.ID, c.Score, w)
		}
	}
}
