package qdrant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	qc "github.com/qdrant/go-client/qdrant"

	"github.com/paperrec/recommender/internal/store"
)

// A move to another embedding model fills a new collection, named after the model, with a copy
// of every point carrying the new model's vector, while the current one serves; the alias
// <Collection>_other names it. The switch is one alias update, atomic in Qdrant:
// <Collection>_current then names the new collection and <Collection>_other the former, which
// stays (for a rollback) until RetireVectorSet deletes it. Replicas follow within AliasRefresh.

var _ store.VectorSets = (*Store)(nil)

// sourceHash is the payload field of a copied point holding the content hash of the point it
// was copied from: a copy is up to date while the two agree.
const sourceHash = "source_hash"

// refresh looks up the collections now, whatever the age of what the store knows.
func (s *Store) refresh(ctx context.Context) (bool, error) {
	s.mu.Lock()
	s.resolvedAt = time.Time{}
	s.mu.Unlock()
	return s.state(ctx, store.EmbeddingSpec{}, false)
}

// sets returns the current collection, its model and average length, and the other
// collection with its model.
func (s *Store) sets() (coll string, active store.EmbeddingSpec, avgLen float64, other string, otherSpec store.EmbeddingSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.coll, s.embedding, s.avgLen, s.other, s.otherSpec
}

// VectorSetStatus implements store.VectorSets. OtherVectors counts the points of the other
// collection, whether or not they are up to date.
func (s *Store) VectorSetStatus(ctx context.Context) (store.VectorSetStatus, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists {
		return store.VectorSetStatus{}, err
	}
	coll, active, _, other, otherSpec := s.sets()
	n, err := s.count(ctx, coll)
	if err != nil {
		return store.VectorSetStatus{}, err
	}
	st := store.VectorSetStatus{Active: active, Papers: int64(n)}
	if active.Model != "" {
		// Every point of a collection bound to a model is written with its vector: the service
		// embeds before it writes, and refuses to write lexically into a bound store.
		st.ActiveVectors = st.Papers
	}
	if other != "" {
		m, err := s.count(ctx, other)
		if err != nil {
			return store.VectorSetStatus{}, err
		}
		st.Other, st.OtherVectors = otherSpec, int64(m)
	}
	return st, nil
}

// setCollection names the collection of a model's vectors.
func (s *Store) setCollection(spec store.EmbeddingSpec) string {
	h := sha256.Sum256([]byte(spec.Key()))
	return s.opts.Collection + "_" + hex.EncodeToString(h[:4])
}

// BeginVectorSet implements store.VectorSets.
func (s *Store) BeginVectorSet(ctx context.Context, spec store.EmbeddingSpec) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if spec.Model == "" || spec.Dimensions <= 0 {
		return fmt.Errorf("begin a vector set: model and dimensions are required, got %+v", spec)
	}
	if _, err := s.refresh(ctx); err != nil {
		return err
	}
	if _, err := s.state(ctx, store.EmbeddingSpec{}, true); err != nil {
		return err
	}
	_, active, avgLen, other, otherSpec := s.sets()
	switch {
	case active.Key() == spec.Key():
		return store.ErrSetActive
	case other != "" && otherSpec.Key() == spec.Key():
		return nil
	case other != "":
		return fmt.Errorf("the store keeps vectors of %s beside the active ones; retire them before embedding with another model", otherSpec)
	}
	name := s.setCollection(spec)
	if err := s.create(ctx, name, spec, avgLen); err != nil {
		return err
	}
	if err := s.client.CreateAlias(ctx, s.otherAlias(), name); err != nil {
		return mapErr(name, err)
	}
	_, err := s.refresh(ctx)
	return err
}

// MissingVectors implements store.VectorSets: the current collection's points in point id
// order whose copy in the other collection is absent or out of date.
func (s *Store) MissingVectors(ctx context.Context, after string, limit int) ([]store.Paper, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	coll, other, _, err := s.otherSet(ctx)
	if err != nil {
		return nil, err
	}
	return s.missing(ctx, coll, other, after, limit)
}

