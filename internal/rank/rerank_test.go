package rank_test

import (
	"slices"
	"testing"

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
