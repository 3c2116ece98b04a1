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
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
)

// Feeds: saved "new papers like these" subscriptions (kept and matched by the application, as
// their Feed message), and the stream of papers written after a cursor that match one.
const (
	// feedDepth is the page size of the Recommend request a feed is validated as.
	feedDepth   = MaxPageSize
	maxFeedName = 300
)

// feedRequest is the Recommend request a feed stands for, validated as Recommend validates it,
// with the violations named after the feed's fields.
func (s *Service) feedRequest(f *recommenderv1.Feed) (*recommendRequest, error) {
	req := &recommenderv1.RecommendRequest{Query: f.GetQuery(), PositivePaperIds: f.GetPositivePaperIds(),
		PositivePapers: f.GetPositivePapers(), Filter: f.GetFilter(), Mode: f.GetMode(), PageSize: feedDepth}
	r, err := parseRecommend(req, s.app.Ranking())
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
	if req.GetFeed() == nil {
		return nil, apierr.Invalid("feed", "must be set")
	}
	f := proto.Clone(req.GetFeed()).(*recommenderv1.Feed)
	r, err := s.feedRequest(f)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7() // time-ordered: the store lists feeds by id, so oldest first
	if err != nil {
		return nil, err
	}
	f.FeedId, f.CreateTime = id.String(), time.Now().UTC().Format(time.RFC3339Nano)
	def, err := proto.Marshal(f)
	if err != nil {
		return nil, err
	}
	if err := s.app.CreateFeed(ctx, f.GetFeedId(), def, r.InlinePositive, r.Mode == recommend.ModeLexical); err != nil {
		return nil, err
	}
	return &recommenderv1.CreateFeedResponse{Feed: f}, nil
}

// feedOf is the Feed message a stored feed was made from.
func feedOf(rec app.FeedRecord) (*recommenderv1.Feed, error) {
	f := &recommenderv1.Feed{}
	if err := proto.Unmarshal(rec.Definition, f); err != nil {
		return nil, fmt.Errorf("read feed %s: %w", rec.ID, err)
	}
	return f, nil
}

// GetFeed implements RecommenderService.
func (s *Service) GetFeed(ctx context.Context, req *recommenderv1.GetFeedRequest) (*recommenderv1.GetFeedResponse, error) {
	rec, err := s.app.Feed(ctx, req.GetFeedId())
	if err != nil {
		return nil, err
	}
	f, err := feedOf(rec)
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetFeedResponse{Feed: f}, nil
}

// ListFeeds implements RecommenderService.
func (s *Service) ListFeeds(ctx context.Context, _ *recommenderv1.ListFeedsRequest) (*recommenderv1.ListFeedsResponse, error) {
	recs, err := s.app.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	resp := &recommenderv1.ListFeedsResponse{}
	for _, rec := range recs {
		f, err := feedOf(rec)
		if err != nil {
			return nil, err
		}
		resp.Feeds = append(resp.Feeds, f)
	}
	return resp, nil
}

// DeleteFeed implements RecommenderService.
func (s *Service) DeleteFeed(ctx context.Context, req *recommenderv1.DeleteFeedRequest) (*recommenderv1.DeleteFeedResponse, error) {
	if err := s.app.DeleteFeed(ctx, req.GetFeedId()); err != nil {
		return nil, err
	}
	return &recommenderv1.DeleteFeedResponse{}, nil
}

// StreamFeed implements RecommenderService: the writes after the start cursor, in order, each
// sent when its paper matches the feed, then a heartbeat whenever the stream has caught up.
func (s *Service) StreamFeed(req *recommenderv1.StreamFeedRequest, stream recommenderv1.RecommenderService_StreamFeedServer) error {
	ctx := stream.Context()
	fs, err := s.app.OpenFeed(ctx, req.GetFeedId())
	if err != nil {
		return err
	}
	f, err := feedOf(fs.Record)
	if err != nil {
		return err
	}
	r, err := s.feedRequest(f)
	if err != nil {
		return err
	}
	var start app.FeedStart
	switch {
	case req.GetCursor() != "":
		c, err := decodeCursor(req.GetCursor())
		if err != nil {
			return apierr.Invalid("cursor", err.Error())
		}
		start.Cursor = &c
	case req.GetSince() != "":
		if start.Since, err = time.Parse(time.RFC3339Nano, req.GetSince()); err != nil {
			return apierr.Invalid("since", fmt.Sprintf("must be an RFC 3339 time, got %q", req.GetSince()))
		}
	}
	return fs.Follow(ctx, r.Request, f.GetMinRelevance(), start, func(e app.FeedEvent) error {
		out := &recommenderv1.StreamFeedResponse{Cursor: encodeCursor(e.Cursor)}
		if e.Paper != nil {
			out.Paper, out.Relevance, out.WriteTime = toProtoPaper(e.Paper), e.Relevance, e.At.UTC().Format(time.RFC3339Nano)
		}
		return stream.Send(out)
	})
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
