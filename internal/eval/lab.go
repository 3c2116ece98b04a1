package eval

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/vec"
)

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

// normalize is vec.Normalized, keeping a zero vector (scored 0 against everything).
func normalize(v []float32) []float32 {
	if n := vec.Normalized(v); n != nil {
		return n
	}
	return make([]float32, len(v))
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

// Cosines scores the papers idx by the cosine of their vector in vecs (unit length) with query.
func Cosines(query []float32, vecs [][]float32, idx []int) []float32 {
	score := make([]float32, len(idx))
	for j, i := range idx {
		score[j] = vec.Dot(query, vecs[i])
	}
	return score
}

// SentenceMatch scores a candidate's sentences against the seed's.
type SentenceMatch func(seed, cand [][]float32) float32

// MaxPair is the best sentence pair's cosine (Aspire's single match).
func MaxPair(seed, cand [][]float32) float32 {
	best := float32(-1)
	for _, a := range seed {
		for _, b := range cand {
			best = max(best, vec.Dot(a, b))
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
			best = max(best, vec.Dot(a, b))
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

// SentenceRanking ranks candidates by match, adding docWeight times their paper vector's
// cosine. Asked to rank the whole collection, it rescores the shortlist nearest by paper vector.
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
		idx = topIndexes(idx, Cosines(docs[s], docs, idx), shortlist)
	}
	score := make([]float32, len(idx))
	for j, i := range idx {
		score[j] = match(sents[s], sents[i]) + docWeight*vec.Dot(docs[s], docs[i])
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
	q := slices.Clone(docs[s])
	for _, i := range topIndexes(all, Cosines(docs[s], docs, all), k) {
		for d := range q {
			q[d] += beta / float32(k) * docs[i][d]
		}
	}
	return normalize(q), nil
}
