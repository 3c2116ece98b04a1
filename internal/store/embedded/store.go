package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/mmap"
	"github.com/paperrec/recommender/internal/store"
)

// Backend is the name GetIndexInfo reports for this store.
const Backend = "embedded"

// FileName is the database file inside the data directory.
const FileName = "papers.db"

var (
	bucketPapers = []byte("papers")
	bucketMeta   = []byte("meta")
	keyVersion   = []byte("index_version")

	keyEmbeddingModel = []byte("embedding_model")
	keyEmbeddingDims  = []byte("embedding_dimensions")
	// The prefixes are absent from stores bound before they existed: those texts had none.
	keyQueryPrefix    = []byte("embedding_query_prefix")
	keyDocumentPrefix = []byte("embedding_document_prefix")
)

// Options configures the embedded store.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// ANN configures the approximate index of dense vectors; zero fields take DefaultANN's.
	ANN ANNOptions
	// AllowEmpty opens a directory whose papers file is missing or empty although the files
	// derived from it remain, starting an empty store; without it that is a MissingError.
	AllowEmpty bool
	// Log receives what opening repaired (a damaged vector index rebuilt); nil: discarded.
	Log *slog.Logger
	// PruneLexical skips postings in lexical search by MaxScore (same answers). Scoring every
	// posting a window of docs at a time was faster for seeds and titles alike over a million
	// papers (bench-lexical, BENCHMARKS.md), so that is the default; this is for measuring.
	PruneLexical bool
}

// Validate reports every problem with the options at once.
func (o Options) Validate() error {
	if o.Dir == "" {
		return errors.New("embedded store: data directory is empty")
	}
	return nil
}

// Store is the embedded store.
//
// Papers are persisted in bbolt (go.etcd.io/bbolt), the B+tree key-value store behind etcd: one
// file, copy-on-write pages and an fsync on every commit. A batch is one transaction, so once
// Upsert returns the whole batch survives kill -9 or power loss and a torn batch is impossible,
// with no recovery code of ours to get wrong; readers never block the writer. A write-ahead log of
// our own would add snapshotting and replay for no gain at batched-upsert rates. Retrieval state
// (inverted index, vectors, filter fields) is in memory: a clean Close writes it as a snapshot
// the next Open maps (snapshot.go); without one, Open rebuilds it from the records, so the
// papers file stays one record per paper.
type Store struct {
	dir     string
	log     *slog.Logger
	db      *bolt.DB
	writeMu sync.Mutex // serialises writers so memory is updated in commit order

	pendingMu sync.Mutex
	pending   []*pendingWrite // writes waiting for the next group commit

	mu      sync.RWMutex // guards everything below
	idx     *index
	version uint64
	// specs holds each vector slot's model (zero: no set there); active is the slot queries
	// and writes use. Slot 0's vectors are kept in the records, slot 1's in bucketVectors1.
	specs  [2]store.EmbeddingSpec
	active int
	closed bool
	unmaps []func() error // release the vectors files mapped at Open
	// floatFiles are those files, read by readVector; set while opening, then only read.
	floatFiles []*mmap.FloatFile
	linkBroken sync.Once     // the linker found one cut short: said once
	written    chan struct{} // closed by the next commit that writes a paper (ChangeLog.Written)
	lastWrite  int64         // unix ns of the latest write log entry; under writeMu
	// applied is the last write log entry the in-memory index reflects: readers of the log
	// see no further, so a paper they read of is already searchable.
	applied uint64
	logged  uint64 // the last entry written by the commit in progress; under writeMu
	// unretired counts records still holding vectors of a retired slot 0; under writeMu.
	unretired int64
	// The linker (linker.go): stopped by Close; linked is closed and replaced at each batch
	// it publishes.
	linkStop, linkDone chan struct{}
	linked             chan struct{}
	linkHold           sync.Mutex // held by the linker over a batch; linkHeld: tests pause it
	linkHeld           bool
	lastCommit         atomic.Int64 // unix ns of the latest commit that changed something
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.TermStatser = (*Store)(nil)
)

