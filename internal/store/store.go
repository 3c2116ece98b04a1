package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paperrec/recommender/internal/lexical"
)

// Paper is a stored paper: its fields plus the representations retrieval uses.
type Paper struct {
	ID         string
	Title      string
	Abstract   string
	Authors    []string
	Categories []string
	Topics     []string
	Year       int32
	Date       string // "YYYY-MM-DD" or empty
	URL        string // where a reader finds it, or empty

	// Lexical holds the paper's term frequencies (lexical.Document of title and abstract).
	Lexical lexical.Vector
	// Dense is the paper's embedding; nil when no embedding model is configured. Similarity is
	// cosine, so only its direction counts: a backend may return it scaled to unit length
	// (Qdrant stores it so).
	Dense []float32
	// DenseHash identifies the text Dense was computed from (embed.TextHash), so an unchanged
	// paper keeps its vector without another embedding call.
	DenseHash string
	// DenseSet is the EmbeddingSpec.Key of the model Dense comes from. Reads set it; a write
	// that sets it is refused with *EmbeddingSwitchedError unless it names the active set, so
	// a vector embedded just before a switch never lands among the other model's.
	DenseSet string
}

// TextKey identifies the text a paper's vectors are embedded from (title and abstract), so a
// vector computed for one version of a paper is not stored for another (VectorSets).
func TextKey(title, abstract string) string {
	h := sha256.New()
	writeField(h, title)
	writeField(h, abstract)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// EmbeddingSpec names the embedding model a store's vectors come from, with the instruction
// prefixes its texts were given: an asymmetric model's vectors are only comparable when queries
// and documents carry the same prefixes as when the store was filled.
type EmbeddingSpec struct {
	Model      string
	Dimensions int
	// QueryPrefix is put before query text; DocumentPrefix before a paper's text.
	QueryPrefix, DocumentPrefix string
}

// Conflicts reports whether a store bound to s must refuse configured: another model, another
// size (when configured's is known) or other prefixes.
func (s EmbeddingSpec) Conflicts(configured EmbeddingSpec) bool {
	return s.Model != configured.Model || (configured.Dimensions != 0 && configured.Dimensions != s.Dimensions) ||
		s.QueryPrefix != configured.QueryPrefix || s.DocumentPrefix != configured.DocumentPrefix
}

// Key identifies the vector set s's vectors form: vectors of equal keys are comparable.
func (s EmbeddingSpec) Key() string {
	if s.Model == "" {
		return ""
	}
	return fmt.Sprintf("%s\x00%d\x00%s\x00%s", s.Model, s.Dimensions, s.QueryPrefix, s.DocumentPrefix)
}

func (s EmbeddingSpec) String() string {
	return fmt.Sprintf("model %q with %d dimensions, query prefix %q, document prefix %q",
		s.Model, s.Dimensions, s.QueryPrefix, s.DocumentPrefix)
}

// EmbeddingMismatchError is returned when a store's vectors come from another model or size
// than the one configured: mixing them would make similarities meaningless.
type EmbeddingMismatchError struct{ Stored, Configured EmbeddingSpec }

func (e *EmbeddingMismatchError) Error() string {
	return fmt.Sprintf("the store holds vectors of %s, but %s is configured; "+
		"use the store's model and prefixes, or move the store to the new model with serve --reembed-model (and its prefixes)",
		e.Stored, e.Configured)
}

// EmbeddingSwitchedError is returned for a call made with vectors of a set that is no longer
// the store's active one (Paper.DenseSet, Query.DenseSet): the store switched models between
// the caller's embedding and its call. The caller embeds again with Active's model.
type EmbeddingSwitchedError struct{ Active EmbeddingSpec }

func (e *EmbeddingSwitchedError) Error() string {
	return fmt.Sprintf("the store switched its vectors to %s during the call", e.Active)
}

// Outcome is what an upsert did to one paper.
type Outcome int

// Upsert outcomes.
const (
	Inserted Outcome = iota + 1
	Updated
	Unchanged
)

// Filter restricts search results; the zero value matches every paper.
type Filter struct {
	MinYear, MaxYear int32    // inclusive bounds; 0 is unbounded
	Categories       []string // any-of, exact match
	Authors          []string // any-of, compared with NormalizeAuthor
	ExcludeIDs       []string
	// OnlyIDs, when set, restricts results to these papers (a candidate list to rank).
	OnlyIDs []string
}

// Matches reports whether p passes the filter.
func (f *Filter) Matches(p *Paper) bool {
	if (f.MinYear != 0 && (p.Year == 0 || p.Year < f.MinYear)) || (f.MaxYear != 0 && (p.Year == 0 || p.Year > f.MaxYear)) {
		return false
	}
	if slices.Contains(f.ExcludeIDs, p.ID) || (f.OnlyIDs != nil && !slices.Contains(f.OnlyIDs, p.ID)) {
		return false
	}
	if len(f.Categories) > 0 && !slices.ContainsFunc(p.Categories, func(c string) bool { return slices.Contains(f.Categories, c) }) {
		return false
	}
	if len(f.Authors) > 0 && !slices.ContainsFunc(p.Authors, func(a string) bool {
		return slices.ContainsFunc(f.Authors, func(b string) bool { return NormalizeAuthor(a) == NormalizeAuthor(b) })
	}) {
		return false
	}
	return true
}

// Query is a top-k search by one signal or both (Lexical, Dense): each signal's best papers that
// pass the filter, ranked alone. Combining the lists (fusion) and every later ranking step are
// the caller's: the store finds and scores.
type Query struct {
	// Lexical holds query term weights; negative weights push papers with those terms down.
	Lexical lexical.Vector
	// Dense is the query embedding; it need not be normalised.
	Dense []float32
	// DenseSet is the EmbeddingSpec.Key of Dense's model: the search runs in that vector set
	// (the active one or, while a store keeps two, the other), and fails with
	// *EmbeddingSwitchedError when the store keeps no such set. Empty: the active set.
	DenseSet string
	Filter   Filter
	// Limit is how many papers each signal's list holds at most.
	Limit int
	// Exact asks for an exact dense search where the backend would use an approximate index.
	Exact bool
}

// Scored is a paper a signal found, with its score in that signal (BM25, cosine).
type Scored struct {
	ID    string
	Score float32
}

// Lists are a search's results: each signal's papers, best first; nil for a signal the query
// did not have.
type Lists struct{ Lexical, Dense []Scored }

// Better orders scored papers: higher score first, ties by ascending id, so equal requests
// against an unchanged store return the same order whatever the backend.
func Better(a, b Scored) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.ID < b.ID
}

