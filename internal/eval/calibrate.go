package eval

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/recommend"
)

// CalibrationDepth is how many results of each seed the calibration learns from and checks.
const CalibrationDepth = 20

// Example is a result's calibration features (recommend.Features) with its label.
type Example struct {
	Features []float64
	Relevant bool
	// Drawn marks a paper drawn at random and ranked as a candidate, not a result the request
	// itself returned.
	Drawn bool
	// Weight is the example's weight in the fit; 0 counts as 1.
	Weight float64
}

// Prediction is the relevance the service returned for a result, with its label.
type Prediction struct {
	P        float64
	Relevant bool
}

// HeldBack reports whether a seed paper belongs to the 30% the calibration is checked on (by a
// hash of its id) rather than the 70% it is fitted on.
func HeldBack(id string) bool {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()%10 >= 7
}

// KindLimit bounds the requests of each kind the calibration learns from or is checked on.
const KindLimit = 600

// candidatesPerList is the size of the candidate lists of the sample's candidates kind: half
// sharing a topic with the seed (when it has that many), half drawn from all papers.
const candidatesPerList = 40

// KindExamples makes requests of one kind from the sample's papers with a topic, in the chosen
// part (held back or not; at most KindLimit), in mode, and returns for each of the top
// CalibrationDepth results (every result of a candidate list) its features, from its
// explanation, and the relevance the service gave it, labelled relevant when it shares a topic
// with a positive seed (text: with the paper whose title is the query; the paper itself is
// excluded).
func KindExamples(ctx context.Context, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, mode recommenderv1.RetrievalMode,
	kind recommend.Kind, heldBack bool) ([]Example, []Prediction, error) {
	byTopic := map[string][]*recommenderv1.Paper{}
	for _, p := range papers {
		for _, t := range p.GetTopics() {
			byTopic[t] = append(byTopic[t], p)
		}
	}
	shares := func(a, b *recommenderv1.Paper) bool {
		return slices.ContainsFunc(a.GetTopics(), func(t string) bool { return slices.Contains(b.GetTopics(), t) })
	}
	m := pipelineMode(mode)
	var ex []Example
	var preds []Prediction
	keywords := newKeywords(papers)
	for i, p := range spread(papers, heldBack, KindLimit) {
		positives := []*recommenderv1.Paper{p}
		req := &recommenderv1.RecommendRequest{PageSize: CalibrationDepth, Mode: mode, Explain: true}
		switch kind {
		case recommend.KindText:
			// Half the texts are titles, half a few keywords of the abstract, as people type.
			req.Query, req.Filter = p.GetTitle(), &recommenderv1.Filter{ExcludePaperIds: []string{p.GetId()}}
			if i%2 == 1 {
				req.Query = keywords.of(p, 4)
			}
		case recommend.KindSeed:
			req.PositivePaperIds = []string{p.GetId()}
		case recommend.KindSeeds:
			// The next paper of the seed's first topic (in file order) is the second seed.
			same := byTopic[p.GetTopics()[0]]
			i := slices.Index(same, p)
			q := same[(i+1)%len(same)]
			if q == p {
				continue
			}
			positives = append(positives, q)
			req.PositivePaperIds = []string{p.GetId(), q.GetId()}
		case recommend.KindCandidates:
			req.PositivePaperIds, req.CandidatePaperIds = []string{p.GetId()}, candidateList(p, papers, byTopic[p.GetTopics()[0]])
			req.PageSize = candidatesPerList
		}
		resp, err := c.Recommend(ctx, req)
		if err != nil {
			return nil, nil, fmt.Errorf("%s request by %s: %w", kind, p.GetId(), err)
		}
		coherence := float64(resp.GetCoherence())
		features := ListFeatures(kind, m, coherence, resp.GetResults())
		for i, r := range resp.GetResults() {
			relevant := slices.ContainsFunc(positives, func(s *recommenderv1.Paper) bool { return shares(r.GetPaper(), s) })
			ex = append(ex, Example{Features: features[i], Relevant: relevant})
			preds = append(preds, Prediction{P: float64(r.GetRelevance()), Relevant: relevant})
		}
		if kind == recommend.KindCandidates {
			continue // its lists hold papers drawn at random already
		}
		// The same request over papers drawn at random: what a match the results do not show
		// looks like (a weak one), so that the calibration learns what low similarity means too,
		// not only the top of lists. Features are absolute, so ranking them as candidates does
		// not change them; a text's coherence is the request's own.
		req.CandidatePaperIds, req.PageSize = randomPapers(p, papers, candidatesPerList/2), candidatesPerList/2
		if resp, err = c.Recommend(ctx, req); err != nil {
			return nil, nil, fmt.Errorf("%s request by %s over random papers: %w", kind, p.GetId(), err)
		}
		features = ListFeatures(kind, m, coherence, resp.GetResults())
		for i, r := range resp.GetResults() {
			relevant := slices.ContainsFunc(positives, func(s *recommenderv1.Paper) bool { return shares(r.GetPaper(), s) })
			ex = append(ex, Example{Features: features[i], Relevant: relevant, Drawn: true})
		}
	}
	return ex, preds, nil
}

