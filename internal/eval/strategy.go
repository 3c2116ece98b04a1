package eval

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed"
)

// A Strategy ranks candidates by their similarity to a seed paper: a ranking experiment, run
// outside the service on the vectors the embedding API gives and the lists the service returns.
type Strategy struct {
	Name, About string
	// Rank returns candidates best first, at least the first k of them; nil candidates means
	// every paper of the collection but the seed.
	Rank func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error)
}

// A Lab is what strategies draw on for one collection: its papers, the service holding them
// (for today's rankings and the lexical and dense lists), and vectors through the embedding API,
// each text embedded once (the API's cache makes a rerun cheap).
type Lab struct {
	Client   recommenderv1.RecommenderServiceClient
	Embedder embed.Embedder
	Papers   []*recommenderv1.Paper
	// Progress, when set, is told how many of the texts to embed are done.
	Progress func(done, total int)

	ids   []string
	index map[string]int
	mu    sync.Mutex
	cache map[string][][][]float32 // vectors by kind, then paper index
}

// NewLab indexes papers.
func NewLab(client recommenderv1.RecommenderServiceClient, emb embed.Embedder, papers []*recommenderv1.Paper) *Lab {
	l := &Lab{Client: client, Embedder: emb, Papers: papers, index: map[string]int{}, cache: map[string][][][]float32{}}
	for i, p := range papers {
		l.ids = append(l.ids, p.GetId())
		l.index[p.GetId()] = i
	}
	return l
}

// Docs returns every paper's vector as the service embeds it (the model's document prefix
// before title and abstract), embedding them on first use.
func (l *Lab) Docs(ctx context.Context) ([][]float32, error) {
	return l.vectors(ctx, "docs", func(p *recommenderv1.Paper, pre embed.Prefixes) []string {
		return []string{pre.DocumentText(p.GetTitle(), p.GetAbstract())}
	})
}

// QueryDocs returns every paper's vector embedded as a query (the model's query prefix before
// title and abstract): for e5, the form its authors advise for symmetric similarity.
func (l *Lab) QueryDocs(ctx context.Context) ([][]float32, error) {
	return l.vectors(ctx, "query-docs", func(p *recommenderv1.Paper, pre embed.Prefixes) []string {
		return []string{pre.QueryText(embed.PaperText(p.GetTitle(), p.GetAbstract()))}
	})
}

// CenteredDocs returns Docs less their mean over the collection, normalised again: the
// direction every paper shares (embeddings crowd into a narrow cone) taken out of the cosine.
func (l *Lab) CenteredDocs(ctx context.Context) ([][]float32, error) {
	docs, err := l.Docs(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.cache["centered"]; ok {
		return v[0], nil
	}
	mu := make([]float64, len(docs[0]))
	for _, v := range docs {
		for d, x := range v {
			mu[d] += float64(x) / float64(len(docs))
		}
	}
	out := make([][]float32, len(docs))
	for i, v := range docs {
		c := make([]float32, len(v))
		for d, x := range v {
			c[d] = x - float32(mu[d])
		}
		out[i] = normalize(c)
	}
	l.cache["centered"] = [][][]float32{out}
	return out, nil
}

// Sentences returns every paper's sentence vectors (see Sentences), embedded as passages.
func (l *Lab) Sentences(ctx context.Context) ([][][]float32, error) {
	return l.multiVectors(ctx, "sentences", func(p *recommenderv1.Paper, pre embed.Prefixes) []string {
		var out []string
		for _, s := range Sentences(p.GetTitle(), p.GetAbstract()) {
			out = append(out, pre.Document+s)
		}
		return out
	})
}

func (l *Lab) vectors(ctx context.Context, name string, texts func(*recommenderv1.Paper, embed.Prefixes) []string) ([][]float32, error) {
	m, err := l.multiVectors(ctx, name, texts)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(m))
	for i, v := range m {
		out[i] = v[0]
	}
	return out, nil
}

// multiVectors embeds the texts of every paper once, on first use, and keeps them by name.
func (l *Lab) multiVectors(ctx context.Context, name string, texts func(*recommenderv1.Paper, embed.Prefixes) []string) ([][][]float32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.cache[name]; ok {
		return v, nil
	}
	if l.Embedder == nil {
		return nil, fmt.Errorf("this strategy needs an embedding API")
	}
	var all []string
	counts := make([]int, len(l.Papers))
	for i, p := range l.Papers {
		t := texts(p, l.Embedder.Prefixes())
		counts[i] = len(t)
		all = append(all, t...)
	}
	vecs, err := l.embedAll(ctx, all)
	if err != nil {
		return nil, err
	}
	out := make([][][]float32, len(l.Papers))
	for i, n := range counts {
		out[i], vecs = vecs[:n:n], vecs[n:]
	}
	l.cache[name] = out
	return out, nil
}

