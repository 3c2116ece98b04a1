package qdrant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// Backend is the name GetIndexInfo reports for this store.
const Backend = "qdrant"

// Vector names in the collection.
const (
	DenseVector   = "dense"
	LexicalVector = "lexical"
)

// Collection metadata keys.
const (
	metaModel = "embedding_model"
	// The prefixes are absent from collections created before they existed: those texts had none.
	metaQueryPrefix    = "embedding_query_prefix"
	metaDocumentPrefix = "embedding_document_prefix"
	metaAvgLen         = "bm25_average_length"
	metaSchema         = "schema_version"
)

// pointNamespace is the UUIDv5 namespace of point ids: Qdrant ids are UUIDs or integers, paper
// ids are strings, and a name-based UUID maps each paper to one point from any replica.
var pointNamespace = uuid.MustParse("6f1c1d0e-3f5e-4c55-9a55-2d0c4c8f6a11")

// PointID returns the Qdrant point id of a paper.
func PointID(paperID string) string {
	return uuid.NewSHA1(pointNamespace, []byte(paperID)).String()
}

// Store is a store.Store over a Qdrant collection, through one pooled go-client.
type Store struct {
	opts   Options
	client *qc.Client

	mu        sync.Mutex // guards the bootstrap state below
	ready     bool
	embedding store.EmbeddingSpec
	avgLen    float64
	// coll is the collection papers are read from and written to: the one the alias
	// <Collection>_current names, else Collection itself. other is the collection the alias
	// <Collection>_other names (a move to another model: the set being filled, or the one
	// switched away from), with its model; "" when none. Looked up again every AliasRefresh.
	coll, other string
	otherSpec   store.EmbeddingSpec
	resolvedAt  time.Time

	lastSeq  atomic.Uint64 // the latest write sequence this process gave out (unix µs)
	feedsMu  sync.Mutex
	feedsOK  bool // the feeds collection exists
	logIndex bool // the write sequence's payload index exists; under feedsMu
	listsMu  sync.Mutex
	listsOK  bool // the neighbour lists collection exists
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.HealthChecker = (*Store)(nil)
)

// Open connects to Qdrant. The connection is lazy: Open succeeds while Qdrant is down, and the
// collection is created or checked on first use, so replicas start in any order.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ep, _ := opts.endpoint()
	client, err := qc.NewClient(&qc.Config{
		Host: ep.host, Port: ep.port, APIKey: opts.APIKey, UseTLS: ep.tls,
		// Our health watcher reports an unreachable Qdrant; go-client's own start-up version
		// check would make a blocking call here instead.
		SkipCompatibilityCheck: true,
		PoolSize:               poolSize,
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant client: %w", err)
	}
	return &Store{opts: opts, client: client, avgLen: opts.AverageLength}, nil
}

// Close implements store.Store.
func (s *Store) Close() error { return s.client.Close() }

// poolSize is the number of gRPC connections go-client spreads calls over, round robin.
const poolSize = 3

// Ping implements store.HealthChecker. It checks every pooled connection (calls go round
// robin), so "healthy" means the next call will not land on one still reconnecting, and it
// waits for a reconnecting connection until ctx's deadline, so only a Qdrant that stays away
// counts as down.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for range poolSize {
		qcl := s.client.GetQdrantClient()
		_, err := qcl.HealthCheck(ctx, &qc.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err != nil && ctx.Err() == nil {
			// A connection can look ready for a moment after the server dropped it; the call
			// on it fails at once, and the retry waits for the reconnection.
			_, err = qcl.HealthCheck(ctx, &qc.HealthCheckRequest{}, grpc.WaitForReady(true))
		}
		if err != nil {
			return mapErr(s.opts.Collection, err)
		}
	}
	return nil
}

