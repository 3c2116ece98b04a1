package embedded

import (
	"bytes"
	"context"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/paperrec/recommender/internal/store"
)

var (
	_ store.NeighbourLists = (*Store)(nil)

	// bucketLists holds each paper's neighbour list by paper id; bucketListsMeta the state of
	// their upkeep and their count. Delete removes a paper's list in the transaction that
	// removes the paper.
	bucketLists     = []byte("neighbour_lists")
	bucketListsMeta = []byte("neighbour_lists_meta")
	keyListsState   = []byte("state")
	keyListsCount   = []byte("count")
)

// addListCount adds d to the stored count of lists.
func addListCount(tx *bolt.Tx, d int64) error {
	if d == 0 {
		return nil
	}
	m := tx.Bucket(bucketListsMeta)
	var n int64
	if v := m.Get(keyListsCount); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return m.Put(keyListsCount, binary.BigEndian.AppendUint64(nil, uint64(n+d)))
}

// deleteList removes a deleted paper's list.
func deleteList(tx *bolt.Tx, id string) error {
	b := tx.Bucket(bucketLists)
	if b.Get([]byte(id)) == nil {
		return nil
	}
	if err := b.Delete([]byte(id)); err != nil {
		return err
	}
	return addListCount(tx, -1)
}

// PutLists implements store.NeighbourLists: one transaction, each list only while its paper is
// stored.
func (s *Store) PutLists(ctx context.Context, lists []store.ListRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		papers, b := tx.Bucket(bucketPapers), tx.Bucket(bucketLists)
		var added int64
		for _, l := range lists {
			if papers.Get([]byte(l.ID)) == nil {
				continue
			}
			if b.Get([]byte(l.ID)) == nil {
				added++
			}
			if err := b.Put([]byte(l.ID), l.Data); err != nil {
				return err
			}
		}
		return addListCount(tx, added)
	})
}

// Lists implements store.NeighbourLists.
func (s *Store) Lists(ctx context.Context, ids []string) ([]store.ListRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []store.ListRecord
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLists)
		for _, id := range ids {
			if v := b.Get([]byte(id)); v != nil {
				out = append(out, store.ListRecord{ID: id, Data: bytes.Clone(v)})
			}
		}
		return nil
	})
	return out, err
}

// ScanLists implements store.NeighbourLists, in id order.
func (s *Store) ScanLists(ctx context.Context, after string, limit int) ([]store.ListRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []store.ListRecord
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLists).Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, store.ListRecord{ID: string(k), Data: bytes.Clone(v)})
		}
		return nil
	})
	return out, err
}

// CountLists implements store.NeighbourLists.
func (s *Store) CountLists(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketListsMeta).Get(keyListsCount); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return n, err
}

// ListsState implements store.NeighbourLists.
func (s *Store) ListsState(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketListsMeta).Get(keyListsState))
		return nil
	})
	return out, err
}

// PutListsState implements store.NeighbourLists.
func (s *Store) PutListsState(ctx context.Context, state []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketListsMeta).Put(keyListsState, state) })
}

// ResetLists implements store.NeighbourLists.
func (s *Store) ResetLists(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLists, bucketListsMeta} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
}
