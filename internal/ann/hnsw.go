// Package ann is an approximate nearest-neighbour index for unit-length vectors (cosine
// similarity as a dot product): a hierarchical navigable small world graph (Malkov and Yashunin,
// 2018) with the neighbour-selection heuristic, parallel batch insertion, deletions as
// tombstones, searches that honour a filter, optional int8 codes with exact rescoring (AVX2
// assembly with a portable fallback), and persistence of the graph alone (the vectors belong
// to the store).
package ann

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/viterin/vek/vek32"
)

// Options tune the graph.
type Options struct {
	// M is the number of neighbours a node keeps on upper layers (2M on the bottom layer).
	M int
	// EfConstruction is the candidate list size while inserting: higher builds a better graph
	// more slowly.
	EfConstruction int
	// Seed makes node levels, and so the graph, reproducible.
	Seed uint64
	// Int8 keeps an int8 code of every vector (a quarter of its float32 bytes) and walks the
	// graph on codes, then rescores the ef candidates found with the float vectors and returns
	// the best k of those. The float vectors are still read, but only ef per search, so they can
	// live on disk (memory-mapped). Insertions link with the float vectors.
	Int8 bool
	// Read, when set, gives rescoring each candidate's float vector: passed the vector the node
	// was added with and a buffer of the index's dimensions, it returns those floats, from
	// wherever they are best read (the store copies vectors kept in a mapped file with pread).
	Read func(v, dst []float32) []float32
}

// DefaultOptions are hnswlib's usual settings.
func DefaultOptions() Options { return Options{M: 16, EfConstruction: 200, Seed: 1} }

// Index is the graph. It is safe for concurrent use: searches share a read lock, insertions and
// deletions take the write lock (AddBatch's workers then share the graph under node locks).
type Index struct {
	mu   sync.RWMutex
	opts Options
	// Per node, by id. The bottom layer's friend lists are one flat array, hnswlib's layout:
	// a count then 2M slots per node, so reading a list is one cache miss, not three. Node
	// state lives in separate dense arrays for the same reason: the walk touches only what it
	// reads.
	vecs      [][]float32
	links0    []uint32     // node i's list at [i*stride0]: count, then up to 2M ids
	upper     [][][]uint32 // node i's friend lists on layers 1..level (nil on layer 0 only)
	dead      []bool
	stride0   int
	entry     int32 // -1 when empty
	maxLevel  int
	live      int
	rng       *rand.Rand
	levelMult float64
	codes     []int8    // with Options.Int8: node i's code at [i*dims, (i+1)*dims)
	scales    []float32 // with Options.Int8: node i's code scale
	dims      int
	visited   sync.Pool // *visitSet

	// During AddBatch only (the write lock held, so no Search runs): workers insert in
	// parallel, each friend list read or written under its node's lock, and entry/maxLevel
	// under entryMu.
	locks   []sync.Mutex
	entryMu sync.Mutex
}

// New returns an empty index.
func New(opts Options) *Index {
	if opts.M < 2 {
		opts.M = 2
	}
	if opts.EfConstruction < opts.M {
		opts.EfConstruction = opts.M
	}
	return &Index{opts: opts, entry: -1, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		levelMult: 1 / math.Log(float64(opts.M)), stride0: 1 + 2*opts.M}
}

// Len is the number of live (not deleted) nodes.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.live
}

// Dims is the length of the vectors in the graph (0 while it is empty).
func (x *Index) Dims() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.dims
}

// Nodes is the number of nodes, deleted ones included: the next id Add returns.
func (x *Index) Nodes() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.vecs)
}

// Deleted is the number of tombstones.
func (x *Index) Deleted() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.vecs) - x.live
}

// Result is a node and its similarity to the query.
type Result struct {
	ID    uint32
	Score float32
}

// Add inserts a unit-length vector and returns its id. The index keeps vec without copying it.
func (x *Index) Add(vec []float32) uint32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := x.newNode(vec)
	x.insert(id)
	return id
}

