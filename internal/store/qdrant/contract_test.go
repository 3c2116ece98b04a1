package qdrant_test

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/qdrant"
	"github.com/paperrec/recommender/internal/store/qdrant/qdranttest"
	"github.com/paperrec/recommender/internal/store/storetest"
)

// These tests run the adapter against the contract double (go-client's generated servers on
// loopback) and assert the exact requests it sends and how it handles Qdrant's error codes.

var ctx = context.Background()

func startDouble(t *testing.T) *qdranttest.Double {
	t.Helper()
	d, err := qdranttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

func openStore(t *testing.T, d *qdranttest.Double, tune func(*qdrant.Options)) *qdrant.Store {
	t.Helper()
	o := qdrant.Defaults()
	o.URL = d.URL()
	if tune != nil {
		tune(&o)
	}
	s, err := qdrant.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func methods(calls []qdranttest.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Method
	}
	return out
}

func TestBootstrapCreatesTheCollectionOnce(t *testing.T) {
	d := startDouble(t)
	s := openStore(t, d, nil)
	spec := store.EmbeddingSpec{Model: "text-embedding-3-small", Dimensions: 8}
	if got, err := s.BindEmbedding(ctx, spec); err != nil || got != spec {
		t.Fatalf("bind = %+v, %v", got, err)
	}
	creates := d.Calls("Collections/Create")
	if len(creates) != 1 {
		t.Fatalf("calls %v, want one Create", methods(d.Calls("")))
	}
	req := creates[0].Req.(*qc.CreateCollection)
	dense := req.GetVectorsConfig().GetParamsMap().GetMap()[qdrant.DenseVector]
	sparse := req.GetSparseVectorsConfig().GetMap()[qdrant.LexicalVector]
	if req.GetCollectionName() != "papers" || dense.GetSize() != 8 || dense.GetDistance() != qc.Distance_Cosine ||
		sparse.GetModifier() != qc.Modifier_Idf || req.GetMetadata()["embedding_model"].GetStringValue() != spec.Model {
		t.Fatalf("collection schema: %v", req)
	}
	var indexes []string
	for _, c := range d.Calls("Points/CreateFieldIndex") {
		r := c.Req.(*qc.CreateFieldIndexCollection)
		if !r.GetWait() {
			t.Errorf("index %s created without wait", r.GetFieldName())
		}
		indexes = append(indexes, r.GetFieldName()+":"+r.GetFieldType().String())
	}
	want := []string{"paper_id:FieldTypeKeyword", "categories:FieldTypeKeyword", "authors_norm:FieldTypeKeyword", "year:FieldTypeInteger",
		"written_seq:FieldTypeInteger"}
	if !slices.Equal(indexes, want) {
		t.Fatalf("payload indexes %v, want %v", indexes, want)
	}

	// A second replica (a second start) finds the collection and creates nothing.
	d.Reset()
	again := openStore(t, d, nil)
	if got, err := again.BindEmbedding(ctx, store.EmbeddingSpec{Model: spec.Model}); err != nil || got != spec {
		t.Fatalf("second bind = %+v, %v", got, err)
	}
	if got := methods(d.Calls("")); !slices.Equal(got, []string{"Collections/ListAliases", "Collections/CollectionExists", "Collections/Get"}) {
		t.Fatalf("second start sent %v", got)
	}
	// Another model or size is refused.
	for _, other := range []store.EmbeddingSpec{{Model: "other", Dimensions: 8}, {Model: spec.Model, Dimensions: 16}} {
		var mm *store.EmbeddingMismatchError
		if _, err := openStore(t, d, nil).BindEmbedding(ctx, other); !errors.As(err, &mm) {
			t.Fatalf("bind %+v: %v, want a mismatch", other, err)
		}
	}
}

func TestLexicalOnlyCollectionRefusesEmbeddings(t *testing.T) {
	d := startDouble(t)
	if st, err := openStore(t, d, nil).Stats(ctx); err != nil || st.PaperCount != 0 || len(d.Calls("Collections/Create")) != 0 {
		t.Fatalf("stats of a missing collection = %+v, %v; want an empty store and nothing created", st, err)
	}
	// The first write creates a lexical-only collection.
	if _, err := openStore(t, d, nil).Upsert(ctx, []store.Paper{storetest.Paper("a", "Lexical", "Only.")}); err != nil {
		t.Fatal(err)
	}
	req := d.Calls("Collections/Create")[0].Req.(*qc.CreateCollection)
	if req.GetVectorsConfig() != nil {
		t.Fatalf("lexical-only collection has dense vectors: %v", req.GetVectorsConfig())
	}
	_, err := openStore(t, d, nil).BindEmbedding(ctx, store.EmbeddingSpec{Model: "m", Dimensions: 8})
	if err == nil || !strings.Contains(err.Error(), "without a dense vector") {
		t.Fatalf("bind on a lexical-only collection: %v", err)
	}
}

func paper(id, title string, dense []float32) store.Paper {
	p := storetest.Paper(id, title, "An abstract about "+title+".")
	p.Authors, p.Categories, p.Year, p.Dense = []string{"Ada Lovelace"}, []string{"cs.IR"}, 2021, dense
	return p
}

func TestUpsertSendsPointsWithWait(t *testing.T) {
	d := startDouble(t)
	s := openStore(t, d, func(o *qdrant.Options) { o.BatchSize = 1 })
	if _, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "m", Dimensions: 2}); err != nil {
		t.Fatal(err)
	}
	papers := []store.Paper{paper("2103.12906", "Graph networks", []float32{1, 0}), paper("b", "Speech", []float32{0, 1})}
	d.Reset()
	out, err := s.Upsert(ctx, papers)
	if err != nil || !slices.Equal(out, []store.Outcome{store.Inserted, store.Inserted}) {
		t.Fatalf("upsert = %v, %v", out, err)
	}
	if got := methods(d.Calls("")); !slices.Equal(got, []string{"Points/Get", "Points/Upsert", "Points/Upsert"}) {
		t.Fatalf("calls %v: want a read of existing hashes, then one upsert per batch of 1", got)
	}
	up := d.Calls("Points/Upsert")[0].Req.(*qc.UpsertPoints)
	pt := up.GetPoints()[0]
	vecs := pt.GetVectors().GetVectors().GetVectors()
	if !up.GetWait() || pt.GetId().GetUuid() != qdrant.PointID("2103.12906") ||
		pt.GetPayload()["paper_id"].GetStringValue() != "2103.12906" ||
		pt.GetPayload()["authors_norm"].GetListValue().GetValues()[0].GetStringValue() != "ada lovelace" ||
		!slices.Equal(vecs[qdrant.DenseVector].GetDense().GetData(), []float32{1, 0}) ||
		!slices.Equal(vecs[qdrant.LexicalVector].GetSparse().GetIndices(), papers[0].Lexical.Indices) {
		t.Fatalf("point sent: %v", pt)
	}
	// Sparse values are BM25 document weights, not raw term frequencies.
	length := papers[0].Lexical.Sum()
	for i, w := range vecs[qdrant.LexicalVector].GetSparse().GetValues() {
		if want := lexical.BM25Weight(papers[0].Lexical.Values[i], length, float32(qdrant.Defaults().AverageLength)); w != want {
			t.Fatalf("sparse value %d = %v, want BM25 weight %v", i, w, want)
		}
	}
	// Re-upserting the same papers writes nothing.
	d.Reset()
	if out, err := s.Upsert(ctx, papers); err != nil || out[0] != store.Unchanged || len(d.Calls("Points/Upsert")) != 0 {
		t.Fatalf("re-upsert = %v, %v, %d upserts", out, err, len(d.Calls("Points/Upsert")))
	}
	// What was written reads back whole, term frequencies included.
	got, err := s.Get(ctx, []string{"2103.12906"})
	if err != nil {
		t.Fatal(err)
	}
	g, w := got[0], papers[0]
	if g.Title != w.Title || !slices.Equal(g.Authors, w.Authors) || g.Year != w.Year || !slices.Equal(g.Dense, w.Dense) ||
		!slices.Equal(g.Lexical.Indices, w.Lexical.Indices) || !slices.Equal(g.Lexical.Values, w.Lexical.Values) {
		t.Fatalf("read back %+v\nwant %+v", g, w)
	}
}

