package server

import (
	"context"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/app"
)

// SimilarPapers implements RecommenderService: validated as the Recommend request with the paper
// as its one seed, answered from the paper's list or by that request.
func (s *Service) SimilarPapers(ctx context.Context, req *recommenderv1.SimilarPapersRequest) (*recommenderv1.SimilarPapersResponse, error) {
	v := &apierr.ValidationError{}
	checkID(v, "paper_id", CanonicalID(req.GetPaperId()))
	if _, ok := recommenderv1.PaperView_name[int32(req.GetView())]; !ok {
		v.Add("view", "unknown value %d", req.GetView())
	}
	if err := v.ErrOrNil(); err != nil {
		return nil, err
	}
	asRecommend := &recommenderv1.RecommendRequest{PositivePaperIds: []string{req.GetPaperId()}, Filter: req.GetFilter(),
		PageSize: req.GetPageSize(), Mode: req.GetMode()}
	r, err := parseRecommend(asRecommend, s.app.Ranking())
	if err != nil {
		return nil, err
	}
	res, err := s.app.SimilarPapers(ctx, app.SimilarRequest{ID: r.Positive[0], PageSize: r.PageSize, Filter: r.Filter, Mode: r.Mode,
		Brief: req.GetView() == recommenderv1.PaperView_PAPER_VIEW_BRIEF})
	if err != nil {
		return nil, err
	}
	resp := &recommenderv1.SimilarPapersResponse{Source: recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_SEARCH,
		SearchReason: res.SearchReason, Mode: toProtoMode(res.Mode), EmbeddingModel: res.Model}
	if res.FromList {
		resp.Source = recommenderv1.NeighbourSource_NEIGHBOUR_SOURCE_LIST
	}
	for i := range res.Items {
		it := &res.Items[i]
		resp.Results = append(resp.Results, &recommenderv1.Recommendation{Paper: toProtoPaper(&it.Paper), Score: it.Score,
			Relevance: it.Relevance, DuplicatePaperIds: it.Duplicates})
	}
	return resp, nil
}

// ExportNeighbourLists implements RecommenderService.
func (s *Service) ExportNeighbourLists(req *recommenderv1.ExportNeighbourListsRequest, stream recommenderv1.RecommenderService_ExportNeighbourListsServer) error {
	after := ""
	if req.GetAfterPaperId() != "" {
		after = CanonicalID(req.GetAfterPaperId())
		v := &apierr.ValidationError{}
		checkID(v, "after_paper_id", after)
		if err := v.ErrOrNil(); err != nil {
			return err
		}
	}
	return s.app.ExportNeighbourLists(stream.Context(), after, func(lists []app.ExportedList) error {
		resp := &recommenderv1.ExportNeighbourListsResponse{Lists: make([]*recommenderv1.NeighbourList, len(lists))}
		for i, l := range lists {
			nl := &recommenderv1.NeighbourList{PaperId: l.ID, ComputedAt: l.ComputedAt.Format(time.RFC3339),
				Neighbours: make([]*recommenderv1.Neighbour, len(l.Entries))}
			for j, e := range l.Entries {
				nl.Neighbours[j] = &recommenderv1.Neighbour{PaperId: e.ID, Score: e.Score, Relevance: e.Relevance}
			}
			resp.Lists[i] = nl
		}
		return stream.Send(resp)
	})
}
