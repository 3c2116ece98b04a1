package eval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// MultiSeed measures what several seeds do to a list, on papers with one topic label each.
type MultiSeed struct {
	// Mix: two positive seeds from topics A and B; the mean of min(#A, #B)/5 over the top 10,
	// 1 when both topics have five results.
	Mix float64
	// MixBound is what Mix would be if the two lists were interleaved perfectly: the mean of
	// min(#A in A's own top 5, #B in B's own top 5)/5. The per-seed strategy aims at it.
	MixBound float64
	// SameTopicRetention: topic precision@10 of a positive seed with a negative seed of its own
	// topic, divided by that of the positive alone.
	SameTopicRetention float64
	// Demotion: of the positive's own top 10 that are among the negative's 20 nearest, the share
	// that leaves the top 10 once the negative is given.
	Demotion float64
	// OtherTopicRetention: as SameTopicRetention, with a negative seed of another topic.
	OtherTopicRetention float64
	Trials              int
}

// MultiSeedBench runs trials of the three multi-seed cases in mode with the seed strategy,
// drawing the papers with a fixed random seed so runs compare. Papers with no topic or several
// are not drawn.
func MultiSeedBench(ctx context.Context, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, mode recommenderv1.RetrievalMode, strategy recommenderv1.SeedStrategy, trials int, seed uint64) (MultiSeed, error) {
	topicOf := map[string]string{}
	byTopic := map[string][]string{}
	for _, p := range papers {
		if len(p.GetTopics()) == 1 {
			t := p.GetTopics()[0]
			topicOf[p.GetId()] = t
			byTopic[t] = append(byTopic[t], p.GetId())
		}
	}
	var topics []string
	for t, ids := range byTopic {
		if len(ids) >= 2 {
			topics = append(topics, t)
		}
	}
	slices.Sort(topics)
	if len(topics) < 2 {
		return MultiSeed{}, fmt.Errorf("multi-seed benchmark: need two topics with two single-topic papers each, have %d", len(topics))
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	draw := func(t string, not string) string {
		for {
			if id := byTopic[t][rng.IntN(len(byTopic[t]))]; id != not {
				return id
			}
		}
	}
	otherTopic := func(t string) string {
		for {
			if o := topics[rng.IntN(len(topics))]; o != t {
				return o
			}
		}
	}
	top := func(pos, neg []string, n int) ([]string, error) {
		resp, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: pos, NegativePaperIds: neg, PageSize: int32(n), Mode: mode, Strategy: strategy})
		if err != nil {
			return nil, fmt.Errorf("recommend by %v, away from %v: %w", pos, neg, err)
		}
		var ids []string
		for _, r := range resp.GetResults() {
			ids = append(ids, r.GetPaper().GetId())
		}
		return ids, nil
	}
	count := func(ids []string, t string) int {
		n := 0
		for _, id := range ids {
			if topicOf[id] == t {
				n++
			}
		}
		return n
	}
	var m MultiSeed
	var base, same, other, near, demoted int
	for range trials {
		a := topics[rng.IntN(len(topics))]
		b := otherTopic(a)
		p, q := draw(a, ""), draw(b, "")
		n, o := draw(a, p), draw(otherTopic(a), "")
		mixed, err := top([]string{p, q}, nil, 10)
		if err != nil {
			return m, err
		}
		m.Mix += float64(min(count(mixed, a), count(mixed, b))) / 5
		alone, err := top([]string{p}, nil, 10)
		if err != nil {
			return m, err
		}
		ownB, err := top([]string{q}, nil, 5)
		if err != nil {
			return m, err
		}
		m.MixBound += float64(min(count(alone[:min(5, len(alone))], a), count(ownB, b))) / 5
		withSame, err := top([]string{p}, []string{n}, 10)
		if err != nil {
			return m, err
		}
		withOther, err := top([]string{p}, []string{o}, 10)
		if err != nil {
			return m, err
		}
		nearest, err := top([]string{n}, nil, 20)
		if err != nil {
			return m, err
		}
		base, same, other = base+count(alone, a), same+count(withSame, a), other+count(withOther, a)
		for _, id := range alone {
			if slices.Contains(nearest, id) {
				near++
				if !slices.Contains(withSame, id) {
					demoted++
				}
			}
		}
		m.Trials++
	}
	m.Mix /= float64(m.Trials)
	m.MixBound /= float64(m.Trials)
	m.SameTopicRetention, m.OtherTopicRetention = ratio(same, base), ratio(other, base)
	m.Demotion = ratio(demoted, near)
	return m, nil
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
