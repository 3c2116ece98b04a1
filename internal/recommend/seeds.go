package recommend

import (
	"context"
	"fmt"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// InlineSeed is a seed paper given by its text: analysed and embedded for one request, never
// stored.
type InlineSeed struct {
	Title, Abstract     string
	Authors, Categories []string
	Year                int32
	// Dense is its embedding by the engine's model, when the caller kept one (a feed keeps its
	// seeds'); empty: embedded with the request.
	Dense []float32
}

// HasWords reports whether the seed has a searchable word in its title or abstract: without
// one it cannot be matched lexically.
func (s InlineSeed) HasWords() bool { return lexical.Document(s.Title, s.Abstract).Len() > 0 }

// SeedStatus is what became of one seed.
type SeedStatus int

// Seed statuses.
const (
	SeedFound       SeedStatus = iota + 1 // a stored paper, used
	SeedInline                            // an inline paper, used
	SeedNotFound                          // an id no paper has; left out
	SeedDuplicate                         // an inline paper titled like an earlier seed; left out (the server reports a repeated id so too)
	SeedNoEmbedding                       // a stored paper without a vector of the model yet: used lexically
)

// SeedResult reports one seed: ID for a seed given by id, else Inline, its index among the
// request's inline seeds of its side.
type SeedResult struct {
	ID       string
	Inline   int
	Negative bool
	Status   SeedStatus
	Title    string
}

// InlineSeedID names an inline seed where a paper id is expected (an explanation's closest
// seed): the request field and index it came from.
func InlineSeedID(negative bool, i int) string {
	if negative {
		return fmt.Sprintf("negative_papers[%d]", i)
	}
	return fmt.Sprintf("positive_papers[%d]", i)
}

// seedPapers are a request's seeds that resolved: stored ones first, then inline ones, whose
// embeddings plan makes.
type seedPapers struct {
	positive, negative []store.Paper
	// positiveInline and negativeInline are where the inline seeds start in each list.
	positiveInline, negativeInline int
}

// loadSeeds reads the seeds given by id and analyses the inline ones. An unknown id is left out
// and reported; the request fails with NOT_FOUND only when no seed resolved at all, or none of
// the positive ones does and there is no text to go by.
func (e *Engine) loadSeeds(ctx context.Context, r Request) (seedPapers, []SeedResult, error) {
	var s seedPapers
	var out []SeedResult
	stored, err := e.Store.Lookup(ctx, append(append([]string(nil), r.Positive...), r.Negative...))
	if err != nil {
		return s, nil, fmt.Errorf("load seed papers: %w", err)
	}
	byID := make(map[string]store.Paper, len(stored))
	for _, p := range stored {
		byID[p.ID] = p
	}
	titles := map[uint64]bool{} // the resolved seeds' titles, for inline duplicates
	var unknown []string
	for _, side := range []struct {
		ids      []string
		negative bool
		papers   *[]store.Paper
	}{{r.Positive, false, &s.positive}, {r.Negative, true, &s.negative}} {
		for _, id := range side.ids {
			res := SeedResult{ID: id, Inline: -1, Negative: side.negative, Status: SeedNotFound}
			if p, ok := byID[id]; ok {
				res.Status, res.Title = SeedFound, p.Title
				*side.papers = append(*side.papers, p)
				titles[rank.TitleKey(p.Title)] = true
			} else {
				unknown = append(unknown, id)
			}
			out = append(out, res)
		}
	}
	s.positiveInline, s.negativeInline = len(s.positive), len(s.negative)
	for _, side := range []struct {
		seeds    []InlineSeed
		negative bool
		papers   *[]store.Paper
	}{{r.InlinePositive, false, &s.positive}, {r.InlineNegative, true, &s.negative}} {
		for i, in := range side.seeds {
			res := SeedResult{Inline: i, Negative: side.negative, Status: SeedInline, Title: in.Title}
			if key := rank.TitleKey(in.Title); key != 0 && titles[key] {
				res.Status = SeedDuplicate
			} else {
				if key != 0 {
					titles[key] = true
				}
				*side.papers = append(*side.papers, store.Paper{ID: InlineSeedID(side.negative, i), Title: in.Title,
					Abstract: in.Abstract, Authors: in.Authors, Categories: in.Categories, Year: in.Year,
					Lexical: lexical.Document(in.Title, in.Abstract), Dense: in.Dense})
			}
			out = append(out, res)
		}
	}
	if len(unknown) > 0 && (len(s.positive)+len(s.negative) == 0 || (len(s.positive) == 0 && r.Text == "")) {
		return s, nil, fmt.Errorf("load seed papers: %w", &store.NotFoundError{IDs: unknown})
	}
	return s, out, nil
}

// noteUnembedded marks the stored seeds that have no vector yet (papers stored before the
// store had its model, while the server embeds them): they are used by their words alone.
func noteUnembedded(statuses []SeedResult, seeds seedPapers) {
	next := [2]int{} // the next stored paper of each side
	for i := range statuses {
		st := &statuses[i]
		if st.Status != SeedFound {
			continue
		}
		side, papers := 0, seeds.positive
		if st.Negative {
			side, papers = 1, seeds.negative
		}
		if p := papers[next[side]]; len(p.Dense) == 0 {
			st.Status = SeedNoEmbedding
		}
		next[side]++
	}
}
