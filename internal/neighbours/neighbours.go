// Package neighbours keeps every paper's precomputed neighbour list: the top papers a search
// with the paper as its one seed returns, built once over the store by following its write log
// from the start, then kept current as papers are written. A written paper gets its list, and
// the papers of that list get theirs computed again, so the new paper enters the lists it now
// beats (its reverse neighbours, approximated by its own neighbours: similarity is nearly
// symmetric). Lists live in the store (store.NeighbourLists), so any replica can serve them.
package neighbours

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paperrec/recommender/internal/store"
)

// DefaultLength is how many papers a list holds unless configured.
const DefaultLength = 20

// Entry is one paper of a list, with the score and relevance the search gave it.
type Entry struct {
	ID               string
	Score, Relevance float32
}

// List is one paper's stored list.
type List struct {
	ID         string
	Entries    []Entry
	ComputedAt time.Time
	key        uint32 // keyHash of the ranking it was computed with
}

// ComputeFunc returns a paper's neighbours by a search, best first, at most the keeper's
// length; a *store.NotFoundError when the paper is not stored.
type ComputeFunc func(ctx context.Context, id string) ([]Entry, error)

// Keeper builds and keeps the lists. Set its fields before Run; Lookup and Status may be called
// concurrently with it (and by processes that do not run it).
type Keeper struct {
	Lists   store.NeighbourLists
	Log     store.ChangeLog
	Compute ComputeFunc
	// Key names what the lists are computed with (the ranking: model, prefixes, mode, length):
	// when it changes, the lists are built again and until then none is served.
	Key func() string
	// Papers counts the stored papers: a backlog of writes that would cost more in reverse
	// neighbours than computing every list again is taken in by a rebuild.
	Papers func(ctx context.Context) (int64, error)
	// Length is how many papers a list holds.
	Length int
	// Workers computes lists in parallel (default 1).
	Workers int
	Logger  *slog.Logger
	// ID names this keeper among those sharing the store (replicas over one Qdrant): one keeps
	// the lists at a time, renewing its lease; the others take over once it has not for LeaseTTL
	// (default DefaultLeaseTTL).
	ID       string
	LeaseTTL time.Duration

	computed atomic.Int64 // lists computed by Run, for its progress log
}

// state is the upkeep's progress, stored with the lists.
type state struct {
	Key string `json:"key"`
	// Cursor is the last write whose lists are stored; BuildHead the head of the write log
	// when the build started: writes up to it need their own list only (the build computes
	// every list over the whole store), later ones their reverse neighbours' too.
	Cursor    store.Cursor `json:"cursor"`
	BuildHead store.Cursor `json:"build_head"`
	Built     bool         `json:"built"`
	BuiltAt   time.Time    `json:"built_at,omitzero"`
	// Owner is the keeper keeping the lists; Renewed when it last said so.
	Owner   string    `json:"owner,omitempty"`
	Renewed time.Time `json:"renewed,omitzero"`
}

// DefaultLeaseTTL is how long a keeper's lease lasts unrenewed; it renews a third of that.
const DefaultLeaseTTL = 30 * time.Second

func (k *Keeper) leaseTTL() time.Duration {
	if k.LeaseTTL > 0 {
		return k.LeaseTTL
	}
	return DefaultLeaseTTL
}

// Batch sizes: the build reads the log in large batches; following it, small ones, so a write
// is in its lists soon after.
const (
	buildBatch  = 512
	followBatch = 16
)

// Run builds the lists (or resumes a build) and keeps them current until ctx ends, while it
// holds the lease; while another keeper does, it waits to take over.
func (k *Keeper) Run(ctx context.Context) error {
	defer k.release()
	for {
		// The stored state is the truth: another keeper may have moved it.
		st, err := k.loadState(ctx)
		if err != nil {
			return err
		}
		if st.Owner != "" && st.Owner != k.ID && time.Since(st.Renewed) < k.leaseTTL() {
			if err := sleep(ctx, k.leaseTTL()/3); err != nil {
				return err
			}
			continue
		}
		if st.Owner != k.ID && st.Owner != "" {
			k.Logger.Info("taking over the neighbour lists' upkeep", "from", st.Owner)
		}
		st.Owner = k.ID
		if key := k.Key(); st.Key != key {
			if st, err = k.restart(ctx, key); err != nil {
				return err
			}
		}
		if err := k.step(ctx, &st); err != nil {
			return err
		}
	}
}

