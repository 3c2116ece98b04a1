// Package app is the application: what the service does, whatever the transport. It binds
// the store to the embedding model (and follows the store when it switches models), ingests
// papers (analysis, vectors, write), re-embeds the store, answers recommendations with the
// pipeline of the active model, and matches saved feeds against new writes. Transports
// (internal/server) decode, validate the wire shape, call it and map its errors.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/metrics"
	"github.com/paperrec/recommender/internal/neighbours"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/reembed"
	"github.com/paperrec/recommender/internal/store"
)

// App is the service over a store, safe for concurrent use.
type App struct {
	store   store.Store
	emb     embed.Embedder // the configured model; nil: lexical only
	next    embed.Embedder // the model to re-embed into (WithReembedding); nil: none
	metrics *metrics.Metrics
	base    recommend.Engine // what every engine shares (store, fusion, fallback)
	// engines holds the pipeline of each model this server can embed with, by the
	// EmbeddingSpec.Key of the store's set it matches; engine is the one of the store's active
	// set. Written by bind before bound is set.
	engines   map[string]*recommend.Engine
	engine    atomic.Pointer[recommend.Engine]
	nextSpec  store.EmbeddingSpec
	reembedOn atomic.Bool // this server is filling the store's other set
	// firstModel: the store held papers and no model when this server came with one, so the
	// model is its re-embedding target (next) and the store stays lexical until every paper
	// has a vector. Set by bind.
	firstModel bool

	deferBinding bool
	bound        atomic.Bool // spec is set (or no embedder); written once, before handlers read spec

	stopping     chan struct{} // closed by Stop: long streams end
	stoppingOnce sync.Once
	feedsGone    sync.Map // feed id -> chan struct{}, closed when the feed is deleted: its streams end
	// feedMatches holds the match each feed's open streams share (see feedMatcher).
	feedMatchesMu sync.Mutex
	feedMatches   map[string]*feedMatch

	listLength, listWorkers int // WithNeighbourLists
	keeperOnce              sync.Once
	lists                   *neighbours.Keeper // nil: no lists kept (see keeper)
}

// Stop ends the long-lived feed streams, whose clients resume elsewhere with their cursor, so a
// graceful shutdown does not wait for them.
func (s *App) Stop() { s.stoppingOnce.Do(func() { close(s.stopping) }) }

// Option adjusts an App.
type Option func(*App)

// WithMetrics records ingest outcomes.
func WithMetrics(m *metrics.Metrics) Option { return func(s *App) { s.metrics = m } }

// WithPipeline adjusts the pipeline every model's engine shares, before the first request: how
// the lab's commands tune the fusion or try a ranking stage that is off by default.
func WithPipeline(adjust func(*recommend.Engine)) Option { return func(s *App) { adjust(&s.base) } }

// WithLexicalFallback answers requests that leave the mode to the server lexically when the
// embedding API is unavailable, instead of failing them with UNAVAILABLE. The response's mode
// says LEXICAL. Requests that ask for DENSE or HYBRID still fail.
func WithLexicalFallback() Option { return func(s *App) { s.base.Fallback = true } }

// WithReembedding names the model to move the store to (see Reembed): once the store has
// switched to it, the service embeds with it.
func WithReembedding(next embed.Embedder) Option { return func(s *App) { s.next = next } }

// WithDeferredBinding lets New return while the store is unreachable (a remote store started
// after the service): until AwaitBinding has bound it, calls that need the model's binding fail
// with a *store.UnavailableError and Ready reports false.
func WithDeferredBinding() Option { return func(s *App) { s.deferBinding = true } }

// probeTimeout bounds the one embedding call New may make to learn the model's size.
const probeTimeout = 30 * time.Second

