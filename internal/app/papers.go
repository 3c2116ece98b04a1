package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
)

// Recommend answers a request with the pipeline of the store's active model. parse makes the
// request, given the name of the ranking that answers it (recommend.Engine.Ranking, which page
// tokens carry); when the store switches models during the call, it is made and answered again
// with the new one.
func (s *App) Recommend(ctx context.Context, parse func(ranking string) (recommend.Request, error)) (*recommend.Result, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	var res *recommend.Result
	err := s.withEngine(ctx, func(e *recommend.Engine) error {
		r, err := parse(e.Ranking())
		if err != nil {
			return err
		}
		res, err = e.Recommend(ctx, r)
		return err
	})
	return res, domainErr(err)
}

// Ranking names the ranking of the active model (recommend.Engine.Ranking).
func (s *App) Ranking() string { return s.eng().Ranking() }

// Paper returns a stored paper, or a *store.NotFoundError.
func (s *App) Paper(ctx context.Context, id string) (store.Paper, error) {
	papers, err := s.store.Get(ctx, []string{id})
	if err != nil {
		return store.Paper{}, err
	}
	return papers[0], nil
}

// Counts are what a write did to its papers.
type Counts struct{ Inserted, Updated, Unchanged int64 }

func (c *Counts) add(outcomes []store.Outcome) {
	for _, o := range outcomes {
		switch o {
		case store.Inserted:
			c.Inserted++
		case store.Updated:
			c.Updated++
		case store.Unchanged:
			c.Unchanged++
		}
	}
}

// observe exports the counts, and the papers a transport rejected, as metrics.
func (s *App) observe(c Counts, rejected int64) {
	s.metrics.ObserveIngest("inserted", c.Inserted)
	s.metrics.ObserveIngest("updated", c.Updated)
	s.metrics.ObserveIngest("unchanged", c.Unchanged)
	s.metrics.ObserveIngest("rejected", rejected)
}

// analyze gives papers their lexical representation.
func analyze(papers []store.Paper) {
	for i := range papers {
		papers[i].Lexical = lexical.Document(papers[i].Title, papers[i].Abstract)
	}
}

// Upsert writes valid papers (fields checked and cleaned by the transport) durably: analysed,
// embedded (a paper whose text is unchanged keeps its vector), then stored.
func (s *App) Upsert(ctx context.Context, papers []store.Paper) (Counts, error) {
	if err := s.ready(); err != nil {
		return Counts{}, err
	}
	analyze(papers)
	var outcomes []store.Outcome
	err := s.withEngine(ctx, func(e *recommend.Engine) error {
		if err := e.AttachVectors(ctx, papers); err != nil {
			return err
		}
		var err error
		outcomes, err = s.store.Upsert(ctx, papers)
		return err
	})
	if err != nil {
		return Counts{}, domainErr(err)
	}
	var c Counts
	c.add(outcomes)
	s.observe(c, 0)
	return c, nil
}

// Batches gives Ingest its papers: the next batch of valid ones, and how many the transport
// rejected since the last call; io.EOF once the client has sent everything.
type Batches func() (papers []store.Paper, rejected int64, err error)