// AddBatch inserts vecs, the ids consecutive from the returned one, on up to threads goroutines
// (as hnswlib's add_items does: a parallel build is not reproducible, a sequential one is).
// Searches wait for the whole batch.
func (x *Index) AddBatch(vecs [][]float32, threads int) uint32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	first := uint32(len(x.vecs))
	x.grow(len(vecs))
	for _, v := range vecs {
		x.newNode(v)
	}
	next := first
	// Sequential until the graph has some body, so parallel inserts do not all start from
	// one lonely entry point.
	for ; next < uint32(len(x.vecs)) && (threads <= 1 || next < 1024); next++ {
		x.insert(next)
	}
	if next == uint32(len(x.vecs)) {
		return first
	}
	x.locks = make([]sync.Mutex, len(x.vecs))
	defer func() { x.locks = nil }()
	var wg sync.WaitGroup
	cursor := atomic.Uint32{}
	cursor.Store(next)
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id := cursor.Add(1) - 1
				if id >= uint32(len(x.vecs)) {
					return
				}
				x.insert(id)
			}
		}()
	}
	wg.Wait()
	return first
}

// grow makes room for n more nodes, so a batch appends without copying the arrays again.
func (x *Index) grow(n int) {
	x.vecs = slices.Grow(x.vecs, n)
	x.links0 = slices.Grow(x.links0, n*x.stride0)
	x.upper = slices.Grow(x.upper, n)
	x.dead = slices.Grow(x.dead, n)
}

// newNode appends a node with a random level and no links yet.
func (x *Index) newNode(vec []float32) uint32 {
	level := int(-math.Log(1-x.rng.Float64()) * x.levelMult)
	id := uint32(len(x.vecs))
	x.appendNode(vec, level)
	x.encode(vec)
	return id
}

// appendNode appends a node of the given level with empty friend lists (and no code yet).
func (x *Index) appendNode(vec []float32, level int) {
	if x.dims == 0 {
		x.dims = len(vec)
	}
	x.vecs = append(x.vecs, vec)
	n := len(x.links0)
	x.links0 = slices.Grow(x.links0, x.stride0)[:n+x.stride0]
	clear(x.links0[n:])
	var up [][]uint32
	if level > 0 {
		up = make([][]uint32, level)
	}
	x.upper = append(x.upper, up)
	x.dead = append(x.dead, false)
	x.live++
}

// level is the top layer node id is on.
func (x *Index) level(id uint32) int { return len(x.upper[id]) }

// friends is node id's friend list on layer, in place.
func (x *Index) friends(id uint32, layer int) []uint32 {
	if layer == 0 {
		b := int(id) * x.stride0
		return x.links0[b+1 : b+1+int(x.links0[b]) : b+x.stride0]
	}
	return x.upper[id][layer-1]
}

// setFriends replaces node id's friend list on layer (ids is kept on upper layers).
func (x *Index) setFriends(id uint32, layer int, ids []uint32) {
	if layer == 0 {
		b := int(id) * x.stride0
		x.links0[b] = uint32(copy(x.links0[b+1:b+x.stride0], ids))
		return
	}
	x.upper[id][layer-1] = ids
}

// encode appends vec's int8 code, with Options.Int8.
func (x *Index) encode(vec []float32) {
	if !x.opts.Int8 {
		return
	}
	var scale float32
	x.codes, scale = quantize(x.codes, vec[:x.dims])
	x.scales = append(x.scales, scale)
}

// query is a search's view of its vector: the float32 one, and with Options.Int8 its code.
type query struct {
	vec   []float32
	code  []int8
	scale float32
}

func (x *Index) sim(q *query, id uint32) float32 {
	if q.code != nil {
		d := x.dims
		return q.scale * x.scales[id] * float32(dotInt8(q.code, x.codes[int(id)*d:int(id)*d+d]))
	}
	return vek32.Dot(q.vec, x.vecs[id])
}