// Cosine is the cosine similarity of two vectors of equal length (0 if either is zero).
func Cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// Fields say what Read fills in besides ID, Title, Date and Year, which it always does (what
// ranking reads, kept in memory where a backend can).
type Fields uint8

// What Read fills in.
const (
	// Metadata is every other stored field (abstract, authors, categories, topics, URL, DenseHash).
	Metadata Fields = 1 << iota
	// LexicalVector is Paper.Lexical.
	LexicalVector
	// DenseVector is Paper.Dense (and DenseSet), from the vector set Read is given.
	DenseVector
	// Sketch is Record.Sketch: what comparing papers by their words (diversity) needs.
	Sketch
	// AllFields is the whole paper.
	AllFields = Metadata | LexicalVector | DenseVector
)

// Record is a paper as Read returns it.
type Record struct {
	Paper Paper
	// Sketch is Paper.Lexical.Sketch(), with the Sketch field.
	Sketch *lexical.Sketch
}

// Stats describes a store.
type Stats struct {
	Backend      string
	PaperCount   int64
	IndexVersion uint64
	Embedding    EmbeddingSpec // zero when no model is bound
}

// Store is a durable paper store with top-k retrieval in two phases: Search finds and scores
// papers by each signal, Read fetches what the caller's ranking needs of the ones it keeps.
// Every method is safe for concurrent use. Lists are ordered by Better.
type Store interface {
	// Upsert stores papers, keyed by id, durably before it returns. The outcome of each paper
	// is returned in input order; an unchanged paper is not rewritten. When an id repeats within
	// the batch, the last occurrence wins.
	Upsert(ctx context.Context, papers []Paper) ([]Outcome, error)
	// Get returns the papers with the given ids, in that order, with their representations. A
	// missing id fails the call with a *NotFoundError.
	Get(ctx context.Context, ids []string) ([]Paper, error)
	// Lookup is Get without the error for missing ids: it returns the papers that exist, in
	// the order asked.
	Lookup(ctx context.Context, ids []string) ([]Paper, error)
	// Delete removes papers and returns the ids that were not stored.
	Delete(ctx context.Context, ids []string) (notFound []string, err error)
	// Search returns each signal's best Limit papers for the query that pass the filter, as ids
	// and scores.
	Search(ctx context.Context, q Query) (Lists, error)
	// Read returns the papers with the given ids that exist, in the order asked, with fields
	// filled in: a paper deleted since the search that found it is left out. Dense vectors come
	// from the vector set named denseSet (empty: the active one); *EmbeddingSwitchedError when
	// the store keeps no such set.
	Read(ctx context.Context, ids []string, fields Fields, denseSet string) ([]Record, error)
	// BindEmbedding ties the store's vectors to an embedding model. The first call records spec
	// (whose Dimensions must be known); later calls return the recorded spec, or an
	// *EmbeddingMismatchError when spec names another model or, when set, another size.
	BindEmbedding(ctx context.Context, spec EmbeddingSpec) (EmbeddingSpec, error)
	// Stats describes the store.
	Stats(ctx context.Context) (Stats, error)
	// Close flushes and releases the store.
	Close() error
}

