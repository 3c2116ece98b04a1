package recommend

import (
	"context"
	"fmt"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/store"
)

// AttachVectors gives each paper its dense vector: a stored paper whose embedded text is
// unchanged keeps its vector without an API call; the others are embedded in one call (when an
// embedder is configured). On any embedding failure nothing is attached, so nothing of the
// batch is stored.
func (e *Engine) AttachVectors(ctx context.Context, papers []store.Paper) error {
	ids := make([]string, len(papers))
	for i := range papers {
		ids[i] = papers[i].ID
	}
	existing, err := e.Store.Lookup(ctx, ids)
	if err != nil {
		return err
	}
	stored := make(map[string]*store.Paper, len(existing))
	for i := range existing {
		stored[existing[i].ID] = &existing[i]
	}
	var todo []int
	var texts []string
	for i := range papers {
		p := &papers[i]
		text := e.prefixes().DocumentText(p.Title, p.Abstract)
		hash := embed.TextHash(text)
		if old := stored[p.ID]; old != nil && old.DenseHash == hash && len(old.Dense) > 0 && old.DenseSet == e.Spec.Key() {
			p.Dense, p.DenseHash, p.DenseSet = old.Dense, hash, old.DenseSet
			continue
		}
		if e.Embedder != nil {
			todo = append(todo, i)
			texts = append(texts, text)
		}
	}
	if len(texts) == 0 {
		return nil
	}
	vecs, err := e.Embedder.Embed(ctx, texts)
	if err != nil {
		return fmt.Errorf("embed %d papers: %w", len(texts), err)
	}
	if err := e.checkDims(vecs); err != nil {
		return err
	}
	for j, i := range todo {
		papers[i].Dense, papers[i].DenseHash, papers[i].DenseSet = vecs[j], embed.TextHash(texts[j]), e.Spec.Key()
	}
	return nil
}
