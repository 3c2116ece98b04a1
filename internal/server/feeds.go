package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
)

// Feeds: saved "new papers like these" subscriptions, and the stream of papers written after a
// cursor that match one.
const (
	// feedBatch is how many writes a stream matches at a time: one Recommend of feedDepth each.
	feedBatch = 50
	// feedDepth is how deep a new paper must rank for the feed to match it: its relevance is
	// the one Recommend gives it among the feed's best feedDepth.
	feedDepth = MaxPageSize
	// heartbeatEvery spaces heartbeats while nothing new arrives.
	heartbeatEvery = 30 * time.Second
	maxFeedName    = 300
)

// feedNotFoundError names a feed id no feed has.
type feedNotFoundError struct{ id string }

func (e *feedNotFoundError) Error() string { return "feed not found: " + e.id }

var errFeedsUnsupported = &apierr.PreconditionError{Reason: apierr.FeedsUnsupported, Subject: "store",
	Message: "this store keeps no feeds or write order: feeds need the embedded store for now"}

func (s *Service) feeds() (store.Feeds, error) {
	f, ok := store.As[store.Feeds](s.store)
	if !ok {
		return nil, errFeedsUnsupported
	}
	return f, nil
}

// feedRequest is the Recommend request a feed stands for, validated as Recommend validates it,
// with the violations named after the feed's fields.
func (s *Service) feedRequest(f *recommenderv1.Feed) (*recommendRequest, error) {
	req := &recommenderv1.RecommendRequest{Query: f.GetQuery(), PositivePaperIds: f.GetPositivePaperIds(),
		PositivePapers: f.GetPositivePapers(), Filter: f.GetFilter(), Mode: f.GetMode(), PageSize: feedDepth}
	r, err := parseRecommend(req, s.eng().Ranking())
	v := &apierr.ValidationError{}
	if errors.As(err, &v) {
		for i := range v.Violations {
			v.Violations[i].Field = "feed." + v.Violations[i].Field
		}
	} else if err != nil {
		return nil, err
	}
	if m := f.GetMinRelevance(); !(m >= 0 && m <= 1) {
		v.Add("feed.min_relevance", "must be between 0 and 1, got %v", m)
	}
	if n := utf8.RuneCountInString(f.GetName()); n > maxFeedName {
		v.Add("feed.name", "is %d characters, more than the limit of %d", n, maxFeedName)
	}
	return r, v.ErrOrNil()
}

// CreateFeed implements RecommenderService.
func (s *Service) CreateFeed(ctx context.Context, req *recommenderv1.CreateFeedRequest) (*recommenderv1.CreateFeedResponse, error) {
	fs, err := s.feeds()
	if err != nil {
		return nil, err
	}
	if req.GetFeed() == nil {
		return nil, apierr.Invalid("feed", "must be set")
	}
	f := proto.Clone(req.GetFeed()).(*recommenderv1.Feed)
	if _, err := s.feedRequest(f); err != nil {
		return nil, err
	}
	id, err := uuid.NewV7() // time-ordered: the store lists feeds by id, so oldest first
	if err != nil {
		return nil, err
	}
	f.FeedId, f.CreateTime = id.String(), time.Now().UTC().Format(time.RFC3339Nano)
	b, err := proto.Marshal(f)
	if err != nil {
		return nil, err
	}
	if err := fs.PutFeed(ctx, f.GetFeedId(), b); err != nil {
		return nil, err
	}
	return &recommenderv1.CreateFeedResponse{Feed: f}, nil
}

func (s *Service) loadFeed(ctx context.Context, id string) (*recommenderv1.Feed, error) {
	fs, err := s.feeds()
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, apierr.Invalid("feed_id", "is required")
	}
	b, err := fs.GetFeed(ctx, id)
	if errors.Is(err, store.ErrFeedNotFound) {
		return nil, &feedNotFoundError{id}
	}
	if err != nil {
		return nil, err
	}
	f := &recommenderv1.Feed{}
	if err := proto.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("read feed %s: %w", id, err)
	}
	return f, nil
}

// GetFeed implements RecommenderService.
func (s *Service) GetFeed(ctx context.Context, req *recommenderv1.GetFeedRequest) (*recommenderv1.GetFeedResponse, error) {
	f, err := s.loadFeed(ctx, req.GetFeedId())
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetFeedResponse{Feed: f}, nil
}

// ListFeeds implements RecommenderService.
func (s *Service) ListFeeds(ctx context.Context, _ *recommenderv1.ListFeedsRequest) (*recommenderv1.ListFeedsResponse, error) {
	fs, err := s.feeds()
	if err != nil {
		return nil, err
	}
	recs, err := fs.ListFeeds(ctx)
	if err != nil {
		return nil, err
	}
	resp := &recommenderv1.ListFeedsResponse{}
	for _, r := range recs {
		f := &recommenderv1.Feed{}
		if err := proto.Unmarshal(r.Data, f); err != nil {
			return nil, fmt.Errorf("read feed %s: %w", r.ID, err)
		}
		resp.Feeds = append(resp.Feeds, f)
	}
	return resp, nil
}

// DeleteFeed implements RecommenderService.
func (s *Service) DeleteFeed(ctx context.Context, req *recommenderv1.DeleteFeedRequest) (*recommenderv1.DeleteFeedResponse, error) {
	fs, err := s.feeds()
	if err != nil {
		return nil, err
	}
	if req.GetFeedId() == "" {
		return nil, apierr.Invalid("feed_id", "is required")
	}
	if err := fs.DeleteFeed(ctx, req.GetFeedId()); errors.Is(err, store.ErrFeedNotFound) {
		return nil, &feedNotFoundError{req.GetFeedId()}
	} else if err != nil {
		return nil, err
	}
	if gone, ok := s.feedsGone.LoadAndDelete(req.GetFeedId()); ok {
		close(gone.(chan struct{})) // its open streams end
	}
	return &recommenderv1.DeleteFeedResponse{}, nil
}