// step takes in one batch of writes, or waits for the next write (renewing the lease), and
// stores the state.
func (k *Keeper) step(ctx context.Context, st *state) error {
	building := !st.Built || st.Cursor.Before(st.BuildHead) // the first build, or a rebuild
	batch := followBatch
	if building {
		batch = buildBatch
	}
	wake := k.Log.Written() // before reading, so a write after the read is not missed
	changes, err := k.Log.Changes(ctx, st.Cursor, batch)
	if err != nil {
		return err
	}
	switch {
	case len(changes) == 0:
		if !st.Built {
			st.Built, st.BuiltAt = true, time.Now().UTC()
			k.Logger.Info("neighbour lists built", "lists", k.computed.Load())
		}
		if err := k.saveState(ctx, *st); err != nil {
			return err
		}
		renew := time.NewTimer(k.leaseTTL() / 3)
		defer renew.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-renew.C:
		}
		return nil
	case !building && len(changes) == batch:
		rebuild, err := k.backlogged(ctx, *st)
		if err != nil {
			return err
		}
		if !rebuild {
			break
		}
		if st.BuildHead, err = k.Log.Head(ctx); err != nil {
			return err
		}
		st.Cursor = store.Cursor{}
		k.Logger.Info("many papers written at once: computing every neighbour list again rather than each new paper's reverse neighbours; the lists are served meanwhile")
		return k.saveState(ctx, *st)
	}
	if err := k.apply(ctx, st, changes); err != nil {
		return err
	}
	return k.saveState(ctx, *st)
}

// release gives the lease up when this keeper holds it, so another (this one restarted, a
// replica) takes over at once rather than after the lease's time.
func (k *Keeper) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := k.loadState(ctx); err == nil && st.Owner == k.ID {
		st.Owner = ""
		if err := k.saveState(ctx, st); err != nil {
			k.Logger.Warn("the neighbour lists' lease could not be given up: another keeper takes over once it runs out", "error", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backlogged reports whether the writes after st's cursor cost more taken in one by one (a list
// and its Length reverse neighbours' each) than every list computed again.
func (k *Keeper) backlogged(ctx context.Context, st state) (bool, error) {
	n, err := k.Papers(ctx)
	if err != nil || n == 0 {
		return false, err
	}
	enough := int(n/int64(k.Length+1)) + 1
	pending, err := k.Log.Changes(ctx, st.Cursor, enough)
	return len(pending) >= enough, err
}

// restart drops the lists and starts a build with key.
func (k *Keeper) restart(ctx context.Context, key string) (state, error) {
	if err := k.Lists.ResetLists(ctx); err != nil {
		return state{}, err
	}
	head, err := k.Log.Head(ctx)
	if err != nil {
		return state{}, err
	}
	st := state{Key: key, BuildHead: head, Owner: k.ID}
	k.Logger.Info("building the neighbour lists of every paper in the background; until a paper's list is built, its similar papers are searched")
	return st, k.saveState(ctx, st)
}

// apply computes the lists a batch of writes needs and stores them, then moves the cursor.
func (k *Keeper) apply(ctx context.Context, st *state, changes []store.Change) error {
	written := make([]string, 0, len(changes))
	after := map[string]bool{} // written after the build started: their reverse neighbours too
	seen := map[string]bool{}
	for _, c := range changes {
		if st.BuildHead.Before(c.Cursor) {
			after[c.ID] = true
		}
		if !seen[c.ID] {
			seen[c.ID] = true
			written = append(written, c.ID)
		}
	}
	lists, err := k.computeAll(ctx, written)
	if err != nil {
		return err
	}
	var reverse []string
	for _, l := range lists {
		if !after[l.ID] {
			continue
		}
		for _, e := range l.Entries {
			if !seen[e.ID] {
				seen[e.ID] = true
				reverse = append(reverse, e.ID)
			}
		}
	}
	more, err := k.computeAll(ctx, reverse)
	if err != nil {
		return err
	}
	records := make([]store.ListRecord, 0, len(lists)+len(more))
	key := keyHash(st.Key)
	for _, l := range append(lists, more...) {
		l.key = key
		records = append(records, store.ListRecord{ID: l.ID, Data: l.encode()})
	}
	if err := k.Lists.PutLists(ctx, records); err != nil {
		return err
	}
	st.Cursor = changes[len(changes)-1].Cursor
	if !st.Built && !st.Cursor.Before(st.BuildHead) {
		st.Built, st.BuiltAt = true, time.Now().UTC()
		k.Logger.Info("neighbour lists built; following writes", "lists", k.computed.Load()+int64(len(records)))
	}
	if n := k.computed.Add(int64(len(records))); !st.Built && n/50_000 != (n-int64(len(records)))/50_000 {
		k.Logger.Info("building neighbour lists", "computed", n)
	}
	return nil
}

// computeAll computes the lists of ids with Workers goroutines, leaving out papers no longer
// stored and, with a warning, papers whose search fails for a reason of their own.
func (k *Keeper) computeAll(ctx context.Context, ids []string) ([]List, error) {
	out := make([]List, len(ids))
	ok := make([]bool, len(ids))
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range max(k.Workers, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				entries, err := k.Compute(ctx, ids[i])
				var nf *store.NotFoundError
				var ue *store.UnavailableError
				switch {
				case err == nil:
					out[i], ok[i] = List{ID: ids[i], Entries: entries, ComputedAt: time.Now().UTC()}, true
				case errors.As(err, &nf):
				case errors.As(err, &ue) || ctx.Err() != nil:
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				default:
					k.Logger.Warn("a paper's neighbour list could not be computed; its similar papers are searched", "paper_id", ids[i], "error", err)
				}
			}
		})
	}
	wg.Wait()
	if err := cmp.Or(ctx.Err(), firstErr); err != nil {
		return nil, err
	}
	kept := out[:0]
	for i := range out {
		if ok[i] {
			kept = append(kept, out[i])
		}
	}
	return kept, nil
}