// embedAll embeds texts in requests of 256, normalising each vector (cosine becomes a dot
// product).
func (l *Lab) embedAll(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for i := 0; i < len(texts); i += 256 {
		vecs, err := l.Embedder.Embed(ctx, texts[i:min(i+256, len(texts))])
		if err != nil {
			return nil, err
		}
		for _, v := range vecs {
			out = append(out, normalize(v))
		}
		if l.Progress != nil {
			l.Progress(len(out), len(texts))
		}
	}
	return out, nil
}

func normalize(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n == 0 {
		return v
	}
	inv := float32(1 / math.Sqrt(n))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// candidateIndexes resolves candidates (nil: every paper but the seed) to indexes, leaving out
// the seed and unknown ids.
func (l *Lab) candidateIndexes(seed string, candidates []string) []int {
	var out []int
	if candidates == nil {
		for i, id := range l.ids {
			if id != seed {
				out = append(out, i)
			}
		}
		return out
	}
	for _, id := range candidates {
		if i, ok := l.index[id]; ok && id != seed {
			out = append(out, i)
		}
	}
	return out
}

// byScore orders indexes by score, best first (ties by id, so rankings repeat).
func (l *Lab) byScore(idx []int, score []float32) []string {
	order := make([]int, len(idx))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		if score[order[a]] != score[order[b]] {
			return score[order[a]] > score[order[b]]
		}
		return l.ids[idx[order[a]]] < l.ids[idx[order[b]]]
	})
	out := make([]string, len(order))
	for i, o := range order {
		out[i] = l.ids[idx[o]]
	}
	return out
}

// ServiceRanking is the service's ranking of candidates (nil: the whole collection, its first
// max(k, 100)) for the seed in mode.
func (l *Lab) ServiceRanking(ctx context.Context, seed string, candidates []string, k int, mode recommenderv1.RetrievalMode) ([]string, error) {
	if candidates != nil {
		ranked, _, err := RankPool(ctx, l.Client, Pool{QueryID: seed, Candidates: candidates}, mode)
		return slices.DeleteFunc(ranked, func(id string) bool { return id == seed }), err
	}
	resp, err := l.Client.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{seed}, PageSize: int32(max(k, 100)), Mode: mode})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.GetResults() {
		out = append(out, r.GetPaper().GetId())
		out = append(out, r.GetDuplicatePaperIds()...)
	}
	return out, nil
}

// DenseScores scores candidates by the cosine of their vector with query.
func (l *Lab) DenseScores(ctx context.Context, query []float32, idx []int) ([]float32, error) {
	docs, err := l.Docs(ctx)
	if err != nil {
		return nil, err
	}
	score := make([]float32, len(idx))
	for j, i := range idx {
		score[j] = dot(query, docs[i])
	}
	return score, nil
}

// SentenceMatch scores a candidate's sentences against the seed's.
type SentenceMatch func(seed, cand [][]float32) float32

// MaxPair is the best sentence pair's cosine (Aspire's single match).
func MaxPair(seed, cand [][]float32) float32 {
	best := float32(-1)
	for _, a := range seed {
		for _, b := range cand {
			best = max(best, dot(a, b))
		}
	}
	return best
}

// MeanBest is the mean over the seed's sentences of each one's best match in the candidate
// (ColBERT's MaxSim, averaged).
func MeanBest(seed, cand [][]float32) float32 {
	var sum float32
	for _, a := range seed {
		best := float32(-1)
		for _, b := range cand {
			best = max(best, dot(a, b))
		}
		sum += best
	}
	return sum / float32(max(1, len(seed)))
}

// Chamfer is MeanBest both ways, averaged: symmetric, so a short candidate whose every
// sentence the seed covers does not outrank a long one that covers the seed.
func Chamfer(seed, cand [][]float32) float32 {
	return (MeanBest(seed, cand) + MeanBest(cand, seed)) / 2
}

// shortlist is how many of the collection's papers, nearest by paper vector, a sentence-level
// strategy rescores when asked to rank the whole collection: what a service would do, a
// first-stage search then a rescoring.
const shortlist = 200