// randomPapers draws n papers other than seed, by a hash of its id so that runs agree.
func randomPapers(seed *recommenderv1.Paper, papers []*recommenderv1.Paper, n int) []string {
	h := fnv.New64a()
	h.Write([]byte(seed.GetId()))
	r := rand.New(rand.NewPCG(h.Sum64(), 2))
	var ids []string
	for len(ids) < n {
		if q := papers[r.IntN(len(papers))]; q != seed && !slices.Contains(ids, q.GetId()) {
			ids = append(ids, q.GetId())
		}
	}
	return ids
}

// spread picks up to n papers with a topic of the chosen part, in the order of a hash of their
// ids: the file is grouped by topic, so its first papers would be a few topics only.
func spread(papers []*recommenderv1.Paper, heldBack bool, n int) []*recommenderv1.Paper {
	type keyed struct {
		key uint64
		p   *recommenderv1.Paper
	}
	var all []keyed
	for _, p := range papers {
		if len(p.GetTopics()) > 0 && HeldBack(p.GetId()) == heldBack {
			h := fnv.New64a()
			h.Write([]byte(p.GetId()))
			all = append(all, keyed{h.Sum64(), p})
		}
	}
	slices.SortFunc(all, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	out := make([]*recommenderv1.Paper, 0, n)
	for _, k := range all[:min(n, len(all))] {
		out = append(out, k.p)
	}
	return out
}

// ListFeatures are the calibration features (recommend.Features) of the results of one
// request of kind in mode, as their explanations report them, with the response's coherence; a
// candidate list's results must be all of it.
func ListFeatures(kind recommend.Kind, m recommend.Mode, coherence float64, results []*recommenderv1.Recommendation) [][]float64 {
	list := make([]recommend.Signals, len(results))
	for i, r := range results {
		x := r.GetExplanation()
		list[i] = recommend.Signals{LexicalShare: float64(x.GetLexicalSimilarity()), Dense: float64(x.GetDenseScore())}
	}
	return recommend.ListFeatures(kind, m, coherence, list)
}

// candidateList is a seed's candidate list for the candidates kind: up to half from its topic,
// the rest drawn from all papers, by a hash of the seed's id so that runs agree.
func candidateList(seed *recommenderv1.Paper, papers, sameTopic []*recommenderv1.Paper) []string {
	h := fnv.New64a()
	h.Write([]byte(seed.GetId()))
	r := rand.New(rand.NewPCG(h.Sum64(), 1))
	var ids []string
	for _, i := range r.Perm(len(sameTopic)) {
		if q := sameTopic[i]; q != seed && len(ids) < candidatesPerList/2 {
			ids = append(ids, q.GetId())
		}
	}
	for len(ids) < candidatesPerList {
		if q := papers[r.IntN(len(papers))]; q != seed && !slices.Contains(ids, q.GetId()) {
			ids = append(ids, q.GetId())
		}
	}
	return ids
}

func pipelineMode(m recommenderv1.RetrievalMode) recommend.Mode {
	switch m {
	case recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL:
		return recommend.ModeLexical
	case recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE:
		return recommend.ModeDense
	}
	return recommend.ModeHybrid
}

// FitLogistic fits a logistic regression by Newton's method, with a small ridge so that a
// separable feature cannot make a weight diverge. The features after the first (the constant)
// are standardised for the fit, so the ridge weighs them alike whatever their scale (a cosine
// varies by hundredths), and the weights are returned for the features as given.
func FitLogistic(ex []Example) recommend.Calibration {
	if len(ex) == 0 {
		return nil
	}
	n := len(ex[0].Features)
	mean, scale := make([]float64, n), make([]float64, n)
	for j := 1; j < n; j++ {
		for _, e := range ex {
			mean[j] += e.Features[j]
		}
		mean[j] /= float64(len(ex))
		for _, e := range ex {
			scale[j] += (e.Features[j] - mean[j]) * (e.Features[j] - mean[j])
		}
		scale[j] = math.Sqrt(scale[j]/float64(len(ex))) + 1e-12
	}
	std := make([]Example, len(ex))
	for i, e := range ex {
		f := slices.Clone(e.Features)
		for j := 1; j < n; j++ {
			f[j] = (f[j] - mean[j]) / scale[j]
		}
		std[i] = Example{Features: f, Relevant: e.Relevant, Weight: e.Weight}
	}
	w := fitStandardised(std, n)
	out := make(recommend.Calibration, n)
	out[0] = w[0]
	for j := 1; j < n; j++ {
		out[j] = w[j] / scale[j]
		out[0] -= w[j] * mean[j] / scale[j]
	}
	return out
}

// fitStandardised is FitLogistic's Newton iteration on standardised features.
func fitStandardised(ex []Example, n int) []float64 {
	w := make([]float64, n)
	const ridge = 1e-4
	for range 50 {
		grad := make([]float64, n)
		hess := make([][]float64, n)
		for i := range hess {
			hess[i] = make([]float64, n)
			hess[i][i] = ridge * float64(len(ex))
			grad[i] = ridge * float64(len(ex)) * w[i]
		}
		for _, e := range ex {
			var z float64
			for i, x := range e.Features {
				z += w[i] * x
			}
			p := 1 / (1 + math.Exp(-z))
			y, wt := 0.0, e.Weight
			if e.Relevant {
				y = 1
			}
			if wt == 0 {
				wt = 1
			}
			for i, xi := range e.Features {
				grad[i] += wt * (p - y) * xi
				for j, xj := range e.Features {
					hess[i][j] += wt * p * (1 - p) * xi * xj
				}
			}
		}
		step := solve(hess, grad)
		var size float64
		for i := range w {
			w[i] -= step[i]
			size = max(size, math.Abs(step[i]))
		}
		if size < 1e-9 {
			break
		}
	}
	return w
}

// solve solves a x = b by Gaussian elimination with partial pivoting (a is small and positive
// definite here).
func solve(a [][]float64, b []float64) []float64 {
	n := len(b)
	m := make([][]float64, n)
	for i := range a {
		m[i] = append(slices.Clone(a[i]), b[i])
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		for r := c + 1; r < n; r++ {
			f := m[r][c] / m[c][c]
			for k := c; k <= n; k++ {
				m[r][k] -= f * m[c][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		s := m[r][n]
		for k := r + 1; k < n; k++ {
			s -= m[r][k] * x[k]
		}
		x[r] = s / m[r][r]
	}
	return x
}

// Bin is one bar of a reliability curve: the predictions in [Lo, Hi), their mean, and how
// often they were relevant.
type Bin struct {
	Lo, Hi, MeanP, Observed float64
	N                       int
}

// Reliability sorts predictions into bins equal-width bins and returns the expected calibration
// error (the mean over predictions of |mean prediction - observed rate| of their bin) and the
// curve.
func Reliability(preds []Prediction, bins int) (float64, []Bin) {
	curve := make([]Bin, bins)
	for i := range curve {
		curve[i].Lo, curve[i].Hi = float64(i)/float64(bins), float64(i+1)/float64(bins)
	}
	for _, p := range preds {
		b := &curve[min(bins-1, int(p.P*float64(bins)))]
		b.N++
		b.MeanP += p.P
		if p.Relevant {
			b.Observed++
		}
	}
	var ece float64
	for i := range curve {
		b := &curve[i]
		if b.N == 0 {
			continue
		}
		b.MeanP /= float64(b.N)
		b.Observed /= float64(b.N)
		ece += float64(b.N) * math.Abs(b.MeanP-b.Observed)
	}
	if len(preds) > 0 {
		ece /= float64(len(preds))
	}
	return ece, curve
}

// RandomWords makes n queries of five words, each drawn from the abstract of a paper drawn at
// random (words of four letters or more), by a fixed seed: text a reader would find nothing
// relevant for.
func RandomWords(papers []*recommenderv1.Paper, n int) []string {
	r := rand.New(rand.NewPCG(7, 7))
	var out []string
	for len(out) < n {
		var words []string
		for len(words) < 5 {
			if ws := plainWords(papers[r.IntN(len(papers))].GetAbstract()); len(ws) > 0 {
				words = append(words, ws[r.IntN(len(ws))])
			}
		}
		out = append(out, strings.Join(words, " "))
	}
	return out
}

// RandomWordsRelevance asks each query of RandomWords in mode and returns the mean and the
// highest relevance of the first result (0 when nothing matched).
func RandomWordsRelevance(ctx context.Context, c recommenderv1.RecommenderServiceClient, queries []string, mode recommenderv1.RetrievalMode) (mean, highest float64, err error) {
	for _, q := range queries {
		resp, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{Query: q, PageSize: 1, Mode: mode})
		if err != nil {
			return 0, 0, fmt.Errorf("query %q: %w", q, err)
		}
		if rs := resp.GetResults(); len(rs) > 0 {
			mean += float64(rs[0].GetRelevance())
			highest = max(highest, float64(rs[0].GetRelevance()))
		}
	}
	return mean / float64(len(queries)), highest, nil
}

// RandomWordsWeight is the weight of RandomWordsExamples in the text calibration's fit: enough
// that words naming no topic score low, little enough that real text stays calibrated (tried
// on the sample: 0.1 to 0.5).
const RandomWordsWeight = 0.5

// RandomWordsExamples asks each query in mode and returns the features of its first n results,
// none relevant (nothing is relevant to words drawn at random), weighted RandomWordsWeight.
func RandomWordsExamples(ctx context.Context, c recommenderv1.RecommenderServiceClient, queries []string, mode recommenderv1.RetrievalMode, n int) ([]Example, error) {
	var ex []Example
	for _, q := range queries {
		resp, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{Query: q, PageSize: int32(n), Mode: mode, Explain: true})
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
		for _, f := range ListFeatures(recommend.KindText, pipelineMode(mode), float64(resp.GetCoherence()), resp.GetResults()) {
			ex = append(ex, Example{Features: f, Weight: RandomWordsWeight})
		}
	}
	return ex, nil
}

// keywordIndex picks a paper's keywords: the words of its abstract with the highest count x idf
// in the sample.
type keywordIndex struct {
	df map[string]int
	n  int
}

func newKeywords(papers []*recommenderv1.Paper) keywordIndex {
	k := keywordIndex{df: map[string]int{}, n: len(papers)}
	for _, p := range papers {
		seen := map[string]bool{}
		for _, w := range plainWords(p.GetAbstract()) {
			if !seen[w] {
				seen[w] = true
				k.df[w]++
			}
		}
	}
	return k
}

// of returns the n keywords of p, joined by spaces, in the abstract's order.
func (k keywordIndex) of(p *recommenderv1.Paper, n int) string {
	ws := plainWords(p.GetAbstract())
	count := map[string]int{}
	for _, w := range ws {
		count[w]++
	}
	type scored struct {
		w string
		s float64
	}
	var all []scored
	for w, c := range count {
		all = append(all, scored{w, float64(c) * math.Log(float64(k.n)/float64(1+k.df[w]))})
	}
	slices.SortFunc(all, func(a, b scored) int {
		if c := cmp.Compare(b.s, a.s); c != 0 {
			return c
		}
		return cmp.Compare(a.w, b.w)
	})
	keep := map[string]bool{}
	for _, x := range all[:min(n, len(all))] {
		keep[x.w] = true
	}
	var out []string
	for _, w := range ws {
		if keep[w] {
			out = append(out, w)
			delete(keep, w)
		}
	}
	return strings.Join(out, " ")
}

// plainWords are the lower-case words of text of four letters or more, letters only.
func plainWords(text string) []string {
	var out []string
	for _, f := range strings.Fields(text) {
		w := strings.ToLower(strings.Trim(f, ".,;:()[]\"'"))
		if len(w) >= 4 && strings.IndexFunc(w, func(c rune) bool { return c < 'a' || c > 'z' }) < 0 {
			out = append(out, w)
		}
	}
	return out
}
