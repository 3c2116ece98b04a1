package app

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/recommend"
	"github.com/paperrec/recommender/internal/store"
)

// Feeds: saved "new papers like these" subscriptions, and the stream of papers written after a
// cursor that match one. What a feed asks is the transport's (its definition, opaque here, and
// the recommendation request it stands for); the application keeps it, embeds its inline seeds
// once, and matches it against the writes.
const (
	// feedBatch is how many writes a stream matches at a time: one Recommend ranking them.
	feedBatch = 50
	// heartbeatEvery spaces the events that say a caught-up stream is still there.
	heartbeatEvery = 30 * time.Second
)

var errFeedsUnsupported = &apierr.PreconditionError{Reason: apierr.FeedsUnsupported, Subject: "store",
	Message: "this store keeps no feeds or write order: feeds need the embedded store for now"}

func (s *App) feeds() (store.Feeds, error) {
	f, ok := store.As[store.Feeds](s.store)
	if !ok {
		return nil, errFeedsUnsupported
	}
	return f, nil
}

// FeedRecord is a feed as stored: the transport's definition of it, and its inline seeds'
// vectors with the key of the model that made them (recommend.Engine.EmbedInline).
type FeedRecord struct {
	ID         string
	Definition []byte
	Vectors    [][]float32
	VectorsOf  string
}

// CreateFeed stores a feed, its inline seeds embedded once, here, unless lexical: every stream
// and every batch of writes after uses these vectors.
func (s *App) CreateFeed(ctx context.Context, id string, definition []byte, inline []recommend.InlineSeed, lexical bool) error {
	fs, err := s.feeds()
	if err != nil {
		return err
	}
	sf := FeedRecord{ID: id, Definition: definition}
	if !lexical {
		err := s.withEngine(ctx, func(e *recommend.Engine) error {
			var err error
			sf.Vectors, sf.VectorsOf, err = e.EmbedInline(ctx, inline)
			return err
		})
		if err != nil {
			return domainErr(err)
		}
	}
	return fs.PutFeed(ctx, id, sf.encode())
}