// Open opens (or creates) the store in opts.Dir and loads its index into memory.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(opts.Dir, FileName)
	if err := checkMissing(opts.Dir, opts.AllowEmpty); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		// A new papers file (or an empty one, allowed): a snapshot beside it is of papers it
		// never held.
		_ = os.Remove(filepath.Join(opts.Dir, snapFile))
	}
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	var db *bolt.DB
	err := guard(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout: time.Second,
			// The free list is written with each commit: rebuilding it at open instead (as etcd
			// runs) walks every page of the file, which at millions of papers took minutes and
			// left the whole file resident.
			NoFreelistSync: false,
			FreelistType:   bolt.FreelistMapType,
		})
		return err
	})
	var de *DamagedError
	switch {
	case errors.As(err, &de):
		// A panic inside bolt.Open leaves its file open and locked; the process is about to
		// report this and stop, which releases both.
		return nil, err
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("data directory %s is in use by another process", opts.Dir)
	case errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) || errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, &DamagedError{Path: path, Problem: err.Error()}
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, d := opts.ANN, DefaultANN()
	if cfg.Graph.M == 0 {
		cfg.Graph = d.Graph
	}
	if cfg.EfSearch == 0 {
		cfg.EfSearch = d.EfSearch
	}
	if cfg.ExactBelow == 0 {
		cfg.ExactBelow = d.ExactBelow
	}
	switch cfg.Quantization {
	case "":
		cfg.Quantization = d.Quantization
	case "int8", "none":
	default:
		_ = db.Close()
		return nil, fmt.Errorf("ANN quantization must be int8 or none, got %q", cfg.Quantization)
	}
	cfg.Graph.Int8 = cfg.Quantization == "int8"
	s := &Store{dir: opts.Dir, db: db, log: log}
	cfg.Graph.Read = s.readVector
	s.idx = newIndex(cfg, opts.PruneLexical)
	if err := guard(path, s.load); err != nil {
		_ = db.Close()
		if errors.Is(err, errCorrupt) && !errors.As(err, &de) {
			err = &DamagedError{Path: path, Problem: err.Error()}
		}
		return nil, err
	}
	snapErr := s.loadSnapshot()
	if errors.As(snapErr, &de) {
		_ = db.Close()
		return nil, de
	}
	if snapErr != nil {
		switch {
		case errors.Is(snapErr, errDerivedDamaged):
			log.Warn("index snapshot not used, a file of it is damaged; reading the papers (the next clean stop saves a new one)", "reason", snapErr)
		case !errors.Is(snapErr, errNoSnapshot):
			log.Info("index snapshot not used; reading the papers", "reason", snapErr)
		}
		if err := guard(path, func() error { return s.loadRecords(ctx) }); err != nil {
			_ = db.Close()
			if errors.Is(err, errCorrupt) && !errors.As(err, &de) {
				err = &DamagedError{Path: path, Problem: err.Error()}
			}
			return nil, err
		}
	}
	if err := s.finishRetire(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("finish retiring a vector set: %w", err)
	}
	for slot := range s.specs {
		if slot != 0 && s.specs[slot].Model == "" {
			continue // slot 0 always has a graph, possibly empty, as before there were two
		}
		var err error
		if snapErr != nil { // else the snapshot mapped the files it goes with
			err = s.mapVectors(slot)
		}
		if err == nil {
			_, err = s.loadANN(slot)
		}
		if err != nil {
			_ = s.unmap()
			_ = db.Close()
			return nil, fmt.Errorf("load the vectors of slot %d: %w", slot, err)
		}
	}
	s.startLinker()
	return s, nil
}

// load reads the store's state but the papers (loadSnapshot or loadRecords), creating the
// buckets of a new store.
func (s *Store) load() error {
	return s.update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketPapers); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := checkMetaSum(s.db.Path(), meta); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketFeeds, bucketVectors1, bucketLists, bucketListsMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		changes, err := tx.CreateBucketIfNotExists(bucketChanges)
		if err != nil {
			return err
		}
		s.applied = changes.Sequence()
		if k, v := changes.Cursor().Last(); k != nil {
			last, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			s.lastWrite = last.At.UnixNano()
		}
		s.written = make(chan struct{})
		if v := meta.Get(keyVersion); len(v) == 8 {
			s.version = binary.BigEndian.Uint64(v)
		}
		for slot := range s.specs {
			s.specs[slot], _ = readSpec(meta, slot)
		}
		if v := meta.Get(keyActiveSlot); len(v) == 1 && v[0] == 1 {
			s.active = 1
		}
		return nil
	})
}

