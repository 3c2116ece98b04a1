package recommend_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
)

var ctx = context.Background()

// wordVectors embeds a text as the normalised sum of one pseudo-random direction per word, so
// texts sharing words are close: enough to tell topics apart, with no model.
type wordVectors struct{ calls int }

const dims = 64

func (w *wordVectors) Embed(_ context.Context, texts []string) ([][]float32, error) {
	w.calls++
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v := make([]float32, dims)
		for _, tok := range lexical.Analyze(t) {
			h := fnv.New64a()
			h.Write([]byte(tok.Term))
			s := h.Sum64()
			for d := range v {
				s = s*6364136223846793005 + 1442695040888963407
				v[d] += float32(int64(s>>11)%1000-500) / 1000 // centred: unrelated words are orthogonal on average
			}
		}
		out[i] = v
	}
	return out, nil
}
func (*wordVectors) Model() string            { return "words" }
func (*wordVectors) Dimensions() int          { return dims }
func (*wordVectors) Prefixes() embed.Prefixes { return embed.Prefixes{} }

// corpus: two topics far apart, ten papers each, plus papers bridging them.
func corpus() []store.Paper {
	var ps []store.Paper
	topic := func(prefix, words string, n int) {
		w := strings.Fields(words)
		for i := range n {
			// Each paper has the topic's words, one of them repeated by rank, and a word of
			// its own, so neighbours within a topic are ordered.
			abs := fmt.Sprintf("%s %s %s unique%s%d", words, strings.Repeat(w[i%len(w)]+" ", i%3), w[(i+1)%len(w)], prefix, i)
			ps = append(ps, store.Paper{ID: fmt.Sprintf("%s%02d", prefix, i), Title: fmt.Sprintf("%s study %d", prefix, i), Abstract: abs, Year: 2020})
		}
	}
	topic("sleep", "sleep staging electroencephalography polysomnography hypnogram", 10)
	topic("kws", "keyword spotting wake word audio microphone", 10)
	topic("bridge", "sleep staging electroencephalography polysomnography hypnogram keyword spotting wake word audio microphone", 2)
	return ps
}

func newEngine(t *testing.T, withVectors bool) (*recommend.Engine, *wordVectors) {
	t.Helper()
	st, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &recommend.Engine{Store: st}
	var w *wordVectors
	if withVectors {
		w = &wordVectors{}
		e.Embedder = w
		if e.Spec, err = st.BindEmbedding(ctx, store.EmbeddingSpec{Model: w.Model(), Dimensions: dims}); err != nil {
			t.Fatal(err)
		}
	}
	ps := corpus()
	for i := range ps {
		ps[i].Lexical = lexical.Document(ps[i].Title, ps[i].Abstract)
	}
	if err := e.AttachVectors(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Upsert(ctx, ps); err != nil {
		t.Fatal(err)
	}
	return e, w
}

func ids(t *testing.T, e *recommend.Engine, r recommend.Request) []string {
	t.Helper()
	if r.PageSize == 0 {
		r.PageSize = 10
	}
	res, err := e.Recommend(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range res.Items {
		out = append(out, it.Paper.ID)
	}
	return out
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, id := range list {
		if strings.HasPrefix(id, prefix) {
			n++
		}
	}
	return n
}

var modes = []struct {
	name    string
	mode    recommend.Mode
	vectors bool
}{{"lexical", recommend.ModeLexical, false}, {"dense", recommend.ModeDense, true}, {"hybrid", recommend.ModeHybrid, true}}

func TestPerSeedGivesEverySeedItsNeighbours(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e, _ := newEngine(t, m.vectors)
			seeds := []string{"sleep00", "kws00"}
			top := ids(t, e, recommend.Request{Positive: seeds, Mode: m.mode, Strategy: recommend.StrategyPerSeed, PageSize: 8})
			// Interleaved by rank: of the first eight, four come from each seed's list, so the
			// bridges (each list's nearest, perhaps) aside, both topics are there.
			if a, b := countPrefix(top, "sleep"), countPrefix(top, "kws"); a < 3 || b < 3 {
				t.Fatalf("per-seed top 8 %v: %d sleep and %d keyword-spotting papers, want 3 or more of each", top, a, b)
			}
			// The default is per-seed.
			if def := ids(t, e, recommend.Request{Positive: seeds, Mode: m.mode, PageSize: 8}); !slices.Equal(def, top) {
				t.Fatalf("default strategy %v, per-seed %v", def, top)
			}
		})
	}
}

