package modeltest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/embed"
	"github.com/paperrec/recommender/internal/store"
)

// MinLiveCosine is the least cosine allowed between a vector a test was given and the live
// model's vector of the same text: the engine is deterministic, so anything lower means the
// model, its package or the text sent changed since the vector was recorded.
const MinLiveCosine = 0.999

// SeedEnv replays a live check's draw: the check prints the seed it drew with.
const SeedEnv = "RECOMMENDER_LIVE_CHECK_SEED"

// Recorder is an Embedder that keeps every text it embedded with the vector it returned, so a
// test can check what the service was given against the live model.
type Recorder struct {
	embed.Embedder
	mu   sync.Mutex
	vecs map[string][]float32
}

// Record wraps e.
func Record(e embed.Embedder) *Recorder {
	return &Recorder{Embedder: e, vecs: map[string][]float32{}}
}

// Embed implements embed.Embedder.
func (r *Recorder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vecs, err := r.Embedder.Embed(ctx, texts)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range texts {
		r.vecs[t] = slices.Clone(vecs[i])
	}
	return vecs, nil
}

// Mismatch is a vector the live model does not reproduce.
type Mismatch struct {
	Text   string
	Cosine float64
}

// LiveCheck is what CheckLive compared.
type LiveCheck struct {
	Seed               int64
	Documents, Queries int // texts re-embedded
	DocumentsRecorded  int // documents to draw from
	MinCosine          float64
	Mismatches         []Mismatch
}

func (c LiveCheck) String() string {
	return fmt.Sprintf("live check (%s=%d replays it): re-embedded %d of %d documents drawn at random and every query (%d): least cosine %.5f, %d below %.3f",
		SeedEnv, c.Seed, c.Documents, c.DocumentsRecorded, c.Queries, c.MinCosine, len(c.Mismatches), MinLiveCosine)
}

// CheckLive re-embeds, through s's live route, documents texts drawn at random (by seed) from
// those r embedded with the document prefix, and every other text r embedded (the queries), and
// compares each with the vector r returned for it.
func (r *Recorder) CheckLive(ctx context.Context, s *Server, documents int, seed int64) (LiveCheck, error) {
	r.mu.Lock()
	var docs, queries []string
	for t := range r.vecs {
		if p := r.Prefixes().Document; p != "" && strings.HasPrefix(t, p) {
			docs = append(docs, t)
		} else {
			queries = append(queries, t)
		}
	}
	r.mu.Unlock()
	slices.Sort(docs) // the draw depends on the seed only, not on map order
	slices.Sort(queries)
	c := LiveCheck{Seed: seed, DocumentsRecorded: len(docs), MinCosine: 1}
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	rng.Shuffle(len(docs), func(i, j int) { docs[i], docs[j] = docs[j], docs[i] })
	texts := append(docs[:min(documents, len(docs))], queries...)
	c.Documents, c.Queries = len(texts)-len(queries), len(queries)
	cfg := s.Config()
	cfg.BaseURL, cfg.Prefixes = s.LiveURL, r.Prefixes()
	live, err := embed.New(cfg)
	if err != nil {
		return c, err
	}
	vecs, err := live.Embed(ctx, texts)
	if err != nil {
		return c, fmt.Errorf("live embedding: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range texts {
		cos := store.Cosine(r.vecs[t], vecs[i])
		c.MinCosine = min(c.MinCosine, cos)
		if cos < MinLiveCosine {
			c.Mismatches = append(c.Mismatches, Mismatch{Text: t, Cosine: cos})
		}
	}
	return c, nil
}

// RequireLive runs CheckLive with a new seed (or SeedEnv's), logs what it compared and fails the
// test for every mismatch.
func (r *Recorder) RequireLive(tb testing.TB, s *Server, documents int) {
	tb.Helper()
	seed := time.Now().UnixNano()
	if v := os.Getenv(SeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			tb.Fatalf("%s=%q: %v", SeedEnv, v, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := r.CheckLive(ctx, s, documents, seed)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Log(c)
	for _, m := range c.Mismatches {
		tb.Errorf("recorded vector of %.70q differs from the live model's: cosine %.5f, below %.3f", m.Text, m.Cosine, MinLiveCosine)
	}
}