// loadRecords builds the index from the records: what opening costs without a snapshot.
func (s *Store) loadRecords(ctx context.Context) error {
	return s.view(func(tx *bolt.Tx) error {
		papers := tx.Bucket(bucketPapers)
		// A retired slot 0 may still hold vectors in records not yet rewritten (finishRetire).
		keep0 := s.specs[0].Model != "" || s.active == 0
		c := papers.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			p, err := decodeForIndex(v)
			if err != nil {
				return fmt.Errorf("load paper %q: %w", k, err)
			}
			var dense [2][]float32
			if keep0 {
				dense[0] = p.Dense
			} else if p.Dense != nil {
				s.unretired++
			}
			s.idx.put(&p, dense)
		}
		if v1 := tx.Bucket(bucketVectors1); v1 != nil && s.specs[1].Model != "" {
			c := v1.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				sv, err := decodeSetVector(v)
				if err != nil {
					return fmt.Errorf("load the other vector of paper %q: %w", k, err)
				}
				if n, ok := s.idx.byID[string(k)]; ok {
					s.idx.setVector(n, 1, sv.Dense)
				}
			}
		}
		return nil
	})
}

// change is one committed write, applied to memory after the commit.
type change struct {
	id      string
	oldLex  lexical.Vector // terms of the replaced record, if any
	hadOld  bool
	paper   *store.Paper // nil for a delete
	deleted bool
	// keepOther: the paper's text is unchanged, so its vector in the other set still holds.
	keepOther bool
	// vectorOnly: only the paper's vector in the other set changed, to vector; not a write
	// of the paper (the write log leaves it out).
	vectorOnly bool
	vector     []float32
}