// ErrNotFound matches every *NotFoundError.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store is closed")

// NotFoundError names the papers that do not exist.
type NotFoundError struct{ IDs []string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("paper not found: %s", strings.Join(e.IDs, ", "))
}

// Is makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// UnavailableError means the backend cannot serve now (down, unreachable, or missing its
// collection); retrying later may work.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return "store unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// ResourceExhaustedError means the backend is shedding load; RetryAfter is its hint (0: none).
type ResourceExhaustedError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *ResourceExhaustedError) Error() string {
	return fmt.Sprintf("store overloaded (retry after %v): %v", e.RetryAfter, e.Err)
}
func (e *ResourceExhaustedError) Unwrap() error { return e.Err }

// Wrapper is implemented by stores that wrap another (instrumentation), so the wrapped one's
// optional interfaces stay reachable through As.
type Wrapper interface {
	Unwrap() Store
}

// As returns s, or the store s wraps (through any number of Wrappers), as a T: how callers find
// a store's optional interfaces (Feeds, ChangeLog, TermStatser, VectorSets...).
func As[T any](s Store) (T, bool) {
	for {
		if t, ok := s.(T); ok {
			return t, true
		}
		w, ok := s.(Wrapper)
		if !ok {
			var zero T
			return zero, false
		}
		s = w.Unwrap()
	}
}

// Versioner is implemented by stores that count their writes cheaply (the embedded store), so
// every answer can say which state of the index it came from.
type Versioner interface {
	Version() uint64
}

// HealthChecker is implemented by stores that depend on a remote service, so the server can
// report NOT_SERVING while it is unreachable.
type HealthChecker interface {
	Ping(ctx context.Context) error
}

