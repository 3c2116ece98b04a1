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
}

// DefaultOptions are hnswlib's usual settings.
func DefaultOptions() Options { return Options{M: 16, EfConstruction: 200, Seed: 1} }

type node struct {
	vec     []float32
	friends [][]uint32 // by layer
	deleted bool
}

// Index is the graph. It is safe for concurrent use: searches share a read lock, insertions and
// deletions take the write lock (AddBatch's workers then share the graph under node locks).
type Index struct {
	mu        sync.RWMutex
	opts      Options
	nodes     []node
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
		levelMult: 1 / math.Log(float64(opts.M))}
}

// Len is the number of live (not deleted) nodes.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.live
}

// Nodes is the number of nodes, deleted ones included: the next id Add returns.
func (x *Index) Nodes() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.nodes)
}

// Deleted is the number of tombstones.
func (x *Index) Deleted() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.nodes) - x.live
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
	first := uint32(len(x.nodes))
	for _, v := range vecs {
		x.newNode(v)
	}
	next := first
	// Sequential until the graph has some body, so parallel inserts do not all start from
	// one lonely entry point.
	for ; next < uint32(len(x.nodes)) && (threads <= 1 || next < 1024); next++ {
		x.insert(next)
	}
	if next == uint32(len(x.nodes)) {
		return first
	}
	x.locks = make([]sync.Mutex, len(x.nodes))
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
				if id >= uint32(len(x.nodes)) {
					return
				}
				x.insert(id)
			}
		}()
	}
	wg.Wait()
	return first
}

// newNode appends a node with a random level and no links yet.
func (x *Index) newNode(vec []float32) uint32 {
	level := int(-math.Log(1-x.rng.Float64()) * x.levelMult)
	id := uint32(len(x.nodes))
	x.nodes = append(x.nodes, node{vec: vec, friends: make([][]uint32, level+1)})
	x.live++
	x.encode(vec)
	return id
}

// encode appends vec's int8 code, with Options.Int8.
func (x *Index) encode(vec []float32) {
	if !x.opts.Int8 {
		return
	}
	if x.dims == 0 {
		x.dims = len(vec)
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
	return vek32.Dot(q.vec, x.nodes[id].vec)
}

// insert links node id into the graph.
func (x *Index) insert(id uint32) {
	vec, level := x.nodes[id].vec, len(x.nodes[id].friends)-1
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
		x.nodes[id].friends[l] = friends
		x.unlock(id)
		for _, f := range friends {
			x.lock(f)
			fn := &x.nodes[f]
			fn.friends[l] = append(fn.friends[l], id)
			if len(fn.friends[l]) > limit {
				cands := make([]Result, len(fn.friends[l]))
				for i, g := range fn.friends[l] {
					cands[i] = Result{ID: g, Score: vek32.Dot(fn.vec, x.nodes[g].vec)}
				}
				sortResults(cands)
				fn.friends[l] = x.selectNeighbours(cands, limit)
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
		return x.nodes[id].friends[layer]
	}
	x.locks[id].Lock()
	buf = append(buf[:0], x.nodes[id].friends[layer]...)
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
	if int(id) < len(x.nodes) && !x.nodes[id].deleted {
		x.nodes[id].deleted = true
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
	if qq.code != nil { // rescore the candidates exactly
		for i := range found {
			found[i].Score = vek32.Dot(q, x.nodes[found[i].ID].vec)
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
		return !x.nodes[id].deleted && (accept == nil || accept(id))
	}
	for _, e := range entry {
		vs.visit(e.ID)
		cand.push(e, better)
		if ok(e.ID) {
			best.push(e, worse)
		}
	}
	var buf []uint32
	for len(cand) > 0 {
		c := cand.pop(better)
		if len(best) >= ef && c.Score < best[0].Score {
			break
		}
		buf = x.neighbours(c.ID, layer, buf)
		for _, f := range buf {
			if !vs.visit(f) {
				continue
			}
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
	out := []Result(best)
	sortResults(out)
	return out
}

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
			if vek32.Dot(x.nodes[c.ID].vec, x.nodes[s].vec) > c.Score {
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
}

func (x *Index) visitSet() *visitSet {
	vs, _ := x.visited.Get().(*visitSet)
	if vs == nil {
		vs = &visitSet{}
	}
	if len(vs.mark) < len(x.nodes) {
		vs.mark = append(vs.mark, make([]uint32, len(x.nodes)-len(vs.mark)+1024)...)
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