// otherSet returns the current and the other collection, with the other's vector size;
// store.ErrNoOtherSet when there is none.
func (s *Store) otherSet(ctx context.Context) (coll, other string, dims int, err error) {
	if _, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil {
		return "", "", 0, err
	}
	coll, _, _, other, otherSpec := s.sets()
	if other == "" {
		return "", "", 0, store.ErrNoOtherSet
	}
	return coll, other, otherSpec.Dimensions, nil
}

func (s *Store) missing(ctx context.Context, coll, other, after string, limit int) ([]store.Paper, error) {
	var out []store.Paper
	var offset *qc.PointId
	if after != "" {
		offset = qc.NewID(PointID(after)) // inclusive: that paper is skipped below
	}
	page := uint32(max(limit, 256))
	for len(out) < limit {
		pts, next, err := s.client.ScrollAndOffset(ctx, &qc.ScrollPoints{CollectionName: coll, Offset: offset, Limit: &page,
			WithPayload: qc.NewWithPayloadExclude(writtenSeq)})
		if err != nil {
			return nil, mapErr(coll, err)
		}
		ids := make([]string, len(pts))
		for i, pt := range pts {
			ids[i] = pt.GetPayload()["paper_id"].GetStringValue()
		}
		copies, err := s.fetch(ctx, other, ids, qc.NewWithPayloadInclude("paper_id", sourceHash, "title", "abstract", "dense_hash"), true)
		if err != nil {
			return nil, err
		}
		copied := make(map[string]*qc.RetrievedPoint, len(copies))
		for _, c := range copies {
			copied[c.GetPayload()["paper_id"].GetStringValue()] = c
		}
		// A copy of another version of the paper with the same text keeps its vector: it is
		// copied again here, without embedding.
		var recopy []store.SetVector
		for i, pt := range pts {
			pl := pt.GetPayload()
			c := copied[ids[i]]
			if ids[i] == after || c != nil && c.GetPayload()[sourceHash].GetStringValue() == pl["content_hash"].GetStringValue() {
				continue
			}
			p := fromPayload(pl)
			if c != nil {
				if key := store.TextKey(p.Title, p.Abstract); key == store.TextKey(c.GetPayload()["title"].GetStringValue(), c.GetPayload()["abstract"].GetStringValue()) {
					_, dense := vectorsOf(c.GetVectors(), c.GetPayload(), 1)
					recopy = append(recopy, store.SetVector{ID: p.ID, TextKey: key, Dense: dense, DenseHash: c.GetPayload()["dense_hash"].GetStringValue()})
					continue
				}
			}
			out = append(out, p)
			if len(out) == limit {
				break
			}
		}
		if len(recopy) > 0 {
			if _, err := s.copyWith(ctx, coll, other, len(recopy[0].Dense), recopy); err != nil {
				return nil, err
			}
		}
		if next == nil {
			break
		}
		offset = next
	}
	return out, nil
}

// PutVectors implements store.VectorSets.
func (s *Store) PutVectors(ctx context.Context, vectors []store.SetVector) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	coll, other, dims, err := s.otherSet(ctx)
	if err != nil {
		return nil, err
	}
	return s.copyWith(ctx, coll, other, dims, vectors)
}