func TestCentroidFavoursPapersLikeAllSeeds(t *testing.T) {
	e, _ := newEngine(t, false)
	top := ids(t, e, recommend.Request{Positive: []string{"sleep00", "kws00"}, Mode: recommend.ModeLexical, Strategy: recommend.StrategyCentroid, PageSize: 2})
	if countPrefix(top, "bridge") != 2 {
		t.Fatalf("centroid top 2 %v, want the two papers on both topics", top)
	}
	// A single seed is the same list under either strategy.
	one := recommend.Request{Positive: []string{"sleep03"}, Mode: recommend.ModeLexical}
	a := ids(t, e, one)
	one.Strategy = recommend.StrategyCentroid
	if b := ids(t, e, one); !slices.Equal(a, b) {
		t.Fatalf("one seed: per-seed %v, centroid %v", a, b)
	}
}

func TestNegativeSeedDemotesOnlyItsSide(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e, _ := newEngine(t, m.vectors)
			base := recommend.Request{Positive: []string{"sleep00"}, Mode: m.mode, PageSize: 20}
			alone := ids(t, e, base)
			// A negative seed unlike the positive demotes nothing: the list is that of a request
			// that only excludes it.
			far, without := base, base
			far.Negative = []string{"kws05"}
			without.Filter.ExcludeIDs = []string{"kws05"}
			if got, want := ids(t, e, far), ids(t, e, without); !slices.Equal(got[:10], want[:10]) {
				t.Fatalf("far negative moved the top 10: %v, without it %v", got, want)
			}
			// A negative from the other topic's side of a bridge demotes the bridges (closer to
			// it than to the positive is their keyword-spotting half), never the sleep papers
			// themselves; nothing is lost, it moves down.
			near := base
			near.Negative = []string{"kws00"}
			got := ids(t, e, near)
			if len(got) != len(alone) {
				t.Fatalf("with the negative %d results, alone %d", len(got), len(alone))
			}
			if countPrefix(got[:9], "sleep") != 9 {
				t.Fatalf("with a keyword-spotting negative the first nine are %v, want the nine other sleep papers", got[:9])
			}
		})
	}
}

func TestDemote(t *testing.T) {
	far := recommend.NegativeReach + 1
	cands := []rank.Candidate{{ID: "a", Score: 6}, {ID: "b", Score: 5}, {ID: "c", Score: 4}, {ID: "d", Score: 3}, {ID: "e", Score: 2}, {ID: "f", Score: 1}}
	pos := map[string]int{"a": 1, "b": 2, "c": 2, "d": 3, "e": 4, "f": far}
	// b: the negative ranks it first; c: at 2x its positive rank (not better), kept; d: better
	// than 2x, demoted; e: beyond the negative's reach, kept; f: within reach, far better ranked
	// by the negative than by the positive, demoted.
	neg := map[string]int{"b": 1, "c": int(recommend.DemoteMargin * 2), "d": int(recommend.DemoteMargin*3) - 1, "e": far, "f": 2}
	got := recommend.Demote(cands, pos, neg)
	var order []string
	for _, c := range got {
		order = append(order, c.ID)
	}
	if !slices.Equal(order, []string{"a", "c", "e", "b", "d", "f"}) {
		t.Fatalf("demoted order %v, want a c e b d f", order)
	}
	// Scores still decrease down the list, so re-ranking by score keeps the demoted last.
	if got[0].Score != 6 || got[2].Score != 2 || got[3].Score >= 2 || got[4].Score >= got[3].Score || got[5].Score >= got[4].Score {
		t.Fatalf("scores %+v: kept ones unchanged, the demoted below them in order", got)
	}
}