// insert links node id into the graph.
func (x *Index) insert(id uint32) {
	vec, level := x.vecs[id], x.level(id)
	if x.locks != nil {
		x.entryMu.Lock()
	}
	entry, maxLevel := x.entry, x.maxLevel
	if x.locks != nil {
		if level > maxLevel || entry < 0 {
			defer x.entryMu.Unlock() // held to the end: this node becomes the entry point
		} else {
			x.entryMu.Unlock()
		}
	}
	if entry < 0 {
		x.entry, x.maxLevel = int32(id), level
		return
	}
	q := &query{vec: vec}
	ep := []Result{{ID: uint32(entry), Score: x.sim(q, uint32(entry))}}
	for l := maxLevel; l > level; l-- {
		ep = x.searchLayer(q, ep, 1, l, nil, false)
	}
	for l := min(level, maxLevel); l >= 0; l-- {
		found := x.searchLayer(q, ep, x.opts.EfConstruction, l, nil, false)
		limit := x.maxFriends(l)
		friends := x.selectNeighbours(found, x.opts.M)
		x.lock(id)
		x.setFriends(id, l, friends)
		x.unlock(id)
		for _, f := range friends {
			x.lock(f)
			if cur := x.friends(f, l); len(cur) < limit {
				x.setFriends(f, l, append(cur, id)) // in place on layer 0: the slot is free
			} else {
				// Full: keep the best spread of the old friends and the new node.
				fv := x.vecs[f]
				cands := make([]Result, 0, len(cur)+1)
				cands = append(cands, Result{ID: id, Score: vek32.Dot(fv, vec)})
				for _, g := range cur {
					cands = append(cands, Result{ID: g, Score: vek32.Dot(fv, x.vecs[g])})
				}
				sortResults(cands)
				x.setFriends(f, l, x.selectNeighbours(cands, limit))
			}
			x.unlock(f)
		}
		ep = found
	}
	if level > maxLevel {
		x.entry, x.maxLevel = int32(id), level
	}
}

func (x *Index) lock(id uint32) {
	if x.locks != nil {
		x.locks[id].Lock()
	}
}

func (x *Index) unlock(id uint32) {
	if x.locks != nil {
		x.locks[id].Unlock()
	}
}

// neighbours is node id's friend list on layer; during a parallel batch a copy into buf, taken
// under the node's lock.
func (x *Index) neighbours(id uint32, layer int, buf []uint32) []uint32 {
	if x.locks == nil {
		return x.friends(id, layer)
	}
	x.locks[id].Lock()
	buf = append(buf[:0], x.friends(id, layer)...)
	x.locks[id].Unlock()
	return buf
}

func (x *Index) maxFriends(layer int) int {
	if layer == 0 {
		return 2 * x.opts.M
	}
	return x.opts.M
}

// Delete marks a node deleted: searches skip it, but it keeps linking its neighbours, as in
// hnswlib, so the graph stays navigable. Callers rebuild once tombstones are many.
func (x *Index) Delete(id uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if int(id) < len(x.vecs) && !x.dead[id] {
		x.dead[id] = true
		x.live--
	}
}

// Search returns up to k live nodes most similar to q that accept allows (nil: all), best
// first, exploring ef candidates (at least k). With a filter the walk goes on through rejected
// nodes, so the candidates found are all acceptable.
func (x *Index) Search(q []float32, k, ef int, accept func(uint32) bool) []Result {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.entry < 0 || k <= 0 {
		return nil
	}
	ef = max(ef, k)
	qq := &query{vec: q}
	if x.opts.Int8 && len(q) >= x.dims {
		qq.code, qq.scale = quantize(make([]int8, 0, x.dims), q[:x.dims])
	}
	ep := []Result{{ID: uint32(x.entry), Score: x.sim(qq, uint32(x.entry))}}
	for l := x.maxLevel; l > 0; l-- {
		ep = x.searchLayer(qq, ep, 1, l, nil, false)
	}
	found := x.searchLayer(qq, ep, ef, 0, accept, true)
	switch {
	case qq.code != nil && x.opts.Read != nil: // rescore the candidates exactly
		buf := make([]float32, x.dims)
		for i := range found {
			found[i].Score = vek32.Dot(q, x.opts.Read(x.vecs[found[i].ID], buf))
		}
		sortResults(found)
	case qq.code != nil:
		// The float vectors are often memory-mapped and cold: ask for all of them first.
		for _, r := range found {
			prefetchFloats(x.vecs[r.ID], cacheLines(4*x.dims))
		}
		for i := range found {
			found[i].Score = vek32.Dot(q, x.vecs[found[i].ID])
		}
		sortResults(found)
	}
	return found[:min(k, len(found))]
}