// Upsert implements store.Store. Papers' Dense go to the active set; a paper whose text
// changes loses its vector in the other set (it was embedded from the old text).
func (s *Store) Upsert(ctx context.Context, papers []store.Paper) ([]store.Outcome, error) {
	outcomes := make([]store.Outcome, len(papers))
	err := s.write(ctx, func(tx *bolt.Tx) ([]change, error) {
		b := tx.Bucket(bucketPapers)
		active := s.activeSlot()
		var changes []change
		for i := range papers {
			p := &papers[i]
			if err := s.checkSet(p.DenseSet); err != nil {
				return nil, err
			}
			rec := *p
			rec.DenseSet = ""
			old := b.Get([]byte(p.ID))
			if active == 0 && old != nil && bytes.Equal(old, encodeRecord(&rec)) {
				outcomes[i] = store.Unchanged
				continue
			}
			var prev *store.Paper
			if old != nil {
				pp, err := decodeRecord(old)
				if err != nil {
					return nil, fmt.Errorf("read stored paper %q: %w", p.ID, err)
				}
				prev = &pp
			}
			sameText := prev != nil && prev.Title == p.Title && prev.Abstract == p.Abstract
			// The vector of slot 1 is kept beside the record, slot 0's in it.
			var vec1 []byte
			if active == 1 {
				rec.Dense, rec.DenseHash = nil, ""
				if sameText && s.specs[0].Model != "" {
					rec.Dense, rec.DenseHash = prev.Dense, prev.DenseHash
				}
				if p.Dense != nil {
					vec1 = encodeSetVector(store.SetVector{TextKey: store.TextKey(p.Title, p.Abstract), Dense: p.Dense, DenseHash: p.DenseHash})
				}
			}
			enc := encodeRecord(&rec)
			v1 := tx.Bucket(bucketVectors1)
			if old != nil && bytes.Equal(old, enc) && (active == 0 || bytes.Equal(v1.Get([]byte(p.ID)), vec1)) {
				outcomes[i] = store.Unchanged
				continue
			}
			c := change{id: p.ID, paper: p, keepOther: sameText}
			outcomes[i] = store.Inserted
			if prev != nil {
				c.oldLex, c.hadOld = prev.Lexical, true
				outcomes[i] = store.Updated
			}
			if err := b.Put([]byte(p.ID), enc); err != nil {
				return nil, err
			}
			var err error
			switch {
			case active == 1 && vec1 != nil:
				err = v1.Put([]byte(p.ID), vec1)
			case active == 1 || !sameText:
				err = v1.Delete([]byte(p.ID))
			}
			if err != nil {
				return nil, err
			}
			changes = append(changes, c)
		}
		return changes, nil
	})
	if err != nil {
		return nil, fmt.Errorf("upsert %d papers: %w", len(papers), err)
	}
	return outcomes, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, ids []string) ([]string, error) {
	var notFound []string
	err := s.write(ctx, func(tx *bolt.Tx) ([]change, error) {
		b := tx.Bucket(bucketPapers)
		var changes []change
		for _, id := range ids {
			old := b.Get([]byte(id))
			if old == nil {
				if !slices.Contains(notFound, id) {
					notFound = append(notFound, id)
				}
				continue
			}
			prev, err := decodeRecord(old)
			if err != nil {
				return nil, fmt.Errorf("read stored paper %q: %w", id, err)
			}
			if err := errors.Join(b.Delete([]byte(id)), tx.Bucket(bucketVectors1).Delete([]byte(id)), deleteList(tx, id)); err != nil {
				return nil, err
			}
			changes = append(changes, change{id: id, oldLex: prev.Lexical, hadOld: true, deleted: true})
		}
		return changes, nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete %d papers: %w", len(ids), err)
	}
	return notFound, nil
}

// pendingWrite is one caller's write, committed with whatever others are waiting.
type pendingWrite struct {
	fn   func(*bolt.Tx) ([]change, error)
	done chan error
}

// write runs fn durably, bumps the index version when anything changed, then applies the
// changes to the in-memory index in commit order. Concurrent writes are committed together
// (group commit): whoever takes the writer lock commits every write queued by then in one
// transaction and one fsync, so many small writers (single-paper upserts from many clients)
// cost one sync per group, not one each. fn may run twice (see commit), so it must only record
// its results, not accumulate them.
func (s *Store) write(ctx context.Context, fn func(*bolt.Tx) ([]change, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &pendingWrite{fn: fn, done: make(chan error, 1)}
	s.pendingMu.Lock()
	s.pending = append(s.pending, w)
	s.pendingMu.Unlock()

	s.writeMu.Lock()
	s.pendingMu.Lock()
	group := s.pending
	s.pending = nil
	s.pendingMu.Unlock()
	if len(group) > 0 { // else a leader before us committed ours
		s.commit(group)
	}
	s.writeMu.Unlock()
	return <-w.done
}

// commit runs a group of writes in one transaction. When one of them fails, the transaction is
// rolled back and each write runs alone, so the others still succeed and the failing one gets
// its own error. Called with writeMu held.
func (s *Store) commit(group []*pendingWrite) {
	if s.isClosed() {
		for _, w := range group {
			w.done <- store.ErrClosed
		}
		return
	}
	if len(group) > 1 {
		if err := s.commitTx(group); err == nil {
			for _, w := range group {
				w.done <- nil
			}
			return
		}
	}
	for _, w := range group {
		w.done <- s.commitTx([]*pendingWrite{w})
	}
}

// commitTx runs the writes in one transaction and, once it is durable, applies their changes
// to the index.
func (s *Store) commitTx(group []*pendingWrite) error {
	var changes []change
	var version uint64
	err := s.update(func(tx *bolt.Tx) error {
		for _, w := range group {
			c, err := w.fn(tx)
			if err != nil {
				return err
			}
			changes = append(changes, c...)
		}
		if len(changes) == 0 {
			return nil
		}
		s.mu.RLock()
		version = s.version + 1
		s.mu.RUnlock()
		if err := s.logChanges(tx, changes); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint64(nil, version))
	})
	if err != nil || len(changes) == 0 {
		return err
	}
	s.lastCommit.Store(time.Now().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	x, other := s.idx, 1-s.active
	for _, c := range changes {
		if c.vectorOnly {
			if n, ok := x.byID[c.id]; ok {
				x.setVector(n, other, c.vector)
			}
			continue
		}
		var dense [2][]float32
		if c.hadOld {
			if n, ok := x.byID[c.id]; ok && c.keepOther {
				dense[other] = x.docs[n].dense[other]
			}
			x.remove(c.id, c.oldLex)
		}
		if !c.deleted {
			dense[s.active] = c.paper.Dense
			x.put(c.paper, dense)
		}
	}
	s.idx.maybeCompact()
	s.version = version
	s.applied = max(s.applied, s.logged)
	close(s.written)
	s.written = make(chan struct{})
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, ids []string) ([]store.Paper, error) {
	found, missing, err := s.read(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, &store.NotFoundError{IDs: missing}
	}
	return found, nil
}

// Lookup implements store.Store.
func (s *Store) Lookup(ctx context.Context, ids []string) ([]store.Paper, error) {
	found, _, err := s.read(ctx, ids)
	return found, err
}

func (s *Store) read(ctx context.Context, ids []string) (found []store.Paper, missing []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if s.isClosed() {
		return nil, nil, store.ErrClosed
	}
	s.mu.RLock() // a switch of vector sets commits under the write lock: see SwitchVectorSet
	defer s.mu.RUnlock()
	var committed uint64
	err = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyVersion); len(v) == 8 {
			committed = binary.BigEndian.Uint64(v)
		}
		found, err = s.readTx(tx, ids)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	have := make(map[string]bool, len(found))
	for _, p := range found {
		have[p.ID] = true
	}
	for _, id := range ids {
		if have[id] {
			continue
		}
		// The index holds what the file held at its version: with no write between them, a
		// paper it holds whose record the file lacks was lost to damage (its key's page).
		if _, indexed := s.idx.byID[id]; indexed && committed == s.version {
			return nil, nil, &DamagedError{Path: filepath.Join(s.dir, FileName), Problem: fmt.Sprintf("paper %q is indexed but its record is missing", id)}
		}
		missing = append(missing, id)
	}
	return found, missing, nil
}

// readTx reads the papers with the given ids that exist, in that order, with the vectors of the
// set active in tx.
func (s *Store) readTx(tx *bolt.Tx, ids []string) ([]store.Paper, error) {
	found := make([]store.Paper, 0, len(ids))
	b := tx.Bucket(bucketPapers)
	for _, id := range ids {
		v := b.Get([]byte(id))
		if v == nil {
			continue
		}
		p, err := decodeRecord(v)
		if err != nil {
			return nil, fmt.Errorf("read paper %q: %w", id, err)
		}
		if err := s.activeVector(tx, &p); err != nil {
			return nil, err
		}
		found = append(found, p)
	}
	return found, nil
}

// BindEmbedding implements store.Store. The binding is kept in the meta bucket.
func (s *Store) BindEmbedding(ctx context.Context, spec store.EmbeddingSpec) (store.EmbeddingSpec, error) {
	unlock, err := s.lockWriter(ctx)
	if err != nil {
		return store.EmbeddingSpec{}, err
	}
	defer unlock()
	var bound store.EmbeddingSpec
	active := s.activeSlot()
	err = s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if stored, ok := readSpec(meta, active); ok {
			if stored.Conflicts(spec) {
				return &store.EmbeddingMismatchError{Stored: stored, Configured: spec}
			}
			bound = stored
			return nil
		}
		if spec.Model == "" || spec.Dimensions <= 0 {
			return fmt.Errorf("bind embedding: model and dimensions are required, got %+v", spec)
		}
		if other := s.specs[1-active]; other.Model != "" && !other.Conflicts(spec) {
			return &store.EmbeddingMismatchError{Stored: s.specs[active], Configured: spec}
		}
		bound = spec
		return writeSpec(meta, active, spec)
	})
	if err != nil {
		return store.EmbeddingSpec{}, err
	}
	s.mu.Lock()
	s.specs[active] = bound
	s.mu.Unlock()
	return bound, nil
}