func TestQueriesUseTheQueryAPI(t *testing.T) {
	d := startDouble(t)
	s := openStore(t, d, nil)
	if _, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "m", Dimensions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upsert(ctx, []store.Paper{paper("a", "Graph networks", []float32{1, 0}), paper("b", "Graph speech", []float32{0.6, 0.8})}); err != nil {
		t.Fatal(err)
	}
	filter := store.Filter{MinYear: 2020, MaxYear: 2022, Categories: []string{"cs.IR"}, Authors: []string{"ADA  Lovelace"}, ExcludeIDs: []string{"x"}}
	lex := lexical.Query("graph networks")
	cases := []struct {
		name  string
		q     store.Query
		check func(*qc.QueryPoints) bool
	}{
		{"lexical", store.Query{Lexical: lex, Filter: filter, Limit: 5}, func(r *qc.QueryPoints) bool {
			sp := r.GetQuery().GetNearest().GetSparse()
			return r.GetUsing() == qdrant.LexicalVector && slices.Equal(sp.GetIndices(), lex.Indices) &&
				r.GetScoreThreshold() > 0 && len(r.GetPrefetch()) == 0
		}},
		{"dense", store.Query{Dense: []float32{1, 0}, Filter: filter, Limit: 5}, func(r *qc.QueryPoints) bool {
			return r.GetUsing() == qdrant.DenseVector && slices.Equal(r.GetQuery().GetNearest().GetDense().GetData(), []float32{1, 0})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d.Reset()
			lists, err := s.Search(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(lists.Lexical) + len(lists.Dense); n != 2 {
				t.Fatalf("%d hits from the double, want 2", n)
			}
			// The search sends the query alone: no payload beyond the paper id, no vectors.
			if len(d.Calls("Points/Query")) != 1 || len(d.Calls("Points/Get")) != 0 {
				t.Fatalf("%d queries and %d reads sent, want one query", len(d.Calls("Points/Query")), len(d.Calls("Points/Get")))
			}
			req := d.Calls("Points/Query")[0].Req.(*qc.QueryPoints)
			if inc := req.GetWithPayload().GetInclude().GetFields(); !slices.Equal(inc, []string{"paper_id"}) || req.GetWithVectors().GetEnable() {
				t.Fatalf("query reads %v and vectors %v, want the paper id alone", req.GetWithPayload(), req.GetWithVectors())
			}
			// Five hits plus a window of ids and scores for ordering ties by paper id.
			if req.GetLimit() != 5+64 || !tc.check(req) {
				t.Fatalf("query sent: %v", req)
			}
			f := req.GetFilter()
			r := f.GetMust()[0].GetField()
			if r.GetKey() != "year" || r.GetRange().GetGte() != 2020 || r.GetRange().GetLte() != 2022 ||
				f.GetMust()[1].GetField().GetMatch().GetKeywords().GetStrings()[0] != "cs.IR" ||
				f.GetMust()[2].GetField().GetMatch().GetKeywords().GetStrings()[0] != "ada lovelace" ||
				f.GetMustNot()[0].GetHasId().GetHasId()[0].GetUuid() != qdrant.PointID("x") {
				t.Fatalf("filter sent: %v", f)
			}
		})
	}
	// Both signals: both lists in one batch, each to the limit (plus the tie window), each
	// with its own scores.
	d.Reset()
	lists, err := s.Search(ctx, store.Query{Lexical: lex, Dense: []float32{1, 0}, Filter: filter, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	batch := d.Calls("Points/QueryBatch")
	if len(batch) != 1 || len(d.Calls("Points/Query")) != 0 || len(d.Calls("Points/Get")) != 0 {
		t.Fatalf("%d batches, %d single queries and %d reads sent, want one batch", len(batch), len(d.Calls("Points/Query")), len(d.Calls("Points/Get")))
	}
	qs := batch[0].Req.(*qc.QueryBatchPoints).GetQueryPoints()
	if len(qs) != 2 || qs[0].GetUsing() != qdrant.LexicalVector || qs[1].GetUsing() != qdrant.DenseVector ||
		qs[0].GetLimit() != 5+64 || qs[1].GetLimit() != 5+64 ||
		qs[0].GetFilter() == nil || qs[1].GetFilter() == nil || len(qs[0].GetPrefetch())+len(qs[1].GetPrefetch()) != 0 {
		t.Fatalf("batch sent: %v", qs)
	}
	// "a" matches both words and is the dense query's own direction; "b" one word.
	if len(lists.Lexical) != 2 || len(lists.Dense) != 2 || lists.Lexical[0].ID != "a" || lists.Lexical[1].Score <= 0 ||
		lists.Lexical[0].Score <= lists.Lexical[1].Score || lists.Dense[0].ID != "a" || lists.Dense[0].Score < 0.999 ||
		lists.Dense[1].Score < 0.599 || lists.Dense[1].Score > 0.601 {
		t.Fatalf("lists: %+v", lists)
	}
	// Read: one Get of the ids, with the payload and vectors the fields need.
	for _, tc := range []struct {
		fields  store.Fields
		include []string // nil: every field but content_hash
		vectors bool
	}{
		{0, []string{"paper_id", "title", "date", "year", "lexical_length"}, false},
		{store.Metadata, nil, false},
		{store.DenseVector | store.Sketch, []string{"paper_id", "title", "date", "year", "lexical_length"}, true},
		{store.AllFields, nil, true},
	} {
		d.Reset()
		records, err := s.Read(ctx, []string{"b", "gone", "a"}, tc.fields, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(records) != 2 || records[0].Paper.ID != "b" || records[1].Paper.ID != "a" {
			t.Fatalf("fields %b: records %+v, want b then a", tc.fields, records)
		}
		gets := d.Calls("Points/Get")
		if len(gets) != 1 {
			t.Fatalf("fields %b: %d reads sent, want 1", tc.fields, len(gets))
		}
		req := gets[0].Req.(*qc.GetPoints)
		sel := req.GetWithPayload()
		if len(req.GetIds()) != 3 || req.GetWithVectors().GetEnable() != tc.vectors ||
			(tc.include == nil && !slices.Equal(sel.GetExclude().GetFields(), []string{"content_hash"})) ||
			(tc.include != nil && !slices.Equal(sel.GetInclude().GetFields(), tc.include)) {
			t.Fatalf("fields %b: read sent %v", tc.fields, req)
		}
	}
}

func TestQdrantErrorsBecomeStoreErrors(t *testing.T) {
	d := startDouble(t)
	s := openStore(t, d, nil)
	if _, err := s.Upsert(ctx, []store.Paper{storetest.Paper("a", "Graph", "Graphs.")}); err != nil {
		t.Fatal(err)
	}
	q := store.Query{Lexical: lexical.Query("graph"), Limit: 3}

	d.Fail("Points/Query", qdranttest.Fault{Code: codes.Unavailable})
	var ue *store.UnavailableError
	if _, err := s.Search(ctx, q); !errors.As(err, &ue) {
		t.Fatalf("Unavailable: %v", err)
	}
	d.Fail("Points/Query", qdranttest.Fault{Code: codes.ResourceExhausted, RetryAfter: "3"})
	var re *store.ResourceExhaustedError
	if _, err := s.Search(ctx, q); !errors.As(err, &re) || re.RetryAfter != 3*time.Second {
		t.Fatalf("ResourceExhausted with retry-after 3: %v", err)
	}
	d.Fail("Points/Get", qdranttest.Fault{Code: codes.NotFound})
	if _, err := s.Get(ctx, []string{"a"}); !errors.As(err, &ue) || !strings.Contains(err.Error(), `collection "papers" not found`) {
		t.Fatalf("NotFound: %v", err)
	}
	// Papers that do not exist are the store's NotFound, naming them.
	var nf *store.NotFoundError
	if _, err := s.Get(ctx, []string{"nope"}); !errors.As(err, &nf) || nf.IDs[0] != "nope" {
		t.Fatalf("missing paper: %v", err)
	}
	// Ping follows the server down and back up.
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.Ping(short); !errors.As(err, &ue) {
		t.Fatalf("ping of a stopped Qdrant: %v", err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestAPIKeyNeedsTLSUnlessAllowed(t *testing.T) {
	d := startDouble(t)
	o := qdrant.Defaults()
	o.URL, o.APIKey = d.URL(), "qdrant-secret"
	if _, err := qdrant.Open(o); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Fatalf("API key over http: %v", err)
	}
	s := openStore(t, d, func(o *qdrant.Options) { o.APIKey, o.AllowInsecureAPIKey = "qdrant-secret", true })
	if _, err := s.Upsert(ctx, []store.Paper{storetest.Paper("a", "Keyed", "Write.")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range d.Calls("") {
		if c.APIKey != "qdrant-secret" {
			t.Fatalf("%s sent without the api-key header", c.Method)
		}
	}
}

func hostOf(t *testing.T, raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname()
}

func portOf(t *testing.T, raw string) int {
	u, err := neturl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		return 6334
	}
	return p
}

// TestSuiteThroughAdapterAgainstDouble runs the conformance suite through the adapter against
// the contract double. It checks the adapter's own logic (term weights and their inverse,
// filters, tie order, outcomes, fusion wiring) on every `go test`; it proves nothing about
// Qdrant's behaviour, which only TestConformance with QDRANT_URL does.
func TestSuiteThroughAdapterAgainstDouble(t *testing.T) {
	d := startDouble(t)
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		return openStore(t, d, func(o *qdrant.Options) {
			o.Collection = fmt.Sprintf("suite_%d", n)
			o.WriteSettle = 0 // one writer, no clocks to disagree
		})
	}, storetest.Features{})
}
