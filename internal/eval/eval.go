package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/recommend"
)

// Pool is one CSFCube query row: a query paper, a facet, and the candidates to rank.
type Pool struct {
	QueryID    string   `json:"query_id"`
	Facet      string   `json:"facet"`
	Split      string   `json:"split"`
	Candidates []string `json:"candidates"`
}

// Ranking is one row of the rankings file, in the collection's format.
type Ranking struct {
	QueryID string   `json:"query_id"`
	Facet   string   `json:"facet"`
	Ranked  []string `json:"ranked"`
}

// Qrels holds graded relevance by query row ("query_id/facet") and candidate.
type Qrels map[string]map[string]int

func rowKey(queryID, facet string) string { return queryID + "/" + facet }

// CSFCube is the test collection.
type CSFCube struct {
	Corpus []*recommenderv1.Paper
	Pools  []Pool
	Qrels  Qrels // dev split only
}

// LoadCSFCube reads corpus.jsonl, pools.jsonl and qrels-dev.tsv from dir.
func LoadCSFCube(dir string) (*CSFCube, error) {
	c := &CSFCube{Qrels: Qrels{}}
	err := readJSONLines(filepath.Join(dir, "corpus.jsonl"), func(line []byte) error {
		var p struct {
			ID, Title, Abstract string
			Year                int32
		}
		if err := json.Unmarshal(line, &p); err != nil {
			return err
		}
		if p.Year < 1000 || p.Year > 9999 {
			p.Year = 0 // the corpus has a few impossible years (801); the API would reject them
		}
		c.Corpus = append(c.Corpus, &recommenderv1.Paper{Id: p.ID, Title: p.Title, Abstract: p.Abstract, Year: p.Year})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := readJSONLines(filepath.Join(dir, "pools.jsonl"), func(line []byte) error {
		var p Pool
		err := json.Unmarshal(line, &p)
		c.Pools = append(c.Pools, p)
		return err
	}); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, "qrels-dev.tsv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		cols := strings.Split(sc.Text(), "\t")
		if first || len(cols) != 4 {
			continue // header
		}
		rel, err := strconv.Atoi(cols[3])
		if err != nil {
			return nil, fmt.Errorf("qrels: %q: %w", sc.Text(), err)
		}
		key := rowKey(cols[0], cols[1])
		if c.Qrels[key] == nil {
			c.Qrels[key] = map[string]int{}
		}
		c.Qrels[key][cols[2]] = rel
	}
	return c, sc.Err()
}

func readJSONLines(path string, fn func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			if perr := fn(line); perr != nil {
				return fmt.Errorf("%s line %d: %w", path, n, perr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// NDCG is the collection's NDCG at k: gains are the graded relevances, discounts 1, 1,
// 1/log2(3), 1/log2(4), ...; the ideal ranking orders the judged candidates by relevance.
func NDCG(ranked []string, rel map[string]int, k int) float64 {
	discount := func(i int) float64 { // i counts from 1
		if i == 1 {
			return 1
		}
		return 1 / math.Log2(float64(i))
	}
	var dcg float64
	for i, id := range ranked[:min(k, len(ranked))] {
		dcg += float64(rel[id]) * discount(i+1)
	}
	ideal := make([]int, 0, len(rel))
	for _, r := range rel {
		ideal = append(ideal, r)
	}
	slices.SortFunc(ideal, func(a, b int) int { return b - a })
	var idcg float64
	for i, r := range ideal[:min(k, len(ideal))] {
		idcg += float64(r) * discount(i+1)
	}
	if idcg == 0 {
		return 0
	}
	return dcg / idcg
}

// RankPool ranks a pool's candidates by similarity to its query paper through Recommend,
// paging through all of them. Candidates the service does not return (no shared term in
// lexical mode, or the query paper itself) follow in pool order, so every candidate is ranked.
// It also returns the results the service returned, in order, with their relevance and
// explanations.
func RankPool(ctx context.Context, c recommenderv1.RecommenderServiceClient, p Pool, mode recommenderv1.RetrievalMode) ([]string, []*recommenderv1.Recommendation, error) {
	req := &recommenderv1.RecommendRequest{PositivePaperIds: []string{p.QueryID}, CandidatePaperIds: p.Candidates,
		PageSize: 100, Mode: mode, Explain: true}
	var ranked []string
	var results []*recommenderv1.Recommendation
	for {
		resp, err := c.Recommend(ctx, req)
		if err != nil {
			return nil, nil, fmt.Errorf("rank pool of %s/%s: %w", p.QueryID, p.Facet, err)
		}
		for _, r := range resp.GetResults() {
			ranked = append(ranked, r.GetPaper().GetId())
			ranked = append(ranked, r.GetDuplicatePaperIds()...)
			results = append(results, r)
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	for _, id := range p.Candidates {
		if !slices.Contains(ranked, id) {
			ranked = append(ranked, id)
		}
	}
	return ranked, results, nil
}

// Scores are mean NDCGs over the dev rows.
type Scores struct {
	NDCGPct20, NDCG20 float64
	Rows              int
	// Predictions are the relevance of each returned candidate of the dev rows, labelled
	// relevant when judged 1 or more, and Examples their calibration features so labelled.
	Predictions []Prediction
	Examples    []Example
}

// Evaluate ranks every pool in mode and scores the dev rows.
func (c *CSFCube) Evaluate(ctx context.Context, client recommenderv1.RecommenderServiceClient, mode recommenderv1.RetrievalMode) (Scores, []Ranking, error) {
	var s Scores
	var rankings []Ranking
	for _, p := range c.Pools {
		ranked, results, err := RankPool(ctx, client, p, mode)
		if err != nil {
			return s, nil, err
		}
		rankings = append(rankings, Ranking{QueryID: p.QueryID, Facet: p.Facet, Ranked: ranked})
		if p.Split != "dev" {
			continue
		}
		rel := c.Qrels[rowKey(p.QueryID, p.Facet)]
		features := ListFeatures(recommend.KindCandidates, pipelineMode(mode), 0, results)
		for i, r := range results {
			if grade, judged := rel[r.GetPaper().GetId()]; judged {
				s.Predictions = append(s.Predictions, Prediction{P: float64(r.GetRelevance()), Relevant: grade >= 1})
				s.Examples = append(s.Examples, Example{Features: features[i], Relevant: grade >= 1})
			}
		}
		s.NDCGPct20 += NDCG(ranked, rel, max(1, len(p.Candidates)*20/100))
		s.NDCG20 += NDCG(ranked, rel, 20)
		s.Rows++
	}
	if s.Rows > 0 {
		s.NDCGPct20 /= float64(s.Rows)
		s.NDCG20 /= float64(s.Rows)
	}
	return s, rankings, nil
}

// WriteRankings writes rankings as JSON lines.
func WriteRankings(path string, rankings []Ranking) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range rankings {
		if err := enc.Encode(r); err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

// TopicPrecision recommends by each paper as the only seed, in mode (UNSPECIFIED: the server's
// default), and returns the mean share of the top 10 that shares a topic label with it; missing
// results count as misses.
func TopicPrecision(ctx context.Context, c recommenderv1.RecommenderServiceClient, papers []*recommenderv1.Paper, mode recommenderv1.RetrievalMode) (float64, error) {
	topics := map[string][]string{}
	for _, p := range papers {
		topics[p.GetId()] = p.GetTopics()
	}
	var sum float64
	for _, p := range papers {
		resp, err := c.Recommend(ctx, &recommenderv1.RecommendRequest{PositivePaperIds: []string{p.GetId()}, PageSize: 10, Mode: mode})
		if err != nil {
			return 0, fmt.Errorf("recommend by %s: %w", p.GetId(), err)
		}
		hits := 0
		for _, r := range resp.GetResults() {
			for _, t := range topics[r.GetPaper().GetId()] {
				if slices.Contains(p.GetTopics(), t) {
					hits++
					break
				}
			}
		}
		sum += float64(hits) / 10
	}
	return sum / float64(len(papers)), nil
}