// IDF implements store.TermStatser.
func (s *Store) IDF(ctx context.Context, terms []uint32) ([]float64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]float64, len(terms))
	for i, t := range terms {
		if ti, ok := s.idx.termOf.get(t); ok && s.idx.terms[ti].df > 0 {
			out[i] = lexical.IDF(float64(s.idx.live), float64(s.idx.terms[ti].df))
		}
	}
	return out, nil
}

// Search implements store.Store.
func (s *Store) Search(ctx context.Context, q store.Query) (lists store.Lists, err error) {
	if err := ctx.Err(); err != nil {
		return store.Lists{}, err
	}
	// Vectors may be read from the mapped vectors file: one cut short under the running store
	// (by hand, by a full disk's repair) faults on a page it no longer has, which guard turns
	// into an error naming it instead of the end of the process.
	err = guard(filepath.Join(s.dir, vectorsFile), func() error {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			return store.ErrClosed
		}
		slot, err := s.slotOf(q.DenseSet)
		if err != nil {
			return err
		}
		lists, err = s.idx.search(ctx, q, slot)
		return err
	})
	return lists, err
}

// slotOf is the slot of the vector set named set (empty: the active one). Called with s.mu held.
func (s *Store) slotOf(set string) (int, error) {
	slot := s.active
	if set != "" && set != s.specs[slot].Key() {
		slot = 1 - slot
		if set != s.specs[slot].Key() {
			return 0, &store.EmbeddingSwitchedError{Active: s.specs[s.active]}
		}
	}
	return slot, nil
}

