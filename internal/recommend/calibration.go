package recommend

import "math"

// Calibration maps a result's features (see Features) to the probability that a reader judges
// it relevant: a logistic model, relevance = 1 / (1 + exp(-(w · features))).
type Calibration []float64

// Relevance is the calibrated probability of features.
func (c Calibration) Relevance(features []float64) float32 {
	var z float64
	for i, w := range c {
		z += w * features[i]
	}
	return float32(1 / (1 + math.Exp(-z)))
}

// Features describe a paper's place in the list of the seed or text that found it, as the
// calibration reads them: a constant, ln(rank) (from 1), and the mode's similarity: lexical, the
// paper's score over the list's best (BM25 scores of two queries do not compare, their ratio
// does); dense, the cosine similarity; hybrid, the cosine similarity (0 when the dense list did
// not hold it) and whether the lexical list held it.
func Features(mode Mode, rank int, scoreRatio, dense, lexical float64) []float64 {
	f := []float64{1, math.Log(float64(rank))}
	switch mode {
	case ModeLexical:
		return append(f, scoreRatio)
	case ModeDense:
		return append(f, dense)
	}
	held := 0.0
	if lexical > 0 {
		held = 1
	}
	return append(f, dense, held)
}

// Calibrations are per mode, fitted by `recommender eval --calibrate` on the arXiv sample's
// topic labels (70% of the seed papers, by id; the other 30% and CSFCube's dev judgements check
// them: BENCHMARKS.md, "Calibrated relevance"). Refit them when ranking changes.
var Calibrations = map[Mode]Calibration{
	ModeLexical: {0.4479, -0.1423, 0.6652},
	ModeDense:   {0.0046, -0.2929, 1.4497},
	ModeHybrid:  {-0.2316, -0.2559, 1.2658, 0.4578},
}
