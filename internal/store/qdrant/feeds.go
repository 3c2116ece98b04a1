package qdrant

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"

	"github.com/paperrec/recommender/internal/store"
)

var (
	_ store.Feeds     = (*Store)(nil)
	_ store.ChangeLog = (*Store)(nil)
)

// writtenSeq is the payload field ordering writes: the writing process's clock in unix
// microseconds, made unique within the process (a float64 range filter holds them exactly).
// Replicas can give out the same value; the paper id breaks such ties (store.Cursor).
const writtenSeq = "written_seq"

// pollEvery is how often a stream looks for writes: replicas share no notification.
const pollEvery = time.Second

func (s *Store) nextSeq() uint64 {
	for {
		last := s.lastSeq.Load()
		next := max(last+1, uint64(time.Now().UnixMicro()))
		if s.lastSeq.CompareAndSwap(last, next) {
			return next
		}
	}
}

func (s *Store) feedsCollection() string { return s.opts.Collection + "_feeds" }

// ensureFeeds creates the feeds collection, payload only, once.
func (s *Store) ensureFeeds(ctx context.Context) error {
	s.feedsMu.Lock()
	defer s.feedsMu.Unlock()
	return s.ensurePayloadCollection(ctx, s.feedsCollection(), &s.feedsOK)
}

// ensurePayloadCollection creates a collection of payloads alone (one shard, the papers'
// replication) unless *ok says it exists; the caller holds the mutex guarding ok.
func (s *Store) ensurePayloadCollection(ctx context.Context, name string, ok *bool) error {
	if *ok {
		return nil
	}
	exists, err := s.client.CollectionExists(ctx, name)
	if err != nil {
		return mapErr(name, err)
	}
	if !exists {
		err := s.client.CreateCollection(ctx, &qc.CreateCollection{CollectionName: name,
			ShardNumber: ptr(uint32(1)), ReplicationFactor: ptr(s.opts.Replicas)})
		if err != nil && !alreadyExists(err) {
			return mapErr(name, err)
		}
	}
	*ok = true
	return nil
}

// PutFeed implements store.Feeds: one point per feed (feed ids are UUIDs, valid point ids),
// the record in its payload.
func (s *Store) PutFeed(ctx context.Context, id string, data []byte) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureFeeds(ctx); err != nil {
		return err
	}
	wait := true
	_, err := s.client.Upsert(ctx, &qc.UpsertPoints{CollectionName: s.feedsCollection(), Wait: &wait, Points: []*qc.PointStruct{{
		Id: qc.NewID(id), Vectors: qc.NewVectorsMap(map[string]*qc.Vector{}),
		Payload: qc.NewValueMap(map[string]any{"feed_id": id, "data": base64.StdEncoding.EncodeToString(data)}),
	}}})
	return mapErr(s.feedsCollection(), err)
}

// GetFeed implements store.Feeds.
func (s *Store) GetFeed(ctx context.Context, id string) ([]byte, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureFeeds(ctx); err != nil {
		return nil, err
	}
	if !validUUID(id) {
		return nil, store.ErrFeedNotFound
	}
	pts, err := s.client.Get(ctx, &qc.GetPoints{CollectionName: s.feedsCollection(), Ids: []*qc.PointId{qc.NewID(id)},
		WithPayload: qc.NewWithPayload(true)})
	if err != nil {
		return nil, mapErr(s.feedsCollection(), err)
	}
	if len(pts) == 0 {
		return nil, store.ErrFeedNotFound
	}
	return feedData(pts[0].GetPayload())
}

func feedData(pl map[string]*qc.Value) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(pl["data"].GetStringValue())
	if err != nil {
		return nil, fmt.Errorf("feed %s: %w", pl["feed_id"].GetStringValue(), err)
	}
	return b, nil
}

