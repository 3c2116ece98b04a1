package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/paperrec/recommender/internal/store"
)

var (
	_ store.Feeds     = (*Store)(nil)
	_ store.ChangeLog = (*Store)(nil)

	bucketFeeds = []byte("feeds")
	// bucketChanges is the write log: big-endian sequence number -> write time (unix ns, 8
	// bytes) and paper id, appended in the transaction that writes the paper.
	bucketChanges = []byte("changes")
)

// logChanges appends the written (not deleted) papers of a commit to the write log. Times never
// go backwards, so CursorAt can search the log by time.
func (s *Store) logChanges(tx *bolt.Tx, changes []change) error {
	b := tx.Bucket(bucketChanges)
	for _, c := range changes {
		if c.deleted || c.vectorOnly {
			continue
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		s.logged = seq
		s.lastWrite = max(s.lastWrite+1, time.Now().UnixNano())
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(c.id)), uint64(s.lastWrite))
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), append(v, c.id...)); err != nil {
			return err
		}
	}
	return nil
}

// Changes implements store.ChangeLog.
func (s *Store) Changes(ctx context.Context, after store.Cursor, limit int) ([]store.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if after.Seq == math.MaxUint64 {
		return nil, nil // nothing comes after; after.Seq+1 would wrap to the first write
	}
	var out []store.Change
	s.mu.RLock()
	applied := s.applied
	s.mu.RUnlock()
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanges).Cursor()
		// Sequence numbers are unique here: the id plays no part.
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after.Seq+1)); k != nil && len(out) < limit; k, v = c.Next() {
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			if ch.Seq > applied {
				break // committed, not searchable yet
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
}

func decodeChange(k, v []byte) (store.Change, error) {
	if len(k) != 8 || len(v) < 8 {
		return store.Change{}, fmt.Errorf("%w: write log entry of %d+%d bytes", errCorrupt, len(k), len(v))
	}
	return store.Change{Cursor: store.Cursor{Seq: binary.BigEndian.Uint64(k), ID: string(v[8:])},
		At: time.Unix(0, int64(binary.BigEndian.Uint64(v)))}, nil
}

// CursorAt implements store.ChangeLog: a binary search over the log, whose times only grow.
func (s *Store) CursorAt(ctx context.Context, t time.Time) (store.Cursor, error) {
	var cursor store.Cursor
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChanges)
		lo, hi := uint64(1), b.Sequence()+1 // the first write at or after t is in [lo, hi]
		for lo < hi {
			if err := ctx.Err(); err != nil {
				return err
			}
			mid := lo + (hi-lo)/2
			k := binary.BigEndian.AppendUint64(nil, mid)
			ch, err := decodeChange(k, b.Get(k))
			if err != nil {
				return err
			}
			if ch.At.Before(t) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		cursor.Seq = lo - 1
		return nil
	})
	return cursor, err
}

// Head implements store.ChangeLog.
func (s *Store) Head(ctx context.Context) (store.Cursor, error) {
	if err := ctx.Err(); err != nil {
		return store.Cursor{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return store.Cursor{Seq: s.applied}, nil
}

// Written implements store.ChangeLog.
func (s *Store) Written() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.written
}

// PutFeed implements store.Feeds.
func (s *Store) PutFeed(ctx context.Context, id string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketFeeds).Put([]byte(id), data) })
}

// GetFeed implements store.Feeds.
func (s *Store) GetFeed(ctx context.Context, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFeeds).Get([]byte(id))
		if v == nil {
			return store.ErrFeedNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// ListFeeds implements store.Feeds.
func (s *Store) ListFeeds(ctx context.Context) ([]store.FeedRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []store.FeedRecord
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFeeds).ForEach(func(k, v []byte) error {
			out = append(out, store.FeedRecord{ID: string(k), Data: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}

// DeleteFeed implements store.Feeds.
func (s *Store) DeleteFeed(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFeeds)
		if b.Get([]byte(id)) == nil {
			return store.ErrFeedNotFound
		}
		return b.Delete([]byte(id))
	})
}
