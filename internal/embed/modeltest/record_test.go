package modeltest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLiveCheckCatchesWhatChanged: the live check passes vectors the model gave, and names the
// one whose recorded copy moved in one dimension, and a query whose vector was made as a
// passage (what a server that ignores the prefixes would give).
func TestLiveCheckCatchesWhatChanged(t *testing.T) {
	s := Start(t)
	r := Record(s.Client(t))
	p := r.Prefixes()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	docs := []string{
		p.DocumentText("Message passing for quantum chemistry", "We predict molecular properties with neural networks on molecular graphs."),
		p.DocumentText("Soil nitrogen dynamics", "Field measurements of nitrate leaching under winter wheat."),
	}
	query := p.QueryText("graph neural networks for molecules")
	if _, err := r.Embed(ctx, append(docs, query)); err != nil {
		t.Fatal(err)
	}
	check := func(documents int, seed int64) LiveCheck {
		t.Helper()
		c, err := r.CheckLive(ctx, s, documents, seed)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(c)
		return c
	}
	if c := check(10, 1); len(c.Mismatches) != 0 || c.Documents != 2 || c.Queries != 1 || c.MinCosine < MinLiveCosine {
		t.Fatalf("unchanged vectors: %v", c)
	}
	// A draw of one document takes the same one for the same seed, and not always the same one.
	drawn := 0
	for seed := range int64(8) {
		r.vecs[docs[0]][7] += 0.1
		a, b := check(1, seed), check(1, seed)
		r.vecs[docs[0]][7] -= 0.1
		if a.Documents != 1 || len(a.Mismatches) != len(b.Mismatches) {
			t.Fatalf("seed %d: %v, then %v", seed, a, b)
		}
		drawn += len(a.Mismatches)
	}
	if drawn == 0 || drawn == 8 {
		t.Fatalf("eight seeds drew the changed document %d times: want sometimes, not always", drawn)
	}

	r.vecs[docs[1]][7] += 0.1
	if c := check(10, 1); len(c.Mismatches) != 1 || c.Mismatches[0].Text != docs[1] {
		t.Fatalf("one dimension of one vector moved by 0.1: %v %v", c, c.Mismatches)
	}
	r.vecs[docs[1]][7] -= 0.1

	asPassage, err := r.Embedder.Embed(ctx, []string{p.DocumentText(strings.TrimPrefix(query, p.Query), "")})
	if err != nil {
		t.Fatal(err)
	}
	r.vecs[query] = asPassage[0]
	if c := check(10, 1); len(c.Mismatches) != 1 || c.Mismatches[0].Text != query {
		t.Fatalf("a query recorded as a passage: %v %v", c, c.Mismatches)
	}
}
