// Package reembed moves a store's papers to another embedding model while the service keeps
// answering from the current one: it fills the store's second vector set, then switches to it.
package reembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/store"
)

// DefaultBatch is how many papers are embedded (one call, split into requests by the client) and
// written at once.
const DefaultBatch = 256

// Job re-embeds every paper with Embedder into the set of Spec and switches to it.
type Job struct {
	Sets     store.VectorSets
	Embedder embed.Embedder
	Spec     store.EmbeddingSpec // Embedder's model, size and prefixes
	Batch    int                 // 0: DefaultBatch
	Log      *slog.Logger
}

// Backoff bounds while the embedding API is unavailable.
const (
	retryInitial = time.Second
	retryMax     = time.Minute
)

// Run fills the set and switches to it, returning nil once the store's active set is Spec's.
// Papers already holding a vector of Spec for their current text are skipped, so a run stopped
// in any way (SIGKILL included) resumes where it was. Papers written during a pass lack the new
// vector: the switch embeds the last few while writes wait (store.MaxSwitchFill), another pass
// the rest. An embedding API that is unavailable is waited for; any other failure ends the run.
func (j *Job) Run(ctx context.Context) error {
	batch := j.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	log := j.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := j.Sets.BeginVectorSet(ctx, j.Spec); errors.Is(err, store.ErrSetActive) {
		return nil // switched already (by another replica)
	} else if err != nil {
		return err
	}
	fill := func(ctx context.Context, papers []store.Paper) ([]store.SetVector, error) {
		return j.vectors(ctx, papers, log)
	}
	for pass := 1; ; pass++ {
		embedded := 0
		for after := ""; ; {
			papers, err := j.Sets.MissingVectors(ctx, after, batch)
			if err != nil {
				return err
			}
			if len(papers) == 0 {
				break
			}
			in, err := j.vectors(ctx, papers, log)
			if err != nil {
				return err
			}
			if _, err := j.Sets.PutVectors(ctx, in); err != nil {
				return err
			}
			embedded += len(papers)
			after = papers[len(papers)-1].ID
		}
		// Papers written during the pass are embedded by the switch itself, while writes wait,
		// when there are few enough; else another pass.
		err := j.Sets.SwitchVectorSet(ctx, j.Spec, fill)
		var inc *store.IncompleteSetError
		if errors.As(err, &inc) {
			log.Info("re-embedding: papers were written during the pass; another pass", "pass", pass, "embedded", embedded, "missing", inc.Missing)
			continue
		}
		if err == nil {
			log.Info("re-embedding: switched to the new model", "embedding", j.Spec.String(), "passes", pass)
		}
		return err
	}
}

// vectors embeds papers with the new model.
func (j *Job) vectors(ctx context.Context, papers []store.Paper, log *slog.Logger) ([]store.SetVector, error) {
	pre := embed.Prefixes{Query: j.Spec.QueryPrefix, Document: j.Spec.DocumentPrefix}
	texts := make([]string, len(papers))
	for i, p := range papers {
		texts[i] = pre.DocumentText(p.Title, p.Abstract)
	}
	vecs, err := j.embed(ctx, texts, log)
	if err != nil {
		return nil, err
	}
	out := make([]store.SetVector, len(papers))
	for i, p := range papers {
		if len(vecs[i]) != j.Spec.Dimensions {
			return nil, fmt.Errorf("model %q returned %d dimensions, not %d", j.Spec.Model, len(vecs[i]), j.Spec.Dimensions)
		}
		out[i] = store.SetVector{ID: p.ID, TextKey: store.TextKey(p.Title, p.Abstract), Dense: vecs[i], DenseHash: embed.TextHash(texts[i])}
	}
	return out, nil
}

// embed embeds texts, waiting out an unavailable API with backoff.
func (j *Job) embed(ctx context.Context, texts []string, log *slog.Logger) ([][]float32, error) {
	wait := retryInitial
	for try := 1; ; try++ {
		vecs, err := j.Embedder.Embed(ctx, texts)
		var ee *embed.Error
		if err == nil || !errors.As(err, &ee) || ee.Kind != embed.KindUnavailable {
			return vecs, err
		}
		log.Warn("re-embedding: embedding API unavailable; retrying", "tries", try, "error", err)
		t := time.NewTimer(rand.N(wait) + wait/2)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, retryMax)
	}
}
