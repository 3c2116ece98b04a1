package embedded_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/embedded"
)

// TestSnapshotOpensAsTheRecordsDo: a store reopened from the snapshot of its clean close answers
// exactly as one reopened from its records (lexical, dense in both vector sets, filters,
// explanations' idf, sketches), after deletes and updates; the snapshot is read once; a damaged
// or stale one is set aside, saying why, and the records read.
func TestSnapshotOpensAsTheRecordsDo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var logs bytes.Buffer
	opts := embedded.Options{Dir: dir, ANN: embedded.ANNOptions{ExactBelow: 1}, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	s, err := embedded.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	a := store.EmbeddingSpec{Model: "a", Dimensions: 8}
	b := store.EmbeddingSpec{Model: "b", Dimensions: 4}
	if _, err := s.BindEmbedding(ctx, a); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	vec := func(d int) []float32 {
		v := make([]float32, d)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	words := strings.Fields("graph neural network speech recognition robot policy privacy federated learning transformer attention vision language model retrieval ranking")
	var papers []store.Paper
	for i := range 400 {
		var text []string
		for range 12 {
			text = append(text, words[rng.IntN(len(words))])
		}
		title, abstract := fmt.Sprintf("Paper %d on %s", i, text[0]), strings.Join(text, " ")
		papers = append(papers, store.Paper{ID: fmt.Sprintf("p%03d", i), Title: title, Abstract: abstract, Year: int32(2000 + i%25), Date: fmt.Sprintf("%d-03-%02d", 2000+i%25, 1+i%28),
			Categories: []string{[]string{"cs.LG", "cs.CL", "cs.RO"}[i%3]}, Authors: []string{fmt.Sprintf("Author %d", i%17)},
			Lexical: lexical.Document(title, abstract), Dense: vec(8)})
	}
	if _, err := s.Upsert(ctx, papers); err != nil {
		t.Fatal(err)
	}
	var gone []string
	for i := 0; i < 400; i += 7 {
		gone = append(gone, papers[i].ID)
	}
	if _, err := s.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	papers[3].Title, papers[3].Date = "Retitled on attention", "2021-11-30"
	papers[3].Abstract += " rewritten with attention"
	papers[3].Lexical = lexical.Document(papers[3].Title, papers[3].Abstract)
	if _, err := s.Upsert(ctx, papers[3:4]); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginVectorSet(ctx, b); err != nil {
		t.Fatal(err)
	}
	todo, err := s.MissingVectors(ctx, "", 200)
	if err != nil {
		t.Fatal(err)
	}
	var in []store.SetVector
	for _, p := range todo {
		in = append(in, store.SetVector{ID: p.ID, TextKey: store.TextKey(p.Title, p.Abstract), Dense: vec(4)})
	}
	if _, err := s.PutVectors(ctx, in); err != nil {
		t.Fatal(err)
	}

	queries := []store.Query{
		{Lexical: lexical.Query("federated learning privacy"), Limit: 10},
		{Lexical: lexical.SeedQuery(papers[5].Lexical), Limit: 20, Filter: store.Filter{MinYear: 2010, Categories: []string{"cs.CL"}}},
		{Dense: vec(8), Limit: 10},
		{Dense: vec(4), DenseSet: b.Key(), Limit: 10},
		{Lexical: lexical.Query("robot vision"), Dense: vec(8), Limit: 10, Filter: store.Filter{Authors: []string{"author 3"}}},
		{Lexical: lexical.Query("attention transformer"), Dense: vec(8), Limit: 30},
	}
	answers := func(s *embedded.Store) []any {
		// Vectors still queued for the graph are scored exactly, linked ones by the graph's
		// rescoring, whose float32 sums can differ in the last bit: compare linked with linked.
		if err := s.WaitLinked(ctx); err != nil {
			t.Fatal(err)
		}
		var out []any
		for _, q := range queries {
			lists, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, h := range append(lists.Lexical, lists.Dense...) {
				ids = append(ids, h.ID)
			}
			for _, fields := range []store.Fields{0, store.AllFields, store.DenseVector | store.Sketch} {
				records, err := s.Read(ctx, ids, fields, q.DenseSet)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, records)
			}
			out = append(out, lists)
			// Brief reads come from memory: they must say what the records say.
			brief, _ := s.Read(ctx, ids, 0, "")
			for _, h := range brief {
				got, err := s.Get(ctx, []string{h.Paper.ID})
				if err != nil {
					t.Fatal(err)
				}
				if p := got[0]; h.Paper.Title != p.Title || h.Paper.Date != p.Date || h.Paper.Year != p.Year {
					t.Fatalf("brief read %q: %q %q %d, the record says %q %q %d", p.ID, h.Paper.Title, h.Paper.Date, h.Paper.Year, p.Title, p.Date, p.Year)
				}
			}
		}
		idf, _ := s.IDF(ctx, papers[5].Lexical.Indices)
		st, _ := s.VectorSetStatus(ctx)
		stats, _ := s.Stats(ctx)
		return append(out, idf, st, stats)
	}
	open := func() *embedded.Store { // with the log of this open only
		t.Helper()
		logs.Reset()
		s, err := embedded.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reopen := func(s *embedded.Store) *embedded.Store {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return open()
	}
	snap := filepath.Join(dir, "index.snap")
	before := answers(s)
	s = reopen(s)
	if _, err := os.Stat(snap); !os.IsNotExist(err) {
		t.Fatalf("the snapshot is still there after the open that read it: %v", err)
	}
	fromSnapshot := answers(s)
	s.Close() // a new snapshot; set aside: the next open reads the records
	if err := os.Remove(snap); err != nil {
		t.Fatal(err)
	}
	s = open()
	fromRecords := answers(s)
	if !reflect.DeepEqual(fromSnapshot, fromRecords) || !reflect.DeepEqual(before, fromRecords) {
		t.Fatalf("answers differ:\nbefore   %v\nsnapshot %v\nrecords  %v", before, fromSnapshot, fromRecords)
	}
	// Written after, the store goes on as usual: the new paper is found after another reopen.
	fresh := store.Paper{ID: "fresh", Title: "Fresh federated privacy", Lexical: lexical.Document("Fresh federated privacy", ""), Dense: vec(8)}
	if _, err := s.Upsert(ctx, []store.Paper{fresh}); err != nil {
		t.Fatal(err)
	}
	s = reopen(s)
	if hits, err := s.Search(ctx, store.Query{Lexical: lexical.Query("fresh"), Limit: 1}); err != nil || len(hits.Lexical) != 1 || hits.Lexical[0].ID != "fresh" {
		t.Fatalf("a paper written before the last close: %v (%v)", hits, err)
	}
	withFresh := answers(s)

	// A damaged snapshot is set aside, saying so, and the records read.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
	if err := os.WriteFile(snap, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open()
	if !strings.Contains(logs.String(), "level=WARN msg=\"index snapshot not used, a file of it is damaged") || !strings.Contains(logs.String(), "index.snap: checksum") {
		t.Fatalf("a damaged snapshot was not reported:\n%s", logs.String())
	}
	if got := answers(s); !reflect.DeepEqual(got, withFresh) {
		t.Fatalf("after a damaged snapshot: %v", got)
	}
	// A snapshot of an earlier state (copied back) is stale.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(snap)
	s = open()
	if _, err := s.Delete(ctx, []string{"fresh"}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := os.WriteFile(snap, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	if !strings.Contains(logs.String(), "the papers are at") {
		t.Fatalf("a stale snapshot was not reported:\n%s", logs.String())
	}
	if hits, _ := s.Search(ctx, store.Query{Lexical: lexical.Query("fresh"), Limit: 1}); len(hits.Lexical) != 0 {
		t.Fatalf("the stale snapshot's deleted paper came back: %v", hits)
	}
}

// TestWritesAfterASnapshotOpen: postings read from a snapshot live in read-only mapped memory;
// writes that add to them, and deletes that compact them, work on copies.
func TestWritesAfterASnapshotOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	var papers []store.Paper
	for i := range 3000 {
		title := fmt.Sprintf("Shared words paper %d", i)
		papers = append(papers, store.Paper{ID: fmt.Sprintf("w%04d", i), Title: title, Lexical: lexical.Document(title, "")})
	}
	if _, err := s.Upsert(ctx, papers); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = open(t, dir) // from the snapshot
	defer func() { _ = s.Close() }()
	// It shares one term with the others: the other terms' postings stay in the mapping until
	// the compaction below.
	extra := store.Paper{ID: "x", Title: "Shared", Lexical: lexical.Document("Shared", "")}
	if _, err := s.Upsert(ctx, []store.Paper{extra}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range papers[:2500] {
		ids = append(ids, p.ID)
	}
	if _, err := s.Delete(ctx, ids); err != nil { // enough to compact
		t.Fatal(err)
	}
	hits, err := s.Search(ctx, store.Query{Lexical: lexical.Query("shared"), Limit: 1000})
	if err != nil || len(hits.Lexical) != 501 {
		t.Fatalf("%d hits after the writes (%v), want the 500 left and x", len(hits.Lexical), err)
	}
}

// TestCloseWithinGivesUpTheSaves: a close whose time is up saves no snapshot and says so; the
// store reopens from its records with every paper, and a close in time saves the snapshot.
func TestCloseWithinGivesUpTheSaves(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var logs bytes.Buffer
	opts := embedded.Options{Dir: dir, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	s, err := embedded.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var papers []store.Paper
	for i := range 50 {
		title := fmt.Sprintf("Paper %d on graphs", i)
		papers = append(papers, store.Paper{ID: fmt.Sprintf("p%02d", i), Title: title, Lexical: lexical.Document(title, "")})
	}
	if _, err := s.Upsert(ctx, papers); err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.CloseWithin(expired); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.snap")); !os.IsNotExist(err) || !strings.Contains(logs.String(), "before the index snapshot was saved") {
		t.Fatalf("index.snap after a close out of time: %v; log:\n%s", err, logs.String())
	}
	if s, err = embedded.Open(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stats(ctx); err != nil || st.PaperCount != 50 {
		t.Fatalf("reopened: %+v, %v", st, err)
	}
	if err := s.CloseWithin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.snap")); err != nil {
		t.Fatalf("no index.snap after a close in time: %v", err)
	}
}
