package embedded

import (
	"context"
	"runtime"
	"time"

	"github.com/viterin/vek/vek32"

	"github.com/paperrec/recommender/internal/ann"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/topk"
)

// annQueued marks a doc whose vector waits for the linker (doc.ann).
const annQueued = -2

// linkBatch is how many vectors the linker adds to a graph at once. The graph's searches wait
// for a batch (about 0.1 s at 2,800 vectors/s), and more per batch links no faster.
const linkBatch = 256

// linkJob is one batch: vectors taken under the read lock, linked with no store lock held,
// published under the write lock. Papers are named by id because a compaction may renumber
// docs in between.
type linkJob struct {
	slot  int
	graph *ann.Index
	ids   []string
	vecs  [][]float32
	// upto is the length of the queue's head the job was taken from, valid while the index's
	// compactions count is still gen: publish tidies that head only.
	upto, gen int
}

// takeLinkJob collects up to max queued vectors of one set; nil when none waits.
func (x *index) takeLinkJob(max int) *linkJob {
	for slot := range x.sets {
		vs := &x.sets[slot]
		if vs.ann == nil {
			continue
		}
		var j *linkJob
		for i, n := range vs.queued {
			d := &x.docs[n]
			if d.ann[slot] != annQueued {
				continue
			}
			if j == nil {
				j = &linkJob{slot: slot, graph: vs.ann, gen: x.compactions}
			}
			j.ids, j.vecs, j.upto = append(j.ids, d.id), append(j.vecs, d.dense[slot]), i+1
			if len(j.vecs) == max {
				break
			}
		}
		if j != nil {
			return j
		}
	}
	return nil
}

// publish makes the nodes j added (ids first, first+1, ...) visible to searches. A paper
// deleted, or given another vector, while it was being linked leaves its node a tombstone;
// a graph rebuilt meanwhile already holds every vector, so the job is dropped.
func (x *index) publish(j *linkJob, first uint32) {
	vs := &x.sets[j.slot]
	if vs.ann != j.graph {
		return
	}
	// Only the linker adds nodes, so the graph's new ids follow the published ones.
	for i, id := range j.ids {
		node := first + uint32(i)
		if n, ok := x.byID[id]; ok {
			if d := &x.docs[n]; d.ann[j.slot] == annQueued && &d.dense[j.slot][0] == &j.vecs[i][0] {
				d.ann[j.slot] = int32(node)
				vs.annDocs = append(vs.annDocs, n)
				continue
			}
		}
		vs.ann.Delete(node)
		vs.annDocs = append(vs.annDocs, 0) // a tombstone's entry is never read
	}
	// Drop the head's entries that no longer wait, keeping the rest in place: O(batch), where
	// the whole queue can hold the best part of a bulk load.
	head := vs.queued
	if x.compactions == j.gen {
		head = vs.queued[:j.upto]
	}
	kept := len(head)
	for i := len(head) - 1; i >= 0; i-- {
		if d := &x.docs[head[i]]; d.ann[j.slot] == annQueued {
			kept--
			head[kept] = head[i]
		} else {
			d.listed[j.slot] = false
		}
	}
	vs.queued = vs.queued[kept:]
}

// unlinked counts the vectors waiting for the linker, in every set.
func (x *index) unlinked() int {
	total := 0
	for slot := range x.sets {
		for _, n := range x.sets[slot].queued {
			if x.docs[n].ann[slot] == annQueued {
				total++
			}
		}
	}
	return total
}

// scanQueued pushes the queued vectors of slot that m accepts, scored exactly.
func (x *index) scanQueued(ctx context.Context, q []float32, m *matcher, slot int, top *topk.List[scored]) error {
	for i, n := range x.sets[slot].queued {
		if i%4096 == 4095 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		d := &x.docs[n]
		if d.ann[slot] == annQueued && len(d.dense[slot]) == len(q) && m.match(n) {
			// The graph's own dot product: a vector scores the same before and after linking.
			top.Push(scored{doc: n, score: vek32.Dot(q, d.dense[slot])})
		}
	}
	return nil
}

// startLinker runs the linker until Close: it links queued vectors into their graph in
// batches, behind the writes, on every core the writes leave it.
func (s *Store) startLinker() {
	s.idx.wake = make(chan struct{}, 1)
	s.linkStop, s.linkDone, s.linked = make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.linkDone)
		for {
			start, linked := time.Now(), 0
			for s.linkOnce() {
				linked++
				select {
				case <-s.linkStop:
					return
				default:
				}
			}
			if linked*linkBatch >= 10_000 { // a bulk load's backlog, not a trickle of writes
				s.log.Info("vector index caught up with the writes", "batches", linked, "seconds", time.Since(start).Seconds())
			}
			select {
			case <-s.linkStop:
				return
			case <-s.idx.wake:
			}
		}
	}()
	s.idx.wake <- struct{}{} // vectors queued while opening
}

// linkOnce links one batch; false when nothing waits (or tests hold the linker).
func (s *Store) linkOnce() bool {
	s.linkHold.Lock()
	defer s.linkHold.Unlock()
	if s.linkHeld {
		return false
	}
	for _, ff := range s.floatFiles {
		if !ff.Intact() { // its vectors would fault; searches of them fail, naming the file
			s.linkBroken.Do(func() {
				s.log.Error("a vectors file was cut short under the running store: vectors are no longer linked; restart the server (the next start reads the papers)",
					"dir", s.dir)
			})
			return false
		}
	}
	s.mu.RLock()
	j := s.idx.takeLinkJob(linkBatch)
	s.mu.RUnlock()
	if j == nil {
		return false
	}
	// One core while writes stream in, so a bulk load keeps its pace; every core once they
	// stop, to catch up.
	threads := runtime.GOMAXPROCS(0)
	if time.Since(time.Unix(0, s.lastCommit.Load())) < time.Second/4 {
		threads = 1
	}
	first := j.graph.AddBatch(j.vecs, threads)
	s.mu.Lock()
	s.idx.publish(j, first)
	close(s.linked)
	s.linked = make(chan struct{})
	s.mu.Unlock()
	return true
}

// stopLinker stops the linker after the batch in hand is published.
func (s *Store) stopLinker() {
	close(s.linkStop)
	<-s.linkDone
}

// WaitLinked returns once every vector written so far is linked into its graph (searches
// find vectors at once either way; unlinked ones are scored exactly, which slows dense search
// while many wait, as during a bulk load), or when ctx ends or the store closes.
func (s *Store) WaitLinked(ctx context.Context) error {
	for {
		s.mu.RLock()
		n, linked, closed := s.idx.unlinked(), s.linked, s.closed
		s.mu.RUnlock()
		if closed {
			return store.ErrClosed
		}
		if n == 0 {
			return nil
		}
		select {
		case <-linked:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
