package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/paperrec/recommender/internal/store"
)

var _ store.VectorSets = (*Store)(nil)

var (
	// bucketVectors1 holds slot 1's vectors: paper id -> encodeSetVector.
	bucketVectors1 = []byte("vectors1")
	// keyActiveSlot is the slot queries use: absent or 0, or 1.
	keyActiveSlot = []byte("active_vector_slot")
)

// specKeys are the meta keys of a slot's model. Slot 0's are those of stores from before there
// were two sets.
func specKeys(slot int) (model, dims, queryPrefix, documentPrefix []byte) {
	if slot == 0 {
		return keyEmbeddingModel, keyEmbeddingDims, keyQueryPrefix, keyDocumentPrefix
	}
	p := fmt.Sprintf("slot%d_", slot)
	return []byte(p + string(keyEmbeddingModel)), []byte(p + string(keyEmbeddingDims)),
		[]byte(p + string(keyQueryPrefix)), []byte(p + string(keyDocumentPrefix))
}

func readSpec(meta *bolt.Bucket, slot int) (store.EmbeddingSpec, bool) {
	km, kd, kq, kdoc := specKeys(slot)
	model, dims := meta.Get(km), meta.Get(kd)
	if model == nil || len(dims) != 4 {
		return store.EmbeddingSpec{}, false
	}
	return store.EmbeddingSpec{Model: string(model), Dimensions: int(binary.BigEndian.Uint32(dims)),
		QueryPrefix: string(meta.Get(kq)), DocumentPrefix: string(meta.Get(kdoc))}, true
}

// writeSpec records slot's model; the zero spec deletes it.
func writeSpec(meta *bolt.Bucket, slot int, spec store.EmbeddingSpec) error {
	km, kd, kq, kdoc := specKeys(slot)
	if spec.Model == "" {
		return errors.Join(meta.Delete(km), meta.Delete(kd), meta.Delete(kq), meta.Delete(kdoc))
	}
	return errors.Join(meta.Put(km, []byte(spec.Model)), meta.Put(kq, []byte(spec.QueryPrefix)),
		meta.Put(kdoc, []byte(spec.DocumentPrefix)), meta.Put(kd, binary.BigEndian.AppendUint32(nil, uint32(spec.Dimensions))))
}