// Read implements store.Store. What ranking reads (title, date, year, sketch, vectors) comes
// from memory; the record on disk is read only for metadata or term vectors (a re-ranked pool
// of 100 records read per request left 454 MB of papers.db resident after 500 requests at a
// million papers, and a page not in the cache costs a disk read).
func (s *Store) Read(ctx context.Context, ids []string, fields store.Fields, denseSet string) (records []store.Record, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = guard(filepath.Join(s.dir, vectorsFile), func() error {
		records, err = s.readRecords(ids, fields, denseSet)
		return err
	})
	return records, err
}

func (s *Store) readRecords(ids []string, fields store.Fields, denseSet string) ([]store.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock() // held while reading records so they and the index agree
	if s.closed {
		return nil, store.ErrClosed
	}
	slot, err := s.slotOf(denseSet)
	if err != nil {
		return nil, err
	}
	records := make([]store.Record, 0, len(ids))
	var sketches []lexical.Sketch
	var vectors []float32 // the papers' embeddings, copied in one block (the index's may be mapped)
	if fields&store.Sketch != 0 {
		sketches = make([]lexical.Sketch, 0, len(ids))
	}
	fromDisk := fields&(store.Metadata|store.LexicalVector) != 0
	readAll := func(b *bolt.Bucket) error {
		for _, id := range ids {
			n, ok := s.idx.byID[id]
			if !ok {
				continue // deleted since the search that found it
			}
			d := &s.idx.docs[n]
			r := store.Record{Paper: store.Paper{ID: d.id, Title: d.title, Date: d.date, Year: d.year}}
			if b != nil {
				v := b.Get([]byte(id))
				if v == nil {
					// Deleted by a write committed since the index was searched: writes reach
					// the index only after their commit, so disk can be one write ahead.
					continue
				}
				decode := decodeMetadata
				if fields&store.LexicalVector != 0 {
					decode = decodeRecord
				}
				var err error
				if r.Paper, err = decode(v); err != nil {
					return fmt.Errorf("read paper %q: %w", id, err)
				}
				if fields&store.LexicalVector == 0 {
					r.Paper.Lexical = lexical.Vector{}
				}
				r.Paper.Dense, r.Paper.DenseSet = nil, "" // the record holds slot 0's: the read's set counts
			}
			if fields&store.Sketch != 0 {
				sketches = append(sketches, d.sketch)
				r.Sketch = &sketches[len(sketches)-1]
			}
			if dense := d.dense[slot]; fields&store.DenseVector != 0 && dense != nil {
				if vectors == nil {
					vectors = make([]float32, 0, len(ids)*len(dense))
				}
				// With pread, as rescoring reads them: copying from the mapping made the
				// pool's folios of vectors.f32 resident, 1.3 GB after 500 requests.
				k := len(vectors)
				vectors = slices.Grow(vectors, len(dense))[:k+len(dense)]
				copy(vectors[k:], s.readVector(dense, vectors[k:]))
				r.Paper.Dense, r.Paper.DenseSet = vectors[k:len(vectors):len(vectors)], s.specs[slot].Key()
			}
			records = append(records, r)
		}
		return nil
	}
	if !fromDisk {
		return records, readAll(nil)
	}
	return records, s.view(func(tx *bolt.Tx) error { return readAll(tx.Bucket(bucketPapers)) })
}

