package eval

import (
	"context"
	"hash/fnv"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/embed"
)

// wordsEmbedder embeds a text as its hashed bag of words, and counts the texts it embeds.
type wordsEmbedder struct{ texts atomic.Int64 }

func (e *wordsEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	e.texts.Add(int64(len(texts)))
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v := make([]float32, 64)
		for _, w := range strings.Fields(strings.ToLower(t)) {
			h := fnv.New32a()
			h.Write([]byte(strings.Trim(w, ".,:")))
			v[h.Sum32()%64]++
		}
		out[i] = v
	}
	return out, nil
}
func (e *wordsEmbedder) Model() string   { return "words" }
func (e *wordsEmbedder) Dimensions() int { return 64 }
func (e *wordsEmbedder) Prefixes() embed.Prefixes {
	return embed.Prefixes{Query: "query: ", Document: "passage: "}
}

// twoTopics is a collection of two topics sharing no words: graphs and proteins.
func twoTopics() []*recommenderv1.Paper {
	paper := func(id, topic, title, abstract string) *recommenderv1.Paper {
		return &recommenderv1.Paper{Id: id, Title: title, Abstract: abstract, Topics: []string{topic}}
	}
	return []*recommenderv1.Paper{
		paper("g1", "graphs", "Shortest paths in sparse graphs", "We route shortest paths through sparse graphs. Our planar separators cut vertices."),
		paper("g2", "graphs", "Planar separators for graphs", "Planar separators cut sparse graphs. We bound vertices of every path."),
		paper("g3", "graphs", "Routing on planar graphs", "We route paths on planar graphs with separators and vertices."),
		paper("p1", "proteins", "Folding small proteins", "Proteins fold into stable structures. We predict folding energies of residues."),
		paper("p2", "proteins", "Residue contacts of proteins", "Residue contacts constrain folding. Proteins with stable structures share contacts."),
		paper("p3", "proteins", "Energies of protein folds", "We compute folding energies of residues in protein structures."),
	}
}

func TestStrategiesOnACollection(t *testing.T) {
	ctx := context.Background()
	papers := twoTopics()
	emb := &wordsEmbedder{}
	lab := NewLab(nil, emb, papers)
	c := &CSFCube{Corpus: papers,
		Pools: []Pool{{QueryID: "g1", Facet: "method", Split: "dev", Candidates: []string{"p1", "g2", "p2", "g3"}}},
		Qrels: Qrels{"g1/method": {"g2": 2, "g3": 1, "p1": 0, "p2": 0}}}
	for _, name := range []string{"cosine", "cosine-q2q", "sent-mean", "sent-chamfer", "sent-mean+doc:1", "prf:2:0.5", "cosine-centered"} {
		s, err := ParseStrategy(name)
		if err != nil {
			t.Fatal(err)
		}
		p10, err := StrategyTopicPrecision(ctx, lab, s)
		if err != nil {
			t.Fatal(err)
		}
		// The top 10 holds all five other papers, two of them of the seed's topic; the seed
		// itself is never ranked.
		if math.Abs(p10-0.2) > 1e-9 {
			t.Errorf("%s: topic P@10 %v, want 0.2", name, p10)
		}
		for _, p := range papers {
			ranked, err := s.Rank(ctx, lab, p.GetId(), nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(ranked) != 5 || ranked[0][0] != p.GetId()[0] || ranked[1][0] != p.GetId()[0] {
				t.Errorf("%s: seed %s ranks %v, want its topic's two others first, then the other three", name, p.GetId(), ranked)
			}
		}
		rows, rankings, err := c.EvaluateStrategy(ctx, lab, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(rankings) != 1 || len(rankings[0].Ranked) != 4 {
			t.Fatalf("%s: rankings %v, want the pool's 4 candidates", name, rankings)
		}
		if got := rankings[0].Ranked[:2]; got[0][0] != 'g' || got[1][0] != 'g' {
			t.Errorf("%s: ranking %v, want the graph papers first", name, rankings[0].Ranked)
		}
		if pct20, _ := rows.Mean(); pct20 <= 0 {
			t.Errorf("%s: NDCG%%20 %v", name, pct20)
		}
	}
	// Each text was embedded once: the papers as passages and as queries, and their sentences.
	sentences := 0
	for _, p := range papers {
		sentences += len(Sentences(p.GetTitle(), p.GetAbstract()))
	}
	if got, want := emb.texts.Load(), int64(2*len(papers)+sentences); got != want {
		t.Errorf("%d texts embedded, want %d", got, want)
	}
}

func TestPairedDifference(t *testing.T) {
	base := RowScores{NDCGPct20: []float64{0.5, 0.5, 0.5, 0.5}}
	same := RowScores{NDCGPct20: []float64{0.6, 0.6, 0.6, 0.6}}
	if d, se := same.PairedDifference(base); d < 0.0999 || d > 0.1001 || se != 0 {
		t.Errorf("a constant gain: %v (%v), want 0.1 (0)", d, se)
	}
	mixed := RowScores{NDCGPct20: []float64{0.9, 0.1, 0.9, 0.1}}
	if d, se := mixed.PairedDifference(base); d != 0 || se < 0.2 {
		t.Errorf("gains and losses that cancel: %v (%v), want 0 with a large error", d, se)
	}
}