// Ingest writes a stream of batches in a two-stage pipeline: the caller's goroutine receives,
// analyses and embeds batch n+1 while a second one writes batch n durably, so the embedding API
// stays busy while the store keeps up. A client that dies mid-stream loses only the batches not
// yet written; re-sending them is cheap, since unchanged papers are skipped.
func (s *App) Ingest(ctx context.Context, next Batches) (Counts, error) {
	if err := s.ready(); err != nil {
		return Counts{}, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ready := make(chan []store.Paper, 1)
	var c Counts
	written := make(chan error, 1)
	go func() {
		var err error
		for papers := range ready {
			if err != nil {
				continue // drain after a failure
			}
			var outcomes []store.Outcome
			err = s.withEngine(ctx, func(e *recommend.Engine) error {
				var err error
				if outcomes, err = s.store.Upsert(ctx, papers); err != nil {
					// Embedded for the set switched away from: embed them for the new one.
					var sw *store.EmbeddingSwitchedError
					if errors.As(err, &sw) && s.refreshEngine(ctx) == nil {
						if err := s.eng().AttachVectors(ctx, papers); err != nil {
							return err
						}
					}
				}
				return err
			})
			if err != nil {
				cancel(err)
				continue
			}
			c.add(outcomes)
		}
		written <- err
	}()
	rejected, err := s.embedBatches(ctx, next, ready)
	close(ready)
	if werr := <-written; werr != nil {
		return Counts{}, domainErr(werr)
	}
	if err != nil {
		return Counts{}, domainErr(err)
	}
	s.observe(c, rejected)
	return c, nil
}

// embedBatches is the first stage of Ingest: it takes batches until the last, analyses and
// embeds them and hands them to the writer; it returns how many papers the transport rejected.
func (s *App) embedBatches(ctx context.Context, next Batches, ready chan<- []store.Paper) (int64, error) {
	var rejected int64
	for {
		papers, r, err := next()
		rejected += r
		if errors.Is(err, io.EOF) {
			return rejected, nil
		}
		if err != nil {
			return rejected, err
		}
		if len(papers) == 0 {
			continue
		}
		analyze(papers)
		if err := s.eng().AttachVectors(ctx, papers); err != nil {
			return rejected, err
		}
		select {
		case ready <- papers:
		case <-ctx.Done():
			return rejected, context.Cause(ctx)
		}
	}
}

// Delete removes papers and returns the ids that were not stored.
func (s *App) Delete(ctx context.Context, ids []string) ([]string, error) {
	return s.store.Delete(ctx, ids)
}

// Info describes the store and the models serving it.
type Info struct {
	Stats store.Stats
	// Model is the active set's model, when the service embeds with one (zero: lexical); with
	// WithVectors of Stats.PaperCount papers having a vector in it.
	Model       store.EmbeddingSpec
	WithVectors int64
	// Other is the store's second set of vectors (zero: none), with OtherVectors papers in it;
	// Filling says this server is filling it.
	Other        store.EmbeddingSpec
	OtherVectors int64
	Filling      bool
	// Lists describes the neighbour lists (Length 0: none kept).
	Lists ListsInfo
}

// Info describes the store. The active set and the other one are read from the store, twice
// over if a switch of sets came between the reads, so the answer never shows one set on both
// sides (the service's pipeline follows a switch a moment later).
func (s *App) Info(ctx context.Context) (Info, error) {
	if err := s.ready(); err != nil {
		return Info{}, err
	}
	var st store.Stats
	var sets store.VectorSetStatus
	vs, hasSets := store.As[store.VectorSets](s.store)
	for try := 1; ; try++ {
		var err error
		if st, err = s.store.Stats(ctx); err != nil {
			return Info{}, err
		}
		if !hasSets {
			break
		}
		if sets, err = vs.VectorSetStatus(ctx); err != nil {
			return Info{}, err
		}
		again, err := s.store.Stats(ctx)
		if err != nil {
			return Info{}, err
		}
		if again.Embedding.Key() == st.Embedding.Key() || try == switchAttempts {
			st = again
			break
		}
	}
	info := Info{Stats: st, Other: sets.Other, OtherVectors: sets.OtherVectors}
	e := s.eng()
	if other, ok := s.engines[st.Embedding.Key()]; ok {
		e = other
	}
	if e.Embedder != nil {
		info.Model, info.WithVectors = e.Spec, st.PaperCount
		if hasSets {
			info.WithVectors = sets.ActiveVectors
		}
	}
	info.Filling = sets.Other.Model != "" && s.reembedOn.Load() && sets.Other.Key() == s.nextSpec.Key()
	var err error
	info.Lists, err = s.listsInfo(ctx)
	return info, err
}

// RetireVectorSet deletes the store's second set of vectors, and returns its model and how many
// papers had a vector in it.
func (s *App) RetireVectorSet(ctx context.Context) (store.EmbeddingSpec, int64, error) {
	if err := s.ready(); err != nil {
		return store.EmbeddingSpec{}, 0, err
	}
	vs, ok := store.As[store.VectorSets](s.store)
	if !ok {
		return store.EmbeddingSpec{}, 0, &apierr.PreconditionError{Reason: apierr.VectorSetBusy, Subject: "store", Message: "this store keeps one set of vectors: there is none to retire"}
	}
	st, err := vs.VectorSetStatus(ctx)
	if err != nil {
		return store.EmbeddingSpec{}, 0, err
	}
	o := st.Other
	switch {
	case o.Model == "":
		return store.EmbeddingSpec{}, 0, &apierr.PreconditionError{Reason: apierr.VectorSetBusy, Subject: "store", Message: "the store keeps no second set of vectors"}
	case s.reembedOn.Load() && o.Key() == s.nextSpec.Key():
		return store.EmbeddingSpec{}, 0, &apierr.PreconditionError{Reason: apierr.VectorSetBusy, Subject: "store",
			Message: fmt.Sprintf("this server is re-embedding the papers into the set of model %q; it cannot be retired before the switch", o.Model)}
	}
	if err := vs.RetireVectorSet(ctx); err != nil {
		return store.EmbeddingSpec{}, 0, err
	}
	return o, st.OtherVectors, nil
}
