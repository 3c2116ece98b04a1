package qdrant

import (
	"context"
	"encoding/base64"
	"fmt"

	qc "github.com/qdrant/go-client/qdrant"

	"github.com/paperrec/recommender/internal/store"
)

var _ store.NeighbourLists = (*Store)(nil)

// listsStateID names the point holding the lists' upkeep state: no paper id has a NUL.
var listsStateID = PointID("\x00neighbour lists state")

func (s *Store) listsCollection() string { return s.opts.Collection + "_lists" }

// ensureLists creates the neighbour lists collection, payload only, once: one point per list,
// at its paper's point id, the list in its payload.
func (s *Store) ensureLists(ctx context.Context) error {
	s.listsMu.Lock()
	defer s.listsMu.Unlock()
	return s.ensurePayloadCollection(ctx, s.listsCollection(), &s.listsOK)
}

// listsKept reports whether the lists collection exists, without creating it (a store whose
// service keeps no lists has none).
func (s *Store) listsKept(ctx context.Context) (bool, error) {
	s.listsMu.Lock()
	defer s.listsMu.Unlock()
	if s.listsOK {
		return true, nil
	}
	exists, err := s.client.CollectionExists(ctx, s.listsCollection())
	if err != nil {
		return false, mapErr(s.listsCollection(), err)
	}
	s.listsOK = exists
	return exists, nil
}

// PutLists implements store.NeighbourLists: the lists of papers still stored, in one upsert.
func (s *Store) PutLists(ctx context.Context, lists []store.ListRecord) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if len(lists) == 0 {
		return nil
	}
	if err := s.ensureLists(ctx); err != nil {
		return err
	}
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists {
		return err
	}
	coll, _, _, _, _ := s.sets()
	ids := make([]string, len(lists))
	for i, l := range lists {
		ids[i] = l.ID
	}
	stored, err := s.fetch(ctx, coll, ids, qc.NewWithPayloadInclude("paper_id"), false)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(stored))
	for _, p := range stored {
		have[p.GetPayload()["paper_id"].GetStringValue()] = true
	}
	var points []*qc.PointStruct
	for _, l := range lists {
		if have[l.ID] {
			points = append(points, payloadPoint(PointID(l.ID), map[string]any{"paper_id": l.ID, "data": base64.StdEncoding.EncodeToString(l.Data)}))
		}
	}
	return s.upsertPayloads(ctx, points)
}

func payloadPoint(id string, payload map[string]any) *qc.PointStruct {
	return &qc.PointStruct{Id: qc.NewID(id), Vectors: qc.NewVectorsMap(map[string]*qc.Vector{}), Payload: qc.NewValueMap(payload)}
}

func (s *Store) upsertPayloads(ctx context.Context, points []*qc.PointStruct) error {
	if len(points) == 0 {
		return nil
	}
	wait := true
	_, err := s.client.Upsert(ctx, &qc.UpsertPoints{CollectionName: s.listsCollection(), Wait: &wait, Points: points})
	return mapErr(s.listsCollection(), err)
}

// listRecord decodes a list point; ok is false for the state point.
func listRecord(p interface{ GetPayload() map[string]*qc.Value }) (store.ListRecord, bool, error) {
	pl := p.GetPayload()
	id := pl["paper_id"].GetStringValue()
	if id == "" {
		return store.ListRecord{}, false, nil
	}
	b, err := base64.StdEncoding.DecodeString(pl["data"].GetStringValue())
	if err != nil {
		return store.ListRecord{}, false, fmt.Errorf("neighbour list of %s: %w", id, err)
	}
	return store.ListRecord{ID: id, Data: b}, true, nil
}

// Lists implements store.NeighbourLists.
func (s *Store) Lists(ctx context.Context, ids []string) ([]store.ListRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureLists(ctx); err != nil {
		return nil, err
	}
	points, err := s.fetch(ctx, s.listsCollection(), ids, qc.NewWithPayload(true), false)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.ListRecord, len(points))
	for _, p := range points {
		r, ok, err := listRecord(p)
		if err != nil {
			return nil, err
		}
		if ok {
			byID[r.ID] = r
		}
	}
	var out []store.ListRecord
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// ScanLists implements store.NeighbourLists, in point id order.
func (s *Store) ScanLists(ctx context.Context, after string, limit int) ([]store.ListRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureLists(ctx); err != nil {
		return nil, err
	}
	var offset *qc.PointId
	if after != "" {
		offset = qc.NewID(PointID(after))
	}
	var out []store.ListRecord
	for len(out) < limit {
		n := uint32(min(limit-len(out)+2, 1000)) // the offset itself and the state point may come too
		resp, err := s.client.GetPointsClient().Scroll(ctx, &qc.ScrollPoints{CollectionName: s.listsCollection(),
			Offset: offset, Limit: &n, WithPayload: qc.NewWithPayload(true)})
		if err != nil {
			return nil, mapErr(s.listsCollection(), err)
		}
		for _, p := range resp.GetResult() {
			r, ok, err := listRecord(p)
			if err != nil {
				return nil, err
			}
			if ok && r.ID != after && len(out) < limit {
				out = append(out, r)
			}
		}
		if offset = resp.GetNextPageOffset(); offset == nil {
			break
		}
	}
	return out, nil
}

// CountLists implements store.NeighbourLists.
func (s *Store) CountLists(ctx context.Context) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureLists(ctx); err != nil {
		return 0, err
	}
	exact := true
	n, err := s.client.Count(ctx, &qc.CountPoints{CollectionName: s.listsCollection(), Exact: &exact,
		Filter: &qc.Filter{MustNot: []*qc.Condition{qc.NewIsEmpty("paper_id")}}})
	return int64(n), mapErr(s.listsCollection(), err)
}

// ListsState implements store.NeighbourLists.
func (s *Store) ListsState(ctx context.Context) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureLists(ctx); err != nil {
		return nil, err
	}
	pts, err := s.client.Get(ctx, &qc.GetPoints{CollectionName: s.listsCollection(), Ids: []*qc.PointId{qc.NewID(listsStateID)},
		WithPayload: qc.NewWithPayload(true)})
	if err != nil || len(pts) == 0 {
		return nil, mapErr(s.listsCollection(), err)
	}
	return base64.StdEncoding.DecodeString(pts[0].GetPayload()["state"].GetStringValue())
}

// PutListsState implements store.NeighbourLists.
func (s *Store) PutListsState(ctx context.Context, state []byte) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureLists(ctx); err != nil {
		return err
	}
	return s.upsertPayloads(ctx, []*qc.PointStruct{payloadPoint(listsStateID, map[string]any{"state": base64.StdEncoding.EncodeToString(state)})})
}

// ResetLists implements store.NeighbourLists: every point deleted, the collection kept (readers
// and other replicas go on using it).
func (s *Store) ResetLists(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureLists(ctx); err != nil {
		return err
	}
	wait := true
	_, err := s.client.Delete(ctx, &qc.DeletePoints{CollectionName: s.listsCollection(), Wait: &wait,
		Points: qc.NewPointsSelectorFilter(&qc.Filter{})})
	return mapErr(s.listsCollection(), err)
}
