package eval

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// A Strategy ranks candidates by their similarity to a seed paper: a ranking experiment, run
// outside the service on the vectors the embedding API gives and the lists the service returns.
type Strategy struct {
	Name, About string
	Rank        RankFunc
}

// A RankFunc returns candidates best first, at least the first k of them; nil candidates means
// every paper of the collection but the seed.
type RankFunc func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error)

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
	service := func(mode recommenderv1.RetrievalMode) RankFunc {
		return func(ctx context.Context, l *Lab, seed string, candidates []string, k int) ([]string, error) {
			return l.ServiceRanking(ctx, seed, candidates, k, mode)
		}
	}
	sentences := func(match SentenceMatch, w float32) RankFunc {
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
			return l.byScore(idx, Cosines(seeds[l.index[seed]], cands, idx)), nil
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
			docs, err := l.Docs(ctx)
			if err != nil {
				return nil, err
			}
			idx := l.candidateIndexes(seed, candidates)
			return l.byScore(idx, Cosines(q, docs, idx)), nil
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
	Facets            []string // each row's facet
}

// FacetMean is the mean NDCG%20 of the rows of one facet.
func (r RowScores) FacetMean(facet string) float64 {
	var xs []float64
	for i, f := range r.Facets {
		if f == facet {
			xs = append(xs, r.NDCGPct20[i])
		}
	}
	return mean(xs)
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
		rs.Facets = append(rs.Facets, p.Facet)
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
