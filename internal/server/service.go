package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// LexicalModel is what GetIndexInfo reports as the model when no embedding model is configured.
const LexicalModel = "lexical"

// maxListedRejections bounds the rejections listed in an IngestPapers response, so a stream of
// garbage cannot make the response itself too large to send.
const maxListedRejections = 1_000

// Service implements RecommenderService over a store. Handlers return plain Go errors; the
// interceptors installed by NewGRPCServer turn them into statuses (see toStatus).
type Service struct {
	recommenderv1.UnimplementedRecommenderServiceServer
	store store.Store
}

// NewService returns a Service over st.
func NewService(st store.Store) *Service { return &Service{store: st} }

// Recommend implements RecommenderService.
func (s *Service) Recommend(ctx context.Context, req *recommenderv1.RecommendRequest) (*recommenderv1.RecommendResponse, error) {
	r, err := parseRecommend(req)
	if err != nil {
		return nil, err
	}
	switch r.mode {
	case recommenderv1.RetrievalMode_RETRIEVAL_MODE_DENSE, recommenderv1.RetrievalMode_RETRIEVAL_MODE_HYBRID:
		return nil, &PreconditionError{Reason: fmt.Sprintf(
			"retrieval mode %s needs an embedding model, and this server has none configured (set EMBEDDING_BASE_URL)", r.mode)}
	}
	q, err := s.lexicalQuery(ctx, r)
	if err != nil {
		return nil, err
	}
	limit := min(r.offset+r.pageSize, MaxResults)
	hits, err := s.store.Search(ctx, store.Query{Lexical: q, Filter: r.filter, Limit: limit})
	if err != nil {
		return nil, err
	}
	resp := &recommenderv1.RecommendResponse{Mode: recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL}
	if r.offset < len(hits) {
		for _, h := range hits[r.offset:] {
			resp.Results = append(resp.Results, &recommenderv1.Recommendation{Paper: toProtoPaper(&h.Paper), Score: h.Score})
		}
	}
	// A full page short of the paging bound may have a successor; an empty next page is
	// possible and fine (AIP-158 allows it).
	if len(hits) == limit && limit < MaxResults {
		resp.NextPageToken = r.pageToken.encode(limit)
	}
	return resp, nil
}

// lexicalQuery builds the query vector from the text and the seeds.
func (s *Service) lexicalQuery(ctx context.Context, r *recommendRequest) (lexical.Vector, error) {
	var positive, negative []lexical.Vector
	if r.query != "" {
		qv := lexical.Query(r.query)
		if qv.Len() == 0 {
			return lexical.Vector{}, &ValidationError{Violations: []Violation{{Field: "query",
				Description: "contains no searchable words (only stop words, numbers or punctuation)"}}}
		}
		positive = append(positive, qv)
	}
	for _, seeds := range []struct {
		ids []string
		out *[]lexical.Vector
	}{{r.positive, &positive}, {r.negative, &negative}} {
		if len(seeds.ids) == 0 {
			continue
		}
		papers, err := s.store.Get(ctx, seeds.ids)
		if err != nil {
			return lexical.Vector{}, fmt.Errorf("load seed papers: %w", err)
		}
		for _, p := range papers {
			*seeds.out = append(*seeds.out, lexical.SeedQuery(p.Lexical))
		}
	}
	return lexical.Combine(positive, negative), nil
}