// encodeSetVector serialises a slot-1 vector with the text it was embedded from.
func encodeSetVector(v store.SetVector) []byte {
	b := appendString(nil, v.TextKey)
	b = appendString(b, v.DenseHash)
	b = binary.AppendUvarint(b, uint64(len(v.Dense)))
	for _, x := range v.Dense {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func decodeSetVector(buf []byte) (v store.SetVector, err error) {
	d := decoder{buf: buf}
	defer func() {
		if r := recover(); r != nil {
			err = errCorrupt
		}
	}()
	v.TextKey, v.DenseHash = d.string(), d.string()
	n := d.count(4)
	v.Dense = make([]float32, n)
	for i := range v.Dense {
		v.Dense[i] = math.Float32frombits(d.uint32())
	}
	return v, nil
}

func (s *Store) activeSlot() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.active
}

// checkSet refuses vectors of a set that is not the active one. Called under writeMu.
func (s *Store) checkSet(key string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if key != "" && key != s.specs[s.active].Key() {
		return &store.EmbeddingSwitchedError{Active: s.specs[s.active]}
	}
	return nil
}

// activeVector gives p (decoded from its record in tx) the vector of the active set. The caller
// holds s.mu for reading, or the writer lock: a switch commits under both, so the set in memory
// is the one tx sees.
func (s *Store) activeVector(tx *bolt.Tx, p *store.Paper) error {
	p.DenseSet = s.specs[s.active].Key()
	if s.active == 0 {
		return nil
	}
	p.Dense, p.DenseHash = nil, ""
	if v := tx.Bucket(bucketVectors1).Get([]byte(p.ID)); v != nil {
		sv, err := decodeSetVector(v)
		if err != nil {
			return fmt.Errorf("read the vector of paper %q: %w", p.ID, err)
		}
		p.Dense, p.DenseHash = sv.Dense, sv.DenseHash
	}
	return nil
}

// VectorSetStatus implements store.VectorSets.
func (s *Store) VectorSetStatus(ctx context.Context) (store.VectorSetStatus, error) {
	if err := ctx.Err(); err != nil {
		return store.VectorSetStatus{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.VectorSetStatus{}, store.ErrClosed
	}
	other := 1 - s.active
	st := store.VectorSetStatus{Active: s.specs[s.active], Other: s.specs[other], Papers: int64(s.idx.live)}
	if st.Other.Model != "" {
		st.OtherVectors = s.idx.vectors(other)
	}
	if st.Active.Model != "" {
		st.ActiveVectors = s.idx.vectors(s.active)
	}
	return st, nil
}

// BeginVectorSet implements store.VectorSets.
func (s *Store) BeginVectorSet(ctx context.Context, spec store.EmbeddingSpec) error {
	if spec.Model == "" || spec.Dimensions <= 0 {
		return fmt.Errorf("begin a vector set: model and dimensions are required, got %+v", spec)
	}
	return s.admin(ctx, func(tx *bolt.Tx, other int) error {
		switch cur := s.specs[other]; {
		case s.specs[1-other].Key() == spec.Key():
			return store.ErrSetActive
		case cur.Key() == spec.Key():
			return nil
		case cur.Model != "":
			return fmt.Errorf("the store keeps vectors of %s beside the active ones; retire them before embedding with another model", cur)
		case other == 0 && s.unretired > 0:
			return fmt.Errorf("%d papers still hold vectors of a retired set; reopen the store to finish retiring it", s.unretired)
		}
		if err := writeSpec(tx.Bucket(bucketMeta), other, spec); err != nil {
			return err
		}
		s.mu.Lock()
		s.specs[other] = spec
		s.idx.sets[other] = vecSet{}
		s.idx.buildANN(other) // empty: vectors are linked in as they come
		s.mu.Unlock()
		return nil
	})
}

// admin runs fn, a change to the vector sets, in a transaction under the writer lock; other is
// the slot that is not active.
func (s *Store) admin(ctx context.Context, fn func(tx *bolt.Tx, other int) error) error {
	unlock, err := s.lockWriter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.update(func(tx *bolt.Tx) error { return fn(tx, 1-s.activeSlot()) })
}

// lockWriter takes the writer lock of an open store, for a call not done yet.
func (s *Store) lockWriter(ctx context.Context) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.writeMu.Lock()
	if s.isClosed() {
		s.writeMu.Unlock()
		return nil, store.ErrClosed
	}
	return s.writeMu.Unlock, nil
}

// MissingVectors implements store.VectorSets, by ascending id: the records' order on disk, so
// a page costs the papers it passes over, not the whole store.
func (s *Store) MissingVectors(ctx context.Context, after string, limit int) ([]store.Paper, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock() // held across the read: the index says which papers lack a vector
	defer s.mu.RUnlock()
	other := 1 - s.active
	if s.closed {
		return nil, store.ErrClosed
	}
	if s.specs[other].Model == "" {
		return nil, store.ErrNoOtherSet
	}
	var out []store.Paper
	err := s.view(func(tx *bolt.Tx) error {
		var ids []string
		c := tx.Bucket(bucketPapers).Cursor()
		k, _ := c.Seek([]byte(after))
		for ; k != nil && len(ids) < limit; k, _ = c.Next() {
			n, ok := s.idx.byID[string(k)]
			if string(k) != after && ok && s.idx.docs[n].dense[other] == nil {
				ids = append(ids, string(k))
			}
		}
		var err error
		out, err = s.readTx(tx, ids)
		return err
	})
	return out, err
}

// PutVectors implements store.VectorSets.
func (s *Store) PutVectors(ctx context.Context, vectors []store.SetVector) ([]string, error) {
	var skipped []string
	err := s.write(ctx, func(tx *bolt.Tx) ([]change, error) {
		skipped = skipped[:0]
		other := 1 - s.activeSlot()
		if s.specs[other].Model == "" {
			return nil, store.ErrNoOtherSet
		}
		return s.putVectorsTx(tx, other, vectors, &skipped)
	})
	if err != nil {
		return nil, err
	}
	return skipped, nil
}

// putVectorsTx stores vectors into slot's set, skipping (and appending to skipped, when set)
// those of papers gone or changed since.
func (s *Store) putVectorsTx(tx *bolt.Tx, slot int, vectors []store.SetVector, skipped *[]string) ([]change, error) {
	papers := tx.Bucket(bucketPapers)
	var changes []change
	for _, v := range vectors {
		if len(v.Dense) != s.specs[slot].Dimensions {
			return nil, fmt.Errorf("paper %q: a vector of %d dimensions for a set of %d", v.ID, len(v.Dense), s.specs[slot].Dimensions)
		}
		old := papers.Get([]byte(v.ID))
		var p store.Paper
		var err error
		if old != nil {
			p, err = decodeRecord(old)
			if err != nil {
				return nil, fmt.Errorf("read stored paper %q: %w", v.ID, err)
			}
		}
		if old == nil || store.TextKey(p.Title, p.Abstract) != v.TextKey {
			if skipped != nil {
				*skipped = append(*skipped, v.ID)
			}
			continue
		}
		if slot == 0 {
			p.Dense, p.DenseHash = v.Dense, v.DenseHash
			err = papers.Put([]byte(v.ID), encodeRecord(&p))
		} else {
			err = tx.Bucket(bucketVectors1).Put([]byte(v.ID), encodeSetVector(v))
		}
		if err != nil {
			return nil, err
		}
		changes = append(changes, change{id: v.ID, vectorOnly: true, vector: v.Dense})
	}
	return changes, nil
}

// SwitchVectorSet implements store.VectorSets.
func (s *Store) SwitchVectorSet(ctx context.Context, to store.EmbeddingSpec, fill store.FillFunc) error {
	unlock, err := s.lockWriter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	other := 1 - s.activeSlot()
	switch {
	case s.specs[1-other].Key() == to.Key():
		return nil
	case s.specs[other].Model != "" && s.specs[other].Key() != to.Key():
		return fmt.Errorf("the other vector set is of %s, not %s", s.specs[other], to)
	}
	vectors, version, err := s.prepareSwitch(ctx, tx, other, fill)
	if err == nil {
		err = sealMeta(tx)
	}
	if err != nil {
		return err
	}
	// Committed under the exclusive lock, which reads hold while they read (Search, Get,
	// Lookup): none sees the file switched and memory not, or the other way round.
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, c := range vectors {
		if n, ok := s.idx.byID[c.id]; ok {
			s.idx.setVector(n, other, c.vector)
		}
	}
	s.active, s.version = other, version
	return nil
}

// prepareSwitch writes what switching to slot other takes into tx: the vectors fill gives the
// papers that have none there yet, the active slot, and the next version.
func (s *Store) prepareSwitch(ctx context.Context, tx *bolt.Tx, other int, fill store.FillFunc) ([]change, uint64, error) {
	if s.specs[other].Model == "" {
		return nil, 0, store.ErrNoOtherSet
	}
	s.mu.RLock()
	var missing []string
	for i := range s.idx.docs {
		if d := &s.idx.docs[i]; d.alive && d.dense[other] == nil {
			missing = append(missing, d.id)
		}
	}
	version := s.version + 1
	s.mu.RUnlock()
	var vectors []change
	if len(missing) > 0 {
		if fill == nil || len(missing) > store.MaxSwitchFill {
			return nil, 0, &store.IncompleteSetError{Missing: int64(len(missing))}
		}
		// The writer lock is held: no paper can change until the switch is committed.
		papers, err := s.readTx(tx, missing)
		if err != nil {
			return nil, 0, err
		}
		filled, err := fill(ctx, papers)
		if err != nil {
			return nil, 0, err
		}
		if vectors, err = s.putVectorsTx(tx, other, filled, nil); err != nil {
			return nil, 0, err
		}
		if len(vectors) < len(missing) {
			return nil, 0, &store.IncompleteSetError{Missing: int64(len(missing) - len(vectors))}
		}
	}
	meta := tx.Bucket(bucketMeta)
	err := errors.Join(meta.Put(keyActiveSlot, []byte{byte(other)}), meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, version)))
	return vectors, version, err
}