// ContentHash identifies everything stored for a paper, so backends that cannot compare
// records byte for byte can still tell an unchanged re-upsert. The vector is identified by
// DenseHash when it has one (the text it was embedded from; the store pins the model), not by
// its bits: a backend may return it rescaled, and a paper sent again as read back must hash
// the same.
func ContentHash(p *Paper) string {
	h := sha256.New()
	for _, s := range []string{p.ID, p.Title, p.Abstract, p.Date, p.DenseHash, strconv.Itoa(int(p.Year))} {
		writeField(h, s)
	}
	for _, list := range [][]string{p.Authors, p.Categories, p.Topics} {
		writeField(h, strconv.Itoa(len(list)))
		for _, s := range list {
			writeField(h, s)
		}
	}
	var buf [4]byte
	for i, id := range p.Lexical.Indices {
		binary.LittleEndian.PutUint32(buf[:], id)
		h.Write(buf[:])
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(p.Lexical.Values[i]))
		h.Write(buf[:])
	}
	if p.DenseHash == "" {
		for _, x := range p.Dense {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
			h.Write(buf[:])
		}
	}
	if p.URL != "" { // hashed only when set, so papers stored before it hash as they did
		writeField(h, p.URL)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// writeField writes a length-prefixed string, so field boundaries cannot be forged by content.
func writeField(h hash.Hash, s string) {
	var buf [binary.MaxVarintLen64]byte
	h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
	h.Write([]byte(s))
}

// NormalizeAuthor folds an author name for matching: lower case, single spaces.
func NormalizeAuthor(name string) string {
	return strings.Join(strings.Fields(strings.ToLower(name)), " ")
}

// TermStatser is implemented by stores that can say how common terms are in the whole corpus:
// explanations weigh shared terms by it. (Qdrant applies idf internally but does not expose it.)
type TermStatser interface {
	// IDF returns lexical.IDF of each term over the stored papers; 0 for a term no paper has.
	IDF(ctx context.Context, terms []uint32) ([]float64, error)
}

// Feeds is implemented by stores that keep saved feeds, durable like papers. A feed is an
// opaque record the service encodes; ids sort in creation order.
type Feeds interface {
	PutFeed(ctx context.Context, id string, data []byte) error
	// GetFeed returns ErrFeedNotFound for an unknown id.
	GetFeed(ctx context.Context, id string) ([]byte, error)
	// ListFeeds returns every feed, by id.
	ListFeeds(ctx context.Context) ([]FeedRecord, error)
	// DeleteFeed returns ErrFeedNotFound for an unknown id.
	DeleteFeed(ctx context.Context, id string) error
}

// FeedRecord is one stored feed.
type FeedRecord struct {
	ID   string
	Data []byte
}

// ErrFeedNotFound is returned for a feed id no feed has.
var ErrFeedNotFound = errors.New("feed not found")

// ChangeLog is implemented by stores that record the order papers are written in (inserted or
// changed; an unchanged re-send is no write), so a reader can follow new papers from a cursor
// without gaps or repeats.
type ChangeLog interface {
	// Changes returns up to limit writes after the cursor (the zero Cursor: from the first),
	// oldest first.
	Changes(ctx context.Context, after Cursor, limit int) ([]Change, error)
	// CursorAt is the cursor just before the first write at or after t.
	CursorAt(ctx context.Context, t time.Time) (Cursor, error)
	// Head is the cursor of the latest write readers can see.
	Head(ctx context.Context) (Cursor, error)
	// Written returns a channel closed by the next write (or, in a store shared by several
	// processes, when it is time to look again).
	Written() <-chan struct{}
}

// Cursor is a position in the write log: just after the write of paper ID at Seq. Writes are
// ordered by Seq, then ID (a store whose Seq can repeat, a time written by several processes,
// breaks ties by ID).
type Cursor struct {
	Seq uint64
	ID  string
}

// Before reports whether c comes before o in the log.
func (c Cursor) Before(o Cursor) bool { return c.Seq < o.Seq || (c.Seq == o.Seq && c.ID < o.ID) }

// Change is one write of a paper.
type Change struct {
	Cursor // the position just after it
	At     time.Time
}

// VectorSets is implemented by stores that can keep a second set of dense vectors beside the
// active one, so a deployment moves to another embedding model without downtime: the other set
// is filled in the background while queries use the active one, the switch between them is
// atomic, and the set switched away from stays (for a rollback) until it is retired.
type VectorSets interface {
	// VectorSetStatus describes both sets.
	VectorSetStatus(ctx context.Context) (VectorSetStatus, error)
	// BeginVectorSet makes spec's set the other one: created empty, or kept (with the vectors
	// it has) when it is already spec's. It fails while the other set belongs to another
	// model (retire it first), and with ErrSetActive when spec is the active set's.
	BeginVectorSet(ctx context.Context, spec EmbeddingSpec) error
	// MissingVectors returns up to limit papers with no up-to-date vector in the other set
	// (title and abstract filled in), in an order of the store's, each after the paper named
	// after (the last of the previous page; empty: from the first).
	MissingVectors(ctx context.Context, after string, limit int) ([]Paper, error)
	// PutVectors stores vectors into the other set. A vector whose TextKey no longer matches
	// the stored paper (it changed meanwhile), or whose paper is gone, is skipped and its id
	// returned.
	PutVectors(ctx context.Context, vectors []SetVector) (skipped []string, err error)
	// SwitchVectorSet atomically makes the other set, which must be to's, the active one and
	// the active one the other; nothing happens when to's set is active already (another
	// replica switched). Papers with no vector in the other set are given to fill (when set, and when at
	// most MaxSwitchFill of them) while writes wait, and its vectors stored with the switch, so
	// a steady stream of writes cannot keep the switch from happening. It fails with
	// *IncompleteSetError while papers lack a vector and fill cannot or did not give them one.
	SwitchVectorSet(ctx context.Context, to EmbeddingSpec, fill FillFunc) error
	// RetireVectorSet deletes the other set.
	RetireVectorSet(ctx context.Context) error
}

// VectorSetStatus describes a store's vector sets.
type VectorSetStatus struct {
	Active EmbeddingSpec // zero: lexical only
	// Other is the second set's model; zero when there is none.
	Other EmbeddingSpec
	// OtherVectors is how many papers have an up-to-date vector in the other set, of Papers.
	OtherVectors, Papers int64
	// ActiveVectors is how many papers have a vector in the active set: Papers, unless papers
	// were stored before the store had a model (0 when lexical).
	ActiveVectors int64
}

// FillFunc embeds papers for the other set (title and abstract filled in).
type FillFunc func(ctx context.Context, papers []Paper) ([]SetVector, error)

// MaxSwitchFill bounds the papers SwitchVectorSet embeds while writes wait.
const MaxSwitchFill = 256

// SetVector is one paper's vector for the other set.
type SetVector struct {
	ID string
	// TextKey is the TextKey of the title and abstract Dense was embedded from.
	TextKey   string
	Dense     []float32
	DenseHash string // as Paper.DenseHash
}

// IncompleteSetError is returned by a switch to a set some papers have no vector in.
type IncompleteSetError struct{ Missing int64 }

func (e *IncompleteSetError) Error() string {
	return fmt.Sprintf("%d papers have no vector in the other set yet", e.Missing)
}

// ErrSetActive is returned by BeginVectorSet for the model of the active set.
var ErrSetActive = errors.New("the store's active vectors are already of this model")

// ErrNoOtherSet is returned by calls that need a second vector set when there is none.
var ErrNoOtherSet = errors.New("the store keeps no second vector set")

// NeighbourLists is implemented by stores that keep each paper's precomputed neighbour list, an
// opaque record the service encodes, durable like papers, with the opaque state of their upkeep.
// Deleting a paper deletes its list.
type NeighbourLists interface {
	// PutLists stores lists, each replacing its paper's earlier one. A list whose paper is not
	// stored (deleted meanwhile) is skipped.
	PutLists(ctx context.Context, lists []ListRecord) error
	// Lists returns the lists of the papers asked that have one, in the order asked.
	Lists(ctx context.Context, ids []string) ([]ListRecord, error)
	// ScanLists returns up to limit lists, in an order of the store's, each after the paper
	// named after (the last of the previous page; empty: from the first).
	ScanLists(ctx context.Context, after string, limit int) ([]ListRecord, error)
	// CountLists is how many lists are stored.
	CountLists(ctx context.Context) (int64, error)
	// ListsState returns the state PutListsState stored last (nil: none).
	ListsState(ctx context.Context) ([]byte, error)
	PutListsState(ctx context.Context, state []byte) error
	// ResetLists deletes every list and the state.
	ResetLists(ctx context.Context) error
}

// ListRecord is one paper's stored neighbour list.
type ListRecord struct {
	ID   string
	Data []byte
}