// bound applies our per-call timeout unless the caller's deadline is sooner.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// state reports whether the collection exists, loading its configuration the first time it
// does. With create, a missing collection is created first (with the dense vector of spec when
// its size is known). A missing collection reads as an empty store, so replicas can start, and
// answer, before the first write.
func (s *Store) state(ctx context.Context, spec store.EmbeddingSpec, create bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready && time.Since(s.resolvedAt) < s.opts.AliasRefresh {
		return true, nil
	}
	coll, other, err := s.aliases(ctx)
	if err != nil {
		return false, err
	}
	if s.ready && coll == s.coll && other == s.other {
		s.resolvedAt = time.Now()
		return true, nil
	}
	if !s.ready || coll != s.coll {
		exists, err := s.client.CollectionExists(ctx, coll)
		if err != nil {
			return false, mapErr(coll, err)
		}
		if !exists {
			if !create {
				return false, nil
			}
			if err := s.create(ctx, coll, spec, s.opts.AverageLength); err != nil {
				return false, err
			}
		}
		info, err := s.client.GetCollectionInfo(ctx, coll)
		if err != nil {
			return false, mapErr(coll, err)
		}
		s.embedding, s.avgLen = specOf(info, s.opts.AverageLength)
	}
	s.otherSpec = store.EmbeddingSpec{}
	if other != "" {
		info, err := s.client.GetCollectionInfo(ctx, other)
		if err != nil {
			return false, mapErr(other, err)
		}
		s.otherSpec, _ = specOf(info, s.opts.AverageLength)
	}
	s.coll, s.other, s.resolvedAt, s.ready = coll, other, time.Now(), true
	return true, nil
}

// Alias names: which collection is current, and which is the other one.
func (s *Store) currentAlias() string { return s.opts.Collection + "_current" }
func (s *Store) otherAlias() string   { return s.opts.Collection + "_other" }

// aliases looks up the current and the other collection.
func (s *Store) aliases(ctx context.Context) (coll, other string, err error) {
	all, err := s.client.ListAliases(ctx)
	if err != nil {
		return "", "", mapErr(s.opts.Collection, err)
	}
	coll = s.opts.Collection
	for _, a := range all {
		switch a.GetAliasName() {
		case s.currentAlias():
			coll = a.GetCollectionName()
		case s.otherAlias():
			other = a.GetCollectionName()
		}
	}
	return coll, other, nil
}

// create makes a collection: a sparse lexical vector with Qdrant's IDF modifier (idf is
// applied at query time from live corpus statistics), a cosine dense vector when the size is
// known, payload indexes for every filtered field, and metadata recording the model.
func (s *Store) create(ctx context.Context, name string, spec store.EmbeddingSpec, avgLen float64) error {
	req := &qc.CreateCollection{
		CollectionName:    name,
		ShardNumber:       ptr(s.opts.Shards),
		ReplicationFactor: ptr(s.opts.Replicas),
		SparseVectorsConfig: qc.NewSparseVectorsConfig(map[string]*qc.SparseVectorParams{
			LexicalVector: {Modifier: qc.Modifier_Idf.Enum()},
		}),
		Metadata: qc.NewValueMap(map[string]any{metaAvgLen: avgLen, metaSchema: 1}),
	}
	if spec.Dimensions > 0 {
		req.VectorsConfig = qc.NewVectorsConfigMap(map[string]*qc.VectorParams{
			DenseVector: {Size: uint64(spec.Dimensions), Distance: qc.Distance_Cosine},
		})
		req.Metadata[metaModel] = qc.NewValueString(spec.Model)
		req.Metadata[metaQueryPrefix] = qc.NewValueString(spec.QueryPrefix)
		req.Metadata[metaDocumentPrefix] = qc.NewValueString(spec.DocumentPrefix)
	}
	if err := s.client.CreateCollection(ctx, req); err != nil {
		if alreadyExists(err) {
			return nil // another replica won the race
		}
		return mapErr(name, err)
	}
	wait := true
	for _, f := range []struct {
		name string
		typ  qc.FieldType
	}{
		{"paper_id", qc.FieldType_FieldTypeKeyword}, {"categories", qc.FieldType_FieldTypeKeyword},
		{"authors_norm", qc.FieldType_FieldTypeKeyword}, {"year", qc.FieldType_FieldTypeInteger},
		{writtenSeq, qc.FieldType_FieldTypeInteger},
	} {
		if _, err := s.client.CreateFieldIndex(ctx, &qc.CreateFieldIndexCollection{
			CollectionName: name, FieldName: f.name, FieldType: f.typ.Enum(), Wait: &wait,
		}); err != nil {
			return mapErr(name, err)
		}
	}
	return nil
}

