// Package synth makes synthetic papers that read like a sample's: per topic, word chains learnt
// from the sample's titles and abstracts (each word followed by one that followed it there),
// abstract lengths, years and author names drawn from the sample's, some papers on two topics.
// The text is new (recombined, not copied: see the tests), so a store of millions of papers has
// the sample's vocabulary, term statistics and topical structure without repeating it, and a
// fixed random seed makes every run the same.
package synth

import (
	"math/rand/v2"
	"slices"
	"strings"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// Model is what Train learnt from a sample.
type Model struct {
	words     []string          // the vocabulary, by word id
	topics    []topic           // by name
	cum       []int             // cumulative paper counts of topics, to draw one in proportion
	global    chain             // all topics' abstracts: the back-off when a topic's word has no follower
	allTitles chain             // all topics' titles: the same for titles
	firsts    []string          // authors' first names
	lasts     []string          // and last names
	years     []int32           // the sample's, one per paper
	absLens   []int             // abstract lengths in words
	authorsBy []int             // author counts per paper
	wordID    map[string]uint32 // inverse of words
	titles    map[string]bool   // the sample's, which a synthetic paper does not take
}

type topic struct {
	name            string
	title, abstract chain
}

// chain is an order-one word chain: starts are sentence openers, next the words that followed
// each word (repeated as often as they did).
type chain struct {
	starts []uint32
	next   map[uint32][]uint32
}

// mixTopics is the share of papers drawn from two topics.
const mixTopics = 0.15

// Train learns from papers with a title and an abstract; papers without topics count as one
// topic of their own ("").
func Train(papers []*recommenderv1.Paper) *Model {
	m := &Model{wordID: map[string]uint32{}, global: chain{next: map[uint32][]uint32{}}, allTitles: chain{next: map[uint32][]uint32{}},
		titles: map[string]bool{}}
	m.id("") // word 0 ends a text
	byName := map[string]int{}
	for _, p := range papers {
		if p.GetTitle() == "" || p.GetAbstract() == "" {
			continue
		}
		names := p.GetTopics()
		if len(names) == 0 {
			names = []string{""}
		}
		for _, name := range names {
			i, ok := byName[name]
			if !ok {
				i = len(m.topics)
				byName[name] = i
				m.topics = append(m.topics, topic{name: name, title: chain{next: map[uint32][]uint32{}}, abstract: chain{next: map[uint32][]uint32{}}})
			}
			m.learn(&m.topics[i].title, p.GetTitle())
			m.learn(&m.topics[i].abstract, p.GetAbstract())
		}
		m.learn(&m.global, p.GetAbstract())
		m.learn(&m.allTitles, p.GetTitle())
		m.titles[p.GetTitle()] = true
		m.years = append(m.years, p.GetYear())
		m.absLens = append(m.absLens, len(strings.Fields(p.GetAbstract())))
		m.authorsBy = append(m.authorsBy, max(1, len(p.GetAuthors())))
		for _, a := range p.GetAuthors() {
			if f := strings.Fields(a); len(f) >= 2 {
				m.firsts = append(m.firsts, f[0])
				m.lasts = append(m.lasts, f[len(f)-1])
			}
		}
	}
	slices.SortFunc(m.topics, func(a, b topic) int { return strings.Compare(a.name, b.name) })
	total := 0
	for _, t := range m.topics {
		total += len(t.title.starts)
		m.cum = append(m.cum, total)
	}
	return m
}

func (m *Model) id(w string) uint32 {
	i, ok := m.wordID[w]
	if !ok {
		i = uint32(len(m.words))
		m.wordID[w] = i
		m.words = append(m.words, w)
	}
	return i
}

// learn adds a text's sentences to a chain.
func (m *Model) learn(c *chain, text string) {
	prev, start := uint32(0), true
	for _, w := range strings.Fields(text) {
		i := m.id(w)
		if start {
			c.starts = append(c.starts, i)
		} else {
			c.next[prev] = append(c.next[prev], i)
		}
		prev, start = i, endsSentence(w)
	}
	if !start { // the text ends here: a title has no full stop
		c.next[prev] = append(c.next[prev], m.id(""))
	}
}

func endsSentence(w string) bool { return strings.HasSuffix(w, ".") || strings.HasSuffix(w, "?") }

// Topics is how many topics the model has.
func (m *Model) Topics() int { return len(m.topics) }

// Paper makes paper number i of a synthetic corpus; the same rng state and i give the same paper.
func (m *Model) Paper(rng *rand.Rand, id string) *recommenderv1.Paper {
	a := m.drawTopic(rng)
	ts := []*topic{a}
	if rng.Float64() < mixTopics {
		if b := m.drawTopic(rng); b != a {
			ts = append(ts, b)
		}
	}
	p := &recommenderv1.Paper{Id: id, Year: m.years[rng.IntN(len(m.years))]}
	for _, t := range ts {
		if t.name != "" {
			p.Topics = append(p.Topics, t.name)
		}
	}
	for try := 0; try == 0 || (m.titles[p.Title] && try < 1000); try++ { // a short title can come out whole: draw again
		p.Title = strings.TrimRight(m.sentence(rng, &ts[0].title, &m.allTitles, 20), ".")
	}
	var b strings.Builder
	for n, want := 0, m.absLens[rng.IntN(len(m.absLens))]; n < want; {
		t := ts[rng.IntN(len(ts))] // a two-topic paper alternates its sentences' topics
		s := m.sentence(rng, &t.abstract, &m.global, 60)
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
		n += strings.Count(s, " ") + 1
	}
	p.Abstract = b.String()
	for range m.authorsBy[rng.IntN(len(m.authorsBy))] {
		p.Authors = append(p.Authors, m.firsts[rng.IntN(len(m.firsts))]+" "+m.lasts[rng.IntN(len(m.lasts))])
	}
	return p
}

func (m *Model) drawTopic(rng *rand.Rand) *topic {
	i, _ := slices.BinarySearch(m.cum, rng.IntN(m.cum[len(m.cum)-1])+1)
	return &m.topics[i]
}

// sentence walks a chain from a start to a sentence's end, at most limit words; a word the
// chain never saw followed continues from the back-off chain, and a fifth of the steps take the
// back-off's follower anyway, so long runs of one source sentence are rare.
func (m *Model) sentence(rng *rand.Rand, c, backoff *chain, limit int) string {
	w := c.starts[rng.IntN(len(c.starts))]
	words := []string{m.words[w]}
	for len(words) < limit && !endsSentence(m.words[w]) {
		next := c.next[w]
		if backoff != nil && (len(next) == 0 || rng.IntN(5) == 0) && len(backoff.next[w]) > 0 {
			next = backoff.next[w]
		}
		if len(next) == 0 {
			break
		}
		if w = next[rng.IntN(len(next))]; w == 0 {
			break
		}
		words = append(words, m.words[w])
	}
	s := strings.Join(words, " ")
	if !endsSentence(s) {
		s += "."
	}
	return s
}
