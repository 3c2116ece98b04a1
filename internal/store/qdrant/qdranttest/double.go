// Package qdranttest is a contract double of Qdrant: go-client's own generated Points,
// Collections and Qdrant gRPC server interfaces served on loopback. It records every request so
// tests can assert exactly what the adapter sends, injects Qdrant's error codes, can be stopped
// and restarted, and implements just enough of Qdrant's semantics (cosine and sparse-with-idf
// nearest queries, keyword/range/has_id filters; the adapter fuses lists itself) for end-to-end tests
// of ingest and recommend. It is not Qdrant: the conformance suite against a real Qdrant
// (QDRANT_URL) is what proves the adapter right.
package qdranttest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paperrec/recommender/internal/store"
)

// Call is one request the double received.
type Call struct {
	Method string // e.g. "Points/Upsert"
	Req    proto.Message
	APIKey string
}

// Fault is an error returned instead of handling a call.
type Fault struct {
	Code       codes.Code
	RetryAfter string // sent as the "retry-after" trailer, as Qdrant does with rate limits
}

// Double is the fake Qdrant.
type Double struct {
	addr string

	mu          sync.Mutex
	srv         *grpc.Server
	calls       []Call
	faults      map[string][]Fault
	collections map[string]*collection
	aliases     map[string]string // alias -> collection
}

type collection struct {
	create  *qc.CreateCollection
	points  map[string]*qc.PointStruct // by point id
	indexes []string
}

// Start serves a new double on 127.0.0.1 until Stop.
func Start() (*Double, error) {
	d := &Double{faults: map[string][]Fault{}, collections: map[string]*collection{}, aliases: map[string]string{}}
	if err := d.serve("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Double) serve(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	qc.RegisterPointsServer(srv, &points{d: d})
	qc.RegisterCollectionsServer(srv, &collections{d: d})
	qc.RegisterQdrantServer(srv, &service{d: d})
	d.mu.Lock()
	d.srv, d.addr = srv, lis.Addr().String()
	d.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
	return nil
}

// Addr is host:port; URL is the form the adapter takes.
func (d *Double) Addr() string { return d.addr }

// URL is the double's address as an http:// URL.
func (d *Double) URL() string { return "http://" + d.addr }

// Stop stops serving (calls fail with Unavailable); the state is kept for Restart.
func (d *Double) Stop() {
	d.mu.Lock()
	srv := d.srv
	d.mu.Unlock()
	srv.Stop()
}

// Restart serves again on the same address.
func (d *Double) Restart() error { return d.serve(d.addr) }

// Fail makes the next call of method (e.g. "Points/Upsert") return the fault.
func (d *Double) Fail(method string, f Fault) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults[method] = append(d.faults[method], f)
}

// Calls returns the requests received, optionally only those of one method.
func (d *Double) Calls(method string) []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Call
	for _, c := range d.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the recorded calls.
func (d *Double) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = nil
}

// enter records a call and returns its injected fault, if any. It holds d.mu on success so
// handlers run one at a time; the caller must call d.mu.Unlock.
func (d *Double) enter(ctx context.Context, method string, req proto.Message) error {
	d.mu.Lock()
	key := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("api-key")) > 0 {
		key = md.Get("api-key")[0]
	}
	d.calls = append(d.calls, Call{Method: method, Req: proto.Clone(req), APIKey: key})
	if fs := d.faults[method]; len(fs) > 0 {
		f := fs[0]
		d.faults[method] = fs[1:]
		d.mu.Unlock()
		if f.RetryAfter != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", f.RetryAfter))
		}
		return status.Error(f.Code, "injected fault")
	}
	return nil
}

func (d *Double) collection(name string) (*collection, error) {
	c, ok := d.collections[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
	}
	return c, nil
}

type service struct {
	qc.UnimplementedQdrantServer
	d *Double
}

