package embedded

import (
	"context"
	"fmt"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// LexicalTopK is the store's lexical search, pruned or scoring every posting.
func (s *Store) LexicalTopK(ctx context.Context, qv lexical.Vector, f store.Filter, k int, prune bool) ([]store.Scored, error) {
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

// HoldLinker pauses the linker after the batch in hand; release resumes it.
func (s *Store) HoldLinker() (release func()) {
	s.linkHold.Lock()
	s.linkHeld = true
	s.linkHold.Unlock()
	return func() {
		s.linkHold.Lock()
		s.linkHeld = false
		s.linkHold.Unlock()
		select {
		case s.idx.wake <- struct{}{}:
		default:
		}
	}
}

// Unlinked counts the vectors waiting for the linker.
func (s *Store) Unlinked() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.unlinked()
}

// CheckLinks verifies that each graph's published nodes and the docs agree: every live doc
// with a vector is either queued or a live node mapped back to it, and the graph holds no other
// live node.
func (s *Store) CheckLinks() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.idx
	for slot := range x.sets {
		vs := &x.sets[slot]
		if vs.ann == nil {
			continue
		}
		if vs.ann.Nodes() != len(vs.annDocs) {
			return fmt.Errorf("slot %d: %d nodes, %d published", slot, vs.ann.Nodes(), len(vs.annDocs))
		}
		entries := map[uint32]int{}
		for _, n := range vs.queued {
			entries[n]++
		}
		linked := 0
		for n := range x.docs {
			d := &x.docs[n]
			if want := map[bool]int{true: 1}[d.listed[slot]]; entries[uint32(n)] != want || d.ann[slot] == annQueued && !d.listed[slot] {
				return fmt.Errorf("slot %d: %s is in the queue %d times (listed %v, node %d)", slot, d.id, entries[uint32(n)], d.listed[slot], d.ann[slot])
			}
			if !d.alive || d.dense[slot] == nil {
				continue
			}
			switch a := d.ann[slot]; {
			case a == annQueued:
			case a < 0:
				return fmt.Errorf("slot %d: %s has a vector but no node and is not queued", slot, d.id)
			case vs.annDocs[a] != uint32(n):
				return fmt.Errorf("slot %d: %s's node %d maps to doc %d", slot, d.id, a, vs.annDocs[a])
			default:
				linked++
			}
		}
		if vs.ann.Len() != linked {
			return fmt.Errorf("slot %d: %d live nodes for %d linked papers", slot, vs.ann.Len(), linked)
		}
	}
	return nil
}

// LinkWithWriteBetween links one batch as the linker does, running write after the batch is
// taken and before it is published: the race the linker's publish must settle.
func (s *Store) LinkWithWriteBetween(write func()) {
	s.linkHold.Lock()
	defer s.linkHold.Unlock()
	s.mu.RLock()
	j := s.idx.takeLinkJob(linkBatch)
	s.mu.RUnlock()
	write()
	first := j.graph.AddBatch(j.vecs, 1)
	s.mu.Lock()
	s.idx.publish(j, first)
	s.mu.Unlock()
}

// MaxQueryTerms is how many of a query's heaviest terms a lexical search scores.
const MaxQueryTerms = maxQueryTerms
