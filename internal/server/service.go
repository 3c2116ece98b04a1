package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/store"
)

// LexicalModel is what GetIndexInfo reports as the model when no embedding model is configured.
const LexicalModel = "lexical"

// maxListedRejections bounds the rejections listed in an IngestPapers response, so a stream of
// garbage cannot make the response itself too large to send.
const maxListedRejections = 1_000

// Service implements RecommenderService over the application: each handler decodes its request,
// validates the wire shape, calls the application and converts the answer. Handlers return
// plain Go errors; the interceptors installed by Listen turn them into statuses (see toStatus).
type Service struct {
	recommenderv1.UnimplementedRecommenderServiceServer
	app *app.App
}

// NewService returns the RecommenderService of a.
func NewService(a *app.App) *Service { return &Service{app: a} }

// App is the application the service serves.
func (s *Service) App() *app.App { return s.app }

// GetPaper implements RecommenderService.
func (s *Service) GetPaper(ctx context.Context, req *recommenderv1.GetPaperRequest) (*recommenderv1.GetPaperResponse, error) {
	id := CanonicalID(req.GetPaperId())
	v := &apierr.ValidationError{}
	checkID(v, "paper_id", id)
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
	p, err := s.app.Paper(ctx, id)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetPaperResponse{Paper: toProtoPaper(&p)}, nil
}

// UpsertPapers implements RecommenderService.
func (s *Service) UpsertPapers(ctx context.Context, req *recommenderv1.UpsertPapersRequest) (*recommenderv1.UpsertPapersResponse, error) {
	v := &apierr.ValidationError{}
	if n := len(req.GetPapers()); n == 0 || n > MaxBatch {
		v.Add("papers", "must hold 1 to %d papers, got %d", MaxBatch, n)
	}
	papers := make([]store.Paper, 0, len(req.GetPapers()))
	seen := map[string]int{}
	for i, in := range req.GetPapers() {
		field := fmt.Sprintf("papers[%d]", i)
		p := toStorePaper(v, field, in)
		if j, dup := seen[p.ID]; dup && p.ID != "" {
			v.Add(field+".id", "duplicates papers[%d] (%s)", j, p.ID)
		}
		seen[p.ID] = i
		papers = append(papers, p)
	}
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
	c, err := s.app.Upsert(ctx, papers)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.UpsertPapersResponse{Inserted: int32(c.Inserted), Updated: int32(c.Updated), Unchanged: int32(c.Unchanged)}, nil
}

// DeletePapers implements RecommenderService.
func (s *Service) DeletePapers(ctx context.Context, req *recommenderv1.DeletePapersRequest) (*recommenderv1.DeletePapersResponse, error) {
	v := &apierr.ValidationError{}
	if len(req.GetPaperIds()) == 0 {
		v.Add("paper_ids", "must hold 1 to %d ids, got 0", MaxBatch)
	}
	ids := idList(v, "paper_ids", req.GetPaperIds(), MaxBatch)
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
	notFound, err := s.app.Delete(ctx, ids)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.DeletePapersResponse{Deleted: int32(len(ids) - len(notFound)), NotFoundPaperIds: notFound}, nil
}

// IngestPapers implements RecommenderService: the messages' papers are checked one by one (an
// invalid one is rejected and listed, the others go on) and handed to the application's
// pipeline (app.Ingest), which embeds and writes them.
func (s *Service) IngestPapers(stream recommenderv1.RecommenderService_IngestPapersServer) error {
	resp := &recommenderv1.IngestPapersResponse{}
	var position int64
	c, err := s.app.Ingest(stream.Context(), func() ([]store.Paper, int64, error) {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		if err != nil {
			return nil, 0, err
		}
		if n := len(msg.GetPapers()); n > MaxBatch {
			return nil, 0, &apierr.ValidationError{Violations: []apierr.Violation{{Field: "papers",
				Description: fmt.Sprintf("a message holds %d papers, more than the limit of %d", n, MaxBatch)}}}
		}
		papers := make([]store.Paper, 0, len(msg.GetPapers()))
		var rejected int64
		for _, in := range msg.GetPapers() {
			v := &apierr.ValidationError{}
			p := toStorePaper(v, "paper", in)
			if len(v.Violations) > 0 {
				rejected++
				if len(resp.Rejections) < maxListedRejections {
					resp.Rejections = append(resp.Rejections, &recommenderv1.Rejection{
						PaperId: in.GetId(), Position: position, Reason: v.Error()})
				}
			} else {
				papers = append(papers, p)
			}
			position++
		}
		resp.Rejected += rejected
		return papers, rejected, nil
	})
	if err != nil {
		return err
	}
	resp.Inserted, resp.Updated, resp.Unchanged = c.Inserted, c.Updated, c.Unchanged
	return stream.SendAndClose(resp)
}

// GetIndexInfo implements RecommenderService.
func (s *Service) GetIndexInfo(ctx context.Context, _ *recommenderv1.GetIndexInfoRequest) (*recommenderv1.GetIndexInfoResponse, error) {
	in, err := s.app.Info(ctx)
	if err != nil {
		return nil, err
	}
	info := &recommenderv1.GetIndexInfoResponse{
		PaperCount:     in.Stats.PaperCount,
		StoreBackend:   in.Stats.Backend,
		EmbeddingModel: LexicalModel,
		IndexVersion:   in.Stats.IndexVersion,
	}
	if m := in.Model; m.Model != "" {
		info.EmbeddingModel, info.EmbeddingDimensions = m.Model, int32(m.Dimensions)
		info.EmbeddingQueryPrefix, info.EmbeddingDocumentPrefix = m.QueryPrefix, m.DocumentPrefix
		info.PapersWithVectors = in.WithVectors
	}
	if o := in.Other; o.Model != "" {
		info.OtherVectorSet = toProtoSet(o, in.OtherVectors)
		info.OtherVectorSet.Filling = in.Filling
	}
	if l := in.Lists; l.Length > 0 {
		info.NeighbourLists = &recommenderv1.NeighbourListsInfo{Length: int32(l.Length), Lists: l.Lists, Built: l.Built, PendingWrites: l.Pending}
	}
	return info, nil
}

// RetireVectorSet implements RecommenderService.
func (s *Service) RetireVectorSet(ctx context.Context, _ *recommenderv1.RetireVectorSetRequest) (*recommenderv1.RetireVectorSetResponse, error) {
	o, vectors, err := s.app.RetireVectorSet(ctx)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.RetireVectorSetResponse{Retired: toProtoSet(o, vectors)}, nil
}

func toProtoSet(o store.EmbeddingSpec, vectors int64) *recommenderv1.VectorSet {
	return &recommenderv1.VectorSet{Model: o.Model, Dimensions: int32(o.Dimensions), QueryPrefix: o.QueryPrefix,
		DocumentPrefix: o.DocumentPrefix, PapersWithVectors: vectors}
}