// SentenceScores scores candidates by match, adding weight times their paper vector's cosine.
// Asked to rank the whole collection, it rescores the shortlist nearest by paper vector.
func (l *Lab) SentenceRanking(ctx context.Context, seed string, candidates []string, match SentenceMatch, docWeight float32) ([]string, error) {
	sents, err := l.Sentences(ctx)
	if err != nil {
		return nil, err
	}
	docs, err := l.Docs(ctx)
	if err != nil {
		return nil, err
	}
	s := l.index[seed]
	idx := l.candidateIndexes(seed, candidates)
	if candidates == nil {
		ds, _ := l.DenseScores(ctx, docs[s], idx)
		idx = topIndexes(idx, ds, shortlist)
	}
	score := make([]float32, len(idx))
	for j, i := range idx {
		score[j] = match(sents[s], sents[i]) + docWeight*dot(docs[s], docs[i])
	}
	return l.byScore(idx, score), nil
}

func topIndexes(idx []int, score []float32, n int) []int {
	order := make([]int, len(idx))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(score[b], score[a]) })
	out := make([]int, 0, n)
	for _, o := range order[:min(n, len(order))] {
		out = append(out, idx[o])
	}
	return out
}

// RRF fuses rankings by weighted reciprocal rank (Qdrant's formula, as the service fuses):
// score = Σ 1/(rank/w + k − 1), ranks from 1, each list cut at depth.
func RRF(k float64, depth int, lists [][]string, weights []float64) []string {
	score := map[string]float64{}
	first := map[string]int{}
	n := 0
	for li, list := range lists {
		for r, id := range list[:min(depth, len(list))] {
			score[id] += 1 / (float64(r+1)/weights[li] + k - 1)
			if _, ok := first[id]; !ok {
				first[id] = n
				n++
			}
		}
	}
	out := make([]string, 0, len(score))
	for id := range score {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := cmp.Compare(score[b], score[a]); c != 0 {
			return c
		}
		return cmp.Compare(first[a], first[b])
	})
	// Candidates no list reached follow in the first list's order.
	for _, list := range lists {
		for _, id := range list {
			if _, ok := score[id]; !ok {
				score[id] = 0
				out = append(out, id)
			}
		}
	}
	return out
}

// PRFQuery moves the seed's vector toward its k nearest papers of the collection (Rocchio):
// normalize(seed + beta * mean(neighbours)).
func (l *Lab) PRFQuery(ctx context.Context, seed string, k int, beta float32) ([]float32, error) {
	docs, err := l.Docs(ctx)
	if err != nil {
		return nil, err
	}
	s := l.index[seed]
	all := l.candidateIndexes(seed, nil)
	ds, _ := l.DenseScores(ctx, docs[s], all)
	q := slices.Clone(docs[s])
	for _, i := range topIndexes(all, ds, k) {
		for d := range q {
			q[d] += beta / float32(k) * docs[i][d]
		}
	}
	return normalize(q), nil
}

// Strategies are the experiments `eval --strategy` knows, by name; a name may carry
// parameters, each after a colon (see ParseStrategy).
func Strategies() []string {
	return []string{"today", "lexical", "dense", "hybrid", "cosine", "cosine-q2p", "cosine-q2q", "cosine-centered", "sent-max", "sent-mean", "sent-chamfer",
		"sent-mean+doc:W", "sent-chamfer+doc:W", "prf:K:BETA", "rrf:K:DENSEWEIGHT", "rrf-sent:K:WEIGHT", "rrf-sentdoc:K:WEIGHT:DOCW", "rrf-prf:K:DENSEWEIGHT:PRFK:BETA", "rrf3:K"}
}

