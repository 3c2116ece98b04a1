package embedded

import (
	"cmp"
	"context"
	"maps"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/paperrec/recommender/internal/ann"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/topk"
	"github.com/paperrec/recommender/internal/vec"
)

// maxQueryTerms bounds how many query terms are scored: the highest |weight| x idf ones. A seed
// paper has 200-300 distinct terms and pairs; the rest add posting-list work but do not improve
// the results (96 measured best of 32-256 on the CSFCube dev split and the arXiv sample).
const maxQueryTerms = 96

// doc is the in-memory part of a paper: what scoring, filtering and brief hits need. Full
// records stay on disk and are read only for the hits returned whole.
type doc struct {
	id         string
	title      string // with date and year, a brief hit (store.Query.Brief) without a disk read
	date       string
	year       int32
	categories []string
	authors    []string // store.NormalizeAuthor applied
	length     float32  // lexical.Vector.Sum of the document
	// dense holds the paper's unit vector in each vector set (slot 0: the one kept in the
	// records; 1: the one kept beside them); nil when it has none.
	dense  [2][]float32
	sketch lexical.Sketch // of the term vector, for diversity without decoding the record
	alive  bool
	ann    [2]int32 // node in each set's ANN graph; -1 when none, annQueued while the linker has it
	listed [2]bool  // an entry for the doc is in the set's queued list (so it gets one)
}

// vecSet is one set of vectors' approximate index.
type vecSet struct {
	ann *ann.Index // nil while loading, and for a slot without a set
	// annDocs is the doc number of each node published: the linker adds nodes to the graph
	// before it publishes them, so a search skips nodes past its end (their docs are queued).
	annDocs []uint32
	// queued lists the docs whose vector waits for the linker (doc.ann == annQueued);
	// searches score them exactly. Entries whose doc left that state are stale until the
	// linker's next publish drops them.
	queued []uint32
}

// term is one term's postings (in doc order, dead docs' included until compaction), its live
// document frequency, and the highest BM25 weight of its postings at the index's boundAvg
// document length (dead docs' included: a bound only needs to be high enough).
type term struct {
	df   int32
	maxW float32
	ps   []posting
}

type posting struct {
	doc uint32
	tf  float32
}

// index is the in-memory retrieval state. Updates are applied after the disk commit; deletions
// are lazy (the doc is marked dead and its postings skipped) and compacted in bulk once dead docs
// are a large share, so a write costs O(terms of the paper), not O(posting-list length).
type index struct {
	sets        [2]vecSet
	annCfg      ANNOptions
	wake        chan struct{} // nudges the store's linker (capacity 1; nil: no linker yet)
	compactions int           // maybeCompact's count: doc numbers change with each
	prune       bool          // Options.PruneLexical
	docs        []doc
	lengths     []float32 // docs[n].length, or -1 once dead: the scoring loop's one random read per posting
	byID        map[string]uint32
	termOf      *termTable // term id → index in terms
	terms       []term
	live        int
	dead        int
	sumLen      float64
	// boundAvg is the average document length the terms' maxW were computed at; they are
	// computed again when the average drifts too far from it (rebound).
	boundAvg float32

	scratch sync.Pool // *[2]window: a lexical search's, one for each half of the doc range
}

// window is a lexical search's working memory: each term's next posting, and the accumulators
// of one window of docs.
type window struct {
	cur []int
	acc [scoreWindow]float32
}

func newIndex(cfg ANNOptions, prune bool) *index {
	return &index{byID: map[string]uint32{}, termOf: newTermTable(0), annCfg: cfg, prune: prune}
}