// New returns the application over st. With an embedder, it binds the store to the embedder's
// model: the dimensions come from the embedder's configuration, else from the store's earlier
// binding, else from one probe call; a store bound to another model, size or prefixes is
// refused. With WithDeferredBinding, a store that cannot be reached yet does not fail it (see
// AwaitBinding).
func New(ctx context.Context, st store.Store, emb embed.Embedder, opts ...Option) (*App, error) {
	s := &App{store: st, emb: emb, base: recommend.Engine{Store: st, HybridSeedTerms: recommend.DefaultHybridSeedTerms}, stopping: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	unbound := s.base
	unbound.Embedder = emb
	s.engine.Store(&unbound)
	err := s.bind(ctx)
	var ue *store.UnavailableError
	if err != nil && !(s.deferBinding && errors.As(err, &ue)) {
		return nil, err
	}
	return s, nil
}

// Ready reports whether the store is bound to the model (always, without an embedder).
func (s *App) Ready() bool { return s.bound.Load() }

// errNotBound is what requests get before the binding: the store is not there yet.
var errNotBound = &store.UnavailableError{Err: errors.New("the store has not answered since the server started")}

// ready fails a request that needs the binding before it is done.
func (s *App) ready() error {
	if !s.bound.Load() {
		return errNotBound
	}
	return nil
}

// bind binds the store to the embedder's model, once: or to the re-embedding model, when the
// store has already switched to it.
func (s *App) bind(ctx context.Context) error {
	if s.bound.Load() {
		return nil
	}
	stats, err := s.store.Stats(ctx)
	if err != nil {
		return err
	}
	switch _, sets := store.As[store.VectorSets](s.store); {
	case s.emb == nil && s.next == nil && stats.Embedding.Model != "":
		return &ModelRequiredError{Stored: stats.Embedding}
	case s.emb != nil && s.next == nil && stats.Embedding.Model == "" && stats.PaperCount > 0 && sets:
		// Papers stored lexically: binding the model now would serve hybrid over papers
		// without vectors. Embed them first, as a move from lexical to the model.
		s.next, s.emb, s.firstModel = s.emb, nil, true
	}
	s.engines = map[string]*recommend.Engine{}
	active := s.base
	active.Embedder = s.emb
	if s.firstModel {
		active.Filling = s.next.Model()
	}
	if s.next != nil {
		if s.nextSpec, err = s.specOf(ctx, s.next, stats.Embedding, "REEMBED_DIMENSIONS"); err != nil {
			return err
		}
		next := s.base
		next.Embedder, next.Spec = s.next, s.nextSpec
		s.engines[s.nextSpec.Key()] = &next
		if stats.Embedding.Key() == s.nextSpec.Key() {
			active = next // switched already
		}
	}
	if active.Embedder != nil && active.Embedder == s.emb {
		spec, err := s.specOf(ctx, s.emb, stats.Embedding, "EMBEDDING_DIMENSIONS")
		if err != nil {
			return err
		}
		if active.Spec, err = s.store.BindEmbedding(ctx, spec); err != nil {
			return err
		}
	}
	s.engines[active.Spec.Key()] = &active
	s.engine.Store(&active)
	s.bound.Store(true) // publishes engines to the handlers that Load it
	return nil
}

// specOf is emb's model, size and prefixes: the size from its configuration, else from the
// store's binding (stored) when it is that model's, else from one probe call.
func (s *App) specOf(ctx context.Context, emb embed.Embedder, stored store.EmbeddingSpec, dimsVar string) (store.EmbeddingSpec, error) {
	pre := emb.Prefixes()
	spec := store.EmbeddingSpec{Model: emb.Model(), Dimensions: emb.Dimensions(), QueryPrefix: pre.Query, DocumentPrefix: pre.Document}
	if spec.Dimensions == 0 && stored.Model == spec.Model {
		spec.Dimensions = stored.Dimensions
	}
	if spec.Dimensions == 0 {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		vecs, err := emb.Embed(pctx, []string{pre.DocumentText("dimension probe", "")})
		if err != nil {
			return spec, fmt.Errorf("learn the dimensions of model %q (set %s to skip this call): %w", spec.Model, dimsVar, err)
		}
		spec.Dimensions = len(vecs[0])
	}
	return spec, nil
}

// Reembed moves the store to the WithReembedding model while the service answers from the
// current one: it fills the store's second vector set, switches to it, and from then on the
// service embeds with the new model. It returns nil at once when there is nothing to do (no such
// model, or the store switched already). The service must be bound (Ready).
func (s *App) Reembed(ctx context.Context, log *slog.Logger) error {
	if s.next == nil || s.eng().Spec.Key() == s.nextSpec.Key() {
		return nil
	}
	vs, ok := store.As[store.VectorSets](s.store)
	if !ok {
		return errors.New("this store keeps one set of vectors: re-embedding in place needs the embedded store")
	}
	s.reembedOn.Store(true)
	defer s.reembedOn.Store(false)
	from := "lexical (no model)"
	if cur := s.eng().Spec; cur.Model != "" {
		from = cur.String()
	}
	if s.firstModel {
		st, _ := vs.VectorSetStatus(ctx)
		log.Warn("the store's papers were stored without a model: embedding them in the background; "+
			"answers stay lexical until every paper has a vector (info shows the progress)",
			"model", s.nextSpec.String(), "papers", st.Papers, "with_vectors", st.OtherVectors)
	} else {
		log.Info("re-embedding the papers with another model; queries use the current one until the switch",
			"from", from, "to", s.nextSpec.String())
	}
	job := reembed.Job{Sets: vs, Embedder: s.next, Spec: s.nextSpec, Log: log}
	if err := job.Run(ctx); err != nil {
		return fmt.Errorf("re-embed with model %q: %w", s.nextSpec.Model, err)
	}
	return s.refreshEngine(ctx)
}

// ModelRequiredError refuses a server without an embedding model over a store bound to one:
// its writes would store papers without vectors, and its answers would be lexical unasked.
type ModelRequiredError struct{ Stored store.EmbeddingSpec }

func (e *ModelRequiredError) Error() string {
	return fmt.Sprintf("this store's papers are embedded with %s: start the server with that model "+
		"(--embedding-base-url URL --embedding-model %s, or EMBEDDING_BASE_URL and EMBEDDING_MODEL)", e.Stored, e.Stored.Model)
}

// eng is the pipeline of the store's active vector set.
func (s *App) eng() *recommend.Engine { return s.engine.Load() }

// switchAttempts bounds how often a call is retried because the store switched models under it.
const switchAttempts = 3

// withEngine runs fn with the active set's pipeline; when the store switched to another set
// during fn, it takes that set's pipeline and runs fn again, so a request made across a switch
// is answered wholly by one model or wholly by the other.
func (s *App) withEngine(ctx context.Context, fn func(e *recommend.Engine) error) error {
	for try := 1; ; try++ {
		err := fn(s.eng())
		var sw *store.EmbeddingSwitchedError
		if !errors.As(err, &sw) || try == switchAttempts {
			return err
		}
		if rerr := s.refreshEngine(ctx); rerr != nil {
			return rerr
		}
	}
}

// refreshEngine takes the pipeline of the store's active set.
func (s *App) refreshEngine(ctx context.Context) error {
	st, err := s.store.Stats(ctx)
	if err != nil {
		return err
	}
	e, ok := s.engines[st.Embedding.Key()]
	if !ok {
		return &store.EmbeddingMismatchError{Stored: st.Embedding, Configured: s.eng().Spec}
	}
	s.engine.Store(e)
	return nil
}

// AwaitBinding binds the store as soon as it answers, retrying with backoff while it is
// unavailable. It returns nil once bound, or the first other error (another model, say), or
// ctx's error.
func (s *App) AwaitBinding(ctx context.Context, log *slog.Logger) error {
	if err := RetryWhileUnavailable(ctx, log, "bind the store to the embedding model", s.bind); err != nil {
		return err
	}
	// Papers of a bound store without a vector (written around the service, or by an older
	// binary) are found by their words only; a write of the same paper embeds it.
	if vs, ok := store.As[store.VectorSets](s.store); ok && !s.firstModel {
		if st, err := vs.VectorSetStatus(ctx); err == nil && st.Active.Model != "" && st.ActiveVectors < st.Papers {
			log.Warn("papers without a vector: they are found by their words only until written again "+
				"(backfill or serve --load of their file embeds them; unchanged papers cost nothing)",
				"model", st.Active.String(), "papers", st.Papers, "with_vectors", st.ActiveVectors)
		}
	}
	return nil
}

// Backoff bounds for RetryWhileUnavailable.
const (
	retryInitial = 100 * time.Millisecond
	retryMax     = 5 * time.Second
)

// RetryWhileUnavailable calls fn until it returns anything but a *store.UnavailableError,
// waiting between tries with exponential backoff and full jitter, and logging the first failure
// and every tenth.
func RetryWhileUnavailable(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	wait := retryInitial
	for try := 1; ; try++ {
		err := fn(ctx)
		var ue *store.UnavailableError
		if err == nil || !errors.As(err, &ue) {
			if err == nil && try > 1 {
				log.Info("store answered", "task", what, "tries", try)
			}
			return err
		}
		if try%10 == 1 {
			log.Warn("store unavailable; retrying", "task", what, "tries", try, "error", err)
		}
		t := time.NewTimer(rand.N(wait) + time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, retryMax)
	}
}

// domainErr makes an embedding failure the application's (*apierr.EmbeddingError), so a
// transport maps it without knowing the embedding client.
func domainErr(err error) error {
	var ee *embed.Error
	if !errors.As(err, &ee) {
		return err
	}
	return &apierr.EmbeddingError{Kind: ee.Kind.String(), Retryable: ee.Kind == embed.KindUnavailable || ee.Kind == embed.KindBadResponse, Err: err}
}
