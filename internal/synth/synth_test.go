package synth_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/rank"
	"github.com/paperrec/recommender/internal/synth"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

func sample(t *testing.T) []*recommenderv1.Paper {
	t.Helper()
	return testutil.ReadPapers(t, filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz"))
}

func generate(m *synth.Model, seed uint64, n int) []*recommenderv1.Paper {
	rng := rand.New(rand.NewPCG(seed, seed))
	out := make([]*recommenderv1.Paper, n)
	for i := range out {
		out[i] = m.Paper(rng, fmt.Sprintf("synth-%07d", i))
	}
	return out
}

// The same seed makes the same corpus; another seed another.
func TestSameSeedSamePapers(t *testing.T) {
	race.Skip(t)
	m := synth.Train(sample(t))
	a, b, c := generate(m, 7, 50), generate(m, 7, 50), generate(m, 8, 50)
	if !slices.EqualFunc(a, b, func(x, y *recommenderv1.Paper) bool { return proto.Equal(x, y) }) {
		t.Fatal("seed 7 made two different corpora")
	}
	if slices.EqualFunc(a, c, func(x, y *recommenderv1.Paper) bool { return proto.Equal(x, y) }) {
		t.Fatal("seeds 7 and 8 made the same corpus")
	}
}

func ngrams(text string, n int) []string {
	w := strings.Fields(text)
	var out []string
	for i := 0; i+n <= len(w); i++ {
		out = append(out, strings.Join(w[i:i+n], " "))
	}
	return out
}

// Synthetic papers read like the sample without copying it: new word sequences (few 8-word
// runs of the sample's abstracts), no sample title, the sample's topics and lengths, and
// topical structure (papers of one topic more alike than papers of two).
func TestPapersAreLikeTheSampleNotCopies(t *testing.T) {
	race.Skip(t)
	papers := sample(t)
	m := synth.Train(papers)
	gen := generate(m, 1, 2000)
	sample8, titles, topics := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var sampleWords int
	for _, p := range papers {
		for _, g := range ngrams(p.GetAbstract(), 8) {
			sample8[g] = true
		}
		titles[p.GetTitle()] = true
		for _, tp := range p.GetTopics() {
			topics[tp] = true
		}
		sampleWords += len(strings.Fields(p.GetAbstract()))
	}
	shared, total, words, twoTopics := 0, 0, 0, 0
	for _, p := range gen {
		for _, g := range ngrams(p.GetAbstract(), 8) {
			total++
			if sample8[g] {
				shared++
			}
		}
		if titles[p.GetTitle()] || p.GetTitle() == "" || len(p.GetAuthors()) == 0 || p.GetYear() == 0 {
			t.Fatalf("paper %s: title %q (a sample title: %v), authors %v, year %d", p.GetId(), p.GetTitle(), titles[p.GetTitle()], p.GetAuthors(), p.GetYear())
		}
		for _, tp := range p.GetTopics() {
			if !topics[tp] {
				t.Fatalf("paper %s: topic %q is not the sample's", p.GetId(), tp)
			}
		}
		if len(p.GetTopics()) == 2 {
			twoTopics++
		}
		words += len(strings.Fields(p.GetAbstract()))
	}
	mean, sampleMean := float64(words)/float64(len(gen)), float64(sampleWords)/float64(len(papers))
	same, other := topicCosines(gen)
	sSame, sOther := topicCosines(papers[:2000])
	t.Logf("8-word runs of the sample: %.4f of %d; abstract words %.0f (sample %.0f); two topics %d of %d; "+
		"mean cosine within a topic %.3f, across %.3f (sample %.3f, %.3f)", float64(shared)/float64(total), total, mean, sampleMean,
		twoTopics, len(gen), same, other, sSame, sOther)
	if float64(shared)/float64(total) > 0.02 || mean < 0.8*sampleMean || mean > 1.2*sampleMean || twoTopics < len(gen)/20 || same < 1.4*other {
		t.Fatal("the synthetic corpus is not like the sample (see the figures above)")
	}
}

// topicCosines is the mean lexical cosine of random pairs of papers of one topic, and of two.
func topicCosines(ps []*recommenderv1.Paper) (same, other float64) {
	vs := make([]lexical.Vector, len(ps))
	for i, p := range ps {
		vs[i] = lexical.Document(p.GetTitle(), p.GetAbstract())
	}
	var ns, no int
	r := rand.New(rand.NewPCG(2, 2))
	for range 40000 {
		i, j := r.IntN(len(ps)), r.IntN(len(ps))
		if i == j || len(ps[i].GetTopics()) == 0 || len(ps[j].GetTopics()) == 0 {
			continue
		}
		c := rank.LexicalCosine(vs[i], vs[j])
		if ps[i].GetTopics()[0] == ps[j].GetTopics()[0] {
			same, ns = same+c, ns+1
		} else {
			other, no = other+c, no+1
		}
	}
	return same / float64(ns), other / float64(no)
}