// GetPaper implements RecommenderService.
func (s *Service) GetPaper(ctx context.Context, req *recommenderv1.GetPaperRequest) (*recommenderv1.GetPaperResponse, error) {
	id := CanonicalID(req.GetPaperId())
	v := &ValidationError{}
	checkID(v, "paper_id", id)
	if err := v.errOrNil(); err != nil {
		return nil, err
	}
	papers, err := s.store.Get(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetPaperResponse{Paper: toProtoPaper(&papers[0])}, nil
}

// UpsertPapers implements RecommenderService.
func (s *Service) UpsertPapers(ctx context.Context, req *recommenderv1.UpsertPapersRequest) (*recommenderv1.UpsertPapersResponse, error) {
	v := &ValidationError{}
	if n := len(req.GetPapers()); n == 0 || n > MaxBatch {
		v.add("papers", "must hold 1 to %d papers, got %d", MaxBatch, n)
	}
	papers := make([]store.Paper, 0, len(req.GetPapers()))
	seen := map[string]int{}
	for i, in := range req.GetPapers() {
		field := fmt.Sprintf("papers[%d]", i)
		p := toStorePaper(v, field, in)
		if j, dup := seen[p.ID]; dup && p.ID != "" {
			v.add(field+".id", "duplicates papers[%d] (%s)", j, p.ID)
		}
		seen[p.ID] = i
		papers = append(papers, p)
	}
	if err := v.errOrNil(); err != nil {
		return nil, err
	}
	outcomes, err := s.store.Upsert(ctx, papers)
	if err != nil {
		return nil, err
	}
	var c counts
	c.add(outcomes)
	return &recommenderv1.UpsertPapersResponse{Inserted: int32(c.inserted), Updated: int32(c.updated), Unchanged: int32(c.unchanged)}, nil
}

type counts struct{ inserted, updated, unchanged int64 }

func (c *counts) add(outcomes []store.Outcome) {
	for _, o := range outcomes {
		switch o {
		case store.Inserted:
			c.inserted++
		case store.Updated:
			c.updated++
		case store.Unchanged:
			c.unchanged++
		}
	}
}

// DeletePapers implements RecommenderService.
func (s *Service) DeletePapers(ctx context.Context, req *recommenderv1.DeletePapersRequest) (*recommenderv1.DeletePapersResponse, error) {
	v := &ValidationError{}
	if n := len(req.GetPaperIds()); n == 0 || n > MaxBatch {
		v.add("paper_ids", "must hold 1 to %d ids, got %d", MaxBatch, n)
	}
	ids := seedIDs(v, "paper_ids", req.GetPaperIds())
	if err := v.errOrNil(); err != nil {
		return nil, err
	}
	notFound, err := s.store.Delete(ctx, ids)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.DeletePapersResponse{Deleted: int32(len(ids) - len(notFound)), NotFoundPaperIds: notFound}, nil
}

// IngestPapers implements RecommenderService. Each message is validated paper by paper and its
// valid papers stored in one durable write before the next message is read, so a client that
// dies mid-stream loses only the batch in flight.
func (s *Service) IngestPapers(stream recommenderv1.RecommenderService_IngestPapersServer) error {
	ctx := stream.Context()
	resp := &recommenderv1.IngestPapersResponse{}
	var c counts
	var position int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if n := len(msg.GetPapers()); n > MaxBatch {
			return &ValidationError{Violations: []Violation{{Field: "papers",
				Description: fmt.Sprintf("a message holds %d papers, more than the limit of %d", n, MaxBatch)}}}
		}
		papers := make([]store.Paper, 0, len(msg.GetPapers()))
		for _, in := range msg.GetPapers() {
			v := &ValidationError{}
			p := toStorePaper(v, "paper", in)
			if len(v.Violations) > 0 {
				resp.Rejected++
				if len(resp.Rejections) < maxListedRejections {
					resp.Rejections = append(resp.Rejections, &recommenderv1.Rejection{
						PaperId: in.GetId(), Position: position, Reason: v.Error()})
				}
			} else {
				papers = append(papers, p)
			}
			position++
		}
		if len(papers) == 0 {
			continue
		}
		outcomes, err := s.store.Upsert(ctx, papers)
		if err != nil {
			return err
		}
		c.add(outcomes)
	}
	resp.Inserted, resp.Updated, resp.Unchanged = c.inserted, c.updated, c.unchanged
	return stream.SendAndClose(resp)
}

// GetIndexInfo implements RecommenderService.
func (s *Service) GetIndexInfo(ctx context.Context, _ *recommenderv1.GetIndexInfoRequest) (*recommenderv1.GetIndexInfoResponse, error) {
	st, err := s.store.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetIndexInfoResponse{
		PaperCount:     st.PaperCount,
		StoreBackend:   st.Backend,
		EmbeddingModel: LexicalModel,
		IndexVersion:   st.IndexVersion,
	}, nil
}