// ListFeeds implements store.Feeds.
func (s *Store) ListFeeds(ctx context.Context) ([]store.FeedRecord, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.ensureFeeds(ctx); err != nil {
		return nil, err
	}
	var out []store.FeedRecord
	var offset *qc.PointId
	for {
		limit := uint32(1000)
		resp, err := s.client.GetPointsClient().Scroll(ctx, &qc.ScrollPoints{CollectionName: s.feedsCollection(),
			Offset: offset, Limit: &limit, WithPayload: qc.NewWithPayload(true)})
		if err != nil {
			return nil, mapErr(s.feedsCollection(), err)
		}
		for _, p := range resp.GetResult() {
			b, err := feedData(p.GetPayload())
			if err != nil {
				return nil, err
			}
			out = append(out, store.FeedRecord{ID: p.GetPayload()["feed_id"].GetStringValue(), Data: b})
		}
		if offset = resp.GetNextPageOffset(); offset == nil {
			break
		}
	}
	slices.SortFunc(out, func(a, b store.FeedRecord) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteFeed implements store.Feeds.
func (s *Store) DeleteFeed(ctx context.Context, id string) error {
	if _, err := s.GetFeed(ctx, id); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	wait := true
	_, err := s.client.Delete(ctx, &qc.DeletePoints{CollectionName: s.feedsCollection(), Wait: &wait,
		Points: qc.NewPointsSelector(qc.NewID(id))})
	return mapErr(s.feedsCollection(), err)
}

// validUUID reports whether id can be a point id: feed ids are UUIDs, anything else names no feed.
func validUUID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil
}

// horizon is the newest write sequence streams may see: older than WriteSettle.
func (s *Store) horizon() uint64 {
	return uint64(time.Now().Add(-s.opts.WriteSettle).UnixMicro())
}

// ensureLogIndex adds the write sequence's payload index to a collection made before it existed.
func (s *Store) ensureLogIndex(ctx context.Context) error {
	s.feedsMu.Lock()
	defer s.feedsMu.Unlock()
	if s.logIndex {
		return nil
	}
	wait := true
	coll, _, _, _, _ := s.sets()
	if _, err := s.client.CreateFieldIndex(ctx, &qc.CreateFieldIndexCollection{CollectionName: coll,
		FieldName: writtenSeq, FieldType: qc.FieldType_FieldTypeInteger.Enum(), Wait: &wait}); err != nil {
		return mapErr(coll, err)
	}
	s.logIndex = true
	return nil
}

// Changes implements store.ChangeLog: the papers by write sequence, then id, up to the horizon.
// A paper written again moves to its new place; a deleted one leaves the log.
func (s *Store) Changes(ctx context.Context, after store.Cursor, limit int) ([]store.Change, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if exists, err := s.state(ctx, store.EmbeddingSpec{}, false); err != nil || !exists {
		return nil, err // no collection yet: no writes
	}
	if err := s.ensureLogIndex(ctx); err != nil {
		return nil, err
	}
	coll, _, _, _, _ := s.sets()
	return s.changesIn(ctx, coll, after, s.horizon(), limit)
}

// changesIn reads the write log of one collection, up to the write sequence to.
func (s *Store) changesIn(ctx context.Context, coll string, after store.Cursor, to uint64, limit int) ([]store.Change, error) {
	from, upto := float64(after.Seq), float64(to)
	// Ties at after.Seq are read again and the ones not after the cursor dropped; a few more
	// than limit are read so a tie at the end of a page is not cut.
	n := uint32(limit + 16)
	pts, err := s.client.Scroll(ctx, &qc.ScrollPoints{CollectionName: coll, Limit: &n,
		Filter:      &qc.Filter{Must: []*qc.Condition{qc.NewRange(writtenSeq, &qc.Range{Gte: &from, Lte: &upto})}},
		OrderBy:     &qc.OrderBy{Key: writtenSeq, Direction: qc.Direction_Asc.Enum()},
		WithPayload: qc.NewWithPayloadInclude("paper_id", writtenSeq)})
	if err != nil {
		return nil, mapErr(coll, err)
	}
	var out []store.Change
	for _, p := range pts {
		seq := uint64(p.GetPayload()[writtenSeq].GetIntegerValue())
		c := store.Change{Cursor: store.Cursor{Seq: seq, ID: p.GetPayload()["paper_id"].GetStringValue()}, At: time.UnixMicro(int64(seq))}
		if after.Before(c.Cursor) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b store.Change) int {
		if a.Cursor.Before(b.Cursor) {
			return -1
		}
		return 1
	})
	return out[:min(len(out), limit)], nil
}

// CursorAt implements store.ChangeLog.
func (s *Store) CursorAt(_ context.Context, t time.Time) (store.Cursor, error) {
	return store.Cursor{Seq: uint64(t.UnixMicro())}, nil // before every id written at t
}

// Head implements store.ChangeLog: after every write older than the horizon.
func (s *Store) Head(context.Context) (store.Cursor, error) {
	return store.Cursor{Seq: s.horizon() + 1}, nil
}

// Written implements store.ChangeLog: replicas share no notification, so streams poll.
func (s *Store) Written() <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(pollEvery, func() { close(ch) })
	return ch
}