// copyWith copies the points of the vectors' papers from one collection to another, each with
// its new vector; a paper gone from the first, or whose text is not the vector's, is skipped
// and returned.
func (s *Store) copyWith(ctx context.Context, from, to string, dims int, vectors []store.SetVector) ([]string, error) {
	_, _, avgLen, _, _ := s.sets() // both collections share it (BeginVectorSet)
	ids := make([]string, len(vectors))
	for i, v := range vectors {
		if len(v.Dense) != dims {
			return nil, fmt.Errorf("paper %q: a vector of %d dimensions for a set of %d", v.ID, len(v.Dense), dims)
		}
		ids[i] = v.ID
	}
	src, err := s.fetch(ctx, from, ids, qc.NewWithPayload(true), true)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*qc.RetrievedPoint, len(src))
	for _, pt := range src {
		byID[pt.GetPayload()["paper_id"].GetStringValue()] = pt
	}
	var skipped []string
	var points []*qc.PointStruct
	for _, v := range vectors {
		pt := byID[v.ID]
		if pt == nil {
			skipped = append(skipped, v.ID)
			continue
		}
		pl := pt.GetPayload()
		p := fromPayload(pl)
		if store.TextKey(p.Title, p.Abstract) != v.TextKey {
			skipped = append(skipped, v.ID)
			continue
		}
		sparse := pt.GetVectors().GetVectors().GetVectors()[LexicalVector].GetSparse()
		// The hash an Upsert of this paper would compute, so re-sending it is a no-op.
		p.Lexical, _ = vectorsOf(pt.GetVectors(), pl, avgLen)
		p.Dense, p.DenseHash = v.Dense, v.DenseHash
		pl[sourceHash] = pl["content_hash"]
		pl["dense_hash"] = qc.NewValueString(v.DenseHash)
		pl["content_hash"] = qc.NewValueString(store.ContentHash(&p))
		points = append(points, &qc.PointStruct{Id: pt.GetId(), Payload: pl, Vectors: qc.NewVectorsMap(map[string]*qc.Vector{
			LexicalVector: qc.NewVectorSparse(sparse.GetIndices(), sparse.GetValues()), DenseVector: qc.NewVectorDense(v.Dense)})})
	}
	wait := true
	for start := 0; start < len(points); start += s.opts.BatchSize {
		batch := points[start:min(start+s.opts.BatchSize, len(points))]
		if _, err := s.client.Upsert(ctx, &qc.UpsertPoints{CollectionName: to, Wait: &wait, Points: batch}); err != nil {
			return nil, mapErr(to, err)
		}
	}
	return skipped, nil
}

// SwitchVectorSet implements store.VectorSets. Before the alias update, the last papers without
// an up-to-date copy are embedded (fill) and copies of papers deleted meanwhile removed; after
// it, for AliasRefresh and WriteSettle, writes that replicas not yet following still make to the
// former collection are copied over (fill again), so none is lost.
func (s *Store) SwitchVectorSet(ctx context.Context, to store.EmbeddingSpec, fill store.FillFunc) error {
	if _, err := s.refresh(ctx); err != nil {
		return err
	}
	coll, active, _, other, otherSpec := s.sets()
	switch {
	case active.Key() == to.Key():
		return nil
	case other == "":
		return store.ErrNoOtherSet
	case otherSpec.Key() != to.Key():
		return fmt.Errorf("the other vector set is of %s, not %s", otherSpec, to)
	}
	since := time.Now().Add(-s.opts.WriteSettle)
	if err := s.completeCopy(ctx, coll, other, otherSpec.Dimensions, fill); err != nil {
		return err
	}
	actions := []*qc.AliasOperations{qc.NewAliasCreate(s.currentAlias(), other), qc.NewAliasDelete(s.otherAlias()),
		qc.NewAliasCreate(s.otherAlias(), coll)}
	if coll != s.opts.Collection { // the current alias exists
		actions = append([]*qc.AliasOperations{qc.NewAliasDelete(s.currentAlias())}, actions...)
	}
	if err := s.client.UpdateAliases(ctx, actions); err != nil {
		return mapErr(coll, err)
	}
	if _, err := s.refresh(ctx); err != nil {
		return err
	}
	return s.follow(ctx, coll, other, otherSpec.Dimensions, since, fill)
}

// completeCopy gives every paper of coll an up-to-date copy in other, embedding the few still
// without one (fill), and removes copies of papers coll no longer has. Writes go on meanwhile:
// what they change after the look for missing copies is left to follow.
func (s *Store) completeCopy(ctx context.Context, coll, other string, dims int, fill store.FillFunc) error {
	missing, err := s.missing(ctx, coll, other, "", store.MaxSwitchFill+1)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		if fill == nil || len(missing) > store.MaxSwitchFill {
			return &store.IncompleteSetError{Missing: int64(len(missing))}
		}
		vectors, err := fill(ctx, missing)
		if err != nil {
			return err
		}
		skipped, err := s.copyWith(ctx, coll, other, dims, vectors)
		if err != nil {
			return err
		}
		if n := len(missing) - len(vectors) + len(skipped); n > 0 {
			return &store.IncompleteSetError{Missing: int64(n)}
		}
	}
	// Papers written since the look for missing ones are copied by follow.
	return s.dropStrays(ctx, coll, other)
}