// searchLayer is the beam search of one layer: it returns up to ef nodes by descending
// similarity. With results set, only live nodes that accept allows are returned (the others
// are still walked through).
func (x *Index) searchLayer(q *query, entry []Result, ef, layer int, accept func(uint32) bool, results bool) []Result {
	vs := x.visitSet()
	defer x.visited.Put(vs)
	var cand, best heap // cand: best first; best: worst first, at most ef
	better := func(a, b Result) bool { return a.Score > b.Score }
	worse := func(a, b Result) bool { return a.Score < b.Score }
	ok := func(id uint32) bool {
		if !results {
			return true
		}
		return !x.dead[id] && (accept == nil || accept(id))
	}
	for _, e := range entry {
		vs.visit(e.ID)
		cand.push(e, better)
		if ok(e.ID) {
			best.push(e, worse)
		}
	}
	var buf []uint32
	fresh := vs.fresh[:0]
	for len(cand) > 0 {
		c := cand.pop(better)
		if len(best) >= ef && c.Score < best[0].Score {
			break
		}
		buf = x.neighbours(c.ID, layer, buf)
		fresh = fresh[:0]
		for _, f := range buf {
			if vs.visit(f) {
				fresh = append(fresh, f)
			}
		}
		// Ask for every new neighbour's vector before comparing any: the cache misses, the
		// cost of a walk over a large graph, then overlap instead of queueing.
		x.prefetch(q, fresh)
		for _, f := range fresh {
			s := x.sim(q, f)
			if len(best) < ef || s > best[0].Score {
				cand.push(Result{ID: f, Score: s}, better)
				if ok(f) {
					best.push(Result{ID: f, Score: s}, worse)
					if len(best) > ef {
						best.pop(worse)
					}
				}
			}
		}
	}
	vs.fresh = fresh
	out := []Result(best)
	sortResults(out)
	return out
}

// prefetch starts loading what sim reads for ids.
func (x *Index) prefetch(q *query, ids []uint32) {
	if q.code != nil {
		lines := cacheLines(x.dims)
		for _, id := range ids {
			prefetchLines(unsafe.Pointer(&x.codes[int(id)*x.dims]), lines)
			prefetchLines(unsafe.Pointer(&x.scales[id]), 1)
		}
		return
	}
	// The slice headers first (one miss each, all in flight together), then the vectors.
	for _, id := range ids {
		prefetchLines(unsafe.Pointer(&x.vecs[id]), 1)
	}
	for _, id := range ids {
		prefetchFloats(x.vecs[id], prefetchFloatLines)
	}
}

func prefetchFloats(v []float32, lines int) {
	prefetchLines(unsafe.Pointer(unsafe.SliceData(v)), lines)
}

// cacheLines is how many 64-byte cache lines hold n bytes.
func cacheLines(n int) int { return (n + 63) / 64 }

// prefetchFloatLines is how many cache lines of a float32 vector are asked for ahead; the
// hardware's stream prefetcher fetches the rest once the dot product starts reading.
const prefetchFloatLines = 2

// selectNeighbours is the heuristic of the HNSW paper: take candidates best first, keeping one
// only if it is closer to the new node than to every neighbour kept so far, so links spread
// in all directions instead of bunching in one cluster.
func (x *Index) selectNeighbours(cands []Result, m int) []uint32 {
	out := make([]uint32, 0, m)
	for _, c := range cands {
		if len(out) == m {
			break
		}
		keep := true
		for _, s := range out {
			if vek32.Dot(x.vecs[c.ID], x.vecs[s]) > c.Score {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, c.ID)
		}
	}
	return out
}

func sortResults(r []Result) {
	slices.SortFunc(r, func(a, b Result) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return int(a.ID) - int(b.ID)
	})
}

// visitSet marks visited nodes with an epoch, so it is reused without clearing.
type visitSet struct {
	mark  []uint32
	epoch uint32
	fresh []uint32 // scratch: a node's unvisited neighbours
}

func (x *Index) visitSet() *visitSet {
	vs, _ := x.visited.Get().(*visitSet)
	if vs == nil {
		vs = &visitSet{}
	}
	if len(vs.mark) < len(x.vecs) {
		vs.mark = append(vs.mark, make([]uint32, len(x.vecs)-len(vs.mark)+1024)...)
	}
	vs.epoch++
	if vs.epoch == 0 {
		clear(vs.mark)
		vs.epoch = 1
	}
	return vs
}

// visit marks id and reports whether it was new.
func (v *visitSet) visit(id uint32) bool {
	if v.mark[id] == v.epoch {
		return false
	}
	v.mark[id] = v.epoch
	return true
}

// heap is a binary heap of results ordered by first (first(a, b): a comes out before b),
// typed to avoid container/heap's boxing on the search's hot path.
type heap []Result

func (h *heap) push(r Result, first func(a, b Result) bool) {
	*h = append(*h, r)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !first(s[i], s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *heap) pop(first func(a, b Result) bool) Result {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && first(s[l], s[m]) {
			m = l
		}
		if r < len(s) && first(s[r], s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