// RetireVectorSet implements store.VectorSets. Slot 1's vectors go with their bucket; slot 0's
// are in the records, which are rewritten in batches (finishRetire), after the slot's model is
// forgotten, so a crash part way leaves a set the next Open finishes retiring.
func (s *Store) RetireVectorSet(ctx context.Context) error {
	var slot int
	err := s.admin(ctx, func(tx *bolt.Tx, other int) error {
		if s.specs[other].Model == "" {
			return store.ErrNoOtherSet
		}
		slot = other
		if err := writeSpec(tx.Bucket(bucketMeta), other, store.EmbeddingSpec{}); err != nil {
			return err
		}
		if other == 1 {
			if err := tx.DeleteBucket(bucketVectors1); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketVectors1); err != nil {
				return err
			}
		}
		return nilOnCommit(tx, func() {
			s.mu.Lock()
			s.specs[other] = store.EmbeddingSpec{}
			if other == 0 {
				s.unretired = s.idx.vectors(0)
			}
			s.idx.dropSet(other)
			s.mu.Unlock()
		})
	})
	if err != nil || slot == 1 {
		return err
	}
	return s.finishRetire(ctx)
}

// retireBatch is how many records finishRetire rewrites per transaction.
const retireBatch = 2_000

// finishRetire removes the vectors of a retired slot 0 from the records that still hold them.
func (s *Store) finishRetire(ctx context.Context) error {
	var from []byte
	for s.unretired > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.writeMu.Lock()
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketPapers)
			var keys, values [][]byte
			c := b.Cursor()
			k, v := c.Seek(from)
			for ; k != nil && len(keys) < retireBatch; k, v = c.Next() {
				p, err := decodeRecord(v)
				if err != nil {
					return fmt.Errorf("read stored paper %q: %w", k, err)
				}
				if p.Dense != nil {
					p.Dense, p.DenseHash = nil, ""
					keys, values = append(keys, slices.Clone(k)), append(values, encodeRecord(&p))
				}
			}
			from = slices.Clone(k) // the next batch's first key; nil at the end
			for i := range keys {
				if err := b.Put(keys[i], values[i]); err != nil {
					return err
				}
			}
			return nil
		})
		s.writeMu.Unlock()
		if err != nil {
			return err
		}
		if from == nil {
			s.unretired = 0
		}
	}
	return nil
}

// nilOnCommit runs fn once tx has committed, and returns nil: for the last statement of a
// transaction whose memory update must wait for durability.
func nilOnCommit(tx *bolt.Tx, fn func()) error {
	tx.OnCommit(fn)
	return nil
}
