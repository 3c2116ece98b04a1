package eval

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
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

// TopicExamples recommends by each paper with a topic in the chosen part (held back or not)
// alone, in mode, and returns for each of the top CalibrationDepth results its features and the
// relevance the service gave it, labelled relevant when it shares a topic with the seed.
func TopicExamples(ctx context.Context, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, mode recommenderv1.RetrievalMode, heldBack bool) ([]Example, []Prediction, error) {
	topics := map[string][]string{}
	for _, p := range papers {
		topics[p.GetId()] = p.GetTopics()
	}
	m := pipelineMode(mode)
	var ex []Example
	var preds []Prediction
	for _, p := range papers {
		if len(p.GetTopics()) == 0 || HeldBack(p.GetId()) != heldBack {
			continue
		}
		resp, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{p.GetId()},
			PageSize: CalibrationDepth, Mode: mode, Explain: true})
		if err != nil {
			return nil, nil, fmt.Errorf("recommend by %s: %w", p.GetId(), err)
		}
		res := resp.GetResults()
		for i, r := range res {
			relevant := slices.ContainsFunc(topics[r.GetPaper().GetId()], func(t string) bool { return slices.Contains(p.GetTopics(), t) })
			x := r.GetExplanation()
			f := recommend.Features(m, i+1, float64(r.GetScore())/float64(res[0].GetScore()), float64(x.GetDenseScore()), float64(x.GetLexicalScore()))
			ex = append(ex, Example{Features: f, Relevant: relevant})
			preds = append(preds, Prediction{P: float64(r.GetRelevance()), Relevant: relevant})
		}
	}
	return ex, preds, nil
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