// feedGone is closed when feed id is deleted. A stream takes it before it loads the feed, so a
// deletion after that load is never missed.
func (s *Service) feedGone(id string) <-chan struct{} {
	gone, _ := s.feedsGone.LoadOrStore(id, make(chan struct{}))
	return gone.(chan struct{})
}

// StreamFeed implements RecommenderService: the writes after the start cursor, in order, each
// sent when its paper matches the feed, then a heartbeat whenever the stream has caught up.
func (s *Service) StreamFeed(req *recommenderv1.StreamFeedRequest, stream recommenderv1.RecommenderService_StreamFeedServer) error {
	ctx := stream.Context()
	if err := s.ready(); err != nil {
		return err
	}
	wlog, ok := store.As[store.ChangeLog](s.store)
	if !ok {
		return errFeedsUnsupported
	}
	gone := s.feedGone(req.GetFeedId())
	f, err := s.loadFeed(ctx, req.GetFeedId())
	if err != nil {
		return err
	}
	r, err := s.feedRequest(f)
	if err != nil {
		return err
	}
	after, err := startCursor(ctx, wlog, req)
	if err != nil {
		return err
	}
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	caughtUp := false
	for {
		select {
		case <-gone:
			return &feedNotFoundError{f.GetFeedId()}
		default:
		}
		written := wlog.Written() // before reading, so a write in between is not missed
		changes, err := wlog.Changes(ctx, after, feedBatch)
		if err != nil {
			return err
		}
		if len(changes) > 0 {
			if err := s.sendMatches(ctx, stream, r, f.GetMinRelevance(), changes); err != nil {
				return err
			}
			after, caughtUp = changes[len(changes)-1].Cursor, false
			continue
		}
		if !caughtUp { // tell the client where it stands
			if err := stream.Send(&recommenderv1.StreamFeedResponse{Cursor: encodeCursor(after)}); err != nil {
				return err
			}
			caughtUp = true
		}
		select {
		case <-written:
		case <-gone:
			return &feedNotFoundError{f.GetFeedId()}
		case <-heartbeat.C:
			caughtUp = false
		case <-s.stopping:
			return &store.UnavailableError{Err: errors.New("the server is shutting down: resume with the last cursor")}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendMatches sends, in write order, the papers of a batch of writes the feed matches: those
// among the feed's best feedDepth with at least its relevance. A paper written twice in the
// batch is sent once, at its last write.
func (s *Service) sendMatches(ctx context.Context, stream recommenderv1.RecommenderService_StreamFeedServer, r *recommendRequest, minRelevance float32, changes []store.Change) error {
	var res *recommend.Result
	err := s.withEngine(ctx, func(e *recommend.Engine) error {
		var err error
		res, err = e.Recommend(ctx, r.Request)
		return err
	})
	if err != nil {
		return err
	}
	items := make(map[string]*recommend.Item, len(res.Items))
	for i := range res.Items {
		items[res.Items[i].Paper.ID] = &res.Items[i]
	}
	last := make(map[string]store.Cursor, len(changes))
	for _, c := range changes {
		last[c.ID] = c.Cursor
	}
	for _, c := range changes {
		it, ok := items[c.ID]
		if !ok || last[c.ID] != c.Cursor || it.Relevance < minRelevance {
			continue
		}
		if err := stream.Send(&recommenderv1.StreamFeedResponse{Paper: toProtoPaper(&it.Paper), Relevance: it.Relevance,
			Cursor: encodeCursor(c.Cursor), WriteTime: c.At.UTC().Format(time.RFC3339Nano)}); err != nil {
			return err
		}
	}
	return nil
}

// startCursor is where a stream starts: after the client's cursor, before the writes since a
// time, or at the latest write.
func startCursor(ctx context.Context, wlog store.ChangeLog, req *recommenderv1.StreamFeedRequest) (store.Cursor, error) {
	switch {
	case req.GetCursor() != "":
		c, err := decodeCursor(req.GetCursor())
		if err != nil {
			return store.Cursor{}, apierr.Invalid("cursor", err.Error())
		}
		head, err := wlog.Head(ctx)
		if err != nil {
			return store.Cursor{}, err
		}
		if c.Seq > head.Seq { // no cursor this service gave: it would wrap past the end
			return store.Cursor{}, apierr.Invalid("cursor", "is ahead of the newest write: not a cursor of this service's events")
		}
		return c, nil
	case req.GetSince() != "":
		t, err := time.Parse(time.RFC3339Nano, req.GetSince())
		if err != nil {
			return store.Cursor{}, apierr.Invalid("since", fmt.Sprintf("must be an RFC 3339 time, got %q", req.GetSince()))
		}
		return wlog.CursorAt(ctx, t)
	default:
		return wlog.Head(ctx)
	}
}

const cursorVersion = 1

// A cursor is opaque to clients: a version byte, the sequence number, the paper id.
func encodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString(append(binary.AppendUvarint([]byte{cursorVersion}, c.Seq), c.ID...))
}

var errNotCursor = errors.New("is not a cursor of this service's events")

func decodeCursor(s string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != cursorVersion {
		return store.Cursor{}, errNotCursor
	}
	seq, n := binary.Uvarint(b[1:])
	if n <= 0 || !utf8.Valid(b[1+n:]) {
		return store.Cursor{}, errNotCursor
	}
	return store.Cursor{Seq: seq, ID: string(b[1+n:])}, nil
}