func TestExplanationsCarryEachSignalsScore(t *testing.T) {
	e, _ := newEngine(t, true)
	res, err := e.Recommend(ctx, recommend.Request{Positive: []string{"sleep02"}, Mode: recommend.ModeHybrid, PageSize: 5, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := e.Store.Get(ctx, []string{"sleep02"})
	if err != nil {
		t.Fatal(err)
	}
	alone := func(q store.Query) map[string]float32 {
		q.Limit, q.Filter = 50, store.Filter{ExcludeIDs: []string{"sleep02"}}
		lists, err := e.Store.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float32{}
		for _, h := range append(lists.Lexical, lists.Dense...) {
			out[h.ID] = h.Score
		}
		return out
	}
	lex, dense := alone(store.Query{Lexical: lexical.SeedQuery(seed[0].Lexical)}), alone(store.Query{Dense: seed[0].Dense})
	for _, it := range res.Items {
		x := it.Explanation
		if x.LexicalScore != lex[it.Paper.ID] || x.DenseScore != dense[it.Paper.ID] || x.FusedScore != it.Score {
			t.Fatalf("%s explained as %+v; searched alone: lexical %v, dense %v", it.Paper.ID, x, lex[it.Paper.ID], dense[it.Paper.ID])
		}
		if x.ClosestSeedID != "sleep02" || len(x.SharedTerms) == 0 {
			t.Fatalf("%s: closest seed %q, shared terms %v", it.Paper.ID, x.ClosestSeedID, x.SharedTerms)
		}
	}
}

func TestSeedCopiesAndPaging(t *testing.T) {
	e, _ := newEngine(t, false)
	copyOf := store.Paper{ID: "copy", Title: "Sleep study 0.", Abstract: "sleep staging again", Year: 2021}
	copyOf.Lexical = lexical.Document(copyOf.Title, copyOf.Abstract)
	if _, err := e.Store.Upsert(ctx, []store.Paper{copyOf}); err != nil {
		t.Fatal(err)
	}
	all := ids(t, e, recommend.Request{Positive: []string{"sleep00"}, Mode: recommend.ModeLexical, PageSize: 30})
	if slices.Contains(all, "copy") {
		t.Fatalf("the seed's same-title copy came back: %v", all)
	}
	// Pages concatenate to the whole list.
	var paged []string
	for off := 0; ; {
		res, err := e.Recommend(ctx, recommend.Request{Positive: []string{"sleep00"}, Mode: recommend.ModeLexical, Offset: off, PageSize: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range res.Items {
			paged = append(paged, it.Paper.ID)
		}
		if res.NextOffset == 0 {
			break
		}
		off = res.NextOffset
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("pages %v, whole list %v", paged, all)
	}
}

func TestTextIsEmbeddedOnceAndUnchangedPapersNever(t *testing.T) {
	e, w := newEngine(t, true)
	calls := w.calls
	if _, err := e.Recommend(ctx, recommend.Request{Text: "wake word microphone", Positive: []string{"sleep01"}, PageSize: 5}); err != nil {
		t.Fatal(err)
	}
	if w.calls != calls+1 {
		t.Fatalf("%d embedding calls for one text and a seed, want 1", w.calls-calls)
	}
	again, err := e.Store.Get(ctx, []string{"kws01"})
	if err != nil {
		t.Fatal(err)
	}
	again[0].Dense = nil
	if err := e.AttachVectors(ctx, again); err != nil || w.calls != calls+1 || len(again[0].Dense) != dims {
		t.Fatalf("re-attaching an unchanged paper: %v, %d calls, %d dims", err, w.calls-calls-1, len(again[0].Dense))
	}
}

func TestRelevanceIsAProbabilityFallingDownTheList(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e, _ := newEngine(t, m.vectors)
			res, err := e.Recommend(ctx, recommend.Request{Positive: []string{"kws03"}, Mode: m.mode, PageSize: 15})
			if err != nil {
				t.Fatal(err)
			}
			for i, it := range res.Items {
				if it.Relevance <= 0 || it.Relevance >= 1 {
					t.Fatalf("%s: relevance %v outside (0, 1)", it.Paper.ID, it.Relevance)
				}
				// One list, no re-ranking: a lower place or a lower similarity never raises it.
				if i > 0 && m.mode != recommend.ModeHybrid && it.Relevance > res.Items[i-1].Relevance+1e-6 {
					t.Fatalf("relevance rises down the list at %d: %v after %v", i, it.Relevance, res.Items[i-1].Relevance)
				}
			}
			// The first paper of its topic is judged more likely relevant than the last result.
			if first, last := res.Items[0], res.Items[len(res.Items)-1]; !strings.HasPrefix(first.Paper.ID, "kws") || first.Relevance <= last.Relevance {
				t.Fatalf("first %s at %v, last %s at %v", first.Paper.ID, first.Relevance, last.Paper.ID, last.Relevance)
			}
		})
	}
}

func TestTextCoherenceTellsATopicFromUnrelatedWords(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e, _ := newEngine(t, m.vectors)
			ask := func(text string, pageSize int) *recommend.Result {
				t.Helper()
				res, err := e.Recommend(ctx, recommend.Request{Text: text, Mode: m.mode, PageSize: pageSize})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			topic, mixed := ask("keyword spotting wake word", 10), ask("hypnogram microphone", 10)
			if topic.Coherence <= mixed.Coherence {
				t.Fatalf("coherence of one topic's words %.3f, not above unrelated words' %.3f", topic.Coherence, mixed.Coherence)
			}
			// Computed on the first results whatever the page: a page of one says the same.
			one := ask("hypnogram microphone", 1)
			if one.Coherence != mixed.Coherence || one.Items[0].Relevance != mixed.Items[0].Relevance {
				t.Fatalf("page of 1: coherence %v, relevance %v; page of 10: %v, %v",
					one.Coherence, one.Items[0].Relevance, mixed.Coherence, mixed.Items[0].Relevance)
			}
			// Seeds are whole papers: no coherence.
			if seed, err := e.Recommend(ctx, recommend.Request{Positive: []string{"kws03"}, Mode: m.mode, PageSize: 5}); err != nil || seed.Coherence != 0 {
				t.Fatalf("seed request: coherence %v, %v", seed.Coherence, err)
			}
		})
	}
}