// dropStrays deletes the points of other whose paper coll no longer has (deleted while it was
// being copied).
func (s *Store) dropStrays(ctx context.Context, coll, other string) error {
	page := uint32(1024)
	var offset *qc.PointId
	for {
		pts, next, err := s.client.ScrollAndOffset(ctx, &qc.ScrollPoints{CollectionName: other, Offset: offset, Limit: &page,
			WithPayload: qc.NewWithPayloadInclude("paper_id")})
		if err != nil {
			return mapErr(other, err)
		}
		ids := make([]string, len(pts))
		for i, pt := range pts {
			ids[i] = pt.GetPayload()["paper_id"].GetStringValue()
		}
		found, err := s.fetch(ctx, coll, ids, qc.NewWithPayloadInclude("paper_id"), false)
		if err != nil {
			return err
		}
		have := make(map[string]bool, len(found))
		for _, f := range found {
			have[f.GetPayload()["paper_id"].GetStringValue()] = true
		}
		var strays []*qc.PointId
		for i, pt := range pts {
			if !have[ids[i]] {
				strays = append(strays, pt.GetId())
			}
		}
		if len(strays) > 0 {
			if err := s.deletePoints(ctx, other, strays); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		offset = next
	}
}

// followEvery is how often the former collection's write log is read after a switch.
const followEvery = 200 * time.Millisecond

// follow copies into the new current collection the writes made to the former one since the
// given time, until replicas have followed the switch (AliasRefresh) and their writes settled.
func (s *Store) follow(ctx context.Context, former, current string, dims int, since time.Time, fill store.FillFunc) error {
	until := time.Now().Add(s.opts.AliasRefresh + s.opts.WriteSettle)
	after := store.Cursor{Seq: uint64(since.UnixMicro())}
	for {
		last := !time.Now().Before(until)
		for {
			changes, err := s.changesIn(ctx, former, after, uint64(time.Now().UnixMicro()), 256)
			if err != nil {
				return err
			}
			if len(changes) == 0 {
				break
			}
			after = changes[len(changes)-1].Cursor
			ids := make([]string, len(changes))
			for i, c := range changes {
				ids[i] = c.ID
			}
			stale, err := s.staleCopies(ctx, former, current, ids)
			if err != nil {
				return err
			}
			if len(stale) == 0 || fill == nil {
				continue
			}
			vectors, err := fill(ctx, stale)
			if err != nil {
				return err
			}
			if _, err := s.copyWith(ctx, former, current, dims, vectors); err != nil {
				return err
			}
		}
		if last {
			return nil
		}
		t := time.NewTimer(followEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// staleCopies returns the papers of from (among ids) whose copy in to is absent or older.
func (s *Store) staleCopies(ctx context.Context, from, to string, ids []string) ([]store.Paper, error) {
	src, err := s.fetch(ctx, from, ids, qc.NewWithPayload(true), false)
	if err != nil {
		return nil, err
	}
	dst, err := s.fetch(ctx, to, ids, qc.NewWithPayloadInclude("paper_id", sourceHash, "content_hash"), false)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, d := range dst {
		pl := d.GetPayload()
		// A copy made from this version, or the point written here directly since.
		have[pl["paper_id"].GetStringValue()+"\x00"+pl[sourceHash].GetStringValue()] = true
		have[pl["paper_id"].GetStringValue()+"\x00"+pl["content_hash"].GetStringValue()] = true
	}
	var out []store.Paper
	for _, p := range src {
		pl := p.GetPayload()
		if !have[pl["paper_id"].GetStringValue()+"\x00"+pl["content_hash"].GetStringValue()] {
			out = append(out, fromPayload(pl))
		}
	}
	return out, nil
}

// RetireVectorSet implements store.VectorSets.
func (s *Store) RetireVectorSet(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.refresh(ctx); err != nil {
		return err
	}
	coll, _, _, other, _ := s.sets()
	if other == "" || other == coll {
		return store.ErrNoOtherSet
	}
	if err := s.client.DeleteAlias(ctx, s.otherAlias()); err != nil {
		return mapErr(other, err)
	}
	if err := s.client.DeleteCollection(ctx, other); err != nil {
		return mapErr(other, err)
	}
	_, err := s.refresh(ctx)
	return err
}