// ParseStrategy returns the strategy a name gives (see Strategies).
func ParseStrategy(name string) (Strategy, error) {
	base, params, _ := strings.Cut(name, ":")
	var p []float64
	if params != "" {
		for _, f := range strings.Split(params, ":") {
			x, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return Strategy{}, fmt.Errorf("strategy %q: parameter %q is not a number", name, f)
			}
			p = append(p, x)
		}
	}
	param := func(i int, def float64) float64 {
		if i < len(p) {
			return p[i]
		}
		return def
	}
	service := func(mode recommenderv1.RetrievalMode) func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
		return func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
			return l.ServiceRanking(ctx, seed, candidates, k, mode)
		}
	}
	sentences := func(match SentenceMatch, w float32) func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
		return func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
			return l.SentenceRanking(ctx, seed, candidates, match, w)
		}
	}
	s := Strategy{Name: name}
	switch base {
	case "today":
		s.About, s.Rank = "the service's default (its mode and fusion for the request)", service(recommenderv1.RetrievalMode_RETRIEVAL_MODE_UNSPECIFIED)
	case "lexical", "dense", "hybrid":
		mode := recommenderv1.RetrievalMode(recommenderv1.RetrievalMode_value["RETRIEVAL_MODE_"+strings.ToUpper(base)])
		s.About, s.Rank = "the service in "+base+" mode", service(mode)
	case "cosine", "cosine-q2p", "cosine-q2q", "cosine-centered":
		seedSide, candSide := (*Lab).Docs, (*Lab).Docs
		s.About = "the cosine of the paper vectors, exactly (dense mode without the index)"
		switch base {
		case "cosine-q2p":
			seedSide = (*Lab).QueryDocs
			s.About = "the cosine of the seed embedded as a query (query prefix) with the papers' vectors"
		case "cosine-q2q":
			seedSide, candSide = (*Lab).QueryDocs, (*Lab).QueryDocs
			s.About = "the cosine of seed and papers all embedded as queries (e5's advice for symmetric tasks)"
		case "cosine-centered":
			seedSide, candSide = (*Lab).CenteredDocs, (*Lab).CenteredDocs
			s.About = "the cosine of the paper vectors less the collection's mean vector"
		}
		s.Rank = func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
			seeds, err := seedSide(l, ctx)
			if err != nil {
				return nil, err
			}
			cands, err := candSide(l, ctx)
			if err != nil {
				return nil, err
			}
			idx := l.candidateIndexes(seed, candidates)
			score := make([]float32, len(idx))
			for j, i := range idx {
				score[j] = dot(seeds[l.index[seed]], cands[i])
			}
			return l.byScore(idx, score), nil
		}
	case "sent-max":
		s.About, s.Rank = "the best pair of sentences (title included), one vector per sentence", sentences(MaxPair, 0)
	case "sent-mean":
		s.About, s.Rank = "the mean over the seed's sentences of each one's best match", sentences(MeanBest, 0)
	case "sent-chamfer":
		s.About, s.Rank = "sent-mean both ways, averaged", sentences(Chamfer, 0)
	case "sent-mean+doc", "sent-chamfer+doc":
		w := param(0, 1)
		match := MeanBest
		if base == "sent-chamfer+doc" {
			match = Chamfer
		}
		s.About, s.Rank = fmt.Sprintf("%s plus %g times the paper vectors' cosine", strings.TrimSuffix(base, "+doc"), w), sentences(match, float32(w))
	case "prf":
		k, beta := int(param(0, 5)), float32(param(1, 0.5))
		s.About = fmt.Sprintf("dense pseudo-relevance feedback: the seed's vector moved toward its %d nearest papers (beta %g)", k, beta)
		s.Rank = func(ctx context.Context, l *Lab, seed string, candidates []string, _ int) ([]string, error) {
			q, err := l.PRFQuery(ctx, seed, k, beta)
			if err != nil {
				return nil, err
			}
			idx := l.candidateIndexes(seed, candidates)
			score, err := l.DenseScores(ctx, q, idx)
			return l.byScore(idx, score), err
		}
	case "rrf", "rrf-sent", "rrf-sentdoc", "rrf-prf":
		rrfK, w := param(0, 60), param(1, 1)
		var second Strategy
		var err error
		switch base {
		case "rrf":
			second, err = ParseStrategy("dense")
		case "rrf-sent":
			second, err = ParseStrategy("sent-chamfer")
		case "rrf-sentdoc":
			second, err = ParseStrategy(fmt.Sprintf("sent-mean+doc:%g", param(2, 1)))
		default:
			second, err = ParseStrategy(fmt.Sprintf("prf:%g:%g", param(2, 5), param(3, 0.5)))
		}
		if err != nil {
			return s, err
		}
		s.About = fmt.Sprintf("RRF (k %g, depth 100) of the service's lexical list and %s (weight %g to 1)", rrfK, second.Name, w)
		s.Rank = func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
			lex, err := l.ServiceRanking(ctx, seed, candidates, k, recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL)
			if err != nil {
				return nil, err
			}
			other, err := second.Rank(ctx, l, seed, candidates, k)
			if err != nil {
				return nil, err
			}
			return RRF(rrfK, 100, [][]string{other, lex}, []float64{w, 1}), nil
		}
	case "rrf3":
		rrfK := param(0, 60)
		s.About = fmt.Sprintf("RRF (k %g, depth 100, equal weights) of the service's lexical and dense lists and sent-chamfer", rrfK)
		parts := []string{"lexical", "dense", "sent-chamfer"}
		s.Rank = func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
			var lists [][]string
			for _, name := range parts {
				p, err := ParseStrategy(name)
				if err != nil {
					return nil, err
				}
				list, err := p.Rank(ctx, l, seed, candidates, k)
				if err != nil {
					return nil, err
				}
				lists = append(lists, list)
			}
			return RRF(rrfK, 100, lists, []float64{1, 1, 1}), nil
		}
	default:
		return s, fmt.Errorf("unknown strategy %q; known: %s", name, strings.Join(Strategies(), ", "))
	}
	return s, nil
}