func TestCoherence(t *testing.T) {
	a, b := []float32{1, 0}, []float32{0, 1}
	same := []rank.Candidate{{ID: "1", Dense: a}, {ID: "2", Dense: a}, {ID: "3", Dense: a}}
	apart := []rank.Candidate{{ID: "1", Dense: a}, {ID: "2", Dense: b}}
	if c := recommend.Coherence(same, true); math.Abs(c-1) > 1e-9 {
		t.Fatalf("identical papers: %v", c)
	}
	if c := recommend.Coherence(apart, true); c != 0 {
		t.Fatalf("orthogonal papers: %v", c)
	}
	// Papers without what is compared are left out; none comparable gives 0.
	if c := recommend.Coherence(append(same, rank.Candidate{ID: "4"}), true); math.Abs(c-1) > 1e-9 {
		t.Fatalf("with a paper lacking a vector: %v", c)
	}
	if c := recommend.Coherence(same, false); c != 0 {
		t.Fatalf("lexical coherence without sketches: %v", c)
	}
}

func TestCandidateRelevanceIsInTheWholeListsContext(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e, _ := newEngine(t, m.vectors)
			relevance := func(candidates []string, pageSize int) map[string]float32 {
				t.Helper()
				res, err := e.Recommend(ctx, recommend.Request{Positive: []string{"kws03"}, Candidates: candidates, Mode: m.mode, PageSize: pageSize})
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]float32{}
				for _, it := range res.Items {
					out[it.Paper.ID] = it.Relevance
				}
				return out
			}
			alike := []string{"kws05", "kws01", "kws02", "kws04", "kws06", "kws07", "kws08", "kws09"}
			mixed := []string{"kws05", "sleep01", "sleep02", "sleep03", "sleep04", "sleep05", "sleep06", "sleep07"}
			// The same paper stands out less among candidates all like the seed.
			if a, b := relevance(alike, 8)["kws05"], relevance(mixed, 8)["kws05"]; a >= b {
				t.Fatalf("kws05 among papers of its topic %.3f, among others %.3f", a, b)
			}
			// The page is a window on the whole list: its relevance is the list's.
			var all []string
			for _, p := range corpus() {
				if p.ID != "kws03" {
					all = append(all, p.ID)
				}
			}
			whole, page := relevance(all, len(all)), relevance(all, 2)
			for id, r := range page {
				if whole[id] != r {
					t.Fatalf("%s: %v in a page of 2, %v in the whole list", id, r, whole[id])
				}
			}
		})
	}
}