// Version implements store.Versioner: the write counter, Stats' IndexVersion.
func (s *Store) Version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// Stats implements store.Store.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	if err := ctx.Err(); err != nil {
		return store.Stats{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Stats{}, store.ErrClosed
	}
	return store.Stats{Backend: Backend, PaperCount: int64(s.idx.live), IndexVersion: s.version, Embedding: s.specs[s.active]}, nil
}

// Close implements store.Store. Every acknowledged write is already on disk; Close releases the
// file lock so another process can open the directory.
func (s *Store) Close() error { return s.CloseWithin(context.Background()) }

// CloseWithin is Close with the saves of the graphs and the index snapshot given up once ctx is
// done (serve gives them what is left of its shutdown timeout): the files they would replace
// stay, and the next start, seeing them older than the papers, rebuilds from the records.
func (s *Store) CloseWithin(ctx context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.isClosed() {
		return nil
	}
	s.stopLinker() // no writer can queue more: the graphs are saved as linked so far
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	close(s.linked) // wakes WaitLinked, to see the store closed
	// The graphs and the index snapshot are saved on a clean close only; after a crash the
	// next start rebuilds them from the records.
	var saveErr error
	// The saves read the mapped vectors: guarded, as searches are, against a file cut short.
	vectors := filepath.Join(s.dir, vectorsFile)
	for slot := range s.idx.sets {
		if ctx.Err() != nil {
			break
		}
		if err := guard(vectors, func() error { return s.saveANN(ctx, slot) }); ctx.Err() == nil && err != nil {
			saveErr = errors.Join(saveErr, fmt.Errorf("save vector index %d (it will be rebuilt): %w", slot, err))
		}
	}
	if ctx.Err() == nil {
		if err := guard(vectors, func() error { return s.saveSnapshot(ctx) }); ctx.Err() == nil && err != nil {
			saveErr = errors.Join(saveErr, fmt.Errorf("save the index snapshot (the next start reads the papers): %w", err))
		}
	}
	if ctx.Err() != nil {
		s.log.Warn("shutdown timeout reached before the index snapshot was saved: the next start reads the papers")
	}
	return errors.Join(saveErr, s.db.Close(), s.unmap())
}

// mapFloats maps a vectors file for the store's lifetime. Mapped vectors are read in place
// where many are (an exact scan); a graph search's rescoring and hits copy theirs out with
// pread instead (readVector), so random reads leave them in the page cache, not in the
// process.
func (s *Store) mapFloats(path string) (*mmap.FloatFile, error) {
	ff, err := mmap.OpenFloats(path)
	if err != nil {
		return nil, err
	}
	s.unmaps = append(s.unmaps, ff.Close)
	s.floatFiles = append(s.floatFiles, ff)
	return ff, nil
}

// readVector returns v's floats, read into dst with pread when v lies in a mapped file.
func (s *Store) readVector(v, dst []float32) []float32 {
	for _, ff := range s.floatFiles {
		if ff.Holds(v) {
			return ff.Read(v, dst)
		}
	}
	return v
}

// unmap releases the mapped vectors files.
func (s *Store) unmap() error {
	var err error
	for _, u := range s.unmaps {
		err = errors.Join(err, u())
	}
	s.unmaps, s.floatFiles = nil, nil
	return err
}

// vectorsFile holds the vectors of the papers loaded at Open, memory-mapped: they sit in the
// page cache rather than the Go heap, read on demand (a graph search on int8 codes rescores ef
// of them) and droppable under memory pressure. It is derived data, rewritten at every Open;
// vectors written while running stay on the heap until the next one.
const vectorsFile = "vectors.f32"

func (s *Store) mapVectors(slot int) error {
	x := s.idx
	var vecs [][]float32
	for i := range x.docs {
		if x.docs[i].alive && x.docs[i].dense[slot] != nil {
			vecs = append(vecs, x.docs[i].dense[slot])
		}
	}
	path := filepath.Join(s.dir, slotFile(vectorsFile, slot))
	if err := mmap.WriteFloats(path, vecs); err != nil {
		return err
	}
	ff, err := s.mapFloats(path)
	if err != nil {
		return err
	}
	flat := ff.Flat
	off := 0
	for i := range x.docs {
		if d := &x.docs[i]; d.alive && d.dense[slot] != nil {
			n := len(d.dense[slot])
			d.dense[slot] = flat[off : off+n : off+n]
			off += n
		}
	}
	return nil
}
