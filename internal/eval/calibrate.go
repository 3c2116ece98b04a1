package eval

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/recommend"
)

// CalibrationDepth is how many results of each seed the calibration learns from and checks.
const CalibrationDepth = 20

// Example is a result's calibration features (recommend.Features) with its label.
type Example struct {
	Features []float64
	Relevant bool
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
	made := 0
	for _, p := range papers {
		if len(p.GetTopics()) == 0 || HeldBack(p.GetId()) != heldBack {
			continue
		}
		if made++; made > KindLimit {
			break
		}
		positives := []*recommenderv1.Paper{p}
		req := &recommenderv1.RecommendRequest{PageSize: CalibrationDepth, Mode: mode, Explain: true}
		switch kind {
		case recommend.KindText:
			req.Query, req.Filter = p.GetTitle(), &recommenderv1.Filter{ExcludePaperIds: []string{p.GetId()}}
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
		for _, r := range resp.GetResults() {
			relevant := slices.ContainsFunc(positives, func(s *recommenderv1.Paper) bool { return shares(r.GetPaper(), s) })
			ex = append(ex, Example{Features: ResultFeatures(m, r), Relevant: relevant})
			preds = append(preds, Prediction{P: float64(r.GetRelevance()), Relevant: relevant})
		}
	}
	return ex, preds, nil
}

// ResultFeatures are a result's calibration features (recommend.Features), as its explanation
// reports them.
func ResultFeatures(m recommend.Mode, r *recommenderv1.Recommendation) []float64 {
	x := r.GetExplanation()
	return recommend.Features(m, float64(x.GetLexicalSimilarity()), float64(x.GetDenseScore()))
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
// separable feature cannot make a weight diverge.
func FitLogistic(ex []Example) recommend.Calibration {
	if len(ex) == 0 {
		return nil
	}
	n := len(ex[0].Features)
	w := make([]float64, n)
	const ridge = 1e-3
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
			y := 0.0
			if e.Relevant {
				y = 1
			}
			for i, xi := range e.Features {
				grad[i] += (p - y) * xi
				for j, xj := range e.Features {
					hess[i][j] += p * (1 - p) * xi * xj
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