// TestAuthorTieBreak: papers the ranking scores equally are ordered by the authors they share
// with the seed when the stage is on, by id when it is off; papers scored apart keep their order.
func TestAuthorTieBreak(t *testing.T) {
	e, _ := newEngine(t, false)
	paper := func(id, title string, authors ...string) store.Paper {
		p := store.Paper{ID: id, Title: title, Abstract: "Graph networks for molecules.", Authors: authors}
		p.Lexical = lexical.Document(p.Title, p.Abstract)
		return p
	}
	ps := []store.Paper{
		paper("seed", "Message passing on molecules", "Ada Lovelace", "Alan Turing"),
		paper("tie-a", "Graph networks alpha", "Grace Hopper"),
		paper("tie-b", "Graph networks bravo", "Grace Hopper", "ada  LOVELACE"),
		paper("tie-c", "Graph networks gamma", "alan turing", "Ada Lovelace"),
	}
	if _, err := e.Store.Upsert(ctx, ps); err != nil {
		t.Fatal(err)
	}
	r := recommend.Request{Positive: []string{"seed"}, Candidates: []string{"tie-a", "tie-b", "tie-c"}, PageSize: 3}
	res, err := e.Recommend(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 3 || res.Items[0].Score != res.Items[2].Score {
		t.Fatalf("want three papers scored equally, got %+v", res.Items)
	}
	if got := ids(t, e, r); !slices.Equal(got, []string{"tie-a", "tie-b", "tie-c"}) {
		t.Fatalf("stage off: %v, want ties by id", got)
	}
	e.AuthorTieBreak = true
	if got := ids(t, e, r); !slices.Equal(got, []string{"tie-c", "tie-b", "tie-a"}) {
		t.Fatalf("stage on: %v, want the most shared authors first", got)
	}
	// A paper scored above the tied ones stays first, whoever wrote it.
	r.Candidates = append(r.Candidates, "seed-like")
	if _, err := e.Store.Upsert(ctx, []store.Paper{paper("seed-like", "Message passing on molecules graph networks", "Nobody")}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, e, r); len(got) != 3 || got[0] != "seed-like" {
		t.Fatalf("with a better paper: %v, want it first", got)
	}
}

// TestHybridSeedTerms: with HybridSeedTerms set, a hybrid seed searches its words by its most
// informative terms only (a paper sharing only its commonest word gets no lexical score); the
// lexical mode and an unset bound search every term.
func TestHybridSeedTerms(t *testing.T) {
	e, _ := newEngine(t, true)
	paper := func(id, title, abstract string) store.Paper {
		p := store.Paper{ID: id, Title: title, Abstract: abstract}
		p.Lexical = lexical.Document(p.Title, p.Abstract)
		return p
	}
	ps := []store.Paper{
		paper("zseed", "Zebrafish fins regenerate", "Zebrafish regenerate fins."),
		paper("zrare", "Zebrafish hearts", "Zebrafish hearts regrow."),
		paper("zcommon", "Fins of sharks", "Shark fins."),
	}
	if err := e.AttachVectors(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.Upsert(ctx, ps); err != nil {
		t.Fatal(err)
	}
	lexicalScore := func(mode recommend.Mode, id string) float32 {
		t.Helper()
		res, err := e.Recommend(ctx, recommend.Request{Positive: []string{"zseed"}, Candidates: []string{"zrare", "zcommon"}, Mode: mode, PageSize: 2, Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range res.Items {
			if it.Paper.ID == id {
				return it.Explanation.LexicalScore
			}
		}
		t.Fatalf("%s not in %+v", id, res.Items)
		return 0
	}
	if lexicalScore(recommend.ModeHybrid, "zcommon") == 0 {
		t.Fatal("every term: a paper sharing the seed's word fins has no lexical score")
	}
	e.HybridSeedTerms = 2 // zebrafish and regenerate: rarer than fins, which two of four papers have
	if got := lexicalScore(recommend.ModeHybrid, "zcommon"); got != 0 {
		t.Fatalf("the 2 strongest terms: the paper sharing only fins scored %v lexically", got)
	}
	if lexicalScore(recommend.ModeHybrid, "zrare") == 0 || lexicalScore(recommend.ModeLexical, "zcommon") == 0 {
		t.Fatal("the paper sharing zebrafish, or the lexical mode, lost its lexical score")
	}
}