// put adds a paper with its vector in each set (nil: none); the caller removes any older
// version first.
func (x *index) put(p *store.Paper, dense [2][]float32) {
	n := uint32(len(x.docs))
	authors := make([]string, len(p.Authors))
	for i, a := range p.Authors {
		authors[i] = store.NormalizeAuthor(a)
	}
	d := doc{id: p.ID, title: p.Title, date: p.Date, year: p.Year, categories: slices.Clone(p.Categories), authors: authors,
		length: p.Lexical.Sum(), sketch: p.Lexical.Sketch(), alive: true, ann: [2]int32{-1, -1}}
	x.docs = append(x.docs, d)
	x.lengths = append(x.lengths, d.length)
	for slot, v := range dense {
		x.setVector(n, slot, v)
	}
	x.byID[p.ID] = n
	if x.boundAvg <= 0 {
		x.boundAvg = max(d.length, 1)
	}
	bm25 := lexical.NewBM25(x.boundAvg)
	for i, t := range p.Lexical.Indices {
		e := x.term(t)
		tf := p.Lexical.Values[i]
		e.ps = append(e.ps, posting{doc: n, tf: tf})
		e.df++
		e.maxW = max(e.maxW, bm25.Weight(tf, d.length))
	}
	x.live++
	x.sumLen += float64(d.length)
	if avg := x.sumLen / float64(x.live); avg > 1.25*float64(x.boundAvg) || avg < 0.8*float64(x.boundAvg) {
		x.rebound()
	}
}

// rebound computes every term's maxW afresh at the current average length. Bounds computed at
// another average stay valid (searchLexical scales them), only looser; the average of a growing
// collection settles, so after its first few thousand papers this runs seldom.
func (x *index) rebound() {
	if x.live == 0 || x.sumLen <= 0 {
		return
	}
	x.boundAvg = float32(x.sumLen / float64(x.live))
	bm25 := lexical.NewBM25(x.boundAvg)
	for ti := range x.terms {
		e := &x.terms[ti]
		e.maxW = 0
		for _, p := range e.ps {
			if l := x.lengths[p.doc]; l >= 0 {
				e.maxW = max(e.maxW, bm25.Weight(p.tf, l))
			}
		}
	}
}

// term returns term t's entry, adding an empty one if it is new.
func (x *index) term(t uint32) *term {
	i, ok := x.termOf.get(t)
	if !ok {
		i = int32(len(x.terms))
		x.termOf.set(t, i)
		x.terms = append(x.terms, term{})
	}
	return &x.terms[i]
}

// remove deletes a paper if present. terms is the paper's stored lexical vector: the index
// keeps no per-doc term list, so the caller, who has just read the record from disk, supplies it
// for the document-frequency upkeep. Postings stay until compaction.
func (x *index) remove(id string, terms lexical.Vector) {
	n, ok := x.byID[id]
	if !ok {
		return
	}
	delete(x.byID, id)
	d := &x.docs[n]
	d.alive = false
	x.lengths[n] = -1
	for slot := range d.ann {
		x.dropVector(n, slot)
	}
	x.live--
	x.dead++
	x.sumLen -= float64(d.length)
	for _, t := range terms.Indices {
		if i, ok := x.termOf.get(t); ok {
			x.terms[i].df--
		}
	}
}