func (k *Keeper) loadState(ctx context.Context) (state, error) {
	b, err := k.Lists.ListsState(ctx)
	if err != nil || b == nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		k.Logger.Warn("the neighbour lists' state is unreadable: building them again", "error", err)
		return state{}, nil
	}
	return st, nil
}

func (k *Keeper) saveState(ctx context.Context, st state) error {
	st.Renewed = time.Now().UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return k.Lists.PutListsState(ctx, b)
}

// Lookup returns a paper's list when it is stored and was computed with the current Key.
func (k *Keeper) Lookup(ctx context.Context, id string) (List, bool, error) {
	recs, err := k.Lists.Lists(ctx, []string{id})
	if err != nil || len(recs) == 0 {
		return List{}, false, err
	}
	l, err := decode(recs[0])
	if err != nil {
		return List{}, false, err
	}
	return l, l.key == keyHash(k.Key()), nil
}

// Scan returns up to limit lists after the paper named after (see store.NeighbourLists), those
// computed with another key left out.
func (k *Keeper) Scan(ctx context.Context, after string, limit int) (lists []List, last string, err error) {
	recs, err := k.Lists.ScanLists(ctx, after, limit)
	if err != nil || len(recs) == 0 {
		return nil, "", err
	}
	key := keyHash(k.Key())
	for _, r := range recs {
		l, err := decode(r)
		if err != nil {
			return nil, "", err
		}
		if l.key == key {
			lists = append(lists, l)
		}
	}
	return lists, recs[len(recs)-1].ID, nil
}

// Status describes the lists.
type Status struct {
	Lists   int64
	Built   bool
	Pending int64 // writes after the upkeep's cursor, counted up to MaxPending
}

// MaxPending bounds how many pending writes Status counts.
const MaxPending = 10_000

// Status reads the lists' state from the store.
func (k *Keeper) Status(ctx context.Context) (Status, error) {
	st, err := k.loadState(ctx)
	if err != nil {
		return Status{}, err
	}
	n, err := k.Lists.CountLists(ctx)
	if err != nil {
		return Status{}, err
	}
	out := Status{Lists: n, Built: st.Built && st.Key == k.Key()}
	if st.Key != k.Key() {
		st.Cursor = store.Cursor{} // every write is pending until a build with this key
	}
	pending, err := k.Log.Changes(ctx, st.Cursor, MaxPending)
	if err != nil {
		return Status{}, err
	}
	out.Pending = int64(len(pending))
	return out, nil
}

func keyHash(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// listFormat is the version byte of an encoded list.
const listFormat = 1

// encode is the list as stored: format, key hash, computed-at (unix ms), then each entry's id
// (length-prefixed), score and relevance.
func (l *List) encode() []byte {
	b := []byte{listFormat}
	b = binary.BigEndian.AppendUint32(b, l.key)
	b = binary.AppendVarint(b, l.ComputedAt.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(l.Entries)))
	for _, e := range l.Entries {
		b = binary.AppendUvarint(b, uint64(len(e.ID)))
		b = append(b, e.ID...)
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(e.Score))
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(e.Relevance))
	}
	return b
}

var errFormat = errors.New("malformed neighbour list")

func decode(r store.ListRecord) (List, error) {
	b := r.Data
	if len(b) < 5 || b[0] != listFormat {
		return List{}, fmt.Errorf("%w of %s", errFormat, r.ID)
	}
	l := List{ID: r.ID, key: binary.BigEndian.Uint32(b[1:5])}
	b = b[5:]
	ms, n := binary.Varint(b)
	if n <= 0 {
		return List{}, fmt.Errorf("%w of %s", errFormat, r.ID)
	}
	l.ComputedAt = time.UnixMilli(ms).UTC()
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return List{}, fmt.Errorf("%w of %s", errFormat, r.ID)
	}
	b = b[n:]
	l.Entries = make([]Entry, 0, count)
	for range count {
		size, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < size+8 {
			return List{}, fmt.Errorf("%w of %s", errFormat, r.ID)
		}
		b = b[n:]
		e := Entry{ID: string(b[:size])}
		b = b[size:]
		e.Score = math.Float32frombits(binary.BigEndian.Uint32(b))
		e.Relevance = math.Float32frombits(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
		l.Entries = append(l.Entries, e)
	}
	return l, nil
}