// alreadyExists reports a create that lost the race to another replica.
func alreadyExists(err error) bool {
	return status.Code(errors.Unwrap(err)) == codes.AlreadyExists || status.Code(err) == codes.AlreadyExists
}

// specOf reads the model binding and BM25 average length from a collection's configuration.
func specOf(info *qc.CollectionInfo, defAvg float64) (store.EmbeddingSpec, float64) {
	var spec store.EmbeddingSpec
	params := info.GetConfig().GetParams()
	if v, ok := params.GetVectorsConfig().GetParamsMap().GetMap()[DenseVector]; ok {
		spec.Dimensions = int(v.GetSize())
	}
	meta := info.GetConfig().GetMetadata()
	spec.Model = meta[metaModel].GetStringValue()
	spec.QueryPrefix = meta[metaQueryPrefix].GetStringValue()
	spec.DocumentPrefix = meta[metaDocumentPrefix].GetStringValue()
	avg := defAvg
	if v, ok := meta[metaAvgLen]; ok && v.GetDoubleValue() > 0 {
		avg = v.GetDoubleValue()
	}
	return spec, avg
}

// BindEmbedding implements store.Store. A new collection is created with the dense vector;
// an existing one must have been created for the same model and size.
func (s *Store) BindEmbedding(ctx context.Context, spec store.EmbeddingSpec) (store.EmbeddingSpec, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if spec.Model == "" {
		return store.EmbeddingSpec{}, errors.New("bind embedding: model is required")
	}
	exists, err := s.state(ctx, spec, spec.Dimensions > 0)
	if err != nil {
		return store.EmbeddingSpec{}, err
	}
	if !exists {
		return store.EmbeddingSpec{}, fmt.Errorf("bind embedding: dimensions are required to create collection %q", s.opts.Collection)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := s.embedding
	if stored.Dimensions == 0 {
		return store.EmbeddingSpec{}, fmt.Errorf("qdrant collection %q was created without a dense vector (lexical only); "+
			"use a new collection for embeddings", s.opts.Collection)
	}
	if stored.Conflicts(spec) {
		return store.EmbeddingSpec{}, &store.EmbeddingMismatchError{Stored: stored, Configured: spec}
	}
	return stored, nil
}

// Stats implements store.Store. Qdrant keeps no write counter we could expose as
// IndexVersion, so it is reported as 0.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists {
		return store.Stats{Backend: Backend}, err
	}
	coll, _, _, _, _ := s.sets()
	n, err := s.count(ctx, coll)
	if err != nil {
		return store.Stats{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return store.Stats{Backend: Backend, PaperCount: int64(n), Embedding: s.embedding}, nil
}

// Upsert implements store.Store. Existing points' content hashes are read first, so unchanged
// papers are counted and not rewritten; changed ones are written with wait=true, in batches,
// so an OK means Qdrant has applied them.
func (s *Store) Upsert(ctx context.Context, papers []store.Paper) ([]store.Outcome, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.state(ctx, store.EmbeddingSpec{}, true); err != nil {
		return nil, err
	}
	coll, active, _, _, _ := s.sets()
	ids := make([]string, len(papers))
	for i := range papers {
		ids[i] = papers[i].ID
		if set := papers[i].DenseSet; set != "" && set != active.Key() {
			return nil, &store.EmbeddingSwitchedError{Active: active}
		}
	}
	existing, err := s.fetch(ctx, coll, ids, qc.NewWithPayloadInclude("paper_id", "content_hash"), false)
	if err != nil {
		return nil, fmt.Errorf("upsert %d papers: %w", len(papers), err)
	}
	hashes := map[string]string{}
	for _, p := range existing {
		hashes[p.GetPayload()["paper_id"].GetStringValue()] = p.GetPayload()["content_hash"].GetStringValue()
	}
	outcomes := make([]store.Outcome, len(papers))
	var points []*qc.PointStruct
	s.mu.Lock()
	avgLen := s.avgLen
	s.mu.Unlock()
	for i := range papers {
		p := &papers[i]
		h := store.ContentHash(p)
		old, had := hashes[p.ID]
		switch {
		case had && old == h:
			outcomes[i] = store.Unchanged
			continue
		case had:
			outcomes[i] = store.Updated
		default:
			outcomes[i] = store.Inserted
		}
		hashes[p.ID] = h // a repeat later in the batch compares against this version
		pt := toPoint(p, h, avgLen)
		pt.Payload[writtenSeq] = qc.NewValueInt(int64(s.nextSeq()))
		points = append(points, pt)
	}
	wait := true
	for start := 0; start < len(points); start += s.opts.BatchSize {
		batch := points[start:min(start+s.opts.BatchSize, len(points))]
		if _, err := s.client.Upsert(ctx, &qc.UpsertPoints{CollectionName: coll, Wait: &wait, Points: batch}); err != nil {
			return nil, fmt.Errorf("upsert %d papers: %w", len(papers), mapErr(coll, err))
		}
	}
	return outcomes, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, ids []string) ([]store.Paper, error) {
	found, err := s.Lookup(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(found) < len(ids) {
		have := map[string]bool{}
		for _, p := range found {
			have[p.ID] = true
		}
		var missing []string
		for _, id := range ids {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		return nil, &store.NotFoundError{IDs: missing}
	}
	return found, nil
}

// Lookup implements store.Store.
func (s *Store) Lookup(ctx context.Context, ids []string) ([]store.Paper, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists {
		return nil, err
	}
	coll, active, avgLen, _, _ := s.sets()
	set := active.Key()
	points, err := s.fetch(ctx, coll, ids, qc.NewWithPayload(true), true)
	if err != nil {
		return nil, err
	}
	byID := map[string]store.Paper{}
	for _, pt := range points {
		p := fromPayload(pt.GetPayload())
		p.Lexical, p.Dense = vectorsOf(pt.GetVectors(), pt.GetPayload(), avgLen)
		p.DenseSet = set
		byID[p.ID] = p
	}
	out := make([]store.Paper, 0, len(byID))
	for _, id := range ids { // in the order asked, as the interface promises
		if p, ok := byID[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *Store) fetch(ctx context.Context, coll string, ids []string, payload *qc.WithPayloadSelector, vectors bool) ([]*qc.RetrievedPoint, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pids := make([]*qc.PointId, len(ids))
	for i, id := range ids {
		pids[i] = qc.NewID(PointID(id))
	}
	points, err := s.client.Get(ctx, &qc.GetPoints{CollectionName: coll, Ids: pids,
		WithPayload: payload, WithVectors: qc.NewWithVectors(vectors)})
	return points, mapErr(coll, err)
}

// count is the exact number of points in a collection.
func (s *Store) count(ctx context.Context, coll string) (uint64, error) {
	exact := true
	n, err := s.client.Count(ctx, &qc.CountPoints{CollectionName: coll, Exact: &exact})
	return n, mapErr(coll, err)
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, ids []string) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil {
		return nil, err
	} else if !exists {
		return slices.Compact(slices.Clone(ids)), nil
	}
	coll, _, _, other, _ := s.sets()
	existing, err := s.fetch(ctx, coll, ids, qc.NewWithPayloadInclude("paper_id"), false)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	var pids []*qc.PointId
	for _, p := range existing {
		have[p.GetPayload()["paper_id"].GetStringValue()] = true
		pids = append(pids, p.GetId())
	}
	var notFound []string
	for _, id := range ids {
		if !have[id] && !slices.Contains(notFound, id) {
			notFound = append(notFound, id)
		}
	}
	lists := ""
	if len(pids) > 0 {
		if kept, err := s.listsKept(ctx); err != nil {
			return nil, err
		} else if kept {
			lists = s.listsCollection()
		}
	}
	// From the other collection too: a paper deleted must not come back with a switch. The
	// lists' first: a list outliving its paper would be exported.
	for _, c := range []string{lists, other, coll} {
		if len(pids) == 0 || c == "" {
			continue
		}
		if err := s.deletePoints(ctx, c, pids); err != nil {
			return nil, fmt.Errorf("delete %d papers: %w", len(pids), err)
		}
	}
	return notFound, nil
}

func (s *Store) deletePoints(ctx context.Context, coll string, pids []*qc.PointId) error {
	wait := true
	_, err := s.client.Delete(ctx, &qc.DeletePoints{CollectionName: coll, Wait: &wait, Points: qc.NewPointsSelector(pids...)})
	return mapErr(coll, err)
}

// minLexicalScore drops points that share no positively weighted term with the query, as the
// embedded store does.
const minLexicalScore = 1e-6

// tieWindow is how many extra candidates a search fetches (ids and scores only) so that papers
// tied with the last one kept are ordered by paper id, as in every backend: Qdrant breaks ties
// by its internal order, which would make pages differ between replicas and over time.
const tieWindow = 64

// Search implements store.Store through the Query API: a sparse or a dense nearest query, or
// both in one batch, each list of ids and scores only.
func (s *Store) Search(ctx context.Context, q store.Query) (store.Lists, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists || q.Limit <= 0 {
		return store.Lists{}, err
	}
	coll, _, err := s.searchCollection(ctx, q.DenseSet)
	if err != nil {
		return store.Lists{}, err
	}
	filter := toFilter(q.Filter)
	limit := uint64(q.Limit + tieWindow)
	var reqs []*qc.QueryPoints
	var lists []*[]store.Scored
	var out store.Lists
	if q.Lexical.Len() > 0 {
		using, threshold := LexicalVector, float32(minLexicalScore)
		reqs = append(reqs, &qc.QueryPoints{CollectionName: coll, Filter: filter, Limit: &limit,
			WithPayload: qc.NewWithPayloadInclude("paper_id"), Using: &using, ScoreThreshold: &threshold,
			Query: qc.NewQuerySparse(q.Lexical.Indices, q.Lexical.Values)})
		lists = append(lists, &out.Lexical)
	}
	if len(q.Dense) > 0 {
		using := DenseVector
		reqs = append(reqs, &qc.QueryPoints{CollectionName: coll, Filter: filter, Limit: &limit,
			WithPayload: qc.NewWithPayloadInclude("paper_id"), Using: &using, Query: qc.NewQueryDense(q.Dense)})
		lists = append(lists, &out.Dense)
	}
	switch len(reqs) {
	case 0:
		return out, nil
	case 1:
		points, err := s.client.Query(ctx, reqs[0])
		if err != nil {
			return store.Lists{}, mapErr(coll, err)
		}
		*lists[0] = byScoreThenID(points, q.Limit)
	default:
		batch, err := s.client.QueryBatch(ctx, &qc.QueryBatchPoints{CollectionName: coll, QueryPoints: reqs})
		if err != nil {
			return store.Lists{}, mapErr(coll, err)
		}
		for i, r := range batch {
			*lists[i] = byScoreThenID(r.GetResult(), q.Limit)
		}
	}
	return out, nil
}

// Read implements store.Store: one Get of the points, with the payload fields asked for, and
// their vectors when a representation is (a sketch is computed here: Qdrant keeps none).
func (s *Store) Read(ctx context.Context, ids []string, fields store.Fields, denseSet string) ([]store.Record, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists || len(ids) == 0 {
		return nil, err
	}
	coll, avgLen, err := s.searchCollection(ctx, denseSet)
	if err != nil {
		return nil, err
	}
	vectors := fields&(store.LexicalVector|store.DenseVector|store.Sketch) != 0
	payload := qc.NewWithPayloadExclude("content_hash")
	if fields&store.Metadata == 0 {
		payload = qc.NewWithPayloadInclude("paper_id", "title", "date", "year", "lexical_length") // lexical_length: vectorsOf reads it
	}
	found, err := s.fetch(ctx, coll, ids, payload, vectors)
	if err != nil {
		return nil, err
	}
	if denseSet == "" {
		_, active, _, _, _ := s.sets()
		denseSet = active.Key()
	}
	byID := make(map[string]store.Record, len(found))
	for _, pt := range found {
		r := store.Record{Paper: fromPayload(pt.GetPayload())}
		if vectors {
			lex, dense := vectorsOf(pt.GetVectors(), pt.GetPayload(), avgLen)
			if fields&store.LexicalVector != 0 {
				r.Paper.Lexical = lex
			}
			if fields&store.DenseVector != 0 && len(dense) > 0 {
				r.Paper.Dense, r.Paper.DenseSet = dense, denseSet
			}
			if fields&store.Sketch != 0 {
				sk := lex.Sketch()
				r.Sketch = &sk
			}
		}
		byID[r.Paper.ID] = r
	}
	records := make([]store.Record, 0, len(found))
	for _, id := range ids {
		if r, ok := byID[id]; ok { // deleted since the search: left out
			records = append(records, r)
		}
	}
	return records, nil
}

// searchCollection is the collection a query of the vector set named set runs in (empty: the
// current one), with its BM25 average length; *store.EmbeddingSwitchedError when neither the
// current nor the other collection holds that set, even after looking again.
func (s *Store) searchCollection(ctx context.Context, set string) (string, float64, error) {
	for try := 0; ; try++ {
		coll, active, avgLen, other, otherSpec := s.sets()
		switch {
		case set == "" || set == active.Key():
			return coll, avgLen, nil
		case other != "" && set == otherSpec.Key():
			return other, avgLen, nil // both made with the same average (BeginVectorSet)
		case try > 0:
			return "", 0, &store.EmbeddingSwitchedError{Active: active}
		}
		s.mu.Lock()
		s.resolvedAt = time.Time{} // look again now
		s.mu.Unlock()
		if _, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil {
			return "", 0, err
		}
	}
}

// byScoreThenID is a list of points as ids and scores, ordered by score and then paper id, cut to
// n: Qdrant orders ties by its internal ids, which would make lists differ between replicas.
func byScoreThenID(points []*qc.ScoredPoint, n int) []store.Scored {
	if len(points) == 0 {
		return nil
	}
	ranked := make([]store.Scored, len(points))
	for i, pt := range points {
		ranked[i] = store.Scored{ID: pt.GetPayload()["paper_id"].GetStringValue(), Score: pt.GetScore()}
	}
	slices.SortFunc(ranked, func(a, b store.Scored) int {
		if store.Better(a, b) {
			return -1
		}
		return 1
	})
	return ranked[:min(len(ranked), n)]
}

// WaitOptimized waits until Qdrant reports the collection green: its optimisers, which build
// the vector indexes after writes, have finished. Benchmarks call it so they measure the index.
func (s *Store) WaitOptimized(ctx context.Context) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		coll, _, _, _, _ := s.sets()
		info, err := s.client.GetCollectionInfo(ctx, coll)
		if err != nil {
			return mapErr(coll, err)
		}
		if info.GetStatus() == qc.CollectionStatus_Green {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// mapErr turns Qdrant's gRPC errors into the store's typed errors.
func mapErr(collection string, err error) error {
	if err == nil {
		return nil
	}
	var re *qc.QdrantResourceExhaustedError
	if errors.As(err, &re) {
		return &store.ResourceExhaustedError{RetryAfter: time.Duration(re.RetryAfterS) * time.Second, Err: err}
	}
	st, ok := status.FromError(err)
	if !ok {
		if inner := errors.Unwrap(err); inner != nil {
			st, ok = status.FromError(inner)
		}
	}
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return &store.UnavailableError{Err: err}
	case codes.ResourceExhausted:
		return &store.ResourceExhaustedError{Err: err}
	case codes.NotFound:
		// Points that do not exist are not errors in Qdrant; a NotFound is the collection.
		return &store.UnavailableError{Err: fmt.Errorf("qdrant collection %q not found: %w", collection, err)}
	case codes.Unauthenticated, codes.PermissionDenied:
		return &store.UnavailableError{Err: fmt.Errorf("qdrant refused our credentials: %w", err)}
	}
	return err
}

// lexicalLength is a paper's weighted term count, kept in the payload so stored BM25 weights
// can be turned back into term frequencies (see vectorsOf).
func lexicalLength(v lexical.Vector) float64 { return float64(v.Sum()) }
