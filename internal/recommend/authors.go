package recommend

import (
	"context"
	"slices"

	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// breakTiesByAuthors orders the candidates the ranking scores equally by how many authors they
// share with the positive seeds, most first (Engine.AuthorTieBreak): among papers the signals
// cannot tell apart, the seed's own authors' are likelier to be what its reader wants. Only
// the tied candidates' authors are read.
func (e *Engine) breakTiesByAuthors(ctx context.Context, cands []rank.Candidate, seeds []store.Paper) error {
	seedAuthors := map[string]bool{}
	for _, s := range seeds {
		for _, a := range s.Authors {
			seedAuthors[store.NormalizeAuthor(a)] = true
		}
	}
	var tied []string
	for i := range cands {
		if (i > 0 && cands[i].Score == cands[i-1].Score) || (i+1 < len(cands) && cands[i].Score == cands[i+1].Score) {
			tied = append(tied, cands[i].ID)
		}
	}
	if len(seedAuthors) == 0 || len(tied) == 0 {
		return nil
	}
	records, err := e.Store.Read(ctx, tied, store.Metadata, "")
	if err != nil {
		return err
	}
	shared := make(map[string]int, len(records))
	for _, r := range records {
		for _, a := range r.Paper.Authors {
			if seedAuthors[store.NormalizeAuthor(a)] {
				shared[r.Paper.ID]++
			}
		}
	}
	for i := 0; i < len(cands); {
		j := i + 1
		for j < len(cands) && cands[j].Score == cands[i].Score {
			j++
		}
		slices.SortStableFunc(cands[i:j], func(a, b rank.Candidate) int { return shared[b.ID] - shared[a.ID] })
		i = j
	}
	return nil
}