// A stored feed is its definition (as stored before seeds' vectors were kept), or a 0 byte
// (which no protobuf message, the transport's definition, starts with), then the definition,
// the model's key and the vectors.
func (sf FeedRecord) encode() []byte {
	msg := sf.Definition
	b := binary.AppendUvarint([]byte{0}, uint64(len(msg)))
	b = append(b, msg...)
	b = binary.AppendUvarint(b, uint64(len(sf.VectorsOf)))
	b = append(b, sf.VectorsOf...)
	b = binary.AppendUvarint(b, uint64(len(sf.Vectors)))
	for _, v := range sf.Vectors {
		b = binary.AppendUvarint(b, uint64(len(v)))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}

func decodeFeed(id string, b []byte) (FeedRecord, error) {
	sf := FeedRecord{ID: id}
	if len(b) == 0 || b[0] != 0 {
		sf.Definition = b
		return sf, nil
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
	sf.Definition = msg
	n, ok = count()
	key, ok2 := next(n)
	if !ok || !ok2 {
		return sf, bad
	}
	sf.VectorsOf = string(key)
	nv, ok := count()
	if !ok || nv > recommend.MaxSeeds {
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
		sf.Vectors = append(sf.Vectors, v)
	}
	return sf, nil
}

// Feed returns a stored feed, or a *apierr.FeedNotFoundError.
func (s *App) Feed(ctx context.Context, id string) (FeedRecord, error) {
	fs, err := s.feeds()
	if err != nil {
		return FeedRecord{}, err
	}
	if id == "" {
		return FeedRecord{}, apierr.Invalid("feed_id", "is required")
	}
	b, err := fs.GetFeed(ctx, id)
	if errors.Is(err, store.ErrFeedNotFound) {
		return FeedRecord{}, &apierr.FeedNotFoundError{ID: id}
	}
	if err != nil {
		return FeedRecord{}, err
	}
	sf, err := decodeFeed(id, b)
	if err != nil {
		return FeedRecord{}, fmt.Errorf("read feed %s: %w", id, err)
	}
	return sf, nil
}

// Feeds returns every stored feed, oldest first.
func (s *App) Feeds(ctx context.Context) ([]FeedRecord, error) {
	fs, err := s.feeds()
	if err != nil {
		return nil, err
	}
	recs, err := fs.ListFeeds(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]FeedRecord, 0, len(recs))
	for _, r := range recs {
		sf, err := decodeFeed(r.ID, r.Data)
		if err != nil {
			return nil, fmt.Errorf("read feed %s: %w", r.ID, err)
		}
		out = append(out, sf)
	}
	return out, nil
}

// DeleteFeed deletes a feed, ending its open streams.
func (s *App) DeleteFeed(ctx context.Context, id string) error {
	fs, err := s.feeds()
	if err != nil {
		return err
	}
	if id == "" {
		return apierr.Invalid("feed_id", "is required")
	}
	if err := fs.DeleteFeed(ctx, id); errors.Is(err, store.ErrFeedNotFound) {
		return &apierr.FeedNotFoundError{ID: id}
	} else if err != nil {
		return err
	}
	if gone, ok := s.feedsGone.LoadAndDelete(id); ok {
		close(gone.(chan struct{})) // its open streams end
	}
	return nil
}

// feedGone is closed when feed id is deleted. A stream takes it before it loads the feed, so a
// deletion after that load is never missed.
func (s *App) feedGone(id string) <-chan struct{} {
	gone, _ := s.feedsGone.LoadOrStore(id, make(chan struct{}))
	return gone.(chan struct{})
}

// FeedStream is an open feed: its record, for the transport to read what it asks, and Follow.
type FeedStream struct {
	Record FeedRecord
	app    *App
	wlog   store.ChangeLog
	gone   <-chan struct{}
}

// OpenFeed opens the feed id for following.
func (s *App) OpenFeed(ctx context.Context, id string) (*FeedStream, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	wlog, ok := store.As[store.ChangeLog](s.store)
	if !ok {
		return nil, errFeedsUnsupported
	}
	gone := s.feedGone(id)
	sf, err := s.Feed(ctx, id)
	if err != nil {
		return nil, err
	}
	return &FeedStream{Record: sf, app: s, wlog: wlog, gone: gone}, nil
}

// FeedStart is where following a feed starts: after Cursor when set, else before the first
// write at or after Since when set, else at the latest write.
type FeedStart struct {
	Cursor *store.Cursor
	Since  time.Time
}

// FeedEvent is what following a feed yields: a matching paper with its relevance and write, or
// (Paper nil) the cursor of a stream that has caught up, again every heartbeat.
type FeedEvent struct {
	Paper     *store.Paper
	Relevance float32
	Cursor    store.Cursor
	At        time.Time
}

// Follow sends, in write order, the writes after start that match the feed (those whose
// relevance to r reaches minRelevance), and an event whenever it has caught up, until ctx ends,
// the feed is deleted (*apierr.FeedNotFoundError), the application stops (*store.UnavailableError: the
// client resumes with its last cursor), or send fails.
func (f *FeedStream) Follow(ctx context.Context, r recommend.Request, minRelevance float32, start FeedStart, send func(FeedEvent) error) error {
	s := f.app
	// The inline seeds' vectors kept with the feed, while the model that made them serves.
	if len(f.Record.Vectors) == len(r.InlinePositive) && f.Record.VectorsOf == s.eng().Spec.Key() {
		for i := range r.InlinePositive {
			r.InlinePositive[i].Dense = f.Record.Vectors[i]
		}
	}
	m, release := s.feedMatcher(f.Record.ID)
	defer release()
	after, err := f.startCursor(ctx, start)
	if err != nil {
		return err
	}
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	caughtUp := false
	for {
		select {
		case <-f.gone:
			return &apierr.FeedNotFoundError{ID: f.Record.ID}
		default:
		}
		written := f.wlog.Written() // before reading, so a write in between is not missed
		changes, err := f.wlog.Changes(ctx, after, feedBatch)
		if err != nil {
			return err
		}
		if len(changes) > 0 {
			if err := s.sendMatches(ctx, m, r, minRelevance, changes, send); err != nil {
				return domainErr(err)
			}
			after, caughtUp = changes[len(changes)-1].Cursor, false
			continue
		}
		if !caughtUp { // tell the client where it stands
			if err := send(FeedEvent{Cursor: after}); err != nil {
				return err
			}
			caughtUp = true
		}
		select {
		case <-written:
		case <-f.gone:
			return &apierr.FeedNotFoundError{ID: f.Record.ID}
		case <-heartbeat.C:
			caughtUp = false
		case <-s.stopping:
			return &store.UnavailableError{Err: errors.New("the server is shutting down: resume with the last cursor")}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// startCursor resolves start in the write log.
func (f *FeedStream) startCursor(ctx context.Context, start FeedStart) (store.Cursor, error) {
	switch {
	case start.Cursor != nil:
		head, err := f.wlog.Head(ctx)
		if err != nil {
			return store.Cursor{}, err
		}
		if start.Cursor.Seq > head.Seq { // no cursor this service gave: it would wrap past the end
			return store.Cursor{}, apierr.Invalid("cursor", "is ahead of the newest write: not a cursor of this service's events")
		}
		return *start.Cursor, nil
	case !start.Since.IsZero():
		return f.wlog.CursorAt(ctx, start.Since)
	default:
		return f.wlog.Head(ctx)
	}
}

// sendMatches sends, in write order, the papers of a batch of writes the feed matches: those
// whose relevance to the feed reaches its threshold, whatever older papers the store holds (the
// writes' papers are ranked as a candidate list, their relevance calibrated as the feed's own
// request would have it). A paper written twice in the batch is sent once, at its last write.
func (s *App) sendMatches(ctx context.Context, m *feedMatch, r recommend.Request, minRelevance float32, changes []store.Change, send func(FeedEvent) error) error {
	matched, err := m.match(changes, func(ids []string) (*recommend.Result, error) {
		req := r
		req.Candidates, req.Matching, req.Offset, req.PageSize = ids, true, 0, len(ids)
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
	last := make(map[string]store.Cursor, len(changes))
	for _, c := range changes {
		last[c.ID] = c.Cursor
	}
	for _, c := range changes {
		it := matched[c.Cursor]
		if it == nil || last[c.ID] != c.Cursor || it.Relevance < minRelevance {
			continue
		}
		if err := send(FeedEvent{Paper: &it.Paper, Relevance: it.Relevance, Cursor: c.Cursor, At: c.At}); err != nil {
			return err
		}
	}
	return nil
}

// feedMatch holds the match of each of a feed's recent writes, shared by its open streams: a
// write is matched once, by the first stream that reads it, whatever batches the streams read
// it in (a stream that fell behind reads more at a time), so a feed costs one match per batch
// of new writes, not one per stream.
type feedMatch struct {
	mu      sync.Mutex
	matched map[store.Cursor]*recommend.Item // nil: the write's paper is no match (filtered out, or gone)
	recent  []store.Cursor                   // oldest first, at most sharedWrites
	streams int                              // open streams of the feed (under App.feedMatchesMu)
}

// sharedWrites bounds the writes a feed keeps the match of.
const sharedWrites = 16 * feedBatch

// match returns the match of each write of changes: the ones known, and the others made by one
// compute over their papers. Streams asking at once wait for one compute.
func (m *feedMatch) match(changes []store.Change, compute func(ids []string) (*recommend.Result, error)) (map[store.Cursor]*recommend.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var todo []store.Change
	var ids []string
	for _, c := range changes {
		if _, known := m.matched[c.Cursor]; !known {
			todo = append(todo, c)
			if !slices.Contains(ids, c.ID) {
				ids = append(ids, c.ID)
			}
		}
	}
	if len(todo) > 0 {
		res, err := compute(ids)
		if err != nil {
			return nil, err
		}
		items := make(map[string]*recommend.Item, len(res.Items))
		for i := range res.Items {
			items[res.Items[i].Paper.ID] = &res.Items[i]
		}
		if m.matched == nil {
			m.matched = map[store.Cursor]*recommend.Item{}
		}
		for _, c := range todo {
			m.matched[c.Cursor], m.recent = items[c.ID], append(m.recent, c.Cursor)
		}
		if n := len(m.recent) - sharedWrites; n > 0 {
			for _, c := range m.recent[:n] {
				delete(m.matched, c)
			}
			m.recent = slices.Clone(m.recent[n:])
		}
	}
	out := make(map[store.Cursor]*recommend.Item, len(changes))
	for _, c := range changes {
		out[c.Cursor] = m.matched[c.Cursor]
	}
	return out, nil
}

// feedMatcher returns the shared match of feed id, and the release its stream calls when it
// ends; the last release drops it.
func (s *App) feedMatcher(id string) (*feedMatch, func()) {
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
