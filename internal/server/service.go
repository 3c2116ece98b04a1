package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/metrics"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/reembed"
	"github.com/paperrec/recommender/internal/store"
)

// LexicalModel is what GetIndexInfo reports as the model when no embedding model is configured.
const LexicalModel = "lexical"

// maxListedRejections bounds the rejections listed in an IngestPapers response, so a stream of
// garbage cannot make the response itself too large to send.
const maxListedRejections = 1_000

// Service implements RecommenderService over a store. Handlers return plain Go errors; the
// interceptors installed by Listen turn them into statuses (see toStatus).
type Service struct {
	recommenderv1.UnimplementedRecommenderServiceServer
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

	stopping     chan struct{} // closed when the server shuts down: long streams end
	stoppingOnce sync.Once
	feedsGone    sync.Map // feed id -> chan struct{}, closed when the feed is deleted: its streams end
	// feedMatches holds the match each feed's open streams share (see feedMatcher).
	feedMatchesMu sync.Mutex
	feedMatches   map[string]*feedMatch
}

// stopStreams ends the long-lived streams (StreamFeed), whose clients resume elsewhere with
// their cursor, so a graceful shutdown does not wait for them.
func (s *Service) stopStreams() { s.stoppingOnce.Do(func() { close(s.stopping) }) }

// Option adjusts a Service.
type Option func(*Service)

// WithMetrics records ingest outcomes.
func WithMetrics(m *metrics.Metrics) Option { return func(s *Service) { s.metrics = m } }

// WithFusion sets how HYBRID merges the lexical and dense lists (eval tunes it with this).
func WithFusion(f rank.Fusion) Option { return func(s *Service) { s.base.Fusion = f } }

// WithLexicalFallback answers requests that leave the mode to the server lexically when the
// embedding API is unavailable, instead of failing them with UNAVAILABLE. The response's mode
// says LEXICAL. Requests that ask for DENSE or HYBRID still fail.
func WithLexicalFallback() Option { return func(s *Service) { s.base.Fallback = true } }

// WithReembedding names the model to move the store to (see Reembed): once the store has
// switched to it, the service embeds with it.
func WithReembedding(next embed.Embedder) Option { return func(s *Service) { s.next = next } }

// probeTimeout bounds the one embedding call NewService may make to learn the model's size.
const probeTimeout = 30 * time.Second

