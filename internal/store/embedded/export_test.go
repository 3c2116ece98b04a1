package embedded

import (
	"context"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/store"
)

// LexicalTopK is the store's lexical search, pruned or scoring every posting.
func (s *Store) LexicalTopK(ctx context.Context, qv lexical.Vector, f store.Filter, k int, prune bool) ([]rank.Scored, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.lexicalTopK(ctx, qv, s.idx.matcher(f), k, prune)
}

// AverageLengths returns the papers' average length and the one the terms' bounds were
// computed at.
func (s *Store) AverageLengths() (now, bounds float32) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return float32(s.idx.sumLen / float64(s.idx.live)), s.idx.boundAvg
}
