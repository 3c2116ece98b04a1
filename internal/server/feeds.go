package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
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
	// feedBatch is how many writes a stream matches at a time: one Recommend ranking them.
	feedBatch = 50
	// feedDepth is the page size of the Recommend request a feed is validated as.
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
	r, err := s.feedRequest(f)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7() // time-ordered: the store lists feeds by id, so oldest first
	if err != nil {
		return nil, err
	}
	f.FeedId, f.CreateTime = id.String(), time.Now().UTC().Format(time.RFC3339Nano)
	sf := storedFeed{feed: f}
	if r.Mode != recommend.ModeLexical {
		// Embedded once, here: every stream and every batch of writes after uses these.
		err := s.withEngine(ctx, func(e *recommend.Engine) error {
			var err error
			sf.vectors, sf.vectorsOf, err = e.EmbedInline(ctx, r.InlinePositive)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	b, err := sf.encode()
	if err != nil {
		return nil, err
	}
	if err := fs.PutFeed(ctx, f.GetFeedId(), b); err != nil {
		return nil, err
	}
	return &recommenderv1.CreateFeedResponse{Feed: f}, nil
}

// storedFeed is a feed as stored: the Feed, and its inline seeds' vectors with the key of the
// model that made them (recommend.Engine.EmbedInline).
type storedFeed struct {
	feed      *recommenderv1.Feed
	vectors   [][]float32
	vectorsOf string
}

// A stored feed is its Feed message (as stored before seeds' vectors were kept), or a 0 byte
// (which no protobuf message starts with), then the message, the model's key and the vectors.
func (sf storedFeed) encode() ([]byte, error) {
	msg, err := proto.Marshal(sf.feed)
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint([]byte{0}, uint64(len(msg)))
	b = append(b, msg...)
	b = binary.AppendUvarint(b, uint64(len(sf.vectorsOf)))
	b = append(b, sf.vectorsOf...)
	b = binary.AppendUvarint(b, uint64(len(sf.vectors)))
	for _, v := range sf.vectors {
		b = binary.AppendUvarint(b, uint64(len(v)))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b, nil
}

func decodeFeed(b []byte) (storedFeed, error) {
	sf := storedFeed{feed: &recommenderv1.Feed{}}
	if len(b) == 0 || b[0] != 0 {
		return sf, proto.Unmarshal(b, sf.feed)
	}
	bad := errors.New("a stored feed cut short")
	next := func(n uint64) ([]byte, bool) {
		if n > uint64(len(b)) {
			return nil, false
		}
		v := b[:n]
		b = b[n:]
		return v, true
	}
	count := func() (uint64, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return n, true
	}
	b = b[1:]
	n, ok := count()
	msg, ok2 := next(n)
	if !ok || !ok2 {
		return sf, bad
	}
	if err := proto.Unmarshal(msg, sf.feed); err != nil {
		return sf, err
	}
	n, ok = count()
	key, ok2 := next(n)
	if !ok || !ok2 {
		return sf, bad
	}
	sf.vectorsOf = string(key)
	nv, ok := count()
	if !ok || nv > MaxSeeds {
		return sf, bad
	}
	for range nv {
		dims, ok := count()
		raw, ok2 := next(4 * dims)
		if !ok || !ok2 {
			return sf, bad
		}
		v := make([]float32, dims)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		sf.vectors = append(sf.vectors, v)
	}
	return sf, nil
}

func (s *Service) loadFeed(ctx context.Context, id string) (storedFeed, error) {
	fs, err := s.feeds()
	if err != nil {
		return storedFeed{}, err
	}
	if id == "" {
		return storedFeed{}, apierr.Invalid("feed_id", "is required")
	}
	b, err := fs.GetFeed(ctx, id)
	if errors.Is(err, store.ErrFeedNotFound) {
		return storedFeed{}, &feedNotFoundError{id}
	}
	if err != nil {
		return storedFeed{}, err
	}
	sf, err := decodeFeed(b)
	if err != nil {
		return storedFeed{}, fmt.Errorf("read feed %s: %w", id, err)
	}
	return sf, nil
}

// GetFeed implements RecommenderService.
func (s *Service) GetFeed(ctx context.Context, req *recommenderv1.GetFeedRequest) (*recommenderv1.GetFeedResponse, error) {
	sf, err := s.loadFeed(ctx, req.GetFeedId())
	if err != nil {
		return nil, err
	}
	return &recommenderv1.GetFeedResponse{Feed: sf.feed}, nil
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
		sf, err := decodeFeed(r.Data)
		if err != nil {
			return nil, fmt.Errorf("read feed %s: %w", r.ID, err)
		}
		resp.Feeds = append(resp.Feeds, sf.feed)
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
	sf, err := s.loadFeed(ctx, req.GetFeedId())
	if err != nil {
		return err
	}
	f := sf.feed
	r, err := s.feedRequest(f)
	if err != nil {
		return err
	}
	// The inline seeds' vectors kept with the feed, while the model that made them serves.
	if len(sf.vectors) == len(r.InlinePositive) && sf.vectorsOf == s.eng().Spec.Key() {
		for i := range r.InlinePositive {
			r.InlinePositive[i].Dense = sf.vectors[i]
		}
	}
	m, release := s.feedMatcher(f.GetFeedId())
	defer release()
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
			if err := s.sendMatches(ctx, stream, m, r, f.GetMinRelevance(), changes); err != nil {
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
// whose relevance to the feed reaches its threshold, whatever older papers the store holds (the
// batch's papers are ranked as a candidate list, their relevance calibrated as the feed's own
// request would have it). A paper written twice in the batch is sent once, at its last write.
func (s *Service) sendMatches(ctx context.Context, stream recommenderv1.RecommenderService_StreamFeedServer, m *feedMatch, r *recommendRequest, minRelevance float32, changes []store.Change) error {
	key := batchKey{first: changes[0].Cursor, last: changes[len(changes)-1].Cursor}
	res, err := m.result(key, func() (*recommend.Result, error) {
		req := r.Request
		req.Candidates, req.Matching, req.Offset, req.PageSize = nil, true, 0, len(changes)
		for _, c := range changes {
			if !slices.Contains(req.Candidates, c.ID) {
				req.Candidates = append(req.Candidates, c.ID)
			}
		}
		var res *recommend.Result
		err := s.withEngine(ctx, func(e *recommend.Engine) error {
			var err error
			res, err = e.Recommend(ctx, req)
			return err
		})
		return res, err
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

// feedMatch holds the matches of a feed's recent batches of writes, shared by its open
// streams: streams that are caught up read the same batches, and one Recommend per batch serves
// them all, not one each.
type feedMatch struct {
	mu      sync.Mutex
	batches map[batchKey]*recommend.Result
	recent  []batchKey // oldest first, at most sharedBatches
	streams int        // open streams of the feed (under Service.feedMatchesMu)
}

// batchKey names a batch of writes by its first and last.
type batchKey struct{ first, last store.Cursor }

// sharedBatches bounds the batches a feed keeps the match of.
const sharedBatches = 16

// result returns the match of the batch key: the one shared when a stream computed it already,
// else one made by compute, shared from then on. Streams asking at once wait for one compute.
func (m *feedMatch) result(key batchKey, compute func() (*recommend.Result, error)) (*recommend.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if res, ok := m.batches[key]; ok {
		return res, nil
	}
	res, err := compute()
	if err != nil {
		return nil, err
	}
	if m.batches == nil {
		m.batches = map[batchKey]*recommend.Result{}
	}
	if len(m.recent) == sharedBatches {
		delete(m.batches, m.recent[0])
		m.recent = m.recent[1:]
	}
	m.batches[key], m.recent = res, append(m.recent, key)
	return res, nil
}

// feedMatcher returns the shared match of feed id, and the release its stream calls when it
// ends; the last release drops it.
func (s *Service) feedMatcher(id string) (*feedMatch, func()) {
	s.feedMatchesMu.Lock()
	defer s.feedMatchesMu.Unlock()
	if s.feedMatches == nil {
		s.feedMatches = map[string]*feedMatch{}
	}
	m := s.feedMatches[id]
	if m == nil {
		m = &feedMatch{}
		s.feedMatches[id] = m
	}
	m.streams++
	return m, func() {
		s.feedMatchesMu.Lock()
		defer s.feedMatchesMu.Unlock()
		if m.streams--; m.streams == 0 {
			delete(s.feedMatches, id)
		}
	}
}