func (s *service) HealthCheck(ctx context.Context, req *qc.HealthCheckRequest) (*qc.HealthCheckReply, error) {
	if err := s.d.enter(ctx, "Qdrant/HealthCheck", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	return &qc.HealthCheckReply{Title: "qdrant contract double", Version: "1.17.0"}, nil
}

type collections struct {
	qc.UnimplementedCollectionsServer
	d *Double
}

func (s *collections) CollectionExists(ctx context.Context, req *qc.CollectionExistsRequest) (*qc.CollectionExistsResponse, error) {
	if err := s.d.enter(ctx, "Collections/CollectionExists", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	_, ok := s.d.collections[req.GetCollectionName()]
	return &qc.CollectionExistsResponse{Result: &qc.CollectionExists{Exists: ok}}, nil
}

func (s *collections) Create(ctx context.Context, req *qc.CreateCollection) (*qc.CollectionOperationResponse, error) {
	if err := s.d.enter(ctx, "Collections/Create", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	if _, ok := s.d.collections[req.GetCollectionName()]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Collection `%s` already exists!", req.GetCollectionName())
	}
	s.d.collections[req.GetCollectionName()] = &collection{create: proto.Clone(req).(*qc.CreateCollection), points: map[string]*qc.PointStruct{}}
	return &qc.CollectionOperationResponse{Result: true}, nil
}

func (s *collections) Delete(ctx context.Context, req *qc.DeleteCollection) (*qc.CollectionOperationResponse, error) {
	if err := s.d.enter(ctx, "Collections/Delete", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	if _, ok := s.d.collections[req.GetCollectionName()]; !ok {
		return &qc.CollectionOperationResponse{Result: false}, nil
	}
	delete(s.d.collections, req.GetCollectionName())
	for a, c := range s.d.aliases { // as Qdrant does, the collection's aliases go with it
		if c == req.GetCollectionName() {
			delete(s.d.aliases, a)
		}
	}
	return &qc.CollectionOperationResponse{Result: true}, nil
}

func (s *collections) ListAliases(ctx context.Context, req *qc.ListAliasesRequest) (*qc.ListAliasesResponse, error) {
	if err := s.d.enter(ctx, "Collections/ListAliases", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	resp := &qc.ListAliasesResponse{}
	for a, c := range s.d.aliases {
		resp.Aliases = append(resp.Aliases, &qc.AliasDescription{AliasName: a, CollectionName: c})
	}
	slices.SortFunc(resp.Aliases, func(x, y *qc.AliasDescription) int { return strings.Compare(x.GetAliasName(), y.GetAliasName()) })
	return resp, nil
}

// UpdateAliases applies the actions all or none, as Qdrant does.
func (s *collections) UpdateAliases(ctx context.Context, req *qc.ChangeAliases) (*qc.CollectionOperationResponse, error) {
	if err := s.d.enter(ctx, "Collections/UpdateAliases", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	next := maps.Clone(s.d.aliases)
	for _, op := range req.GetActions() {
		switch {
		case op.GetCreateAlias() != nil:
			a := op.GetCreateAlias()
			if _, ok := s.d.collections[a.GetCollectionName()]; !ok {
				return nil, status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", a.GetCollectionName())
			}
			if _, ok := s.d.collections[a.GetAliasName()]; ok {
				return nil, status.Errorf(codes.AlreadyExists, "Collection `%s` already exists!", a.GetAliasName())
			}
			if _, ok := next[a.GetAliasName()]; ok {
				return nil, status.Errorf(codes.AlreadyExists, "Alias `%s` already exists!", a.GetAliasName())
			}
			next[a.GetAliasName()] = a.GetCollectionName()
		case op.GetDeleteAlias() != nil:
			name := op.GetDeleteAlias().GetAliasName()
			if _, ok := next[name]; !ok {
				return nil, status.Errorf(codes.NotFound, "Not found: Alias `%s` doesn't exist!", name)
			}
			delete(next, name)
		default:
			return nil, status.Errorf(codes.Unimplemented, "the double does not apply %v", op)
		}
	}
	s.d.aliases = next
	return &qc.CollectionOperationResponse{Result: true}, nil
}

func (s *collections) Get(ctx context.Context, req *qc.GetCollectionInfoRequest) (*qc.GetCollectionInfoResponse, error) {
	if err := s.d.enter(ctx, "Collections/Get", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	n := uint64(len(c.points))
	return &qc.GetCollectionInfoResponse{Result: &qc.CollectionInfo{
		Status: qc.CollectionStatus_Green, PointsCount: &n,
		Config: &qc.CollectionConfig{
			Params: &qc.CollectionParams{ShardNumber: c.create.GetShardNumber(), VectorsConfig: c.create.GetVectorsConfig(),
				SparseVectorsConfig: c.create.GetSparseVectorsConfig(), ReplicationFactor: c.create.ReplicationFactor},
			Metadata: c.create.GetMetadata(),
		},
	}}, nil
}

type points struct {
	qc.UnimplementedPointsServer
	d *Double
}

func (s *points) CreateFieldIndex(ctx context.Context, req *qc.CreateFieldIndexCollection) (*qc.PointsOperationResponse, error) {
	if err := s.d.enter(ctx, "Points/CreateFieldIndex", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	c.indexes = append(c.indexes, req.GetFieldName())
	return completed(), nil
}

func completed() *qc.PointsOperationResponse {
	return &qc.PointsOperationResponse{Result: &qc.UpdateResult{Status: qc.UpdateStatus_Completed}}
}

func idKey(id *qc.PointId) string {
	if u := id.GetUuid(); u != "" {
		return u
	}
	return fmt.Sprint(id.GetNum())
}

func (s *points) Upsert(ctx context.Context, req *qc.UpsertPoints) (*qc.PointsOperationResponse, error) {
	if err := s.d.enter(ctx, "Points/Upsert", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	for _, p := range req.GetPoints() {
		for name := range p.GetVectors().GetVectors().GetVectors() {
			if !c.hasVector(name) {
				return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Not existing vector name error: %s", name)
			}
		}
		stored := proto.Clone(p).(*qc.PointStruct)
		c.unitCosine(stored)
		c.points[idKey(p.GetId())] = stored
	}
	return completed(), nil
}

// unitCosine scales the point's dense vectors of cosine distance to unit length, as Qdrant
// stores them: it reads them back normalised.
func (c *collection) unitCosine(p *qc.PointStruct) {
	params := c.create.GetVectorsConfig().GetParamsMap().GetMap()
	for name, v := range p.GetVectors().GetVectors().GetVectors() {
		d := v.GetDense()
		if d == nil || params[name].GetDistance() != qc.Distance_Cosine {
			continue
		}
		var ss float64
		for _, x := range d.Data {
			ss += float64(x) * float64(x)
		}
		if ss > 0 {
			n := math.Sqrt(ss)
			for i := range d.Data {
				d.Data[i] = float32(float64(d.Data[i]) / n)
			}
		}
	}
}

func (c *collection) hasVector(name string) bool {
	if _, ok := c.create.GetVectorsConfig().GetParamsMap().GetMap()[name]; ok {
		return true
	}
	_, ok := c.create.GetSparseVectorsConfig().GetMap()[name]
	return ok
}

func (s *points) Delete(ctx context.Context, req *qc.DeletePoints) (*qc.PointsOperationResponse, error) {
	if err := s.d.enter(ctx, "Points/Delete", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	for _, id := range req.GetPoints().GetPoints().GetIds() {
		delete(c.points, idKey(id))
	}
	if f := req.GetPoints().GetFilter(); f != nil {
		for k, p := range c.points {
			ok, err := matches(p, f)
			if err != nil {
				return nil, err
			}
			if ok {
				delete(c.points, k)
			}
		}
	}
	return completed(), nil
}

func (s *points) Get(ctx context.Context, req *qc.GetPoints) (*qc.GetResponse, error) {
	if err := s.d.enter(ctx, "Points/Get", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	resp := &qc.GetResponse{}
	for _, id := range req.GetIds() {
		if p, ok := c.points[idKey(id)]; ok {
			resp.Result = append(resp.Result, &qc.RetrievedPoint{Id: p.GetId(),
				Payload: selectPayload(p.GetPayload(), req.GetWithPayload()), Vectors: outputVectors(p, req.GetWithVectors())})
		}
	}
	return resp, nil
}

// Scroll lists points that pass the filter: by id from an offset, or ordered by an indexed
// numeric payload field (ascending; Qdrant takes no offset then), limit at a time.
func (s *points) Scroll(ctx context.Context, req *qc.ScrollPoints) (*qc.ScrollResponse, error) {
	if err := s.d.enter(ctx, "Points/Scroll", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	key := req.GetOrderBy().GetKey()
	switch {
	case key != "" && !slices.Contains(c.indexes, key):
		return nil, status.Errorf(codes.InvalidArgument, "Bad request: No range index for `order_by` key: `%s`", key)
	case key != "" && req.GetOffset() != nil:
		return nil, status.Errorf(codes.InvalidArgument, "Bad request: Cannot use an `offset` when using `order_by`")
	case req.GetOrderBy().GetDirection() == qc.Direction_Desc:
		return nil, status.Errorf(codes.Unimplemented, "the double orders ascending only")
	}
	var pts []*qc.PointStruct
	for _, p := range c.points {
		ok, err := matches(p, req.GetFilter())
		if err != nil {
			return nil, err
		}
		if ok && (req.GetOffset() == nil || idKey(p.GetId()) >= idKey(req.GetOffset())) {
			pts = append(pts, p)
		}
	}
	slices.SortFunc(pts, func(a, b *qc.PointStruct) int {
		if key != "" {
			x, _ := number(a.GetPayload()[key])
			y, _ := number(b.GetPayload()[key])
			if x != y {
				return cmp.Compare(x, y)
			}
		}
		return strings.Compare(idKey(a.GetId()), idKey(b.GetId()))
	})
	limit := int(req.GetLimit())
	if req.Limit == nil {
		limit = 10
	}
	resp := &qc.ScrollResponse{}
	for i, p := range pts {
		if i == limit {
			if key == "" {
				resp.NextPageOffset = p.GetId()
			}
			break
		}
		resp.Result = append(resp.Result, &qc.RetrievedPoint{Id: p.GetId(),
			Payload: selectPayload(p.GetPayload(), req.GetWithPayload()), Vectors: outputVectors(p, req.GetWithVectors())})
	}
	return resp, nil
}

func (s *points) Count(ctx context.Context, req *qc.CountPoints) (*qc.CountResponse, error) {
	if err := s.d.enter(ctx, "Points/Count", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	var n uint64
	for _, p := range c.points {
		ok, err := matches(p, req.GetFilter())
		if err != nil {
			return nil, err
		}
		if ok {
			n++
		}
	}
	return &qc.CountResponse{Result: &qc.CountResult{Count: n}}, nil
}

type scored struct {
	p     *qc.PointStruct
	score float32
}

func (s *points) Query(ctx context.Context, req *qc.QueryPoints) (*qc.QueryResponse, error) {
	if err := s.d.enter(ctx, "Points/Query", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	res, err := s.query(req)
	if err != nil {
		return nil, err
	}
	return &qc.QueryResponse{Result: res}, nil
}

// QueryBatch answers each query as Query does, under one lock: Qdrant runs a batch on one
// snapshot of the collection.
func (s *points) QueryBatch(ctx context.Context, req *qc.QueryBatchPoints) (*qc.QueryBatchResponse, error) {
	if err := s.d.enter(ctx, "Points/QueryBatch", req); err != nil {
		return nil, err
	}
	defer s.d.mu.Unlock()
	resp := &qc.QueryBatchResponse{}
	for _, q := range req.GetQueryPoints() {
		if q.GetCollectionName() != req.GetCollectionName() {
			return nil, status.Errorf(codes.InvalidArgument, "collection %q in a batch for %q", q.GetCollectionName(), req.GetCollectionName())
		}
		res, err := s.query(q)
		if err != nil {
			return nil, err
		}
		resp.Result = append(resp.Result, &qc.BatchResult{Result: res})
	}
	return resp, nil
}

// query answers one query; the caller holds the lock.
func (s *points) query(req *qc.QueryPoints) ([]*qc.ScoredPoint, error) {
	c, err := s.d.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if len(req.GetPrefetch()) > 0 {
		// The adapter fuses its lists itself; a prefetch here is a change to pin first.
		return nil, status.Error(codes.Unimplemented, "the double answers no prefetch (the adapter sends none)")
	}
	ranked, err := c.nearest(req.GetQuery(), req.GetUsing(), req.GetFilter(), 0, req.ScoreThreshold)
	if err != nil {
		return nil, err
	}
	var kept []scored
	for _, r := range ranked {
		ok, err := matches(r.p, req.GetFilter())
		if err != nil {
			return nil, err
		}
		if ok {
			kept = append(kept, r)
		}
	}
	ranked = kept[min(int(req.GetOffset()), len(kept)):]
	if lim := int(req.GetLimit()); lim > 0 && len(ranked) > lim {
		ranked = ranked[:lim]
	}
	var res []*qc.ScoredPoint
	for _, r := range ranked {
		res = append(res, &qc.ScoredPoint{Id: r.p.GetId(), Score: r.score,
			Payload: selectPayload(r.p.GetPayload(), req.GetWithPayload()), Vectors: outputVectors(r.p, req.GetWithVectors())})
	}
	return res, nil
}

// nearest scores every point that passes filter against a nearest query on vector using.
func (c *collection) nearest(q *qc.Query, using string, filter *qc.Filter, limit uint64, threshold *float32) ([]scored, error) {
	in := q.GetNearest()
	if in == nil {
		return nil, status.Error(codes.Unimplemented, "the double answers only nearest queries")
	}
	if !c.hasVector(using) {
		return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Not existing vector name error: %s", using)
	}
	var idf func(uint32) float64
	if sp := in.GetSparse(); sp != nil {
		idf = c.idf(using)
	}
	var out []scored
	for _, p := range c.points {
		ok, err := matches(p, filter)
		if err != nil {
			return nil, err
		}
		v := p.GetVectors().GetVectors().GetVectors()[using]
		if !ok || v == nil {
			continue
		}
		var score float32
		if sp := in.GetSparse(); sp != nil {
			dv := v.GetSparse()
			for i, t := range sp.GetIndices() {
				if j := slices.Index(dv.GetIndices(), t); j >= 0 {
					score += float32(float64(sp.GetValues()[i]*dv.GetValues()[j]) * idf(t))
				}
			}
			if score == 0 {
				continue // Qdrant returns only points sharing an index with a sparse query
			}
		} else {
			if a, b := in.GetDense().GetData(), v.GetDense().GetData(); len(a) == len(b) {
				score = float32(store.Cosine(a, b))
			}
		}
		if threshold != nil && score < *threshold {
			continue
		}
		out = append(out, scored{p, score})
	}
	sortScored(out)
	if limit > 0 && len(out) > int(limit) {
		out = out[:limit]
	}
	return out, nil
}

// idf is Qdrant's IDF modifier: ln(1 + (N - n + 0.5) / (n + 0.5)) over points with the vector.
func (c *collection) idf(using string) func(uint32) float64 {
	df := map[uint32]float64{}
	n := 0.0
	for _, p := range c.points {
		if v := p.GetVectors().GetVectors().GetVectors()[using]; v != nil {
			n++
			for _, t := range v.GetSparse().GetIndices() {
				df[t]++
			}
		}
	}
	return func(t uint32) float64 { return math.Log(1 + (n-df[t]+0.5)/(df[t]+0.5)) }
}

func sortScored(s []scored) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].score != s[j].score {
			return s[i].score > s[j].score
		}
		return idKey(s[i].p.GetId()) < idKey(s[j].p.GetId())
	})
}

// matches evaluates the subset of Qdrant filters the adapter uses; anything else is refused,
// so an adapter change that sends a new kind of condition fails loudly here.
func matches(p *qc.PointStruct, f *qc.Filter) (bool, error) {
	if f == nil {
		return true, nil
	}
	for _, c := range f.GetMust() {
		ok, err := condition(p, c)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, c := range f.GetMustNot() {
		ok, err := condition(p, c)
		if err != nil || ok {
			return false, err
		}
	}
	if len(f.GetShould()) > 0 {
		for _, c := range f.GetShould() {
			if ok, err := condition(p, c); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	return true, nil
}

func condition(p *qc.PointStruct, c *qc.Condition) (bool, error) {
	switch {
	case c.GetHasId() != nil:
		for _, id := range c.GetHasId().GetHasId() {
			if idKey(id) == idKey(p.GetId()) {
				return true, nil
			}
		}
		return false, nil
	case c.GetFilter() != nil:
		return matches(p, c.GetFilter())
	case c.GetIsEmpty() != nil:
		return len(payloadValues(p.GetPayload()[c.GetIsEmpty().GetKey()])) == 0, nil
	case c.GetField() != nil:
		fc := c.GetField()
		values := payloadValues(p.GetPayload()[fc.GetKey()])
		switch {
		case fc.GetMatch().GetKeywords() != nil:
			return anyString(values, fc.GetMatch().GetKeywords().GetStrings()), nil
		case fc.GetMatch() != nil && fc.GetMatch().GetKeyword() != "":
			return anyString(values, []string{fc.GetMatch().GetKeyword()}), nil
		case fc.GetRange() != nil:
			r := fc.GetRange()
			for _, v := range values {
				x, ok := number(v)
				if ok && (r.Gte == nil || x >= r.GetGte()) && (r.Lte == nil || x <= r.GetLte()) &&
					(r.Gt == nil || x > r.GetGt()) && (r.Lt == nil || x < r.GetLt()) {
					return true, nil
				}
			}
			return false, nil
		}
	}
	return false, status.Errorf(codes.Unimplemented, "the double does not evaluate condition %v", c)
}

func payloadValues(v *qc.Value) []*qc.Value {
	if l := v.GetListValue(); l != nil {
		return l.GetValues()
	}
	if v == nil {
		return nil
	}
	return []*qc.Value{v}
}

func anyString(values []*qc.Value, want []string) bool {
	for _, v := range values {
		if slices.Contains(want, v.GetStringValue()) {
			return true
		}
	}
	return false
}

func number(v *qc.Value) (float64, bool) {
	switch x := v.GetKind().(type) {
	case *qc.Value_IntegerValue:
		return float64(x.IntegerValue), true
	case *qc.Value_DoubleValue:
		return x.DoubleValue, true
	}
	return 0, false
}

func selectPayload(pl map[string]*qc.Value, sel *qc.WithPayloadSelector) map[string]*qc.Value {
	out := map[string]*qc.Value{}
	switch {
	case sel.GetInclude() != nil:
		for _, f := range sel.GetInclude().GetFields() {
			if v, ok := pl[f]; ok {
				out[f] = v
			}
		}
	case sel.GetExclude() != nil:
		for k, v := range pl {
			if !slices.Contains(sel.GetExclude().GetFields(), k) {
				out[k] = v
			}
		}
	case sel.GetEnable():
		for k, v := range pl {
			out[k] = v
		}
	}
	return out
}

func outputVectors(p *qc.PointStruct, sel *qc.WithVectorsSelector) *qc.VectorsOutput {
	if !sel.GetEnable() {
		return nil
	}
	named := map[string]*qc.VectorOutput{}
	for name, v := range p.GetVectors().GetVectors().GetVectors() {
		switch {
		case v.GetDense() != nil:
			named[name] = &qc.VectorOutput{Vector: &qc.VectorOutput_Dense{Dense: v.GetDense()}}
		case v.GetSparse() != nil:
			named[name] = &qc.VectorOutput{Vector: &qc.VectorOutput_Sparse{Sparse: v.GetSparse()}}
		}
	}
	return &qc.VectorsOutput{VectorsOptions: &qc.VectorsOutput_Vectors{Vectors: &qc.NamedVectorsOutput{Vectors: named}}}
}