// maybeCompact renumbers live docs and drops dead postings once dead docs outnumber half the
// live ones (and a floor, so small stores do not compact on every delete).
func (x *index) maybeCompact() {
	if x.dead < 1024 || x.dead < x.live/2 {
		return
	}
	remap := make([]uint32, len(x.docs))
	docs := make([]doc, 0, x.live)
	lengths := make([]float32, 0, x.live)
	for i, d := range x.docs {
		if d.alive {
			remap[i] = uint32(len(docs))
			x.byID[d.id] = uint32(len(docs))
			docs = append(docs, d)
			lengths = append(lengths, d.length)
		}
	}
	terms := make([]term, 0, len(x.terms))
	termOf := newTermTable(x.termOf.len())
	x.termOf.each(func(t uint32, i int32) {
		e := x.terms[i]
		// A new array: postings read from a snapshot are in read-only mapped memory.
		kept := make([]posting, 0, len(e.ps))
		for _, p := range e.ps {
			if x.docs[p.doc].alive {
				kept = append(kept, posting{doc: remap[p.doc], tf: p.tf})
			}
		}
		if len(kept) > 0 {
			termOf.set(t, int32(len(terms)))
			terms = append(terms, term{df: e.df, ps: slices.Clip(kept)})
		}
	})
	x.terms, x.termOf = terms, termOf
	old := x.docs
	x.docs, x.lengths = docs, lengths
	x.dead = 0
	x.compactions++
	x.rebound() // the dead docs' weights leave the bounds
	for slot := range x.sets {
		vs := &x.sets[slot]
		for i, n := range vs.annDocs {
			vs.annDocs[i] = remap[n] // nodes of deleted docs are tombstones; their entry is never read
		}
		vs.queued = slices.DeleteFunc(vs.queued, func(n uint32) bool {
			if !old[n].alive {
				return true
			}
			if old[n].ann[slot] != annQueued {
				x.docs[remap[n]].listed[slot] = false
				return true
			}
			return false
		})
		for i, n := range vs.queued {
			vs.queued[i] = remap[n]
		}
		if vs.ann != nil && vs.ann.Deleted() > vs.ann.Len()/2 {
			x.buildANN(slot) // too many tombstones slow every search
		}
	}
}

type scored struct {
	doc   uint32
	score float32
}

// search runs q against the index and returns each signal's best q.Limit papers, by score
// then id. Dense search runs in the vectors of slot.
func (x *index) search(ctx context.Context, q store.Query, slot int) (store.Lists, error) {
	m := x.matcher(q.Filter)
	var lists store.Lists
	switch {
	case q.Lexical.Len() > 0 && len(q.Dense) > 0:
		// The two searches run side by side: a request's latency is the slower one, not the
		// sum (both only read the index, under the caller's read lock).
		var lexErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			lists.Lexical, lexErr = x.searchLexical(ctx, q.Lexical, m, q.Limit)
		}()
		var err error
		lists.Dense, err = x.searchDense(ctx, q.Dense, m, q.Limit, q.Exact, slot)
		<-done
		return lists, cmp.Or(lexErr, err)
	case len(q.Dense) > 0:
		var err error
		lists.Dense, err = x.searchDense(ctx, q.Dense, m, q.Limit, q.Exact, slot)
		return lists, err
	default:
		var err error
		lists.Lexical, err = x.searchLexical(ctx, q.Lexical, m, q.Limit)
		return lists, err
	}
}

func (x *index) better(a, b scored) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return x.docs[a.doc].id < x.docs[b.doc].id
}

func (x *index) toScored(hits []scored) []store.Scored {
	out := make([]store.Scored, len(hits))
	for i, h := range hits {
		out[i] = store.Scored{ID: x.docs[h.doc].id, Score: h.score}
	}
	return out
}

// queryTerm is one query term ready for scoring.
type queryTerm struct {
	weight float32 // query weight x idf
	ps     []posting
	// ub bounds the term's contribution to a paper's score from above: 0 for a negative weight.
	ub float64
}

// searchLexical returns the k papers with the highest BM25 scores for qv that match the
// filter (pruned with Options.PruneLexical: the same papers and scores).
func (x *index) searchLexical(ctx context.Context, qv lexical.Vector, m *matcher, k int) ([]store.Scored, error) {
	return x.lexicalTopK(ctx, qv, m, k, x.prune)
}