// NewService returns a Service over st. With an embedder, it binds the store to the embedder's
// model: the dimensions come from the embedder's configuration, else from the store's earlier
// binding, else from one probe call; a store bound to another model, size or prefixes is
// refused. With WithDeferredBinding, a store that cannot be reached yet does not fail it (see
// AwaitBinding).
func NewService(ctx context.Context, st store.Store, emb embed.Embedder, opts ...Option) (*Service, error) {
	s := &Service{store: st, emb: emb, base: recommend.Engine{Store: st}, stopping: make(chan struct{})}
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

// WithDeferredBinding lets NewService return while the store is unreachable (a remote store
// started after the service): until AwaitBinding has bound it, requests that need the model's
// binding fail with UNAVAILABLE and Ready reports false.
func WithDeferredBinding() Option { return func(s *Service) { s.deferBinding = true } }

// Ready reports whether the store is bound to the model (always, without an embedder).
func (s *Service) Ready() bool { return s.bound.Load() }

// errNotBound is what requests get before the binding: the store is not there yet.
var errNotBound = &store.UnavailableError{Err: errors.New("the store has not answered since the server started")}

// ready fails a request that needs the binding before it is done.
func (s *Service) ready() error {
	if !s.bound.Load() {
		return errNotBound
	}
	return nil
}

// bind binds the store to the embedder's model, once: or to the re-embedding model, when the
// store has already switched to it.
func (s *Service) bind(ctx context.Context) error {
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
func (s *Service) specOf(ctx context.Context, emb embed.Embedder, stored store.EmbeddingSpec, dimsVar string) (store.EmbeddingSpec, error) {
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
func (s *Service) Reembed(ctx context.Context, log *slog.Logger) error {
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
func (s *Service) eng() *recommend.Engine { return s.engine.Load() }

// switchAttempts bounds how often a call is retried because the store switched models under it.
const switchAttempts = 3

// withEngine runs fn with the active set's pipeline; when the store switched to another set
// during fn, it takes that set's pipeline and runs fn again, so a request made across a switch
// is answered wholly by one model or wholly by the other.
func (s *Service) withEngine(ctx context.Context, fn func(e *recommend.Engine) error) error {
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
func (s *Service) refreshEngine(ctx context.Context) error {
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
func (s *Service) AwaitBinding(ctx context.Context, log *slog.Logger) error {
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

// GetPaper implements RecommenderService.
func (s *Service) GetPaper(ctx context.Context, req *recommenderv1.GetPaperRequest) (*recommenderv1.GetPaperResponse, error) {
	id := CanonicalID(req.GetPaperId())
	v := &apierr.ValidationError{}
	checkID(v, "paper_id", id)
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
	papers, err := s.store.Get(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetPaperResponse{Paper: toProtoPaper(&papers[0])}, nil
}

// UpsertPapers implements RecommenderService.
func (s *Service) UpsertPapers(ctx context.Context, req *recommenderv1.UpsertPapersRequest) (*recommenderv1.UpsertPapersResponse, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	v := &apierr.ValidationError{}
	if n := len(req.GetPapers()); n == 0 || n > MaxBatch {
		v.Add("papers", "must hold 1 to %d papers, got %d", MaxBatch, n)
	}
	papers := make([]store.Paper, 0, len(req.GetPapers()))
	seen := map[string]int{}
	for i, in := range req.GetPapers() {
		field := fmt.Sprintf("papers[%d]", i)
		p := toStorePaper(v, field, in)
		if j, dup := seen[p.ID]; dup && p.ID != "" {
			v.Add(field+".id", "duplicates papers[%d] (%s)", j, p.ID)
		}
		seen[p.ID] = i
		papers = append(papers, p)
	}
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
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
		return nil, err
	}
	var c counts
	c.add(outcomes)
	c.observe(s.metrics, 0)
	return &recommenderv1.UpsertPapersResponse{Inserted: int32(c.inserted), Updated: int32(c.updated), Unchanged: int32(c.unchanged)}, nil
}

type counts struct{ inserted, updated, unchanged int64 }

// observe exports the counts (and the rejected ones) as metrics.
func (c *counts) observe(m *metrics.Metrics, rejected int64) {
	m.ObserveIngest("inserted", c.inserted)
	m.ObserveIngest("updated", c.updated)
	m.ObserveIngest("unchanged", c.unchanged)
	m.ObserveIngest("rejected", rejected)
}

func (c *counts) add(outcomes []store.Outcome) {
	for _, o := range outcomes {
		switch o {
		case store.Inserted:
			c.inserted++
		case store.Updated:
			c.updated++
		case store.Unchanged:
			c.unchanged++
		}
	}
}

// DeletePapers implements RecommenderService.
func (s *Service) DeletePapers(ctx context.Context, req *recommenderv1.DeletePapersRequest) (*recommenderv1.DeletePapersResponse, error) {
	v := &apierr.ValidationError{}
	if len(req.GetPaperIds()) == 0 {
		v.Add("paper_ids", "must hold 1 to %d ids, got 0", MaxBatch)
	}
	ids := idList(v, "paper_ids", req.GetPaperIds(), MaxBatch)
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
	notFound, err := s.store.Delete(ctx, ids)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.DeletePapersResponse{Deleted: int32(len(ids) - len(notFound)), NotFoundPaperIds: notFound}, nil
}

// IngestPapers implements RecommenderService. It is a two-stage pipeline: this goroutine
// receives, validates and embeds batch n+1 while a second one writes batch n durably, so the
// embedding API stays busy while the store keeps up. A client that dies mid-stream loses only
// the batches not yet written; re-sending them is cheap, since unchanged papers are skipped.
func (s *Service) IngestPapers(stream recommenderv1.RecommenderService_IngestPapersServer) error {
	if err := s.ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	ready := make(chan []store.Paper, 1)
	var c counts
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
	resp, err := s.receiveBatches(ctx, stream, ready)
	close(ready)
	if werr := <-written; werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	resp.Inserted, resp.Updated, resp.Unchanged = c.inserted, c.updated, c.unchanged
	c.observe(s.metrics, resp.Rejected)
	return stream.SendAndClose(resp)
}

// receiveBatches is the first pipeline stage: it reads messages until the client closes the
// stream, rejects invalid papers one by one, embeds the rest and hands them to the writer.
func (s *Service) receiveBatches(ctx context.Context, stream recommenderv1.RecommenderService_IngestPapersServer, ready chan<- []store.Paper) (*recommenderv1.IngestPapersResponse, error) {
	resp := &recommenderv1.IngestPapersResponse{}
	var position int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return resp, nil
		}
		if err != nil {
			return nil, err
		}
		if n := len(msg.GetPapers()); n > MaxBatch {
			return nil, &apierr.ValidationError{Violations: []apierr.Violation{{Field: "papers",
				Description: fmt.Sprintf("a message holds %d papers, more than the limit of %d", n, MaxBatch)}}}
		}
		papers := make([]store.Paper, 0, len(msg.GetPapers()))
		for _, in := range msg.GetPapers() {
			v := &apierr.ValidationError{}
			p := toStorePaper(v, "paper", in)
			if len(v.Violations) > 0 {
				resp.Rejected++
				if len(resp.Rejections) < maxListedRejections {
					resp.Rejections = append(resp.Rejections, &recommenderv1.Rejection{
						PaperId: in.GetId(), Position: position, Reason: v.Error()})
				}
			} else {
				papers = append(papers, p)
			}
			position++
		}
		if len(papers) == 0 {
			continue
		}
		if err := s.eng().AttachVectors(ctx, papers); err != nil {
			return nil, err
		}
		select {
		case ready <- papers:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// GetIndexInfo implements RecommenderService.
func (s *Service) GetIndexInfo(ctx context.Context, _ *recommenderv1.GetIndexInfoRequest) (*recommenderv1.GetIndexInfoResponse, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	// The active set and the other one are read from the store, twice over if a switch of
	// sets came between the reads, so the answer never shows one set on both sides (the
	// service's pipeline follows a switch a moment later).
	var st store.Stats
	var sets store.VectorSetStatus
	vs, hasSets := store.As[store.VectorSets](s.store)
	for try := 1; ; try++ {
		var err error
		if st, err = s.store.Stats(ctx); err != nil {
			return nil, err
		}
		if !hasSets {
			break
		}
		if sets, err = vs.VectorSetStatus(ctx); err != nil {
			return nil, err
		}
		again, err := s.store.Stats(ctx)
		if err != nil {
			return nil, err
		}
		if again.Embedding.Key() == st.Embedding.Key() || try == switchAttempts {
			st = again
			break
		}
	}
	info := &recommenderv1.GetIndexInfoResponse{
		PaperCount:     st.PaperCount,
		StoreBackend:   st.Backend,
		EmbeddingModel: LexicalModel,
		IndexVersion:   st.IndexVersion,
	}
	e := s.eng()
	if other, ok := s.engines[st.Embedding.Key()]; ok {
		e = other
	}
	if e.Embedder != nil {
		info.EmbeddingModel, info.EmbeddingDimensions = e.Spec.Model, int32(e.Spec.Dimensions)
		info.EmbeddingQueryPrefix, info.EmbeddingDocumentPrefix = e.Spec.QueryPrefix, e.Spec.DocumentPrefix
		info.PapersWithVectors = st.PaperCount
		if hasSets {
			info.PapersWithVectors = sets.ActiveVectors
		}
	}
	if o := sets.Other; o.Model != "" {
		info.OtherVectorSet = &recommenderv1.VectorSet{Model: o.Model, Dimensions: int32(o.Dimensions), QueryPrefix: o.QueryPrefix,
			DocumentPrefix: o.DocumentPrefix, PapersWithVectors: sets.OtherVectors, Filling: s.reembedOn.Load() && o.Key() == s.nextSpec.Key()}
	}
	return info, nil
}

// RetireVectorSet implements RecommenderService.
func (s *Service) RetireVectorSet(ctx context.Context, _ *recommenderv1.RetireVectorSetRequest) (*recommenderv1.RetireVectorSetResponse, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	vs, ok := store.As[store.VectorSets](s.store)
	if !ok {
		return nil, &apierr.PreconditionError{Reason: apierr.VectorSetBusy, Subject: "store", Message: "this store keeps one set of vectors: there is none to retire"}
	}
	st, err := vs.VectorSetStatus(ctx)
	if err != nil {
		return nil, err
	}
	o := st.Other
	switch {
	case o.Model == "":
		return nil, &apierr.PreconditionError{Reason: apierr.VectorSetBusy, Subject: "store", Message: "the store keeps no second set of vectors"}
	case s.reembedOn.Load() && o.Key() == s.nextSpec.Key():
		return nil, &apierr.PreconditionError{Reason: apierr.VectorSetBusy, Subject: "store",
			Message: fmt.Sprintf("this server is re-embedding the papers into the set of model %q; it cannot be retired before the switch", o.Model)}
	}
	if err := vs.RetireVectorSet(ctx); err != nil {
		return nil, err
	}
	return &recommenderv1.RetireVectorSetResponse{Retired: &recommenderv1.VectorSet{Model: o.Model, Dimensions: int32(o.Dimensions),
		QueryPrefix: o.QueryPrefix, DocumentPrefix: o.DocumentPrefix, PapersWithVectors: st.OtherVectors}}, nil
}