// RowScores are a strategy's NDCGs on each dev row, in pool order.
type RowScores struct {
	NDCGPct20, NDCG20 []float64
}

// Mean returns the mean NDCG%20 and NDCG@20.
func (r RowScores) Mean() (pct20, at20 float64) {
	return mean(r.NDCGPct20), mean(r.NDCG20)
}

// PairedDifference is the mean of r's NDCG%20 minus base's, row by row, and its standard error:
// how far a gain stands above the rows' disagreement.
func (r RowScores) PairedDifference(base RowScores) (diff, stderr float64) {
	d := make([]float64, len(r.NDCGPct20))
	for i := range d {
		d[i] = r.NDCGPct20[i] - base.NDCGPct20[i]
	}
	diff = mean(d)
	var ss float64
	for _, x := range d {
		ss += (x - diff) * (x - diff)
	}
	if n := float64(len(d)); n > 1 {
		stderr = math.Sqrt(ss / (n - 1) / n)
	}
	return diff, stderr
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(max(1, len(xs)))
}

// EvaluateStrategy ranks every CSFCube pool with s and scores the dev rows.
func (c *CSFCube) EvaluateStrategy(ctx context.Context, l *Lab, s Strategy) (RowScores, []Ranking, error) {
	var rs RowScores
	var rankings []Ranking
	for _, p := range c.Pools {
		ranked, err := s.Rank(ctx, l, p.QueryID, p.Candidates, len(p.Candidates))
		if err != nil {
			return rs, nil, fmt.Errorf("%s: rank %s/%s: %w", s.Name, p.QueryID, p.Facet, err)
		}
		for _, id := range p.Candidates { // every candidate ranked, the unranked last
			if !slices.Contains(ranked, id) {
				ranked = append(ranked, id)
			}
		}
		rankings = append(rankings, Ranking{QueryID: p.QueryID, Facet: p.Facet, Ranked: ranked})
		if p.Split != "dev" {
			continue
		}
		rel := c.Qrels[rowKey(p.QueryID, p.Facet)]
		rs.NDCGPct20 = append(rs.NDCGPct20, NDCG(ranked, rel, max(1, len(p.Candidates)*20/100)))
		rs.NDCG20 = append(rs.NDCG20, NDCG(ranked, rel, 20))
	}
	return rs, rankings, nil
}

// StrategyTopicPrecision is TopicPrecision for a strategy: each paper of the lab ranks the
// others as the only seed, on every core.
func StrategyTopicPrecision(ctx context.Context, l *Lab, s Strategy) (float64, error) {
	// Embed first, once, rather than in every worker at once.
	if _, err := s.Rank(ctx, l, l.ids[0], nil, 10); err != nil {
		return 0, err
	}
	topics := map[string][]string{}
	for _, p := range l.Papers {
		topics[p.GetId()] = p.GetTopics()
	}
	precision := make([]float64, len(l.Papers))
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := l.Papers[i]
				ranked, err := s.Rank(ctx, l, p.GetId(), nil, 10)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				hits := 0
				for _, id := range ranked[:min(10, len(ranked))] {
					if slices.ContainsFunc(topics[id], func(t string) bool { return slices.Contains(p.GetTopics(), t) }) {
						hits++
					}
				}
				precision[i] = float64(hits) / 10
			}
		}()
	}
	for i := range l.Papers {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	var sum float64
	for _, x := range precision {
		sum += x
	}
	return sum / float64(len(precision)), ctx.Err()
}
