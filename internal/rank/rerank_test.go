package rank_test

import (
	"slices"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
)

func TestCollapseAndDropTitles(t *testing.T) {
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
	got = rank.DropTitles(got, []string{"SPEECH recognition", ""})
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, []string{"a", "c"}) {
		t.Fatalf("after dropping the seed's title: %v, want [a c]", ids)
	}
	if got := rank.DropTitles(slices.Clone(cands), nil); len(got) != len(cands) {
		t.Fatalf("no titles dropped %d of %d", len(cands)-len(got), len(cands))
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
}