// lexicalTopK scores qv with BM25, pruned by MaxScore or every posting (scoreRange), and
// selects the top k. Only papers with a positive score are returned: a paper that shares
// nothing with the query is not "similar", however few results that leaves.
func (x *index) lexicalTopK(ctx context.Context, qv lexical.Vector, m *matcher, k int, prune bool) ([]store.Scored, error) {
	if x.live == 0 || k <= 0 {
		return nil, nil
	}
	n := float64(x.live)
	avgLen := float32(x.sumLen / n)
	terms := make([]queryTerm, 0, qv.Len())
	for i, t := range qv.Indices {
		ti, ok := x.termOf.get(t)
		if !ok || x.terms[ti].df <= 0 || qv.Values[i] == 0 {
			continue
		}
		e := &x.terms[ti]
		idf := float32(lexical.IDF(n, float64(e.df)))
		terms = append(terms, queryTerm{weight: qv.Values[i] * idf, ps: e.ps, ub: float64(e.maxW)})
	}
	slices.SortStableFunc(terms, func(a, b queryTerm) int {
		return cmpFloat(abs32(b.weight), abs32(a.weight))
	})
	terms = terms[:min(len(terms), maxQueryTerms)]
	// Both ways of scoring add a paper's contributions in this order (positive weights, highest
	// first, then negative ones), so they compute the same float32 scores, whatever the bounds.
	// The bounds follow it closely: a term's maxW varies far less than its weight.
	negative := func(t queryTerm) int {
		if t.weight < 0 {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(terms, func(a, b queryTerm) int { return negative(a) - negative(b) })
	rest := x.bounds(terms, avgLen)

	// Long posting lists are scored in two halves of the doc range side by side (postings are
	// in doc order; each half picks its own top k), halving the latency of a seed query when a
	// core is idle.
	total := 0
	for _, qt := range terms {
		total += len(qt.ps)
	}
	bm25 := lexical.NewBM25(avgLen)
	if m.only != nil && len(m.only)*len(terms)*lookupCost < total {
		return x.toScored(x.scoreDocs(ctx, terms, bm25, m, k)), ctx.Err()
	}
	wins, _ := x.scratch.Get().(*[2]window)
	if wins == nil {
		wins = new([2]window)
	}
	defer x.scratch.Put(wins)
	score := func(half int, lo, hi uint32) rangeResult {
		return x.scoreRange(ctx, terms, rest, bm25, &wins[half], lo, hi, m, k, prune)
	}
	var halves [2]rangeResult
	if total >= parallelPostings && runtime.GOMAXPROCS(0) > 1 {
		mid := uint32(len(x.docs) / 2)
		done := make(chan struct{})
		go func() {
			defer close(done)
			halves[1] = score(1, mid, math.MaxUint32)
		}()
		halves[0] = score(0, 0, mid)
		<-done
	} else {
		halves[0] = score(0, 0, math.MaxUint32)
	}
	if err := cmp.Or(halves[0].err, halves[1].err); err != nil {
		return nil, err
	}
	top := topk.New(k, x.better)
	for _, h := range halves {
		for _, sc := range h.top {
			top.Push(sc)
		}
	}
	return x.toScored(top.Sorted()), nil
}

// lookupCost is about what finding a paper's posting in a list by a galloping search costs,
// in postings scanned: a filter naming fewer papers than the postings over it are scored by
// look-ups (scoreDocs).
const lookupCost = 16

// scoreDocs scores the papers a filter names one by one, each term's posting found by a
// galloping search of its list: a hybrid list's completion (the lexical scores of the papers
// only the dense list found) or a short candidate list reads a few postings of each term where
// a scan reads them all, at a million papers 9 of a seed request's 11 ms. A paper's terms are
// added in the order scoreRange adds them, so it scores the same float32 either way.
func (x *index) scoreDocs(ctx context.Context, terms []queryTerm, bm25 lexical.BM25, m *matcher, k int) []scored {
	docs := slices.Sorted(maps.Keys(m.only))
	cur := make([]int, len(terms))
	top := topk.New(k, x.better)
	for j, d := range docs {
		if j%256 == 0 && ctx.Err() != nil {
			return nil
		}
		if x.lengths[d] < 0 {
			continue // dead
		}
		var score float32
		for i := range terms {
			ps := terms[i].ps
			c := seek(ps, cur[i], d)
			cur[i] = c
			if c < len(ps) && ps[c].doc == d {
				score += terms[i].weight * bm25.Weight(ps[c].tf, x.lengths[d])
			}
		}
		if score > 0 && m.match(d) {
			top.Push(scored{doc: d, score: score})
		}
	}
	return top.Sorted()
}

// bounds sets each term's ub (its maxW at the current average length, times its weight) and
// returns rest: rest[i] bounds what terms[i:] add to a score, with a slack for float32 rounding
// (the sum of |contributions| times 1e-4, far above the rounding of adding 96 terms).
func (x *index) bounds(terms []queryTerm, avgLen float32) []float64 {
	// A weight computed at average length a bounds the weight at a' <= a, and a'/a times it
	// bounds the weight at a' > a (the length term of the denominator shrinks by a/a').
	scale := max(1, float64(avgLen)/float64(x.boundAvg))
	var slack float64
	for i := range terms {
		t := &terms[i]
		t.ub *= float64(abs32(t.weight)) * scale
		slack += t.ub
		if t.weight < 0 {
			t.ub = 0
		}
	}
	rest := make([]float64, len(terms)+1)
	rest[len(terms)] = slack * 1e-4
	for i := len(terms) - 1; i >= 0; i-- {
		rest[i] = rest[i+1] + terms[i].ub
	}
	return rest
}

// parallelPostings is the posting count from which a lexical query is scored on two cores.
const parallelPostings = 20_000

type rangeResult struct {
	top []scored
	err error
}

// scoreWindow is the doc range a lexical search scores at a time: its accumulators stay in L1.
const scoreWindow = 4096

// scoreRange finds the best k papers in [lo, hi) that match the filter. It goes a window of
// docs at a time, adding each term's postings in the window in turn into the window's
// accumulators, which stay in L1 (one accumulator per doc missed the cache at nearly every
// posting, a seed query taking over three times as long at a million papers; a bit per doc
// marking the ones seen took twice as long as finding them by their non-zero accumulators).
//
// With prune, it skips postings by MaxScore (Turtle and Flood), as Lucene does: once the top k
// is full, the terms whose bounds together cannot lift a paper into it are "non-essential".
// Only the postings of the other terms are added; a paper found there is looked up in the
// non-essential lists (a galloping search from where the last look-up stopped) while its score
// plus the bound of what is left can still enter, and windows start at the next essential
// posting.
//
// A query of a few words soon has most of its terms non-essential. A seed paper's 96 terms do
// not: the top k of a long query do not score far above many other papers, and over a million
// synthetic papers three quarters of the terms stayed essential, the look-ups then costing more
// than the postings they skip. So once a 32nd of the range is done, a query with more than
// two thirds of its terms still essential scores the rest of the range every posting.
//
// A dead doc's postings are added like the others: it is skipped where it could enter (the
// filter rejects it too), which costs less than checking every posting.
func (x *index) scoreRange(ctx context.Context, terms []queryTerm, rest []float64, bm25 lexical.BM25, win *window, lo, hi uint32, m *matcher, k int, prune bool) rangeResult {
	n := len(terms)
	win.cur = slices.Grow(win.cur[:0], n)[:n]
	cur := win.cur // each term's next posting
	for i := range terms {
		ps := terms[i].ps
		cur[i] = sort.Search(len(ps), func(j int) bool { return ps[j].doc >= lo })
	}
	hi = min(hi, uint32(len(x.docs)))
	top := topk.New(k, x.better)
	// floor is the least score that can enter the top k: positive, and once it is full the
	// worst score in it (a tie enters by id).
	floor := float32(math.SmallestNonzeroFloat32)
	e := n // terms[:e] are essential: a paper in none of them cannot enter
	if prune {
		e = essential(rest, e, floor)
	}
	acc, lengths := &win.acc, x.lengths
	clear(acc[:]) // each window's are cleared after it, but a search cancelled midway leaves them
	decideAt, decided := lo+(hi-min(lo, hi))/32, false
	for round := 0; e > 0; round++ {
		if round%64 == 0 {
			if err := ctx.Err(); err != nil {
				return rangeResult{err: err}
			}
		}
		// The window starts at the first posting left in an essential list.
		w := hi
		for i := range e {
			if c := cur[i]; c < len(terms[i].ps) {
				w = min(w, terms[i].ps[c].doc)
			}
		}
		if w >= hi {
			break
		}
		end := w + min(scoreWindow, hi-w)
		for i := range e {
			ps, c, wt := terms[i].ps, cur[i], terms[i].weight
			for ; c < len(ps) && ps[c].doc < end; c++ {
				p := ps[c]
				acc[(p.doc-w)%scoreWindow] += wt * bm25.Weight(p.tf, lengths[p.doc])
			}
			cur[i] = c
		}
		least := leastEssential(floor, rest[e])
		scan := acc[:end-w]
		for j := nextAtLeast(scan, 0, least); j < len(scan); j = nextAtLeast(scan, j+1, least) {
			score := scan[j]
			d := w + uint32(j)
			if lengths[d] < 0 { // dead: not worth its look-ups
				continue
			}
			i := e
			for ; i < n && float64(score)+rest[i] >= float64(floor); i++ {
				ps := terms[i].ps
				c := seek(ps, cur[i], d)
				cur[i] = c
				if c < len(ps) && ps[c].doc == d {
					score += terms[i].weight * bm25.Weight(ps[c].tf, lengths[d])
				}
			}
			if i < n || score <= 0 {
				continue
			}
			if sc := (scored{doc: d, score: score}); (!top.Full() || x.better(sc, top.Worst())) && m.match(d) {
				top.Push(sc)
				if top.Full() {
					floor = top.Worst().score
					least = leastEssential(floor, rest[e])
				}
			}
		}
		clear(acc[:end-w])
		if prune {
			e = essential(rest, e, floor)
		}
		if prune && !decided && end >= decideAt {
			decided = true
			if e*3 > n*2 { // every posting from here: the look-ups cost more than they skip
				for i := e; i < n; i++ {
					cur[i] = seek(terms[i].ps, cur[i], end)
				}
				e, prune = n, false
			}
		}
	}
	return rangeResult{top: top.Sorted()}
}

// leastEssential is the least score from the essential terms with which a paper can enter a
// top k whose least entering score is floor, when rest bounds what the other terms add: as a
// float32 no greater than it, so that the scan of a window compares float32s, and positive (a
// paper whose essential terms add up to 0 or less cannot enter: the rest cannot lift it to
// floor when some terms are non-essential, and there are no others to lift it when none are).
func leastEssential(floor float32, rest float64) float32 {
	least := float64(floor) - rest
	l := float32(least)
	if float64(l) > least {
		l = math.Nextafter32(l, float32(math.Inf(-1)))
	}
	return max(l, math.SmallestNonzeroFloat32)
}

// essential returns how many of the first e terms stay essential for a top k whose least
// entering score is floor: rest[i] bounds what terms[i:] add to a score.
func essential(rest []float64, e int, floor float32) int {
	for e > 0 && rest[e-1] < float64(floor) {
		e--
	}
	return e
}

// seek returns the first position at or after c whose doc is at least d, galloping: the
// look-ups of one query move forward through a list by short steps.
func seek(ps []posting, c int, d uint32) int {
	if c >= len(ps) || ps[c].doc >= d {
		return c
	}
	lo, step := c, 1 // ps[lo].doc < d
	hi := c + 1
	for hi < len(ps) && ps[hi].doc < d {
		lo, step = hi, step*2
		hi = c + step
	}
	hi = min(hi, len(ps))
	return lo + 1 + sort.Search(hi-lo-1, func(i int) bool { return ps[lo+1+i].doc >= d })
}

// searchDense finds the k papers whose vectors are most similar to qv: with the ANN graph, or
// exactly when the store is small, when the request asks, when the filter names the candidates,
// or when a filtered graph search finds fewer than k papers (the filter was too selective for the
// walk), so a filter never costs results.
func (x *index) searchDense(ctx context.Context, qv []float32, m *matcher, k int, exact bool, slot int) ([]store.Scored, error) {
	q := vec.Normalized(qv)
	vs := &x.sets[slot]
	if vs.ann == nil || exact || m.only != nil || x.live < x.annCfg.ExactBelow {
		return x.scanDense(ctx, q, m, k, slot)
	}
	if d := vs.ann.Dims(); d != 0 && d != len(q) {
		return x.scanDense(ctx, q, m, k, slot) // the graph holds another model's vectors
	}
	docs := vs.annDocs // the published nodes: see vecSet
	var res []ann.Result
	if !m.restricts() && m.only == nil {
		// Only a few named papers (the seeds) are excluded: search without a filter callback,
		// a cache miss per candidate in a hot loop, for k more and drop them after.
		res = vs.ann.Search(q, k+len(m.excluded), max(x.annCfg.EfSearch, k+len(m.excluded)), nil)
	} else {
		res = vs.ann.Search(q, k, max(x.annCfg.EfSearch, k), func(id uint32) bool { return int(id) < len(docs) && m.match(docs[id]) })
		if len(res) < k && m.restricts() {
			return x.scanDense(ctx, q, m, k, slot)
		}
	}
	top := topk.New(k, x.better)
	for _, r := range res {
		if int(r.ID) < len(docs) && !m.excluded[docs[r.ID]] {
			top.Push(scored{doc: docs[r.ID], score: r.Score})
		}
	}
	if err := x.scanQueued(ctx, q, m, slot, top); err != nil {
		return nil, err
	}
	return x.toScored(top.Sorted()), nil
}

// scanDense is the exact cosine scan over the live papers that pass the filter.
func (x *index) scanDense(ctx context.Context, q []float32, m *matcher, k int, slot int) ([]store.Scored, error) {
	top := topk.New(k, x.better)
	visit := func(i uint32) {
		d := &x.docs[i]
		if d.alive && len(d.dense[slot]) == len(q) && m.match(i) {
			top.Push(scored{doc: i, score: vec.Dot(q, d.dense[slot])})
		}
	}
	if m.only != nil { // a candidate list: look at those papers only
		for i := range m.only {
			visit(i)
		}
		return x.toScored(top.Sorted()), nil
	}
	for i := range x.docs {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		visit(uint32(i))
	}
	return x.toScored(top.Sorted()), nil
}

// setVector gives doc n vector v (normalised here; nil: none) in slot's set, queueing it for
// the linker when the set has a graph: linking costs more than the rest of a write, so writes
// do not wait for it (searches score queued vectors exactly meanwhile).
func (x *index) setVector(n uint32, slot int, v []float32) {
	d := &x.docs[n]
	x.dropVector(n, slot)
	d.dense[slot] = vec.Normalized(v)
	if vs := &x.sets[slot]; vs.ann != nil && d.dense[slot] != nil {
		d.ann[slot] = annQueued
		if !d.listed[slot] {
			vs.queued = append(vs.queued, n)
			d.listed[slot] = true
		}
		select {
		case x.wake <- struct{}{}:
		default: // already nudged, or no linker
		}
	}
}

// dropVector removes doc n's vector from slot's set.
func (x *index) dropVector(n uint32, slot int) {
	d := &x.docs[n]
	if d.ann[slot] >= 0 {
		x.sets[slot].ann.Delete(uint32(d.ann[slot]))
	}
	d.ann[slot] = -1
	d.dense[slot] = nil
}

// buildANN builds slot's graph afresh from the live papers' vectors, on every core.
func (x *index) buildANN(slot int) {
	vs := &x.sets[slot]
	vs.ann, vs.annDocs, vs.queued = ann.New(x.annCfg.Graph), nil, nil
	var vecs [][]float32
	for i := range x.docs {
		d := &x.docs[i]
		d.ann[slot], d.listed[slot] = -1, false
		if d.alive && d.dense[slot] != nil {
			d.ann[slot] = int32(len(vs.annDocs))
			vs.annDocs = append(vs.annDocs, uint32(i))
			vecs = append(vecs, d.dense[slot])
		}
	}
	vs.ann.AddBatch(vecs, runtime.GOMAXPROCS(0))
}

// dropSet forgets slot's vectors and graph.
func (x *index) dropSet(slot int) {
	for i := range x.docs {
		x.docs[i].dense[slot], x.docs[i].ann[slot], x.docs[i].listed[slot] = nil, -1, false
	}
	x.sets[slot] = vecSet{}
}

// vectors counts the live papers with a vector in slot's set.
func (x *index) vectors(slot int) int64 {
	var n int64
	for i := range x.docs {
		if x.docs[i].alive && x.docs[i].dense[slot] != nil {
			n++
		}
	}
	return n
}

// matcher evaluates a filter against docs.
type matcher struct {
	x          *index
	f          store.Filter
	only       map[uint32]bool // nil: no restriction
	excluded   map[uint32]bool
	categories map[string]bool
	authors    map[string]bool
	// plain: the filter only excludes named papers, so a paper matches when it is alive and
	// not one of them, which lengths tells without reading the paper's doc (a cache miss per
	// candidate in the scoring loops).
	plain bool
}

func (x *index) matcher(f store.Filter) *matcher {
	m := &matcher{x: x, f: f, excluded: map[uint32]bool{}}
	if f.OnlyIDs != nil {
		m.only = map[uint32]bool{}
		for _, id := range f.OnlyIDs {
			if n, ok := x.byID[id]; ok {
				m.only[n] = true
			}
		}
	}
	for _, id := range f.ExcludeIDs {
		if n, ok := x.byID[id]; ok {
			m.excluded[n] = true
		}
	}
	if len(f.Categories) > 0 {
		m.categories = map[string]bool{}
		for _, c := range f.Categories {
			m.categories[c] = true
		}
	}
	if len(f.Authors) > 0 {
		m.authors = map[string]bool{}
		for _, a := range f.Authors {
			m.authors[store.NormalizeAuthor(a)] = true
		}
	}
	m.plain = f.MinYear == 0 && f.MaxYear == 0 && m.only == nil && m.categories == nil && m.authors == nil
	return m
}

// restricts reports whether the filter excludes more than a few named papers (seeds), that is,
// whether it may leave a graph walk short of results.
func (m *matcher) restricts() bool {
	f := m.f
	return f.MinYear != 0 || f.MaxYear != 0 || len(f.Categories) > 0 || len(f.Authors) > 0 || len(m.excluded) > 100
}

func (m *matcher) match(n uint32) bool {
	if m.plain {
		return m.x.lengths[n] >= 0 && !m.excluded[n]
	}
	d := &m.x.docs[n]
	if !d.alive || m.excluded[n] || (m.only != nil && !m.only[n]) {
		return false
	}
	if (m.f.MinYear != 0 || m.f.MaxYear != 0) && d.year == 0 {
		return false
	}
	if m.f.MinYear != 0 && d.year < m.f.MinYear || m.f.MaxYear != 0 && d.year > m.f.MaxYear {
		return false
	}
	if m.categories != nil && !anyIn(d.categories, m.categories) {
		return false
	}
	if m.authors != nil && !anyIn(d.authors, m.authors) {
		return false
	}
	return true
}

func anyIn(values []string, set map[string]bool) bool {
	for _, v := range values {
		if set[v] {
			return true
		}
	}
	return false
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

func cmpFloat(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
